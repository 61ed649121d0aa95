"""Issue 11 item 1: what the emulated host does not model is a recorded signal and an inconclusive verdict.

The host records every unmodelled step with its process (``EmulatedHost.note_not_modelled``); the
harness reads the steps of a test's process tree by its run marker from the in-process host (not
from stderr, which an atomic may redirect), and a test with such a step neither passes nor fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from harness.emulated.host import EmulatedHost
from harness.reporting.junit import JUnitReporter
from harness.reporting.navigator import NavigatorReporter
from harness.reporting.results_json import schema_problems
from harness.results import FailureKind, ModelGap, RunMode, RunResult, TestResult, TestStatus
from harness.verdicts import RuleOutcome, judge

MARK = "atomiclab_run_" + "a" * 32
OTHER = "atomiclab_run_" + "b" * 32
PS = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"


@pytest.fixture()
def host() -> EmulatedHost:
    return EmulatedHost()


def _whats(host: EmulatedHost, marker: str = MARK) -> list[str]:
    return [s.what for s in host.not_modelled_under(marker)]


def test_unmodelled_program_in_cmd_is_recorded_in_its_own_process(host: EmulatedHost) -> None:
    r = host.execute(f"cmd.exe /c tasklist.exe /v 2>nul & rem {MARK}")
    assert r.exit_code == 0 and "not modelled" not in r.stderr  # the note was redirected away ...
    (step,) = host.not_modelled_under(MARK)  # ... and the record is still there
    assert step.what == "tasklist.exe" and step.process == "tasklist.exe"


def test_unmodelled_cmd_builtin_and_powershell_cmdlet_are_recorded(host: EmulatedHost) -> None:
    host.execute(f"cmd.exe /c assoc .txt & rem {MARK}")
    host.execute(f'{PS} -Command "& {{Get-LocalUser}}" #{MARK}')
    assert _whats(host) == ["assoc", "Get-LocalUser"]
    steps = host.not_modelled_under(MARK)
    assert [s.process for s in steps] == ["cmd.exe", "powershell.exe"]


def test_powershell_not_modelled_error_paths_are_recorded(host: EmulatedHost) -> None:
    r = host.execute(f'{PS} -Command "& {{[System.Environment]::OSVersion}}" #{MARK}')
    assert "is not modelled by the emulated PowerShell" in r.stderr
    assert _whats(host) == ["[System.Environment]::OSVersion"]


def test_powershell_syntax_outside_the_subset_is_recorded(host: EmulatedHost) -> None:
    # a here-string is valid PowerShell 5.1 (about_Quoting_Rules) outside the emulated subset
    host.execute(f'{PS} -Command "& {{@\'\nx\n\'@}}" #{MARK}')
    (what,) = _whats(host)
    assert what.startswith("PowerShell syntax (")


def test_steps_are_attributed_by_marker_lineage_only(host: EmulatedHost) -> None:
    host.execute(f'cmd.exe /c {PS} -Command "Get-LocalUser" & rem {MARK}')  # grandchild of the marked root
    host.execute(f"cmd.exe /c systeminfo.exe & rem {OTHER}")
    host.execute("cmd.exe /c w32tm.exe /query")  # no marker at all
    assert _whats(host, MARK) == ["Get-LocalUser"]
    assert _whats(host, OTHER) == ["systeminfo.exe"]
    assert _whats(host, "") == []


def test_modelled_steps_record_nothing(host: EmulatedHost) -> None:
    r = host.execute(f"cmd.exe /c netstat -ano | findstr LISTENING & rem {MARK}")
    assert r.exit_code == 0
    assert host.not_modelled_under(MARK) == []


# ------------------------------------------------------------------------------------- judging


class _Where:
    def matches(self, fields: object) -> bool:
        return True

    def explain(self, fields: object) -> list[str]:
        return []

    def describe(self) -> str:
        return "(any)"


class _Exp:
    guid = "g"
    time_budget_s = 5.0
    events: tuple[object, ...] = ()
    detections: tuple[object, ...] = ()


GAP = (ModelGap("tasklist.exe", "tasklist.exe", 1234),)


def test_would_be_pass_with_an_unmodelled_step_is_inconclusive() -> None:
    j = judge(_Exp(), [], {}, not_modelled=GAP)  # type: ignore[arg-type]
    assert j.status is TestStatus.INCONCLUSIVE and j.failure is FailureKind.NOT_MODELLED
    assert j.reason.startswith("not modelled by the emulated host: 'tasklist.exe' (tasklist.exe); would have")
    assert "\n" not in j.reason


def test_would_be_failure_with_an_unmodelled_step_is_inconclusive() -> None:
    j = judge(_Exp(), [], {}, exit_note="exit code 1: boom", not_modelled=GAP)  # type: ignore[arg-type]
    assert j.status is TestStatus.INCONCLUSIVE
    assert "would have failed (execution_failed)" in j.reason


def test_a_rule_that_cannot_run_still_fails() -> None:
    class Det:
        rule = "r.sumo"
        fires = True
        where = None
        known_false_positive = None

    class Exp(_Exp):
        detections = (Det(),)

    j = judge(Exp(), [], {"r.sumo": RuleOutcome("r.sumo", error="syntax")}, not_modelled=GAP)  # type: ignore[arg-type]
    assert j.status is TestStatus.FAILED and j.failure is FailureKind.RULE_INVALID
    assert "also not modelled" in j.reason


def test_no_unmodelled_step_leaves_the_verdict_alone() -> None:
    assert judge(_Exp(), [], {}).status is TestStatus.PASSED  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- reports


def _run(status: TestStatus) -> RunResult:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    t = TestResult(
        guid="g", name="n", technique="T1057", target="emulated", status=status, reason="not modelled: x",
        started=now, ended=now, failure=FailureKind.NOT_MODELLED if status is TestStatus.INCONCLUSIVE else None,
        not_modelled=GAP if status is TestStatus.INCONCLUSIVE else (),
    )  # fmt: skip
    return RunResult(run_id="r", mode=RunMode.RUN, started=now, harness_version="0", operator="o", tests=(t,))


def test_inconclusive_in_results_json_junit_navigator_and_exit_codes() -> None:
    run = _run(TestStatus.INCONCLUSIVE)
    d = run.to_dict()
    assert schema_problems(d) == []
    assert d["summary"]["inconclusive"] == 1 and d["tests"][0]["not_modelled"][0]["what"] == "tasklist.exe"
    assert RunResult.from_dict(d).tests[0].not_modelled == GAP
    case = ET.fromstring(JUnitReporter().render(run)).find(".//testcase")
    assert case is not None
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("type") == "not_modelled"
    assert skipped.get("message", "").startswith("inconclusive: ") and "tasklist.exe" in (skipped.text or "")
    assert '"inconclusive"' in NavigatorReporter().render(run)
    assert run.exit_code == 0 and run.exit_code_for(strict=True) == 1
    assert _run(TestStatus.PASSED).exit_code_for(strict=True) == 0


# ------------------------------------------------------- a stock Windows Server 2022 step never fails


@pytest.mark.parametrize(
    ("command", "what"),
    [
        ("cmd.exe /c schtasks /query", "schtasks"),  # stock_server2022.yaml: the process exists, unmodelled
        ("cmd.exe /c wmic process list brief", "wmic"),
        ("cmd.exe /c C:\\Windows\\System32\\rundll32.exe shell32.dll,Control_RunDLL", "rundll32.exe"),
        (f'{PS} -Command "& {{iex whoami}}"', "Invoke-Expression (alias iex)"),  # ps_stock.ALIASES
        (f'{PS} -Command "& {{function f {{ 1 }}; f}}"', "PowerShell keyword 'function'"),  # ps_stock.KEYWORDS
        (f'{PS} -Command "& {{bitsadmin /list}}"', "bitsadmin.exe"),
    ],
)
def test_stock_windows_steps_are_not_modelled_never_not_recognized(host: EmulatedHost, command: str, what: str) -> None:
    r = host.execute(f"{command} & rem {MARK}" if command.startswith("cmd") else f"{command} #{MARK}")
    assert "is not recognized" not in r.stderr.replace("'f' is not recognized", "")
    assert what in _whats(host)


def test_a_program_missing_on_a_stock_host_still_fails_like_windows(host: EmulatedHost) -> None:
    r = host.execute(f"cmd.exe /c mimikatz.exe & rem {MARK}")
    assert r.exit_code == 9009 and "'mimikatz.exe' is not recognized" in r.stderr
    r = host.execute(f'{PS} -Command "& {{Invoke-Mimikatz2.exe}}" #{MARK}')
    assert r.exit_code == 1 and "CommandNotFoundException" in r.stderr
    assert host.not_modelled_under(MARK) == []
