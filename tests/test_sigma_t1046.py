"""The portable T1046 Sigma rule: fires on the five atomics (their real command lines, rendered from
atomics/T1046/T1046.yaml), on the real recorded T1046-10 and T1571-1 runs, and is deliberately
silent on the benign look-alikes except an authorized scanner's nmap (a known false positive)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.detect.sigma import SigmaDetector
from harness.telemetry.event import SECURITY, SYSMON, Event

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "detections" / "sigma" / "proc_creation_win_t1046_network_service_discovery.yml"
PUBLIC = REPO / ".." / "shared" / "telemetry" / "public"
ATOMIC_EVTX = PUBLIC / "atomic-evtx" / "attacks_by_category_unfiltered"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

PS = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
CMD = "C:\\Windows\\System32\\cmd.exe"


@pytest.fixture(scope="module")
def detector() -> SigmaDetector:
    return SigmaDetector.from_file(RULE)


def _proc(image: str, cmd: str, n: int = 0, parent: str = PS) -> Event:
    return Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1,
                 time=T0 + timedelta(seconds=n), computer="WIN10",
                 fields={"Image": image, "CommandLine": cmd, "ParentImage": parent,
                         "User": "WIN10\\analyst", "ProcessId": str(4000 + n)})


def _atomics() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((REPO / "atomics" / "T1046" / "T1046.yaml").read_text())
    return {t["auto_generated_guid"]: t for t in doc["atomic_tests"]}


def _render(test: dict[str, Any]) -> str:
    """The test's command with its input arguments at their defaults (ART #{name} syntax)."""
    args = {k: str(v["default"]) for k, v in (test.get("input_arguments") or {}).items()}
    return re.sub(r"#\{(\w+)\}", lambda m: args[m.group(1)], test["executor"]["command"]).strip()


def _executor_process(test: dict[str, Any]) -> Event:
    """The process the ART executor starts: powershell.exe & {...} or cmd.exe /c ..."""
    cmd = _render(test)
    if test["executor"]["name"] == "powershell":
        return _proc(PS, f'"powershell.exe" & {{{cmd}}}', parent="C:\\Windows\\System32\\wsmprovhost.exe")
    return _proc(CMD, f'"cmd.exe" /c {cmd}', parent="C:\\Windows\\System32\\wsmprovhost.exe")


NMAP = "c9c5c712-9e58-4613-85f6-139cddfa1f30"
TCPCLIENT = "d52adf0b-75fa-483b-8560-5d90969c8e59"
TNC_SWEEP = "828eed2c-1f5c-4467-83a2-6813b09575d5"
NBTSCAN = "b6435a56-d12d-4ead-9f3d-66459e6d8817"
NETSTAT = "d7b2043f-3075-47e3-87ca-8ca224d06bec"


def test_rule_is_valid_sigma_with_required_metadata() -> None:
    doc = yaml.safe_load(RULE.read_text())
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", doc["id"])
    assert doc["status"] in {"experimental", "test", "stable"}
    assert "attack.t1046" in doc["tags"]
    assert doc["logsource"] == {"category": "process_creation", "product": "windows"}
    assert doc["falsepositives"] and doc["level"] in {"low", "medium", "high", "critical"}


@pytest.mark.parametrize("guid", [TCPCLIENT, TNC_SWEEP, NETSTAT])
def test_fires_on_native_tool_atomics(detector: SigmaDetector, guid: str) -> None:
    ev = _executor_process(_atomics()[guid])
    res = detector.evaluate([ev])
    assert len(res.rows) == 1
    assert res.rows[0]["CommandLine"] == ev.fields["CommandLine"]
    assert res.rows[0]["Image"] == ev.fields["Image"]


