"""Where the project's content (atomics/, expectations/, detections/) lives."""

from __future__ import annotations

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
