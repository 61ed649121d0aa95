"""Hostile input to `atomiclab emulate`: conflicting flags, bad numbers, unusable --state-dir, SIGTERM.

The state folder receives a 0600 password file and a lab.yaml that are deleted on exit: the command
must never overwrite (and then delete) a user's own lab.yaml there, must never write the password
through a file someone else put in place, and must clean up when stopped by SIGTERM, not only Ctrl-C.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_host import FakeHost

from harness.cli import main
from harness.cli.emulate_cmd import _lab_yaml, serve
from harness.content.labconfig import load_lab_config
from harness.emulated.wsman import ServerConfig
from harness.errors import EmulationError

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--http", "--allow-basic"], "--allow-basic needs HTTPS"),
        (["--delivery-delay", "nan"], "--delivery-delay nan: must be a finite number"),
        (["--delivery-delay", "inf"], "--delivery-delay inf: must be a finite number"),
        (["--delivery-delay", "-1"], "--delivery-delay -1.0: must be a finite number"),
        (["--port", "65536"], "--port 65536"),
        (["--username", "a:b"], "not a valid local account name"),
        (["--no-tool", "nmapp"], "--no-tool nmapp"),
    ],
)
def test_bad_flags_are_one_line_exit_2(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", *argv]) == 2
    assert expected in _one_error_line(capsys)


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert main(["emulate", "--state-dir", str(plain)]) == 2
    assert "plain.txt: not a folder" in _one_error_line(capsys)
    assert plain.read_text() == "x"


def test_state_dir_below_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert main(["emulate", "--state-dir", str(plain / "sub")]) == 2
    assert "cannot create it" in _one_error_line(capsys)


@pytest.mark.parametrize("existing", ["lab.yaml", "password"])
def test_state_dir_files_of_the_user_are_never_overwritten_or_deleted(
    existing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / existing
    mine.write_text("the user's own file\n")
    assert main(["emulate", "--state-dir", str(tmp_path)]) == 2
    assert f"already holds {existing}" in _one_error_line(capsys)
    assert mine.read_text() == "the user's own file\n"


def test_password_is_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    state = tmp_path / "state"
    state.mkdir()
    (state / "password").symlink_to(elsewhere)
    with pytest.raises(EmulationError, match="already holds password"):
        serve(FakeHost(), config=ServerConfig(), state_dir=state, out=io.StringIO(), stop=threading.Event())
    assert not elsewhere.exists()


def test_lab_yaml_survives_paths_that_need_quoting(tmp_path: Path) -> None:
    class _Server:
        port = 5986
        tls = True
        username = "atomiclab"
        ca_cert_path = tmp_path / "it's here: #1" / "ca.pem"

    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(_lab_yaml(_Server()), encoding="utf-8")
    target = load_lab_config(lab_file).targets[0]
    assert target.ca_cert == _Server.ca_cert_path
    assert (target.port, target.scheme, target.emulated) == (5986, "https", True)


def test_sigterm_stops_the_host_and_removes_the_password_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "emulate", "--state-dir", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    seen: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Serving until Ctrl-C"):
                break
        seen["password_file"] = (state / "password").is_file()
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert seen["password_file"]
    assert proc.returncode == 0, err
    assert "EMULATED host stopped" in rest
    assert not (state / "password").exists() and not (state / "lab.yaml").exists()