def test_fires_on_nmap_atomic_child_process_sysmon_and_4688(detector: SigmaDetector) -> None:
    test = _atomics()[NMAP]
    parent = _executor_process(test)
    nmap_path = test["input_arguments"]["nmap_path"]["default"]
    tail = _render(test).split('" ', 1)[1]
    child_cmd = f'"{nmap_path}" {tail}'
    child = _proc(nmap_path, child_cmd, 1)
    sec = Event(channel=SECURITY, provider="Microsoft-Windows-Security-Auditing", event_id=4688,
                time=T0 + timedelta(seconds=1), computer="WIN10",
                fields={"SubjectUserName": "analyst", "SubjectDomainName": "WIN10", "NewProcessId": "0x1f4",
                        "NewProcessName": nmap_path, "ProcessId": "0xfa0", "CommandLine": child_cmd,
                        "ParentProcessName": PS})
    res = detector.evaluate([parent, child, sec])
    # the powershell parent only runs `& "...nmap.exe" -sV -p ...`: not a native scan by itself
    assert [s[0] for s in res.source_events.values()] == [1, 2]
    assert res.rows[0]["Image"] == nmap_path and "-sV -p 22,80,135,445,3389" in str(res.rows[0]["CommandLine"])
    assert res.rows[1]["Image"] == nmap_path and res.rows[1]["User"] == "WIN10\\analyst"
    assert res.rows[1]["ProcessId"] == "500" and res.rows[1]["ParentProcessId"] == "4000"


def test_fires_on_nbtscan_atomic_child(detector: SigmaDetector) -> None:
    test = _atomics()[NBTSCAN]
    parent = _executor_process(test)
    path = test["input_arguments"]["nbtscan_path"]["default"]
    child = _proc(path, _render(test), 1, parent=CMD)
    res = detector.evaluate([parent, child])
    assert [s[0] for s in res.source_events.values()] == [1]
    assert res.rows[0]["Image"] == path


BENIGN = {
    "health check": [_proc(PS, '"powershell.exe" & {Test-NetConnection -ComputerName 127.0.0.1 -Port 443}')],
    "health check colon form": [_proc(PS, '"powershell.exe" & {Test-NetConnection -ComputerName web01 -Port:5985}')],
    "health check common name": [_proc(PS, '"powershell.exe" & {Test-NetConnection bing.com -CommonTCPPort HTTP}')],
    "helpdesk": [
        _proc(CMD, '"cmd.exe" /c netstat -an & arp -a & route print'),
        _proc(CMD, '"cmd.exe" /c netstat -an\narp -a\nroute print'),
        _proc("C:\\Windows\\System32\\NETSTAT.EXE", "netstat  -an", parent=CMD),
        _proc("C:\\Windows\\System32\\ARP.EXE", "arp  -a", parent=CMD),
        _proc("C:\\Windows\\System32\\ROUTE.EXE", "route  print", parent=CMD),
    ],
    "git": [_proc("C:\\Program Files\\Git\\cmd\\git.exe", "git log --stat -p --open")],
    "svchost": [_proc("C:\\Windows\\System32\\svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
                      parent="C:\\Windows\\System32\\services.exe")],
    "attrib nbtscan": [_proc("C:\\Windows\\System32\\attrib.exe", "attrib  +h nbtscan.exe", parent=CMD)],
}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_silent_on_benign_look_alikes(detector: SigmaDetector, name: str) -> None:
    assert detector.evaluate(BENIGN[name]).rows == ()


def test_fires_on_authorized_scanner_nmap_known_false_positive(detector: SigmaDetector) -> None:
    nmap = "C:\\Program Files (x86)\\Nmap\\nmap.exe"
    args = '-sT -Pn --open -p 445,3389 127.0.0.1 -oX "$env:TEMP\\atomiclab-vulnscan.xml"'
    events = [_proc(PS, f'"powershell.exe" & {{& "{nmap}" {args}}}'), _proc(nmap, f'"{nmap}" {args}', 1)]
    res = detector.evaluate(events)
    assert [s[0] for s in res.source_events.values()] == [1]
    assert res.rows[0]["Image"] == nmap


