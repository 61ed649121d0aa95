"""``atomiclab validate`` and ``atomiclab list`` through ``harness.cli.main``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO / "tests" / "fixtures" / "content" / "upstream"
LINE = re.compile(r"^(?P<file>[^:]+(?::\\)?[^:]*):(?P<line>\d+): (?P<rest>.+)$")


def test_validate_clean_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(UPSTREAM)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ok: 3 atomics file(s) with 10 test(s)")


def test_shipped_content_validates_clean(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code = main(["validate"])
    out, err = capsys.readouterr()
    assert (code, out) == (0, ""), out
    assert "2 atomics file(s) with 10 test(s), 2 expectations file(s)" in err


def _broken_root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "atomics" / "T1").mkdir(parents=True)
    (root / "expectations").mkdir()
    (root / "detections" / "sumo").mkdir(parents=True)
    (root / "atomics" / "T1" / "T1.yaml").write_text(
        "attack_technique: T0001\n"
        "display_name: One\n"
        "atomic_tests:\n"
        "- name: One test\n"
        "  auto_generated_guid: 0a0a0a0a-0000-4000-8000-000000000001\n"
        "  description: d\n"
        "  supported_platforms: [windows]\n"
        "  executor:\n"
        "    name: powershell\n"
        "    command: 'Write-Host #{missing}'\n", encoding="utf-8")
    (root / "expectations" / "T1.yaml").write_text(
        "atomics: atomics/T1/T1.yaml\n"
        "tests:\n"
        "  0a0a0a0a-0000-4000-8000-000000000001:\n"
        "    name: One test\n"
        "    time_budget: 10\n"
        "    detections:\n"
        "      - {rule: detections/sumo/absent.sumo, fires: true}\n", encoding="utf-8")
    (root / "detections" / "sumo" / "empty.sumo").write_text("  \n", encoding="utf-8")
    return root


def test_validate_problems_exit_2_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = _broken_root(tmp_path)
    monkeypatch.chdir(root)
    assert main(["validate"]) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines == [
        "atomics/T1/T1.yaml:10: atomic_tests[0].executor.command: placeholder #{missing} is not a declared "
        "input argument (declare it under input_arguments or fix the name)",
        "detections/sumo/empty.sumo:1: rule file is empty",
        "expectations/T1.yaml:7: tests.0a0a0a0a-0000-4000-8000-000000000001.detections[0].rule: rule file "
        f"detections/sumo/absent.sumo does not exist under {root.resolve()} "
        "(rule paths are relative to the content root)",
    ]
    assert err.startswith("3 problem(s) in 1 atomics file(s)")
    assert "Traceback" not in out + err


def test_validate_missing_path_and_foreign_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "notes.yaml"
    other.write_text("hello: world\n", encoding="utf-8")
    assert main(["validate", str(tmp_path / "nope"), str(other)]) == 2
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        f"{tmp_path / 'nope'}: no such file or folder (check the path)",
        f"{other}:1: neither an atomics file (attack_technique, atomic_tests) nor an expectations file "
        "(atomics, tests)",
    ]


def test_validate_reports_rule_syntax_errors_with_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("harness.detect.loader", reason="the detector loader has not landed")
    rules = tmp_path / "detections" / "sumo"
    rules.mkdir(parents=True)
    bad = rules / "bad.sumo"
    bad.write_text('_sourceCategory=*Windows/Sysmon*\n| eval x = "1"\n', encoding="utf-8")
    upstream = tmp_path / "detections" / "sumo" / "upstream"
    upstream.mkdir()
    (upstream / "published.sumo").write_text('x\n| eval x = "1"\n', encoding="utf-8")  # as published: not loaded
    assert main(["validate", str(tmp_path / "detections")]) == 2
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert line.startswith(f"{bad}:2: rule does not parse: ")
    assert "2 rule file(s) (0 loaded)" in err


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(UPSTREAM), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 10
    first = rows[0]
    assert set(first) == {"technique", "guid", "name", "platforms", "executor", "elevation_required",
                          "source", "line"}
    assert (first["technique"], first["guid"], first["executor"], first["platforms"]) == (
        "T1003.001", "0be2230c-9ab3-4ac2-8826-3199b9a0ebf8", "command_prompt", ["windows"])
    manual = next(r for r in rows if r["executor"] == "manual")
    assert manual["name"] == "Hostname Discovery through the Settings app"


def test_list_table_default_project(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "atomics")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TECHNIQUE", "GUID", "NAME", "PLATFORMS", "EXECUTOR"]
    assert len(lines) == 11
    nmap = next(x for x in lines if "c9c5c712-9e58-4613-85f6-139cddfa1f30" in x)
    assert nmap.startswith("T1046") and nmap.rstrip().endswith("windows    powershell")
    # columns are aligned: every GUID starts at the same offset
    assert len({x.index(x.split()[1]) for x in lines[1:]}) == 1


def test_list_bad_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("attack_technique: T1\n", encoding="utf-8")
    assert main(["list", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"atomiclab: error: {bad}:1: ")


def test_unknown_test_selector_suggests_close_names(capsys) -> None:  # type: ignore[no-untyped-def]
    from harness.cli import main

    assert main(["run", "--tests", "nbtscan", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "did you mean: b6435a56-d12d-4ead-9f3d-66459e6d8817 (NetBIOS discovery with nbtscan)" in err
