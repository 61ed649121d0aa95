"""Check content before anything runs: atomics, expectations and detection rule files.

``validate_paths(paths)`` classifies each file, runs every check and returns the problems as data
(``ContentError`` objects, ``str()`` = ``FILE:LINE: YAML-PATH: message``), in a stable order.

Checks:

* atomics: YAML, schema (unknown executors, argument types ...), ``#{arg}`` placeholders that are
  not declared (command, cleanup, steps, dependency texts), declared arguments never used, GUIDs
  that appear twice across all files checked;
* expectations: YAML, schema, conditions (modifiers, regexes), unique event ids, min <= max, the
  atomics file it names, GUIDs that file does not hold, names that differ, rule files that are missing;
* rules (files under a ``detections/`` folder, ``*.sumo``, or YAML with ``detection:``): exist, are
  not empty, and load with ``harness.detect.loader.load_detector`` when that module is installed.
  Files under an ``upstream/`` folder are the rules *as published*, kept byte for byte even when
  they do not parse (``atomiclab lint`` is the tool for them): only existence is checked there.
"""

from __future__ import annotations

import enum
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.content.atomics import (
    YAML_SUFFIXES,
    CheckedAtomics,
    check_atomic_file,
    duplicate_guids_in_docs,
    lint_atomic_file,
)
from harness.content.discovery import (
    atomics_folder_of_root,
    expand_folder,
    is_payload_yaml,
    technique_file,
    technique_files,
)
from harness.content.expectations import check_expectations_file, cross_check
from harness.content.project import ATOMICS_DIR, DETECTIONS_DIR, EXPECTATIONS_DIR, content_root
from harness.content.yamldoc import YamlDoc, load_yaml, read_text
from harness.errors import ContentError, HarnessError, RuleSyntaxError
from harness.model import AtomicFile

RULE_SUFFIXES = (".sumo", ".yml", ".yaml")
UPSTREAM_DIR = "upstream"


class ContentKind(enum.StrEnum):
    ATOMICS = "atomics"
    EXPECTATIONS = "expectations"
    RULE = "rule"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    problems: tuple[ContentError, ...]
    atomics_files: int
    tests: int
    expectation_files: int
    rules: int
    rules_loaded: int

    @property
    def ok(self) -> bool:
        return not self.problems


RuleLoader = Callable[[Path], object]


def default_paths(root: Path) -> list[Path]:
    """The project's content folders that exist under ``root``."""
    return [root / d for d in (ATOMICS_DIR, EXPECTATIONS_DIR, DETECTIONS_DIR) if (root / d).is_dir()]


def shown(path: Path) -> Path:
    """``path`` relative to the current directory when it lies below it (shorter messages)."""
    try:
        return Path(os.path.relpath(path)) if path.is_absolute() and path.resolve().is_relative_to(
            Path.cwd().resolve()) else path
    except ValueError:  # different drive on Windows
        return path


def _in_detections(path: Path) -> bool:
    return DETECTIONS_DIR in path.parts


def _classify(path: Path) -> tuple[ContentKind, YamlDoc | None] | ContentError:
    """The file's kind, with its parsed document when parsing was needed to tell."""
    if path.suffix.lower() == ".sumo" or _in_detections(path):
        return ContentKind.RULE, None
    if path.suffix.lower() not in YAML_SUFFIXES:
        return ContentError("not a content file (expected .yaml/.yml atomics or expectations, or a rule)",
                            file=str(path))
    try:
        doc = load_yaml(read_text(path), file=str(path))
    except ContentError as exc:
        if technique_file(path.parent) == path:  # X/X.yaml: report it as the atomics file it is
            return ContentKind.ATOMICS, None
        return exc
    data = doc.data
    if isinstance(data, dict):
        if "atomic_tests" in data or "attack_technique" in data:
            return ContentKind.ATOMICS, doc
        if "tests" in data or "atomics" in data:
            return ContentKind.EXPECTATIONS, doc
        if "detection" in data and "logsource" in data:
            return ContentKind.RULE, doc
    return ContentError("neither an atomics file (attack_technique, atomic_tests) nor an expectations "
                        "file (atomics, tests)", file=str(path), line=1)


def _folder_files(folder: Path) -> list[Path]:
    """Content files below ``folder``. An Atomic Red Team layout (repository root, atomics folder,
    technique folder) stands for its technique files only, as Invoke-AtomicRedTeam reads it; other
    folders are searched recursively, leaving out payload and index YAML (``src/``, ``Indexes/``)."""
    if atomics_folder_of_root(folder) or technique_file(folder) or technique_files(folder):
        return expand_folder(folder)
    return [q for q in sorted(folder.rglob("*")) if q.is_file()
            and q.suffix.lower() in (RULE_SUFFIXES if _in_detections(q) else YAML_SUFFIXES)
            and not is_payload_yaml(q)]


