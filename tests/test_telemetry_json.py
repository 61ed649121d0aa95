"""JSON shapes, containers (gzip, zip), EVTX damage handling, auto-detection errors."""

from __future__ import annotations

import dataclasses
import gzip
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import TelemetryError
from harness.telemetry.event import SECURITY, SYSMON, Event
from harness.telemetry.readers import ReadStats, event_from_record, read_events

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T1046_10 = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"

# evtx-rs with separate_json_attributes (what `evtx_dump -o json --separate-json-attributes` writes)
EVTX_RS = {
    "Event": {
        "System": {
            "Provider_attributes": {"Name": "Microsoft-Windows-Security-Auditing"},
            "EventID": 4688,
            "Version": 2,
            "TimeCreated_attributes": {"SystemTime": "2021-10-22T13:39:55.123456Z"},
            "EventRecordID": 77,
            "Execution_attributes": {"ProcessID": 4, "ThreadID": 96},
            "Channel": "Security",
            "Computer": "FS03.offsec.lan",
            "Security": None,
        },
        "EventData": {"NewProcessId": "0xc9c", "NewProcessName": "C:\\Windows\\System32\\net.exe", "ProcessId": "0x1f4"},
    }
}
# evtx_dump default: "#attributes" children (the sigma regression-data .json files)
EVTX_DUMP = {
    "Event": {
        "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
        "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "EventID": 1,
            "Version": 5,
            "TimeCreated": {"#attributes": {"SystemTime": "2025-11-26T05:11:27.927693Z"}},
            "EventRecordID": 142649,
            "Execution": {"#attributes": {"ProcessID": 3544, "ThreadID": 4264}},
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": "swachchhanda",
            "Security": {"#attributes": {"UserID": "S-1-5-18"}},
        },
        "EventData": {"ProcessId": 10116, "CommandLine": "GRB_NET.exe  -m:scan", "Initiated": True, "RuleName": None},
    }
}
# xmltodict style (atomic-evtx json/ exports)
XMLTODICT = {
    "Event": {
        "System": {
            "Provider": {"@Name": "PowerShell"},
            "EventID": {"@Qualifiers": "0", "#text": "600"},
            "Version": "0",
            "TimeCreated": {"@SystemTime": "2024-10-22 14:46:23.6996110"},
            "EventRecordID": "1043",
            "Execution": {"@ProcessID": "0", "@ThreadID": "0"},
            "Channel": "Windows PowerShell",
            "Computer": "Server002",
            "Security": None,
        },
        "EventData": {"Data": [{"@Name": "A", "#text": "1"}, {"@Name": "B"}]},
    }
}
WINLOGBEAT = {
    "@timestamp": "2020-08-10T14:16:36.123Z",
    "host": {"name": "patsy"},
    "event": {"code": "4104"},
    "winlog": {
        "channel": "Microsoft-Windows-PowerShell/Operational",
        "event_id": 4104,
        "provider_name": "Microsoft-Windows-PowerShell",
        "record_id": 912,
        "computer_name": "PATSY",
        "process": {"pid": 5432, "thread": {"id": 7}},
        "user": {"identifier": "S-1-5-21-1-1001"},
        "version": 1,
        "event_data": {"MessageNumber": "1", "MessageTotal": "1", "ScriptBlockText": "Get-Service", "ScriptBlockId": "ab"},
    },
}
NXLOG = {
    "SourceName": "Microsoft-Windows-Security-Auditing",
    "Channel": "security",
    "Hostname": "DC01.pandalab.com",
    "TimeCreated": "2023-07-19T05:33:01.101Z",
    "@timestamp": "2023-07-19T05:33:01.101Z",
    "EventID": "4688",
    "Message": "A new process has been created.",
    "ExecutionProcessID": 4,
    "NewProcessId": "0x1820",
    "TokenElevationType": "%%1936",
    "Version": 2,
}
EQLLIB = {"Image": "C:\\WINDOWS\\system32\\NETSTAT.EXE", "ProcessId": "480", "UtcTime": "2018-12-04 00:42:45.727", "RuleName": None, "EventId": 1}


def test_evtx_rs_separate_attributes() -> None:
    event = event_from_record(EVTX_RS)
    assert event is not None
    assert (event.channel, event.event_id, event.version, event.record_id) == (SECURITY, 4688, 2, 77)
    assert (event.pid, event.tid, event.computer) == (4, 96, "FS03.offsec.lan")
    assert event.fields["NewProcessId"] == "0xc9c"


