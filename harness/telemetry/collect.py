"""Collecting events from a live host: one bookmark per run, one command per poll for all channels.

``TelemetrySource`` is the seam (the runner receives one); ``WevtutilSource`` implements it over any
Transport with ``wevtutil qe``: the bookmark is each channel's newest EventRecordID
(``/c:1 /rd:true``), collection queries ``*[System[EventRecordID>N]]`` (filtered by the event log
service, not here) page by page (``/c:<page>``, oldest first) until a page comes back short, and
``advanced`` moves a bookmark past what was read, so a run bookmarks once and every later read
starts where the last one ended.

With several channels, the queries of one round go to the host as ONE command line,
``cmd.exe /c echo <tag>S0 & wevtutil qe "A" ... 2>&1 || echo <tag>F0 & echo <tag>S1 & ... & echo <tag>E``:
each channel's output (its error text included, ``2>&1``) sits after its own section line and a
failed query adds a failure line. ``<tag>`` is a fresh random token per command, so event text (a
command line, a script block) cannot forge a section boundary; a reply without the end line (a
killed or truncated command) is a TelemetryError, never a silent partial read. Remote output is
hostile input: it is parsed with the safe XML reader. A channel that does not exist on the host
(wevtutil error 15007) or is empty is reported in the result, never an exception.
"""

from __future__ import annotations

import enum
import itertools
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from harness.errors import TelemetryError
from harness.execution.transport import Transport
from harness.model import CommandResult, utcnow
from harness.telemetry.event import Event
from harness.telemetry.readers.common import ReadStats
from harness.telemetry.readers.winxml import parse_event_xml

#: wevtutil's "The specified channel could not be found" (ERROR_EVT_CHANNEL_NOT_FOUND).
CHANNEL_NOT_FOUND = 15007
_CHANNEL_RE = re.compile(r"^[^\"\x00-\x1f%^&|<>]+$")


class ChannelStatus(enum.StrEnum):
    OK = "ok"
    EMPTY = "empty"  # exists, but had no event (at bookmark) / no new event (at collection)
    MISSING = "missing"  # the channel does not exist on the host (15007)


@dataclass(frozen=True, slots=True)
class Bookmark:
    """Per channel, the newest EventRecordID at bookmark time (0 for an empty channel)."""

    host: str
    record_ids: Mapping[str, int]
    status: Mapping[str, ChannelStatus]
    taken_at: datetime

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(c for c, s in self.status.items() if s is ChannelStatus.MISSING)


@dataclass(frozen=True, slots=True)
class Collected:
    """What one collection returned: events (per channel, oldest first) and each channel's status."""

    events: tuple[Event, ...]
    status: Mapping[str, ChannelStatus]
    counts: Mapping[str, int]
    stats: ReadStats = field(default_factory=ReadStats)


@runtime_checkable
class TelemetrySource(Protocol):
    """Where a run's events come from."""

    def bookmark(self) -> Bookmark:
        """Remember where each channel is now."""
        ...

    def events_after(self, bookmark: Bookmark) -> list[Event]:
        """Every event written after ``bookmark`` (per channel, oldest first)."""
        ...

    def advanced(self, bookmark: Bookmark, events: Sequence[Event]) -> Bookmark:
        """``bookmark`` moved past ``events`` (read after it): the next read starts after them."""
        ...


def _channel_not_found(result: CommandResult) -> bool:
    """wevtutil prints ``Failed to read events. The specified channel could not be found.`` and
    exits with 15007 when the channel does not exist."""
    text = f"{result.stderr}\n{result.stdout}"
    return result.exit_code == CHANNEL_NOT_FOUND or "15007" in text or "channel could not be found" in text.lower()


