"""Reports at library scale: results appended as they finish, whole reports rendered at most every
few seconds (and never by a host waiting for another host's render)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from run_fakes import T0, FakeExecute, FakeFactory, FakeSource, atomic, marker_attribution, nmap_events, target

from harness.errors import ReportError
from harness.plan import PlannedTest, RunPlan
from harness.reporting import evidence
from harness.reporting.base import RENDER_SHARE, RESULTS_STREAM, ReportDirectory
from harness.reporting.evidence import verify_manifest
from harness.reporting.results_json import ResultsJsonReporter, schema_problems
from harness.results import RunMode, RunResult, TestResult, TestStatus
from harness.runner import RuleSet, Runner, _result


def _run() -> RunResult:
    return RunResult(run_id="r1", mode=RunMode.RUN, started=T0, harness_version="test", operator="me")


def _results(n: int) -> list[TestResult]:
    pt = PlannedTest(atomic(), None)
    base = _result(pt, "emulated", TestStatus.PASSED, None, "ok", T0, T0)
    return [replace(base, guid=f"00000000-0000-4000-8000-{i:012d}") for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class CountingReporter:
    filename = "count.txt"

    def __init__(self, clock: Clock | None = None, cost: float = 0.0) -> None:
        self.renders: list[int] = []
        self.clock, self.cost = clock, cost

    def render(self, run: RunResult) -> str:
        self.renders.append(len(run.tests))
        if self.clock is not None:
            self.clock.t += self.cost  # the render's own duration, on the fake clock
        return f"{len(run.tests)}\n"


def test_each_result_is_appended_at_once_and_reports_render_when_due(tmp_path: Path) -> None:
    clock, rep = Clock(), CountingReporter()
    sink = ReportDirectory(tmp_path, [rep, ResultsJsonReporter()], interval_s=5.0, monotonic=clock, background=False)
    run = _run()
    sink.publish(run)
    for i, result in enumerate(_results(30)):
        run = run.with_test(result)
        clock.t = i * 0.5  # a test every half second
        sink.add_result(run, result)
        lines = (tmp_path / RESULTS_STREAM).read_text().splitlines()
        assert len(lines) == i + 1 and TestResult.from_dict(json.loads(lines[-1])).key == result.key
    # start + one render per 5 s over 14.5 s, not one per test
    assert rep.renders == [0, 11, 21]
    sink.publish(run.finished())
    assert rep.renders[-1] == 30
    data = json.loads((tmp_path / "results.json").read_text())
    assert schema_problems(data) == [] and data["complete"] and len(data["tests"]) == 30
    assert verify_manifest(tmp_path).ok


def test_rendering_never_takes_more_than_its_share_of_the_wall_time(tmp_path: Path) -> None:
    clock = Clock()
    rep = CountingReporter(clock, cost=2.0)  # a big run: one render costs 2 s
    sink = ReportDirectory(tmp_path, [rep], interval_s=1.0, monotonic=clock, background=False)
    run = _run()
    for result in _results(400):
        run = run.with_test(result)
        clock.t += 0.1
        sink.add_result(run, result)
    spent = 2.0 * len(rep.renders)
    assert len(rep.renders) >= 2 and spent <= RENDER_SHARE * clock.t + 2.0


def test_a_due_render_does_not_wait_for_a_render_under_way(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow:
        filename = "slow.txt"

        def render(self, run: RunResult) -> str:
            entered.set()
            release.wait(10)
            return "x\n"

    sink = ReportDirectory(tmp_path, [Slow()], interval_s=0.0)
    run = _run()
    other = threading.Thread(target=sink.publish, args=(run,))
    other.start()
    try:
        assert entered.wait(10)
        (result,) = _results(1)
        began = time.monotonic()
        sink.add_result(run.with_test(result), result)  # due (interval 0), but another render runs
        assert time.monotonic() - began < 5.0
        assert len((tmp_path / RESULTS_STREAM).read_text().splitlines()) == 1
    finally:
        release.set()
        other.join(10)


def test_manifest_reads_only_files_changed_since_the_last_render(tmp_path: Path, monkeypatch: Any) -> None:
    clock = Clock()
    sink = ReportDirectory(tmp_path, [ResultsJsonReporter()], interval_s=1.0, monotonic=clock, background=False)
    run = _run()
    for i in range(20):
        (tmp_path / "evidence").mkdir(exist_ok=True)
        (tmp_path / "evidence" / f"t{i}.txt").write_text(f"transcript {i}\n")
    sink.publish(run)
    reads: list[str] = []
    real = evidence.sha256_of
    monkeypatch.setattr(evidence, "sha256_of", lambda p: reads.append(p.name) or real(p))
    (result,) = _results(1)
    clock.t = 10.0
    sink.add_result(run.with_test(result), result)
    assert not any(name.startswith("t") and name.endswith(".txt") for name in reads), reads
    assert {"results.json", RESULTS_STREAM} <= set(reads)
    assert verify_manifest(tmp_path).ok


def test_hosts_record_results_without_holding_the_runs_lock(tmp_path: Path) -> None:
    """Host A's result is being written while host B finishes a test: B is not blocked by A."""
    both = threading.Barrier(2, timeout=20)

    class MeetingSink(ReportDirectory):
        def add_result(self, run: RunResult, result: TestResult) -> None:
            super().add_result(run, result)
            both.wait()  # returns only when the other host also got here

    source = FakeSource(produce=nmap_events)
    factory = FakeFactory(source)
    plan = RunPlan(targets=(target("a"), target("b")), tests=(PlannedTest(atomic(), None),), rule_paths={})
    runner = Runner(
        plan,
        targets=factory,
        execute=FakeExecute(source),
        attribute=marker_attribution,
        rules=RuleSet(),
        sink=MeetingSink(tmp_path, [ResultsJsonReporter()]),
        new_marker=lambda: "atomiclab_run_" + "b" * 32,
        max_hosts=2,
    )
    run = runner.run(_run())
    assert len(run.tests) == 2 and run.complete
    assert len((tmp_path / RESULTS_STREAM).read_text().splitlines()) == 2


