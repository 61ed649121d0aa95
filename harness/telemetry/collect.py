"""Collecting events from a live host: bookmark before a test, fetch what came after.

``TelemetrySource`` is the seam (the runner receives one); ``WevtutilSource`` implements it over any
Transport with ``wevtutil qe``: the bookmark is each channel's newest EventRecordID
(``/c:1 /rd:true``), collection queries ``*[System[EventRecordID>N]]`` page by page (``/c:<page>``,
oldest first) until a page comes back short. Remote output is hostile input: it is parsed with the
safe XML reader. A channel that does not exist on the host (wevtutil error 15007) or is empty is
reported in the result, never an exception.
"""

from __future__ import annotations

import enum
import re
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
        if result.timed_out:
            raise TelemetryError(
                f"wevtutil timed out after {self._timeout:g}s reading {channel!r}", source=self._transport.host
            )
        if result.exit_code != 0:
            if _channel_not_found(result):
                return None
            first = (result.stderr or result.stdout).strip().splitlines()[:1]
            raise TelemetryError(
                f"wevtutil failed reading {channel!r} (exit {result.exit_code}): {first[0] if first else ''}",
                source=self._transport.host,
            )
        return result

    def _parse(self, text: str, channel: str, stats: ReadStats) -> list[Event]:
        return list(
            parse_event_xml(text, origin=f"{self._transport.host}:{channel}", keep_raw=self._keep_raw, stats=stats)
        )

    def bookmark(self) -> Bookmark:
        record_ids: dict[str, int] = {}
        status: dict[str, ChannelStatus] = {}
        for channel in self._channels:
            result = self._run(f'wevtutil qe "{channel}" /c:1 /rd:true /f:xml', channel)
            if result is None:
                record_ids[channel] = 0
                status[channel] = ChannelStatus.MISSING
                continue
            events = self._parse(result.stdout, channel, ReadStats())
            newest = max((e.record_id or 0 for e in events), default=0)
            record_ids[channel] = newest
            status[channel] = ChannelStatus.OK if events else ChannelStatus.EMPTY
        return Bookmark(host=self._transport.host, record_ids=record_ids, status=status, taken_at=utcnow())

    def collect(self, bookmark: Bookmark) -> Collected:
        """Events after ``bookmark`` with each channel's status and count."""
        stats = ReadStats()
        events: list[Event] = []
        status: dict[str, ChannelStatus] = {}
        counts: dict[str, int] = {}
        for channel in self._channels:
            after = bookmark.record_ids.get(channel, 0)
            got = 0
            missing = False
            while True:
                command = (
                    f'wevtutil qe "{channel}" /q:"*[System[EventRecordID>{after}]]" '
                    f"/f:xml /e:Events /c:{self._page_size}"
                )
                result = self._run(command, channel)
                if result is None:
                    missing = True
                    break
                page = self._parse(result.stdout, channel, stats)
                events.extend(page)
                got += len(page)
                newest = max((e.record_id or 0 for e in page), default=after)
                # A short page is the last one; a full page that does not advance would loop forever.
                if len(page) < self._page_size or newest <= after:
                    break
                after = newest
            counts[channel] = got
            status[channel] = ChannelStatus.MISSING if missing else (ChannelStatus.OK if got else ChannelStatus.EMPTY)
        return Collected(events=tuple(events), status=status, counts=counts, stats=stats)

    def events_after(self, bookmark: Bookmark) -> list[Event]:
        return list(self.collect(bookmark).events)