class WevtutilSource:
    """TelemetrySource over ``wevtutil qe`` run through a Transport."""

    def __init__(
        self,
        transport: Transport,
        channels: Sequence[str],
        *,
        page_size: int = 500,
        timeout: float = 120.0,
        keep_raw: bool = True,
    ) -> None:
        for channel in channels:
            if not _CHANNEL_RE.match(channel):
                raise ValueError(f"channel name {channel!r} cannot be passed to wevtutil safely")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._transport = transport
        self._channels = tuple(channels)
        self._page_size = page_size
        self._timeout = timeout
        self._keep_raw = keep_raw

    @property
    def channels(self) -> tuple[str, ...]:
        return self._channels

    def _run(self, command: str, channel: str) -> CommandResult | None:
        """Run one wevtutil command; None when the channel does not exist."""
        result = self._transport.run(command, timeout=self._timeout)
        self._check_timeout(result, channel)
        if result.exit_code != 0:
            if _channel_not_found(result):
                return None
            first = (result.stderr or result.stdout).strip().splitlines()[:1]
            raise TelemetryError(
                f"wevtutil failed reading {channel!r} (exit {result.exit_code}): {first[0] if first else ''}",
                source=self._transport.host,
            )
        return result

    def _check_timeout(self, result: CommandResult, what: str) -> None:
        if result.timed_out:
            raise TelemetryError(
                f"wevtutil timed out after {self._timeout:g}s reading {what!r}", source=self._transport.host
            )

    def _batch(self, queries: Sequence[tuple[str, str]]) -> dict[str, str | None]:
        """Run ``wevtutil qe "CHANNEL" ARGS`` for every (channel, args) as one remote command.

        Returns each channel's output (None: the channel does not exist). One query runs as a plain
        wevtutil command; several are joined into one ``cmd.exe /c`` line with section markers
        (see the module docstring)."""
        if len(queries) == 1:
            channel, args = queries[0]
            result = self._run(f'wevtutil qe "{channel}" {args}', channel)
            return {channel: None if result is None else result.stdout}
        tag = f"ATOMICLAB{secrets.token_hex(8)}"
        parts = [
            f'echo {tag}S{i} & wevtutil qe "{ch}" {args} 2>&1 || echo {tag}F{i}' for i, (ch, args) in enumerate(queries)
        ]
        command = "cmd.exe /c " + " & ".join(parts) + f" & echo {tag}E"
        what = ", ".join(ch for ch, _ in queries)
        result = self._transport.run(command, timeout=self._timeout)
        self._check_timeout(result, what)
        return self._sections(result, tag, queries)

    def _sections(self, result: CommandResult, tag: str, queries: Sequence[tuple[str, str]]) -> dict[str, str | None]:
        marks = list(re.finditer(rf"^{tag}([SFE])(\d*)[ \t]*\r?$", result.stdout, re.MULTILINE))
        if not marks or marks[-1].group(1) != "E":
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise TelemetryError(
                f"reading {', '.join(ch for ch, _ in queries)}: the command's output ended early "
                f"(exit {result.exit_code}){': ' + tail[0][:200] if tail else ''}",
                source=self._transport.host,
            )
        texts: dict[int, str] = {}
        failed: set[int] = set()
        for m, nxt in itertools.pairwise(marks):
            kind, index = m.group(1), m.group(2)
            if not index or int(index) >= len(queries):
                continue
            if kind == "F":
                failed.add(int(index))
            elif kind == "S":
                texts[int(index)] = result.stdout[m.end() : nxt.start()].strip("\r\n")
        out: dict[str, str | None] = {}
        for i, (channel, _) in enumerate(queries):
            if i not in texts:
                raise TelemetryError(
                    f"reading {channel!r}: its section is missing from the command's output",
                    source=self._transport.host,
                )
            text = texts[i]
            if i in failed:
                answer = CommandResult("", 1, "", text, result.started, result.ended)
                if _channel_not_found(answer):
                    out[channel] = None
                    continue
                first = text.strip().splitlines()[:1]
                raise TelemetryError(
                    f"wevtutil failed reading {channel!r}: {first[0][:200] if first else 'no message'}",
                    source=self._transport.host,
                )
            out[channel] = text
        return out

    def _parse(self, text: str, channel: str, stats: ReadStats) -> list[Event]:
        return list(
            parse_event_xml(text, origin=f"{self._transport.host}:{channel}", keep_raw=self._keep_raw, stats=stats)
        )

    def bookmark(self) -> Bookmark:
        record_ids: dict[str, int] = {}
        status: dict[str, ChannelStatus] = {}
        answers = self._batch([(channel, "/c:1 /rd:true /f:xml") for channel in self._channels])
        for channel in self._channels:
            text = answers[channel]
            if text is None:
                record_ids[channel] = 0
                status[channel] = ChannelStatus.MISSING
                continue
            events = self._parse(text, channel, ReadStats())
            newest = max((e.record_id or 0 for e in events), default=0)
            record_ids[channel] = newest
            status[channel] = ChannelStatus.OK if events else ChannelStatus.EMPTY
        return Bookmark(host=self._transport.host, record_ids=record_ids, status=status, taken_at=utcnow())

    def collect(self, bookmark: Bookmark) -> Collected:
        """Events after ``bookmark`` with each channel's status and count.

        Each round is one remote command for every channel still paging; a channel leaves the
        rounds when a page comes back short (or does not advance), so the usual poll is one command.
        """
        stats = ReadStats()
        per: dict[str, list[Event]] = {c: [] for c in self._channels}
        missing: set[str] = set()
        after = {c: bookmark.record_ids.get(c, 0) for c in self._channels}
        pending = list(self._channels)
        while pending:
            queries = [
                (c, f'/q:"*[System[EventRecordID>{after[c]}]]" /f:xml /e:Events /c:{self._page_size}') for c in pending
            ]
            answers = self._batch(queries)
            still: list[str] = []
            for channel in pending:
                text = answers[channel]
                if text is None:
                    missing.add(channel)
                    continue
                page = self._parse(text, channel, stats)
                per[channel].extend(page)
                newest = max((e.record_id or 0 for e in page), default=after[channel])
                # A short page is the last one; a full page that does not advance would loop forever.
                if len(page) >= self._page_size and newest > after[channel]:
                    after[channel] = newest
                    still.append(channel)
            pending = still
        events = tuple(e for c in self._channels for e in per[c])
        counts = {c: len(per[c]) for c in self._channels}
        status = {
            c: ChannelStatus.MISSING if c in missing else (ChannelStatus.OK if counts[c] else ChannelStatus.EMPTY)
            for c in self._channels
        }
        return Collected(events=events, status=status, counts=counts, stats=stats)

    def events_after(self, bookmark: Bookmark) -> list[Event]:
        return list(self.collect(bookmark).events)

    def advanced(self, bookmark: Bookmark, events: Sequence[Event]) -> Bookmark:
        """``bookmark`` with each channel's record id raised to the newest of ``events`` in it.

        Record ids only grow within a channel, so whatever is logged later has a higher one: events
        written before the new position were already read (or belong to an earlier test)."""
        by_lower = {c.lower(): c for c in self._channels}
        ids = dict(bookmark.record_ids)
        for e in events:
            channel = by_lower.get(e.channel.lower())
            if channel is not None and e.record_id is not None and e.record_id > ids.get(channel, 0):
                ids[channel] = e.record_id
        if ids == dict(bookmark.record_ids):
            return bookmark
        return Bookmark(host=bookmark.host, record_ids=ids, status=bookmark.status, taken_at=utcnow())
