"""The five T1046 atomics against the emulated host produce every "Expected signal" of the detection card.

The first tests drive ``EmulatedHost.execute`` directly; the last ones run the atomics the way a run
does (``lifecycle.execute_atomic`` rendering, ``WinRMTransport`` over pypsrp, the WS-Man listener).

Command lines are rendered here the way Invoke-AtomicRedTeam renders them (defaults substituted,
``"`` -> ``\\""`` for powershell, lines joined with `` & `` for cmd), with a run marker.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from emulated_lab import winrm_host

from harness.content.atomics import load_atomic_file
from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.execution.executors import new_run_marker
from harness.execution.lifecycle import ExecutionStatus, execute_atomic
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON

ATOMICS = Path(__file__).resolve().parents[1] / "atomics" / "T1046" / "T1046.yaml"
NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
MARKER = "atomiclab_run_" + "0123456789abcdef" * 2


def load_tests() -> list[dict[str, Any]]:
    return yaml.safe_load(ATOMICS.read_text(encoding="utf-8"))["atomic_tests"]


def substitute(text: str, test: dict[str, Any]) -> str:
    for name, arg in (test.get("input_arguments") or {}).items():
        text = text.replace("#{" + name + "}", str(arg["default"]))
    return text


def render(executor: str, command: str) -> str:
    text = command.replace("\r\n", "\n").strip()
    if executor == "powershell":
        return '"powershell.exe" & {' + text.replace('"', '\\""') + "} #" + MARKER
    return '"cmd.exe" /c ' + text.replace("\n", " & ") + " & rem " + MARKER


def events(host: EmulatedHost, channel: str, after: int = 0) -> list[dict[str, str]]:
    out = []
    for xml in host.eventlog.query(channel, after_record_id=after):
        root = ET.fromstring(xml)
        d = {"_eid": root.findtext(f"{NS}System/{NS}EventID") or "",
             "_rid": root.findtext(f"{NS}System/{NS}EventRecordID") or ""}  # fmt: skip
        for data in root.iter(f"{NS}Data"):
            d[data.get("Name") or ""] = data.text or ""
        out.append(d)
    return out


def of(evts: list[dict[str, str]], eid: int) -> list[dict[str, str]]:
    return [e for e in evts if e["_eid"] == str(eid)]


def run_atomic(host: EmulatedHost, number: int) -> tuple[dict[str, Any], str, Any]:
    test = load_tests()[number - 1]
    ex = test["executor"]
    line = render(ex["name"], substitute(ex["command"], test))
    return test, line, host.execute(line, timeout_s=60)


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    """All five atomics (prereqs first), then their cleanups, on one default host."""
    host = EmulatedHost(HostSettings(network_timing=NetworkTiming.instant()))
    marks = {ch: host.eventlog.last_record_id(ch) for ch in (SYSMON, SECURITY, POWERSHELL_OPERATIONAL)}
    results = {}
    for n, test in enumerate(load_tests(), 1):
        for dep in test.get("dependencies") or []:
            pre = host.execute(render(test["dependency_executor_name"], substitute(dep["prereq_command"], test)))
            assert pre.exit_code == 0, (test["name"], pre.stderr)
        results[n] = run_atomic(host, n)
    return {"host": host, "marks": marks, "results": results}


def test_all_five_atomics_complete(scenario: dict[str, Any]) -> None:
    for n, (_test, _line, res) in scenario["results"].items():
        assert res.exit_code == 0, (n, res.stdout, res.stderr)
        assert not res.timed_out


def test_1_nmap_expected_signals(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    sysmon = events(host, SYSMON, scenario["marks"][SYSMON])
    nmap1 = [e for e in of(sysmon, 1) if e["Image"].lower().endswith("\\nmap.exe")]
    assert len(nmap1) == 1
    assert "-sV -p" in nmap1[0]["CommandLine"] and "127.0.0.1" in nmap1[0]["CommandLine"]
    assert nmap1[0]["ParentImage"].lower().endswith("\\powershell.exe")
    # Sysmon 3 only for established TCP (nothing listens on 80 on the lab host; sshd on 22).
    conns = [e for e in of(sysmon, 3) if e["ProcessGuid"] == nmap1[0]["ProcessGuid"]]
    assert sorted(int(e["DestinationPort"]) for e in conns) == [22, 135, 445, 3389]
    assert {e["DestinationIp"] for e in conns} == {"127.0.0.1"}
    created = [e for e in of(sysmon, 11) if e["TargetFilename"].endswith("\\df00tech-nmap-test.txt")]
    assert created[0]["TargetFilename"] == "C:\\Users\\atomiclab\\AppData\\Local\\Temp\\df00tech-nmap-test.txt"
    assert created[0]["Image"] == nmap1[0]["Image"]
    sec = of(events(host, SECURITY, scenario["marks"][SECURITY]), 4688)
    nmap4688 = [e for e in sec if e["NewProcessName"].lower().endswith("\\nmap.exe")]
    assert nmap4688 and "-sV -p" in nmap4688[0]["CommandLine"]
    out = scenario["results"][1][2].stdout
    assert re.search(r"^135/tcp\s+open\s+msrpc", out, re.M) and re.search(r"^80/tcp\s+closed\s+http", out, re.M)


def test_2_tcpclient_expected_signals(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    line = scenario["results"][2][1]
    sysmon = events(host, SYSMON, scenario["marks"][SYSMON])
    ps = [e for e in of(sysmon, 1) if e["CommandLine"] == line]
    assert len(ps) == 1 and ps[0]["Image"].endswith("\\powershell.exe")
    assert "Net.Sockets.TcpClient" in ps[0]["CommandLine"] and "Connect" in ps[0]["CommandLine"]
    # Sysmon 3 only for established TCP (nothing listens on 80, and 139 only on the host's address).
    conns = [e for e in of(sysmon, 3) if e["ProcessGuid"] == ps[0]["ProcessGuid"]]
    assert sorted(int(e["DestinationPort"]) for e in conns) == [22, 135, 445, 3389, 5985, 5986]
    assert {e["Image"] for e in conns} == {ps[0]["Image"]}
    blocks = [e["ScriptBlockText"] for e in of(events(host, POWERSHELL_OPERATIONAL), 4104)]
    assert any("New-Object System.Net.Sockets.TcpClient" in b and "foreach ($port in" in b for b in blocks)
    out = scenario["results"][2][2].stdout
    assert "127.0.0.1:445 open" in out and "127.0.0.1:80 closed" in out


def test_3_test_netconnection_sweep_expected_signals(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    line = scenario["results"][3][1]
    sysmon = events(host, SYSMON, scenario["marks"][SYSMON])
    ps = [e for e in of(sysmon, 1) if e["CommandLine"] == line]
    cl = ps[0]["CommandLine"]
    assert "1..5" in cl and "Test-NetConnection" in cl and "-Port 80" in cl
    # Nothing listens on port 80: every attempt is refused and Sysmon logs none of them (issue 14).
    assert [e for e in of(sysmon, 3) if e["ProcessGuid"] == ps[0]["ProcessGuid"]] == []
    blocks = [e["ScriptBlockText"] for e in of(events(host, POWERSHELL_OPERATIONAL), 4104)]
    assert any("ForEach-Object { Test-NetConnection" in b for b in blocks)
    out = scenario["results"][3][2].stdout
    assert out.count("TcpTestSucceeded       : False") == 5
    assert "WARNING: TCP connect to (127.0.0.3 : 80) failed" in out


def test_4_nbtscan_expected_signals(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    sysmon = events(host, SYSMON, scenario["marks"][SYSMON])
    nbt = [e for e in of(sysmon, 1) if e["Image"].lower().endswith("\\nbtscan.exe")]
    assert len(nbt) == 1 and "127.0.0.1-5" in nbt[0]["CommandLine"]
    # cmd builds the child's command line: the name as typed, a space, the rest of the segment.
    assert nbt[0]["CommandLine"] == "C:\\AtomicRedTeam\\ExternalPayloads\\nbtscan.exe  127.0.0.1-5 "
    assert nbt[0]["ParentImage"].endswith("\\cmd.exe")
    conns = [e for e in of(sysmon, 3) if e["ProcessGuid"] == nbt[0]["ProcessGuid"]]
    assert {e["Protocol"] for e in conns} == {"udp"} and {e["DestinationPort"] for e in conns} == {"137"}
    assert sorted(e["DestinationIp"] for e in conns) == [f"127.0.0.{i}" for i in range(1, 6)]
    sec = of(events(host, SECURITY, scenario["marks"][SECURITY]), 4688)
    assert any(e["NewProcessName"].lower().endswith("\\nbtscan.exe") and "127.0.0.1-5" in e["CommandLine"] for e in sec)


def test_5_netstat_expected_signals(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    line = scenario["results"][5][1]
    sysmon = events(host, SYSMON, scenario["marks"][SYSMON])
    cmd = [e for e in of(sysmon, 1) if e["CommandLine"] == line]
    assert cmd[0]["Image"] == "C:\\Windows\\System32\\cmd.exe"
    assert "netstat -ano" in line and "findstr LISTENING" in line
    kids = [e for e in of(sysmon, 1) if e["ParentProcessGuid"] == cmd[0]["ProcessGuid"]]
    # (the redirection is cut out of the segment; the spacing around it stays)
    assert [k["CommandLine"].rstrip() for k in kids] == ["netstat  -ano", "findstr  LISTENING"]
    target = "C:\\Users\\atomiclab\\AppData\\Local\\Temp\\df00tech-netstat.txt"
    files = [e for e in of(sysmon, 11) if e["TargetFilename"] == target]
    assert files and files[0]["ProcessGuid"] == cmd[0]["ProcessGuid"]
    written = host.fs.read(target).decode()
    assert "LISTENING" in written and "0.0.0.0:445" in written and "ESTABLISHED" not in written
    sec = of(events(host, SECURITY, scenario["marks"][SECURITY]), 4688)
    assert any(e["NewProcessName"].endswith("\\cmd.exe") and e["CommandLine"] == line for e in sec)


def test_lineage_svchost_winrshost_shell_tool(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    by_guid = {e["ProcessGuid"]: e for e in of(events(host, SYSMON), 1)}
    nmap = next(e for e in by_guid.values() if e["Image"].lower().endswith("\\nmap.exe"))
    shell = by_guid[nmap["ParentProcessGuid"]]
    launcher = by_guid[shell["ParentProcessGuid"]]
    comspec = by_guid[launcher["ParentProcessGuid"]]
    winrs = by_guid[comspec["ParentProcessGuid"]]
    assert shell["Image"].endswith("\\powershell.exe") and shell["CommandLine"].startswith('"powershell.exe" & {')
    # The lab's chain (issue 14): svchost -k DcomLaunch > WinrsHost.exe -Embedding > cmd.exe /C
    # <launcher> > powershell.exe -EncodedCommand (the launcher) > the atomic's root.
    assert launcher["CommandLine"].startswith("powershell.exe  -NoProfile -NonInteractive -EncodedCommand ")
    assert comspec["CommandLine"].startswith("C:\\Windows\\system32\\cmd.exe /C powershell.exe -NoProfile")
    assert winrs["Image"] == "C:\\Windows\\System32\\winrshost.exe"
    assert winrs["CommandLine"] == "C:\\Windows\\system32\\WinrsHost.exe -Embedding"
    assert winrs["ParentImage"] == "C:\\Windows\\System32\\svchost.exe"
    assert winrs["ParentCommandLine"] == "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p"
    assert re.fullmatch(r"\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}", nmap["ProcessGuid"])


def test_record_ids_increase_per_channel(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    for ch in (SYSMON, SECURITY, POWERSHELL_OPERATIONAL):
        rids = [int(e["_rid"]) for e in events(host, ch)]
        assert rids == sorted(rids) and len(set(rids)) == len(rids) and rids


def test_cleanups_remove_outputs(scenario: dict[str, Any]) -> None:
    host = scenario["host"]
    for n, test in enumerate(load_tests(), 1):
        cleanup = test["executor"].get("cleanup_command")
        if cleanup:
            res = host.execute(render(test["executor"]["name"], substitute(cleanup, test)))
            assert res.exit_code == 0, (n, res.stderr)
    temp = "C:\\Users\\atomiclab\\AppData\\Local\\Temp\\"
    assert not host.fs.exists(temp + "df00tech-nmap-test.txt")
    assert not host.fs.exists(temp + "df00tech-netstat.txt")


def test_sysmon_network_off_gives_no_eid3() -> None:
    host = EmulatedHost(HostSettings(sysmon_network=False))
    for n in (1, 2, 3, 4):
        assert run_atomic(host, n)[2].exit_code == 0
    sysmon = events(host, SYSMON)
    assert of(sysmon, 3) == [] and of(sysmon, 1)


def test_nmap_missing_prereq_fails_like_windows() -> None:
    host = EmulatedHost(HostSettings(tools=frozenset({"nbtscan"})))
    test = load_tests()[0]
    dep = test["dependencies"][0]
    pre = host.execute(render("powershell", substitute(dep["prereq_command"], test)))
    assert pre.exit_code == 1 and pre.stdout == "" and pre.stderr == ""
    get = host.execute(render("powershell", substitute(dep["get_prereq_command"], test)))
    assert get.exit_code == 1 and "Install nmap" in get.stdout
    # Running the atomic anyway fails the way PowerShell does for a missing path.
    res = run_atomic(host, 1)[2]
    assert res.exit_code == 1
    assert "The term 'C:\\Program Files (x86)\\Nmap\\nmap.exe' is not recognized" in res.stderr
    assert "CommandNotFoundException" in res.stderr
    assert not [e for e in of(events(host, SYSMON), 1) if e["Image"].lower().endswith("nmap.exe")]


def test_command_line_auditing_off_empties_4688_commandline() -> None:
    host = EmulatedHost(HostSettings(command_line_auditing=False))
    run_atomic(host, 5)
    sec = of(events(host, SECURITY), 4688)
    assert sec and all(e["CommandLine"] == "" for e in sec)
    assert any(e["NewProcessName"].endswith("\\cmd.exe") for e in sec)


def test_logging_off_states() -> None:
    host = EmulatedHost(
        HostSettings(process_auditing=False, script_block_logging=False, sysmon_file=False, sysmon_installed=True)
    )
    run_atomic(host, 1)
    assert of(events(host, SECURITY), 4688) == []
    assert of(events(host, POWERSHELL_OPERATIONAL), 4104) == []
    assert of(events(host, SYSMON), 11) == [] and of(events(host, SYSMON), 1)
    bare = EmulatedHost(HostSettings(sysmon_installed=False))
    assert SYSMON not in bare.eventlog.channels()
    res = bare.execute("wevtutil qe Microsoft-Windows-Sysmon/Operational /c:1")
    assert res.exit_code == 15007 and "could not be found" in res.stderr


# --- The same signals through the real WinRM transport (pypsrp) and the harness's own rendering ----


def _tree(sysmon1: list[dict[str, str]], marker: str) -> list[dict[str, str]]:
    """The marked root process and all its descendants (Sysmon 1 events)."""
    roots = [e for e in sysmon1 if marker in e["CommandLine"]]
    assert len(roots) == 1, marker
    out, guids = list(roots), {roots[0]["ProcessGuid"]}
    for e in sysmon1:  # creation order: a parent always precedes its children
        if e["ParentProcessGuid"] in guids and e not in out:
            out.append(e)
            guids.add(e["ProcessGuid"])
    return out


@pytest.mark.network
def test_five_atomics_through_winrm_produce_every_expected_signal() -> None:
    atomics = load_atomic_file(ATOMICS)
    temp = "C:\\Users\\atomiclab\\AppData\\Local\\Temp\\"
    with winrm_host() as (host, transport):
        seen: dict[int, dict[str, Any]] = {}
        for n, test in enumerate(atomics.tests, 1):
            marks = {ch: host.eventlog.last_record_id(ch) for ch in (SYSMON, SECURITY, POWERSHELL_OPERATIONAL)}
            marker = new_run_marker()
            record = execute_atomic(transport, test, args={}, marker=marker, get_prereqs=False, timeout=60,
                                    cleanup=False, platform="windows")
            assert record.status is ExecutionStatus.EXECUTED, (test.name, record.reason, record.error)
            assert record.result is not None and record.result.exit_code == 0, (test.name, record.result)
            sysmon = events(host, SYSMON, marks[SYSMON])
            tree = _tree(of(sysmon, 1), marker)
            guids = {e["ProcessGuid"] for e in tree}
            seen[n] = {
                "line": record.command_line,
                "tree": tree,
                "net": [e for e in of(sysmon, 3) if e["ProcessGuid"] in guids],
                # PowerShell's engine-start probe files are the tree's too; checked separately below
                "files": [e for e in of(sysmon, 11) if e["ProcessGuid"] in guids
                          and "__PSScriptPolicyTest_" not in e["TargetFilename"]],
                "probes": [e for e in of(sysmon, 11) if e["ProcessGuid"] in guids
                           and "__PSScriptPolicyTest_" in e["TargetFilename"]],
                "4688": of(events(host, SECURITY, marks[SECURITY]), 4688),
                "4104": [e["ScriptBlockText"] for e in of(events(host, POWERSHELL_OPERATIONAL,
                                                                  marks[POWERSHELL_OPERATIONAL]), 4104)],
            }
        netstat_file = host.fs.read(temp + "df00tech-netstat.txt").decode()

    def image(e: dict[str, str], name: str) -> bool:
        return e["Image"].lower().endswith("\\" + name)

    # 1. nmap: Sysmon 1 (nmap.exe, '-sV -p', '127.0.0.1'), Sysmon 3 per open port, Sysmon 11 %TEMP% file, 4688.
    s = seen[1]
    nmap = [e for e in s["tree"] if image(e, "nmap.exe")]
    assert len(nmap) == 1 and "-sV -p" in nmap[0]["CommandLine"] and "127.0.0.1" in nmap[0]["CommandLine"]
    conns = [e for e in s["net"] if image(e, "nmap.exe")]
    assert sorted(int(e["DestinationPort"]) for e in conns) == [22, 135, 445, 3389]
    assert {e["DestinationIp"] for e in conns} == {"127.0.0.1"}
    assert [e["TargetFilename"] for e in s["files"]] == [temp + "df00tech-nmap-test.txt"]
    assert any(e["NewProcessName"].lower().endswith("\\nmap.exe") and "-sV -p" in e["CommandLine"] for e in s["4688"])
    # every powershell.exe start writes its AppLocker probe pair to %TEMP% (logged by the lab config)
    assert sorted(e["TargetFilename"].rsplit(".", 1)[1] for e in s["probes"]) == ["ps1", "psm1"]
    # 2. TcpClient loop: Sysmon 1 powershell.exe ('Net.Sockets.TcpClient', 'Connect'), Sysmon 3 per open port, 4104.
    s = seen[2]
    root = s["tree"][0]
    assert image(root, "powershell.exe") and "Net.Sockets.TcpClient" in root["CommandLine"]
    assert "Connect" in root["CommandLine"]
    assert {e["Image"] for e in s["net"]} == {root["Image"]}
    assert {e["DestinationIp"] for e in s["net"]} == {"127.0.0.1"}
    assert sorted(int(e["DestinationPort"]) for e in s["net"]) == [22, 135, 445, 3389, 5985, 5986]
    assert any("New-Object System.Net.Sockets.TcpClient" in b and "$tcp.Connect(" in b for b in s["4104"])
    # 3. Test-NetConnection sweep: Sysmon 1 ('1..5', 'Test-NetConnection', '-Port 80'), no Sysmon 3 (port 80 closed), 4104.
    s = seen[3]
    root = s["tree"][0]
    assert image(root, "powershell.exe")
    assert all(part in root["CommandLine"] for part in ("1..5", "Test-NetConnection", "-Port 80"))
    assert s["net"] == []  # refused connects to port 80 log nothing
    assert any("ForEach-Object { Test-NetConnection" in b for b in s["4104"])
    # 4. nbtscan: Sysmon 1 (nbtscan.exe, an address range), Sysmon 3 UDP to 137, 4688.
    s = seen[4]
    nbt = [e for e in s["tree"] if image(e, "nbtscan.exe")]
    assert len(nbt) == 1 and re.search(r"127\.0\.0\.1-5\b", nbt[0]["CommandLine"])
    conns = [e for e in s["net"] if image(e, "nbtscan.exe")]
    assert conns and {e["Protocol"] for e in conns} == {"udp"} and {e["DestinationPort"] for e in conns} == {"137"}
    assert any(e["NewProcessName"].lower().endswith("\\nbtscan.exe") and "127.0.0.1-5" in e["CommandLine"]
               for e in s["4688"])
    # 5. netstat: Sysmon 1 cmd.exe ('netstat -ano', 'findstr LISTENING'), Sysmon 11 with listening output, 4688.
    s = seen[5]
    root = s["tree"][0]
    assert image(root, "cmd.exe") and "netstat -ano" in root["CommandLine"] and "findstr LISTENING" in root["CommandLine"]
    assert temp + "df00tech-netstat.txt" in [e["TargetFilename"] for e in s["files"]]
    assert "LISTENING" in netstat_file and "ESTABLISHED" not in netstat_file
    assert any(e["NewProcessName"].lower().endswith("\\cmd.exe") and e["CommandLine"] == s["line"] for e in s["4688"])
    # Lineage as on the lab host: WinrsHost.exe > cmd.exe /C > the launcher > every executor shell.
    for s in seen.values():
        # The root's parent is the harness's launcher (powershell.exe -EncodedCommand), as in the lab.
        assert s["tree"][0]["ParentImage"] == "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
        assert "-EncodedCommand" in s["tree"][0]["ParentCommandLine"]


@pytest.mark.network
def test_winrm_sysmon_network_off_gives_no_eid3() -> None:
    atomics = load_atomic_file(ATOMICS)
    with winrm_host(HostSettings(sysmon_network=False)) as (host, transport):
        for test in atomics.tests:
            record = execute_atomic(transport, test, args={}, marker=new_run_marker(), get_prereqs=False,
                                    timeout=60, platform="windows")
            assert record.status is ExecutionStatus.EXECUTED, (test.name, record.reason, record.error)
        sysmon = events(host, SYSMON)
    assert of(sysmon, 3) == []
    assert [e for e in of(sysmon, 1) if e["Image"].lower().endswith("\\nmap.exe")]  # the scan itself still ran


@pytest.mark.network
@pytest.mark.parametrize("get_prereqs", [False, True])
def test_winrm_nmap_not_installed_fails_the_prerequisite(get_prereqs: bool) -> None:
    test = load_atomic_file(ATOMICS).tests[0]
    with winrm_host(HostSettings(tools=frozenset({"nbtscan"}))) as (host, transport):
        record = execute_atomic(transport, test, args={}, marker=new_run_marker(), get_prereqs=get_prereqs,
                                timeout=60, platform="windows")
        sysmon = events(host, SYSMON)
    assert record.status is ExecutionStatus.SKIPPED_PREREQ
    assert record.reason is not None
    assert "nmap.exe must exist at C:\\Program Files (x86)\\Nmap\\nmap.exe" in record.reason
    assert len(record.prereqs) == 1 and not record.prereqs[0].met
    assert record.prereqs[0].check.exit_code == 1
    assert (record.prereqs[0].get is not None) is get_prereqs
    assert record.result is None  # the atomic itself never ran
    assert not [e for e in of(sysmon, 1) if e["Image"].lower().endswith("nmap.exe")]
