"""Ctrl-C on the thread that executes a test (the pytest plugin runs tests on the main thread): the
lifecycle finishes the cleanup and re-raises; the test is still recorded, INTERRUPTED, with its
command and cleanup transcripts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from run_fakes import RULE, T0, FakeDetector, FakeSource, atomic, marker_attribution, nmap_events, target

from harness.content.labconfig import TargetConfig
from harness.model import CommandResult
from harness.plan import PlannedTest, RunPlan
from harness.reporting.base import ReportDirectory
from harness.reporting.results_json import ResultsJsonReporter, load_results, schema_problems
from harness.results import FailureKind, RunMode, RunResult, TestStatus
from harness.runner import OpenTarget, RuleSet, Runner, TestInterrupted
from harness.targets import execute

MARKER = "atomiclab_run_" + "b" * 32


@dataclass
class CtrlCTransport:
    """Ctrl-C arrives while the command (the line with the run marker) runs; cleanup succeeds."""

    host: str = "fake"
    commands: list[str] = field(default_factory=list)

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.commands.append(command_line)
        if MARKER in command_line:
            raise KeyboardInterrupt
        return CommandResult(command_line, 0, "removed", "", T0, T0)

    def put_file(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


@dataclass
class Factory:
    transport: CtrlCTransport

    def open(self, target: TargetConfig) -> OpenTarget:
        return OpenTarget(config=target, transport=self.transport,
                          make_source=lambda _t: FakeSource(produce=nmap_events), emulated=True)


def _runner(tmp_path: Path, transport: CtrlCTransport) -> Runner:
    plan = RunPlan(targets=(target(),), tests=(PlannedTest(atomic()),), rule_paths={RULE: Path(RULE)})
    return Runner(plan, targets=Factory(transport), execute=execute, attribute=marker_attribution,
                  rules=RuleSet(detectors={RULE: FakeDetector()}),
                  sink=ReportDirectory(tmp_path, [ResultsJsonReporter()]), new_marker=lambda: MARKER)


def test_run_test_raises_with_the_interrupted_result(tmp_path: Path) -> None:
    transport = CtrlCTransport()
    runner = _runner(tmp_path, transport)
    host = runner.connect(target())
    with pytest.raises(TestInterrupted) as info:
        runner.run_test(host, PlannedTest(atomic()))
    result = info.value.result
    assert result is not None
    assert result.status is TestStatus.ERROR and result.failure is FailureKind.INTERRUPTED
    assert "cleanup done" in result.reason
    roles = [s.role for s in result.steps]
    assert roles == ["command", "cleanup"]
    command, cleanup = result.steps
    assert command.exit_code is None and MARKER in command.command
    assert cleanup.exit_code == 0 and "Remove-Item x" in cleanup.command
    assert (tmp_path / cleanup.transcript).read_text().count("removed") == 1
    assert (tmp_path / command.transcript).is_file()


def test_runner_run_records_the_interrupted_test(tmp_path: Path) -> None:
    runner = _runner(tmp_path, CtrlCTransport())
    initial = RunResult(run_id="r1", mode=RunMode.RUN, started=T0, harness_version="test", operator="me")
    with pytest.raises(KeyboardInterrupt):
        runner.run(initial)
    run = load_results(tmp_path)
    assert run.interrupted and not run.complete
    (t,) = run.tests
    assert t.failure is FailureKind.INTERRUPTED and [s.role for s in t.steps] == ["command", "cleanup"]
    assert schema_problems(json.loads((tmp_path / "results.json").read_text())) == []
