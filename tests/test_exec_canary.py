"""Secrets never leak: a whole WinRM and SSH session with canary secrets, then every file and output
is searched for them.

WinRM: the emulated server's random password, handed over only through the environment variable
read by harness.credentials.get_secret. SSH: the user key's passphrase (sshd_fixture.KEY_PASSPHRASE),
also only through the environment. DEBUG logging of every library goes to a file in tmp_path;
execution records are written as JSON like a results file would be.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
from sshd_fixture import KEY_PASSPHRASE, SshdServer
from test_winrm_transport import EmulatedHostServer, ScriptedHost, ServerConfig

from harness.errors import AuthError
from harness.execution.executors import new_run_marker, render_command_line
from harness.execution.lifecycle import execute_atomic
from harness.execution.transports.ssh import SSHConfig, SSHTransport
from harness.execution.transports.winrm import CommandMode, WinRMAuth, WinRMConfig, WinRMTransport
from harness.model import AtomicTest, Dependency, Executor, ExecutorName

pytestmark = pytest.mark.network


def _atomic(executor: ExecutorName, command: str, cleanup: str, prereq: str) -> AtomicTest:
    return AtomicTest(
        technique="T9999", name=f"canary {executor.value}", guid="99999999-0000-0000-0000-000000000001",
        description="d", platforms=("windows", "linux"),
        executor=Executor(executor, command=command, cleanup_command=cleanup),
        dependencies=(Dependency("always met", prereq, prereq),),
    )


def test_no_secret_in_any_output_log_or_file(sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    records = []
    try:
        with EmulatedHostServer(ScriptedHost(), config=ServerConfig(max_operation_timeout_s=5)) as srv:
            winrm_secret = srv.password
            monkeypatch.setenv("ATOMICLAB_CANARY_WINRM", winrm_secret)
            winrm = WinRMTransport(WinRMConfig(host="127.0.0.1", port=srv.port, username=srv.username,
                                               password_env="ATOMICLAB_CANARY_WINRM", auth=WinRMAuth.NTLM,
                                               ca_bundle=srv.ca_cert_path, operation_timeout_s=2,
                                               # the scripted fake answers by command text
                                               command_mode=CommandMode.DIRECT))
            try:
                test = _atomic(ExecutorName.COMMAND_PROMPT, "echo run\n", "echo clean\n", "echo ok")
                records.append(execute_atomic(winrm, test, args={}, marker=new_run_marker(), get_prereqs=True,
                                              timeout=10))
                records.append(winrm.run(render_command_line(ExecutorName.COMMAND_PROMPT, "sleep 5"), timeout=1))
            finally:
                winrm.close()
            # A wrong secret from the environment: the error names the variable, not a value.
            monkeypatch.setenv("ATOMICLAB_CANARY_WINRM", winrm_secret[::-1])
            bad = WinRMTransport(WinRMConfig(host="127.0.0.1", port=srv.port, username=srv.username,
                                             password_env="ATOMICLAB_CANARY_WINRM", auth=WinRMAuth.NTLM,
                                             ca_bundle=srv.ca_cert_path))
            with pytest.raises(AuthError) as info:
                bad.run("\"cmd.exe\" /c echo x", timeout=5)
            records.append(str(info.value))

        monkeypatch.setenv("ATOMICLAB_CANARY_SSH", KEY_PASSPHRASE)
        ssh = SSHTransport(SSHConfig(host=sshd.host, port=sshd.port, username=sshd.username,
                                     known_hosts=sshd.known_hosts, key_file=sshd.user_key,
                                     key_passphrase_env="ATOMICLAB_CANARY_SSH"))
        try:
            test = _atomic(ExecutorName.SH, "echo run; env | grep -c CANARY || true\n", "echo clean\n", "true")
            records.append(execute_atomic(ssh, test, args={}, marker=new_run_marker(), get_prereqs=True,
                                          timeout=10))
            records.append(ssh.run("sleep 5", timeout=0.5))
        finally:
            ssh.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()

    results = tmp_path / "results.json"
    results.write_text(json.dumps([dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in records],
                                  default=str))
    assert records[0].result.stdout == "run\r\n" and records[3].result.stdout.startswith("run\n")
    captured = capsys.readouterr()
    haystacks = {"stdout": captured.out, "stderr": captured.err}
    for dirpath, _dirs, files in os.walk(tmp_path):
        for name in files:
            path = Path(dirpath, name)
            if path != sshd.user_key:  # the encrypted key file itself
                haystacks[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert log_file.stat().st_size > 0 and results.stat().st_size > 0
    for secret in (winrm_secret, KEY_PASSPHRASE):
        leaks = [where for where, text in haystacks.items() if secret in text]
        assert leaks == [], f"secret found in {leaks}"
