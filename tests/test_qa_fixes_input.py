"""QA fixes: bad input is one line naming the file and what to do, exit 2; no traceback, no hang."""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import _Parser, build_parser, main
from harness.detect.sumo.detector import MAX_RULE_BYTES
from harness.errors import ContentError
from harness.reporting.history import History
from harness.targets import parse_emulate_settings
from harness.telemetry.readers import ReadStats, read_events

SYSMON_SAMPLE = Path("evtx-rs-samples") / "samples" / "sysmon.evtx"
GOOD_LINE = '{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1,"TimeCreated":"2024-01-01T00:00:00Z"}'


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit through parser.exit
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _sample(public_telemetry: Path) -> Path:
    path = public_telemetry / SYSMON_SAMPLE
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


# -- 1. argparse usage errors are one line, for every sub-command ---------------------------------


@pytest.mark.parametrize(
    ("argv", "prog", "needle"),
    [
        (["list", "--format", "xml"], "atomiclab list", "invalid choice: 'xml'"),
        (["lab", "check", "--bogus"], "atomiclab lab check", "unrecognized arguments: --bogus"),
        (["bogus"], "atomiclab", "invalid choice: 'bogus'"),
        ([], "atomiclab", "a command is required"),
        (["lab"], "atomiclab lab", "required"),
        (["verify"], "atomiclab verify", "required"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, prog, needle, capsys):
    code, out, err = _cli(argv, capsys)
    assert code == 2 and out == ""
    _one_line_error(err, f"{prog}: error:", needle, f"(see {prog} --help)")


def test_every_sub_parser_uses_the_one_line_parser_class():
    def walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found.extend(walk(sub))
        return found

    parsers = walk(build_parser())
    assert len(parsers) > 10 and all(isinstance(p, _Parser) for p in parsers)


# -- 7. bad numbers are usage errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--max-hosts", "-1"], "--max-hosts"),
        (["run", "--max-hosts", "0"], "--max-hosts"),
        (["run", "--timeout", "nan"], "--timeout"),
        (["run", "--timeout", "inf"], "--timeout"),
        (["run", "--timeout", "-5"], "--timeout"),
        (["events", "--limit", "-1", "f.jsonl"], "--limit"),
        (["history", "--last", "0"], "--last"),
    ],
)
def test_bad_numbers_are_one_line_exit_2(argv, needle, capsys):
    code, _, err = _cli(argv, capsys)
    assert code == 2
    _one_line_error(err, needle)


@pytest.mark.parametrize("value", ["nan", "-5", "inf", "1e30", "-0.5"])
def test_emulate_setting_numbers_must_be_finite_and_in_range(value, capsys):
    with pytest.raises(ContentError, match="delivery_delay_s"):
        parse_emulate_settings([f"delivery_delay_s={value}"])
    code, _, err = _cli(["lab", "check", "--emulate-setting", f"delivery_delay_s={value}"], capsys)
    assert code == 2
    _one_line_error(err, "delivery_delay_s")
    assert parse_emulate_settings(["delivery_delay_s=2.5"]) == {"delivery_delay_s": 2.5}


# -- 2. malformed manifests ---------------------------------------------------------------------------

_HEX = "a" * 64


@pytest.mark.parametrize(
    "manifest",
    [
        "[1]",
        '"text"',
        "not json",
        "[" * 100_000,
        '{"algorithm": "md5", "files": {}}',
        '{"algorithm": "sha256", "files": []}',
        '{"algorithm": "sha256", "files": {"a.txt": 5}}',
        '{"algorithm": "sha256", "files": {"a.txt": "xyz"}}',
        '{"algorithm": "sha256", "files": {"../../etc/passwd": "' + _HEX + '"}}',
        '{"algorithm": "sha256", "files": {"/etc/passwd": "' + _HEX + '"}}',
        '{"algorithm": "sha256", "files": {"a/./b": "' + _HEX + '"}}',
        '{"algorithm": "sha256", "files": {"C:/x": "' + _HEX + '"}}',
        '{"algorithm": "sha256", "files": {"manifest.json": "' + _HEX + '"}}',
    ],
)
def test_malformed_manifest_is_one_line_exit_2(manifest, tmp_path, capsys):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "manifest.json").write_text(manifest)
    code, out, err = _cli(["verify", str(tmp_path / "v")], capsys)
    assert code == 2 and out == ""
    _one_line_error(err, "manifest.json")


