"""Telemetry of Linux and macOS targets: Sysmon for Linux when installed, else honestly none.

Contract:

* ``sysmon_linux_present(transport)`` asks the target (one POSIX command) whether Sysmon for Linux
  runs there and journald can be read: ``sysmon`` on PATH and ``journalctl`` present. Never raises
  for a "no"; a transport failure propagates (the target is unusable).
* ``SysmonLinuxSource`` is a ``TelemetrySource``. Sysmon for Linux writes every event as the same
  ``<Event>`` XML schema as Windows Sysmon, one event per syslog message with the identifier
  ``sysmon`` (Sysinternals/SysmonForLinux README: "Events are written to the Syslog ... as XML";
  journald keeps the identifier), so the events are read with ``journalctl -t sysmon -o cat`` after a
  journal cursor and parsed by the existing Windows event XML reader. The bookmark is the journal
  cursor (``--show-cursor``); a journal without a cursor yet reads from its start.
* ``NotCollectedSource`` is the source of a target whose platform gives atomiclab no telemetry: it
  reads nothing, and ``NOT_COLLECTED`` says why, for the test's reason ("not collected on this
  platform"). It never fails before execution.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from harness.errors import TelemetryError
from harness.execution.transport import Transport
from harness.telemetry.event import Event
from harness.telemetry.readers.winxml import parse_event_xml

#: The syslog identifier Sysmon for Linux logs under.
SYSMON_IDENT = "sysmon"
_CURSOR_RE = re.compile(r"^-- cursor: (\S+)\s*$", re.MULTILINE)
_PROBE = "command -v sysmon >/dev/null 2>&1 && command -v journalctl >/dev/null 2>&1 && echo atomiclab-sysmon-present"


def _posix(text: str) -> str:
    """``text`` as a ``sh -c`` command line (the SSH transport runs it in the login shell)."""
    return "sh -c " + shlex.quote(text)


def sysmon_linux_present(transport: Transport, timeout: float = 30.0) -> bool:
    """True when Sysmon for Linux and journalctl are on the target."""
    result = transport.run(_posix(_PROBE), timeout=timeout)
    return result.exit_code == 0 and "atomiclab-sysmon-present" in result.stdout


class SysmonLinuxSource:
    """Sysmon for Linux events from journald after a cursor (see the module contract)."""

    def __init__(self, transport: Transport, *, timeout: float = 60.0, keep_raw: bool = True) -> None:
        self._transport = transport
        self._timeout = timeout
        self._keep_raw = keep_raw
        self._next: dict[str | None, str | None] = {}  # cursor read from -> cursor after that read

    def _journal(self, cursor: str | None, *, lines: int | None = None) -> tuple[str, str | None]:
        args = ["journalctl", "-t", SYSMON_IDENT, "-o", "cat", "--no-pager", "-q", "--show-cursor"]
        if lines is not None:
            args += ["-n", str(lines)]
        if cursor is not None:
            args.append("--after-cursor=" + cursor)
        result = self._transport.run(_posix(" ".join(shlex.quote(a) for a in args)), timeout=self._timeout)
        if result.timed_out or result.exit_code not in (0, 1):
            first = (result.stderr or result.stdout).strip().splitlines()[:1]
            raise TelemetryError(f"journalctl failed (exit {result.exit_code}): {first[0] if first else ''}",
                                 source=self._transport.host)
        found = _CURSOR_RE.findall(result.stdout)
        text = _CURSOR_RE.sub("", result.stdout)
        return text, (found[-1] if found else cursor)

    def bookmark(self) -> str | None:
        """The journal cursor of the newest Sysmon message (None: none yet)."""
        _text, cursor = self._journal(None, lines=0)
        return cursor

    def events_after(self, bookmark: Any) -> Iterable[Event]:
        text, cursor = self._journal(bookmark)
        self._next[bookmark] = cursor
        xml = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("<Event"))
        if not xml:
            return []
        return list(parse_event_xml(xml, origin=f"{self._transport.host}:journal/{SYSMON_IDENT}",
                                    keep_raw=self._keep_raw))

    def advanced(self, bookmark: Any, events: Sequence[Event]) -> Any:
        return self._next.get(bookmark, bookmark)


class NotCollectedSource:
    """A source that reads nothing on a platform without telemetry (see the module contract)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def bookmark(self) -> None:
        return None

    def events_after(self, bookmark: Any) -> Iterable[Event]:
        return []

    def advanced(self, bookmark: Any, events: Sequence[Event]) -> Any:
        return bookmark


__all__ = ["SYSMON_IDENT", "NotCollectedSource", "SysmonLinuxSource", "sysmon_linux_present"]
