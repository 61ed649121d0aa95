"""Run benchmark against emulated hosts: harness overhead per test, round trips per test, and wall
time for 1 host versus 8 hosts in parallel, printed side by side.

    python bench/bench_run.py [--hosts 8] [--delay 0.5] [--tests GUID ...] [--all-tests]

* overhead per test = test wall time - time of its own remote commands (prerequisites, command,
  cleanup) - the host's event delivery delay (``--delay``, the emulated ``delivery_delay_s``): what
  the harness adds (bookmark, telemetry polling granularity, attribution, rules, verdicts, reports);
* round trips per test = transport commands (atomic + telemetry queries) and HTTP requests seen by
  the emulated WinRM server;
* parallel speed-up = wall time of N hosts run one after another (measured: the same N hosts with
  max_hosts=1) / wall time of the same N hosts in parallel (max_hosts=N), both in this process,
  side by side. Ideal is N.

By default a small set of quick T1046 tests runs (``DEFAULT_TESTS``) so the three runs (1 host,
N hosts sequential, N hosts parallel) finish in a couple of minutes; ``--all-tests`` runs all five.

No assertions: this prints numbers and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.content.atomics import discover_atomics  # noqa: E402
from harness.content.expectations import discover_expectations  # noqa: E402
from harness.execution.executors import new_run_marker  # noqa: E402
from harness.plan import PlannedTest, RunPlan, rules_of  # noqa: E402
from harness.reporting.base import ReportDirectory  # noqa: E402
from harness.reporting.html import HtmlReporter  # noqa: E402
from harness.reporting.junit import JUnitReporter  # noqa: E402
from harness.reporting.navigator import NavigatorReporter  # noqa: E402
from harness.reporting.results_json import ResultsJsonReporter  # noqa: E402
from harness.results import RunMode, RunResult  # noqa: E402
from harness.runner import Runner  # noqa: E402
from harness.targets import EmulatedTargetFactory, attribute, execute, load_rule_set  # noqa: E402

#: Quick tests (no nmap -sV service probes): keeps the sequential N-host run short.
DEFAULT_TESTS = (
    "d52adf0b-75fa-483b-8560-5d90969c8e59",  # PowerShell TcpClient port scan
    "d7b2043f-3075-47e3-87ca-8ca224d06bec",  # netstat | findstr
)


def one_run(hosts: int, planned: list[PlannedTest], delay: float, out: Path, max_hosts: int) -> dict:
    factory = EmulatedTargetFactory({"delivery_delay_s": delay})
    targets = tuple(factory.target(f"emulated-{i + 1}") for i in range(hosts))
    rule_paths, _ = rules_of(planned, REPO)
    plan = RunPlan(targets=targets, tests=tuple(planned), rule_paths=rule_paths)
    sink = ReportDirectory(out, [ResultsJsonReporter(), JUnitReporter(), NavigatorReporter(), HtmlReporter(out)])
    runner = Runner(plan, targets=factory, execute=execute, attribute=attribute,
                    rules=load_rule_set(rule_paths), sink=sink, new_marker=new_run_marker, max_hosts=max_hosts)
    from datetime import UTC, datetime

    initial = RunResult(run_id=f"bench-{hosts}-{max_hosts}", mode=RunMode.RUN, started=datetime.now(UTC),
                        harness_version="bench", operator="bench")
    t0 = time.perf_counter()
    run = runner.run(initial)
    wall = time.perf_counter() - t0
    overheads, own, trips = [], [], []
    for t in run.tests:
        test_wall = (t.ended - t.started).total_seconds()
        steps = sum(((s.ended - s.started).total_seconds() for s in t.steps if s.started and s.ended), 0.0)
        own.append(steps)
        overheads.append(max(0.0, test_wall - steps - delay))
        trips.append(t.round_trips)
    http = sum(s.stats.http_requests for s in factory.servers)
    statuses = {t.status.value for t in run.tests}
    return {
        "hosts": hosts, "tests": len(run.tests), "wall": wall, "overhead": statistics.mean(overheads),
        "overhead_p90": sorted(overheads)[int(0.9 * (len(overheads) - 1))], "own": statistics.mean(own),
        "trips": statistics.mean(trips), "http": http / max(1, len(run.tests)), "statuses": ",".join(sorted(statuses)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--delay", type=float, default=0.0, help="emulated event delivery delay (s)")
    ap.add_argument("--tests", nargs="*", default=None, metavar="GUID", help="tests to run (default: DEFAULT_TESTS)")
    ap.add_argument("--all-tests", action="store_true", help="run every T1046 test")
    args = ap.parse_args()
    wanted = set() if args.all_tests else set(args.tests if args.tests is not None else DEFAULT_TESTS)
    files = discover_atomics([REPO / "atomics" / "T1046"])
    exp = {g: t for f in discover_expectations(REPO) for g, t in f.tests.items()}
    tests = [t for f in files for t in f.tests if not wanted or t.guid in wanted]
    planned = [PlannedTest(t, exp.get(t.guid)) for t in tests]
    n = args.hosts
    with tempfile.TemporaryDirectory() as tmp:
        single = one_run(1, planned, args.delay, Path(tmp) / "one", 1)
        serial = one_run(n, planned, args.delay, Path(tmp) / "serial", 1)
        many = one_run(n, planned, args.delay, Path(tmp) / "parallel", n)
    runs = (single, serial, many)
    rows = [
        ("tests run", *(f"{r['tests']}" for r in runs)),
        ("outcomes", *(r["statuses"] for r in runs)),
        ("wall time (s)", *(f"{r['wall']:.2f}" for r in runs)),
        ("atomic's own commands per test (s)", *(f"{r['own']:.3f}" for r in runs)),
        ("harness overhead per test, mean (s)", *(f"{r['overhead']:.3f}" for r in runs)),
        ("harness overhead per test, p90 (s)", *(f"{r['overhead_p90']:.3f}" for r in runs)),
        ("transport round trips per test", *(f"{r['trips']:.1f}" for r in runs)),
        ("HTTP requests per test", *(f"{r['http']:.1f}" for r in runs)),
    ]
    width = max(len(r[0]) for r in rows)
    heads = ("1 host", f"{n} hosts, 1 at a time", f"{n} hosts parallel")
    cols = [max(len(h), *(len(r[i + 1]) for r in rows)) for i, h in enumerate(heads)]
    print(f"{'':{width}}  " + "  ".join(f"{h:>{c}}" for h, c in zip(heads, cols, strict=True)))
    for row in rows:
        print(f"{row[0]:{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(row[1:], cols, strict=True)))
    print(f"\n{n} hosts: {serial['wall']:.2f}s one after another (max_hosts=1, measured) vs {many['wall']:.2f}s "
          f"in parallel (max_hosts={n}): speed-up x{serial['wall'] / many['wall']:.2f} (ideal x{n})")
    print(f"overhead share of a test (1 host): {single['overhead'] / max(1e-9, single['overhead'] + single['own']):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
