"""Issue 16: the emulated WS-Man listener is bounded and shuts down cleanly.

Reproductions (they failed before the fix): unauthenticated clients drove the listener to 10,582
threads (no connection cap), a client trickling a request held its thread forever (no request
deadline), NTLMv1 was accepted, and `atomiclab emulate` under such a flood did not stop on SIGTERM.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import spnego
from fake_host import FakeHost

from harness.emulated.wsman import EmulatedHostServer, ServerConfig
from harness.emulated.wsman_auth import ConnectionAuth, Credentials, NtlmUserFile, StepOutcome

REPO = Path(__file__).resolve().parents[1]


def _ntlm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_level: str) -> StepOutcome:
    creds = Credentials("lab", "right-password")
    auth = ConnectionAuth(user_file=NtlmUserFile(tmp_path / "u", creds, domains=()), credentials=creds)
    monkeypatch.setenv("LM_COMPAT_LEVEL", client_level)  # pyspnego's client reads it when created
    client = spnego.client("lab", "right-password", hostname="localhost", protocol="ntlm")
    token = client.step()
    outcome = StepOutcome.CONTINUE
    while token is not None:
        result = auth.step("NTLM " + base64.b64encode(token).decode())
        outcome = result.outcome
        if outcome is not StepOutcome.CONTINUE:
            break
        token = client.step(result.out_token)
    assert os.environ["LM_COMPAT_LEVEL"] == client_level  # the acceptor's setting did not leak
    return outcome


@pytest.mark.parametrize("level", ["0", "1", "2"])
def test_ntlmv1_and_lm_responses_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    assert _ntlm(tmp_path, monkeypatch, level) is StepOutcome.REJECTED


def test_ntlmv2_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ntlm(tmp_path, monkeypatch, "3") is StepOutcome.COMPLETE


@pytest.mark.network
def test_connections_beyond_the_cap_are_closed_and_threads_stay_bounded() -> None:
    config = ServerConfig(use_tls=False, max_connections=4, idle_connection_timeout_s=30)
    with EmulatedHostServer(FakeHost(), config=config) as srv:
        before = threading.active_count()
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(40)]
        try:
            deadline = time.monotonic() + 10
            while srv.stats.refused_connections < 36 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert srv.stats.refused_connections == 36
            assert threading.active_count() <= before + 4
        finally:
            for s in socks:
                s.close()
        # once the flood is gone, the listener serves again
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"GET /wsman HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = s.recv(100)
            if reply.startswith(b"HTTP/1.1 405") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert reply.startswith(b"HTTP/1.1 405")


@pytest.mark.network
def test_a_trickled_request_is_cut_at_the_deadline() -> None:
    config = ServerConfig(use_tls=False, request_deadline_s=0.5, idle_connection_timeout_s=30)
    with EmulatedHostServer(FakeHost(), config=config) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"POST /wsman HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                s.sendall(b"X")  # one header byte every 50 ms: never a whole request
                time.sleep(0.05)
            except OSError:
                closed = True
                break
        assert closed, "the listener kept a trickled request open"
        assert time.monotonic() - started < 3
        assert srv.stats.timed_out_requests == 1


@pytest.mark.network
def test_an_oversized_request_is_refused_unread() -> None:
    with EmulatedHostServer(FakeHost(), config=ServerConfig(use_tls=False)) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")


@pytest.mark.slow
@pytest.mark.network
def test_emulate_stops_on_sigterm_under_a_connection_flood_and_removes_its_secrets(tmp_path: Path) -> None:
    state, temp = tmp_path / "state", tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "emulate", "--state-dir", str(state), "--http"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)},
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            if "url:" in line:
                port = int(line.rsplit(":", 1)[1].split("/")[0])
            if line.startswith("Serving until Ctrl-C"):
                break
        assert port and list(temp.glob("atomiclab-winrm-*"))
        for _ in range(300):  # unauthenticated, silent clients
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "EMULATED host stopped" in rest
    assert not (state / "password").exists()
    assert list(temp.glob("atomiclab-winrm-*")) == [], "the NTLM user file / TLS key were left behind"
