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
from typing import Any, NoReturn

from harness.errors import HarnessError
from harness.textsafe import for_terminal

#: Sub-command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.cli.run_cmds",
    "harness.cli.content_cmds",
    "harness.cli.show_cmd",
    "harness.cli.sync_cmd",
    "harness.cli.events_cmd",
    "harness.cli.detect_cmds",
    "harness.cli.emulate_cmd",
    "harness.cli.lab_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are exactly one line on stderr (exit 2), never usage + error.

    Sub-parsers are created with this same class (``add_subparsers`` passes ``parser_class``), so
    every sub-command reports ``PROG: error: MESSAGE (see PROG --help)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubParsers)

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", _Parser)
        return super().add_subparsers(**kwargs)

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())  # argparse messages may wrap; keep one line
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


class _SubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Sub-parser action that makes every sub-parser a ``_Parser`` whatever the caller passes."""

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        parser = super().add_parser(name, **kwargs)
        if not isinstance(parser, _Parser):  # pragma: no cover - parser_class is always _Parser
            raise TypeError(f"sub-command {name!r} must use the atomiclab parser class")
        return parser


class _Version(argparse.Action):
    """``--version``: the version is read from the package metadata only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        from harness import __version__

        parser.exit(0, f"atomiclab {__version__}\n")


def _selected_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest sub-command parser ``args`` went through (for naming it in error lines)."""
    current = parser
    while True:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = getattr(args, action.dest or "", None)
                if isinstance(chosen, str) and chosen in action.choices:
                    current = action.choices[chosen]
                    break
        else:
            return current


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="atomiclab",
        description="Run atomic tests, collect Windows telemetry, prove detections fire.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
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
    args, extras = parser.parse_known_args(argv)
    if extras:  # name the sub-command that did not accept them, not the top-level parser
        _selected_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error("a command is required")
    try:
        code = handler(args)
    except HarnessError as exc:
        # One line, whatever file content or name the message quotes (controls shown escaped).
        print(f"atomiclab: error: {for_terminal(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atomiclab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
