"""``atomiclab validate`` and ``atomiclab list``: printing only; the work is in ``harness.content``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.content.discovery import ATOMICS_ENV, default_atomics
from harness.content.project import ATOMICS_DIR, content_root

if TYPE_CHECKING:
    from harness.model import AtomicTest

COLUMNS = ("technique", "guid", "name", "platforms", "executor")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check atomics, expectations and rules (FILE:LINE: PATH: message)",
        description="Check atomics, expectations and detection rules: schema and cross-references. "
        "Prints one line per problem; exit 0 when clean, 2 otherwise.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="files or folders; an Atomic Red Team checkout, atomics/ or technique folder stands for its "
                        f"technique files (default: ${ATOMICS_ENV}, else the project's atomics/, expectations/, "
                        "detections/)")
    p.set_defaults(handler=run_validate)

    p = sub.add_parser("list", help="the atomic tests as a table",
                       description="List atomic tests: technique, GUID, name, platforms, executor.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="technique files or folders, an atomics/ folder or an Atomic Red Team checkout "
                        f"(default: ${ATOMICS_ENV}, else the project's atomics/)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(handler=run_list)


def run_validate(args: argparse.Namespace) -> int:
    from harness.content.validate import validate_paths
    report = validate_paths(args.paths or default_atomics() or None)
    for problem in report.problems:
        print(problem)
    summary = (f"{report.atomics_files} atomics file(s) with {report.tests} test(s), "
               f"{report.expectation_files} expectations file(s), {report.rules} rule file(s)"
               f" ({report.rules_loaded} loaded)")
    if report.ok:
        print(f"ok: {summary}", file=sys.stderr)
        return 0
    print(f"{len(report.problems)} problem(s) in {summary}", file=sys.stderr)
    return 2


def _row(test: AtomicTest) -> dict[str, Any]:
    return {
        "technique": test.technique,
        "guid": test.guid,
        "name": test.name,
        "platforms": list(test.platforms),
        "executor": test.executor.name.value,
        "elevation_required": test.executor.elevation_required,
        "source": test.source,
        "line": test.line,
    }


def run_list(args: argparse.Namespace) -> int:
    from harness.content.atomics import discover_atomics
    from harness.content.validate import shown
    paths = args.paths or default_atomics() or [shown(content_root() / ATOMICS_DIR)]
    rows = [_row(t) for f in discover_atomics(paths) for t in f.tests]
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    cells = [[r["technique"], r["guid"], r["name"], ",".join(r["platforms"]), r["executor"]] for r in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(*(c.upper() for c in COLUMNS), title=f"{len(rows)} atomic test(s)")
        for c in cells:
            table.add_row(*(escape(v) for v in c))
        Console().print(table)
        return 0
    # Plain aligned text when piped: stable for grep/awk and never wrapped.
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(COLUMNS)]
    for line in [[h.upper() for h in COLUMNS], *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0
