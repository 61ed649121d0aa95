"""Round trips and envelope use of the emulated WinRM listener, measured with pypsrp.

Prints, for a few output sizes and MaxEnvelopeSize values: WS-Man requests and HTTP round trips
per command, how full each Receive envelope is on average (output bytes / (Receives x raw budget)),
and the wall-time ratio of a reused WinRS shell versus a new shell per command. Ratios only: no
thresholds, nothing asserted.

    python bench/bench_wsman_roundtrips.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pypsrp.shell import Process, WinRS
from pypsrp.wsman import WSMan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_host import FakeHost

from harness.emulated.wsman import EmulatedHostServer
from harness.emulated.wsman_soap import Action


def _wsman(srv: EmulatedHostServer, max_envelope: int) -> WSMan:
    return WSMan(
        "127.0.0.1",
        port=srv.port,
        username=srv.username,
        password=srv.password,
        cert_validation=str(srv.ca_cert_path),
        auth="ntlm",
        max_envelope_size=max_envelope,
    )


def main() -> None:
    with EmulatedHostServer(FakeHost()) as srv:
        print(f"{'bytes':>9} {'envelope':>9} {'receives':>9} {'http':>5} {'fill':>6}")
        for size in (100, 100_000, 1_000_000):
            for envelope in (8192, 153_600, 512_000):
                with _wsman(srv, envelope) as ws, WinRS(ws) as shell:
                    srv.reset_stats()
                    proc = Process(shell, "big", [str(size)])
                    proc.invoke()
                    stats = srv.stats
                receives = stats.count(Action.RECEIVE)
                budget = (envelope - 2048) // 4 * 3
                fill = len(proc.stdout) / (receives * budget)
                print(f"{size:>9} {envelope:>9} {receives:>9} {stats.http_requests:>5} {fill:>6.2f}")

        n = 20
        with _wsman(srv, 153_600) as ws:
            t0 = time.perf_counter()
            with WinRS(ws) as shell:
                for _ in range(n):
                    Process(shell, "cmd.exe", ["/c", "echo", "x"]).invoke()
            reused = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(n):
                with WinRS(ws) as shell:
                    Process(shell, "cmd.exe", ["/c", "echo", "x"]).invoke()
            fresh = time.perf_counter() - t0
        print(f"new-shell-per-command / reused-shell wall time: {fresh / reused:.2f}x over {n} commands")


if __name__ == "__main__":
    main()