def test_evtx_dump_hash_attributes_and_scalar_rendering() -> None:
    event = event_from_record(EVTX_DUMP)
    assert event is not None
    assert (event.provider, event.pid, event.user_sid) == ("Microsoft-Windows-Sysmon", 3544, "S-1-5-18")
    assert event.fields == {"ProcessId": "10116", "CommandLine": "GRB_NET.exe  -m:scan", "Initiated": "true", "RuleName": ""}


def test_xmltodict_shape_with_naive_time_and_named_data() -> None:
    event = event_from_record(XMLTODICT)
    assert event is not None
    assert event.time == datetime(2024, 10, 22, 14, 46, 23, 699611, tzinfo=UTC)
    assert event.event_id == 600 and event.fields == {"A": "1", "B": ""}


def test_winlogbeat() -> None:
    event = event_from_record(WINLOGBEAT)
    assert event is not None
    assert (event.channel, event.event_id, event.pid, event.tid, event.computer) == (
        "Microsoft-Windows-PowerShell/Operational", 4104, 5432, 7, "PATSY")
    assert event.user_sid == "S-1-5-21-1-1001" and event.fields["ScriptBlockText"] == "Get-Service"


def test_nxlog_flat_canonicalizes_channel_and_keeps_only_event_data() -> None:
    event = event_from_record(NXLOG)
    assert event is not None
    assert event.channel == SECURITY  # "security" in the source
    assert (event.event_id, event.pid, event.computer) == (4688, 4, "DC01.pandalab.com")
    assert event.fields == {"NewProcessId": "0x1820", "TokenElevationType": "%%1936"}


def test_eqllib_flat_is_sysmon() -> None:
    event = event_from_record(EQLLIB)
    assert event is not None
    assert (event.channel, event.event_id, event.computer) == (SYSMON, 1, "")
    assert event.fields["Image"].endswith("NETSTAT.EXE") and "EventId" not in event.fields


def test_unknown_shape_is_none() -> None:
    assert event_from_record({"foo": 1}) is None
    assert event_from_record([1, 2]) is None


def _normalized(n: int) -> list[Event]:
    return [
        Event(channel=SYSMON, provider="p", event_id=1, time=datetime(2024, 1, 1, 0, 0, i, tzinfo=UTC),
              computer="h", fields={"CommandLine": f"cmd /c echo {i} ü"}, record_id=i, raw="<x/>")
        for i in range(n)
    ]  # fmt: skip


def test_normalized_jsonl_roundtrip(tmp_path: Path) -> None:
    events = _normalized(5)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")
    assert list(read_events(path)) == events
    assert all(e.origin is None or e.origin for e in read_events(path))


def test_json_array_concatenated_objects_and_jsonl_agree(tmp_path: Path) -> None:
    records = [EVTX_RS, EVTX_DUMP, XMLTODICT, WINLOGBEAT, NXLOG]
    (tmp_path / "a.json").write_text(json.dumps(records, indent=2))
    (tmp_path / "b.json").write_text("\n".join(json.dumps(r, indent=4) for r in records))
    (tmp_path / "c.json").write_text("\ufeff" + "\n".join(json.dumps(r) for r in records) + "\n\n")
    got = [list(read_events(tmp_path / n, keep_raw=False)) for n in ("a.json", "b.json", "c.json")]
    assert [e.event_id for e in got[0]] == [4688, 1, 600, 4104, 4688]
    assert got[0] == got[1] == got[2]


def test_gzip_and_zip_containers(tmp_path: Path) -> None:
    records = [EVTX_RS, NXLOG]
    payload = json.dumps(records).encode()
    (tmp_path / "x.json.gz").write_bytes(gzip.compress(payload))
    with zipfile.ZipFile(tmp_path / "x.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dir/", "")
        archive.writestr("dir/a.json", payload)
        archive.writestr("b.jsonl", "\n".join(json.dumps(r) for r in records))
    gz = list(read_events(tmp_path / "x.json.gz", keep_raw=False))
    zipped = list(read_events(tmp_path / "x.zip"))
    assert [e.event_id for e in gz] == [4688, 4688]
    assert len(zipped) == 4 and zipped[0].origin == f"{tmp_path / 'x.zip'}!dir/a.json"


def test_evtx_inside_zip(tmp_path: Path) -> None:
    source = T1046_10 / "T1046-10_Security.evtx"
    if not source.is_file():
        pytest.skip(f"recording {source} absent")
    with zipfile.ZipFile(tmp_path / "logs.zip", "w") as archive:
        archive.write(source, "Security.evtx")
    assert list(read_events(tmp_path / "logs.zip", keep_raw=False)) == list(read_events(source, keep_raw=False))


