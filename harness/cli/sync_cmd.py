"""``atomiclab sync --lab lab.yaml [--tests ...]``: copy the payloads a selection references to each
target's atomics folder (checksums, only what changed); printing only, the work is in
``harness.execution.sync``. ``run --sync`` does the same when it opens each target (the emulated host
included)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="copy the payloads (src/, bin/, ExternalPayloads) of the selected tests to each lab target",
        description="Copy the files the selected tests reference (their technique folder's src/ and bin/, and "
        "ExternalPayloads files they name) to each target's atomics folder (lab.yaml atomics_folder, default "
        "C:\\AtomicRedTeam\\atomics or /tmp/AtomicRedTeam/atomics): WinRM file copy or SFTP, SHA-256 compared "
        "before and after, only what changed. Exit 0 when every target is in sync, 2 on a usage or copy error.",
    )
    p.add_argument("--lab", type=Path, required=True, help="lab.yaml with the targets")
    p.add_argument("--tests", nargs="+", default=[], metavar="SELECTOR", help="T1046, T1046-3, a GUID or a name "
                   "(default: every test)")
    p.add_argument("--atomics", nargs="+", type=Path, default=None, metavar="PATH",
                   help="technique files or folders, an atomics/ folder or a checkout (default: $ATOMICLAB_ATOMICS, "
                   "else the project's atomics/)")
    p.add_argument("--target", action="append", default=[], metavar="NAME", help="only this target (repeatable)")
    p.set_defaults(handler=run_sync)


def run_sync(args: argparse.Namespace) -> int:
    from harness.content.atomics import discover_atomics
    from harness.content.discovery import default_atomics
    from harness.content.labconfig import load_lab_config
    from harness.content.project import ATOMICS_DIR, content_root
    from harness.execution.sync import payloads_for
    from harness.plan import select_tests
    from harness.targets import LabTargetFactory, sync_target

    lab = load_lab_config(args.lab)
    paths = args.atomics or list(lab.atomics) or default_atomics() or [content_root() / ATOMICS_DIR]
    tests = select_tests(discover_atomics(paths), args.tests)
    payloads = payloads_for(tests)
    targets = [lab.target(n) for n in args.target] if args.target else list(lab.targets)
    print(f"{len(payloads)} payload file(s) for {len(tests)} test(s)")
    factory = LabTargetFactory(lab)
    for target in targets:
        transport = factory.connect(target)
        try:
            report = sync_target(target, transport, payloads)
        finally:
            transport.close()
        print(f"{target.name}: {len(report.copied)} copied ({report.bytes_copied} bytes), "
              f"{len(report.unchanged)} unchanged")
    return 0
