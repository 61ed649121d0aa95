"""JSON records -> Event, for every JSON shape met in practice.

``event_from_record(record)`` recognizes, per record:
 * the project's normalized form (``"format": "atomiclab.event/1"`` or channel/event_id/fields keys);
 * evtx-rs / evtx_dump JSON (``Event.System`` / ``Event.EventData``) in its three attribute styles:
   ``X_attributes`` siblings (``separate_json_attributes``), ``#attributes`` children, and the
   xmltodict style (``@Name`` / ``#text``) that atomic-evtx's ``json/`` exports use;
 * Winlogbeat / Elastic (``winlog.channel``, ``winlog.event_id``, ``winlog.event_data`` ...);
 * NXLog / OTRF Security-Datasets flat records (Channel, EventID, Hostname, TimeCreated or
   @timestamp, event data as top-level keys);
 * Endgame eqllib flattened Sysmon records (``EventId`` + Sysmon fields, no channel or host: the
   channel is Sysmon's and the time is the record's UtcTime).
Returns None for a record of no known shape; raises ValueError/TypeError/KeyError for a record of
a known shape that is missing what an event needs (callers count and report those).
"""

from __future__ import annotations

from collections.abc import Mapping
from sys import intern
from typing import Any

from harness.telemetry.event import JSONL_FORMAT, SYSMON, Event
from harness.telemetry.readers.common import (
    canonical_channel,
    optional_int,
    parse_epoch_or_time,
    scalar_text,
)


def _attr(system: Mapping[str, Any], element: str, attribute: str) -> Any:
    """An attribute of a System child in any of the three evtx JSON attribute styles."""
    separate = system.get(element + "_attributes")
    if isinstance(separate, Mapping):
        return separate.get(attribute)
    value = system.get(element)
    if isinstance(value, Mapping):
        nested = value.get("#attributes")
        if isinstance(nested, Mapping):
            return nested.get(attribute)
        return value.get("@" + attribute)
    return None


def _text(system: Mapping[str, Any], element: str) -> Any:
    value = system.get(element)
    if isinstance(value, Mapping):
        for key in ("#text", "#value", "value"):
            if key in value:
                return value[key]
        return None
    return value


def _leaves(data: Mapping[str, Any], fields: dict[str, str]) -> None:
    """UserData-like nested objects as leaf ``name -> text`` (attribute entries skipped)."""
    for key, value in data.items():
        if key.endswith("_attributes") or key.startswith(("#", "@")):
            continue
        if isinstance(value, Mapping):
            _leaves(value, fields)
        else:
            fields[intern(key)] = scalar_text(value)  # field names repeat in every event: held once


def _event_data(data: Any, fields: dict[str, str]) -> None:
    if data is None:
        return
    if not isinstance(data, Mapping):
        fields["param1"] = scalar_text(data)
        return
    for key, value in data.items():
        if key == "Data":
            _data_items(value, fields)
        elif key == "Binary":
            if value:
                fields["Binary"] = scalar_text(value)
        elif key.endswith("_attributes") or key.startswith(("#", "@")):
            continue
        else:
            fields[intern(key)] = scalar_text(value)


def _data_items(value: Any, fields: dict[str, str]) -> None:
    """``EventData.Data`` in its shapes: named items (xmltodict ``@Name``/``#text``), or unnamed
    values (a list, ``{"#text": [...]}``, or one string) named param1..N like the XML reader does."""
    if isinstance(value, Mapping):
        if "@Name" in value:
            fields[str(value["@Name"])] = scalar_text(value.get("#text"))
            return
        value = value.get("#text")
    items = value if isinstance(value, list) else [value]
    for position, item in enumerate(items, start=1):
        if isinstance(item, Mapping) and "@Name" in item:
            fields[str(item["@Name"])] = scalar_text(item.get("#text"))
        elif isinstance(item, Mapping):
            fields[f"param{position}"] = scalar_text(item.get("#text"))
        else:
            fields[f"param{position}"] = scalar_text(item)


def from_evtx_json(record: Mapping[str, Any], *, origin: str | None, raw: str | None) -> Event:
    """``{"Event": {"System": ..., "EventData"|"UserData": ...}}`` (evtx-rs, evtx_dump, xmltodict)."""
    event = record["Event"]
    system = event["System"]
    fields: dict[str, str] = {}
    if "EventData" in event:
        _event_data(event["EventData"], fields)
    user_data = event.get("UserData")
    if isinstance(user_data, Mapping):
        _leaves(user_data, fields)
    provider = _attr(system, "Provider", "Name") or _attr(system, "Provider", "EventSourceName") or ""
    time_value = _attr(system, "TimeCreated", "SystemTime")
    if time_value is None:
        raise ValueError("no System.TimeCreated.SystemTime")
    record_id = optional_int(_text(system, "EventRecordID"))
    return Event(
        channel=canonical_channel(scalar_text(_text(system, "Channel"))),
        provider=str(provider),
        event_id=int(_text(system, "EventID")),
        time=parse_epoch_or_time(time_value),
        computer=scalar_text(_text(system, "Computer")),
        fields=fields,
        version=optional_int(_text(system, "Version")) or 0,
        record_id=record_id,
        user_sid=_attr(system, "Security", "UserID"),
        pid=optional_int(_attr(system, "Execution", "ProcessID")),
        tid=optional_int(_attr(system, "Execution", "ThreadID")),
        raw=raw,
        origin=origin,
    )


