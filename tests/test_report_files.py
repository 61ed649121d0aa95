"""Reporters: results.json schema, junit.xml, report.html, navigator layer, manifest/verify, history."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta

import pytest
from run_fakes import RULE, T0, FakeDetector, benign_expectations, nmap_events, nmap_expectations

from harness.errors import ReportError
from harness.reporting.base import ReportDirectory
from harness.reporting.evidence import verify_manifest
from harness.reporting.history import History
from harness.reporting.html import HtmlReporter
from harness.reporting.junit import JUnitReporter
from harness.reporting.navigator import NavigatorReporter
from harness.reporting.results_json import ResultsJsonReporter, load_results, schema_problems
from harness.results import (
    FailureKind,
    Finding,
    LintRecord,
    RunMode,
    RunResult,
    StepRecord,
    TargetInfo,
    TestResult,
    TestStatus,
)
from harness.verdicts import RuleOutcome, judge


def sample_run(tmp_path, *, emulated=True) -> tuple[RunResult, ReportDirectory]:
    sink = ReportDirectory(tmp_path, [ResultsJsonReporter(), JUnitReporter(), NavigatorReporter(),
                                      HtmlReporter(tmp_path)])
    evs = nmap_events()
    evs[1] = replace(evs[1], fields={**evs[1].fields, "CommandLine": "nmap <script>alert(1)</script>"})
    first = sink.add_events("emulated::g1", "g1", evs)
    outcomes = {RULE: RuleOutcome(RULE, result=FakeDetector().evaluate(evs))}
    ok = judge(nmap_expectations(), evs, outcomes, first_line=first)
    bad = judge(nmap_expectations(), evs[:2], outcomes, first_line=first)
    fp = judge(benign_expectations("scanner jobs run nmap"), evs, outcomes, first_line=first)
    step = StepRecord("command", "nmap.exe -sV", 0, T0, T0, transcript=None)

    def result(guid, name, j, benign=False):
        return TestResult(guid=guid, name=name, technique="T1046", target="emulated", status=j.status,
                          failure=j.failure, reason=j.reason, started=T0, ended=T0 + timedelta(seconds=2),
                          steps=(step,), event_verdicts=j.event_verdicts, detection_verdicts=j.detection_verdicts,
                          findings=j.findings, benign=benign)

    run = RunResult(
        run_id="r-1", mode=RunMode.RUN, started=T0, harness_version="0.1", operator="alice",
        targets=(TargetInfo("emulated", "winrm", "127.0.0.1", emulated, os_build="10.0.20348",
                            features={"sysmon_network": True}),),
        tests=(
            result("g1", "nmap ok", ok),
            result("g2", "nmap no sysmon 3", bad),
            result("g3", "scanner job", fp, benign=True),
            TestResult(guid="g4", name="skipped one", technique="T1046", target="emulated",
                       status=TestStatus.SKIPPED, failure=FailureKind.SKIPPED_PREREQ,
                       reason="prerequisite not met: nmap.exe", started=T0, ended=T0),
        ),
        lint={"detections/sumo/upstream/x.sumo": (LintRecord("x.sumo", 5, 3, "error", "eval",
                                                               "eval is not a Sumo operator"),)},
        rule_errors={"detections/sumo/upstream/x.sumo": "x.sumo:5:3: unexpected eval"},
    )
    return run, sink


def test_results_json_roundtrip_and_schema(tmp_path):
    run, sink = sample_run(tmp_path)
    sink.publish(run.finished())
    data = json.loads((tmp_path / "results.json").read_text())
    assert schema_problems(data) == []
    assert data["summary"] == {"passed": 2, "failed": 1, "inconclusive": 0, "skipped": 1, "error": 0, "total": 4}
    back = load_results(tmp_path)
    assert back.to_dict() == data
    assert back.tests[1].event_verdicts[1].reason.startswith("missing Sysmon EID 3")
    data["tests"][0]["status"] = "great"
    assert schema_problems(data)


def test_junit_has_one_case_per_test_with_reasons(tmp_path):
    run, _ = sample_run(tmp_path)
    root = ET.fromstring(JUnitReporter().render(run))
    cases = root.findall(".//testcase")
    assert len(cases) == 4 and root.get("failures") == "1" and root.get("skipped") == "1"
    failure = cases[1].find("failure")
    assert failure is not None and "Sysmon EID 3" in failure.get("message")
    assert cases[2].find("failure") is None and "known false positive" in cases[2].find("system-out").text


def test_navigator_layer_scores_and_comments(tmp_path):
    run, _ = sample_run(tmp_path)
    layer = json.loads(NavigatorReporter().render(run))
    assert layer["versions"]["layer"] == "4.5" and layer["domain"] == "enterprise-attack"
    (tech,) = layer["techniques"]
    assert tech["techniqueID"] == "T1046" and tech["score"] == 50  # 1 of 2 judged attack tests passed
    assert "nmap no sysmon 3 [emulated]: failed" in tech["comment"]
    assert "scanner job" not in tech["comment"]  # benign look-alikes are not technique coverage


def test_html_is_self_contained_escaped_and_complete(tmp_path):
    run, sink = sample_run(tmp_path)
    sink.publish(run)
    html = (tmp_path / "report.html").read_text()
    assert "EMULATED TARGET" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # event text never becomes markup
    assert 'src="http' not in html and "<link" not in html
    for needle in ("Coverage matrix", "Findings on benign tests", "scanner jobs run nmap", "eval is not a Sumo operator",
                   "cannot run", "<svg", "<details><summary>raw event", "KnownScanningTool", "IN PROGRESS"):
        assert needle in html, needle
    real, sink2 = sample_run(tmp_path / "real", emulated=False)
    sink2.publish(real.finished())
    assert "EMULATED TARGET" not in (tmp_path / "real" / "report.html").read_text()


def test_manifest_verify_names_changed_missing_and_unlisted(tmp_path):
    run, sink = sample_run(tmp_path)
    sink.publish(run.finished())
    assert verify_manifest(tmp_path).ok
    (tmp_path / "junit.xml").write_text("tampered")
    (tmp_path / "navigator-layer.json").unlink()
    (tmp_path / "extra.txt").write_text("x")
    rep = verify_manifest(tmp_path)
    assert rep.changed == ("junit.xml",) and rep.missing == ("navigator-layer.json",)
    assert rep.unlisted == ("extra.txt",) and not rep.ok
    with pytest.raises(ReportError, match="no manifest"):
        verify_manifest(tmp_path / "nowhere")


def test_history_regressions_fixes_flaky(tmp_path):
    h = History(tmp_path / "history.sqlite")
    base, _ = sample_run(tmp_path / "r")
    g1 = base.tests[0]
    statuses = ["passed", "failed", "passed", "passed", "failed"]
    for i, st in enumerate(statuses):
        t = replace(g1, status=TestStatus(st), failure=None if st == "passed" else FailureKind.TELEMETRY_MISSING)
        other = replace(base.tests[1], status=TestStatus.FAILED if i < 4 else TestStatus.PASSED)
        h.record(replace(base, run_id=f"run{i}", started=T0 + timedelta(hours=i), tests=(t, other)).finished())
    runs = h.runs(3)
    assert [r.run_id for r in runs] == ["run4", "run3", "run2"]
    trends = {t.guid: t for t in h.trends(10)}
    assert trends["g1"].regression and trends["g1"].flaky and trends["g1"].statuses == tuple(statuses)
    assert trends["g2"].fix and not trends["g2"].flaky


def test_report_error_when_history_db_is_garbage(tmp_path):
    p = tmp_path / "history.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ReportError, match="history database"):
        History(p).runs()


def test_findings_dataclass_to_dict():
    assert Finding("r", "m").to_dict() == {"rule": "r", "message": "m"}
