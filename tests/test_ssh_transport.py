"""SSH transport end to end against a real OpenSSH server on 127.0.0.1 (see sshd_fixture)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from sshd_fixture import KEY_PASSPHRASE, SshdServer

from harness.content.atomics import load_atomic_file
from harness.errors import AuthError, ConnectError, ContentError, CredentialError
from harness.execution.executors import new_run_marker, render_command_line
from harness.execution.lifecycle import ExecutionStatus, execute_atomic
from harness.execution.transport import Transport
from harness.execution.transports.ssh import SSHConfig, SSHTransport
from harness.model import ExecutorName

pytestmark = pytest.mark.network

SH_ATOMIC = """\
attack_technique: T9999
display_name: atomiclab SSH fixture
atomic_tests:
- name: Write a marker file with a prerequisite
  auto_generated_guid: 0b6c8f3e-5d4a-4c1b-9f2e-7a6d5c4b3a21
  description: Needs a tool directory (created by get_prereq), writes a file, cleanup removes both.
  supported_platforms:
  - linux
  input_arguments:
    workdir:
      description: Working directory
      type: path
      default: {workdir}
    message:
      description: Text written
      type: string
      default: hello from atomic
  dependency_executor_name: sh
  dependencies:
  - description: "tool directory #{{workdir}}/tools must exist"
    prereq_command: |
      test -d "#{{workdir}}/tools"
    get_prereq_command: |
      mkdir -p "#{{workdir}}/tools"
  executor:
    name: sh
    elevation_required: false
    command: |
      printf '%s' "#{{message}}" > "#{{workdir}}/out.txt"
      cat "#{{workdir}}/out.txt"
      sleep #{{sleep}}
    cleanup_command: |
      rm -rf "#{{workdir}}/out.txt" "#{{workdir}}/tools"
      touch "#{{workdir}}/cleaned"
