"""Issue 16, output hygiene: attacker-controlled text never drives the terminal or breaks XML/HTML.

Event fields, atomic names and reasons reach the console (events, detect, run, history), junit.xml,
report.html and pytest-html. Each test feeds an ESC sequence / C1 control / bidi override / lone
surrogate / markup through one output and checks it is shown escaped (they failed before the fix).
"""

from __future__ import annotations

import html
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from run_fakes import T0
from test_report_files import sample_run

from harness.cli import main
from harness.reporting.console import ConsoleLines, print_summary
from harness.reporting.history import History
from harness.reporting.html import CSP
from harness.reporting.junit import JUnitReporter
from harness.textsafe import for_json_line, for_terminal, for_xml

#: What an attacker puts into a command line or a test name: clear screen + colour, an OSC title,
#: a C1 CSI, a bidi override, a lone surrogate, a NUL and rich/HTML markup.
HOSTILE = "x\x1b[2J\x1b[31mred\x1b]0;owned\x07\x9b6n\u202eevil\ud800\x00[bold]<img src=x onerror=alert(1)>"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\ud800", "\x00")


def _clean(text: str) -> None:
    assert not any(c in text for c in RAW_CONTROLS), repr(text)


def test_textsafe_escapes_visibly_and_keeps_plain_text() -> None:
    assert for_terminal("plain text: äé 漢字 ✓") == "plain text: äé 漢字 ✓"
    shown = for_terminal(HOSTILE)
    _clean(shown)
    assert "\\x1b[2J" in shown and "\\u202e" in shown and "\\ud800" in shown
    assert for_terminal("a\nb\tc", multiline=True) == "a\nb\tc" and for_terminal("a\nb") == "a\\x0ab"
    assert json.loads(for_json_line(json.dumps({"k": "\x9b\u202e"}, ensure_ascii=False))) == {"k": "\x9b\u202e"}
    ET.fromstring(f"<a b='{for_xml(HOSTILE).replace('<', '&lt;')}'/>")


def _hostile_events(tmp_path: Path) -> Path:
    event = {"format": "atomiclab.event/1", "channel": "Security", "provider": "p", "event_id": 4688,
             "time": "2024-01-01T00:00:00Z", "computer": "h\x1b[8m",
             "fields": {"NewProcessName": "C:\\x.exe", "CommandLine": HOSTILE}}
    f = tmp_path / "hostile.jsonl"
    f.write_text(json.dumps(event) + "\n", encoding="utf-8")
    return f


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_events_output_escapes_terminal_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    assert main(["events", "--format", fmt, str(_hostile_events(tmp_path))]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "\\x1b[2J" in out or "\\u001b[2J" in out


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_detect_output_escapes_terminal_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    rule = tmp_path / "r.sumo"
    rule.write_text('_sourceCategory=* | where CommandLine matches "*red*"\n')
    assert main(["detect", "--rule", str(rule), "--format", fmt, str(_hostile_events(tmp_path))]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "red" in out


def _hostile_run(tmp_path: Path):  # type: ignore[no-untyped-def]
    run, sink = sample_run(tmp_path)
    tests = tuple(replace(t, name=f"{t.name} {HOSTILE}", reason=f"{t.reason} {HOSTILE}") for t in run.tests)
    return replace(run, tests=tests), sink


@pytest.mark.parametrize("terminal", [False, True])
def test_run_console_lines_and_summary_escape_controls_and_markup(tmp_path: Path, terminal: bool) -> None:
    from rich.console import Console

    run, _ = _hostile_run(tmp_path)
    buf = io.StringIO()
    console = Console(file=buf, width=400, soft_wrap=True, force_terminal=terminal, color_system=None)
    observer = ConsoleLines(console)
    for t in run.tests:
        observer.test_finished(t)
    print_summary(console, run)
    out = buf.getvalue()
    if terminal:
        assert not any(c in out for c in ("\x1b[2J", "\x1b[31m", "\x1b]0;", "\x07", "\x9b", "\u202e", "\x00"))
    else:
        _clean(out)
    assert "[bold]" in out  # shown as text, not swallowed as rich markup


@pytest.mark.parametrize("terminal", [False, True])
def test_history_escapes_controls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], terminal: bool) -> None:
    from harness.results import FailureKind, TestStatus

    h = History(tmp_path / "history.sqlite")
    run, _ = _hostile_run(tmp_path / "r")
    t = run.tests[0]
    for i, st in enumerate(["passed", "failed"]):  # a regression: listed with name and reason
        test = replace(t, status=TestStatus(st), failure=None if st == "passed" else FailureKind.TELEMETRY_MISSING)
        h.record(replace(run, run_id=f"r{i}\x1b[2J\u202e", started=T0 + timedelta(hours=i), tests=(test,)).finished())
    monkeypatch.setattr("sys.stdout.isatty", lambda: terminal, raising=False)
    assert main(["history", "--history", str(tmp_path / "history.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "Regressions (passed before, fail now): 1" in out
    if terminal:  # rich styles its own text; none of the hostile sequences gets through
        assert not any(c in out for c in ("\x1b[2J", "\x1b[31m", "\x1b]0;", "\x07", "\x9b", "\u202e", "\x00"))
    else:
        _clean(out)


def test_junit_is_well_formed_xml_whatever_the_names(tmp_path: Path) -> None:
    run, _ = _hostile_run(tmp_path)
    run = replace(run, run_id="r\x1b-1")
    text = JUnitReporter().render(run.finished())
    root = ET.fromstring(text.encode("utf-8"))  # raised ParseError before: control chars in XML 1.0
    names = [c.get("name") or "" for c in root.iter("testcase")]
    assert all("\\x1b[2J" in n for n in names)
    _clean(text)


def test_report_html_declares_a_strict_content_security_policy(tmp_path: Path) -> None:
    run, sink = _hostile_run(tmp_path)
    sink.publish(run.finished())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    head = page[: page.index("</head>")]
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html.unescape(head)
    assert "script-src 'none'" in CSP and "default-src 'none'" in CSP and "unsafe-eval" not in CSP
    assert "<script" not in page.lower() and "<img src=x" not in page
