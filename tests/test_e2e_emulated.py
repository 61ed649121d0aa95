"""End to end on the emulated host: `atomiclab run` through WinRM, telemetry, attribution, rules,
verdicts and every report. In-process (harness.cli.main) except the kill/interrupt tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from harness.reporting.evidence import verify_manifest
from harness.reporting.results_json import schema_problems
from harness.results import TestResult

REPO = Path(__file__).resolve().parents[1]
NMAP = "c9c5c712-9e58-4613-85f6-139cddfa1f30"
UPSTREAM = REPO / "detections" / "sumo" / "upstream" / "t1046_network_service_discovery.sumo"

pytestmark = pytest.mark.network


def _run(tmp: Path, *extra: str) -> tuple[int, dict]:
    out = tmp / "report"
    code = main(["run", "--no-progress", "--out", str(out), "--history", str(tmp / "history.sqlite"), *extra])
    return code, json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    code, data = _run(tmp)
    return code, data, tmp


def test_default_run_passes_and_writes_every_report(default_run, capsys):
    code, data, tmp = default_run
    failed = [(t["name"], t["reason"]) for t in data["tests"] if t["status"] not in ("passed", "inconclusive")]
    assert code == 0, failed
    assert not failed
    # issue 11: what the emulated host does not model is inconclusive, naming it, never passed
    for t in data["tests"]:
        assert (t["status"] == "inconclusive") == bool(t["not_modelled"]), t["name"]
    svchost = next(t for t in data["tests"] if "svchost" in t["name"].lower() or "-k netsvcs" in t["name"])
    assert svchost["status"] == "inconclusive" and svchost["failure"] == "not_modelled"
    assert "'svchost.exe'" in svchost["reason"] and "would have passed" in svchost["reason"]
    assert data["emulated"] and data["targets"][0]["emulated"] and data["complete"]
    assert schema_problems(data) == []
    t1046 = [t for t in data["tests"] if not t["benign"]]
    assert len(t1046) == 5 and len(data["tests"]) > 5
    nmap = next(t for t in data["tests"] if t["guid"] == NMAP)
    assert any(v["event_id"] == 3 and v["outcome"] == "met" for v in nmap["event_verdicts"])
    assert nmap["detection_verdicts"] and all(v["outcome"] == "met" for v in nmap["detection_verdicts"])
    out = tmp / "report"
    for name in ("results.json", "junit.xml", "report.html", "navigator-layer.json", "manifest.json",
                 "evidence/events.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "evidence" / "transcripts").rglob("*-command.txt"))
    assert len(ET.parse(out / "junit.xml").getroot().findall(".//testcase")) == len(data["tests"])
    assert "EMULATED TARGET" in (out / "report.html").read_text()
    assert verify_manifest(out).ok
    # an evidence reference points at the event it names
    ref = nmap["event_verdicts"][0]["evidence"][0]
    line = (out / ref["file"]).read_text().splitlines()[ref["line"] - 1]
    assert json.loads(line)["record_id"] == ref["record_id"]


def test_verify_and_history_commands(default_run, capsys):
    _, _, tmp = default_run
    out = tmp / "report"
    assert main(["verify", str(out)]) == 0
    (out / "junit.xml").write_text("tampered")
    assert main(["verify", str(out)]) == 1
    assert "CHANGED  junit.xml" in capsys.readouterr().out
    assert main(["history", "--history", str(tmp / "history.sqlite"), "--last", "5"]) == 0
    assert "Regressions" in capsys.readouterr().out


def test_sysmon_network_off_fails_naming_eid_3_while_rule_fires(tmp_path):
    code, data = _run(tmp_path, "--tests", NMAP, "--emulate-setting", "sysmon_network=false")
    assert code == 1
    (t,) = data["tests"]
    assert t["status"] == "failed" and "Sysmon EID 3" in t["reason"]
    assert t["failure"] == "lab_misconfigured"
    assert data["targets"][0]["features"]["sysmon_network"] is False
    assert all(v["fired"] and v["outcome"] == "met" for v in t["detection_verdicts"] if v["fires"])


def test_nmap_absent_is_skipped_for_the_prerequisite(tmp_path):
    code, data = _run(tmp_path, "--tests", NMAP, "--emulate-setting", "tools=nbtscan,git")
    assert code == 0
    (t,) = data["tests"]
    assert t["status"] == "skipped" and t["failure"] == "skipped_prereq" and "nmap.exe" in t["reason"]


def test_upstream_rule_every_verdict_fails_and_says_why(tmp_path):
    if not UPSTREAM.is_file():
        pytest.skip(f"{UPSTREAM} not present")
    code, data = _run(tmp_path, "--tests", NMAP, "--rule", str(UPSTREAM))
    assert code == 1
    rel = "detections/sumo/upstream/t1046_network_service_discovery.sumo"
    verdicts = [v for t in data["tests"] for v in t["detection_verdicts"] if v["rule"] == rel]
    assert verdicts and all(v["outcome"] == "missed" and v["extra"] for v in verdicts)
    assert all(v["reason"] and rel in v["reason"] for v in verdicts)
    assert data["rule_errors"].get(rel) or all("cannot run" in v["reason"] or "returned" in v["reason"]
                                               for v in verdicts)
    assert data["lint"][rel], "the published query's defects are listed"


def _spawn(out: Path, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--no-progress", "--out", str(out), "--history",
         str(tmp / "h.sqlite"), *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_tests(out: Path, n: int, proc: subprocess.Popen[bytes]) -> list[dict]:
    """The first ``n`` finished tests, read from the result stream (results.jsonl, appended at once;
    the whole reports are rendered at most every few seconds)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            lines = (out / "results.jsonl").read_text().splitlines()
            if len(lines) >= n:
                return [json.loads(line) for line in lines[:n]]
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("no test finished within 120 s")


