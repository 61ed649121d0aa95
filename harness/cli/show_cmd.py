"""``atomiclab show SELECTOR...``: a test's details with resolved arguments, as Invoke-AtomicTest
``-ShowDetails`` prints them (``--brief``: ``-ShowDetailsBrief``, one ``T1046-3 Name`` line per test).

Selectors are those of ``run --tests``: ``T1046``, ``T1046-3``, a GUID or a name. Arguments resolve
as in a run (YAML default < lab.yaml ``input_arguments`` < ``--arg``), ``PathToAtomicsFolder`` becomes
the target's atomics folder (``--target`` of ``--lab``, else the default of ``--platform``). Printing
only: the rendering is ``harness.execution.lifecycle.render_test``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import input_override
from harness.textsafe import for_terminal


def _line(text: str = "") -> None:
    """One line of output, terminal controls from content (names, commands) made visible."""
    print(for_terminal(text))


def register(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="a test's details with resolved arguments (like Invoke-AtomicTest -ShowDetails)",
        description="Show atomic tests as they would run: description, input arguments with the values used, "
        "prerequisites, command and cleanup with arguments and PathToAtomicsFolder resolved. Nothing runs.",
    )
    p.add_argument("selectors", nargs="+", metavar="SELECTOR", help="T1046, T1046-3, T1046-1,2, a GUID or a name")
    p.add_argument("--atomics", nargs="+", type=Path, default=None, metavar="PATH",
                   help="technique files or folders, an atomics/ folder or a checkout (default: $ATOMICLAB_ATOMICS, "
                   "else the project's atomics/)")
    p.add_argument("--arg", action="append", type=input_override, default=[], metavar="[GUID:]NAME=VALUE",
                   help="override an input argument (repeatable)")
    p.add_argument("--lab", type=Path, default=None, help="lab.yaml: its input_arguments and targets")
    p.add_argument("--target", default=None, help="target of --lab whose platform and atomics_folder apply")
    p.add_argument("--platform", choices=("windows", "linux", "macos"), default=None,
                   help="platform whose default atomics folder applies (default: the test's first platform)")
    p.add_argument("--brief", action="store_true", help="one line per test: T1046-3 Name")
    p.set_defaults(handler=run_show)


def run_show(args: argparse.Namespace) -> int:
    from harness.content.atomics import discover_atomics
    from harness.content.discovery import default_atomics
    from harness.content.labconfig import load_lab_config
    from harness.content.project import ATOMICS_DIR, content_root
    from harness.errors import ContentError
    from harness.execution.lifecycle import render_test
    from harness.execution.modes import ExecutionSettings
    from harness.plan import PlannedTest, number_in_technique, resolve_arguments, select_tests

    lab = load_lab_config(args.lab) if args.lab else None
    paths = args.atomics or (list(lab.atomics) if lab else []) or default_atomics() or [content_root() / ATOMICS_DIR]
    files = discover_atomics(paths)
    tests = select_tests(files, args.selectors)
    if args.target and lab is None:
        raise ContentError("--target names a target of --lab: give --lab lab.yaml")
    target = lab.target(args.target) if lab and args.target else None
    arguments = resolve_arguments([PlannedTest(t) for t in tests], lab=lab.input_arguments if lab else None,
                                  lab_source=lab.source if lab else None, cli=args.arg)
    titles = {f.technique: f.display_name for f in files}
    for test in tests:
        test_id = f"{test.technique}-{number_in_technique(files, test)} {test.name}"
        if args.brief:
            _line(test_id)
            continue
        platform = target.platform if target else args.platform or (test.platforms[0] if test.platforms else None)
        settings = ExecutionSettings(atomics_folder=target.atomics_folder if target else None)
        rendered = render_test(test, arguments.get(test.guid, {}), platform=platform, settings=settings)
        _print_details(test, test_id, titles.get(test.technique, ""), rendered, platform)
    return 0


def _block(label: str, text: str | None) -> None:
    if text is None:
        return
    _line(f"{label}:")
    for line in text.strip("\n").splitlines() or [""]:
        _line(f"  {line}")


def _print_details(test: Any, test_id: str, title: str, rendered: Any, platform: str | None) -> None:
    _line(f"[BEGIN TEST] {test_id}")
    _line(f"Technique: {title} {test.technique}".replace("  ", " "))
    _line(f"Atomic Test GUID: {test.guid}")
    _line(f"Source: {test.source}:{test.line}")
    _line(f"Platforms: {', '.join(test.platforms)}")
    _line(f"Executor: {test.executor.name.value}")
    _line(f"ElevationRequired: {test.executor.elevation_required}")
    _line(f"PathToAtomicsFolder: {rendered.atomics_folder} (target platform: {platform or 'unknown'})")
    _block("Description", " ".join(test.description.split()) or "-")
    if rendered.arguments:
        _line("Input arguments:")
        for name, arg_type, value in rendered.arguments:
            _line(f"  {name} ({arg_type}) = {value}")
    for description, check, get in rendered.prereqs:
        _block("Dependency", description)
        _block("  Check prereq command", check)
        _block("  Get prereq command", get)
    if test.executor.steps and rendered.command is None:
        _block("Manual steps", test.executor.steps)
    _block("Command", rendered.command)
    _block("Cleanup command", rendered.cleanup)
    _line(f"[END TEST] {test_id}")
    _line()
