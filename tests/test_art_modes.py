"""Invoke-AtomicRedTeam's selection and modes (issue 12): T1046 / T1046-3 / GUID / name,
``atomiclab show``, ``--check-prereqs``, ``--cleanup``, ``--no-cleanup``, ``elevation_required``
against the target account, ``--prompt``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli.run_cmds import prompt_arguments
from harness.content.atomics import discover_atomics
from harness.errors import ContentError
from harness.execution.lifecycle import execute_atomic, probe_elevation
from harness.execution.modes import ExecMode, ExecutionSettings
from harness.model import AtomicTest, CommandResult, ExecutionStatus
from harness.plan import ArgOverride, PlannedTest, number_in_technique, select_tests

REPO = Path(__file__).resolve().parents[1]
ART = REPO / "tests" / "fixtures" / "art-upstream"
FILES = discover_atomics([ART])
MARKER = "atomiclab_run_" + "1" * 32


def _names(tests: list[AtomicTest]) -> list[str]:
    return [f"{t.technique}-{number_in_technique(FILES, t)}" for t in tests]


def test_select_by_technique_number_guid_and_name() -> None:
    assert _names(select_tests(FILES, ["T1609"])) == ["T1609-1", "T1609-2"]
    assert _names(select_tests(FILES, ["t1046-3"])) == ["T1046-3"]
    assert _names(select_tests(FILES, ["T1046-2,1", "T1609-2"])) == ["T1046-2", "T1046-1", "T1609-2"]
    assert _names(select_tests(FILES, ["93ca40d2-336c-446d-bcef-87f14d438018"])) == ["T1055.011-1"]
    assert _names(select_tests(FILES, ["Docker Exec Into Container"])) == ["T1609-2"]
    with pytest.raises(ContentError, match="T1609 has tests 1-2, not 3"):
        select_tests(FILES, ["T1609-3"])
    with pytest.raises(ContentError, match="no technique T9999"):
        select_tests(FILES, ["T9999"])


class _Scripted:
    """A transport answering each command line by the first rule whose text it contains."""

    host = "scripted"

    def __init__(self, rules: list[tuple[str, int, str]]) -> None:
        self.rules = rules
        self.lines: list[str] = []

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.lines.append(command_line)
        now = datetime.now(UTC)
        for text, code, out in self.rules:
            if text in command_line:
                return CommandResult(command_line, code, out, "", now, now)
        return CommandResult(command_line, 0, "", "", now, now)

    def put_file(self, local: Path, remote: str) -> None:  # pragma: no cover - not used here
        raise AssertionError

    def close(self) -> None:
        pass


def _t(selector: str) -> AtomicTest:
    return select_tests(FILES, [selector])[0]


def _run(test: AtomicTest, transport: _Scripted, **settings: object) -> ExecutionStatus:
    rec = execute_atomic(transport, test, args={}, marker=MARKER, get_prereqs=True, timeout=5, platform="windows",
                         settings=ExecutionSettings(**settings))  # type: ignore[arg-type]
    return rec.status


def test_check_prereqs_runs_the_checks_only() -> None:
    test = _t("T1055.011-1")  # one dependency, Test-Path
    ok = _Scripted([])
    assert _run(test, ok, mode=ExecMode.CHECK_PREREQS, elevated=True) is ExecutionStatus.PREREQS_MET
    assert len(ok.lines) == 1 and "Test-Path" in ok.lines[0] and MARKER not in ok.lines[0]
    unmet = _Scripted([("Test-Path", 1, "")])
    assert _run(test, unmet, mode=ExecMode.CHECK_PREREQS) is ExecutionStatus.SKIPPED_PREREQ
    assert len(unmet.lines) == 1  # never the get-prereq command, even with get_prereqs


def test_cleanup_only_and_no_cleanup() -> None:
    test = _t("T1055.011-1")
    only = _Scripted([])
    assert _run(test, only, mode=ExecMode.CLEANUP) is ExecutionStatus.CLEANED_UP
    assert len(only.lines) == 1 and "Stop-Process" in only.lines[0]
    none = _Scripted([])
    assert _run(test, none, cleanup=False, elevated=True) is ExecutionStatus.EXECUTED
    assert not any("Stop-Process" in line for line in none.lines)
    assert any(MARKER in line for line in none.lines)


def test_elevation_required_is_checked_against_the_account() -> None:
    test = _t("T1547.001-2")  # Reg Key RunOnce: elevation_required, command_prompt
    assert test.executor.elevation_required
    plain = _Scripted([("whoami /groups", 1, "")])
    rec = execute_atomic(plain, test, args={}, marker=MARKER, get_prereqs=False, timeout=5, platform="windows")
    assert rec.status is ExecutionStatus.SKIPPED_ELEVATION
    assert "not elevated" in (rec.reason or "")
    assert not any(MARKER in line for line in plain.lines)
    admin = _Scripted([("whoami /groups", 0, "Mandatory Label\\High Mandatory Level  Label  S-1-16-12288")])
    rec = execute_atomic(admin, test, args={}, marker=MARKER, get_prereqs=False, timeout=5, platform="windows")
    assert rec.status is ExecutionStatus.EXECUTED
    # An answer the probe cannot read (e.g. "not modelled" on the emulated host): the target decides.
    unclear = _Scripted([("whoami /groups", 9009, "")])
    assert probe_elevation(unclear, True, 5) is None
    assert probe_elevation(_Scripted([("id -u", 0, "1000\n")]), False, 5) is False
    assert probe_elevation(_Scripted([("id -u", 0, "0\n")]), False, 5) is True


def test_prompt_asks_each_argument_and_keeps_defaults_on_enter() -> None:
    test = _t("T1055.011-1")
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return "x86" if "value for arch," in question else ""

    out = prompt_arguments([PlannedTest(test)], {}, [ArgOverride("payload_file", "C:\\p.bin")], ask, True)
    assert [q.splitlines()[1] for q in asked] == [
        "Enter a value for arch, or press enter to accept the default.",
        "Enter a value for exe_binary, or press enter to accept the default."]
    assert out == [ArgOverride("arch", "x86", test.guid), ArgOverride("payload_file", "C:\\p.bin")]
    with pytest.raises(ContentError, match="--prompt needs an interactive terminal"):
        prompt_arguments([PlannedTest(test)], {}, [], ask, False)


def test_show_prints_resolved_details(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "T1055.011-1", "--atomics", str(ART), "--arg", "arch=x86"]) == 0
    out = capsys.readouterr().out
    assert "[BEGIN TEST] T1055.011-1 Process Injection via Extra Window Memory (EWM) x64 executable" in out
    assert "exe_binary (path) = C:\\AtomicRedTeam\\atomics\\T1055.011\\bin\\T1055.011_x86.exe" in out
    assert "PathToAtomicsFolder" in out and "PathToAtomicsFolder\\" not in out
    assert main(["show", "T1609", "--brief", "--atomics", str(ART)]) == 0
    assert capsys.readouterr().out.splitlines() == ["T1609-1 ExecIntoContainer", "T1609-2 Docker Exec Into Container"]
    assert main(["show", "T1609-5", "--atomics", str(ART)]) == 2


def _results(out: Path) -> list[dict[str, object]]:
    data = json.loads((out / "results.json").read_text())
    return list(data["tests"])


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize(("flag", "reason_part"), [("--check-prereqs", "--check-prereqs: nothing else ran"),
                                                     ("--cleanup", "--cleanup")])
def test_run_modes_on_the_emulated_host(tmp_path: Path, flag: str, reason_part: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["run", "--no-progress", "--atomics", str(REPO / "atomics" / "T1046"), "--tests", "T1046-1",
                 flag, "--out", str(out), "--history", str(tmp_path / "h.sqlite")])
    assert code in (0, 1), capsys.readouterr()
    [result] = _results(out)
    roles = [s["role"] for s in result["steps"]]  # type: ignore[index, union-attr]
    assert reason_part in str(result["reason"])
    if flag == "--check-prereqs":
        assert (result["status"], result["failure"]) == ("skipped", "skipped_mode")
        assert "command" not in roles and "cleanup" not in roles
    else:  # the cleanup ran alone; its exit code decides (the emulated host models Remove-Item's)
        assert roles == ["cleanup"]
        assert (result["status"], result["failure"]) in (("skipped", "skipped_mode"), ("error", "harness_error"))




pytest_plugins = ["pytester"]


@pytest.mark.network
@pytest.mark.slow
def test_pytest_plugin_check_prereqs_mode(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        "--atomiclab", "--atomiclab-check-prereqs", str(REPO / "atomics" / "T1046"), "-k", "netstat", "-rs",
        "--atomiclab-out", str(pytester.path / "out"), "--atomiclab-history", str(pytester.path / "h.sqlite"))
    result.stdout.fnmatch_lines(["*--check-prereqs: nothing else ran*"])
    data = json.loads((pytester.path / "out" / "results.json").read_text())
    [test] = data["tests"]
    assert (test["status"], test["failure"]) == ("skipped", "skipped_mode")
    assert [s["role"] for s in test["steps"]] in ([], ["prereq"])


def test_pytest_plugin_modes_exclude_each_other(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--atomiclab", "--atomiclab-cleanup", "--atomiclab-no-cleanup",
                                          str(REPO / "atomics" / "T1046"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