@pytest.mark.slow
def test_sigkill_mid_run_leaves_valid_results(tmp_path):
    out = tmp_path / "killed"
    # events 1 s late: the run is still going when two tests have finished
    proc = _spawn(out, tmp_path, "--emulate-setting", "delivery_delay_s=1")
    try:
        _wait_for_tests(out, 2, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = json.loads((out / "results.json").read_text())  # as of the last render: valid, not complete
    assert schema_problems(data) == []
    assert not data["complete"]
    streamed = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(streamed) >= 2 and len(streamed) >= len(data["tests"])  # every finished test, at once
    assert [TestResult.from_dict(t).key for t in streamed[: len(data["tests"])]] == [
        TestResult.from_dict(t).key for t in data["tests"]
    ]


@pytest.mark.slow
def test_ctrl_c_finishes_cleanup_and_writes_reports(tmp_path):
    # Events arrive 8 s late, so the second test (netstat, which has a cleanup) is still waiting for
    # its telemetry, its command and cleanup done, when Ctrl-C arrives (also on a loaded machine).
    out = tmp_path / "interrupted"
    netstat = "d7b2043f-3075-47e3-87ca-8ca224d06bec"
    proc = _spawn(out, tmp_path, "--tests", NMAP, netstat, "--emulate-setting", "delivery_delay_s=8")
    cleanup = out / "evidence" / "transcripts" / "emulated" / f"{netstat}-cleanup.txt"
    try:
        _wait_for_tests(out, 1, proc)
        deadline = time.monotonic() + 60
        while not cleanup.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert cleanup.is_file(), "the second test never ran its cleanup"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130
    data = json.loads((out / "results.json").read_text())
    assert schema_problems(data) == [] and data["interrupted"]
    for t in data["tests"]:  # every test that ran its command also ran its cleanup
        roles = [s["role"] for s in t["steps"]]
        if "command" in roles and t["guid"] in (NMAP, netstat):
            assert "cleanup" in roles
    # the test that was running is recorded, with its command and cleanup transcripts
    (running,) = [t for t in data["tests"] if t["guid"] == netstat]
    assert running["status"] == "error" and running["failure"] == "interrupted", running["reason"]
    steps = {s["role"]: s for s in running["steps"]}
    assert {"command", "cleanup"} <= set(steps) and steps["cleanup"]["exit_code"] == 0
    assert (out / steps["cleanup"]["transcript"]).is_file() and (out / steps["command"]["transcript"]).is_file()
    assert (out / "report.html").is_file() and verify_manifest(out).ok