def test_single_probe_of_uncommon_port_fires(detector: SigmaDetector) -> None:
    res = detector.evaluate([_proc(PS, "powershell -c tnc 10.0.0.5 -port 4444")])
    assert len(res.rows) == 1


# --- real recordings ------------------------------------------------------------------------------

def evtx_events(path: Path) -> Iterator[Event]:
    """Events of an EVTX file: the project's reader when present, else a minimal PyEvtxParser mapping."""
    try:
        from harness.telemetry.readers import read_events  # type: ignore[attr-defined]
    except ImportError:
        read_events = None
    if read_events is not None:
        yield from read_events(path)
        return
    import evtx

    for rec in evtx.PyEvtxParser(str(path)).records_json():
        ev = json.loads(rec["data"])["Event"]
        system = ev["System"]
        eid = system["EventID"]
        eid = eid["#text"] if isinstance(eid, dict) else eid
        data = ev.get("EventData") or {}
        fields = {k: "" if v is None else str(v) for k, v in data.items() if k != "#attributes"} if isinstance(data, dict) else {}
        t = datetime.fromisoformat(system["TimeCreated"]["#attributes"]["SystemTime"].replace("Z", "+00:00"))
        yield Event(channel=system["Channel"], provider=system["Provider"]["#attributes"]["Name"],
                    event_id=int(eid), time=t, computer=system["Computer"], fields=fields,
                    record_id=system.get("EventRecordID"))


def _recording(*parts: str) -> Path:
    path = ATOMIC_EVTX.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"public recording not present: {path} (see ../shared/telemetry/public/SOURCES.md)")
    return path


def test_fires_on_real_t1046_10_tcpclient_loop(detector: SigmaDetector) -> None:
    path = _recording("discovery", "Port-Scanning -24 Subnet with PowerShell",
                      "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx")
    events = list(evtx_events(path))
    res = detector.evaluate(events)
    assert len(res.rows) == 1
    row = res.rows[0]
    assert str(row["Image"]).lower().endswith("\\windowspowershell\\v1.0\\powershell.exe")
    cmd = str(row["CommandLine"])
    assert "New-Object Net.Sockets.TcpClient" in cmd and "foreach ($ip in $subnetIPs)" in cmd
    assert "\n" in cmd  # the multi-line command line survived loading and matching
    assert events[res.source_events[0][0]].fields["CommandLine"] == cmd


def test_fires_on_real_t1571_1_test_netconnection(detector: SigmaDetector) -> None:
    path = _recording("command-and-control", "Testing usage of uncommonly used port with PowerShell",
                      "T1571-1_Microsoft-Windows-Sysmon_Operational.evtx")
    res = detector.evaluate(list(evtx_events(path)))
    assert len(res.rows) == 1
    assert str(res.rows[0]["Image"]).lower().endswith("\\powershell.exe")
    assert res.rows[0]["CommandLine"] == '"powershell.exe" & {Test-NetConnection -ComputerName google.com -port 8081}'
    assert res.rows[0]["Computer"]


@pytest.mark.parametrize(
    "parts",
    [
        ("discovery", "System Network Connections Discovery"),  # T1049-1: netstat & net use (no listener filter)
        ("discovery", "Qakbot Recon"),  # T1016-7: netstat -nao, arp -a, net view
    ],
)
def test_silent_on_real_helpdesk_like_recon(detector: SigmaDetector, parts: tuple[str, str]) -> None:
    folder = ATOMIC_EVTX.joinpath(*parts)
    files = sorted(folder.glob("*Sysmon_Operational.evtx")) if folder.exists() else []
    if not files:
        pytest.skip(f"public recording not present: {folder}")
    events = [ev for f in files for ev in evtx_events(f)]
    assert any(e.event_id == 1 and "netstat" in e.fields.get("CommandLine", "").lower() for e in events)
    assert detector.evaluate(events).rows == ()
