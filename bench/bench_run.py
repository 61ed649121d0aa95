"""Run benchmark against emulated hosts: harness overhead per test, round trips per test, and wall
time for 1 host versus 8 hosts in parallel, printed side by side.

    python bench/bench_run.py [--hosts 8] [--delay 0.5] [--tests GUID ...] [--all-tests]

* overhead per test = test wall time - time of its own remote commands (prerequisites, command,
  cleanup) - the time the expected telemetry took to appear (from the last command's end until the
  newest event the verdicts cite was logged, plus the delivery delay ``--delay``): what the harness
  adds (telemetry polling granularity, attribution, rules, verdicts, reports);
* round trips per test = transport commands (atomic + telemetry queries) counted by the runner for
  the test itself (connecting, preflight and the run's one bookmark are per host, not per test);
  HTTP requests per round trip = every HTTP request the emulated WinRM servers saw (authentication
  and connection setup included) / every transport command the hosts ran, preflight included;
* parallel speed-up = wall time of N hosts run one after another (measured: the same N hosts with
  max_hosts=1) / wall time of the same N hosts in parallel (max_hosts=N), both in this process,
  side by side. Ideal is N. Each set runs twice: emulated hosts inside this process (they then
  share its CPU and GIL with the harness), and each host in its own process reached over WinRM as
  a lab host is (the harness's own scaling);
* CPU time of this process: what the harness (and in-process hosts) spent, to tell waiting from work.

By default a small set of quick T1046 tests runs (``DEFAULT_TESTS``) so the three runs (1 host,
N hosts sequential, N hosts parallel) finish in a couple of minutes; ``--all-tests`` runs all five.

No assertions: this prints numbers and ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.content.atomics import discover_atomics  # noqa: E402
from harness.content.expectations import discover_expectations  # noqa: E402
from harness.content.labconfig import TargetConfig  # noqa: E402
from harness.execution.executors import new_run_marker  # noqa: E402
from harness.plan import PlannedTest, RunPlan, rules_of  # noqa: E402
from harness.reporting.base import ReportDirectory  # noqa: E402
from harness.reporting.html import HtmlReporter  # noqa: E402
from harness.reporting.junit import JUnitReporter  # noqa: E402
from harness.reporting.navigator import NavigatorReporter  # noqa: E402
from harness.reporting.results_json import ResultsJsonReporter  # noqa: E402
from harness.results import RunMode, RunResult  # noqa: E402
from harness.runner import OpenTarget, Runner  # noqa: E402
from harness.targets import EmulatedTargetFactory, attribute, execute, load_rule_set  # noqa: E402

#: Quick tests (no nmap -sV service probes): keeps the sequential N-host run short.
DEFAULT_TESTS = (
    "d52adf0b-75fa-483b-8560-5d90969c8e59",  # PowerShell TcpClient port scan
    "d7b2043f-3075-47e3-87ca-8ca224d06bec",  # netstat | findstr
)


def _serve(settings: dict, conn: Any) -> None:
    """Child process: one emulated host's WinRM listener until the parent closes the pipe."""
    from harness.emulated.host import EmulatedHost, HostSettings
    from harness.emulated.wsman import EmulatedHostServer

    host = EmulatedHost(dataclasses.replace(HostSettings(), **settings))
    with EmulatedHostServer(host) as server:
        conn.send((server.port, server.username, server.password, str(server.ca_cert_path)))
        conn.recv()  # blocks until the parent says stop (or dies)


class ProcessHostFactory:
    """Each emulated host in its own process, reached over WinRM like a lab host: the run's process
    then does only the harness's work, as with real hosts (in-process hosts share its GIL)."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.servers: list[Any] = []  # stats live in the children: none here
        self._ready: list[tuple[Any, Any, tuple[int, str, str, str]]] = []

    def target(self, name: str) -> TargetConfig:
        return EmulatedTargetFactory.target(name)

    def prestart(self, n: int) -> None:
        """Start ``n`` host processes before the clock starts (a lab's hosts are up before a run)."""
        ctx = multiprocessing.get_context("spawn")
        started = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(self.settings, child), daemon=True)
            proc.start()
            started.append((proc, parent))
        self._ready = [(proc, parent, parent.recv()) for proc, parent in started]

    def open(self, target: TargetConfig) -> OpenTarget:
        from harness.execution.transports.winrm import WinRMAuth, WinRMConfig, WinRMScheme, WinRMTransport
        from harness.targets import _emulated_tools, _preflight, telemetry_source

        proc, parent, (port, username, password, ca) = self._ready.pop()
        config = WinRMConfig(host="127.0.0.1", port=port, scheme=WinRMScheme.HTTPS, auth=WinRMAuth.NTLM,
                             username=username, password_env="BENCH_EMULATED_PASSWORD", ca_bundle=Path(ca))
        transport = WinRMTransport(config, secrets=lambda _env: password)

        def close() -> None:
            try:
                transport.close()
            finally:
                parent.send("stop")
                proc.join(10)

        return OpenTarget(config=dataclasses.replace(target, port=port), transport=transport,
                          make_source=telemetry_source, emulated=True,
                          preflight=_preflight(transport, _emulated_tools(None), True), close=close)