def test_results_json_validates_each_test_once_with_the_same_findings(tmp_path: Path, monkeypatch: Any) -> None:
    from harness.reporting import results_json
    from harness.reporting.results_json import _test_validator

    run = _run()
    for result in _results(3):
        run = run.with_test(result)
    data = run.to_dict()
    data["tests"][1]["status"] = "bogus"
    whole = schema_problems(data)
    per_test = schema_problems(data["tests"][1], validator=_test_validator(), at="$.tests[1]")
    assert whole and whole == per_test  # the per-test schema finds exactly what the whole one does

    reporter = ResultsJsonReporter()
    calls: list[str] = []
    real = results_json.schema_problems
    monkeypatch.setattr(results_json, "schema_problems", lambda d, **kw: calls.append(kw.get("at", "$")) or real(d, **kw))
    reporter.render(run)
    reporter.render(run.with_test(_results(4)[3]))
    assert calls == ["$", "$.tests[0]", "$.tests[1]", "$.tests[2]", "$", "$.tests[3]"]  # each test once


def test_results_json_text_reads_back_as_json_would_write_it() -> None:
    from harness.reporting.results_json import dumps_indented

    run = _run()
    for result in _results(5):
        run = run.with_test(replace(result, reason="ünïcode \u2028 \"quoted\"", telemetry_wait_s=1e16))
    data = run.to_dict()
    text = dumps_indented(data)
    assert text.endswith("\n") and json.loads(text) == json.loads(json.dumps(data, indent=2, ensure_ascii=False))
    for odd in ({"surrogate": "\ud800"}, {"nan": float("nan")}, {"x": [1, {"inf": float("inf")}]}):
        assert dumps_indented(odd) == json.dumps(odd, indent=2, ensure_ascii=False) + "\n"


def test_a_due_render_runs_in_the_background_and_its_failure_surfaces_later(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow:
        filename = "slow.txt"
        fail = False

        def render(self, run: RunResult) -> str:
            entered.set()
            release.wait(10)
            if self.fail:
                raise ReportError("disk full")
            return f"{len(run.tests)}\n"

    slow = Slow()
    clock = Clock()
    sink = ReportDirectory(tmp_path, [slow], interval_s=1.0, monotonic=clock)
    run = _run()
    (first, second) = _results(2)
    clock.t = 5.0
    began = time.monotonic()
    sink.add_result(run.with_test(first), first)  # due: rendered by another thread
    assert entered.wait(10) and time.monotonic() - began < 5.0  # the caller did not wait for it
    release.set()
    sink.publish(run.with_test(first))  # waits for the background render, then renders again
    assert (tmp_path / "slow.txt").read_text() == "1\n"
    slow.fail = True
    clock.t = 1000.0
    sink.add_result(run.with_test(second), second)  # starts a background render that fails
    import pytest

    with pytest.raises(ReportError, match="disk full"):  # the next call (once it failed) says so
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sink.add_result(run.with_test(second), second)
            time.sleep(0.01)
