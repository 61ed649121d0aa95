"""Write ``lab.yaml`` for ``atomiclab run --lab`` from what the Vagrant lab provisioned.

The provisioning exports each guest's WinRM certificate and SSH host key to ``lab/out/``; this module
points the lab file at them. Secrets are never written: only the NAME of the environment variable
that holds the harness account's password.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import LabError

PASSWORD_ENV = "ATOMICLAB_HARNESS_PASSWORD"  # noqa: S105 - a variable NAME, not a secret
DEFAULT_USER = "atomiclab-runner"

#: Tool paths the provisioning installs (the atomics' input-argument defaults).
LAB_TOOLS = {
    "nmap": r"C:\Program Files (x86)\Nmap\nmap.exe",
    "nbtscan": r"C:\AtomicRedTeam\ExternalPayloads\nbtscan.exe",
}


@dataclass(frozen=True, slots=True)
class LabHost:
    """One provisioned guest: Vagrant machine name, Windows computer name and address."""

    machine: str
    computer_name: str
    address: str


def lab_document(
    hosts: Sequence[LabHost], *, out_dir: Path, lab_file_dir: Path, user: str = DEFAULT_USER
) -> dict[str, object]:
    targets: list[dict[str, object]] = []
    for h in hosts:
        cert = out_dir / f"{h.computer_name}-winrm.pem"
        known = out_dir / f"{h.computer_name}-known_hosts"
        targets.append(
            {
                "name": h.machine,
                "transport": "winrm",
                "address": h.address,
                "port": 5986,
                "auth": "ntlm",
                "username": user,
                "password_env": PASSWORD_ENV,
                "ca_cert": os.path.relpath(cert, lab_file_dir),
                "tools": dict(LAB_TOOLS),
                "vagrant_machine": h.machine,
            }
        )
        targets.append(
            {
                "name": f"{h.machine}-ssh",
                "transport": "ssh",
                "address": h.address,
                "port": 22,
                "platform": "windows",
                "auth": "password",
                "username": user,
                "password_env": PASSWORD_ENV,
                "known_hosts": os.path.relpath(known, lab_file_dir),
                "tools": dict(LAB_TOOLS),
                "vagrant_machine": h.machine,
            }
        )
    return {"name": "atomiclab-vagrant", "targets": targets}


def check_lab_file_path(path: Path) -> None:
    """LabError unless ``path`` can receive the lab file: checked before ``vagrant up`` so a wrong
    ``--lab-file`` fails in a second, not after provisioning."""
    if path.is_dir():
        raise LabError(f"{path}: is a directory", hint="give --lab-file a file name such as lab.yaml")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"{path}: cannot create its folder: {exc.strerror or exc}",
                       hint="choose another --lab-file") from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise LabError(f"{path}: {path.parent} is not writable", hint="choose another --lab-file")


def write_lab_file(path: Path, hosts: Sequence[LabHost], *, out_dir: Path, user: str = DEFAULT_USER) -> Path:
    """Write the lab file atomically (temp file + rename) and return its path; LabError if it cannot."""
    check_lab_file_path(path)
    text = "# Written by `atomiclab lab up`. Passwords come from the environment variable named below.\n"
    tmp: str | None = None
    try:
        doc = lab_document(hosts, out_dir=out_dir, lab_file_dir=path.parent.resolve(), user=user)
        text += yaml.safe_dump(doc, sort_keys=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lab-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise LabError(f"{path}: cannot write the lab file: {exc.strerror or exc}",
                       hint="choose another --lab-file") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


#: Name of the one-shot password file in the synced ``lab/out/`` folder (guest: C:\atomiclab-lab\out).
PASSWORD_DROP = ".harness-password"  # noqa: S105 - a file name, not a secret


@contextlib.contextmanager
def harness_password_drop(out_dir: Path, password: str) -> Iterator[Path]:
    """Hand the harness account's password to the provisioning without any command line or log.

    Vagrant's shell provisioner turns ``env:`` into script text that PowerShell script block logging
    records, so the password travels as a 0600 file in the synced folder instead; the guest's account
    step deletes it after reading, and this removes it on the host whatever happens.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PASSWORD_DROP
    path.unlink(missing_ok=True)  # a stale drop from an interrupted run
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(password)
        yield path
    finally:
        path.unlink(missing_ok=True)
