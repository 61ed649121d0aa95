"""`atomiclab evaluate` on the real T1046-10 recording (PowerShell TcpClient /24 scan)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.reporting.results_json import schema_problems

TCPCLIENT = "d52adf0b-75fa-483b-8560-5d90969c8e59"
RULE = "detections/sumo/t1046_network_service_discovery.sumo"


def test_evaluate_real_recording_fires_rule_and_names_missing_telemetry(public_telemetry, tmp_path):
    folder = (public_telemetry / "atomic-evtx" / "attacks_by_category_unfiltered" / "discovery"
              / "Port-Scanning -24 Subnet with PowerShell")
    sysmon = folder / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx"
    if not sysmon.is_file():
        pytest.skip(f"{sysmon} not present")
    out = tmp_path / "ev"
    code = main(["evaluate", "--no-progress", "--telemetry", str(sysmon), "--tests", TCPCLIENT,
                 "--out", str(out), "--history", str(tmp_path / "h.sqlite")])
    data = json.loads((out / "results.json").read_text())
    assert schema_problems(data) == [] and data["mode"] == "evaluate" and not data["emulated"]
    assert any(c["kind"] == "telemetry" for c in data["content"]["files"])
    (t,) = data["tests"]
    # the recording's lab used Sysmon's default config: no EID 3, so the test fails and says so ...
    assert code == 1 and "missing Sysmon EID 3" in t["reason"]
    # ... while the corrected rule fires on the multi-line TcpClient command line, with its evidence
    (v,) = [v for v in t["detection_verdicts"] if v["rule"] == RULE]
    assert v["outcome"] == "met" and v["rows"][0]["detection_type"] == "NativeToolScanning"
    assert "Net.Sockets.TcpClient" in v["rows"][0]["cmdline"]
    ref = v["row_evidence"]["0"][0]
    line = (out / ref["file"]).read_text().splitlines()[ref["line"] - 1]
    assert json.loads(line)["event_id"] == 1


def test_evaluate_unreadable_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "x.evtx"
    bad.write_bytes(b"not an event log")
    code = main(["evaluate", "--no-progress", "--telemetry", str(bad), "--out", str(tmp_path / "o"),
                 "--history", str(tmp_path / "h.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and "x.evtx" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