"""


def _secrets(env: dict[str, str]):  # type: ignore[no-untyped-def]
    def lookup(name: str) -> str:
        if name not in env:
            raise CredentialError(f"secret {name} is not set")
        return env[name]

    return lookup


def _transport(server: SshdServer, **over: object) -> SSHTransport:
    fields: dict[str, object] = dict(
        host=server.host, port=server.port, username=server.username, known_hosts=server.known_hosts,
        key_file=server.user_key, key_passphrase_env="ATOMICLAB_TEST_KEY_PASSPHRASE", connect_timeout=5.0,
    )
    fields.update(over)
    return SSHTransport(SSHConfig(**fields),  # type: ignore[arg-type]
                        secrets=_secrets({"ATOMICLAB_TEST_KEY_PASSPHRASE": KEY_PASSPHRASE}))


def _sh_atomic(tmp_path: Path):  # type: ignore[no-untyped-def]
    workdir = tmp_path / "work"
    workdir.mkdir()
    text = SH_ATOMIC.format(workdir=workdir).replace(
        "      default: hello from atomic\n",
        "      default: hello from atomic\n    sleep:\n      description: s\n      type: integer\n      default: 0\n",
    )
    path = tmp_path / "T9999.yaml"
    path.write_text(text)
    return load_atomic_file(path).tests[0], workdir


def test_runs_commands_over_one_connection_and_reports_exit_codes(sshd: SshdServer) -> None:
    transport = _transport(sshd)
    assert isinstance(transport, Transport)
    try:
        line = render_command_line(ExecutorName.SH, "echo out; echo err >&2; exit 3", marker=new_run_marker())
        result = transport.run(line, timeout=20)
        assert (result.exit_code, result.stdout, result.stderr, result.timed_out) == (3, "out\n", "err\n", False)
        assert result.command == line and result.ended >= result.started
        big = transport.run("bash -c 'head -c 300000 /dev/zero | tr \"\\0\" x'", timeout=20)
        assert big.exit_code == 0 and big.stdout == "x" * 300000
    finally:
        transport.close()
        transport.close()


def test_put_file_over_sftp(sshd: SshdServer, tmp_path: Path) -> None:
    local = tmp_path / "payload.txt"
    local.write_text("payload")
    transport = _transport(sshd)
    try:
        transport.put_file(local, str(tmp_path / "copied.txt"))
    finally:
        transport.close()
    assert (tmp_path / "copied.txt").read_text() == "payload"


def test_deadline_kills_the_remote_process_tree(sshd: SshdServer, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    transport = _transport(sshd)
    try:
        # The child runs in the background inside the test's own process group.
        line = render_command_line(ExecutorName.SH, f"echo started; sleep 300 & echo $! > {pidfile}; wait",
                                   marker=new_run_marker())
        # generous: under a loaded machine the shell must get to write the pid file first
        result = transport.run(line, timeout=5.0)
    finally:
        transport.close()
    assert result.timed_out and result.exit_code is None
    assert result.stdout == "started\n" and "atomiclab_pgid" not in result.stderr
    child = int(pidfile.read_text())
    for _ in range(400):  # the kill is asynchronous: wait (up to 20 s) for the kernel to reap it
        if not Path(f"/proc/{child}").exists() or "State:\tZ" in Path(f"/proc/{child}/status").read_text():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"background child {child} survived the deadline")


def test_sh_atomic_prereqs_skip_then_get_execute_and_clean_up(sshd: SshdServer, tmp_path: Path) -> None:
    test, workdir = _sh_atomic(tmp_path)
    transport = _transport(sshd)
    try:
        skipped = execute_atomic(transport, test, args={}, marker=new_run_marker(), get_prereqs=False, timeout=20)
        assert skipped.status is ExecutionStatus.SKIPPED_PREREQ
        assert skipped.reason is not None and f"tool directory {workdir}/tools must exist" in skipped.reason
        assert skipped.result is None and not (workdir / "cleaned").exists()

        marker = new_run_marker()
        record = execute_atomic(transport, test, args={"message": "it's $(id) ok"}, marker=marker,
                                get_prereqs=True, timeout=20, platform="linux")
    finally:
        transport.close()
    assert record.status is ExecutionStatus.EXECUTED, record
    check = record.prereqs[0]
    assert check.check.exit_code == 1 and check.get is not None and check.recheck is not None and check.met
    assert record.result is not None and record.result.exit_code == 0
    assert record.result.stdout == "it's $(id) ok"
    assert record.command_line is not None and marker in record.command_line
    assert record.cleanup is not None and record.cleanup.exit_code == 0 and record.cleanup_error is None
    assert (workdir / "cleaned").exists() and not (workdir / "tools").exists()


def test_deadline_overrun_still_runs_cleanup(sshd: SshdServer, tmp_path: Path) -> None:
    test, workdir = _sh_atomic(tmp_path)
    transport = _transport(sshd)
    try:
        record = execute_atomic(transport, test, args={"sleep": "60"}, marker=new_run_marker(), get_prereqs=True,
                                timeout=2)
    finally:
        transport.close()
    assert record.status is ExecutionStatus.EXECUTED
    assert record.result is not None and record.result.timed_out and record.result.stdout == "hello from atomic"
    assert record.cleanup is not None and record.cleanup.exit_code == 0
    assert (workdir / "cleaned").exists()


def test_unknown_platform_and_bad_override_run_nothing(sshd: SshdServer, tmp_path: Path) -> None:
    test, workdir = _sh_atomic(tmp_path)
    transport = _transport(sshd)
    try:
        record = execute_atomic(transport, test, args={}, marker=new_run_marker(), get_prereqs=True, timeout=5,
                                platform="windows")
        assert record.status is ExecutionStatus.SKIPPED_PLATFORM and "windows" in (record.reason or "")
        with pytest.raises(ContentError, match=r"override for integer argument 'sleep' refused"):
            execute_atomic(transport, test, args={"sleep": "1; touch x"}, marker=new_run_marker(),
                           get_prereqs=True, timeout=5)
    finally:
        transport.close()
    assert list(workdir.iterdir()) == []


def test_host_key_mismatch_is_refused_naming_the_known_hosts_file(sshd: SshdServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts_wrong"
    kind, blob = (other.with_suffix(".pub")).read_text().split()[:2]
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    with pytest.raises(ConnectError) as info:
        _transport(sshd, known_hosts=wrong).run("true", timeout=5)
    message = str(info.value)
    assert f"127.0.0.1:{sshd.port}" in message and str(wrong) in message and "does not match" in message

    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(ConnectError, match=r"host key is not in .*known_hosts_empty"):
        _transport(sshd, known_hosts=empty).run("true", timeout=5)


def test_wrong_key_is_an_auth_error(sshd: SshdServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(AuthError, match="authentication as"):
        _transport(sshd, key_file=stranger, key_passphrase_env=None).run("true", timeout=5)
    with pytest.raises(AuthError, match="is encrypted"):
        _transport(sshd, key_passphrase_env=None).run("true", timeout=5)


def test_unreachable_port_is_a_connect_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    known = tmp_path / "kh"
    known.write_text("")
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = SSHConfig(host="127.0.0.1", port=port, username="u", known_hosts=known, key_file=key,
                       connect_timeout=2.0)
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}: cannot connect"):
        SSHTransport(config, secrets=_secrets({})).run("true", timeout=2)


def test_secret_never_appears_in_outputs_or_files(sshd: SshdServer, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A whole SSH session whose key passphrase is a canary: no output, record or file may hold it."""
    caplog.set_level("DEBUG")
    test, _workdir = _sh_atomic(tmp_path)
    transport = _transport(sshd)
    try:
        record = execute_atomic(transport, test, args={}, marker=new_run_marker(), get_prereqs=True, timeout=10)
        timed = transport.run("sleep 5", timeout=0.5)
    finally:
        transport.close()
    assert record.status is ExecutionStatus.EXECUTED and timed.timed_out
    texts = [repr(record), repr(timed), caplog.text, sshd.log.read_text(errors="replace")]
    for root, _dirs, files in os.walk(tmp_path):
        for name in files:
            path = Path(root, name)
            if path.name != "user_key":  # the encrypted key file itself (never holds the passphrase in clear)
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    assert all(KEY_PASSPHRASE not in text for text in texts)
