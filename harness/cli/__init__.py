"""The ``atomiclab`` command line: argument parsing and printing only.

Each sub-command lives in a small module of this package exposing ``register(subparsers)``; the
registered handler receives the parsed ``argparse.Namespace`` and returns the exit code. Domain work
happens in the core packages; these modules only turn arguments into calls and results into text.

Exit codes: 0 success, 1 a judged failure (tests failed, lint findings, verify mismatch),
2 usage/configuration/input errors (one line, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import HarnessError

#: Sub-command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.cli.run_cmds",
    "harness.cli.content_cmds",
    "harness.cli.events_cmd",
    "harness.cli.detect_cmds",
    "harness.cli.emulate_cmd",
    "harness.cli.lab_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (its default) and never prints a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="atomiclab",
        description="Run atomic tests, collect Windows telemetry, prove detections fire.",
    )
    parser.add_argument("--version", action="version", version=f"atomiclab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency: let it surface
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = handler(args)
    except HarnessError as exc:
        print(f"atomiclab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atomiclab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
