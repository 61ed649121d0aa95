"""Hostile input to `atomiclab list | validate | run --lab | lab check --lab`: one clear line, exit 2.

Each case is a file or folder a user can plausibly point the CLI at by mistake (a wrong path, an
empty folder, a FIFO, binary data, a multi-megabyte file, broken YAML, a password written inline).
The contract: exit code 2, exactly one line on stderr naming the file, no traceback, no hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.content.yamldoc import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "missing": tmp_path / "missing.yaml",
        "empty_dir": tmp_path / "empty_dir",
        "binary": tmp_path / "binary.yaml",
        "broken": tmp_path / "broken.yaml",
        "list": tmp_path / "list.yaml",
        "huge": tmp_path / "huge.yaml",
    }
    files["empty_dir"].mkdir()
    files["binary"].write_bytes(bytes(range(256)) * 8)
    files["broken"].write_text("a: [1, 2\nb: : :\n", encoding="utf-8")
    files["list"].write_text("- 1\n- 2\n", encoding="utf-8")
    files["huge"].write_bytes(b"a: " + b"A" * (MAX_FILE_BYTES + 10) + b"\n")
    return files


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "file not found"),
        ("empty_dir", "folder holds no .yaml or .yml files"),
        ("binary", "not UTF-8"),
        ("broken", "broken.yaml:2: invalid YAML"),
        ("list", "list.yaml:1: <root>: expected object"),
        ("huge", "too large for a content file"),
    ],
)
def test_list_bad_input_is_one_line_exit_2(
    case: str, expected: str, bad_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", str(bad_files[case])]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("atomiclab: error: ") and expected in line
    assert bad_files[case].name in line


def test_validate_empty_folder_is_a_problem_not_ok(bad_files: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An empty folder used to validate as `ok: 0 atomics file(s)`, exit 0: a wrong path looked clean."""
    assert main(["validate", str(bad_files["empty_dir"])]) == 2
    captured = capsys.readouterr()
    assert "folder holds no content files" in captured.out and "empty_dir" in captured.out
    assert captured.err.startswith("1 problem(s)")


def test_validate_missing_path_says_what_to_do(bad_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(bad_files["missing"])]) == 2
    out = capsys.readouterr().out
    assert "missing.yaml: no such file or folder (check the path)" in out


def test_run_with_an_empty_atomics_folder_names_it(bad_files: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-progress", "--atomics", str(bad_files["empty_dir"])]) == 2
    line = _one_error_line(capsys)
    assert "empty_dir: folder holds no .yaml or .yml files" in line


@pytest.mark.parametrize("case", ["missing", "empty_dir", "binary", "broken", "list", "huge"])
def test_lab_file_bad_input_is_one_line_exit_2(
    case: str, bad_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "check", "--lab", str(bad_files[case])]) == 2
    line = _one_error_line(capsys)
    assert bad_files[case].name in line


def test_lab_file_with_an_inline_password_never_echoes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "targets:\n"
        "  - name: w1\n"
        "    transport: winrm\n"
        "    address: 127.0.0.1\n"
        "    username: atomiclab\n"
        "    password: Sup3rS3cretValue!\n",
        encoding="utf-8",
    )
    assert main(["lab", "check", "--lab", str(lab)]) == 2
    line = _one_error_line(capsys)
    assert "lab.yaml:6: targets[0].password: passwords are never stored in lab.yaml" in line
    assert "Sup3rS3cretValue" not in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("argv", [["list"], ["validate"], ["lab", "check", "--lab"]])
def test_a_fifo_is_refused_instead_of_blocking_forever(argv: list[str], tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *argv, str(fifo)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pipe.yaml: is not a regular file" in (proc.stderr + proc.stdout)
