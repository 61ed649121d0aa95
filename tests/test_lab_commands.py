"""`atomiclab lab ...` against a fake `vagrant` on PATH that records its arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.errors import LabError
from harness.lab.vagrant import Provider, Vagrant

ROOT = Path(__file__).resolve().parents[1]


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_up_provisions_snapshots_and_writes_lab_file(fake_vagrant: Path, tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yaml"
    assert main(["lab", "up", "--provider", "virtualbox", "--lab-file", str(lab_file)]) == 0
    assert calls(fake_vagrant) == [
        "up --provider=virtualbox",
        "provision --provision-with=harness-account",
        "provision --provision-with=winrm-lockdown",
        "status --machine-readable",
        "snapshot save --force win-server baseline",
    ]
    doc = yaml.safe_load(lab_file.read_text())
    winrm = doc["targets"][0]
    assert winrm["transport"] == "winrm" and winrm["port"] == 5986 and winrm["address"] == "192.168.56.10"
    assert winrm["password_env"] == "ATOMICLAB_HARNESS_PASSWORD" and "password" not in winrm
    assert winrm["ca_cert"].endswith("WIN-SERVER-winrm.pem")
    assert doc["targets"][1]["known_hosts"].endswith("WIN-SERVER-known_hosts")
    # issue 16: the provisioning saw the password as a 0600 file during the account step only (not
    # during the whole `vagrant up`, as before), never in argv
    assert Path(f"{fake_vagrant}.pw").read_text().splitlines() == [
        "provision --provision-with=harness-account", "600", "canary-Lab-Pw-7"]
    assert not (Path.cwd() / "lab" / "out" / ".harness-password").exists()
    assert "canary-Lab-Pw-7" not in fake_vagrant.read_text() + lab_file.read_text()
    from harness.content.labconfig import load_lab_config

    assert [t.name for t in load_lab_config(lab_file).targets] == ["win-server", "win-server-ssh"]


def test_status_snapshot_revert_down(fake_vagrant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status"]) == 0
    assert "win-server" in capsys.readouterr().out
    assert main(["lab", "snapshot", "--name", "clean"]) == 0
    assert main(["lab", "revert"]) == 0
    assert main(["lab", "down"]) == 0
    assert main(["lab", "down", "--destroy"]) == 0
    assert calls(fake_vagrant) == [
        "status --machine-readable",
        "status --machine-readable",
        "snapshot save --force win-server clean",
        "status --machine-readable",
        "snapshot restore --no-provision win-server baseline",
        "halt",
        "destroy --force",
    ]


def test_up_needs_the_harness_password(fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ATOMICLAB_HARNESS_PASSWORD")
    assert main(["lab", "up"]) == 2
    assert "ATOMICLAB_HARNESS_PASSWORD" in capsys.readouterr().err
    assert calls(fake_vagrant) == []


def test_failed_up_still_removes_the_password_drop(fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VAGRANT_FAIL_PROVISION", "1")
    assert main(["lab", "up"]) == 2
    assert Path(f"{fake_vagrant}.pw").exists()
    assert not (Path.cwd() / "lab" / "out" / ".harness-password").exists()
    assert calls(fake_vagrant)[-1] == "provision --provision-with=harness-account"  # no lockdown, no snapshot


def test_a_failed_vagrant_up_never_writes_the_password(fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "1")
    assert main(["lab", "up"]) == 2
    assert not Path(f"{fake_vagrant}.pw").exists()
    assert not (Path.cwd() / "lab" / "out" / ".harness-password").exists()


def test_vagrant_failure_is_one_line(fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "1")
    assert main(["lab", "up"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be found" in err[0] and "Traceback" not in err[0]


def test_missing_vagrant_and_missing_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert main(["lab", "status"]) == 2
    assert "vagrant is not installed" in capsys.readouterr().err
    with pytest.raises(LabError, match="libvirt is not available: virsh not found"):
        Vagrant(ROOT, env={"PATH": str(tmp_path)}).check_provider(Provider.LIBVIRT)
