"""Emulated events use the real schema: same EventData names, same order, same System block shape.

Reference events are read from the public recordings (``../shared/telemetry/public``) with
PyEvtxParser; each test skips with a reason when its recording is absent.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from harness.emulated.eventlog import EventLog, QueryError, compile_xpath, system_time, utc_time
from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.emulated.sysmon_config import load_sysmon_config
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON

LOG_ALL = Path(__file__).parent / "fixtures" / "sysmon" / "log_all.xml"

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
NMAP_RUN = "atomic-evtx/attacks_by_category_unfiltered/discovery/Port Scan NMap for Windows"
REFERENCES = {
    # (channel, EventID, Version) -> recording holding a real event of that version
    (SYSMON, 1, 5): f"{NMAP_RUN}/T1046-3_Microsoft-Windows-Sysmon_Operational.evtx",
    (SYSMON, 5, 3): f"{NMAP_RUN}/T1046-3_Microsoft-Windows-Sysmon_Operational.evtx",
    (SYSMON, 3, 5): "evtx-attack-samples/AutomatedTestingTools/PanacheSysmon_vs_AtomicRedTeam01.evtx",
    (SYSMON, 11, 2): "sigma-regression-data/regression_data/rules/windows/file/file_event/"
    "file_event_win_advanced_ip_scanner/fed85bf9-e075-4280-9159-fbe8a023d6fa.evtx",
    (
        POWERSHELL_OPERATIONAL,
        4104,
        1,
    ): "velociraptor-testdata/artifacts/testdata/files/EID4104_PowershellScriptblock.evtx",
}
OTRF_ZIP = "security-datasets/datasets/atomic/windows/credential_access/host/empire_ninjacopy_dumping_ntds_dit_file.zip"
MDEC_4688 = "evtx-to-mitre-attack/TA0007-Discovery/T1016-System Network Configuration Discovery/ID4688-Firewall configuration enumerated (command).evtx"


def recording(rel: str) -> Path:
    path = PUBLIC / rel
    if not path.exists():
        pytest.skip(f"public recording not present: {rel} (shared/telemetry/public is optional)")
    return path


def real_event(rel: str, event_id: int, version: int) -> ET.Element:
    evtx = pytest.importorskip("evtx")
    for rec in evtx.PyEvtxParser(str(recording(rel))).records():
        root = ET.fromstring(rec["data"].encode("utf-8"))
        sys_ = root.find(f"{NS}System")
        assert sys_ is not None
        if sys_.findtext(f"{NS}EventID") == str(event_id) and sys_.findtext(f"{NS}Version") == str(version):
            return root
    pytest.fail(f"{rel} has no EventID {event_id} version {version}")


def names(root: ET.Element) -> list[str]:
    return [d.get("Name") or "" for d in root.iter(f"{NS}Data")]


def system_tags(root: ET.Element) -> list[str]:
    sys_ = root.find(f"{NS}System")
    assert sys_ is not None
    return [child.tag.replace(NS, "") for child in sys_]


@pytest.fixture(scope="module")
def host() -> EmulatedHost:
    # A config logging every type the host writes (the lab's own logs no Sysmon 5: see
    # test_emulated_sysmon_config.py), so each event type's schema can be compared.
    h = EmulatedHost(HostSettings(sysmon_config=load_sysmon_config(LOG_ALL), network_timing=NetworkTiming.instant()))
    # One of every event type: process create/exit, TCP connect, file create, script block.
    res = h.execute(
        '"powershell.exe" & {$t = New-Object Net.Sockets.TcpClient; try { $t.Connect(\\""127.0.0.1\\"", 445) } '
        'finally { $t.Close() }; Set-Content -Path \\""$env:TEMP\\x.txt\\"" -Value 1} #atomiclab_run_x'
    )
    assert res.exit_code == 0, res.stderr
    return h


def emulated(host: EmulatedHost, channel: str, event_id: int) -> ET.Element:
    for xml in host.eventlog.query(channel):
        root = ET.fromstring(xml)
        if root.findtext(f"{NS}System/{NS}EventID") == str(event_id):
            return root
    pytest.fail(f"the emulated host wrote no {channel} {event_id}")


@pytest.mark.parametrize("key", sorted(REFERENCES), ids=lambda k: f"{k[0].split('/')[0]}-{k[1]}-v{k[2]}")
def test_eventdata_names_and_order_match_real(host: EmulatedHost, key: tuple[str, int, int]) -> None:
    channel, eid, version = key
    real = real_event(REFERENCES[key], eid, version)
    mine = emulated(host, channel, eid)
    assert mine.findtext(f"{NS}System/{NS}Version") == str(version)
    assert names(mine) == names(real)
    assert system_tags(mine) == system_tags(real)
    for tag in ("Provider", "Level", "Task", "Opcode", "Keywords"):
        r, m = real.find(f"{NS}System/{NS}{tag}"), mine.find(f"{NS}System/{NS}{tag}")
        assert r is not None and m is not None
        if tag == "Provider":
            assert m.get("Name") == r.get("Name")
            assert (m.get("Guid") or "").strip("{}").lower() == (r.get("Guid") or "").strip("{}").lower()
        else:
            assert (m.text or "") == (r.text or ""), tag


def test_security_4688_v2_matches_real_field_order(host: EmulatedHost) -> None:
    mine = emulated(host, SECURITY, 4688)
    assert mine.findtext(f"{NS}System/{NS}Version") == "2"
    path = recording(OTRF_ZIP)
    with zipfile.ZipFile(path) as z, z.open(z.namelist()[0]) as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("EventID") == 4688:
                keys = list(d)
                real = keys[keys.index("Task") + 1 :]  # the export lists EventData after the System fields
                break
    assert names(mine) == real
    # The older EVTX sample of the same version stops before ParentProcessName/MandatoryLabel.
    evtx_real = real_event(MDEC_4688, 4688, 2)
    assert names(mine)[: len(names(evtx_real))] == names(evtx_real)
    for tag in ("Level", "Task", "Keywords"):
        assert mine.findtext(f"{NS}System/{NS}{tag}") == evtx_real.findtext(f"{NS}System/{NS}{tag}")


def test_security_4689_v0_matches_real_fields_and_system_values(host: EmulatedHost) -> None:
    """4689 (process exit) against real 4689s of the security-datasets export; the recordings hold it
    only as JSON lines (no Version), so the version is checked against Microsoft's documentation: 4689
    has only version 0 (SubjectUserSid .. SubjectLogonId, Status, ProcessId, ProcessName)."""
    mine = emulated(host, SECURITY, 4689)
    assert mine.findtext(f"{NS}System/{NS}Version") == "0"
    path = recording(OTRF_ZIP)
    reals: list[dict[str, object]] = []
    with zipfile.ZipFile(path) as z, z.open(z.namelist()[0]) as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("EventID") == 4689:
                reals.append(d)
    assert reals, f"{OTRF_ZIP} has no 4689"
    for d in reals:
        keys = list(d)
        assert names(mine) == keys[keys.index("Task") + 1 :]  # the export lists EventData after the System fields
        assert mine.findtext(f"{NS}System/{NS}Task") == d["Task"]
        assert mine.findtext(f"{NS}System/{NS}Level") == d["Level"]
        assert mine.findtext(f"{NS}System/{NS}Keywords") == d["Keywords"]
        provider = mine.find(f"{NS}System/{NS}Provider")
        assert provider is not None and provider.get("Name") == d["SourceName"]
        assert (provider.get("Guid") or "").lower() == str(d["ProviderGuid"]).lower()
    assert system_tags(mine) == system_tags(emulated(host, SECURITY, 4688))
    # Values formatted as real ones: hex ids and status, the full image path.
    data = {d.get("Name"): d.text or "" for d in mine.iter(f"{NS}Data")}
    for real in reals:
        for name in ("SubjectLogonId", "Status", "ProcessId"):
            assert re.fullmatch(r"0x[0-9a-f]+", str(real[name])) and re.fullmatch(r"0x[0-9a-f]+", data[name]), name
    assert re.fullmatch(r"[A-Z]:\\.+\.exe", data["ProcessName"], re.I)
    assert data["SubjectUserSid"].startswith("S-1-5-")


def test_value_formats_like_real_hosts(host: EmulatedHost) -> None:
    s1 = emulated(host, SYSMON, 1)
    data = {d.get("Name"): d.text or "" for d in s1.iter(f"{NS}Data")}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", data["UtcTime"])
    assert re.fullmatch(r"\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}", data["ProcessGuid"])
    assert data["ProcessId"].isdigit() and int(data["ProcessId"]) % 4 == 0
    assert re.fullmatch(r"SHA256=[0-9A-F]{64}", data["Hashes"])  # the config's HashAlgorithms: sha256
    assert data["CurrentDirectory"].endswith("\\")
    tc = s1.find(f"{NS}System/{NS}TimeCreated")
    assert tc is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", tc.get("SystemTime") or "")
    sec = {d.get("Name"): d.text or "" for d in emulated(host, SECURITY, 4688).iter(f"{NS}Data")}
    assert re.fullmatch(r"0x[0-9a-f]+", sec["NewProcessId"]) and re.fullmatch(r"0x[0-9a-f]+", sec["ProcessId"])
    assert sec["TokenElevationType"] in ("%%1936", "%%1937", "%%1938")
    # winrshost.exe is created by the WinRM service (NETWORK SERVICE): Security names the machine
    # account only for SYSTEM; other creators appear as themselves.
    assert sec["SubjectUserName"] != ""
    assert system_time(1_700_000_000_123_456_700) == "2023-11-14T22:13:20.1234567Z"
    assert utc_time(1_700_000_000_123_456_700) == "2023-11-14 22:13:20.123"


def test_script_block_split_past_size_limit() -> None:
    h = EmulatedHost()
    body = "Write-Host 'x'\n" * 3000  # ~45 000 characters: more than two 20 000-character parts
    text = body.rstrip("\n")
    res = h.execute('"powershell.exe" & {' + text + "} #atomiclab_run_y", timeout_s=120)
    assert res.exit_code == 0
    parts = []
    for xml in h.eventlog.query(POWERSHELL_OPERATIONAL):
        d = {x.get("Name"): x.text or "" for x in ET.fromstring(xml).iter(f"{NS}Data")}
        if int(d["MessageTotal"]) > 1:
            parts.append(d)
    groups: dict[str, list[dict[str, str]]] = {}
    for p in parts:
        groups.setdefault(p["ScriptBlockId"], []).append(p)
    # The harness's launcher script (it carries the command line as a literal) is split too;
    # the -Command text and the & {...} block it invokes are both logged, each split into 3 parts.
    launcher = [k for k, g in groups.items() if g[0]["ScriptBlockText"].startswith("$psi = ")]
    assert len(launcher) == 1
    del groups[launcher[0]]
    assert len(groups) == 2
    for g in groups.values():
        # PowerShell splits at a random segment size of 10000-19999 characters (CompiledScriptBlock.cs)
        n = len(g)
        assert [int(p["MessageNumber"]) for p in g] == list(range(1, n + 1)) and {p["MessageTotal"] for p in g} == {str(n)}
        assert all(len(p["ScriptBlockText"]) < 20000 for p in g) and n >= 3
    texts = sorted("".join(p["ScriptBlockText"] for p in g) for g in groups.values())
    # the invoked { } literal is logged with its braces (its AST extent)
    assert texts[0] == "& {" + text + "} #atomiclab_run_y" and texts[1] == "{" + text + "}"


def test_xpath_subset() -> None:
    h = EmulatedHost()
    h.execute("hostname")
    first = h.eventlog.last_record_id(SYSMON)
    h.execute("whoami", launcher=False)
    after = h.eventlog.query(SYSMON, xpath=f"*[System[EventRecordID>{first}]]")
    assert after and all(int(re.search(r"<EventRecordID>(\d+)<", x).group(1)) > first for x in after)  # type: ignore[union-attr]
    only1 = h.eventlog.query(SYSMON, xpath="*[System[(EventID=1 or EventID=3)]]")
    assert only1 and all("<EventID>1</EventID>" in x for x in only1)
    both = h.eventlog.query(SYSMON, xpath=f"*[System[(EventID=1) and EventRecordID>{first}]]")
    assert len(both) == 3  # WinrsHost.exe, WinRS's cmd.exe /C and whoami.exe
    named = h.eventlog.query(SYSMON, xpath="*[System[Provider[@Name='Microsoft-Windows-Sysmon']]]")
    assert len(named) == len(h.eventlog.query(SYSMON))
    data = h.eventlog.query(SYSMON, xpath="*[EventData[Data[@Name='Image']='C:\\Windows\\System32\\whoami.exe']]")
    assert len(data) == 1  # created (the lab's config logs no process terminations)
    for bad in ("*[System[EventID=]]", "Event[", "*[Foo[EventID=1]]", "//Data"):
        with pytest.raises(QueryError):
            compile_xpath(bad)


def test_delivery_delay_hides_events_until_due() -> None:
    clock = [100.0]
    log = EventLog("H", channels=[SYSMON], delivery_delay_s=5.0, monotonic=lambda: clock[0])
    from harness.emulated.eventlog import SYSMON_PROVIDER, EventRecord

    log.append(
        EventRecord(SYSMON, SYSMON_PROVIDER, 1, 5, 4, 1, 0, "0x8000000000000000", 0, 4, 8, "S-1-5-18", (("a", "b"),))
    )
    assert log.query(SYSMON) == []
    clock[0] += 5.0
    assert len(log.query(SYSMON)) == 1
