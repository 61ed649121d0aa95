"""``atomiclab validate`` over an Atomic Red Team checkout: the old way vs the current one, side by side.

Baseline (as before issue 12): every YAML file below the folder, Indexes/ and src/ included, parsed
by PyYAML's pure-Python parser, once to classify it and once more to check it. Current:
``validate_paths`` as shipped (technique files only, LibYAML's parser, one parse per file).

    python bench/bench_validate.py [ATOMICS_FOLDER]   (default: $ATOMICLAB_ART_CHECKOUT/atomics)

Target (issue 12): the whole upstream atomics folder in under 10 s on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from harness.content import yamldoc
from harness.content.atomics import check_atomic_file, lint_atomic_file
from harness.content.validate import validate_paths


class _PureLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, without timestamps (what yamldoc used before)."""


_PureLoader.yaml_implicit_resolvers = yamldoc._Loader.yaml_implicit_resolvers


def baseline(folder: Path) -> int:
    """The old validate loop: every YAML file, pure-Python parser, parsed twice."""
    current = yamldoc._Loader
    yamldoc._Loader = _PureLoader  # type: ignore[misc]
    try:
        problems = 0
        for path in sorted(folder.rglob("*.yaml")):
            doc = yamldoc.load_yaml(yamldoc.read_text(path), file=str(path))  # classify
            if isinstance(doc.data, dict) and "atomic_tests" in doc.data and "attack_technique" in doc.data:
                checked = check_atomic_file(path)  # parsed again
                problems += len(checked.problems) + len(lint_atomic_file(checked))
            else:
                problems += 1  # "neither an atomics file nor an expectations file"
        return problems
    finally:
        yamldoc._Loader = current  # type: ignore[misc]


def current(folder: Path) -> int:
    return len(validate_paths([folder]).problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get("ATOMICLAB_ART_CHECKOUT")
    parser.add_argument("folder", nargs="?", type=Path, default=Path(env) / "atomics" if env else None)
    args = parser.parse_args()
    if args.folder is None or not args.folder.is_dir():
        print("give an atomics folder or set ATOMICLAB_ART_CHECKOUT", file=sys.stderr)
        return 2
    timings = {}
    for name, fn in (("baseline", baseline), ("current", current)):
        start = time.perf_counter()
        problems = fn(args.folder)
        timings[name] = time.perf_counter() - start
        print(f"{name:9s} {timings[name]:7.2f} s  {problems} problem(s)")
    print(f"ratio baseline/current: {timings['baseline'] / timings['current']:.1f}x "
          f"(target: current under 10 s: {'met' if timings['current'] < 10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
