"""PowerShell logging of the emulated host (harness/emulated/ps_logging.py) against PowerShell's
source (CompiledScriptBlock.cs: suspicious strings, levels, splitting, braces) and, value by value,
against the classic "Windows PowerShell" log of a real run (atomic-evtx T1571-1, which recorded
`"powershell.exe" & {Test-NetConnection -ComputerName google.com -port 8081}`).

Allowed differences from the recording, and only these: HostId, RunspaceId, HostVersion and
EngineVersion (the recording is Windows 10 19041, the lab Windows Server 2022 20348), TimeCreated,
EventRecordID, Computer and the command itself (the recording's host reached google.com)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.emulated.ps_logging import split_script_block, suspicious_signature
from harness.telemetry.event import POWERSHELL_OPERATIONAL, WINDOWS_POWERSHELL
from harness.telemetry.readers import read_events

ROOT = Path(__file__).resolve().parent.parent
T1571 = (ROOT / "../shared/telemetry/public/atomic-evtx/attacks_by_category_unfiltered/command-and-control/"
         "Testing usage of uncommonly used port with PowerShell/T1571-1_Windows PowerShell.evtx")
MARK = " #atomiclab_run_" + "f" * 32


def _host(**kw: object) -> EmulatedHost:
    return EmulatedHost(HostSettings(network_timing=NetworkTiming.instant(), **kw))  # type: ignore[arg-type]


def _blocks(host: EmulatedHost) -> list[tuple[int, str]]:
    out = []
    for x in host.eventlog.query(POWERSHELL_OPERATIONAL):
        level = int(re.search(r"<Level>(\d+)<", x).group(1))  # type: ignore[union-attr]
        text = re.search(r"<Data Name='ScriptBlockText'>(.*?)</Data>", x, re.S).group(1)  # type: ignore[union-attr]
        out.append((level, text.replace("&amp;", "&")))
    return out


def test_suspicious_strings_are_level_3_and_logged_without_the_policy() -> None:
    assert suspicious_signature("$b = [Convert]::FromBase64String($x)") == "FromBase64String"
    assert suspicious_signature("add-type -TypeDefinition $src") == "Add-Type"
    assert suspicious_signature("Test-NetConnection 127.0.0.1 -Port 80") is None
    host = _host()
    host.execute('"powershell.exe" & {Write-Host plain}' + MARK)
    assert {lvl for lvl, t in _blocks(host) if "Write-Host plain" in t} == {5}
    quiet = _host(script_block_logging=False)  # policy not configured
    quiet.execute('"powershell.exe" & {Write-Host plain}' + MARK)
    assert [t for _, t in _blocks(quiet) if "Write-Host plain" in t] == []
    quiet.execute('"powershell.exe" & {$x = \\""VirtualAlloc\\""; Write-Host $x}' + MARK)
    flagged = [(lvl, t) for lvl, t in _blocks(quiet) if "VirtualAlloc" in t]
    assert flagged and {lvl for lvl, _ in flagged} == {3}


def test_nested_block_keeps_its_braces() -> None:
    host = _host()
    host.execute('"powershell.exe" & {Write-Host a}' + MARK)
    texts = [t for _, t in _blocks(host)]
    assert "& {Write-Host a}" + MARK in texts and "{Write-Host a}" in texts


def test_split_follows_powershell() -> None:
    assert split_script_block("x" * 19999, random.Random(1)) == ["x" * 19999]
    parts = split_script_block("y" * 45000, random.Random(1))
    size = len(parts[0])
    assert 10000 <= size < 20000 and "".join(parts) == "y" * 45000 and len(parts) == 45000 // size + 1

    class Fixed(random.Random):
        def randrange(self, *args: object, **kw: object) -> int:  # type: ignore[override]
            return 5000

    # a multiple of the segment size ends with an empty segment, as PowerShell's loop writes it
    assert split_script_block("z" * 30000, Fixed()) == ["z" * 15000, "z" * 15000, ""]


def _classic(events: list[object]) -> list[tuple[int, list[str], dict[str, str]]]:
    out = []
    for e in events:
        values = list(e.fields.values())  # type: ignore[attr-defined]
        blob = next(v for v in values if "HostName=" in v)
        pairs = dict(line.strip().split("=", 1) for line in blob.splitlines() if "=" in line)
        out.append((e.event_id, [v for v in values if v is not blob][:2], pairs))  # type: ignore[attr-defined]
    return out


def test_classic_log_matches_the_recording_value_by_value(tmp_path: Path) -> None:
    if not T1571.is_file():
        pytest.skip(f"public recording absent: {T1571}")
    real = _classic([e for e in read_events(T1571) if e.event_id in (400, 403, 600)])
    host = _host()
    line = '"powershell.exe" & {Test-NetConnection -ComputerName 127.0.0.1 -port 8081}'
    host.execute(line + MARK)
    dump = tmp_path / "classic.xml"
    dump.write_text("\n".join(host.eventlog.query(WINDOWS_POWERSHELL)), encoding="utf-8")
    mine = [c for c in _classic(list(read_events(dump))) if "#atomiclab_run_" in c[2]["HostApplication"]]
    # same events in the same order: six provider starts, engine available, engine stopped
    assert [(eid, data) for eid, data, _ in mine] == [(eid, data) for eid, data, _ in real]
    allowed = {"HostId", "RunspaceId", "HostVersion", "EngineVersion", "HostApplication"}
    for (_, _, m), (_, _, r) in zip(mine, real, strict=True):
        assert list(m) == list(r)  # the same keys in the same order
        assert {k: v for k, v in m.items() if k not in allowed} == {k: v for k, v in r.items() if k not in allowed}
        assert bool(m["EngineVersion"]) == bool(r["EngineVersion"]) and bool(m["RunspaceId"]) == bool(r["RunspaceId"])
        assert re.fullmatch(r"5\.1\.\d+\.\d+", m["HostVersion"])
    # HostApplication as PowerShell writes it: argv joined, the quotes of "powershell.exe" gone
    assert mine[0][2]["HostApplication"] == "powershell.exe & {Test-NetConnection -ComputerName 127.0.0.1 -port 8081}" + MARK
    assert r["HostApplication"].startswith("powershell.exe & {Test-NetConnection")
    xml = host.eventlog.query(WINDOWS_POWERSHELL)[-1]
    assert "<Provider Name='PowerShell'/>" in xml and "<EventID Qualifiers='0'>" in xml
    assert "<Keywords>0x80000000000000</Keywords>" in xml and "<Execution ProcessID='0' ThreadID='0'/>" in xml
