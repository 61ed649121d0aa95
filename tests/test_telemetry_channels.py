"""Channel semantics: 4688 (hex pids, elevation, old schema), Sysmon views, 4104 joining, classic PS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.telemetry.channels import (
    EventKind,
    TokenElevation,
    classic_powershell_of,
    command_line_key,
    dns_query_of,
    elevation_type,
    exit_of,
    file_create_of,
    join_script_blocks,
    kind_of,
    network_of,
    normalize_guid,
    parse_classic_blob,
    parse_pid,
    process_of,
)
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, WINDOWS_POWERSHELL, Event
from harness.telemetry.readers import read_events

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T0 = datetime(2024, 10, 22, 14, 46, 22, tzinfo=UTC)


def ev(channel: str, event_id: int, fields: dict[str, str], *, seconds: float = 0, pid: int | None = None,
       computer: str = "Server002", version: int = 0) -> Event:
    return Event(channel=channel, provider="", event_id=event_id, time=T0 + timedelta(seconds=seconds),
                 computer=computer, fields=fields, pid=pid, version=version)  # fmt: skip


def test_parse_pid_decimal_and_hex() -> None:
    assert parse_pid("0xc9c") == 3228
    assert parse_pid("0XC9C") == 3228
    assert parse_pid("4548") == 4548
    assert parse_pid("") is None and parse_pid(None) is None and parse_pid("n/a") is None


def test_elevation_names() -> None:
    assert elevation_type("%%1936") is TokenElevation.DEFAULT
    assert elevation_type("%%1937") is TokenElevation.FULL
    assert elevation_type("%%1938") is TokenElevation.LIMITED
    assert elevation_type("TokenElevationTypeFull (2)") is TokenElevation.FULL
    assert elevation_type("%%9999") is None and elevation_type(None) is None


def test_guid_normalization() -> None:
    assert normalize_guid("{dbf410b3-babe-6717-c200-000000003900}") == "DBF410B3-BABE-6717-C200-000000003900"
    assert normalize_guid("DBF410B3-BABE-6717-C200-000000003900") == "DBF410B3-BABE-6717-C200-000000003900"
    assert normalize_guid("{00000000-0000-0000-0000-000000000000}") is None
    assert normalize_guid("") is None


def test_process_of_4688_v2() -> None:
    event = ev(SECURITY, 4688, {
        "SubjectUserSid": "S-1-5-18", "SubjectUserName": "DC01$", "SubjectDomainName": "PANDALAB",
        "NewProcessId": "0x1820", "NewProcessName": "C:\\Windows\\System32\\net.exe",
        "TokenElevationType": "%%1937", "ProcessId": "0x314", "CommandLine": "net  view",
        "TargetUserName": "Administrator", "TargetDomainName": "PANDALAB",
        "ParentProcessName": "C:\\Windows\\System32\\cmd.exe", "MandatoryLabel": "S-1-16-12288",
    }, version=2)  # fmt: skip
    ref = process_of(event)
    assert ref is not None
    assert (ref.pid, ref.parent_pid) == (0x1820, 0x314)
    assert ref.image_name == "net.exe" and ref.command_line == "net  view"
    assert ref.parent_image == "C:\\Windows\\System32\\cmd.exe"
    assert ref.user == "PANDALAB\\Administrator" and ref.elevation is TokenElevation.FULL
    assert ref.integrity == "High" and ref.guid is None and ref.source == "security"
    assert kind_of(event) is EventKind.PROCESS_CREATE


def test_process_of_4688_old_schema_without_parent_name() -> None:
    event = ev(SECURITY, 4688, {
        "SubjectUserSid": "S-1-5-21-1", "SubjectUserName": "alice", "SubjectDomainName": "CORP",
        "SubjectLogonId": "0x3e7", "NewProcessId": "0xc9c", "NewProcessName": "C:\\Windows\\System32\\whoami.exe",
        "TokenElevationType": "%%1938", "ProcessId": "0x7d0",
    })  # fmt: skip
    ref = process_of(event)
    assert ref is not None
    assert (ref.pid, ref.parent_pid, ref.parent_image, ref.command_line) == (3228, 2000, None, "")
    assert ref.user == "CORP\\alice" and ref.elevation is TokenElevation.LIMITED


def test_process_of_real_4688_old_schema_recording() -> None:
    path = PUBLIC / "evtx-to-mitre-attack/TA0007-Discovery/T1135.xxx-Network Share Discovery" / (
        "ID4688-Network share discovery or connection via commandline.evtx")
    if not path.is_file():
        pytest.skip(f"recording {path} absent")
    refs = [r for r in (process_of(e) for e in read_events(path)) if r is not None]
    assert len(refs) == 2
    assert {r.image_name for r in refs} == {"net.exe"}
    assert all(r.pid and r.parent_pid for r in refs)


def test_sysmon_views() -> None:
    create = ev(SYSMON, 1, {
        "UtcTime": "2024-10-22 14:46:22.970", "ProcessGuid": "{DBF410B3-BABE-6717-C200-000000003900}",
        "ProcessId": "4108", "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "CommandLine": '"powershell.exe" & {1..254}', "User": "SERVER002\\admin_test",
        "ParentProcessGuid": "{DBF410B3-BAB9-6717-AF00-000000003900}", "ParentProcessId": "3020",
        "ParentImage": "C:\\Windows\\System32\\wsmprovhost.exe", "IntegrityLevel": "High",
    })  # fmt: skip
    ref = process_of(create)
    assert ref is not None and ref.guid == "DBF410B3-BABE-6717-C200-000000003900"
    assert ref.time == datetime(2024, 10, 22, 14, 46, 22, 970000, tzinfo=UTC)
    assert (ref.pid, ref.parent_pid, ref.parent_guid) == (4108, 3020, "DBF410B3-BAB9-6717-AF00-000000003900")
    net = network_of(ev(SYSMON, 3, {"ProcessGuid": "{DBF410B3-BABE-6717-C200-000000003900}", "ProcessId": "4108",
                                    "Protocol": "tcp", "Initiated": "true", "DestinationIp": "10.0.0.5",
                                    "DestinationPort": "445", "SourcePort": "50123"}))  # fmt: skip
    assert net is not None and net.initiated and net.destination_port == 445 and net.guid == ref.guid
    created = file_create_of(ev(SYSMON, 11, {"ProcessGuid": "x", "TargetFilename": "C:\\out.txt"}))
    assert created is not None and created.target_filename == "C:\\out.txt"
    dns = dns_query_of(ev(SYSMON, 22, {"QueryName": "allports.exposed", "QueryStatus": "0"}))
    assert dns is not None and dns.query_name == "allports.exposed"
    ended = exit_of(ev(SYSMON, 5, {"ProcessGuid": "{dbf410b3-babe-6717-c200-000000003900}", "ProcessId": "4108"}))
    assert ended is not None and ended.guid == ref.guid
    assert process_of(ev(SYSMON, 3, {})) is None and network_of(create) is None
    assert [kind_of(ev(SYSMON, i, {})) for i in (1, 3, 5, 11, 22, 7)] == [
        EventKind.PROCESS_CREATE, EventKind.NETWORK_CONNECT, EventKind.PROCESS_TERMINATE,
        EventKind.FILE_CREATE, EventKind.DNS_QUERY, EventKind.OTHER]  # fmt: skip


def _part(block: str, n: int, total: int, text: str, *, seconds: float = 0, computer: str = "h") -> Event:
    return ev(POWERSHELL_OPERATIONAL, 4104, {"MessageNumber": str(n), "MessageTotal": str(total),
              "ScriptBlockText": text, "ScriptBlockId": block, "Path": ""}, seconds=seconds, pid=77,
              computer=computer)  # fmt: skip


def test_join_script_blocks_orders_parts_and_dedupes() -> None:
    events = [
        _part("b1", 3, 3, "C", seconds=2),
        _part("b2", 1, 1, "single", seconds=5),
        _part("b1", 1, 3, "A", seconds=0),
        _part("b1", 2, 3, "B", seconds=1),
        _part("b1", 2, 3, "B", seconds=1),  # collected twice
        ev(POWERSHELL_OPERATIONAL, 4103, {"Payload": "x"}),
    ]
    blocks = join_script_blocks(events)
    assert [b.script_block_id for b in blocks] == ["b1", "b2"]
    assert blocks[0].text == "ABC" and blocks[0].parts == 3 and blocks[0].complete
    assert blocks[0].pid == 77 and blocks[0].first_time == T0
    assert blocks[1].text == "single"


def test_join_script_blocks_missing_part_is_incomplete_and_per_host() -> None:
    blocks = join_script_blocks([_part("b", 1, 3, "A"), _part("b", 3, 3, "C"), _part("b", 2, 3, "X", computer="other")])
    by_host = {b.computer: b for b in blocks}
    assert by_host["h"].text == "AC" and not by_host["h"].complete and by_host["h"].total == 3
    assert by_host["other"].text == "X"


def test_join_real_4104_recording() -> None:
    path = PUBLIC / "velociraptor-testdata/artifacts/testdata/files/EID4103_PowershellModule.evtx"
    if not path.is_file():
        pytest.skip(f"recording {path} absent")
    events = list(read_events(path))
    blocks = join_script_blocks(events)
    parts = sum(1 for e in events if e.event_id == 4104)
    assert parts == 13 and sum(b.parts for b in blocks) == 13
    for block in blocks:
        ordered = [int(e.fields["MessageNumber"]) for e in block.events]
        assert ordered == sorted(ordered)
        assert block.text == "".join(e.fields["ScriptBlockText"] for e in block.events)


BLOB = (
    "\tNewEngineState=Available\r\n\tPreviousEngineState=None\r\n\r\n\tSequenceNumber=13\r\n\r\n"
    "\tHostName=ConsoleHost\r\n\tHostVersion=5.1.19041.5007\r\n\tHostId=2ec650b9-a9df-477f-bc53-8ae06f7312b9\r\n"
    '\tHostApplication=powershell.exe & {$ports = 445, 3389\nforeach ($ip in $ips) {\n x=1\n}}\r\n'
    "\tEngineVersion=5.1.19041.5007\r\n\tRunspaceId=4c3b\r\n\tPipelineId=\r\n\tCommandName=\r\n"
    "\tCommandType=\r\n\tScriptName=\r\n\tCommandPath=\r\n\tCommandLine="
)


def test_classic_blob_multiline_host_application() -> None:
    values = parse_classic_blob(BLOB)
    assert values["HostApplication"] == "powershell.exe & {$ports = 445, 3389\nforeach ($ip in $ips) {\n x=1\n}}"
    assert values["EngineVersion"] == "5.1.19041.5007" and values["CommandLine"] == ""
    info = classic_powershell_of(ev(WINDOWS_POWERSHELL, 400, {"param1": "Available", "param2": "None", "param3": BLOB}))
    assert info is not None and info.host_id == "2ec650b9-a9df-477f-bc53-8ae06f7312b9"
    assert info.host_name == "ConsoleHost" and info.runspace_id == "4c3b"
    assert classic_powershell_of(ev(WINDOWS_POWERSHELL, 4100, {"param1": BLOB})) is None


def test_real_classic_events_carry_the_sysmon_command_line() -> None:
    base = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"
    if not base.is_dir():
        pytest.skip(f"recording {base} absent")
    classic = [classic_powershell_of(e) for e in read_events(base / "T1046-10_Windows PowerShell.evtx")]
    sysmon = [process_of(e) for e in read_events(base / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx")]
    scan = next(r for r in sysmon if r is not None and r.command_line.startswith('"powershell.exe" & {'))
    hosts = {c.host_application for c in classic if c is not None}
    assert len(hosts) == 1
    host_application = hosts.pop()
    assert "Net.Sockets.TcpClient" in host_application
    assert command_line_key(host_application) == command_line_key(scan.command_line)
