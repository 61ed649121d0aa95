"""Per-command overhead of the WinRM transport: one reused WinRS shell vs a new shell per command,
and the listener's one-write replies with TCP_NODELAY vs stdlib's two writes under Nagle.

Runs against the emulated host's WS-Management server on 127.0.0.1 (HTTPS + NTLM) and prints,
side by side, HTTP round trips, WS-Man requests and seconds per command. Round trips are counted by
the server (``EmulatedHostServer.stats``), so authentication handshakes are included.

HTTP requests per WinRS command on a reused shell: 3 (Command, one Receive that returns the output
with CommandState Done, Signal Terminate releasing the command as winrs.exe does), plus the shell's
Create/Delete spread over the commands. That is the protocol's floor: a command cannot start without
Command, its output and exit code only come back in a Receive, and Signal frees it on the host.

    python bench/bench_transport.py [--commands 30]

Behind the server sits the emulated Windows host when it imports, else a minimal echo host (the
numbers measure the protocol, not the command).
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field

from harness.emulated.wsman import EmulatedHostServer, ServerConfig
from harness.execution.executors import new_run_marker, render_command_line
from harness.execution.transports.winrm import WinRMAuth, WinRMConfig, WinRMTransport
from harness.model import ExecutorName


@dataclass
class _Chunk:
    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


@dataclass
class _EchoCommand:
    line: str
    sent: bool = False

    def read(self, timeout: float) -> _Chunk:
        if self.sent:
            return _Chunk(b"", b"", True, 0)
        self.sent = True
        return _Chunk(self.line.encode() + b"\r\n", b"", True, 0)

    def write_stdin(self, data: bytes, *, eof: bool = False) -> None:
        pass

    def terminate(self) -> None:
        pass


@dataclass
class _EchoSession:
    shell_id: str

    def start(self, command_line: str) -> _EchoCommand:
        return _EchoCommand(command_line)

    def close(self) -> None:
        pass


@dataclass
class _EchoHost:
    lock: threading.Lock = field(default_factory=threading.Lock)
    n: int = 0

    def open_shell(self, user: str, *, codepage: int = 437) -> _EchoSession:
        with self.lock:
            self.n += 1
            return _EchoSession(f"s{self.n}")


def _host() -> tuple[object, str]:
    try:
        from harness.emulated.host import EmulatedHost

        return EmulatedHost(), "emulated Windows host"
    except ImportError:
        return _EchoHost(), "minimal echo host"


def _measure(srv: EmulatedHostServer, commands: int, *, reuse: bool) -> tuple[float, float, float]:
    config = WinRMConfig(host="127.0.0.1", port=srv.port, username=srv.username, password_env="BENCH_PW",
                         auth=WinRMAuth.NTLM, ca_bundle=srv.ca_cert_path)
    secret = srv.password

    def make() -> WinRMTransport:
        return WinRMTransport(config, secrets=lambda _name: secret)

    srv.reset_stats()
    lines = [render_command_line(ExecutorName.COMMAND_PROMPT, f"echo {i}", marker=new_run_marker())
             for i in range(commands)]
    t0 = time.perf_counter()
    if reuse:
        transport = make()
        try:
            for line in lines:
                transport.run(line, timeout=30)
        finally:
            transport.close()
    else:
        for line in lines:
            transport = make()
            try:
                transport.run(line, timeout=30)
            finally:
                transport.close()
    elapsed = time.perf_counter() - t0
    stats = srv.stats
    return stats.http_requests / commands, stats.total_requests / commands, elapsed / commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=30)
    args = parser.parse_args()
    host, kind = _host()
    with EmulatedHostServer(host, config=ServerConfig()) as srv:  # type: ignore[arg-type]
        _measure(srv, 2, reuse=True)  # warm-up: imports, TLS session setup
        reused = _measure(srv, args.commands, reuse=True)
        fresh = _measure(srv, args.commands, reuse=False)
    with EmulatedHostServer(host, config=ServerConfig(nagle=True)) as srv:  # type: ignore[arg-type]
        _measure(srv, 2, reuse=True)
        nagle = _measure(srv, args.commands, reuse=True)
    print(f"WinRM over HTTPS+NTLM to {kind} on 127.0.0.1, {args.commands} commands")
    print(f"{'':28}{'reused shell':>14}{'shell per command':>20}{'ratio':>8}")
    for label, i, fmt in (("HTTP round trips / command", 0, "{:.2f}"), ("WS-Man requests / command", 1, "{:.2f}"),
                          ("seconds / command", 2, "{:.4f}")):
        ratio = fresh[i] / reused[i] if reused[i] else float("nan")
        print(f"{label:28}{fmt.format(reused[i]):>14}{fmt.format(fresh[i]):>20}{ratio:>7.1f}x")
    print(f"\nreused shell, listener replies: {'one write + TCP_NODELAY':>24}{'two writes, Nagle (stdlib)':>28}{'ratio':>8}")
    print(f"{'seconds / command':31}{reused[2]:>24.4f}{nagle[2]:>28.4f}{nagle[2] / reused[2]:>7.1f}x")


if __name__ == "__main__":
    main()
