"""`atomiclab emulate --fault ...`: the listener's injected faults from the command line, seen through pypsrp.

Each test parses real `atomiclab emulate` arguments, serves with :func:`serve` (what the command runs)
and observes the fault with pypsrp's own client; one test runs the command as a process.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from pypsrp.client import Client
from pypsrp.exceptions import WSManFaultError
from pypsrp.shell import Process, WinRS
from pypsrp.wsman import WSMan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_host import FakeHost

from harness.cli import build_parser, main
from harness.cli.emulate_cmd import describe_faults, parse_faults, serve, server_config
from harness.emulated.wsman import EmulatedHostServer, FaultConfig
from harness.emulated.wsman_soap import Action

REPO = Path(__file__).resolve().parents[1]
TIMED_OUT = 2150858793
INTERNAL_ERROR = 2147500037


def _wsman(server: EmulatedHostServer) -> WSMan:
    return WSMan("127.0.0.1", port=server.port, username=server.username, password=server.password,
                 cert_validation=str(server.ca_cert_path), auth="ntlm", operation_timeout=5, read_timeout=15)


def _serve_with(tmp_path: Path, argv: list[str], check: Callable[[EmulatedHostServer], None]) -> str:
    """Run `atomiclab emulate ARGV`'s server (as the command builds it), call ``check`` while it serves."""
    args = build_parser().parse_args(["emulate", *argv])
    stop = threading.Event()
    out = io.StringIO()
    failure: list[BaseException] = []

    def on_ready(server: EmulatedHostServer) -> None:
        try:
            check(server)
        except BaseException as exc:  # re-raised in the test's thread below
            failure.append(exc)
        finally:
            stop.set()

    assert serve(FakeHost(), config=server_config(args), state_dir=tmp_path, out=out, stop=stop,
                 on_ready=on_ready) == 0
    if failure:
        raise failure[0]
    return out.getvalue()


def test_http_500_on_command(tmp_path: Path) -> None:
    def check(server: EmulatedHostServer) -> None:
        with _wsman(server) as ws, WinRS(ws) as shell:
            with pytest.raises(WSManFaultError) as info:
                Process(shell, "cmd.exe", ["/c", "echo", "x"]).invoke()
            assert info.value.code == INTERNAL_ERROR and "injected" in (info.value.reason or "")

    text = _serve_with(tmp_path, ["--fault", "http-500=command"], check)
    assert "INJECTED FAULTS: http-500=Command" in text


def test_http_500_on_create_and_delete(tmp_path: Path) -> None:
    def check(server: EmulatedHostServer) -> None:
        with _wsman(server) as ws, pytest.raises(WSManFaultError) as info:
            WinRS(ws).open()
        assert info.value.code == INTERNAL_ERROR

    _serve_with(tmp_path, ["--fault", "http-500=Create,Delete"], check)


def test_drop_on_request(tmp_path: Path) -> None:
    def check(server: EmulatedHostServer) -> None:
        with _wsman(server) as ws:
            shell = WinRS(ws)
            shell.open()  # request 1
            with pytest.raises(requests.exceptions.ConnectionError):
                Process(shell, "cmd.exe", ["/c", "echo", "lost"]).begin_invoke()  # request 2: dropped
            proc = Process(shell, "cmd.exe", ["/c", "echo", "again"])
            proc.invoke()
            shell.close()
        assert proc.stdout == b"again\r\n"
        assert server.stats.dropped_connections == 1

    _serve_with(tmp_path, ["--fault", "drop-on-request=2"], check)


def test_drop_mid_receive_keeps_the_output(tmp_path: Path) -> None:
    def check(server: EmulatedHostServer) -> None:
        with _wsman(server) as ws, WinRS(ws) as shell:
            proc = Process(shell, "cmd.exe", ["/c", "echo", "kept"])
            proc.begin_invoke()
            with pytest.raises(requests.exceptions.ConnectionError):
                proc.poll_invoke()
            proc.end_invoke()
        assert proc.stdout == b"kept\r\n"

    _serve_with(tmp_path, ["--fault", "drop-mid-receive"], check)


