"""Output for people and logs: portable lint paths in the reports, per-rule lint tables in
report.html, run/history output that stays one greppable line in a log, events and detect tables
that keep the useful column whole."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from run_fakes import T0
from test_report_files import sample_run

from harness.cli import main
from harness.cli.detect_cmds import table_lines
from harness.cli.events_cmd import held, summary_width
from harness.reporting.console import ConsoleLines, print_summary, summary_lines
from harness.reporting.history import History
from harness.reporting.html import HtmlReporter
from harness.results import FailureKind, LintRecord, RunResult, TestStatus, rule_file

RULE = "detections/sumo/upstream/x.sumo"
ABS = "/work/checkout/" + RULE
PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T1046_10 = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"
SYSMON_EVTX = T1046_10 / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx"


def _with_lint(run: RunResult) -> RunResult:
    return replace(
        run,
        lint={
            RULE: (LintRecord(ABS, 6, 3, "error", "SUMO001", "'eval' is not Sumo"),
                   LintRecord(ABS, 39, 10, "warning", "SUMO005", "'_time' is Splunk")),
            RULE + "@sumo-api": (LintRecord(ABS, 6, 3, "error", "SUMO001", "'eval' is not Sumo"),),
            "detections/other.yml": (LintRecord("/elsewhere/include.yml", 1, 1, "error", "S1", "bad"),),
        },
        rule_errors={RULE: f"{ABS}:6:3: 'eval' is not Sumo", "detections/y.sumo": "cannot run: /c/detections/y.sumo"},
        lint_not_judged=(RULE,),
    )


def test_rule_file_strips_the_engine_suffix() -> None:
    assert rule_file(RULE + "@sumo-api") == RULE
    assert rule_file("x.sumo") == "x.sumo"


def test_lint_findings_and_rule_errors_name_files_relative_to_the_content_root(tmp_path: Path) -> None:
    base, _ = sample_run(tmp_path)
    run = _with_lint(base)
    assert {f.file for f in run.lint[RULE]} == {RULE}
    assert run.lint[RULE + "@sumo-api"][0].file == RULE
    assert run.lint["detections/other.yml"][0].file == "/elsewhere/include.yml"  # not the rule's file: kept
    assert run.rule_errors[RULE] == f"{RULE}:6:3: 'eval' is not Sumo"
    assert run.rule_errors["detections/y.sumo"] == "cannot run: detections/y.sumo"
    data = run.to_dict()
    assert "/work/checkout" not in json.dumps(data)
    assert RunResult.from_dict(data).to_dict() == data


def test_windows_absolute_paths_are_shortened_too(tmp_path: Path) -> None:
    base, _ = sample_run(tmp_path)
    win = "C:\\lab\\" + RULE.replace("/", "\\")
    run = replace(base, lint={RULE: (LintRecord(win, 1, 1, "error", "C", "m"),)}, rule_errors={})
    assert run.lint[RULE][0].file == RULE


def test_html_lists_each_rules_findings_once_under_the_rule(tmp_path: Path) -> None:
    base, _ = sample_run(tmp_path)
    page = HtmlReporter(tmp_path).render(_with_lint(base))
    assert "/work/checkout" not in page
    assert "2 finding(s): 1 error, 1 warning" in page
    assert '<td><code>6:3</code></td><td class="sev-error">error</td><td>SUMO001</td>' in page
    assert '<td><code>39:10</code></td><td class="sev-warning">warning</td>' in page
    section = page.split("Rules judged")[1].split("Per-test evidence")[0]
    assert f"{RULE}:" not in section  # positions alone: the file is named once, in the rule cell
    assert "<code>/elsewhere/include.yml:1:1</code>" in page  # another file than the rule's: named


def test_log_output_is_plain_and_one_line_per_test(tmp_path: Path) -> None:
    from rich.console import Console

    run, _ = sample_run(tmp_path)
    buf = io.StringIO()
    console = Console(file=buf, width=80, soft_wrap=True, force_terminal=False)
    observer = ConsoleLines(console)
    for t in run.tests:
        observer.test_finished(t)
    print_summary(console, run)
    lines = buf.getvalue().splitlines()
    failed = next(line for line in lines if line.startswith("FAILED"))
    assert "nmap no sysmon 3: " in failed and "Sysmon EID 3" in failed  # the reason, on the same line
    assert not any(ch in buf.getvalue() for ch in "┏│━")  # no box drawing in a log
    assert lines[-len(summary_lines(run)):] == summary_lines(run)
    header = summary_lines(run)[1]
    assert header.split() == ["TARGET", "TECHNIQUE", "TEST", "STATUS", "FAILURE", "EVENTS", "DETECTIONS"]


def test_history_in_a_log_keeps_run_ids_and_guids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = History(tmp_path / "history.sqlite")
    base, _ = sample_run(tmp_path / "r")
    g1 = base.tests[0]
    for i, st in enumerate(["passed", "failed"]):
        t = replace(g1, status=TestStatus(st), failure=None if st == "passed" else FailureKind.TELEMETRY_MISSING)
        h.record(replace(base, run_id=f"20261130T0{i}0000Z-abcdef", started=T0 + timedelta(hours=i),
                         tests=(t,)).finished())
    assert main(["history", "--history", str(tmp_path / "history.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "20261130T010000Z-abcdef" in out and "…" not in out
    assert f"[{g1.guid}]" in out  # not eaten as rich markup


def test_detect_table_puts_the_longest_column_last_and_whole() -> None:
    cmd = "powershell.exe & {" + "$tcp = New-Object Net.Sockets.TcpClient; " * 5 + "}"
    rows = [{"_messageTime": 1729608382972, "image_path": r"C:\Windows\System32\cmd.exe", "cmdline": cmd,
             "detection_type": "NativeToolScanning"}]
    lines = table_lines(rows)
    assert lines[0].split() == ["_messageTime", "image_path", "detection_type", "cmdline"]
    assert lines[2].endswith(cmd) and lines[2].startswith("2024-10-22 14:46:22.972Z")
    assert all(line == line.rstrip() for line in lines)


def test_events_summary_is_whole_when_piped_and_filters_say_what_is_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert summary_width(io.StringIO()) is None
    assert held({"Security": {4688, 1102}, "Windows PowerShell": {600}}) == "Security 1102/4688; Windows PowerShell 600"
    if not SYSMON_EVTX.is_file():
        pytest.skip(f"recording {SYSMON_EVTX} absent")
    assert main(["events", str(SYSMON_EVTX), "--channel", "sysmon", "--event-id", "1"]) == 0
    out = capsys.readouterr().out
    assert "Net.Sockets.TcpClient" in out and "…" not in out  # past the old 160-character cut
    assert main(["events", str(SYSMON_EVTX), "--channel", "ps-op"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no event matched the filters; the files hold Microsoft-Windows-Sysmon/Operational 1/5" in captured.err


def test_verdict_and_test_reasons_name_the_rule_file_relative(tmp_path: Path) -> None:
    base, _ = sample_run(tmp_path)
    test = base.tests[1]
    verdict = replace(test.detection_verdicts[0], rule=RULE,
                      reason=f"{RULE} must fire but cannot run: {ABS}:6:3: 'eval' is not Sumo")
    moved = replace(test, detection_verdicts=(verdict,), reason=f"missing X; {verdict.reason}; again {ABS}")
    assert verdict.reason == f"{RULE} must fire but cannot run: {RULE}:6:3: 'eval' is not Sumo"
    assert "/work/checkout" not in moved.reason and moved.reason.endswith(f"again {RULE}")


def test_an_invalid_rule_points_at_lint_for_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upstream = Path(__file__).resolve().parents[1] / "detections/sumo/upstream/t1046_network_service_discovery.sumo"
    events = tmp_path / "none.jsonl"
    events.write_text("")
    assert main(["detect", "--rule", str(upstream), str(events)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{upstream}:6:3: ") and err.endswith(f"(every problem: atomiclab lint {upstream})")
    assert main(["detect", "--rule", str(tmp_path / "missing.sumo"), str(events)]) == 2
    assert "atomiclab lint" not in capsys.readouterr().err  # not a problem in the rule's text
