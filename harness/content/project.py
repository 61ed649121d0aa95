"""Where the project's content (atomics/, expectations/, detections/) lives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import harness
from harness.errors import ContentError

ATOMICS_DIR = "atomics"
EXPECTATIONS_DIR = "expectations"
DETECTIONS_DIR = "detections"


def is_content_root(folder: Path) -> bool:
    """A folder holding both ``atomics/`` and ``expectations/``."""
    return (folder / ATOMICS_DIR).is_dir() and (folder / EXPECTATIONS_DIR).is_dir()


def content_root(start: Path | None = None) -> Path:
    """The content root: the first folder from ``start`` (default: the current directory) upwards that
    holds ``atomics/`` and ``expectations/``; else the source checkout the ``harness`` package was
    installed from (editable install); else ContentError."""
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if is_content_root(folder):
            return folder
    checkout = Path(harness.__file__).resolve().parent.parent
    if is_content_root(checkout):
        return checkout
    raise ContentError(
        f"no atomiclab content found from {here} upwards (a folder with atomics/ and expectations/)",
        hint="run from the project checkout, or pass the content paths explicitly")


def find_content_root(start: Path | None = None) -> Path | None:
    """Like :func:`content_root`, but None instead of an error when there is none."""
    try:
        return content_root(start)
    except ContentError:
        return None


def run_root(atomics: Sequence[Path] | None = None, cwd: Path | None = None) -> Path:
    """The folder a run's expectations/ and detections/ are read from.

    The content root holding the given atomics (``atomics/T1046`` of this project carries its
    expectations), else the content root from the working directory upwards (or the editable
    checkout), else the working directory itself: a user's own Atomic Red Team checkout runs with
    no expectations and no rules, from anywhere, with a regular install.
    """
    here = (cwd or Path.cwd()).resolve()
    for path in atomics or ():
        found = _root_above(path.resolve())
        if found is not None:
            return found
    return find_content_root(here) or here


def _root_above(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if is_content_root(folder):
            return folder
    return None
