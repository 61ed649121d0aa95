"""Value-by-value fidelity of the emulated host's Sysmon 1 and 3 against the closest real events in
../shared/telemetry/public (skipped when absent). Each test names the recording and lists the only
differences it allows; PowerShell 4104/400/403/600 are compared in test_emulated_ps_logging.py and
Sysmon 11 / Security 4688/4689 field names and formats in test_emulated_schema.py.

Allowed differences everywhere: ProcessGuid/ProcessId/LogonGuid/LogonId/UtcTime (per run), the
host name and account (User), Hashes (different binaries), the build number in FileVersion (the
recordings are Windows 10 19041, the lab Windows Server 2022 20348) and CurrentDirectory (each run's
own %TEMP%)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.emulated.tools import load_profiles
from harness.telemetry.event import SYSMON

PUBLIC = Path(__file__).resolve().parent.parent / "../shared/telemetry/public"
TASKLIST = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Discover Specific Process - tasklist"
USERHUNTER = PUBLIC / "evtx-attack-samples/Discovery/discovery_sysmon_3_Invoke_UserHunter_SourceMachine.evtx"
POWERCAT = PUBLIC / "evtx-attack-samples/Lateral Movement/powercat_revShell_sysmon_1_3.evtx"
MARK = "atomiclab_run_" + "9" * 32


def _records(path: Path, event_id: int) -> list[dict[str, Any]]:
    evtx = pytest.importorskip("evtx")
    out = []
    for r in evtx.PyEvtxParser(str(path)).records_json():
        d = json.loads(r["data"])["Event"]
        if str(d["System"]["EventID"]) == str(event_id):
            out.append({k: "" if v is None else str(v) for k, v in d["EventData"].items()})
    return out


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"public recording absent: {path}")


def _emulated(host: EmulatedHost, event_id: int) -> list[dict[str, str]]:
    return [dict(re.findall(r"<Data Name='(\w+)'>([^<]*)<", x.replace("&amp;", "&")))
            for x in host.eventlog.query(SYSMON, xpath=f"*[System[EventID={event_id}]]")]


def test_sysmon1_cmd_pipe_matches_the_tasklist_recording() -> None:
    _need(TASKLIST)
    real = {r["Image"]: r for r in _records(next(TASKLIST.glob("*Sysmon*.evtx")), 1)}
    host = EmulatedHost(HostSettings(network_timing=NetworkTiming.instant()))
    line = '"cmd.exe" /c tasklist | findstr lsass'
    # (its exit code depends on the emulated tasklist's process list, not on what is compared here)
    assert not host.execute(line).timed_out  # the recorded line exactly (a marker would add " & rem ...")
    mine = {e["Image"]: e for e in _emulated(host, 1)}
    exact = ("Image", "CommandLine", "OriginalFileName", "Description", "Company", "Product", "IntegrityLevel",
             "TerminalSessionId", "RuleName", "ParentImage")  # fmt: skip
    for image in ("C:\\Windows\\System32\\tasklist.exe", "C:\\Windows\\System32\\findstr.exe"):
        m, r = mine[image], real[image]
        # cmd builds each child's command line: name as typed, then the rest of its pipe segment
        assert {k: m[k] for k in exact} == {k: r[k] for k in exact}, image
        assert list(m) == [k for k in r if k in m] and set(m) == set(r)  # same fields, same order
        # the parent is the cmd.exe the atomic started: its command line is the rendered line
        assert r["ParentCommandLine"] == m["ParentCommandLine"] == line
        assert m["CurrentDirectory"].endswith("\\") and r["CurrentDirectory"].endswith("\\")
        assert m["FileVersion"].split(".")[:2] == r["FileVersion"].split(".")[:2]
        assert m["FileVersion"].endswith("(WinBuild.160101.0800)") and r["FileVersion"].endswith("(WinBuild.160101.0800)")
        assert m["User"].split("\\")[0].isupper() and r["User"].split("\\")[0].isupper()


def test_version_resources_of_modelled_programs_match_the_recordings() -> None:
    """Every modelled program with a version resource that a recording also ran: the same
    OriginalFileName (FINDSTR.EXE, Cmd.Exe, PowerShell.EXE ...), Description, Company, Product."""
    _need(PUBLIC / "atomic-evtx")
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted((PUBLIC / "atomic-evtx").rglob("*Sysmon*.evtx")):
        for r in _records(path, 1):
            seen.setdefault(r["Image"].lower(), r)
    compared = 0
    for p in load_profiles():
        r = seen.get(p.image.lower())
        if r is None or not p.version.get("original_file_name"):
            continue
        compared += 1
        info = EmulatedHost().image_info(p.image)
        assert (info.original_file_name, info.description, info.company, info.product) == (
            r["OriginalFileName"], r["Description"], r["Company"], r["Product"]), p.image
    assert compared >= 10


def test_sysmon3_matches_the_recordings() -> None:
    """Outbound (UserHunter: powershell.exe to 389 ldap, System to 445 microsoft-ds) and inbound
    (powercat listener, Initiated=false: its own endpoint is the Source) connections."""
    _need(USERHUNTER)
    _need(POWERCAT)
    out = _records(USERHUNTER, 3)
    inbound = [r for r in _records(POWERCAT, 3) if r["Initiated"].lower() == "false"]
    host = EmulatedHost(HostSettings(network_timing=NetworkTiming.instant()))
    script = "$t = New-Object Net.Sockets.TcpClient; $t.Connect(\\\"\"127.0.0.1\\\"\", 445); $t.Close()"
    assert host.execute('"powershell.exe" & {' + script + "} #" + MARK).exit_code == 0
    client = next(e for e in _emulated(host, 3) if e["Initiated"] == "true")
    server = next(e for e in _emulated(host, 3) if e["Initiated"] == "false")
    real_445 = next(r for r in out if r["DestinationPort"] == "445")
    assert list(client) == [k for k in real_445 if k in client] and set(client) == set(real_445)
    for k in ("Protocol", "DestinationPort", "DestinationPortName", "SourceIsIpv6", "DestinationIsIpv6"):
        assert client[k] == real_445[k].lower(), k
    assert server["Image"] == real_445["Image"] == "System"  # SMB is served (and initiated) by System
    assert int(client["SourcePort"]) >= 49152 and int(real_445["SourcePort"]) >= 49152  # ephemeral range
    # the accepting side: own (listening) port as Source, the client's ephemeral port as Destination
    real_in = inbound[0]
    assert int(real_in["SourcePort"]) < int(real_in["DestinationPort"]) and server["SourcePort"] == "445"
    assert server["DestinationPort"] == client["SourcePort"]
    # known difference, allowed: this Sysmon (2019) left unknown port names empty, Sysmon 15 writes "-"
    assert real_in["DestinationPortName"] == "" and server["DestinationPortName"] == "-"


def test_tool_versions_are_the_lab_cache_pins() -> None:
    """The emulated nmap is the version the lab installs (lab/cache/cache.lock pins its installer)."""
    lock = (Path(__file__).resolve().parent.parent / "lab" / "cache" / "cache.lock").read_text(encoding="utf-8")
    pinned = re.search(r"nmap-(\d+\.\d+)-setup\.exe", lock)
    assert pinned is not None
    nmap = next(p for p in load_profiles() if p.image.lower().endswith("\\nmap.exe"))
    assert nmap.version["file_version"] == str(nmap.data["version"]) == pinned.group(1)
