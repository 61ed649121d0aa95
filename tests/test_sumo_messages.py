"""The Sumo message model of an Event: metadata, _raw JSON and FER fields, all configurable."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from harness.detect.sumo.detector import SumoDetector
from harness.detect.sumo.messages import MessageConfig, raw_json, to_message
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, Event

T = datetime(2024, 10, 22, 14, 46, 21, 958000, tzinfo=UTC)


def ev(channel: str = SYSMON, eid: int = 1, **fields: str) -> Event:
    return Event(channel=channel, provider="prov", event_id=eid, time=T, computer="Server002", fields=fields,
                 record_id=42)


def test_default_categories_are_what_the_t1046_scope_selects() -> None:
    cfg = MessageConfig()
    assert cfg.category(SYSMON) == "Windows/Sysmon"
    assert cfg.category(SECURITY) == "WinEventLog/Security"
    assert cfg.category("security") == "WinEventLog/Security"  # channel case varies in real exports
    assert cfg.category(POWERSHELL_OPERATIONAL) == "Windows/PowerShell"
    assert cfg.category("System") == "Windows/System"


def test_message_has_metadata_header_and_every_eventdata_name() -> None:
    msg = to_message(ev(Image="C:\\x.exe", CommandLine="x"))
    assert msg["_sourceCategory"] == "Windows/Sysmon"
    assert msg["_sourceHost"] == "Server002"
    assert msg["_messageTime"] == 1729608381958
    assert (msg["EventID"], msg["Channel"], msg["Computer"]) == ("1", SYSMON, "Server002")
    assert (msg["Image"], msg["CommandLine"]) == ("C:\\x.exe", "x")


def test_raw_is_the_windows_event_log_source_json() -> None:
    raw = json.loads(raw_json(ev(Image="a", Message="rendered")))
    assert raw["EventID"] == "1" and isinstance(raw["EventID"], str)
    assert raw["Computer"] == "Server002" and raw["Channel"] == SYSMON
    assert raw["EventData"] == {"Image": "a", "Message": "rendered"}
    assert raw["Message"] == "rendered" and raw["EventRecordID"] == "42"


def test_fer_can_be_restricted_so_unextracted_fields_are_null() -> None:
    cfg = MessageConfig(eventdata_fields=frozenset({"Image"}))
    assert "CommandLine" not in to_message(ev(Image="a", CommandLine="b"), cfg)
    det = SumoDetector("| fields Image, CommandLine", cfg)
    assert [dict(r) for r in det.evaluate([ev(Image="a", CommandLine="b")]).rows] == [
        {"Image": "a", "CommandLine": None}]
    # the data is still in _raw, where json can reach it
    det = SumoDetector('| json "EventData.CommandLine" as c | fields c', cfg)
    assert [dict(r) for r in det.evaluate([ev(Image="a", CommandLine="b")]).rows] == [{"c": "b"}]


def test_metadata_fields_are_readable_in_queries() -> None:
    det = SumoDetector("| fields _sourceCategory, _sourceHost, _messageTime, _collector, _sourceName")
    (row,) = det.evaluate([ev(SECURITY, 4688)]).rows
    assert dict(row) == {"_sourceCategory": "WinEventLog/Security", "_sourceHost": "Server002",
                         "_messageTime": 1729608381958, "_collector": "atomiclab", "_sourceName": SECURITY}
