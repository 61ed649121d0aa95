"""`atomiclab run --lab ... --revert-each`: the baseline snapshot is restored before every test, the
runner reconnects and re-syncs the clock. The lab target is an emulated host reached through a real
lab.yaml; `vagrant` is a fake on PATH that records its arguments."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from emulated_lab import emulated_lab

from harness.cli import main
from harness.emulated.host import EmulatedHost

NETSTAT = "d7b2043f-3075-47e3-87ca-8ca224d06bec"
SWEEP = "828eed2c-1f5c-4467-83a2-6813b09575d5"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "vagrant.log"
    fake = bindir / "vagrant"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n[ -n "$FAKE_VAGRANT_FAIL" ] && {{ echo "VM not found" >&2; exit 1; }}\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    host = EmulatedHost()
    with emulated_lab(tmp_path, monkeypatch, extra="    vagrant_machine: win-server\n", host=host) as (lab_file, _):
        yield lab_file, log, host


def test_each_test_starts_from_the_restored_baseline(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab_file, log, host = lab
    out = tmp_path / "out"
    code = main(["run", "--lab", str(lab_file), "--revert-each", "--no-progress", "--tests", NETSTAT, SWEEP,
                 "--out", str(out), "--history", str(tmp_path / "h.sqlite")])
    assert code == 0
    assert log.read_text().splitlines() == ["snapshot restore --no-provision win-server baseline"] * 2
    # after each reconnect the guest clock was re-synced (seen as w32tm processes on the host)
    xml = "".join(host.eventlog.query("Microsoft-Windows-Sysmon/Operational"))
    # (started by the launcher: .NET quotes the file name, "w32tm.exe" /resync /force)
    assert len(re.findall(r'w32tm\.exe"? /resync /force', xml)) >= 2
    results = json.loads((out / "results.json").read_text())
    assert [t["status"] for t in results["tests"]] == ["passed", "passed"]


def test_a_failed_restore_stops_the_host_with_an_error(lab, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lab_file, log, _ = lab
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "1")
    out = tmp_path / "out"
    assert main(["run", "--lab", str(lab_file), "--revert-each", "--no-progress", "--tests", NETSTAT, SWEEP,
                 "--out", str(out), "--history", str(tmp_path / "h.sqlite")]) == 1
    tests = json.loads((out / "results.json").read_text())["tests"]
    assert len(tests) == 1 and tests[0]["status"] == "error"
    assert "revert to baseline failed" in tests[0]["reason"] and "VM not found" in tests[0]["reason"]
    assert log.read_text().splitlines() == ["snapshot restore --no-provision win-server baseline"]


def test_revert_each_needs_a_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--revert-each", "--no-progress"]) == 2
    assert "--revert-each" in capsys.readouterr().err
