"""How a normalized ``Event`` looks to Sumo Logic: metadata, ``_raw`` and FER-extracted fields.

A Sumo Installed Collector's Windows Event Log source sends each event as JSON (top-level
``EventID`` as a string, ``Computer``, ``Channel``, the event data in an ``EventData`` object);
``_sourceCategory`` is whatever the source was configured with and ``_sourceHost`` is filled from
``Computer``. Top-level fields such as ``CommandLine`` exist only when a Field Extraction Rule (FER)
extracts them; ``MessageConfig`` models that FER (by default: the header fields and every EventData
name), so no query assumption is hard-coded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC

from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, Event

#: Default source categories: the ones the published T1046 scope line selects.
DEFAULT_CATEGORIES: Mapping[str, str] = {
    SYSMON: "Windows/Sysmon",
    SECURITY: "WinEventLog/Security",
    POWERSHELL_OPERATIONAL: "Windows/PowerShell",
}

#: Metadata fields every message has (lower-case keys; Sumo field names are case-insensitive).
METADATA = ("_sourcecategory", "_sourcehost", "_messagetime", "_receipttime", "_raw", "_collector",
            "_source", "_sourcename", "_messagecount")


@dataclass(frozen=True, slots=True)
class MessageConfig:
    """The collector source and FER the local engine pretends exist.

    ``categories`` maps a channel (compared case-insensitively) to ``_sourceCategory``; other
    channels get ``category_prefix + channel``. ``header_fields`` are the top-level JSON keys the FER
    extracts; ``eventdata_fields`` says whether every EventData name is extracted (or, when a
    frozenset, only those names).
    """

    categories: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CATEGORIES))
    category_prefix: str = "Windows/"
    collector: str = "atomiclab"
    source_name: str = "Windows Event Log"
    header_fields: tuple[str, ...] = ("EventID", "Channel", "Computer")
    eventdata_fields: bool | frozenset[str] = True
    #: A plain-text source (syslog, application logs): ``_raw`` is this event field's text as is, not
    #: the Windows Event Log JSON. Used for documented examples written against text log lines.
    raw_field: str | None = None

    def category(self, channel: str) -> str:
        low = channel.lower()
        for name, cat in self.categories.items():
            if name.lower() == low:
                return cat
        return self.category_prefix + channel

    def header_value(self, ev: Event, name: str) -> str | None:
        """A header field of the Windows Event Log JSON (None when this source has no such key)."""
        low = name.lower()
        if low == "eventid":
            return str(ev.event_id)
        if low == "channel":
            return ev.channel
        if low == "computer":
            return ev.computer
        if low == "eventrecordid":
            return None if ev.record_id is None else str(ev.record_id)
        if low == "provider":
            return ev.provider
        return None

    def extracts(self, eventdata_name: str) -> bool:
        if self.eventdata_fields is True:
            return True
        if self.eventdata_fields is False:
            return False
        return eventdata_name in self.eventdata_fields


def message_time_ms(ev: Event) -> int:
    """``_messageTime``: epoch milliseconds of the event's own timestamp."""
    t = ev.time if ev.time.tzinfo is not None else ev.time.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def raw_json(ev: Event) -> str:
    """``_raw`` as the Windows Event Log source sends it (JSON, EventID as a string).

    The rendered ``Message`` text is included only when the event carries one in a ``Message``
    field (the normalized model keeps no rendered message otherwise).
    """
    doc: dict[str, object] = {
        "EventID": str(ev.event_id),
        "Computer": ev.computer,
        "Channel": ev.channel,
        "TimeCreated": ev.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if ev.record_id is not None:
        doc["EventRecordID"] = str(ev.record_id)
    if ev.provider:
        doc["Provider"] = ev.provider
    if "Message" in ev.fields:
        doc["Message"] = ev.fields["Message"]
    doc["EventData"] = dict(ev.fields)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def to_message(ev: Event, config: MessageConfig | None = None) -> dict[str, object]:
    """The whole Sumo message of ``ev`` with its display names (for inspection and ``json auto``).

    The evaluator does not build this per event: it reads the same values lazily, field by field.
    """
    cfg = config or MessageConfig()
    msg: dict[str, object] = {
        "_sourceCategory": cfg.category(ev.channel),
        "_sourceHost": ev.computer,
        "_messageTime": message_time_ms(ev),
        "_collector": cfg.collector,
        "_source": cfg.source_name,
        "_sourceName": ev.channel,
        "_raw": raw_json(ev),
    }
    for name in cfg.header_fields:
        v = cfg.header_value(ev, name)
        if v is not None:
            msg[name] = v
    for name, value in ev.fields.items():
        if cfg.extracts(name) and name.lower() not in {h.lower() for h in cfg.header_fields}:
            msg[name] = value
    return msg
