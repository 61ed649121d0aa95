"""External program models (profiles), lab preflight answers, wevtutil over the shell, terminate."""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.emulated.processes import STATUS_CONTROL_C_EXIT
from harness.emulated.sysmon_config import load_sysmon_config
from harness.emulated.tools import load_profiles, parse_targets
from harness.errors import EmulationError
from harness.telemetry.event import SECURITY, SYSMON

NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
TEMP = "C:\\Users\\atomiclab\\AppData\\Local\\Temp"


@pytest.fixture(scope="module")
def host() -> EmulatedHost:
    return EmulatedHost(HostSettings(network_timing=NetworkTiming.instant()))


def test_profiles_load_and_reject_bad_yaml() -> None:
    images = {p.image for p in load_profiles()}
    assert "C:\\Program Files (x86)\\Nmap\\nmap.exe" in images and "C:\\Windows\\System32\\cmd.exe" in images
    with pytest.raises(EmulationError, match=r"profiles/bad\.yaml"):
        load_profiles({"bad.yaml": "programs:\n- behaviour: nmap\n"})


def test_preflight_answers_default_lab(host: EmulatedHost) -> None:
    r = host.execute("sc.exe query Sysmon64")
    assert r.exit_code == 0 and "STATE              : 4  RUNNING" in r.stdout
    r = host.execute("C:\\Windows\\Sysmon64.exe -c")
    assert re.search(r"- Config hash:\s+SHA256=[0-9A-F]{64}", r.stdout)
    assert re.search(r"- Network connection:\s+enabled", r.stdout)
    r = host.execute('auditpol.exe /get /subcategory:"Process Creation"')
    assert "Process Creation                        Success and Failure" in r.stdout
    r = host.execute(
        "reg.exe query HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\Audit "
        "/v ProcessCreationIncludeCmdLine_Enabled"
    )
    assert r.exit_code == 0 and "ProcessCreationIncludeCmdLine_Enabled    REG_DWORD    0x1" in r.stdout
    r = host.execute(
        "reg.exe query HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging "
        "/v EnableScriptBlockLogging"
    )
    assert r.exit_code == 0 and "REG_DWORD    0x1" in r.stdout
    r = host.execute("wevtutil.exe gl Microsoft-Windows-Sysmon/Operational")
    assert r.exit_code == 0 and r.stdout.startswith("name: Microsoft-Windows-Sysmon/Operational\r\nenabled: true")
    assert host.execute("cmd /c ver").stdout == "\r\nMicrosoft Windows [Version 10.0.20348.2700]\r\n"
    assert host.execute("HOSTNAME").stdout == "WIN-ATOMICLAB1\r\n"


def test_preflight_answers_degraded_lab() -> None:
    h = EmulatedHost(HostSettings(sysmon_installed=False, process_auditing=False, script_block_logging=False))
    r = h.execute("sc.exe query Sysmon64")
    assert r.exit_code == 1060 and "FAILED 1060" in r.stdout
    r = h.execute("C:\\Windows\\Sysmon64.exe -c")
    assert r.exit_code == 2  # CreateProcess fails: the file does not exist
    assert "No Auditing" in h.execute('auditpol /get /subcategory:"Process Creation"').stdout
    r = h.execute(
        "reg query HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging /v EnableScriptBlockLogging"
    )
    assert r.exit_code == 1
    assert r.stderr == "ERROR: The system was unable to find the specified registry key or value.\r\n"
    r = h.execute("wevtutil gl Microsoft-Windows-Sysmon/Operational")
    assert r.exit_code == 15007
    net_off = EmulatedHost(HostSettings(sysmon_network=False)).execute("C:\\Windows\\Sysmon64.exe -c")
    assert re.search(r"- Network connection:\s+disabled", net_off.stdout)


def test_wevtutil_qe_over_the_shell(host: EmulatedHost) -> None:
    mark = host.eventlog.last_record_id(SYSMON)
    host.execute("whoami")
    r = host.execute(
        f'wevtutil qe Microsoft-Windows-Sysmon/Operational /q:"*[System[EventRecordID>{mark}]]" /f:xml /e:Events'
    )
    root = ET.fromstring(r.stdout)
    assert root.tag == "Events"
    images = [d.text for d in root.iter(f"{NS}Data") if d.get("Name") == "Image"]
    assert "C:\\Windows\\System32\\whoami.exe" in images
    # the query itself is a wevtutil.exe process under winrshost.exe, logged before it ran
    assert "C:\\Windows\\System32\\wevtutil.exe" in images
    r = host.execute("wevtutil qe Security /c:3 /rd:true /f:xml")
    rids = [int(x) for x in re.findall(r"<EventRecordID>(\d+)</EventRecordID>", r.stdout)]
    assert len(rids) == 3 and rids == sorted(rids, reverse=True)
    assert host.execute('wevtutil qe Security /q:"*[System[EventID=]]"').exit_code == 15001


def test_delivery_delay_applies_to_wevtutil() -> None:
    h = EmulatedHost(HostSettings(delivery_delay_s=3600.0))
    h.execute("whoami")
    r = h.execute("wevtutil qe Microsoft-Windows-Sysmon/Operational /f:xml")
    assert r.exit_code == 0 and r.stdout == ""


