"""Issue 16: a run stopped by SIGTERM (a CI cancel) is recorded as interrupted and leaves no
secrets behind; a SIGKILLed run is still in the history; a read-only --history fails first.

Reproductions (failed before the fix): SIGTERM killed `run` on the spot, leaving the emulated
host's NTLM password file and TLS key in the temp folder and no history row; a SIGKILLed run never
appeared in history; a read-only history database was noticed only after every test had run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.reporting.history import History

REPO = Path(__file__).resolve().parents[1]
NMAP = "c9c5c712-9e58-4613-85f6-139cddfa1f30"
NETSTAT = "d7b2043f-3075-47e3-87ca-8ca224d06bec"


def _spawn(out: Path, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    temp = tmp / "tmp"
    temp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(temp)}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--no-progress", "--out", str(out), "--history",
         str(tmp / "h.sqlite"), *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(predicate, proc: subprocess.Popen[bytes], what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before {what}: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    pytest.fail(f"no {what} within 120 s")


def _tests_done(out: Path, n: int) -> bool:
    try:
        return len(json.loads((out / "results.json").read_text())["tests"]) >= n
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return False


@pytest.mark.slow
@pytest.mark.network
def test_sigterm_interrupts_cleanly_and_is_recorded_as_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _spawn(out, tmp_path, "--tests", NMAP, NETSTAT, "--emulate-setting", "delivery_delay_s=3")
    secrets_dirs = lambda: list((tmp_path / "tmp").glob("atomiclab-winrm-*"))  # noqa: E731
    try:
        _wait_for(lambda: bool(secrets_dirs()), proc, "the emulated host started")
        assert any((d / "ntlm-users").is_file() for d in secrets_dirs())
        _wait_for(lambda: _tests_done(out, 1), proc, "a finished test")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # a second one must not cut the cleanup short
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert rc == 130, output[-2000:]
    assert "Traceback" not in output
    assert secrets_dirs() == [], "the emulated host's password file / TLS key were left behind"
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] and not data["complete"]
    (run,) = History(tmp_path / "h.sqlite").runs(5)
    assert not run.complete and run.ended is not None
    assert main(["history", "--history", str(tmp_path / "h.sqlite")]) == 0


@pytest.mark.slow
@pytest.mark.network
def test_a_sigkilled_run_stays_in_the_history_with_no_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    proc = _spawn(out, tmp_path, "--tests", NMAP, NETSTAT, "--emulate-setting", "delivery_delay_s=3")
    try:
        _wait_for(lambda: _tests_done(out, 1), proc, "a finished test")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (run,) = History(tmp_path / "h.sqlite").runs(5)
    assert not run.complete and run.ended is None
    assert main(["history", "--history", str(tmp_path / "h.sqlite")]) == 0
    assert "no end (killed, or running)" in capsys.readouterr().out


def _immutable(path: Path) -> None:
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (root ignores file modes; an immutable file is read-only)")


def _mutable(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_history_fails_before_any_test_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"EventID": 1, "Channel": "Security", "@timestamp": 1700000000}) + "\n")
    folder = tmp_path / "hist"
    folder.mkdir()
    db = folder / "h.sqlite"
    if what == "file":
        main(["evaluate", "--telemetry", str(events), "--out", str(tmp_path / "first"), "--history", str(db),
              "--no-progress"])
        assert db.is_file()
    locked = db if what == "file" else folder
    _immutable(locked)
    try:
        capsys.readouterr()
        out = tmp_path / "second"
        code = main(["run", "--tests", NMAP, "--out", str(out), "--history", str(db), "--no-progress"])
        err = capsys.readouterr().err
    finally:
        _mutable(locked)
    assert code == 2 and "read-only" in err and err.count("\n") == 1
    assert not out.exists()  # refused before a report folder, a host or a test
