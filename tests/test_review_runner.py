"""Review of the runner: unexpected exceptions, attribution without a root, transcripts, cleanup, settling."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from run_fakes import (
    BENIGN_GUID,
    NMAP_GUID,
    RULE,
    T0,
    FakeDetector,
    FakeExecute,
    FakeFactory,
    FakeSource,
    atomic,
    benign_expectations,
    marker_attribution,
    nmap_events,
    nmap_expectations,
    target,
)

from harness.detect.base import TimeWindow
from harness.errors import HarnessError
from harness.model import CommandResult, ExecutionStatus
from harness.plan import PlannedTest, RunPlan
from harness.reporting.base import ReportDirectory
from harness.reporting.evidence import verify_manifest
from harness.reporting.results_json import ResultsJsonReporter, schema_problems
from harness.results import FailureKind, RunMode, RunResult, TestStatus
from harness.runner import AttributedEvents, ExecutionOutcome, RuleSet, Runner

OTHER_GUID = "22222222-2222-4222-8222-222222222222"


def make(
    tmp_path: Path,
    *,
    tests: list[PlannedTest] | None = None,
    targets: Any = None,
    detector: Any = None,
    attribute: Any = marker_attribution,
    budget: float = 5.0,
) -> tuple[Runner, RunResult, FakeSource, FakeFactory, FakeExecute]:
    source = FakeSource(produce=nmap_events)
    factory = FakeFactory(source)
    execute = FakeExecute(source)
    plan = RunPlan(
        targets=tuple(targets or [target()]),
        tests=tuple(tests or [PlannedTest(atomic(), nmap_expectations(budget))]),
        rule_paths={RULE: Path(RULE)},
    )
    sink = ReportDirectory(tmp_path, [ResultsJsonReporter()])
    runner = Runner(
        plan,
        targets=factory,
        execute=execute,
        attribute=attribute,
        rules=RuleSet(detectors={RULE: detector or FakeDetector()}),
        sink=sink,
        new_marker=lambda: "atomiclab_run_" + "a" * 32,
    )
    initial = RunResult(run_id="r1", mode=RunMode.RUN, started=T0, harness_version="test", operator="me")
    return runner, initial, source, factory, execute


def two_tests() -> list[PlannedTest]:
    return [
        PlannedTest(atomic(), nmap_expectations()),
        PlannedTest(atomic(guid=OTHER_GUID, name="second"), nmap_expectations()),
    ]


class BuggyDetector(FakeDetector):
    def evaluate(self, events: Any, window: TimeWindow | None = None) -> Any:
        raise ValueError("detector bug: bad row")


def test_review_detector_bug_becomes_error_result_and_run_completes(tmp_path: Path) -> None:
    runner, initial, *_ = make(tmp_path, tests=two_tests(), detector=BuggyDetector())
    run = runner.run(initial)
    assert run.complete and len(run.tests) == 2
    for t in run.tests:
        assert t.status is TestStatus.ERROR and t.failure is FailureKind.HARNESS_ERROR
        assert "ValueError" in t.reason and "detector bug" in t.reason
        assert [s.role for s in t.steps] == ["command", "cleanup"]  # the execution's record is kept
        assert t.marker
    assert schema_problems(json.loads((tmp_path / "results.json").read_text())) == []


def test_review_keyerror_in_attribution_errors_one_test_only(tmp_path: Path) -> None:
    calls = {"n": 0}

    def hostile(events: Any, *, marker: str, window: TimeWindow) -> AttributedEvents:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("ProcessGuid")
        return marker_attribution(events, marker=marker, window=window)

    runner, initial, *_ = make(tmp_path, tests=two_tests(), attribute=hostile)
    run = runner.run(initial)
    by = {t.guid: t for t in run.tests}
    assert by[NMAP_GUID].status is TestStatus.ERROR and "KeyError" in by[NMAP_GUID].reason
    assert by[OTHER_GUID].status is TestStatus.PASSED, by[OTHER_GUID].reason
    assert run.complete


def test_review_unmapped_library_error_on_connect_errors_the_host_not_the_run(tmp_path: Path) -> None:
    runner, initial, _source, factory, _ = make(tmp_path, targets=[target("bad"), target("good")])
    orig = factory.open

    def open_(t: Any) -> Any:
        if t.name == "bad":
            raise OSError("paramiko.SSHException: Error reading SSH protocol banner")
        return orig(t)

    factory.open = open_  # type: ignore[method-assign]
    run = runner.run(initial)
    by = {t.target: t for t in run.tests}
    assert by["bad"].status is TestStatus.ERROR and "SSH protocol banner" in by["bad"].reason
    assert by["good"].status is TestStatus.PASSED, by["good"].reason
    assert run.complete


def test_review_unmapped_error_in_execute_keeps_other_tests(tmp_path: Path) -> None:
    runner, initial, _source, factory, execute = make(tmp_path, tests=two_tests())
    orig = execute.__call__

    class Exec:
        def __call__(self, transport: Any, test: Any, **kw: Any) -> ExecutionOutcome:
            if test.guid == NMAP_GUID:
                raise ConnectionResetError("pypsrp: connection reset by peer")
            return orig(transport, test, **kw)

    runner.execute = Exec()
    run = runner.run(initial)
    by = {t.guid: t for t in run.tests}
    assert by[NMAP_GUID].status is TestStatus.ERROR and "ConnectionResetError" in by[NMAP_GUID].reason
    assert by[OTHER_GUID].status is TestStatus.PASSED
    assert factory.closed == ["emulated"]


def test_review_no_root_process_never_passes_silently(tmp_path: Path) -> None:
    benign = PlannedTest(
        atomic(guid=BENIGN_GUID, name="benign", source="atomics/benign/benign.yaml"), benign_expectations()
    )

    def nothing(events: Any, *, marker: str, window: TimeWindow) -> AttributedEvents:
        return AttributedEvents((), False, len(events))

    runner, initial, *_ = make(tmp_path, tests=[benign], attribute=nothing, budget=0.1)
    runner.plan = replace(runner.plan, default_budget_s=0.1)
    run = runner.run(initial)
    (t,) = run.tests
    assert t.status is not TestStatus.PASSED, t.reason
    assert "run marker's process was not found" in t.reason


def test_review_each_prereq_keeps_its_own_transcript(tmp_path: Path) -> None:
    runner, initial, source, *_ = make(tmp_path)

    def execute(transport: Any, test: Any, *, marker: str, **kw: Any) -> ExecutionOutcome:
        source.start(marker)
        now = datetime.now(UTC)
        steps = (
            ("prereq", CommandResult("check nmap", 0, "nmap ok", "", now, now)),
            ("prereq", CommandResult("check npcap", 0, "npcap ok", "", now, now)),
            ("command", CommandResult(f"nmap {marker}", 0, "", "", now, now)),
        )
        return ExecutionOutcome(ExecutionStatus.EXECUTED, steps=steps)

    runner.execute = execute
    run = runner.run(initial)
    (t,) = run.tests
    paths = [s.transcript for s in t.steps]
    assert len(set(paths)) == 3, paths
    assert "check nmap" in (tmp_path / paths[0]).read_text()
    assert "check npcap" in (tmp_path / paths[1]).read_text()
    assert verify_manifest(tmp_path).ok


def test_review_target_closed_once_when_revert_fails(tmp_path: Path) -> None:
    runner, initial, _source, factory, _ = make(tmp_path)

    class Reset:
        def reset(self, target: Any) -> None:
            raise HarnessError("VM not found")

        def after_reconnect(self, transport: Any) -> None:
            return None

    runner.reset = Reset()
    run = runner.run(initial)
    assert "revert to baseline failed" in run.tests[0].reason
    assert factory.closed == ["emulated"]


def test_review_close_failure_does_not_kill_the_run(tmp_path: Path) -> None:
    runner, initial, _source, factory, _ = make(tmp_path)
    orig = factory.open

    def open_(t: Any) -> Any:
        opened = orig(t)

        def close() -> None:
            raise OSError("socket already closed")

        opened.close = close
        return opened

    factory.open = open_  # type: ignore[method-assign]
    run = runner.run(initial)
    assert run.complete and run.tests[0].status is TestStatus.PASSED


def test_review_negative_expectations_wait_for_telemetry_to_settle(tmp_path: Path) -> None:
    """A benign test must not pass on the root event alone while its children are still arriving."""
    benign = PlannedTest(
        atomic(guid=BENIGN_GUID, name="benign", source="atomics/benign/benign.yaml"), benign_expectations()
    )
    runner, initial, source, *_ = make(tmp_path, tests=[benign])
    clock = {"t": 0.0}
    runner.monotonic = lambda: clock["t"]

    def wait(timeout: float | None = None) -> bool:
        clock["t"] += timeout or 0.0
        return False

    runner.stop.wait = wait  # type: ignore[method-assign]

    def produce(marker: str) -> list[Any]:
        evs = nmap_events(marker)
        return evs[:1] if source.polls <= 1 else evs  # the scanner's own process is logged a poll later

    source.produce = produce
    run = runner.run(initial)
    (t,) = run.tests
    assert t.status is TestStatus.FAILED and t.failure is FailureKind.FALSE_POSITIVE, t.reason


def test_review_detection_only_on_late_events_is_too_slow(tmp_path: Path) -> None:
    exp = replace(nmap_expectations(1.0), events=())
    runner, initial, source, *_ = make(tmp_path, tests=[PlannedTest(atomic(), exp)])
    clock = {"t": 0.0}
    runner.monotonic = lambda: clock["t"]

    def wait(timeout: float | None = None) -> bool:
        clock["t"] += timeout or 0.0
        return False

    runner.stop.wait = wait  # type: ignore[method-assign]
    produce = source.produce
    # the shell shows up at once; the scanner's process (what the rule fires on) only after the budget
    source.produce = lambda m: produce(m)[:1] if clock["t"] <= 1.0 else produce(m)
    run = runner.run(initial)
    (t,) = run.tests
    assert t.failure is FailureKind.TOO_SLOW, t.reason


def test_review_evidence_lines_match_events_jsonl_for_late_events(tmp_path: Path) -> None:
    runner, initial, source, *_ = make(tmp_path, budget=1.0)
    clock = {"t": 0.0}
    runner.monotonic = lambda: clock["t"]

    def wait(timeout: float | None = None) -> bool:
        clock["t"] += timeout or 0.0
        return False

    runner.stop.wait = wait  # type: ignore[method-assign]
    produce = source.produce
    source.produce = lambda m: [e for e in produce(m) if e.event_id != 3 or clock["t"] > 1.0]
    run = runner.run(initial)
    (t,) = run.tests
    lines = (tmp_path / "evidence/events.jsonl").read_text().splitlines()
    for v in t.event_verdicts:
        for ref in v.evidence:
            row = json.loads(lines[ref.line - 1])
            assert (row["event_id"], row["record_id"]) == (ref.event_id, ref.record_id)
    for dv in t.detection_verdicts:
        for refs in dv.row_evidence.values():
            for ref in refs:
                assert json.loads(lines[ref.line - 1])["event_id"] == ref.event_id
