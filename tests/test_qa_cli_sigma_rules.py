"""Hostile Sigma rule files given to `atomiclab detect --rule`: refused fast with one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.detect.sigma import MAX_RULE_BYTES, SigmaDetector
from harness.errors import DetectionError, RuleSyntaxError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_events(tmp_path: Path) -> Path:
    path = tmp_path / "none.jsonl"
    path.write_text("")
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_oversized_rule_is_refused_without_parsing(tmp_path: Path, no_events: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rule = tmp_path / "huge.yml"
    rule.write_bytes(b"title: " + b"A" * (MAX_RULE_BYTES + 1) + b"\n")
    with pytest.raises(DetectionError, match="larger than"):
        SigmaDetector.from_file(rule)
    assert main(["detect", "--rule", str(rule), str(no_events)]) == 2
    assert "huge.yml: larger than" in _one_error_line(capsys)


def test_alias_bomb_rule_is_refused(tmp_path: Path, no_events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["title: bomb", "logsource: {product: windows, category: process_creation}",
             'a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines += ["detection:", "  sel:", "    CommandLine|contains: *a8", "  condition: sel"]
    rule = tmp_path / "bomb.yml"
    rule.write_text("\n".join(lines) + "\n")
    assert main(["detect", "--rule", str(rule), str(no_events)]) == 2
    assert "bomb.yml" in _one_error_line(capsys)


def test_non_utf8_rule_names_the_file(tmp_path: Path) -> None:
    rule = tmp_path / "latin1.yml"
    rule.write_bytes("title: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RuleSyntaxError, match="not UTF-8"):
        SigmaDetector.from_file(rule)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_rule_is_refused_instead_of_blocking(tmp_path: Path, no_events: Path) -> None:
    fifo = tmp_path / "pipe.yml"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "detect", "--rule", str(fifo), str(no_events)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"{fifo}: not a regular file (point --rule at a Sigma .yml file)"]
