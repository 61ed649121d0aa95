"""WinRM transport end to end through pypsrp against the emulated host's WS-Management server.

The server (harness.emulated.wsman: HTTPS with a generated CA, NTLM, WinRS, fault injection) is
real. Behind it sits ``ScriptedHost``, a minimal WinRSHost whose commands are ``"cmd.exe" /c``
lines with a tiny vocabulary (echo, exit, big N, sleep S), so these tests do not depend on the
emulated Windows command model; ``test_real_emulated_host_smoke`` uses that model when present.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.errors import AuthError, ConnectError, CredentialError, ProtocolError
from harness.execution.executors import new_run_marker, render_command_line
from harness.execution.lifecycle import ExecutionStatus, execute_atomic
from harness.execution.transport import Transport
from harness.execution.transports.winrm import CommandMode, WinRMAuth, WinRMConfig, WinRMScheme, WinRMTransport
from harness.model import AtomicTest, Executor, ExecutorName

wsman = pytest.importorskip("harness.emulated.wsman", reason="emulated WS-Man server not present yet")
EmulatedHostServer = wsman.EmulatedHostServer
FaultConfig = wsman.FaultConfig
ServerConfig = wsman.ServerConfig
Action = pytest.importorskip("harness.emulated.wsman_soap").Action

pytestmark = pytest.mark.network
PASSWORD_ENV = "ATOMICLAB_TEST_WINRM_PASSWORD"


# --- a scripted WinRS host ----------------------------------------------------------------------


@dataclass
class _Chunk:
    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


@dataclass
class ScriptedCommand:
    command_line: str
    cond: threading.Condition = field(default_factory=threading.Condition)
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    terminated: bool = False

    def __post_init__(self) -> None:
        threading.Thread(target=self._main, daemon=True).start()

    def _emit(self, out: bytes = b"", err: bytes = b"", code: int | None = None) -> None:
        with self.cond:
            self.out += out
            self.err += err
            if code is not None and self.exit_code is None:
                self.exit_code = code
            self.cond.notify_all()

    def _main(self) -> None:
        body = self.command_line.removeprefix('"cmd.exe" /c ').split(" & rem ", 1)[0]
        verb, _, arg = body.partition(" ")
        if verb == "echo":
            self._emit(arg.encode() + b"\r\n", code=0)
        elif verb == "exit":
            self._emit(err=b"failing on purpose\r\n", code=int(arg.split()[-1]))
        elif verb == "big":
            self._emit(b"".join(b"%09d\n" % i for i in range(int(arg) // 10)), code=0)
        elif verb == "sleep":
            self._emit(b"sleeping\r\n")
            end = time.monotonic() + float(arg)
            with self.cond:
                while not self.terminated and time.monotonic() < end:
                    self.cond.wait(0.05)
            self._emit(b"" if self.terminated else b"slept\r\n", code=0)
        else:
            self._emit(err=f"'{verb}' is not recognized\r\n".encode(), code=1)

    def read(self, timeout: float) -> _Chunk:
        with self.cond:
            if not self.out and not self.err and self.exit_code is None:
                self.cond.wait(timeout)
            chunk = _Chunk(bytes(self.out), bytes(self.err), self.exit_code is not None, self.exit_code)
            self.out.clear()
            self.err.clear()
            return chunk

    def write_stdin(self, data: bytes, *, eof: bool = False) -> None:
        pass

    def terminate(self) -> None:
        with self.cond:
            self.terminated = True
            if self.exit_code is None:
                self.exit_code = -1073741510  # STATUS_CONTROL_C_EXIT, as Windows reports it
            self.cond.notify_all()


@dataclass
class ScriptedSession:
    shell_id: str
    commands: list[ScriptedCommand]

    def start(self, command_line: str) -> ScriptedCommand:
        cmd = ScriptedCommand(command_line)
        self.commands.append(cmd)
        return cmd

    def close(self) -> None:
        for cmd in self.commands:
            cmd.terminate()


@dataclass
class ScriptedHost:
    commands: list[ScriptedCommand] = field(default_factory=list)
    shells: int = 0

    def open_shell(self, user: str, *, codepage: int = 437) -> ScriptedSession:
        self.shells += 1
        return ScriptedSession(f"shell-{self.shells}", self.commands)

    def lines(self) -> list[str]:
        return [c.command_line for c in self.commands]


@pytest.fixture
def host() -> ScriptedHost:
    return ScriptedHost()


@pytest.fixture
def server(host: ScriptedHost) -> Iterator[object]:
    with EmulatedHostServer(host, config=ServerConfig(max_operation_timeout_s=10)) as srv:
        yield srv


def _secrets(value: str):  # type: ignore[no-untyped-def]
    def lookup(name: str) -> str:
        if name != PASSWORD_ENV:
            raise CredentialError(f"secret {name} is not set")
        return value

    return lookup


def _transport(srv, *, password: str | None = None, **over: object) -> WinRMTransport:  # type: ignore[no-untyped-def]
    fields: dict[str, object] = dict(
        host="127.0.0.1", port=srv.port, username=srv.username, password_env=PASSWORD_ENV,
        auth=WinRMAuth.NTLM, ca_bundle=srv.ca_cert_path, connect_timeout=5.0, operation_timeout_s=5,
        # The scripted fake answers by command text: these tests exercise the WS-Man exchange, so the
        # line goes out verbatim (DIRECT); the launcher path runs against the emulated host elsewhere.
        command_mode=CommandMode.DIRECT,
    )
    fields.update(over)
    return WinRMTransport(WinRMConfig(**fields),  # type: ignore[arg-type]
                          secrets=_secrets(srv.password if password is None else password))


def _cmd(text: str) -> str:
    return render_command_line(ExecutorName.COMMAND_PROMPT, text, marker=new_run_marker())


# --- tests ----------------------------------------------------------------------------------------


def test_commands_share_one_shell_and_report_exit_codes(server, host: ScriptedHost) -> None:  # type: ignore[no-untyped-def]
    transport = _transport(server)
    assert isinstance(transport, Transport)
    try:
        first = transport.run(_cmd("echo hello world"), timeout=20)
        failed = transport.run(_cmd("exit /b 7"), timeout=20)
        third = transport.run(_cmd("echo again"), timeout=20)
    finally:
        transport.close()
        transport.close()
    assert (first.exit_code, first.stdout, first.timed_out) == (0, "hello world\r\n", False)
    assert (failed.exit_code, failed.stderr) == (7, "failing on purpose\r\n")
    assert third.stdout == "again\r\n"
    # The executor's whole command line reached the host as the process command line.
    assert host.lines() == [first.command, failed.command, third.command]
    stats = server.stats
    assert stats.count(Action.CREATE) == 1 and stats.count(Action.DELETE) == 1
    assert stats.count(Action.COMMAND) == 3


def test_stdout_larger_than_one_envelope(server) -> None:  # type: ignore[no-untyped-def]
    transport = _transport(server)
    try:
        result = transport.run(_cmd("big 600000"), timeout=30)
    finally:
        transport.close()
    assert result.exit_code == 0 and len(result.stdout) == 600000
    assert result.stdout.splitlines()[-1] == f"{600000 // 10 - 1:09d}"
    assert server.stats.count(Action.RECEIVE) >= 4  # 153600-byte envelopes -> several Receives


def test_wrong_password_is_a_clear_auth_error(server) -> None:  # type: ignore[no-untyped-def]
    wrong = "definitely-not-the-password-1234"
    with pytest.raises(AuthError) as info:
        _transport(server, password=wrong).run(_cmd("echo x"), timeout=10)
    message = str(info.value)
    assert message.startswith(f"127.0.0.1:{server.port}: opening the WinRS shell: the host refused the credentials")
    assert PASSWORD_ENV in message and wrong not in message


def test_http_500_fault_is_a_protocol_error(server) -> None:  # type: ignore[no-untyped-def]
    transport = _transport(server)
    try:
        assert transport.run(_cmd("echo warm"), timeout=10).exit_code == 0
        server.set_faults(FaultConfig(http_500_actions=frozenset({Action.COMMAND})))
        with pytest.raises(ProtocolError, match=r"WS-Management fault|HTTP 500"):
            transport.run(_cmd("echo x"), timeout=10)
        server.set_faults(FaultConfig())
        # The broken shell was abandoned: the next command opens a new one and works.
        assert transport.run(_cmd("echo back"), timeout=10).stdout == "back\r\n"
    finally:
        transport.close()


def test_operation_timeout_during_long_receive_is_retried(server, host: ScriptedHost) -> None:  # type: ignore[no-untyped-def]
    transport = _transport(server, operation_timeout_s=1)
    try:
        server.set_faults(FaultConfig(timeout_next_receive=True))
        result = transport.run(_cmd("sleep 2.5"), timeout=20)
    finally:
        transport.close()
    assert (result.exit_code, result.stdout, result.timed_out) == (0, "sleeping\r\nslept\r\n", False)
    # Long polls of 1 s over a 2.5 s command plus the injected fault: several Receives.
    assert server.stats.count(Action.RECEIVE) >= 3


def test_connection_dropped_mid_command(server) -> None:  # type: ignore[no-untyped-def]
    transport = _transport(server)
    try:
        assert transport.run(_cmd("echo warm"), timeout=10).exit_code == 0
        server.set_faults(FaultConfig(drop_mid_receive=True))
        with pytest.raises((ConnectError, ProtocolError)) as info:
            transport.run(_cmd("sleep 1"), timeout=10)
        assert f"127.0.0.1:{server.port}: running a command" in str(info.value)
    finally:
        transport.close()


def test_deadline_overrun_terminates_and_cleanup_still_runs(server, host: ScriptedHost) -> None:  # type: ignore[no-untyped-def]
    test = AtomicTest(
        technique="T9999", name="long", guid="11111111-2222-3333-4444-555555555555", description="d",
        platforms=("windows",),
        executor=Executor(ExecutorName.COMMAND_PROMPT, command="sleep 60\n", cleanup_command="echo cleaned\n"),
    )
    transport = _transport(server)
    marker = new_run_marker()
    try:
        record = execute_atomic(transport, test, args={}, marker=marker, get_prereqs=False, timeout=2,
                                platform="windows")
    finally:
        transport.close()
    assert record.status is ExecutionStatus.EXECUTED
    assert record.result is not None and record.result.timed_out and record.result.exit_code is None
    assert record.result.stdout == "sleeping\r\n"
    assert host.commands[0].terminated and marker in host.commands[0].command_line
    assert record.cleanup is not None and record.cleanup.stdout == "cleaned\r\n" and record.cleanup_error is None
    assert server.stats.count(Action.SIGNAL) >= 2  # terminate at the deadline, release after cleanup


def test_basic_over_http_is_refused_before_connecting() -> None:
    with pytest.raises(ConnectError, match="basic authentication over plain HTTP is refused"):
        WinRMTransport(WinRMConfig(host="10.0.0.9", username="u", password_env="X", auth=WinRMAuth.BASIC,
                                   scheme=WinRMScheme.HTTP))


def test_untrusted_certificate_is_refused(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other-ca"
    from harness.emulated.tls import generate_tls_material

    other.mkdir()
    material = generate_tls_material(other)
    with pytest.raises(ConnectError, match="TLS certificate verification failed"):
        _transport(server, ca_bundle=material.ca_cert_path).run(_cmd("echo x"), timeout=10)


def test_plain_http_uses_message_encryption(host: ScriptedHost) -> None:
    with EmulatedHostServer(host, config=ServerConfig(use_tls=False)) as srv:
        transport = _transport(srv, scheme=WinRMScheme.HTTP, ca_bundle=None)
        try:
            result = transport.run(_cmd("echo sealed"), timeout=10)
        finally:
            transport.close()
    assert result.stdout == "sealed\r\n"


def test_real_emulated_host_smoke() -> None:
    try:
        from harness.emulated.host import EmulatedHost
    except ImportError as exc:
        pytest.skip(f"emulated Windows host model not importable yet: {exc}")
    with EmulatedHostServer(EmulatedHost()) as srv:
        transport = _transport(srv)
        try:
            result = transport.run(render_command_line(ExecutorName.COMMAND_PROMPT, "echo hello",
                                                       marker=new_run_marker()), timeout=30)
        finally:
            transport.close()
    assert result.exit_code == 0 and "hello" in result.stdout
