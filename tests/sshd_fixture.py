"""A real OpenSSH server on 127.0.0.1 for the SSH transport tests.

``sshd`` (a pytest fixture) generates a host key, a passphrase-protected user key and a known_hosts
file in ``tmp_path``, writes an sshd_config (key auth only, ``AuthorizedKeysFile`` in tmp,
``PermitRootLogin yes``/``StrictModes no``/``UsePAM no`` so it runs as the current user), starts
``/usr/sbin/sshd -D -e -f CONFIG -p PORT`` and stops it (by its pid) afterwards. Tests skip with a
reason when sshd or ssh-keygen is absent. tests/conftest.py registers it for every test module.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
#: The user key's passphrase is a canary: it must never show up in any output or file.
KEY_PASSPHRASE = "canary-ssh-9f3c2e-passphrase"


@dataclass(frozen=True)
class SshdServer:
    host: str
    port: int
    username: str
    user_key: Path
    known_hosts: Path
    directory: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True,
                   capture_output=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdServer]:
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server (/usr/sbin/sshd) or ssh-keygen not installed; apt-get install openssh-server")
    d = tmp_path / "sshd"
    d.mkdir()
    _keygen(d / "host_key")
    _keygen(d / "user_key", KEY_PASSPHRASE)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    host_pub = (d / "host_key.pub").read_text().split()
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = d / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin yes\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "Subsystem sftp internal-sftp\nMaxSessions 20\nLogLevel ERROR\n"
    )
    # sshd refuses to start without its privilege-separation directory (normally made by systemd).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = d / "sshd.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start: {log.read_text(errors='replace')[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                time.sleep(0.05)
        yield SshdServer("127.0.0.1", port, getpass.getuser(), d / "user_key", known_hosts, d, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()
