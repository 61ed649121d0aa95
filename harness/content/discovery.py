"""Which files are atomics: the layout of an Atomic Red Team checkout, as Invoke-AtomicRedTeam reads it.

Contract:

* ``expand_atomics(paths)`` turns each given path into technique files, in this order of tests:

  - a file: itself (the user named it);
  - a repository root (a folder holding an ``atomics/`` folder of technique folders): that ``atomics/``;
  - a technique folder ``X/`` holding ``X/X.yaml``: that file;
  - an atomics folder (sub-folders ``X/`` holding ``X/X.yaml``): those files, sorted by folder name.
    This is how Invoke-AtomicRedTeam finds techniques: ``Join-Path $PathToAtomicsFolder
    "\\$AT\\$AT.yaml"`` (Public/Invoke-AtomicTest.ps1), so ``Indexes/``, ``src/``, ``bin/`` and any other
    YAML in the checkout are never content;
  - any other folder: its YAML files, recursively, except those below ``Indexes/``, ``src/``, ``bin/``
    or ``ExternalPayloads/`` folders (payloads and generated indexes, not technique files).

* ``is_payload_yaml(path)`` says whether a YAML file lies in one of those non-content folders of an
  atomics checkout (the pytest plugin collects files one by one and asks this).
* ``default_atomics()`` is ``$ATOMICLAB_ATOMICS`` (a path, or several separated by ``os.pathsep``)
  when set, else None: the caller's own default applies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import ContentError

#: Environment variable naming the default atomics path (file, technique folder, atomics folder or
#: repository root).
ATOMICS_ENV = "ATOMICLAB_ATOMICS"

YAML_SUFFIXES = (".yaml", ".yml")

#: Folders of an Atomic Red Team checkout that hold payloads or generated indexes, never technique
#: files (upstream: ``atomics/Indexes/*.yaml``, ``atomics/T1609/src/busybox.yaml`` ...).
NON_CONTENT_DIRS = frozenset({"Indexes", "src", "bin", "ExternalPayloads"})


def technique_file(folder: Path) -> Path | None:
    """``folder/<folder name>.yaml`` (or ``.yml``) when it exists: the folder is a technique folder."""
    for suffix in YAML_SUFFIXES:
        candidate = folder / f"{folder.name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def technique_files(atomics_folder: Path) -> list[Path]:
    """The technique files of an atomics folder (``X/X.yaml`` for each sub-folder ``X``), sorted."""
    out: list[Path] = []
    try:
        children = sorted(p for p in atomics_folder.iterdir() if p.is_dir())
    except OSError:
        return out
    for child in children:
        if child.name in NON_CONTENT_DIRS:
            continue
        found = technique_file(child)
        if found is not None:
            out.append(found)
    return out


def atomics_folder_of_root(folder: Path) -> Path | None:
    """``folder/atomics`` when ``folder`` is a repository root (its ``atomics/`` holds technique folders)."""
    candidate = folder / "atomics"
    return candidate if candidate.is_dir() and technique_files(candidate) else None


def is_payload_yaml(path: Path) -> bool:
    """True when ``path`` lies below a non-content folder of a technique folder or an atomics folder
    (``atomics/Indexes/...``, ``atomics/T1609/src/...``): a payload or an index, not a technique."""
    for ancestor in list(path.parents)[:6]:
        if ancestor.name not in NON_CONTENT_DIRS:
            continue
        parent = ancestor.parent
        if ancestor.name == "Indexes" or technique_file(parent) is not None or technique_files(parent):
            return True
    return False


def _recursive(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in NON_CONTENT_DIRS)
        found.extend(Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(YAML_SUFFIXES))
    return found


def expand_folder(folder: Path) -> list[Path]:
    """The technique files a folder stands for (see the module contract)."""
    root_atomics = atomics_folder_of_root(folder)
    if root_atomics is not None:
        return technique_files(root_atomics)
    own = technique_file(folder)
    if own is not None:
        return [own]
    listed = technique_files(folder)
    return listed if listed else _recursive(folder)


def expand_atomics(paths: Sequence[Path]) -> list[Path]:
    """``paths`` expanded to atomics files (files as given, folders per the module contract), without
    duplicates. A folder that yields nothing while nothing else was found is a ContentError naming it:
    listing or running nothing would hide a wrong path."""
    out: list[Path] = []
    empty: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = expand_folder(p)
            if not found:
                empty.append(p)
            out.extend(found)
        else:
            out.append(p)
    if not out and empty:
        raise ContentError(
            "folder holds no .yaml or .yml files of atomic tests",
            file=str(empty[0]),
            hint="point at a technique file, a technique folder (atomics/T1046), an atomics/ folder "
            "or an Atomic Red Team checkout",
        )
    return list(dict.fromkeys(out))


def default_atomics(environ: Mapping[str, str] | None = None) -> list[Path] | None:
    """The paths ``$ATOMICLAB_ATOMICS`` names (``os.pathsep``-separated), or None when unset/empty."""
    env = os.environ if environ is None else environ
    raw = env.get(ATOMICS_ENV, "").strip()
    if not raw:
        return None
    return [Path(os.path.expanduser(p)) for p in raw.split(os.pathsep) if p.strip()]