def test_verify_of_a_file_or_missing_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for target in (tmp_path / "f", tmp_path / "absent"):
        code, _, err = _cli(["verify", str(target)], capsys)
        assert code == 2
        _one_line_error(err, str(target), "no manifest")


# -- 3. damaged telemetry: read what is readable, report the rest --------------------------------------


def test_truncated_evtx_yields_readable_events_and_warns(public_telemetry, tmp_path, capsys):
    cut = tmp_path / "t.evtx"
    cut.write_bytes(_sample(public_telemetry).read_bytes()[:40000])
    code, out, err = _cli(["events", str(cut)], capsys)
    assert code == 0 and len(out.splitlines()) >= 10
    _one_line_error(err, "warning", str(cut), "truncated", "1 damaged chunk(s)")
    stats = ReadStats()
    assert len(list(read_events(cut, stats=stats))) == len(out.splitlines()) and stats.damaged_chunks == 1


def test_truncated_evtx_with_nothing_readable_is_exit_2(public_telemetry, tmp_path, capsys):
    for size in (4096, 5000):
        cut = tmp_path / f"t{size}.evtx"
        cut.write_bytes(_sample(public_telemetry).read_bytes()[:size])
        code, out, err = _cli(["events", str(cut)], capsys)
        assert code == 2 and out == ""
        _one_line_error(err, "error", str(cut), "nothing readable")


