"""The one normalized event model, and its JSON-lines form (the project's own telemetry format).

Every reader (XML, EVTX, JSON shapes) produces ``Event``; every consumer (attribution, detectors,
verdicts, reports) reads only ``Event``. ``fields`` keeps EventData/UserData ``Name -> value`` in
document order, values always strings (absent values are absent keys, empty values are "").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SYSMON = "Microsoft-Windows-Sysmon/Operational"
SECURITY = "Security"
POWERSHELL_OPERATIONAL = "Microsoft-Windows-PowerShell/Operational"
WINDOWS_POWERSHELL = "Windows PowerShell"
SYSTEM = "System"

#: Version tag of the normalized JSONL form; bump when the keys change.
JSONL_FORMAT = "atomiclab.event/1"


@dataclass(frozen=True, slots=True, eq=True)
class Event:
    """One Windows event, normalized.

    ``time`` is UTC-aware. ``raw`` is the source text (XML or JSON) kept for evidence; it may be None
    when the caller asked readers not to keep it. ``origin`` says where the event was read from (a
    file path, or ``host:channel``) and is not part of the event's identity.
    """

    channel: str
    provider: str
    event_id: int
    time: datetime
    computer: str
    fields: Mapping[str, str] = field(default_factory=dict)
    version: int = 0
    record_id: int | None = None
    user_sid: str | None = None
    pid: int | None = None
    tid: int | None = None
    raw: str | None = field(default=None, compare=False)
    origin: str | None = field(default=None, compare=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        """A field by exact name (EventData names are case-sensitive in Windows)."""
        return self.fields.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": JSONL_FORMAT,
            "channel": self.channel,
            "provider": self.provider,
            "event_id": self.event_id,
            "version": self.version,
            "record_id": self.record_id,
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "computer": self.computer,
            "user_sid": self.user_sid,
            "pid": self.pid,
            "tid": self.tid,
            "fields": dict(self.fields),
            "raw": self.raw,
            "origin": self.origin,
        }

    def to_json(self) -> str:
        """One line of the normalized JSONL form."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """Inverse of ``to_dict``. Raises KeyError/ValueError/TypeError on bad input (readers map
        those to TelemetryError with the file and line).

        The ingest hot path (one call per JSONL line): values already of the right type are taken
        as they are, conversions happen only for the others, with the same outcome as converting
        every value (tests pin it to that reference)."""
        t_text = d["time"]
        t = datetime.fromisoformat((t_text if t_text.__class__ is str else str(t_text)).replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        elif t.tzinfo is not UTC:
            t = t.astimezone(UTC)
        fields = d.get("fields") or {}
        if fields.__class__ is dict and all(v.__class__ is str for v in fields.values()):
            fields = dict(fields)  # JSON keys are strings: nothing to convert
        elif isinstance(fields, Mapping):
            fields = {str(k): "" if v is None else str(v) for k, v in fields.items()}
        else:
            raise TypeError("fields must be an object")
        get = d.get
        channel = d["channel"]
        event_id = d["event_id"]
        provider = get("provider") or ""
        version = get("version") or 0
        record_id = get("record_id")
        computer = get("computer") or ""
        user_sid = get("user_sid")
        pid = get("pid")
        tid = get("tid")
        raw = get("raw")
        origin = get("origin")
        return _new_event(
            channel if channel.__class__ is str else str(channel),
            provider if provider.__class__ is str else str(provider),
            event_id if event_id.__class__ is int else int(event_id),
            t,
            computer if computer.__class__ is str else str(computer),
            fields,
            version if version.__class__ is int else int(version),
            record_id if record_id is None or record_id.__class__ is int else int(record_id),
            user_sid if user_sid is None or user_sid.__class__ is str else str(user_sid),
            pid if pid is None or pid.__class__ is int else int(pid),
            tid if tid is None or tid.__class__ is int else int(tid),
            raw if raw is None or raw.__class__ is str else str(raw),
            origin if origin is None or origin.__class__ is str else str(origin),
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        return cls.from_dict(json.loads(line))


def _slot_setters() -> Any:
    names = tuple(Event.__dataclass_fields__)
    expected = ("channel", "provider", "event_id", "time", "computer", "fields", "version", "record_id",
                "user_sid", "pid", "tid", "raw", "origin")
    if names != expected:  # _new_event fills the slots by position: a new field must be added there
        raise RuntimeError(f"Event fields changed: {names}")
    return tuple(getattr(Event, name).__set__ for name in names)


(_S_CHANNEL, _S_PROVIDER, _S_EVENT_ID, _S_TIME, _S_COMPUTER, _S_FIELDS, _S_VERSION, _S_RECORD_ID, _S_USER_SID,
 _S_PID, _S_TID, _S_RAW, _S_ORIGIN) = _slot_setters()


def _new_event(channel: str, provider: str, event_id: int, time: datetime, computer: str,
               fields: Mapping[str, str], version: int, record_id: int | None, user_sid: str | None,
               pid: int | None, tid: int | None, raw: str | None, origin: str | None) -> Event:
    """The Event ``Event(...)`` builds from values already of the right types, at about half the
    cost: the slots are filled directly (the frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` for each field)."""
    e = object.__new__(Event)
    _S_CHANNEL(e, channel)
    _S_PROVIDER(e, provider)
    _S_EVENT_ID(e, event_id)
    _S_TIME(e, time)
    _S_COMPUTER(e, computer)
    _S_FIELDS(e, fields)
    _S_VERSION(e, version)
    _S_RECORD_ID(e, record_id)
    _S_USER_SID(e, user_sid)
    _S_PID(e, pid)
    _S_TID(e, tid)
    _S_RAW(e, raw)
    _S_ORIGIN(e, origin)
    return e
