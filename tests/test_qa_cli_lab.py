"""Hostile input to `atomiclab lab ...`: refused before vagrant runs, one line, exit 2.

`lab up` provisions for an hour; a --lab-file that cannot be written must fail before that, not
with a traceback afterwards. Snapshot names are passed to vagrant as arguments and must never be
readable as options.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import LabError
from harness.lab.labfile import LabHost, write_lab_file
from harness.lab.vagrant import Completed, Vagrant, check_snapshot_name, subprocess_runner


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_lab_up_refuses_a_directory_as_lab_file_before_provisioning(
    fake_vagrant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a-folder"
    target.mkdir()
    assert main(["lab", "up", "--lab-file", str(target)]) == 2
    assert "a-folder: is a directory" in _one_error_line(capsys)
    assert not fake_vagrant.exists(), "vagrant ran although the lab file could never be written"


def test_lab_up_refuses_a_lab_file_below_a_regular_file(
    fake_vagrant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "plain.txt"
    blocker.write_text("x")
    assert main(["lab", "up", "--lab-file", str(blocker / "lab.yaml")]) == 2
    assert "cannot create its folder" in _one_error_line(capsys)
    assert not fake_vagrant.exists()


def test_lab_up_creates_missing_folders_of_the_lab_file(fake_vagrant: Path, tmp_path: Path) -> None:
    lab_file = tmp_path / "new" / "deeper" / "lab.yaml"
    assert main(["lab", "up", "--lab-file", str(lab_file)]) == 0
    assert lab_file.is_file() and "password_env: ATOMICLAB_HARNESS_PASSWORD" in lab_file.read_text()


@pytest.mark.parametrize("name", ["--help", "-f", "", "../baseline", "a b", "x" * 65])
@pytest.mark.parametrize("action", ["snapshot", "revert"])
def test_snapshot_names_that_vagrant_could_misread_are_refused(
    action: str, name: str, fake_vagrant: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", action, f"--name={name}"]) == 2
    assert "snapshot name" in _one_error_line(capsys)
    assert not fake_vagrant.exists()


def test_the_vagrant_wrapper_itself_validates_snapshot_names(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Completed:
        calls.append(list(argv))
        return Completed(0, "", "")

    (tmp_path / "Vagrantfile").write_text("")
    v = Vagrant(tmp_path, executable="sh", runner=runner)
    with pytest.raises(LabError, match="snapshot name"):
        v.snapshot_restore("win-server", "--no-provision")
    assert calls == []
    v.snapshot_restore("win-server", "baseline-2024.01_a")
    assert calls[0][1:] == ["snapshot", "restore", "--no-provision", "win-server", "baseline-2024.01_a"]
    assert check_snapshot_name("baseline") == "baseline"


def test_write_lab_file_refuses_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "lab.yaml"
    target.mkdir()
    with pytest.raises(LabError, match="is a directory"):
        write_lab_file(target, [LabHost("win-server", "WIN-SERVER", "192.168.56.10")], out_dir=tmp_path / "out")


def test_write_lab_file_failure_is_a_lab_error_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("harness.lab.labfile.os.replace", refuse)
    with pytest.raises(LabError, match="cannot write the lab file: Permission denied"):
        write_lab_file(tmp_path / "lab.yaml", [LabHost("win-server", "WIN-SERVER", "192.168.56.10")],
                       out_dir=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_vagrant_binary_that_cannot_execute_is_a_lab_error(tmp_path: Path) -> None:
    not_executable = tmp_path / "vagrant"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o600)
    with pytest.raises(LabError, match="cannot run"):
        subprocess_runner([str(not_executable), "status"], tmp_path, dict(os.environ))
