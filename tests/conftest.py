"""Shared fixtures: the public recordings, an emulated lab, a fake `vagrant`, a real sshd."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from emulated_lab import emulated_lab
from sshd_fixture import sshd  # noqa: F401  (the real OpenSSH server fixture, for every test module)

REPO = Path(__file__).resolve().parents[1]
PUBLIC = REPO / ".." / "shared" / "telemetry" / "public"

#: `vagrant` on PATH for `atomiclab lab ...`: logs its arguments to $FAKE_VAGRANT_LOG, reports
#: win-server running, and during `up` and `provision` logs the arguments, mode and content of the
#: password drop (when present) to $FAKE_VAGRANT_LOG.pw (`up` failing as a missing provider would
#: with $FAKE_VAGRANT_FAIL set, `provision` failing with $FAKE_VAGRANT_FAIL_PROVISION).
FAKE_VAGRANT = """#!/bin/sh
echo "$@" >> "$FAKE_VAGRANT_LOG"
case "$1" in
  status) printf '1700000000,win-server,provider-name,virtualbox\\n1700000000,win-server,state,running\\n1700000000,,ui,info,done\\n' ;;
  up|provision) [ -f lab/out/.harness-password ] && { echo "$*"; stat -c %a lab/out/.harness-password; cat lab/out/.harness-password; echo; } >> "$FAKE_VAGRANT_LOG.pw"
      [ "$1" = up ] && [ -n "$FAKE_VAGRANT_FAIL" ] && { echo "The provider 'virtualbox' could not be found, but was requested" >&2; exit 1; }
      [ "$1" = provision ] && [ -n "$FAKE_VAGRANT_FAIL_PROVISION" ] && { echo "The guest's account step failed" >&2; exit 1; } ;;
esac
exit 0
"""
#: The harness password `lab up` hands to the provisioning (a canary: it must never be written).
LAB_PASSWORD = "canary-Lab-Pw-7"


@pytest.fixture
def public_telemetry() -> Path:
    """../shared/telemetry/public, or skip when this checkout has no shared recordings beside it."""
    if not PUBLIC.is_dir():
        pytest.skip(f"public recordings not found at {PUBLIC} (they live beside the project, not in it)")
    return PUBLIC


@pytest.fixture
def emulated_lab_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A lab.yaml whose one target (win-server) is an in-process emulated host."""
    with emulated_lab(tmp_path, monkeypatch) as (lab_file, _):
        yield lab_file


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FAKE_VAGRANT (and a VBoxManage) alone on PATH, run in a checkout of our Vagrantfile (``lab up``
    writes lab/out/ beside it), LAB_PASSWORD exported; returns the argument log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("vagrant", FAKE_VAGRANT), ("VBoxManage", "#!/bin/sh\nexit 0\n")):
        exe = bindir / name
        exe.write_text(text)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "vagrant.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_VAGRANT_LOG", str(log))
    monkeypatch.setenv("ATOMICLAB_HARNESS_PASSWORD", LAB_PASSWORD)
    workdir = tmp_path / "lab-checkout"
    workdir.mkdir()
    (workdir / "Vagrantfile").write_text((REPO / "Vagrantfile").read_text())
    monkeypatch.chdir(workdir)
    return log
