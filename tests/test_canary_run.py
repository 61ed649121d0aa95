"""The lab password never leaks from a whole `atomiclab run --lab`: the target is an in-process emulated
host whose password is a canary, handed over only through the password environment variable the
lab.yaml names. Afterwards every file under the run's folder (reports, evidence, transcripts,
manifest, lab.yaml, history database), captured stdout/stderr and DEBUG log records are searched for
the canary, as text and in the encodings a leak could take (UTF-16LE, base64)."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import types
from pathlib import Path

import pytest
from emulated_lab import emulated_lab

from harness.cli import main
from harness.emulated import wsman
from harness.emulated.wsman import PASSWORD_ENV

pytestmark = pytest.mark.network

CANARY_TAG = "CANARYpw"


def _forms(canary: str) -> list[bytes]:
    return [canary.encode(), canary.encode("utf-16-le"), base64.b64encode(canary.encode())]


def test_a_whole_lab_run_never_writes_or_prints_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The emulated host's per-start password becomes a recognisable canary.
    tag = f"{CANARY_TAG}{secrets.token_hex(8)}"
    monkeypatch.setattr(wsman, "secrets", types.SimpleNamespace(token_urlsafe=lambda n=None: tag))
    with emulated_lab(tmp_path, monkeypatch, name="win-canary") as (lab, srv):
        canary = srv.password
        assert tag in canary
        out = tmp_path / "out"
        history = tmp_path / "history.sqlite"
        code = main(["run", "--lab", str(lab), "--no-progress", "--out", str(out), "--history", str(history)])
    stdout, stderr = capfd.readouterr()

    # the run really happened, over the authenticated transport, with every report written
    data = json.loads((out / "results.json").read_text())
    assert code == 0, [(t["name"], t["reason"]) for t in data["tests"] if t["status"] != "passed"]
    assert len(data["tests"]) > 5 and all(t["steps"] for t in data["tests"])
    assert (out / "evidence" / "events.jsonl").stat().st_size > 0
    assert list((out / "evidence" / "transcripts").rglob("*.txt"))
    assert history.is_file()

    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert {out / "results.json", out / "report.html", out / "manifest.json", history} <= set(files)
    leaks = [str(f.relative_to(tmp_path)) for f in files for form in _forms(canary) if form in f.read_bytes()]
    assert leaks == []
    for name, text in (("stdout", stdout), ("stderr", stderr), ("log", caplog.text)):
        assert tag not in text, f"the password appears in {name}"
        assert base64.b64encode(canary.encode()).decode() not in text, name
    # the lab file names the variable, never the value
    assert PASSWORD_ENV in lab.read_text()
