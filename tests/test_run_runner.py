"""The runner against fakes: ordering, polling, skips, errors, parallel hosts, interrupt, reports."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from run_fakes import (
    BENIGN_GUID,
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

from harness.model import ExecutionStatus
from harness.plan import PlannedTest, RunPlan
from harness.reporting.base import ReportDirectory
from harness.reporting.evidence import verify_manifest
from harness.reporting.results_json import ResultsJsonReporter, load_results, schema_problems
from harness.results import FailureKind, RunMode, RunResult, TestStatus
from harness.runner import RuleSet, Runner


def make(tmp_path: Path, *, tests=None, targets=None, delay_polls=0, features=None, exec_kw=None,
         budget=5.0, fail_open=False):
    source = FakeSource(produce=nmap_events, delay_polls=delay_polls)
    factory = FakeFactory(source, fail=fail_open)
    if features is not None:
        factory.features = features
    execute = FakeExecute(source, **(exec_kw or {}))
    plan = RunPlan(
        targets=tuple(targets or [target()]),
        tests=tuple(tests or [PlannedTest(atomic(), nmap_expectations(budget))]),
        rule_paths={RULE: Path(RULE)},
    )
    sink = ReportDirectory(tmp_path, [ResultsJsonReporter()])
    runner = Runner(plan, targets=factory, execute=execute, attribute=marker_attribution,
                    rules=RuleSet(detectors={RULE: FakeDetector()}), sink=sink,
                    new_marker=lambda: "atomiclab_run_" + "a" * 32)
    initial = RunResult(run_id="r1", mode=RunMode.RUN, started=T0, harness_version="test", operator="me")
    return runner, initial, source, factory, execute


def test_passing_test_writes_valid_results_and_evidence(tmp_path):
    runner, initial, source, factory, _ = make(tmp_path, delay_polls=2)
    run = runner.run(initial)
    (t,) = run.tests
    assert t.status is TestStatus.PASSED, t.reason
    assert source.polls == 3  # polled until the events appeared, then stopped
    assert t.round_trips == 1 and t.telemetry_wait_s is not None
    assert factory.closed == ["emulated"]
    assert run.complete and run.targets[0].os_build == "10.0.20348"
    data = json.loads((tmp_path / "results.json").read_text())
    assert schema_problems(data) == []
    assert load_results(tmp_path).tests[0].status is TestStatus.PASSED
    lines = (tmp_path / "evidence/events.jsonl").read_text().splitlines()
    ref = t.event_verdicts[1].evidence[0]
    assert json.loads(lines[ref.line - 1])["event_id"] == 3
    assert json.loads(lines[0])["test"] == t.guid
    transcript = tmp_path / t.steps[0].transcript
    assert "exit_code: 0" in transcript.read_text()
    assert verify_manifest(tmp_path).ok


def test_missing_telemetry_waits_for_budget_then_fails(tmp_path):
    runner, initial, source, _, _ = make(tmp_path, delay_polls=10_000, budget=0.3)
    run = runner.run(initial)
    (t,) = run.tests
    assert t.status is TestStatus.FAILED
    assert t.failure in (FailureKind.TELEMETRY_MISSING, FailureKind.LAB_MISCONFIGURED)
    assert "the run marker's process was not found" in t.reason
    assert 2 <= source.polls < 40  # adaptive back-off, not a busy loop


def test_late_events_are_too_slow(tmp_path):
    runner, initial, source, _, _ = make(tmp_path, budget=1.0)
    clock = {"t": 0.0}
    runner.monotonic = lambda: clock["t"]

    def wait(timeout):  # a virtual clock: waiting advances time instead of sleeping
        clock["t"] += timeout
        return False

    runner.stop.wait = wait  # type: ignore[method-assign]
    produce = source.produce
    # the nmap process shows up at once, its Sysmon 3 only after the 1 s budget
    source.produce = lambda m: [e for e in produce(m) if e.event_id != 3 or clock["t"] > 1.0]
    run = runner.run(initial)
    (t,) = run.tests
    assert t.failure is FailureKind.TOO_SLOW, t.reason
    assert "within the time budget" in t.reason


def test_preflight_feature_off_makes_lab_misconfigured(tmp_path):
    def no_net(marker):
        return [e for e in nmap_events(marker) if e.event_id != 3]

    runner, initial, source, _, _ = make(tmp_path, budget=0.2, features={"sysmon": True, "sysmon_network": False})
    source.produce = no_net
    run = runner.run(initial)
    (t,) = run.tests
    assert t.failure is FailureKind.LAB_MISCONFIGURED and "Sysmon EID 3" in t.reason
    assert t.detection_verdicts[0].fired


def test_skips_and_platform(tmp_path):
    linux = PlannedTest(atomic(guid="11111111-1111-4111-8111-111111111111", platforms=("linux",)))
    runner, initial, _, _, execute = make(
        tmp_path, tests=[PlannedTest(atomic(), nmap_expectations()), linux],
        exec_kw={"status": ExecutionStatus.SKIPPED_PREREQ, "reason": "prerequisite not met: nmap.exe must exist"})
    run = runner.run(initial)
    by = {t.guid: t for t in run.tests}
    assert by[atomic().guid].status is TestStatus.SKIPPED
    assert by[atomic().guid].failure is FailureKind.SKIPPED_PREREQ and "nmap.exe" in by[atomic().guid].reason
    assert by[linux.test.guid].failure is FailureKind.SKIPPED_PLATFORM
    assert execute.calls == [atomic().guid]  # the platform skip never reached the host
    assert run.exit_code == 0


def test_execution_failure_and_benign_findings(tmp_path):
    benign = PlannedTest(atomic(guid=BENIGN_GUID, name="benign scanner job", source="atomics/benign/benign.yaml"),
                         benign_expectations("scanners run nmap"))
    runner, initial, *_ = make(tmp_path, tests=[benign], exec_kw={"exit_code": 1})
    run = runner.run(initial)
    (t,) = run.tests
    # every expectation met: the non-zero exit is noted, not a failure (git outside a repo exits 128)
    assert t.benign and t.status is TestStatus.PASSED and "note: exit code 1" in t.reason
    assert t.findings and run.exit_code == 0


def test_nonzero_exit_explains_missing_telemetry(tmp_path):
    runner, initial, source, *_ = make(tmp_path, exec_kw={"exit_code": 1}, budget=0.2)
    source.produce = lambda m: nmap_events(m)[:1]  # only the shell ran: the tool never started
    run = runner.run(initial)
    (t,) = run.tests
    assert t.failure is FailureKind.EXECUTION_FAILED and t.reason.startswith("execution failed: exit code 1")
    assert "missing Sysmon EID 1" in t.reason


def test_unreachable_host_errors_every_test_but_run_completes(tmp_path):
    runner, initial, *_ = make(tmp_path, fail_open=True)
    run = runner.run(initial)
    assert [t.status for t in run.tests] == [TestStatus.ERROR]
    assert "connection refused" in run.tests[0].reason and run.targets[0].problems
    assert run.exit_code == 1


def test_hosts_run_in_parallel_tests_in_sequence(tmp_path):
    barrier = threading.Barrier(3, timeout=10)
    runner, initial, _source, factory, _ = make(tmp_path, targets=[target(f"h{i}") for i in range(3)])
    orig_open = factory.open

    def open_(t):
        barrier.wait()  # only passes when all three hosts are open at once
        return orig_open(t)

    factory.open = open_  # type: ignore[method-assign]
    run = runner.run(initial)
    assert sorted(t.target for t in run.tests) == ["h0", "h1", "h2"]
    assert {t.name for t in run.targets} == {"h0", "h1", "h2"}


def test_interrupt_publishes_finished_tests_and_reraises(tmp_path):
    tests = [PlannedTest(replace(atomic(), guid=f"{i:08d}-0000-4000-8000-000000000000"), nmap_expectations())
             for i in range(3)]
    runner, initial, *_ = make(tmp_path, tests=tests)
    orig_record = runner._record

    def record(shared, result):
        orig_record(shared, result)
        raise KeyboardInterrupt  # Ctrl-C right after the first test finished

    runner._record = record  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        runner.run(initial)
    data = json.loads((tmp_path / "results.json").read_text())
    assert schema_problems(data) == []
    assert data["interrupted"] is True and len(data["tests"]) == 1


def test_a_test_whose_status_is_decided_does_not_wait_out_its_budget(tmp_path):
    """The command timed out (execution failed): whatever else arrives cannot change the status, so
    the events are collected until quiet, not for the whole 30 s budget (issue 15)."""
    from datetime import UTC, datetime, timedelta

    from harness.model import CommandResult, ExecutionStatus
    from harness.runner import ExecutionOutcome

    runner, initial, source, *_ = make(tmp_path, budget=30.0)
    clock = {"t": 0.0}
    runner.monotonic = lambda: clock["t"]

    def wait(timeout=None):
        clock["t"] += timeout or 0.0
        return False

    runner.stop.wait = wait
    source.produce = lambda m: nmap_events(m)[:1]  # only the shell: the scanner's events never come

    def execute(transport, test, *, marker, **kw):
        source.start(marker)
        now = datetime.now(UTC)
        cmd = CommandResult(f"powershell {marker}", None, "", "", now - timedelta(seconds=1), now, timed_out=True)
        return ExecutionOutcome(ExecutionStatus.EXECUTED, steps=(("command", cmd),))

    runner.execute = execute
    run = runner.run(initial)
    (t,) = run.tests
    assert t.status is TestStatus.FAILED and t.failure is FailureKind.EXECUTION_FAILED, t.reason
    assert clock["t"] < 5.0, clock["t"]  # quiet window, not the 30 s budget (+ grace)