def test_timeout_next_receive_then_output(tmp_path: Path) -> None:
    def check(server: EmulatedHostServer) -> None:
        with _wsman(server) as ws, WinRS(ws) as shell:
            proc = Process(shell, "cmd.exe", ["/c", "echo", "late"])
            proc.begin_invoke()
            with pytest.raises(WSManFaultError) as info:
                shell.receive("stdout stderr", proc.id)
            assert info.value.code == TIMED_OUT
            proc.end_invoke()
        assert proc.stdout == b"late\r\n"

    _serve_with(tmp_path, ["--fault", "timeout-next-receive"], check)


def test_slow_receive_delays_every_receive(tmp_path: Path) -> None:
    import time

    def check(server: EmulatedHostServer) -> None:
        client = Client("127.0.0.1", port=server.port, username=server.username, password=server.password,
                        cert_validation=str(server.ca_cert_path))
        began = time.monotonic()
        assert client.execute_cmd("cmd.exe /c echo slow") == ("slow\r\n", "", 0)
        assert time.monotonic() - began >= 0.4

    text = _serve_with(tmp_path, ["--fault", "slow-receive=0.4"], check)
    assert "slow-receive=0.4" in text


def test_faults_combine_and_repeat() -> None:
    faults = parse_faults(["http-500=Signal", "HTTP-500=receive", "drop-on-request=3", "slow-receive=1.5",
                           "timeout-next-receive", "drop-mid-receive"])
    assert faults == FaultConfig(drop_on_request=3, drop_mid_receive=True,
                                 http_500_actions=frozenset({Action.SIGNAL, Action.RECEIVE}),
                                 receive_delay_s=1.5, timeout_next_receive=True)
    assert describe_faults(faults) == ("drop-on-request=3 drop-mid-receive http-500=Receive,Signal "
                                       "slow-receive=1.5 timeout-next-receive")
    assert parse_faults([]) == FaultConfig() and describe_faults(FaultConfig()) == ""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("explode", "--fault explode: unknown fault"),
        ("drop-on-request=0", "N must be a whole number >= 1"),
        ("drop-on-request=x", "N must be a whole number >= 1"),
        ("drop-on-request", "drop-on-request needs a value"),
        ("http-500=Bogus", "unknown WS-Man action 'bogus'"),
        ("http-500=", "http-500 needs a value"),
        ("slow-receive=-1", "must be a finite number of seconds >= 0"),
        ("slow-receive=nan", "must be a finite number of seconds >= 0"),
        ("slow-receive=abc", "must be a finite number of seconds >= 0"),
        ("drop-mid-receive=1", "drop-mid-receive takes no value"),
        ("timeout-next-receive=yes", "timeout-next-receive takes no value"),
    ],
)
def test_bad_fault_is_one_line_exit_2(spec: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--fault", spec]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0]


def test_atomiclab_emulate_process_with_fault(tmp_path: Path) -> None:
    """The real command: `atomiclab emulate --fault http-500=Command`, observed with pypsrp."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "emulate", "--state-dir", str(tmp_path), "--fault", "http-500=Command"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    fields: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition(":")
            fields[key] = value.strip()
            if line.startswith("Serving until Ctrl-C"):
                break
        assert fields["INJECTED FAULTS"] == "http-500=Command"
        port = int(fields["url"].rsplit(":", 1)[1].split("/", 1)[0])
        password = (tmp_path / "password").read_text()
        with WSMan("127.0.0.1", port=port, username=fields["username"], password=password,
                   cert_validation=fields["CA"], auth="ntlm", operation_timeout=5) as ws, WinRS(ws) as shell:
            with pytest.raises(WSManFaultError) as info:
                Process(shell, "cmd.exe", ["/c", "echo", "x"]).invoke()
            assert info.value.code == INTERNAL_ERROR
        proc.send_signal(signal.SIGINT)
        _rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
