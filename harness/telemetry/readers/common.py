"""Small pieces every reader shares: read statistics, limits, time and channel normalization.

Everything here is pure (no I/O) and fast, because it runs once per event on hot paths.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, SYSTEM, WINDOWS_POWERSHELL, Event

#: Largest accepted event (sum of its field values, in characters). Real events stay far below:
#: a 4104 script block part is at most ~32 K characters, a Sysmon command line at most 32 K.
MAX_EVENT_CHARS = 4 * 1024 * 1024

#: Longest accepted JSON line or JSON record (characters): an event's data cap plus room for its
#: JSON escaping and the keys around it. A longer line is skipped and counted, never held whole.
MAX_RECORD_CHARS = 2 * MAX_EVENT_CHARS

#: Most bytes a compressed stream (gzip, zip member) may inflate to; a bomb is hostile input.
MAX_DECOMPRESSED_BYTES = 4 << 30


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Resource caps a reader enforces on hostile input (tests pass small ones).

    ``max_record_chars``: one JSON line or record; ``max_decompressed_bytes``: what one gzip
    stream or zip member may inflate to (a TelemetryError naming the file beyond it).
    """

    max_record_chars: int = MAX_RECORD_CHARS
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES


DEFAULT_LIMITS = ReadLimits()

#: How many problem descriptions a ReadStats keeps (the counters keep counting past it).
MAX_PROBLEMS = 100


@dataclass(slots=True)
class ReadStats:
    """Counters a caller passes to a reader to learn what was read and what was not.

    Readers only ever add to these; one instance may be shared across several files.
    ``damaged_chunks`` counts EVTX chunks that could not be parsed (their records are lost),
    ``skipped_records`` counts single records/lines/objects that could not be turned into an Event.
    ``problems`` keeps the first MAX_PROBLEMS reasons as ``"<origin>: <reason>"`` lines.
    """

    events: int = 0
    damaged_chunks: int = 0
    skipped_records: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, origin: str, reason: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{origin}: {reason}")

    @property
    def damaged(self) -> bool:
        return bool(self.damaged_chunks or self.skipped_records)

    def damage_line(self, origin: str) -> str:
        """One line saying what of ``origin`` could not be read (these stats being of that file
        alone), led by the place of the first problem (``FILE`` or ``FILE:LINE``)."""
        parts = []
        if self.damaged_chunks:
            parts.append(f"{self.damaged_chunks} damaged chunk(s)")
        if self.skipped_records:
            parts.append(f"{self.skipped_records} skipped record(s)")
        parts.append(f"{self.events} event(s) read")
        first = " ".join(self.problems[0].split())[:300] if self.problems else ""
        if not first.startswith(origin):
            first = f"{origin}: {first or 'damaged'}"
        return f"{first} ({', '.join(parts)})"


# Windows channel names are case-insensitive; some exporters lower-case them (OTRF smbexec has both
# "Security" and "security"). Known channels are mapped to their canonical spelling so that
# consumers can compare with ``==``.
_CANONICAL_CHANNELS = {
    name.lower(): name
    for name in (
        SYSMON,
        SECURITY,
        SYSTEM,
        POWERSHELL_OPERATIONAL,
        WINDOWS_POWERSHELL,
        "Application",
        "Microsoft-Windows-WMI-Activity/Operational",
        "Microsoft-Windows-TaskScheduler/Operational",
        "Microsoft-Windows-Windows Defender/Operational",
        "Microsoft-Windows-WinRM/Operational",
        "Microsoft-Windows-Bits-Client/Operational",
        "Microsoft-Windows-DNS-Client/Operational",
    )
}


def canonical_channel(name: str) -> str:
    """The canonical spelling of a known channel name; unknown names are returned unchanged."""
    return _CANONICAL_CHANNELS.get(name.lower(), name)


_TIME_RE = re.compile(r"\s*(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?\s*(Z|z|[+-]\d\d:?\d\d)?\s*$")


