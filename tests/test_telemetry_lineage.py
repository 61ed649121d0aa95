"""Attribution: the real T1046-10 run, and synthetic trees (marker, 4688 pid reuse, noise)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.detect.base import TimeWindow
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, Event
from harness.telemetry.lineage import attribute
from harness.telemetry.readers import read_events

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T1046_10 = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"
T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
MARKER = "atomiclab_run_0123456789abcdef0123456789abcdef"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sysmon1(guid: str, pid: int, image: str, cmd: str, parent_guid: str, parent_pid: int, t: float,
            host: str = "WIN1") -> Event:
    return Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1, time=_at(t), computer=host,
                 fields={"UtcTime": _at(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], "ProcessGuid": "{" + guid + "}",
                         "ProcessId": str(pid), "Image": image, "CommandLine": cmd,
                         "ParentProcessGuid": "{" + parent_guid + "}", "ParentProcessId": str(parent_pid),
                         "ParentImage": ""})  # fmt: skip


def sysmon(event_id: int, guid: str, t: float, **fields: str) -> Event:
    return Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=event_id, time=_at(t),
                 computer="WIN1", fields={"ProcessGuid": "{" + guid + "}", **fields})  # fmt: skip


def sec4688(pid: int, parent: int, image: str, cmd: str, t: float) -> Event:
    return Event(channel=SECURITY, provider="Microsoft-Windows-Security-Auditing", event_id=4688, time=_at(t),
                 computer="WIN1.lab.local", fields={"NewProcessId": hex(pid), "NewProcessName": image,
                 "ProcessId": hex(parent), "CommandLine": cmd, "TokenElevationType": "%%1937"})  # fmt: skip


def sec4689(pid: int, image: str, t: float) -> Event:
    return Event(channel=SECURITY, provider="", event_id=4689, time=_at(t), computer="WIN1",
                 fields={"ProcessId": hex(pid), "ProcessName": image})  # fmt: skip


HOST_G = "AAAAAAAA-0000-0000-0000-000000000001"
ROOT_G = "AAAAAAAA-0000-0000-0000-000000000002"


def _run_with_noise() -> list[Event]:
    ps = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    return [
        sysmon1(HOST_G, 100, "C:\\Windows\\System32\\wsmprovhost.exe", "wsmprovhost.exe -Embedding", "0-0", 900, 0),
        sysmon1("AAAAAAAA-0000-0000-0000-00000000000A", 110, "C:\\Windows\\System32\\wevtutil.exe",
                "wevtutil qe Security /c:1 /rd:true /f:xml", HOST_G, 100, 1),
        sysmon1("AAAAAAAA-0000-0000-0000-00000000000B", 111, "C:\\Windows\\System32\\HOSTNAME.EXE", "hostname",
                HOST_G, 100, 1.5),
        sysmon1(ROOT_G, 200, ps, f'"powershell.exe" & {{Test-NetConnection 10.0.0.5 -Port 445}} # {MARKER}',
                HOST_G, 100, 2),
        sysmon1("AAAAAAAA-0000-0000-0000-000000000003", 201, "C:\\Windows\\System32\\conhost.exe", "conhost 0xffff",
                ROOT_G, 200, 2.1),
        sysmon1("AAAAAAAA-0000-0000-0000-000000000004", 202, "C:\\Windows\\System32\\cmd.exe", "cmd /c netstat -ano",
                ROOT_G, 200, 3),
        sysmon1("AAAAAAAA-0000-0000-0000-000000000005", 203, "C:\\Windows\\System32\\NETSTAT.EXE", "netstat -ano",
                "AAAAAAAA-0000-0000-0000-000000000004", 202, 3.1),
        sysmon(3, ROOT_G, 4, DestinationIp="10.0.0.5", DestinationPort="445"),
        sysmon(22, ROOT_G, 4.5, QueryName="example.org"),
        sysmon(11, "AAAAAAAA-0000-0000-0000-000000000005", 5, TargetFilename="C:\\out.txt"),
        sysmon(3, "BBBBBBBB-0000-0000-0000-000000000009", 5, DestinationIp="1.1.1.1"),  # unrelated process
        Event(channel=POWERSHELL_OPERATIONAL, provider="", event_id=4104, time=_at(4), computer="WIN1", pid=200,
              fields={"ScriptBlockText": "Test-NetConnection", "ScriptBlockId": "x", "MessageNumber": "1"}),
        Event(channel=POWERSHELL_OPERATIONAL, provider="", event_id=4104, time=_at(4), computer="WIN1", pid=300,
              fields={"ScriptBlockText": "other", "ScriptBlockId": "y", "MessageNumber": "1"}),
        sysmon(5, "AAAAAAAA-0000-0000-0000-000000000005", 6),
        sysmon(5, ROOT_G, 8),
        sysmon1("AAAAAAAA-0000-0000-0000-00000000000C", 120, "C:\\Windows\\System32\\whoami.exe", "whoami",
                HOST_G, 100, 9),
        # pid 200 reused after the root exited: its 4104 must not be attributed
        Event(channel=POWERSHELL_OPERATIONAL, provider="", event_id=4104, time=_at(30), computer="WIN1", pid=200,
              fields={"ScriptBlockText": "later", "ScriptBlockId": "z", "MessageNumber": "1"}),
    ]


def test_marker_root_tree_and_events() -> None:
    events = _run_with_noise()
    result = attribute(events, marker=MARKER)
    assert result.found and result.root is not None and result.root.pid == 200
    assert [p.pid for p in result.processes] == [200, 201, 202, 203]
    kinds = [(e.event_id, e.fields.get("ScriptBlockText") or e.fields.get("Image", "")) for e in result.events]
    assert (4104, "Test-NetConnection") in kinds
    assert not any(text in ("other", "later") for _, text in kinds)
    ids = [e.event_id for e in result.events]
    assert ids.count(1) == 4 and ids.count(3) == 1 and ids.count(22) == 1 and ids.count(11) == 1 and ids.count(5) == 2
    images = {e.fields.get("Image", "").lower() for e in result.events}
    assert not any(x in " ".join(images) for x in ("wevtutil", "hostname", "whoami", "wsmprovhost"))
    assert result.excluded_count == len(events) - len(result.events)
    assert [e.time for e in result.events] == sorted(e.time for e in result.events)


def test_no_root_attributes_nothing() -> None:
    events = _run_with_noise()
    result = attribute(events, marker="atomiclab_run_ffffffffffffffffffffffffffffffff")
    assert not result.found and result.events == () and result.excluded_count == len(events)
    with pytest.raises(ValueError):
        attribute(events)


def test_window_and_computer_filters() -> None:
    events = _run_with_noise()
    assert not attribute(events, marker=MARKER, computer="OTHERHOST").found
    assert attribute(events, marker=MARKER, computer="win1.lab.local").found
    early = attribute(events, marker=MARKER, window=TimeWindow(start=_at(0), end=_at(3)))
    assert [p.pid for p in early.processes] == [200, 201]


def test_harness_host_process_is_never_a_root() -> None:
    events = _run_with_noise()
    result = attribute(events, root=lambda ref: "wsmprovhost" in ref.command_line or "wevtutil" in ref.command_line)
    assert result.found and result.root is not None and result.root.image_name == "wevtutil.exe"
    assert all(p.image_name != "wsmprovhost.exe" for p in result.processes)


def test_4688_tree_respects_pid_reuse_and_exit() -> None:
    cmd = "C:\\Windows\\System32\\cmd.exe"
    events = [
        sec4688(0x500, 0x100, cmd, f"cmd.exe /c ping 127.0.0.1 & rem {MARKER}", 1),
        sec4688(0x510, 0x500, "C:\\Windows\\System32\\PING.EXE", "ping 127.0.0.1", 2),
        sec4689(0x510, "C:\\Windows\\System32\\PING.EXE", 3),
        sec4689(0x500, cmd, 4),
        # pid 0x500 reused by an unrelated process; its child is not test activity
        sec4688(0x500, 0x4, "C:\\Windows\\System32\\svchost.exe", "svchost -k netsvcs", 10),
        sec4688(0x520, 0x500, "C:\\Windows\\System32\\taskhostw.exe", "taskhostw", 11),
        # a late child of the exited root pid without an intervening creation: root is gone
        sec4688(0x530, 0x510, "C:\\Windows\\System32\\conhost.exe", "conhost", 12),
    ]
    result = attribute(events, marker=MARKER)
    assert [p.pid for p in result.processes] == [0x500, 0x510]
    assert [e.event_id for e in result.events] == [4688, 4688, 4689, 4689]


def test_sysmon_and_4688_of_same_process_are_one() -> None:
    ps = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    events = [
        sec4688(200, 100, ps, f"powershell.exe {MARKER}", 2.01),
        sysmon1(ROOT_G, 200, ps, f"powershell.exe {MARKER}", HOST_G, 100, 2),
        sec4688(205, 200, "C:\\Windows\\System32\\whoami.exe", "whoami /all", 3),  # only in Security
    ]
    result = attribute(events, marker=MARKER)
    assert [p.pid for p in result.processes] == [200, 205]
    assert len(result.events) == 3


def test_real_t1046_10_run() -> None:
    if not T1046_10.is_dir():
        pytest.skip(f"recording {T1046_10} absent")
    events = [e for path in sorted(T1046_10.glob("*.evtx")) for e in read_events(path, keep_raw=False)]
    result = attribute(events, root=lambda ref: ref.command_line.startswith('"powershell.exe" & {'))
    assert result.root is not None
    assert result.root.pid == 4108 and "Net.Sockets.TcpClient" in result.root.command_line
    assert result.root.parent_image is not None and result.root.parent_image.lower().endswith("wsmprovhost.exe")
    assert [(p.image_name, p.pid) for p in result.processes] == [("powershell.exe", 4108), ("conhost.exe", 1792)]
    attributed_images = {e.fields.get("Image", "").rsplit("\\", 1)[-1].lower() for e in result.events}
    for noise in ("wevtutil.exe", "hostname.exe", "whoami.exe", "wsmprovhost.exe", "microsoftedgeupdate.exe"):
        assert noise not in attributed_images
    by_kind = sorted((e.channel, e.event_id) for e in result.events)
    assert by_kind.count(("Microsoft-Windows-Sysmon/Operational", 1)) == 2
    assert by_kind.count(("Microsoft-Windows-Sysmon/Operational", 5)) == 2
    # the classic PowerShell log of the scan (400/403/600, Execution ProcessID 0) joins via HostApplication
    assert by_kind.count(("Windows PowerShell", 600)) == 6
    assert ("Windows PowerShell", 400) in by_kind and ("Windows PowerShell", 403) in by_kind
    assert result.excluded_count == len(events) - len(result.events) == 102 - 12
