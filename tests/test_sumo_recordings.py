"""The corrected T1046 Sumo rule on real public recordings (shared/telemetry/public)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.detect.sumo.detector import SumoDetector
from harness.telemetry.event import Event
from harness.telemetry.readers import read_events

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / ".." / "shared" / "telemetry" / "public"
ATOMIC = PUBLIC / "atomic-evtx" / "attacks_by_category_unfiltered"
T1046_10 = (ATOMIC / "discovery" / "Port-Scanning -24 Subnet with PowerShell"
            / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx")
T1571_1 = (ATOMIC / "command-and-control" / "Testing usage of uncommonly used port with PowerShell"
           / "T1571-1_Microsoft-Windows-Sysmon_Operational.evtx")
RULES = ROOT / "detections" / "sumo"
CORRECTED = RULES / "t1046_network_service_discovery.sumo"
TUNED = RULES / "t1046_network_service_discovery_tuned.sumo"
PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"


def load(path: Path) -> list[Event]:
    if not path.exists():
        pytest.skip(f"public recording not available: {path}")
    return list(read_events(path))


def native_rows(rule: Path, events: list[Event]) -> list[dict[str, object]]:
    result = SumoDetector(rule).evaluate(events)
    return [dict(r) for r in result.rows if r["detection_type"] == "NativeToolScanning"]


def test_corrected_rule_raises_native_tool_scanning_on_the_t1046_10_tcpclient_loop() -> None:
    events = load(T1046_10)
    result = SumoDetector(CORRECTED).evaluate(events)
    assert result.events_in == 75
    (row,) = [r for r in result.rows if r["detection_type"] == "NativeToolScanning"]
    cmd = str(row["cmdline"])
    assert row["image_path"] == PS
    assert cmd.startswith('"powershell.exe" & {$ipAddr = ') and "\n" in cmd  # the multi-line script
    assert "New-Object Net.Sockets.TcpClient" in cmd and "ConnectAsync($ip, $port)" in cmd
    assert (row["known_scanner"], row["native_scan"], row["port_range"], row["service_version"]) == (0, 1, 0, 0)
    assert row["suspicion_score"] == 1
    assert row["user"] == "SERVER002\\admin_test"
    assert row["parent_image"] == r"C:\Windows\System32\wsmprovhost.exe"
    assert row["_sourceHost"] == "Server002"
    # evidence: the row maps back to the Sysmon 1 event it came from
    index = result.rows.index(next(r for r in result.rows if r["detection_type"] == "NativeToolScanning"))
    (src,) = result.source_events[index]
    assert events[src].event_id == 1 and events[src].fields["CommandLine"] == cmd


def test_corrected_rule_raises_native_tool_scanning_on_the_t1571_1_test_netconnection_run() -> None:
    (row,) = native_rows(CORRECTED, load(T1571_1))
    assert row["image_path"] == PS
    assert row["cmdline"] == '"powershell.exe" & {Test-NetConnection -ComputerName google.com -port 8081}'
    assert row["detection_type"] == "NativeToolScanning" and row["suspicion_score"] == 1
    assert (row["known_scanner"], row["native_scan"]) == (0, 1)


def test_published_logic_flags_svchost_as_port_scan_pattern_on_real_captures() -> None:
    result = SumoDetector(CORRECTED).evaluate(load(T1571_1))
    svchost = [r for r in result.rows if str(r["image_path"]).lower().endswith("svchost.exe")]
    assert len(svchost) == 5
    assert {r["detection_type"] for r in svchost} == {"PortScanPattern"}
    assert all(" -p -s " in str(r["cmdline"]) for r in svchost)
    times = [int(str(r["_messageTime"])) for r in result.rows]
    assert times == sorted(times, reverse=True)  # sort by _messageTime desc


def test_tuned_rule_keeps_the_tcpclient_scan_and_drops_svchost_and_single_test_netconnection() -> None:
    rows = [dict(r) for r in SumoDetector(TUNED).evaluate(load(T1046_10)).rows]
    assert [(r["image_path"], r["detection_type"]) for r in rows] == [(PS, "NativeToolScanning")]
    assert SumoDetector(TUNED).evaluate(load(T1571_1)).rows == ()
