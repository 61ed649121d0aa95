"""``atomiclab events``: table and jsonl output, filters, limit, one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.telemetry.event import Event

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T1046_10 = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"
SYSMON_EVTX = T1046_10 / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx"
WINPS_EVTX = T1046_10 / "T1046-10_Windows PowerShell.evtx"


@pytest.fixture
def recordings() -> None:
    if not SYSMON_EVTX.is_file():
        pytest.skip(f"recording {SYSMON_EVTX} absent")


@pytest.mark.usefixtures("recordings")
def test_table_with_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", str(SYSMON_EVTX), str(WINPS_EVTX), "--channel", "sysmon", "--event-id", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 35
    assert all("Microsoft-Windows-Sysmon/Operational" in line and "    1  " in line for line in lines)
    assert any('powershell.exe | "powershell.exe" & {$ipAddr' in line for line in lines)


@pytest.mark.usefixtures("recordings")
def test_jsonl_roundtrips_and_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", str(WINPS_EVTX), "--format", "jsonl", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    events = [Event.from_json(line) for line in lines]
    assert all(e.channel == "Windows PowerShell" and e.raw for e in events)
    assert json.loads(lines[0])["format"] == "atomiclab.event/1"


@pytest.mark.usefixtures("recordings")
def test_classic_powershell_summary_shows_host_application(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", str(WINPS_EVTX), "--channel", "WinPS", "--event-id", "400"]) == 0
    out = capsys.readouterr().out
    assert "HostApplication=powershell.exe & {$ipAddr" in out


def test_unreadable_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not events\n")
    assert main(["events", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "format not recognized" in err[0]
    assert main(["events", str(tmp_path / "missing.evtx")]) == 2
    assert "missing.evtx" in capsys.readouterr().err


def test_damage_summary_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    damaged = PUBLIC / "evtx-rs-samples" / "samples" / "sysmon.evtx"
    if not damaged.is_file():
        pytest.skip(f"recording {damaged} absent")
    assert main(["events", str(damaged), "--event-id", "3"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert "damaged chunk" in captured.err