def _expand(paths: Sequence[Path], *, named: bool = True) -> tuple[list[Path], list[ContentError]]:
    """Files to check under ``paths``. ``named``: the user gave the paths, so when they hold no
    content file at all each empty folder is a problem (a wrong path would otherwise validate as
    clean); an empty folder beside others that hold files, or among the defaults, is fine."""
    files: list[Path] = []
    problems: list[ContentError] = []
    empty: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = _folder_files(p)
            if not found:
                empty.append(p)
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            problems.append(ContentError("no such file or folder", file=str(p), hint="check the path"))
    if named and not files:
        problems.extend(ContentError("folder holds no content files (.yaml/.yml, or .sumo rules)", file=str(p),
                                     hint="point at atomics/, expectations/ or detections/") for p in empty)
    return list(dict.fromkeys(files)), problems


def _default_rule_loader() -> RuleLoader | None:
    """``harness.detect.loader.load_detector`` if that module exists (it is optional here)."""
    name = "harness.detect.loader"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise
    loader: RuleLoader | None = getattr(module, "load_detector", None)
    return loader


def _check_rule(path: Path, load: RuleLoader | None) -> tuple[list[ContentError], bool]:
    """(problems, loaded?) for one rule file."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        return [ContentError(f"cannot read rule file: {exc.strerror or exc}", file=str(path))], False
    if not text.strip():
        return [ContentError("rule file is empty", file=str(path), line=1)], False
    if load is None or UPSTREAM_DIR in path.parts:
        return [], False
    try:
        load(path)
    except RuleSyntaxError as exc:
        where = f"{exc.file if exc.file is not None else '<rule>'}"
        if exc.line is not None:
            where += f":{exc.line}" + (f":{exc.column}" if exc.column is not None else "")
        message = exc.message.removeprefix(where + ": ")
        return [ContentError(f"rule does not parse: {message}", file=str(path), line=exc.line,
                             hint=exc.hint)], False
    except HarnessError as exc:
        return [ContentError(f"rule does not load: {exc}", file=str(path))], False
    except Exception as exc:  # a loader bug must still give one line, never a traceback
        return [ContentError(f"rule loader crashed: {type(exc).__name__}: {exc}", file=str(path),
                             hint="report this as a bug in harness.detect")], False
    return [], True


def validate_paths(paths: Sequence[Path] | None = None, *, root: Path | None = None,
                   rule_loader: RuleLoader | bool | None = True) -> ValidationReport:
    """Validate ``paths`` (files or folders; default: the content root's atomics/, expectations/,
    detections/). ``rule_loader``: True = use harness.detect.loader when present, None/False = skip
    loading rules, or a callable ``load(path)`` raising HarnessError on a bad rule."""
    named = bool(paths)
    if not paths:
        base = root or content_root()
        paths = [shown(p) for p in default_paths(base)]
    load: RuleLoader | None
    if rule_loader is True:
        load = _default_rule_loader()
    elif rule_loader is False or rule_loader is None:
        load = None
    else:
        load = rule_loader
    files, problems = _expand(paths, named=named)
    checked_atomics: list[CheckedAtomics] = []
    atomics_cache: dict[Path, AtomicFile | None] = {}
    n_expectations = n_rules = n_loaded = 0
    for path in files:
        classified = _classify(path)
        if isinstance(classified, ContentError):
            problems.append(classified)
            continue
        kind, doc = classified
        if kind is ContentKind.ATOMICS:
            checked = check_atomic_file(path, doc)
            checked_atomics.append(checked)
            atomics_cache[path.resolve()] = checked.file
            problems.extend(checked.problems)
            problems.extend(lint_atomic_file(checked))
        elif kind is ContentKind.EXPECTATIONS:
            n_expectations += 1
            exp = check_expectations_file(path)
            problems.extend(exp.problems)
            problems.extend(cross_check(exp, _root_for(path, root), atomics_cache))
        else:
            n_rules += 1
            rule_problems, loaded = _check_rule(path, load)
            problems.extend(rule_problems)
            n_loaded += loaded
    loaded_files = [c.file for c in checked_atomics if c.file is not None]
    problems.extend(duplicate_guids_in_docs([c.doc for c in checked_atomics if c.doc is not None]))
    ordered = sorted(problems, key=lambda e: (str(e.file or ""), e.line or 0, e.path or "", e.message))
    unique = list({str(e): e for e in ordered}.values())
    return ValidationReport(
        problems=tuple(unique),
        atomics_files=len(checked_atomics),
        tests=sum(len(f.tests) for f in loaded_files),
        expectation_files=n_expectations,
        rules=n_rules,
        rules_loaded=n_loaded,
    )


def _root_for(path: Path, given: Path | None) -> Path:
    """Content root an expectations file's relative paths refer to."""
    if given is not None:
        return given
    try:
        return content_root(path.resolve().parent)
    except ContentError:
        return path.resolve().parent.parent