def test_nmap_output_files_and_options(host: EmulatedHost) -> None:
    r = host.execute(
        '"C:\\Program Files (x86)\\Nmap\\nmap.exe" -sT -Pn --open -p 445,3389,1-3 127.0.0.1 '
        f'-oX "{TEMP}\\v.xml" -oG {TEMP}\\v.gnmap'
    )
    assert r.exit_code == 0
    assert "Not shown: 3 closed tcp ports (reset)" in r.stdout and "1/tcp" not in r.stdout
    xml = ET.fromstring(host.fs.read(f"{TEMP}\\v.xml").decode())
    assert xml.tag == "nmaprun" and [p.get("portid") for p in xml.iter("port")] == ["445", "3389"]
    assert (
        "Ports: 445/open/tcp//microsoft-ds///, 3389/open/tcp//ms-wbt-server///"
        in host.fs.read(f"{TEMP}\\v.gnmap").decode()
    )
    r = host.execute("nmap -sU -p 137 10.0.2.15")
    assert re.search(r"137/udp\s+open\s+netbios-ns", r.stdout)
    r = host.execute("nmap -p 80 10.9.9.9")
    assert "Host seems down" in r.stdout


def test_nbtscan_ranges_and_cidr(host: EmulatedHost) -> None:
    assert parse_targets("127.0.0.1-3", host) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert len(parse_targets("10.0.2.0/30", host)) == 2
    before = host.eventlog.last_record_id(SYSMON)
    r = host.execute("C:\\AtomicRedTeam\\ExternalPayloads\\nbtscan.exe 10.0.2.14/31")
    assert "10.0.2.15        WIN-ATOMICLAB1   <server>" in r.stdout
    udp = [x for x in host.eventlog.query(SYSMON, after_record_id=before) if "<Data Name='Protocol'>udp<" in x]
    assert len(udp) == 2


def test_system_tools_output(host: EmulatedHost) -> None:
    out = host.execute("netstat -ano").stdout
    assert "  Proto  Local Address          Foreign Address        State           PID" in out
    assert re.search(r"  TCP    0\.0\.0\.0:445\s+0\.0\.0\.0:0\s+LISTENING\s+4\r\n", out)
    assert "Internet Address      Physical Address      Type" in host.execute("arp -a").stdout
    assert "IPv4 Route Table" in host.execute("route print").stdout
    assert "IPv4 Address. . . . . . . . . . . : 10.0.2.15" in host.execute("ipconfig").stdout
    assert "There are no entries in the list." in host.execute("net use").stdout
    assert host.execute("net view").exit_code == 2
    r = host.execute("timeout /t 5")
    assert r.exit_code == 1 and "Input redirection is not supported" in r.stderr
    r = host.execute("ping -n 1 127.0.0.1")
    assert "Reply from 127.0.0.1: bytes=32 time<1ms TTL=128" in r.stdout and r.exit_code == 0


def test_missing_tool_in_cmd_is_not_recognized() -> None:
    h = EmulatedHost(HostSettings(tools=frozenset()))
    r = h.execute('"cmd.exe" /c C:\\AtomicRedTeam\\ExternalPayloads\\nbtscan.exe 127.0.0.1-5 & rem x')
    assert (
        "'C:\\AtomicRedTeam\\ExternalPayloads\\nbtscan.exe' is not recognized as an internal or external command"
        in r.stderr
    )
    r = h.execute('"cmd.exe" /c nmap -p 80 127.0.0.1')
    assert r.exit_code == 9009


def test_terminate_stops_ping_promptly() -> None:
    h = EmulatedHost(HostSettings(sysmon_config=load_sysmon_config(Path(__file__).parent / "fixtures/sysmon/log_all.xml")))
    shell = h.open_shell("atomiclab")
    cmd = shell.start('"cmd.exe" /c ping -n 30 127.0.0.1')
    first = cmd.read(5.0)
    assert b"Pinging 127.0.0.1" in first.stdout and not first.done
    stopper = threading.Thread(target=cmd.terminate)
    stopper.start()
    stopper.join(timeout=5.0)
    assert not stopper.is_alive()  # terminate() returned: the worker unwound without waiting 30 s
    final = cmd.read(0.0)
    assert final.done and final.exit_code == STATUS_CONTROL_C_EXIT
    shell.close()
    exits = [x for x in h.eventlog.query(SYSMON) if "<EventID>5<" in x]
    assert any("PING.EXE" in x for x in exits) and any("cmd.exe" in x for x in exits)
    statuses = re.findall(r"<Data Name='Status'>(0x[0-9a-f]+)</Data>", "".join(h.eventlog.query(SECURITY)))
    assert "0xc000013a" in statuses


def test_output_codepage(host: EmulatedHost) -> None:
    shell = host.open_shell("atomiclab", codepage=65001)
    c = shell.start('"powershell.exe" & {Write-Output \\""caf\u00e9\\""}')
    data = b""
    while True:
        chunk = c.read(5.0)
        data += chunk.stdout
        if chunk.done:
            break
    shell.close()
    assert data == "caf\u00e9\r\n".encode()
