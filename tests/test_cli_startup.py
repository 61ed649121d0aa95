"""Instant CLI: commands import only what they use (issue 15). Structural, not timed: the modules a
command loads are checked; bench/bench_startup.py measures the time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "detections" / "sumo" / "t1046_network_service_discovery.sumo"

#: Libraries that only some commands need: never loaded to print help or lint a Sumo rule.
HEAVY = ("sigma", "jinja2", "pypsrp", "requests", "paramiko", "keyring", "jsonschema", "lxml", "evtx", "rich",
         "yaml", "sqlite3", "harness.detect.sumo.compiler", "harness.runner", "harness.emulated")


def _loaded(argv: list[str]) -> set[str]:
    code = (
        "import json, sys\nfrom harness.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in mods))


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["detect", "--help"], ["emulate", "--help"]])
def test_help_loads_no_heavy_library(argv: list[str]) -> None:
    assert _heavy(_loaded(argv)) == []


def test_lint_of_a_sumo_rule_loads_neither_sigma_nor_the_compiler() -> None:
    mods = _loaded(["lint", str(RULE)])
    assert "harness.detect.sumo.parser" in mods  # it did lint
    assert _heavy(mods) == []
