"""Count the building blocks upstream Windows atomics use, and how many run fully modelled.

Usage: python bench/count_building_blocks.py PATH/TO/atomic-red-team[/atomics] [--json OUT]
       [--workers N] [--timeout S] [--top N] [--technique T1234 ...]

Over every Windows test with a powershell or command_prompt executor it counts (lexically) the
programs, cmdlets, aliases, .NET types, registry and file operations used by the prerequisite
checks, the get-prerequisite commands, the commands and the cleanups (separately), then runs each
test's steps in order, with default arguments, in-process on a fresh emulated host and reports the
share of tests whose command ran with no unmodelled step, and the unmodelled blocks left.
Exit code 2 with a one-line message when the path holds no atomics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.emulated.coverage import PHASES, measure, windows_tests


def _root(path: Path) -> Path:
    return path / "atomics" if (path / "atomics").is_dir() else path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("atomics", type=Path, help="an Atomic Red Team checkout or its atomics/ folder")
    ap.add_argument("--json", type=Path, help="write the full measurement as JSON here")
    ap.add_argument("--workers", type=int, default=8, help="tests run at once (threads; default 8)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per step before it is terminated")
    ap.add_argument("--top", type=int, default=25, help="rows per ranking in the text summary")
    ap.add_argument("--technique", action="append", default=[], help="only these techniques (repeatable)")
    args = ap.parse_args(argv)
    root = _root(args.atomics)
    tests, problems = windows_tests(root)
    if args.technique:
        wanted = {t.upper() for t in args.technique}
        tests = [t for t in tests if t.technique.upper() in wanted or t.technique.split(".")[0].upper() in wanted]
    if not tests:
        print(f"{args.atomics}: no Windows powershell/command_prompt atomics found (give the checkout or its atomics/ folder)",
              file=sys.stderr)
        return 2
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"  ran {done}/{total} tests ({time.monotonic() - started:.0f} s)", file=sys.stderr)

    m = measure(tests, problems=problems, workers=args.workers, timeout_s=args.timeout, progress=progress)
    wall = time.monotonic() - started
    ok, total = m.share("command")
    print(f"Windows atomics (powershell + command_prompt): {len(tests)} tests, {len(problems)} unreadable files")
    print(f"Command fully modelled: {ok}/{total} = {100 * ok / max(total, 1):.1f}%   (wall {wall:.0f} s)")
    for phase in PHASES:
        po, pt = m.share(phase)
        print(f"  {phase:<11} steps fully modelled in {po}/{pt} tests")
    print(f"\nTop {args.top} unmodelled blocks in commands (tests affected):")
    for name, n in m.unmodelled(["command"]).most_common(args.top):
        print(f"  {n:5d}  {name}")
    print(f"\nTop {args.top} unmodelled blocks in prereq/get_prereq/cleanup (tests affected):")
    for name, n in m.unmodelled(["prereq", "get_prereq", "cleanup"]).most_common(args.top):
        print(f"  {n:5d}  {name}")
    for phase in PHASES:
        print(f"\nTop {args.top} building blocks used in {phase} steps (uses):")
        for (kind, name), n in m.blocks[phase].most_common(args.top):
            print(f"  {n:5d}  {kind:<9} {name}")
    if args.json:
        doc = m.to_json(top=max(args.top, 40))
        doc["wall_s"] = round(wall, 1)
        doc["atomics"] = str(root)
        args.json.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
