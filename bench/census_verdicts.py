"""Verdict census: every upstream Windows atomic through the real runner on the emulated host.

    python bench/census_verdicts.py PATH/TO/atomic-red-team[/atomics] [--partitions 4] [--budget 3]
        [--timeout 20] [--technique T1082 ...] [--out DIR] [--json FILE]

Runs the tests of every Windows atomics file (all executors; non-Windows and manual ones end
skipped) with ``harness.runner.Runner`` on in-process emulated hosts (``--partitions`` hosts, each
running its share in sequence), default input arguments, no expectations files (each test is
judged on its baseline), and prints:

* counts per verdict and per failure kind, and the wall time;
* the two issue-11 invariants, as counts that must be 0:
  - passed tests whose process tree ran a step the emulated host does not model;
  - failed tests whose reason is a "not recognized" / CommandNotFoundException error about a name a
    stock Windows Server 2022 has (``profiles/stock_server2022.yaml`` programs, PowerShell 5.1
    keywords and built-in aliases of ``harness.emulated.ps_stock``), i.e. a failure the model
    invented;
* the most frequent unmodelled steps left.

The telemetry budget is short (``--budget``): the emulated host logs synchronously, so a longer
budget only waits longer for events that will not come. No assertions: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.content.atomics import discover_atomics  # noqa: E402
from harness.emulated.ps_stock import ALIASES, KEYWORDS  # noqa: E402
from harness.emulated.tools import load_profiles  # noqa: E402
from harness.execution.executors import new_run_marker  # noqa: E402
from harness.model import utcnow  # noqa: E402
from harness.plan import PlannedTest, RunPlan  # noqa: E402
from harness.reporting.base import ReportDirectory  # noqa: E402
from harness.reporting.results_json import ResultsJsonReporter  # noqa: E402
from harness.results import RunMode, RunResult, TestResult, TestStatus  # noqa: E402
from harness.runner import RuleSet, Runner  # noqa: E402
from harness.targets import EmulatedTargetFactory, attribute, execute  # noqa: E402

_NOT_RECOGNIZED = re.compile(
    r"'([^']+)' is not recognized as an internal or external command"
    r"|The term '([^']+)' is not recognized as the name of a cmdlet"
)


def stock_names() -> set[str]:
    """Lower-case names a stock Windows Server 2022 runs: programs (with and without .exe), aliases, keywords."""
    names = set(ALIASES) | set(KEYWORDS)
    for p in load_profiles():
        base = p.name.lower()
        names |= {base, base.rsplit(".", 1)[0]}
    return names


def invented_failure(t: TestResult, stock: set[str]) -> str | None:
    """The stock name a failed test's reason says was not recognized, if any."""
    if t.status is not TestStatus.FAILED:
        return None
    for m in _NOT_RECOGNIZED.finditer(t.reason):
        name = (m.group(1) or m.group(2) or "").lower()
        base = name.replace("/", "\\").rsplit("\\", 1)[-1]
        if base in stock or name in stock:
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("atomics", type=Path)
    ap.add_argument("--partitions", type=int, default=4, help="emulated hosts run in parallel (default 4)")
    ap.add_argument("--budget", type=float, default=3.0, help="telemetry budget per test, seconds (default 3)")
    ap.add_argument("--timeout", type=float, default=20.0, help="deadline of each remote command (default 20)")
    ap.add_argument("--technique", action="append", default=[], help="only these techniques (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="report folder root (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="write the census as JSON here")
    args = ap.parse_args(argv)
    root = args.atomics / "atomics" if (args.atomics / "atomics").is_dir() else args.atomics
    folders = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"T\d{4}(\.\d{3})?", p.name))
    if args.technique:
        wanted = {t.upper() for t in args.technique}
        folders = [f for f in folders if f.name.upper() in wanted or f.name.split(".")[0].upper() in wanted]
    planned: list[PlannedTest] = []
    unreadable = 0
    for f in folders:
        try:
            files = discover_atomics([f])
        except Exception:  # a bad upstream file: counted, not fatal for the census
            unreadable += 1
            continue
        planned += [PlannedTest(t) for a in files for t in a.tests if "windows" in t.platforms]
    if not planned:
        print(f"{args.atomics}: no Windows atomics found", file=sys.stderr)
        return 2
    out_root = args.out or Path(tempfile.mkdtemp(prefix="atomiclab-census-"))
    parts = [planned[i :: args.partitions] for i in range(args.partitions)]
    results: list[RunResult] = []
    lock = threading.Lock()
    started = time.monotonic()

    def run_part(n: int, tests: list[PlannedTest]) -> None:
        factory = EmulatedTargetFactory()
        plan = RunPlan(
            targets=(factory.target(f"emulated-{n + 1}"),), tests=tuple(tests), default_budget_s=args.budget,
            command_timeout_s=args.timeout,
        )
        out = out_root / f"part-{n + 1}"
        sink = ReportDirectory(out, [ResultsJsonReporter()])
        runner = Runner(plan, targets=factory, execute=execute, attribute=attribute, rules=RuleSet(), sink=sink,
                        new_marker=new_run_marker)
        initial = RunResult(run_id=f"census-{n + 1}", mode=RunMode.RUN, started=utcnow(), harness_version="census",
                            operator="census")
        run = runner.run(initial)
        with lock:
            results.append(run)

    threads = [threading.Thread(target=run_part, args=(n, p)) for n, p in enumerate(parts) if p]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    tests = [t for r in results for t in r.tests]
    stock = stock_names()
    statuses = Counter(t.status.value for t in tests)
    kinds = Counter(f"{t.status.value}/{t.failure.value if t.failure else '-'}" for t in tests)
    passed_unmodelled = [t for t in tests if t.status is TestStatus.PASSED and t.not_modelled]
    invented = [(t, n) for t in tests if (n := invented_failure(t, stock)) is not None]
    gaps = Counter(what for t in tests for what in {g.what for g in t.not_modelled})  # tests per step
    census: dict[str, Any] = {
        "tests": len(tests),
        "unreadable_files": unreadable,
        "wall_s": round(wall, 1),
        "statuses": dict(statuses),
        "kinds": dict(kinds),
        "passed_with_unmodelled_step": len(passed_unmodelled),
        "failed_on_a_stock_step": len(invented),
        "failed_on_a_stock_step_examples": [f"{t.name}: {n}" for t, n in invented[:10]],
        "top_unmodelled": gaps.most_common(25),
        "reports": str(out_root),
    }
    print(f"Windows atomics: {len(tests)} tests ({unreadable} unreadable files), wall {wall:.0f} s, "
          f"{args.partitions} emulated hosts, budget {args.budget} s")
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    for k, v in sorted(kinds.items()):
        print(f"  {k:<40} {v}")
    print(f"passed with an unmodelled step: {len(passed_unmodelled)}   (must be 0)")
    print(f"failed on a step a stock Windows Server 2022 runs: {len(invented)}   (must be 0)")
    for t, n in invented[:10]:
        print(f"  {t.name}: {n}")
    print("top unmodelled steps (tests):")
    for what, n in gaps.most_common(15):
        print(f"  {n:5}  {what}")
    if args.json:
        args.json.write_text(json.dumps(census, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