def from_winlogbeat(record: Mapping[str, Any], *, origin: str | None, raw: str | None) -> Event:
    """Winlogbeat / Elastic Agent documents (ECS ``winlog.*``)."""
    winlog = record["winlog"]
    fields: dict[str, str] = {}
    for key in ("event_data", "user_data"):
        data = winlog.get(key)
        if isinstance(data, Mapping):
            _leaves(data, fields)
    event_id = winlog.get("event_id")
    if event_id is None:
        event_id = (record.get("event") or {}).get("code")
    process = winlog.get("process") or {}
    thread = process.get("thread") or {}
    user = winlog.get("user") or {}
    host = record.get("host") or {}
    time_value = record.get("@timestamp")
    if time_value is None:
        time_value = (record.get("event") or {}).get("created")
    return Event(
        channel=canonical_channel(str(winlog.get("channel") or "")),
        provider=intern(str(winlog.get("provider_name") or "")),
        event_id=int(event_id),
        time=parse_epoch_or_time(time_value),
        computer=intern(str(winlog.get("computer_name") or host.get("name") or host.get("hostname") or "")),
        fields=fields,
        version=optional_int(winlog.get("version")) or 0,
        record_id=optional_int(winlog.get("record_id")),
        user_sid=user.get("identifier"),
        pid=optional_int(process.get("pid")),
        tid=optional_int(thread.get("id")),
        raw=raw,
        origin=origin,
    )


#: Keys NXLog im_msvistalog (and the Logstash hop OTRF used) adds around the event data.
NXLOG_SYSTEM_KEYS = frozenset(
    {
        "EventID", "Channel", "Hostname", "TimeCreated", "@timestamp", "EventTime", "EventReceivedTime",
        "SourceName", "ProviderName", "ProviderGuid", "Version", "Level", "Task", "Opcode", "OpcodeValue",
        "Keywords", "RecordNumber", "EventRecordID", "ExecutionProcessID", "ThreadID", "UserID",
        "AccountName", "AccountType", "Domain", "Severity", "SeverityValue", "EventType", "Category",
        "Message", "SourceModuleName", "SourceModuleType", "@version", "host", "port", "tags",
        "ActivityID", "RelatedActivityID", "ERROR_EVT_UNRESOLVED",
    }
)  # fmt: skip


def from_flat(record: Mapping[str, Any], *, origin: str | None, raw: str | None) -> Event:
    """NXLog / OTRF Security-Datasets flat records."""
    fields = {intern(k): scalar_text(v) for k, v in record.items() if k not in NXLOG_SYSTEM_KEYS}
    time_value = None
    for key in ("TimeCreated", "@timestamp", "EventTime", "UtcTime"):
        if record.get(key):
            time_value = record[key]
            break
    if time_value is None:
        raise ValueError("no TimeCreated/@timestamp/EventTime")
    host = record.get("Hostname")
    if host is None and isinstance(record.get("host"), str):
        host = record["host"]
    return Event(
        channel=canonical_channel(str(record.get("Channel") or "")),
        provider=str(record.get("SourceName") or record.get("ProviderName") or ""),
        event_id=int(record["EventID"]),
        time=parse_epoch_or_time(time_value),
        computer=str(host or ""),
        fields=fields,
        version=optional_int(record.get("Version")) or 0,
        record_id=optional_int(record.get("RecordNumber", record.get("EventRecordID"))),
        user_sid=None if record.get("UserID") is None else str(record["UserID"]),
        pid=optional_int(record.get("ExecutionProcessID")),
        tid=optional_int(record.get("ThreadID")),
        raw=raw,
        origin=origin,
    )


def from_eqllib(record: Mapping[str, Any], *, origin: str | None, raw: str | None) -> Event:
    """Endgame eqllib flattened Sysmon records: ``EventId`` plus the Sysmon fields."""
    fields = {intern(k): scalar_text(v) for k, v in record.items() if k != "EventId"}
    return Event(
        channel=SYSMON,
        provider="Microsoft-Windows-Sysmon",
        event_id=int(record["EventId"]),
        time=parse_epoch_or_time(record["UtcTime"]),
        computer="",
        fields=fields,
        raw=raw,
        origin=origin,
    )


def event_from_record(record: Any, *, origin: str | None = None, raw: str | None = None) -> Event | None:
    """The Event of one decoded JSON record, or None when its shape is not one of ours."""
    if record.__class__ is not dict and not isinstance(record, Mapping):  # dict first: the ABC check costs
        return None
    if record.get("format") == JSONL_FORMAT or ("event_id" in record and "fields" in record and "channel" in record):
        event = Event.from_dict(record)
        return event if origin is None or event.origin else _with_origin(event, origin)
    inner = record.get("Event")
    if isinstance(inner, Mapping) and "System" in inner:
        return from_evtx_json(record, origin=origin, raw=raw)
    if isinstance(record.get("winlog"), Mapping):
        return from_winlogbeat(record, origin=origin, raw=raw)
    if "EventID" in record and ("Channel" in record or "SourceName" in record):
        return from_flat(record, origin=origin, raw=raw)
    if "EventId" in record and "UtcTime" in record:
        return from_eqllib(record, origin=origin, raw=raw)
    return None


def _with_origin(event: Event, origin: str) -> Event:
    from dataclasses import replace

    return replace(event, origin=origin)
