"""Startup of the ``atomiclab`` command: whole processes, side by side in one run.

    python bench/bench_startup.py [--repeat 7] [--baseline PATH-TO-AN-OLDER-SOURCE-TREE]

For each command: the best (minimum) wall time and CPU time (user + system, from the children's
rusage) over ``--repeat`` runs, and the ratio to the interpreter's own floor (``python -c pass``,
same interpreter, same site packages). With ``--baseline`` (e.g. ``git archive <rev> | tar -x -C
DIR``) the same commands also run with that tree first on ``PYTHONPATH``, and the ratio old / new is
printed. CPU time is the steadier figure on a shared machine: wall time includes waiting for a core.

No assertions: this prints numbers and ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "detections" / "sumo" / "t1046_network_service_discovery.sumo"

COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python -c pass (floor)", ("-c", "pass")),
    ("atomiclab --help", ("-m", "harness", "--help")),
    ("atomiclab lint RULE.sumo", ("-m", "harness", "lint", str(RULE))),
    ("atomiclab run --help", ("-m", "harness", "run", "--help")),
)


def _once(argv: tuple[str, ...], tree: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _best(argv: tuple[str, ...], tree: Path, repeat: int) -> tuple[float, float]:
    runs = [_once(argv, tree) for _ in range(repeat)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline", type=Path, default=None, help="an older source tree to compare with")
    args = ap.parse_args()
    trees = [("now", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    results: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(2):  # interleaved rounds: both trees see the same machine load
        for label, argv in COMMANDS:
            for name, tree in trees:
                got = _best(argv, tree, max(1, args.repeat // 2))
                prev = results.get((label, name))
                results[(label, name)] = got if prev is None else (min(prev[0], got[0]), min(prev[1], got[1]))
    floor_wall, floor_cpu = results[(COMMANDS[0][0], "now")]
    print(f"{'command':28}{'wall s':>9}{'cpu s':>8}{'cpu-floor':>10}" + (f"{'baseline cpu':>14}{'old/new':>9}"
                                                                         if args.baseline else ""))
    for label, _ in COMMANDS:
        wall, cpu = results[(label, "now")]
        line = f"{label:28}{wall:>9.3f}{cpu:>8.3f}{cpu - floor_cpu:>10.3f}"
        if args.baseline:
            _, old_cpu = results[(label, "baseline")]
            line += f"{old_cpu:>14.3f}{old_cpu / max(cpu, 1e-9):>8.1f}x"
        print(line)
    print(f"\nfloor: python -c pass takes {floor_wall:.3f}s wall, {floor_cpu:.3f}s CPU on this machine now")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
