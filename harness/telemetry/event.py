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
        those to TelemetryError with the file and line)."""
        t = datetime.fromisoformat(str(d["time"]).replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        fields = d.get("fields") or {}
        if not isinstance(fields, Mapping):
            raise TypeError("fields must be an object")
        return cls(
            channel=str(d["channel"]),
            provider=str(d.get("provider") or ""),
            event_id=int(d["event_id"]),
            version=int(d.get("version") or 0),
            record_id=None if d.get("record_id") is None else int(d["record_id"]),
            time=t.astimezone(UTC),
            computer=str(d.get("computer") or ""),
            user_sid=None if d.get("user_sid") is None else str(d["user_sid"]),
            pid=None if d.get("pid") is None else int(d["pid"]),
            tid=None if d.get("tid") is None else int(d["tid"]),
            fields={str(k): "" if v is None else str(v) for k, v in fields.items()},
            raw=None if d.get("raw") is None else str(d["raw"]),
            origin=None if d.get("origin") is None else str(d["origin"]),
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        return cls.from_dict(json.loads(line))
