"""Judging: expected events, detections, negative and known-false-positive expectations, lab gaps."""

from __future__ import annotations

from run_fakes import RULE, FakeDetector, benign_expectations, event, nmap_events, nmap_expectations

from harness.detect.base import DetectionResult, Engine
from harness.results import FailureKind, Outcome, TestStatus
from harness.verdicts import RuleOutcome, detection_checks, judge

UPSTREAM = "detections/sumo/upstream/t1046_network_service_discovery.sumo"


def outcomes(events, **extra):
    det = FakeDetector()
    out = {RULE: RuleOutcome(RULE, result=det.evaluate(events))}
    out.update(extra)
    return out


def test_all_expectations_met_with_evidence_lines():
    evs = nmap_events()
    j = judge(nmap_expectations(), evs, outcomes(evs), first_line=41)
    assert j.status is TestStatus.PASSED and j.failure is None
    proc, net = j.event_verdicts
    assert proc.outcome is Outcome.MET and proc.count == 1
    assert [r.line for r in proc.evidence] == [42]  # events[1] is the nmap process, first line 41
    assert net.evidence[0].record_id == 12 and net.evidence[0].line == 43
    (dv,) = j.detection_verdicts
    assert dv.outcome is Outcome.MET and dv.rows[0]["detection_type"] == "KnownScanningTool"
    assert dv.row_evidence[0][0].line == 42


def test_missing_sysmon_3_names_it_and_detection_still_fires():
    evs = [e for e in nmap_events() if e.event_id != 3]
    j = judge(nmap_expectations(), evs, outcomes(evs))
    assert j.status is TestStatus.FAILED and j.failure is FailureKind.TELEMETRY_MISSING
    assert "missing Sysmon EID 3" in j.reason
    assert j.detection_verdicts[0].outcome is Outcome.MET


def test_missing_event_blamed_on_lab_when_preflight_says_feature_off():
    evs = [e for e in nmap_events() if e.event_id != 3]
    j = judge(nmap_expectations(), evs, outcomes(evs), features={"sysmon": True, "sysmon_network": False})
    assert j.failure is FailureKind.LAB_MISCONFIGURED
    assert j.reason.startswith("lab misconfigured: sysmon_network off")
    assert "Sysmon EID 3" in j.reason


def test_near_misses_explain_candidates():
    evs = [*nmap_events()[:1], event(3, rid=50, Image=r"C:\x\curl.exe")]
    j = judge(nmap_expectations(), evs, outcomes(evs))
    net = j.event_verdicts[1]
    assert net.count == 0 and net.near_misses and "record 50" in net.near_misses[0]


def test_detection_missed_when_no_matching_row():
    evs = nmap_events()
    res = DetectionResult(RULE, Engine.SUMO_LOCAL, ({"detection_type": "PortScanPattern"},), 4, 0.0)
    j = judge(nmap_expectations(), evs, {RULE: RuleOutcome(RULE, result=res)})
    assert j.failure is FailureKind.DETECTION_MISSED
    assert "none with detection_type" in j.detection_verdicts[0].reason


def test_benign_false_positive_fails_known_one_is_a_finding():
    evs = nmap_events()
    j = judge(benign_expectations(), evs, outcomes(evs))
    assert j.status is TestStatus.FAILED and j.failure is FailureKind.FALSE_POSITIVE
    k = judge(benign_expectations("vulnerability scanners launch nmap"), evs, outcomes(evs))
    assert k.status is TestStatus.PASSED
    assert k.detection_verdicts[0].outcome is Outcome.KNOWN_FALSE_POSITIVE
    assert k.findings and "vulnerability scanners" in k.findings[0].message


def test_benign_silent_rule_passes():
    evs = [event(1, rid=1, Image=r"C:\git.exe", CommandLine="git log --stat")]
    j = judge(benign_expectations(), evs, outcomes(evs))
    assert j.status is TestStatus.PASSED and j.detection_verdicts[0].outcome is Outcome.MET


def test_extra_rule_that_cannot_run_fails_every_verdict_with_the_reason():
    evs = nmap_events()
    why = "detections/sumo/upstream/t1046.sumo:5:3: eval is not a Sumo operator"
    j = judge(nmap_expectations(), evs, outcomes(evs, **{UPSTREAM: RuleOutcome(UPSTREAM, error=why)}),
              extra_rules=[UPSTREAM])
    extra = [v for v in j.detection_verdicts if v.extra]
    assert len(extra) == 1 and extra[0].rule == UPSTREAM
    assert extra[0].failure is FailureKind.RULE_INVALID and why in extra[0].reason
    assert j.status is TestStatus.FAILED and j.failure is FailureKind.RULE_INVALID
    # the named rule is still judged on its own
    assert [v.outcome for v in j.detection_verdicts if not v.extra] == [Outcome.MET]


def test_extra_rule_copies_expectations_of_same_engine_only():
    exp = nmap_expectations()
    checks = detection_checks(exp, ["my/extra.sumo", "my/extra.yml"])
    assert [(c.rule, c.extra) for c in checks] == [(RULE, False), ("my/extra.sumo", True), ("my/extra.yml", True)]


def test_execution_failure_is_primary_and_too_many_events_flagged():
    evs = nmap_events()
    j = judge(nmap_expectations(), evs, outcomes(evs), execution_failure="exit code 1: nmap not recognized")
    assert j.failure is FailureKind.EXECUTION_FAILED and j.reason.startswith("execution failed: exit code 1")
    exp = nmap_expectations()
    from dataclasses import replace

    capped = replace(exp, events=(replace(exp.events[1], max_count=0),))
    k = judge(capped, evs, outcomes(evs))
    assert k.failure is FailureKind.TELEMETRY_UNEXPECTED and "forbidden event appeared" in k.reason


def test_events_after_budget_make_test_too_slow():
    evs = nmap_events()
    j = judge(nmap_expectations(), evs, outcomes(evs), on_time=2)  # the Sysmon 3 arrived late
    assert j.failure is FailureKind.TOO_SLOW
    assert j.event_verdicts[0].outcome is Outcome.MET


def test_nothing_asserted_is_never_passed():
    # issue 11 item 3 changed this: execution alone used to pass; with nothing to assert (no
    # expectations authored, no baseline) the test is inconclusive, never passed
    j = judge(None, [], {})
    assert j.status is TestStatus.INCONCLUSIVE and j.failure is FailureKind.NOT_ASSERTED
    assert "nothing was asserted" in j.reason


def test_exit_note_fails_only_when_it_explains_something():
    evs = nmap_events()
    ok = judge(nmap_expectations(), evs, outcomes(evs), exit_note="exit code 128: fatal")
    assert ok.status is TestStatus.PASSED and "note: exit code 128" in ok.reason
    bad = judge(nmap_expectations(), evs[:1], outcomes(evs[:1]), exit_note="exit code 1: not recognized")
    assert bad.failure is FailureKind.EXECUTION_FAILED
    bare = judge(None, [], {}, exit_note="exit code 2")
    assert bare.status is TestStatus.FAILED and bare.failure is FailureKind.EXECUTION_FAILED