def one_run(hosts: int, planned: list[PlannedTest], delay: float, out: Path, max_hosts: int,
            processes: bool = False) -> dict:
    factory: Any = (ProcessHostFactory if processes else EmulatedTargetFactory)({"delivery_delay_s": delay})
    if processes:
        factory.prestart(hosts)
    targets = tuple(factory.target(f"emulated-{i + 1}") for i in range(hosts))
    rule_paths, _ = rules_of(planned, REPO)
    plan = RunPlan(targets=targets, tests=tuple(planned), rule_paths=rule_paths)
    sink = ReportDirectory(out, [ResultsJsonReporter(), JUnitReporter(), NavigatorReporter(), HtmlReporter(out)])
    runner = Runner(plan, targets=factory, execute=execute, attribute=attribute,
                    rules=load_rule_set(rule_paths), sink=sink, new_marker=new_run_marker, max_hosts=max_hosts)
    from datetime import UTC, datetime

    initial = RunResult(run_id=f"bench-{hosts}-{max_hosts}", mode=RunMode.RUN, started=datetime.now(UTC),
                        harness_version="bench", operator="bench")
    t0, c0 = time.perf_counter(), time.process_time()
    run = runner.run(initial)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    overheads, own, trips = [], [], []
    for t in run.tests:
        test_wall = (t.ended - t.started).total_seconds()
        steps = sum(((s.ended - s.started).total_seconds() for s in t.steps if s.started and s.ended), 0.0)
        own.append(steps)
        # The time the expected telemetry took to appear: from the last command's end until the
        # newest event the verdicts cite was logged (TimeCreated) and visible (+ delivery delay).
        ends = [s.ended for s in t.steps if s.ended]
        cited = [r.time for v in t.event_verdicts for r in v.evidence if r.time is not None]
        appear = max(0.0, (max(cited) - max(ends)).total_seconds() + delay) if ends and cited else delay
        overheads.append(max(0.0, test_wall - steps - appear))
        trips.append(t.round_trips)
    http = sum(s.stats.http_requests for s in factory.servers)
    commands = sum(s.stats.count("Command") for s in factory.servers) or float("nan")
    statuses = {t.status.value for t in run.tests}
    return {
        "hosts": hosts, "tests": len(run.tests), "wall": wall, "cpu": cpu, "overhead": statistics.mean(overheads),
        "overhead_p90": sorted(overheads)[int(0.9 * (len(overheads) - 1))], "own": statistics.mean(own),
        "trips": statistics.mean(trips), "http": http / commands,
        "statuses": ",".join(sorted(statuses)),
    }


def _report(n: int, delay: float, planned: list[PlannedTest], processes: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        single = one_run(1, planned, delay, Path(tmp) / "one", 1, processes)
        serial = one_run(n, planned, delay, Path(tmp) / "serial", 1, processes)
        many = one_run(n, planned, delay, Path(tmp) / "parallel", n, processes)
    runs = (single, serial, many)
    rows = [
        ("tests run", *(f"{r['tests']}" for r in runs)),
        ("outcomes", *(r["statuses"] for r in runs)),
        ("wall time (s)", *(f"{r['wall']:.2f}" for r in runs)),
        ("CPU time of this process, harness + emulated hosts (s)", *(f"{r['cpu']:.2f}" for r in runs)),
        ("atomic's own commands per test (s)", *(f"{r['own']:.3f}" for r in runs)),
        ("harness overhead per test, mean (s)", *(f"{r['overhead']:.3f}" for r in runs)),
        ("harness overhead per test, p90 (s)", *(f"{r['overhead_p90']:.3f}" for r in runs)),
        ("transport round trips per test", *(f"{r['trips']:.1f}" for r in runs)),
        ("HTTP requests per round trip", *(f"{r['http']:.2f}" if r["http"] == r["http"] else "-" for r in runs)),
    ]
    where = "each in its own process (as lab hosts are)" if processes else "in this process"
    print(f"\n== emulated hosts {where}; event delivery delay {delay:g} s (events become visible this long "
          "after they are written)")
    width = max(len(r[0]) for r in rows)
    heads = ("1 host", f"{n} hosts, 1 at a time", f"{n} hosts parallel")
    cols = [max(len(h), *(len(r[i + 1]) for r in rows)) for i, h in enumerate(heads)]
    print(f"{'':{width}}  " + "  ".join(f"{h:>{c}}" for h, c in zip(heads, cols, strict=True)))
    for row in rows:
        print(f"{row[0]:{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(row[1:], cols, strict=True)))
    print(f"{n} hosts: {serial['wall']:.2f}s one after another (max_hosts=1, measured) vs {many['wall']:.2f}s "
          f"in parallel (max_hosts={n}): speed-up x{serial['wall'] / many['wall']:.2f} (ideal x{n})")
    share = single["overhead"] / max(1e-9, single["overhead"] + single["own"] + delay)
    print(f"overhead share of a test (1 host): {share:.0%}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--delay", type=float, nargs="+", default=[0.0, 1.0],
                    help="emulated event delivery delays (s) to run the three runs with (default 0 and 1)")
    ap.add_argument("--tests", nargs="*", default=None, metavar="GUID", help="tests to run (default: DEFAULT_TESTS)")
    ap.add_argument("--all-tests", action="store_true", help="run every T1046 test")
    args = ap.parse_args()
    wanted = set() if args.all_tests else set(args.tests if args.tests is not None else DEFAULT_TESTS)
    files = discover_atomics([REPO / "atomics" / "T1046"])
    exp = {g: t for f in discover_expectations(REPO) for g, t in f.tests.items()}
    tests = [t for f in files for t in f.tests if not wanted or t.guid in wanted]
    planned = [PlannedTest(t, exp.get(t.guid)) for t in tests]
    n = args.hosts
    for delay in args.delay:
        _report(n, delay, planned, False)
        _report(n, delay, planned, True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
