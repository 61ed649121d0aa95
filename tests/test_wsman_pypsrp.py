"""Protocol conformance of the emulated WinRM listener, driven by pypsrp only (no harness client code).

The host behind the listener is the small fake in ``tests/fake_host.py`` so these tests exercise the
WS-Man/WinRS protocol, not the command model.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pypsrp.client import Client
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.shell import CommandState, Process, SignalCode, WinRS
from pypsrp.wsman import WSMan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_host import TERMINATED_EXIT_CODE, FakeHost

from harness.emulated.tls import generate_tls_material
from harness.emulated.wsman import EMULATED_HEADER, EmulatedHostServer, FaultConfig, ServerConfig
from harness.emulated.wsman_soap import Action

TIMED_OUT = 2150858793
SHELL_NOT_FOUND = 2150858843


@pytest.fixture(scope="module")
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture(scope="module")
def server(host: FakeHost) -> Iterator[EmulatedHostServer]:
    with EmulatedHostServer(host, config=ServerConfig(allow_basic=False)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        request.getfixturevalue("server").set_faults(FaultConfig())


def wsman(server: EmulatedHostServer, **kwargs: object) -> WSMan:
    opts: dict[str, object] = {
        "port": server.port,
        "username": server.username,
        "password": server.password,
        "ssl": True,
        "cert_validation": str(server.ca_cert_path),
        "auth": "ntlm",
        "operation_timeout": 5,
        "read_timeout": 15,
    }
    opts.update(kwargs)
    return WSMan("127.0.0.1", **opts)  # type: ignore[arg-type]


@pytest.mark.parametrize("auth", ["ntlm", "negotiate"])
def test_execute_cmd_runs_the_command_line_through_ntlm(server: EmulatedHostServer, host: FakeHost, auth: str) -> None:
    client = Client(
        "127.0.0.1",
        port=server.port,
        username=server.username,
        password=server.password,
        cert_validation=str(server.ca_cert_path),
        auth=auth,
    )
    assert client.execute_cmd("cmd.exe /c echo hi") == ("hi\r\n", "", 0)
    assert host.command_lines[-1] == "cmd.exe /c echo hi"
    assert host.shells[-1].closed


def test_command_line_is_command_then_arguments_joined_by_spaces(server: EmulatedHostServer, host: FakeHost) -> None:
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "cmd.exe", ["/c", "echo", "two  spaces", '"quoted"'])
        proc.invoke()
    assert host.command_lines[-1] == 'cmd.exe /c echo two  spaces "quoted"'
    assert proc.stdout == b'two  spaces "quoted"\r\n'
    assert proc.rc == 0


def test_stderr_and_exit_code(server: EmulatedHostServer) -> None:
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "fail", ["boom"])
        proc.invoke()
    assert (proc.stdout, proc.stderr, proc.rc) == (b"", b"boom", 1)


def test_output_larger_than_an_envelope_is_split_across_receives(server: EmulatedHostServer) -> None:
    size = 60_000
    max_envelope = 8192
    sizes: list[int] = []
    with wsman(server, max_envelope_size=max_envelope) as ws:
        original = ws.transport.send

        def recording_send(message: bytes, **kw: object) -> bytes:
            reply = original(message, **kw)  # type: ignore[arg-type]
            sizes.append(len(reply))
            return reply

        ws.transport.send = recording_send  # type: ignore[method-assign]
        before = server.stats.count(Action.RECEIVE)
        with WinRS(ws) as shell:
            proc = Process(shell, "big", [str(size)])
            proc.invoke()
    pattern = b"0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    assert proc.stdout == (pattern * (size // len(pattern) + 1))[:size]
    assert proc.rc == 0
    receives = server.stats.count(Action.RECEIVE) - before
    assert receives >= size // (max_envelope * 3 // 4)  # could not fit in fewer envelopes
    assert max(sizes) <= max_envelope


def test_default_envelope_carries_large_output(server: EmulatedHostServer) -> None:
    client = Client(
        "127.0.0.1",
        port=server.port,
        username=server.username,
        password=server.password,
        cert_validation=str(server.ca_cert_path),
    )
    out, err, rc = client.execute_cmd("big 400000")
    assert (len(out), err, rc) == (400000, "", 0)


def test_wrong_password_is_http_401_and_authentication_error(server: EmulatedHostServer) -> None:
    before = server.stats.auth_rejections
    with wsman(server, password="not-the-password") as ws, pytest.raises(AuthenticationError):
        WinRS(ws).open()
    assert server.stats.auth_rejections > before


def test_unauthenticated_post_gets_challenges_and_emulated_header(server: EmulatedHostServer) -> None:
    resp = requests.post(server.url, data=b"<x/>", verify=str(server.ca_cert_path), timeout=10)
    assert resp.status_code == 401
    offers = resp.headers["WWW-Authenticate"]
    assert "Negotiate" in offers and "NTLM" in offers and "Basic" not in offers
    assert resp.headers[EMULATED_HEADER] == "true"


def test_injected_http_500_fault_for_an_action(server: EmulatedHostServer) -> None:
    server.set_faults(FaultConfig(http_500_actions=frozenset({Action.COMMAND})))
    with wsman(server) as ws, WinRS(ws) as shell:
        with pytest.raises(WSManFaultError) as info:
            Process(shell, "cmd.exe", ["/c", "echo", "x"]).invoke()
        assert info.value.code == 2147500037
        assert "injected" in (info.value.reason or "")
        server.set_faults(FaultConfig())
        proc = Process(shell, "cmd.exe", ["/c", "echo", "x"])
        proc.invoke()
    assert proc.stdout == b"x\r\n"


def test_long_poll_answers_operation_timeout_fault_then_completes(server: EmulatedHostServer) -> None:
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "sleep", ["2"])
        proc.begin_invoke()
        with pytest.raises(WSManFaultError) as info:
            shell.receive("stdout stderr", proc.id, timeout=1)
        assert info.value.code == TIMED_OUT
        proc.end_invoke()  # pypsrp retries the timed-out Receive until Done
    assert proc.state == CommandState.DONE and proc.rc == 0


def test_injected_timeout_on_next_receive_only(server: EmulatedHostServer) -> None:
    server.set_faults(FaultConfig(timeout_next_receive=True))
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "cmd.exe", ["/c", "echo", "late"])
        proc.begin_invoke()
        with pytest.raises(WSManFaultError) as info:
            shell.receive("stdout stderr", proc.id)
        assert info.value.code == TIMED_OUT
        proc.end_invoke()
    assert proc.stdout == b"late\r\n"


def test_slow_receive_still_delivers(server: EmulatedHostServer) -> None:
    server.set_faults(FaultConfig(receive_delay_s=0.3))
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "cmd.exe", ["/c", "echo", "slow"])
        proc.invoke()
    assert proc.stdout == b"slow\r\n"


def test_drop_on_request_surfaces_as_connection_error(server: EmulatedHostServer) -> None:
    before = server.stats.dropped_connections
    with wsman(server) as ws:
        shell = WinRS(ws)
        shell.open()
        server.set_faults(FaultConfig(drop_on_request=1))
        with pytest.raises(requests.exceptions.ConnectionError):
            Process(shell, "cmd.exe", ["/c", "echo", "lost"]).begin_invoke()
        # The next request opens a new connection, re-authenticates and works.
        proc = Process(shell, "cmd.exe", ["/c", "echo", "again"])
        proc.invoke()
        shell.close()
    assert proc.stdout == b"again\r\n"
    assert server.stats.dropped_connections == before + 1


def test_drop_mid_receive_keeps_output_for_the_next_receive(server: EmulatedHostServer) -> None:
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "cmd.exe", ["/c", "echo", "kept"])
        proc.begin_invoke()
        server.set_faults(FaultConfig(drop_mid_receive=True))
        with pytest.raises(requests.exceptions.ConnectionError):
            proc.poll_invoke()
        proc.end_invoke()
    assert proc.stdout == b"kept\r\n"


def test_signal_terminate_ends_a_running_command(server: EmulatedHostServer, host: FakeHost) -> None:
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "sleep", ["60"])
        proc.begin_invoke()
        proc.signal(SignalCode.TERMINATE)
        fake = host.shells[-1].commands[-1]
        assert fake.terminated
        assert fake.read(0).exit_code == TERMINATED_EXIT_CODE
        # The command is gone after Terminate, as on Windows.
        with pytest.raises(WSManFaultError) as info:
            shell.receive("stdout stderr", proc.id)
        assert info.value.code == 87


def test_stdin_is_delivered_to_the_command(server: EmulatedHostServer) -> None:
    with wsman(server) as ws, WinRS(ws) as shell:
        proc = Process(shell, "cat")
        proc.begin_invoke()
        proc.send(b"hello ", end=False)
        proc.send(b"world", end=True)
        proc.end_invoke()
    assert proc.stdout == b"hello world" and proc.rc == 0


def test_codepage_option_reaches_the_host(server: EmulatedHostServer, host: FakeHost) -> None:
    with wsman(server) as ws, WinRS(ws, codepage=65001) as shell:
        proc = Process(shell, "chcp")
        proc.invoke()
    assert host.shells[-1].codepage == 65001
    assert proc.stdout.decode("utf-8") == "Active code page: 65001 ü\r\n"


def test_unsupported_codepage_is_an_invalid_parameter_fault(server: EmulatedHostServer) -> None:
    with wsman(server) as ws, pytest.raises(WSManFaultError) as info:
        WinRS(ws, codepage=1).open()
    assert info.value.code == 87


def test_unknown_shell_is_the_real_shell_not_found_fault(server: EmulatedHostServer) -> None:
    with wsman(server) as ws:
        shell = WinRS(ws)
        shell.open()
        shell.close()
        shell.opened = True  # reuse the deleted ShellId
        with pytest.raises(WSManFaultError) as info:
            Process(shell, "cmd.exe", ["/c", "echo", "x"]).begin_invoke()
    assert info.value.code == SHELL_NOT_FOUND
    assert "shell was not found" in (info.value.reason or "")


def test_malformed_and_hostile_envelopes_get_soap_faults(server: EmulatedHostServer) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>&lol2;</s:Body></s:Envelope>"
    )
    with wsman(server) as ws:
        for payload in (b"<not-xml", bomb, b"<a/>"):
            with pytest.raises(WinRMTransportError) as info:
                ws.transport.send(payload)
            assert info.value.code == 500
            fault = WSMan._parse_wsman_fault(info.value.response_text)
            assert fault.code == 2150858817


def test_config_get_reports_max_envelope(server: EmulatedHostServer) -> None:
    with wsman(server) as ws:
        ws.update_max_payload_size()
    assert ws.max_envelope_size == 500 * 1024


def test_stats_count_requests_by_action(server: EmulatedHostServer) -> None:
    server.reset_stats()
    client = Client(
        "127.0.0.1",
        port=server.port,
        username=server.username,
        password=server.password,
        cert_validation=str(server.ca_cert_path),
    )
    client.execute_cmd("cmd.exe /c echo counted")
    stats = server.stats
    assert {a: stats.count(a) for a in ("Create", "Command", "Receive", "Signal", "Delete")} == {
        "Create": 1,
        "Command": 1,
        "Receive": 1,
        "Signal": 1,
        "Delete": 1,
    }
    # Two 401 round trips for the NTLM handshake on the one connection, then four more requests.
    assert stats.http_requests == 7 and stats.connections == 1


def test_wrong_ca_fails_certificate_validation(server: EmulatedHostServer, tmp_path: Path) -> None:
    other = generate_tls_material(tmp_path)
    with wsman(server, cert_validation=str(other.ca_cert_path)) as ws, pytest.raises(requests.exceptions.SSLError):
        WinRS(ws).open()
    with wsman(server, cert_validation=True) as ws, pytest.raises(requests.exceptions.SSLError):
        WinRS(ws).open()


def test_basic_over_http_is_refused_by_pypsrp() -> None:
    with pytest.raises(ValueError, match="message encryption"):
        WSMan("127.0.0.1", port=1, username="u", password="p", ssl=False, auth="basic")


def test_basic_is_off_by_default_and_works_over_https_when_enabled(server: EmulatedHostServer) -> None:
    with wsman(server, auth="basic") as ws, pytest.raises(AuthenticationError):
        WinRS(ws).open()
    with EmulatedHostServer(FakeHost(), config=ServerConfig(allow_basic=True)) as basic:
        with wsman(basic, auth="basic") as ws, WinRS(ws) as shell:
            proc = Process(shell, "cmd.exe", ["/c", "echo", "basic"])
            proc.invoke()
        assert proc.stdout == b"basic\r\n"
        with wsman(basic, auth="basic", password="wrong") as ws, pytest.raises(AuthenticationError):
            WinRS(ws).open()


def test_message_encryption_over_http() -> None:
    host = FakeHost()
    with EmulatedHostServer(host, config=ServerConfig(use_tls=False)) as srv:
        assert srv.url.startswith("http://") and srv.ca_cert_path is None
        for auth in ("ntlm", "negotiate"):
            with (
                WSMan(
                    "127.0.0.1", port=srv.port, username=srv.username, password=srv.password, ssl=False, auth=auth
                ) as ws,
                WinRS(ws) as shell,
            ):
                proc = Process(shell, "big", ["200000"])
                proc.invoke()
            assert len(proc.stdout) == 200000 and proc.rc == 0
        # Unencrypted SOAP over HTTP is refused as with AllowUnencrypted=false.
        with (
            WSMan(
                "127.0.0.1",
                port=srv.port,
                username=srv.username,
                password=srv.password,
                ssl=False,
                auth="ntlm",
                encryption="never",
            ) as ws,
            pytest.raises(AuthenticationError),
        ):
            WinRS(ws).open()


def test_stop_ends_a_long_poll_and_cleans_up(host: FakeHost) -> None:
    srv = EmulatedHostServer(host, config=ServerConfig(max_operation_timeout_s=60)).start()
    ca = srv.ca_cert_path
    assert ca is not None and ca.exists()
    errors: list[BaseException] = []
    ws = wsman(srv, operation_timeout=50, read_timeout=55)
    shell = WinRS(ws)
    shell.open()
    proc = Process(shell, "sleep", ["60"])
    proc.begin_invoke()

    def poll() -> None:
        try:
            shell.receive("stdout stderr", proc.id, timeout=50)
        except BaseException as exc:  # the connection is cut by stop()
            errors.append(exc)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    srv.stop()
    t.join(timeout=20)
    assert not t.is_alive()
    assert len(errors) == 1  # the poll ended: a timed-out fault or a reset connection
    assert isinstance(errors[0], (WSManFaultError, requests.exceptions.ConnectionError))
    assert not ca.exists()
    assert host.shells[-1].closed
    assert host.shells[-1].commands[-1].terminated


class _BrokenShellHost(FakeHost):
    """A host whose processes cannot start: the listener must answer a fault, not drop the line."""

    def open_shell(self, user: str, *, codepage: int = 437):  # type: ignore[no-untyped-def]
        shell = super().open_shell(user, codepage=codepage)

        def start(command_line: str) -> None:
            raise RuntimeError("model bug")

        shell.start = start  # type: ignore[method-assign,assignment]
        return shell


def test_host_model_failure_is_an_internal_error_fault() -> None:
    with EmulatedHostServer(_BrokenShellHost()) as srv, wsman(srv) as ws, WinRS(ws) as shell:
        with pytest.raises(WSManFaultError) as info:
            Process(shell, "cmd.exe", ["/c", "echo", "x"]).begin_invoke()
        assert info.value.code == 2147500037
        assert "RuntimeError" in (info.value.reason or "")
