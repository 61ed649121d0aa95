"""Issue 11 item 1: what the emulated host does not model is a recorded signal and an inconclusive verdict.

The host records every unmodelled step with its process (``EmulatedHost.note_not_modelled``); the
harness reads the steps of a test's process tree by its run marker from the in-process host (not
from stderr, which an atomic may redirect), and a test with such a step neither passes nor fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

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

pytest_plugins = ["pytester"]


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
    # a switch statement is valid PowerShell 5.1 (about_Switch) outside the emulated subset
    host.execute(f'{PS} -Command "& {{switch (1) {{ 1 {{ 2 }} }}}}" #{MARK}')
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


class _Event:
    id = "e1"
    description = "anything, or nothing"
    channel = "Microsoft-Windows-Sysmon/Operational"
    event_id = 1
    where = _Where()
    min_count = 0
    max_count = None
    requires = ()
    origin = "authored"


class _Exp:
    guid = "g"
    time_budget_s = 5.0
    events: tuple[object, ...] = (_Event(),)
    detections: tuple[object, ...] = ()


GAP = (ModelGap("tasklist.exe", "tasklist.exe", 1234),)


def test_would_be_pass_with_an_unmodelled_step_is_inconclusive() -> None:
    j = judge(_Exp(), [], {}, not_modelled=GAP)  # type: ignore[arg-type]
    assert j.status is TestStatus.INCONCLUSIVE and j.failure is FailureKind.NOT_MODELLED
    assert j.reason.startswith("not modelled by the emulated host: 'tasklist.exe' (tasklist.exe); would have")
    assert "\n" not in j.reason


def test_would_be_failure_with_an_unmodelled_step_is_inconclusive() -> None:
    j = judge(_Exp(), [], {}, execution_failure="timed out", not_modelled=GAP)  # type: ignore[arg-type]
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
        ("cmd.exe /c schtasks /query", "schtasks /query"),  # a stock program, this form unmodelled
        ("cmd.exe /c wmic process list brief", "wmic process list"),
        ("cmd.exe /c C:\\Windows\\System32\\rundll32.exe shell32.dll,Control_RunDLL", "rundll32.exe"),
        (f'{PS} -Command "& {{gwmi Win32_Process}}"', "Get-WmiObject"),  # ps_stock.ALIASES -> stock cmdlet
        (  # a statement outside the emulated parser's subset
            f'{PS} -Command "& {{trap {{ 1 }}; 2}}"',
            "PowerShell syntax (the 'trap' statement is outside the emulated parser's subset)",
        ),
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


# ------------------------------------------------------------------ baseline expectations (item 3)


def test_programs_the_command_starts() -> None:
    from harness.baseline import programs_started
    from harness.model import ExecutorName

    ps = 'whoami; net user | findstr x\nWrite-Host "a; b"\n& "C:\\T\\x.exe" -a\nStart-Process notepad.exe # ; evil\niex (iwr u)'
    assert programs_started(ExecutorName.POWERSHELL, ps) == ["whoami.exe", "net.exe", "findstr.exe", "x.exe",
                                                             "notepad.exe"]
    cmd = 'echo a > b & reg query x && "C:\\P F\\t.exe" /x\nstart "" /b calc.exe\n%windir%\\x.exe | findstr y'
    assert programs_started(ExecutorName.COMMAND_PROMPT, cmd) == ["reg.exe", "t.exe", "calc.exe", "findstr.exe"]
    assert programs_started(ExecutorName.SH, "id; uname -a") == []


def test_baseline_follows_the_lab_channels() -> None:
    from harness.baseline import baseline_expectations
    from harness.model import ExecutorName

    both = baseline_expectations("g", ExecutorName.COMMAND_PROMPT, "whoami", marker=MARK,
                                 features={"sysmon": True, "process_auditing": True}, time_budget_s=5)
    assert both is not None
    assert [(e.event_id, e.origin) for e in both.events] == [(1, "baseline"), (4688, "baseline"), (1, "baseline")]
    assert both.events[0].where.matches({"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": f"x {MARK}"})
    assert both.events[2].where.matches({"Image": "C:\\Windows\\System32\\whoami.exe"})
    no_sysmon = baseline_expectations("g", ExecutorName.POWERSHELL, None, marker=MARK,
                                      features={"sysmon": False, "process_auditing": True}, time_budget_s=5)
    assert no_sysmon is not None and [e.event_id for e in no_sysmon.events] == [4688]
    assert baseline_expectations("g", ExecutorName.SH, "id", marker=MARK, features=None, time_budget_s=5) is None


def test_a_test_without_expectations_is_judged_on_its_baseline(tmp_path) -> None:
    """End to end on the emulated host: no expectations file covers the test, its baseline is judged."""
    import json

    from harness.cli import main

    atomics = tmp_path / "T1033.yaml"
    atomics.write_text(
        "attack_technique: T1033\ndisplay_name: System Owner/User Discovery\natomic_tests:\n"
        "- name: whoami and hostname from cmd\n  auto_generated_guid: 0b7b2c3a-1111-4222-8333-944455556666\n"
        "  description: baseline only\n  supported_platforms: [windows]\n"
        "  executor:\n    name: command_prompt\n    command: |\n      whoami\n      hostname\n"
    )
    out = tmp_path / "report"
    code = main(["run", "--no-progress", "--atomics", str(atomics), "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    data = json.loads((out / "results.json").read_text())
    (t,) = data["tests"]
    assert code == 0 and t["status"] == "passed", t["reason"]
    assert [v["origin"] for v in t["event_verdicts"]] == ["baseline"] * len(t["event_verdicts"])
    assert {v["id"] for v in t["event_verdicts"]} >= {"baseline-root-1", "baseline-program-1", "baseline-program-2"}
    assert "baseline; none authored" in t["reason"]
    junit = (out / "junit.xml").read_text()
    assert 'name="expectations_baseline" value="' in junit and 'name="expectations_authored" value="0"' in junit
    assert "(baseline: none authored)" in (out / "report.html").read_text()


# ----------------------------------------------------------- reasons quote the first meaningful error


def test_first_error_of_cmd_and_powershell_output() -> None:
    from harness.errortext import first_error

    cmd = "'mimikatz.exe' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
    assert first_error(cmd) == (
        "'mimikatz.exe' is not recognized as an internal or external command, operable program or batch file."
    )
    ps = (
        "atomiclab-emulated: 'Get-LocalUser' is not modelled; no effect\r\n"
        "nosuch.exe : The term 'nosuch.exe' is not recognized as the name of a cmdlet, function, script file, or "
        "operable program.\r\nAt line:1 char:4\r\n+ & {nosuch.exe}\r\n+    ~~~~~~~~~~\r\n"
        "    + CategoryInfo          : ObjectNotFound: (nosuch.exe:String) [], CommandNotFoundException\r\n"
        "    + FullyQualifiedErrorId : CommandNotFoundException\r\n \r\n"
    )
    assert first_error(ps).startswith("nosuch.exe : The term 'nosuch.exe' is not recognized")
    clixml = (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<S S="Error">Access is denied._x000D__x000A_</S><S S="Error">    + CategoryInfo : x_x000D__x000A_</S></Objs>'
    )
    assert first_error(clixml) == "Access is denied."
    assert first_error("", "only stdout\nsecond") == "only stdout"
    assert len(first_error("x" * 500)) == 200 and first_error("") == ""


def test_a_failing_command_reason_is_its_first_error_on_one_line(host: EmulatedHost) -> None:
    from harness.runner import _exit_note

    r = host.execute(f'{PS} -Command "& {{nosuch.exe}}" #{MARK}')
    note = _exit_note(r)
    assert note is not None and note.startswith("exit code 1: nosuch.exe : The term 'nosuch.exe' is not recognized")
    r = host.execute(f"cmd.exe /c nosuch.exe & rem {MARK}")
    note = _exit_note(r)
    assert note == (
        "exit code 9009: 'nosuch.exe' is not recognized as an internal or external command, "
        "operable program or batch file."
    )
    now = datetime(2026, 12, 1, tzinfo=UTC)
    t = TestResult(guid="g", name="n", technique="T1", target="e", status=TestStatus.FAILED,
                   reason="a\r\nb\n\nc", started=now, ended=now)
    assert t.reason == "a b c"


def test_no_stock_program_or_alias_is_ever_not_recognized() -> None:
    """Every program of the stock catalogue and every PowerShell 5.1 built-in alias or keyword runs
    (modelled, or recorded as not modelled): the emulated host never invents "not recognized"."""
    from harness.emulated.ps_stock import ALIASES
    from harness.emulated.tools import load_profiles

    host = EmulatedHost()
    on_path = ("c:\\windows\\system32", "c:\\windows\\system32\\wbem", "c:\\windows")
    stock = sorted({p.name for p in load_profiles() if p.image.lower().rsplit("\\", 1)[0] in on_path})
    assert len(stock) > 150
    for chunk in range(0, len(stock), 40):
        names = stock[chunk : chunk + 40]
        r = host.execute("cmd.exe /c " + " & ".join(f"{n} /? >nul" for n in names), timeout_s=120)
        assert "is not recognized" not in r.stderr, r.stderr[:300]
    words = sorted(set(ALIASES) - {"%", "?"})
    for chunk in range(0, len(words), 40):
        script = "; ".join(words[chunk : chunk + 40])  # a CommandNotFound error would not stop the next
        r = host.execute(f'{PS} -Command "& {{{script}}}"', timeout_s=120)
        assert "CommandNotFoundException" not in r.stderr, r.stderr[:300]


_UNMODELLED_ATOMIC = (
    "attack_technique: T1057\ndisplay_name: Process Discovery\natomic_tests:\n"
    "- name: tasklist from cmd\n  auto_generated_guid: 1c3f4a5b-2222-4333-8444-955566667777\n"
    "  description: runs a stock program the emulated host does not model\n  supported_platforms: [windows]\n"
    "  executor:\n    name: command_prompt\n    command: tasklist /v\n"
)


def test_strict_makes_inconclusive_a_failing_exit_code(tmp_path, capsys) -> None:
    from harness.cli import main

    atomics = tmp_path / "T1057.yaml"
    atomics.write_text(_UNMODELLED_ATOMIC)
    common = ["run", "--no-progress", "--atomics", str(atomics), "--history", str(tmp_path / "h.sqlite")]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("INCONCLUSIVE"))
    assert "not modelled by the emulated host: 'tasklist'" in line
    assert main([*common, "--out", str(tmp_path / "b"), "--strict"]) == 1



def test_pytest_plugin_skips_inconclusive_and_strict_fails_it(pytester) -> None:
    atomics = pytester.path / "T1057.yaml"
    atomics.write_text(_UNMODELLED_ATOMIC)
    common = ["--atomiclab", str(atomics), "--atomiclab-history", str(pytester.path / "h.sqlite"), "-p", "no:cacheprovider"]
    r = pytester.runpytest_inprocess(*common, "--atomiclab-out", str(pytester.path / "a"), "-rs")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*inconclusive: not modelled by the emulated host*tasklist*"])
    r = pytester.runpytest_inprocess(*common, "--atomiclab-out", str(pytester.path / "b"), "--atomiclab-strict")
    r.assert_outcomes(failed=1)


def test_a_non_zero_exit_fails_a_test_judged_on_its_baseline_only() -> None:
    class BaselineOnly(_Exp):
        events = (type("B", (_Event,), {"origin": "baseline"})(),)

    j = judge(BaselineOnly(), [], {}, exit_note="exit code 1: Access is denied.")  # type: ignore[arg-type]
    assert j.status is TestStatus.FAILED and j.failure is FailureKind.EXECUTION_FAILED
    assert judge(_Exp(), [], {}, exit_note="exit code 128: fatal").status is TestStatus.PASSED  # type: ignore[arg-type]


def test_every_not_modelled_error_is_recorded_with_the_host() -> None:
    """Convention guard: an emulated step outside the model goes through ``not_modelled_note`` or
    ``Interpreter.unmodelled`` (which record it); a bare "not modelled" error text would make a
    test fail (or pass) on a step the model lacks instead of being inconclusive."""
    import re

    root = Path(__file__).resolve().parents[1] / "harness" / "emulated"
    offenders = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"raise PSError\(\s*f?\"[^\"]*is not modelled", text):
            offenders.append(f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}")
        for m in re.finditer(r"is not modelled; no effect", text):
            line = text[text.rfind("\n", 0, m.start()) + 1 : text.find("\n", m.start())]
            if "def not_modelled_note" not in text[max(0, m.start() - 600) : m.start()] and '"""' not in line \
                    and not line.lstrip().startswith(("#", "``", "-")):
                offenders.append(f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}")
    assert offenders == []


def test_a_write_to_the_admin_share_is_not_modelled_not_a_missing_path(host: EmulatedHost) -> None:
    # upstream T1021.002 "Execute command writing output to local Admin Share": every Windows Server
    # has ADMIN$; the emulated file system has no network shares
    r = host.execute(f"cmd.exe /Q /c hostname 1> \\\\127.0.0.1\\ADMIN$\\output.txt 2>&1 & rem {MARK}")
    assert r.exit_code == 0 and "cannot find the path" not in r.stderr
    assert _whats(host) == ["file on a network share \\\\127.0.0.1\\ADMIN$"]