def test_bad_jsonl_line_is_skipped_and_counted(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text(f'{GOOD_LINE}\n{{"bad\n{GOOD_LINE}\n')
    code, out, err = _cli(["events", "--format", "jsonl", str(path)], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    _one_line_error(err, "warning", f"{path}:2:", "not JSON", "1 skipped record(s)")


def test_bad_first_jsonl_line_is_skipped_too(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text(f'{{"bad\n{GOOD_LINE}\n')
    code, out, err = _cli(["events", str(path)], capsys)
    assert code == 0 and len(out.splitlines()) == 1
    _one_line_error(err, f"{path}:1:")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{"Channel":"x","EventID":1}\n{"bad\n', 1),  # the QA repro: line 1 has no time, line 2 no JSON
        ('{"bad\n{"worse\n', 1),
        ('\n\n{"bad\n{"Channel": "x", "EventID": 1}\n', 3),
    ],
)
def test_jsonl_without_a_good_line_names_the_first_bad_line(text, line, tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text(text)
    code, out, err = _cli(["events", str(path)], capsys)
    assert code == 2 and out == ""
    _one_line_error(err, f"{path}:{line}:")


# -- 4. FIFOs, devices and oversized rules ------------------------------------------------------------


def _subprocess(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,  # the bug was a hang: a timeout here is the failure
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("f.evtx", ["events", "f.evtx"]),
        ("r.sumo", ["lint", "r.sumo"]),
        ("r.sumo", ["detect", "--rule", "r.sumo", "e.jsonl"]),
        ("m", ["verify", "."]),
    ],
)
def test_fifos_are_refused_not_waited_on(name, argv, tmp_path):
    os.mkfifo(tmp_path / ("manifest.json" if name == "m" else name))
    (tmp_path / "e.jsonl").write_text(GOOD_LINE + "\n")
    proc = _subprocess(argv, tmp_path)
    assert proc.returncode == 2
    _one_line_error(proc.stderr, "not a regular file")


def test_device_is_refused(capsys):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    code, _, err = _cli(["events", "/dev/zero"], capsys)
    assert code == 2
    _one_line_error(err, "/dev/zero", "not a regular file")


def test_oversized_rule_is_refused_quickly(tmp_path, capsys):
    big = tmp_path / "big.sumo"
    big.write_text("a" * (MAX_RULE_BYTES + 1))
    code, out, err = _cli(["lint", str(big)], capsys)
    assert code == 2 and out == ""
    _one_line_error(err, str(big), "larger than 4 MiB")


# -- 5. empty Sumo queries; SUMO000 position printed once ----------------------------------------------


@pytest.mark.parametrize("text", ["", "  \n\n", "// only a comment\n/* and a block */\n"])
def test_empty_sumo_query_is_an_error(text, tmp_path, capsys):
    rule = tmp_path / "e.sumo"
    rule.write_text(text)
    code, out, _ = _cli(["lint", str(rule)], capsys)
    assert code == 1 and out.strip() == f"{rule}:1:1: error SUMO000: " + out.split("SUMO000: ", 1)[1].strip()
    assert "empty query" in out
    events = tmp_path / "e.jsonl"
    events.write_text(GOOD_LINE + "\n")
    code, _, err = _cli(["detect", "--rule", str(rule), str(events)], capsys)
    assert code == 2
    _one_line_error(err, str(rule), "empty query")


def test_sumo000_prints_the_position_once(tmp_path, capsys):
    rule = tmp_path / "b.sumo"
    rule.write_text("a | where (")
    code, out, _ = _cli(["lint", str(rule)], capsys)
    assert code == 1 and out.count(str(rule)) == 1 and out.startswith(f"{rule}:1:12: error SUMO000: expected")


# -- 6. history databases -----------------------------------------------------------------------------


def test_evaluate_with_a_non_db_history_fails_before_running(tmp_path, capsys):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"garbage" * 10)
    events = tmp_path / "e.jsonl"
    events.write_text(GOOD_LINE + "\n")
    out_dir = tmp_path / "o"
    code, _, err = _cli(
        ["evaluate", "--no-progress", "--telemetry", str(events), "--history", str(garbage), "--out", str(out_dir)],
        capsys,
    )
    assert code == 2 and not out_dir.exists()
    _one_line_error(err, str(garbage), "not an SQLite database")


def test_history_refuses_foreign_and_empty_files_and_leaves_them_alone(tmp_path, capsys):
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    before = foreign.read_bytes()
    for path, needle in ((foreign, "not an atomiclab history"), (empty, "empty file")):
        code, _, err = _cli(["history", "--history", str(path)], capsys)
        assert code == 2
        _one_line_error(err, str(path), needle)
    assert foreign.read_bytes() == before and empty.read_bytes() == b""


def test_history_reader_on_a_missing_file_says_so_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    code, out, _ = _cli(["history", "--history", str(missing)], capsys)
    assert code == 0 and "no history yet" in out and not missing.exists()
    assert History(missing).runs() == [] and not missing.exists()


def test_history_created_by_atomiclab_and_legacy_ones_are_accepted(tmp_path):
    from test_report_files import sample_run

    from harness.reporting.history import _SCHEMA

    run, _ = sample_run(tmp_path / "r")
    new = History(tmp_path / "h" / "history.sqlite")
    new.check(create=True)
    new.record(run.finished())
    new.check(create=False)
    assert [r.run_id for r in new.runs()] == [run.run_id]
    assert [p.name for p in (tmp_path / "h").iterdir()] == ["history.sqlite"]  # no temp file left
    # written by an older atomiclab (no application_id): exactly atomiclab's tables, accepted
    legacy = History(tmp_path / "legacy.sqlite")
    con = sqlite3.connect(legacy.path)
    con.executescript(_SCHEMA)
    con.close()
    legacy.record(run.finished())
    assert [r.run_id for r in legacy.runs()] == [run.run_id]
