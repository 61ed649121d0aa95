"""Run benchmark against emulated hosts: harness overhead per test, round trips per test, and wall
time for 1 host versus 8 hosts in parallel, printed side by side.

    python bench/bench_run.py [--hosts 8] [--delay 0.5] [--tests GUID ...]

* overhead per test = test wall time - time of its own remote commands (prerequisites, command,
  cleanup) - the host's event delivery delay (``--delay``, the emulated ``delivery_delay_s``): what
  the harness adds (bookmark, telemetry polling granularity, attribution, rules, verdicts, reports);
* round trips per test = transport commands (atomic + telemetry queries) and HTTP requests seen by
  the emulated WinRM server;
* parallel speed-up = (wall time of N hosts run one after another, estimated as N x 1-host wall)
  / (wall time of N hosts in parallel). Ideal is N; the pool is bounded by --max-hosts.

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


def one_run(hosts: int, planned: list[PlannedTest], delay: float, out: Path, max_hosts: int) -> dict:
    factory = EmulatedTargetFactory({"delivery_delay_s": delay})
    targets = tuple(factory.target(f"emulated-{i + 1}") for i in range(hosts))
    rule_paths, _ = rules_of(planned, REPO)
    plan = RunPlan(targets=targets, tests=tuple(planned), rule_paths=rule_paths)
    sink = ReportDirectory(out, [ResultsJsonReporter(), JUnitReporter(), NavigatorReporter(), HtmlReporter(out)])
    runner = Runner(plan, targets=factory, execute=execute, attribute=attribute,
                    rules=load_rule_set(rule_paths), sink=sink, new_marker=new_run_marker, max_hosts=max_hosts)
    from datetime import UTC, datetime

    initial = RunResult(run_id=f"bench-{hosts}", mode=RunMode.RUN, started=datetime.now(UTC),
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
    ap.add_argument("--max-hosts", type=int, default=8)
    ap.add_argument("--tests", nargs="*", default=[])
    args = ap.parse_args()
    files = discover_atomics([REPO / "atomics" / "T1046"])
    exp = {g: t for f in discover_expectations(REPO) for g, t in f.tests.items()}
    tests = [t for f in files for t in f.tests if not args.tests or t.guid in args.tests]
    planned = [PlannedTest(t, exp.get(t.guid)) for t in tests]
    with tempfile.TemporaryDirectory() as tmp:
        single = one_run(1, planned, args.delay, Path(tmp) / "one", args.max_hosts)
        many = one_run(args.hosts, planned, args.delay, Path(tmp) / "many", args.max_hosts)
    rows = [
        ("tests run", f"{single['tests']}", f"{many['tests']}"),
        ("outcomes", single["statuses"], many["statuses"]),
        ("wall time (s)", f"{single['wall']:.2f}", f"{many['wall']:.2f}"),
        ("atomic's own commands per test (s)", f"{single['own']:.3f}", f"{many['own']:.3f}"),
        ("harness overhead per test, mean (s)", f"{single['overhead']:.3f}", f"{many['overhead']:.3f}"),
        ("harness overhead per test, p90 (s)", f"{single['overhead_p90']:.3f}", f"{many['overhead_p90']:.3f}"),
        ("transport round trips per test", f"{single['trips']:.1f}", f"{many['trips']:.1f}"),
        ("HTTP requests per test", f"{single['http']:.1f}", f"{many['http']:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'1 host':>12}  {f'{args.hosts} hosts':>12}")
    for name, a, b in rows:
        print(f"{name:{width}}  {a:>12}  {b:>12}")
    serial = single["wall"] * args.hosts
    print(f"\n{args.hosts} hosts in parallel: {many['wall']:.2f}s vs {serial:.2f}s one after another "
          f"(estimated): speed-up x{serial / many['wall']:.2f} (ideal x{min(args.hosts, args.max_hosts)})")
    print(f"overhead share of a test (1 host): {single['overhead'] / max(1e-9, single['overhead'] + single['own']):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