def test_damaged_evtx_chunk_is_skipped_and_counted(tmp_path: Path) -> None:
    source = PUBLIC / "evtx-attack-samples/AutomatedTestingTools/PanacheSysmon_vs_AtomicRedTeam01.evtx"
    if not source.is_file():
        pytest.skip(f"recording {source} absent")
    data = bytearray(source.read_bytes())
    second_chunk = 4096 + 65536  # file header, then 64 KiB chunks
    assert data[second_chunk : second_chunk + 8] == b"ElfChnk\x00"
    data[second_chunk : second_chunk + 8] = b"\0" * 8
    damaged = tmp_path / "damaged.evtx"
    damaged.write_bytes(bytes(data))
    stats = ReadStats()
    events = list(read_events(damaged, stats=stats))
    full = list(read_events(source, keep_raw=False))
    assert stats.damaged_chunks == 1 and stats.skipped_records == 0
    assert "chunk number 1" in stats.problems[0]
    assert 0 < len(events) < len(full) == 565
    assert stats.events == len(events)


def test_evtx_header_garbage_is_a_telemetry_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.evtx"
    bad.write_bytes(b"ElfFile\x00" + b"\xff" * 100)
    with pytest.raises(TelemetryError) as info:
        list(read_events(bad))
    assert str(bad) in str(info.value)


def test_errors_name_file_and_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    with pytest.raises(TelemetryError, match="format not recognized"):
        list(read_events(text))
    unknown = tmp_path / "other.jsonl"
    unknown.write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(TelemetryError, match="no known event shape"):
        list(read_events(unknown))
    truncated = tmp_path / "trunc.json"
    truncated.write_text(json.dumps([EVTX_RS, EVTX_RS])[:-40])
    # A cut-off array keeps the records before the cut and reports the damage, naming the file.
    stats = ReadStats()
    assert len(list(read_events(truncated, stats=stats))) == 1
    assert stats.skipped_records == 1 and stats.problems[0].startswith(str(truncated))
    badgz = tmp_path / "bad.json.gz"
    badgz.write_bytes(gzip.compress(b"[" + json.dumps(EVTX_RS).encode() + b"]")[:-12])
    with pytest.raises(TelemetryError):
        list(read_events(badgz))
    with pytest.raises(TelemetryError, match="directory"):
        list(read_events(tmp_path))
    with pytest.raises(TelemetryError, match="cannot open"):
        list(read_events(tmp_path / "absent.evtx"))


def test_empty_and_bom_only_files_have_no_events(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf")
    assert list(read_events(tmp_path / "empty.json")) == []
    assert list(read_events(tmp_path / "bom.json")) == []


def test_bad_jsonl_record_of_known_shape_is_counted(tmp_path: Path) -> None:
    broken = dict(NXLOG, EventID="not-a-number")
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(NXLOG) + "\n" + json.dumps(broken) + "\n")
    stats = ReadStats()
    assert len(list(read_events(path, stats=stats))) == 1
    assert stats.skipped_records == 1 and stats.problems[0].startswith(f"{path}:2: ")


def test_xml_file_streamed_in_small_chunks_equals_whole(tmp_path: Path) -> None:
    from harness.telemetry.readers.winxml import parse_event_xml, read_xml_stream

    source = T1046_10 / "T1046-10_Windows PowerShell.evtx"
    if not source.is_file():
        pytest.skip(f"recording {source} absent")
    import evtx

    xml = "".join(r["data"] for r in evtx.PyEvtxParser(str(source)).records())
    path = tmp_path / "ps.xml"
    path.write_text(xml, encoding="utf-16")
    whole = list(parse_event_xml(xml, keep_raw=False))
    with path.open("rb") as fh:
        chunked = list(read_xml_stream(fh, origin="x", keep_raw=False, chunk_size=97))
    assert len(whole) == 8 and chunked == whole


def test_fast_event_constructor_builds_equal_events() -> None:
    from harness.telemetry.readers.common import make_event

    args = (SYSMON, "p", 1, datetime(2024, 1, 1, tzinfo=UTC), "h", {"a": "b"}, 5, 7, "S-1-5-18", 4, 8, "<raw/>", "o")
    made = make_event(*args)
    regular = Event(channel=SYSMON, provider="p", event_id=1, time=datetime(2024, 1, 1, tzinfo=UTC), computer="h",
                    fields={"a": "b"}, version=5, record_id=7, user_sid="S-1-5-18", pid=4, tid=8, raw="<raw/>",
                    origin="o")  # fmt: skip
    assert made == regular and made.to_dict() == regular.to_dict()
    assert (made.raw, made.origin) == ("<raw/>", "o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.channel = "x"  # type: ignore[misc]