@functools.lru_cache(maxsize=64)
def _zone(zone: str) -> timezone:
    """The fixed offset of a ``+hh:mm`` / ``-hhmm`` suffix (a log uses one or two)."""
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def parse_time(text: str) -> datetime:
    """Parse the timestamp shapes Windows exporters write, as a UTC-aware datetime.

    Accepts ``2024-10-22T14:46:21.9615373Z`` (7 fractional digits, as Windows writes them: extra
    digits are truncated to microseconds), ``2024-10-22 14:46:21.961`` (no zone: taken as UTC, which
    is what Sysmon UtcTime and evtx exports mean) and explicit offsets. Raises ValueError otherwise.
    """
    try:
        # The C parser handles every shape above (and truncates a 7th fractional digit) in ~0.2 us.
        t = datetime.fromisoformat(text)
    except ValueError:
        t = None
    if t is not None:
        if t.tzinfo is None:
            return t.replace(tzinfo=UTC)
        return t if t.tzinfo is UTC else t.astimezone(UTC)
    m = _TIME_RE.match(text)
    if m is None:
        raise ValueError(f"unrecognized timestamp {text[:40]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac + "000000")[:6]) if frac else 0
    tz: timezone = UTC
    if zone and zone not in ("Z", "z"):
        tz = _zone(zone)
    t = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz)
    return t if tz is UTC else t.astimezone(UTC)


def parse_epoch_or_time(value: object) -> datetime:
    """Like parse_time, but also accepts epoch seconds/milliseconds as numbers."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        try:
            seconds = value / 1000.0 if value > 10_000_000_000 else float(value)
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:  # 1e300, -1e20, NaN: not a time
            raise ValueError(f"timestamp {value!r} is out of range") from exc
    return parse_time(str(value))


def scalar_text(value: object) -> str:
    """A field value as Windows XML would render it: booleans lower-case, None as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(scalar_text(v) for v in value)
    return str(value)


def optional_int(value: object) -> int | None:
    """An int from a number or decimal/hex string; None when absent or unparseable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text, 16) if text[:2] in ("0x", "0X") else int(text)
    except ValueError:
        return None


_EVENT_FIELDS = (
    "channel", "provider", "event_id", "time", "computer", "fields", "version", "record_id", "user_sid",
    "pid", "tid", "raw", "origin",
)  # fmt: skip


def _event_constructor() -> tuple[Callable[..., Event], Any]:
    """A positional Event constructor for the readers' hot paths.

    The frozen dataclass ``__init__`` sets each of the 13 slots through ``object.__setattr__``
    (~2.7 us per event). Here a plain twin class with the very same ``__slots__`` is filled with
    ordinary (specialized, ~10 ns) slot stores and then given Event's class: the identical object
    in ~0.3 us. ``__class__`` assignment is allowed exactly when the two layouts match, which is
    checked once here; if Event ever changes shape (fields, order, ``__post_init__``, not slotted),
    the regular constructor is used instead.
    """
    names = tuple(f.name for f in dataclasses.fields(Event))
    descriptors = [Event.__dict__.get(name) for name in names]

    def regular(*values: Any) -> Event:
        return Event(**dict(zip(_EVENT_FIELDS, values, strict=True)))

    if (
        names != _EVENT_FIELDS
        or hasattr(Event, "__post_init__")
        or tuple(getattr(Event, "__slots__", ())) != names
        or not all(type(d).__name__ == "member_descriptor" for d in descriptors)
    ):
        return regular, None
    twin: Any = type("_EventTwin", (), {"__slots__": names, "__module__": __name__})
    new = object.__new__

    def fast(
        channel: str, provider: str, event_id: int, time: datetime, computer: str, fields: Mapping[str, str],
        version: int, record_id: int | None, user_sid: str | None, pid: int | None, tid: int | None,
        raw: str | None, origin: str | None,
    ) -> Event:  # fmt: skip
        event = new(twin)
        event.channel = channel
        event.provider = provider
        event.event_id = event_id
        event.time = time
        event.computer = computer
        event.fields = fields
        event.version = version
        event.record_id = record_id
        event.user_sid = user_sid
        event.pid = pid
        event.tid = tid
        event.raw = raw
        event.origin = origin
        event.__class__ = Event
        return event  # type: ignore[no-any-return]

    try:
        probe = ("c", "p", 1, datetime(2000, 1, 1, tzinfo=UTC), "h", {"k": "v"}, 2, 3, "s", 4, 5, "r", "o")
        made, reference = fast(*probe), regular(*probe)
        if type(made) is not Event or made != reference or made.raw != "r" or made.origin != "o":
            return regular, None
    except TypeError:  # pragma: no cover - layouts not assignable on this interpreter
        return regular, None
    return fast, twin


#: ``make_event(channel, provider, event_id, time, computer, fields, version, record_id, user_sid,
#: pid, tid, raw, origin)`` -> Event, equal to ``Event(...)`` with the same values.
make_event, EVENT_TWIN = _event_constructor()
#: ``EVENT_TWIN`` (None when make_event is the regular constructor): a class with Event's slots; an
#: instance whose 13 slots are all set becomes that Event by ``obj.__class__ = Event``.
