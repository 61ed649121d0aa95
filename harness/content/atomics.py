"""Load Atomic Red Team atomics files into the frozen model of ``harness.model``.

Contract:

* ``load_atomic_file(path)`` parses safely, validates against ``schemas/atomics.schema.json`` and
  returns an ``AtomicFile`` whose tests remember their source file and line. Any file of the
  upstream Atomic Red Team repository loads unmodified (manual executors with ``steps``, ``sh`` /
  ``bash``, multi-line commands, argument types in any case, integer/float defaults, optional keys
  left out). The first problem is raised as ``ContentError`` (``FILE:LINE: YAML-PATH: message``);
  ``check_atomic_file`` returns all of them instead.
* Cross-reference problems (``#{arg}`` placeholders, unused arguments, duplicate GUIDs) do not stop
  loading: ``lint_atomic_file`` / ``duplicate_guids_in_docs`` report them for ``atomiclab validate``,
  on every well-formed part of a file even when its schema check fails elsewhere.
* Input-argument defaults keep the exact scalar text written in YAML (``1.50`` stays ``1.50``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.content import schemacheck
from harness.content.discovery import expand_atomics
from harness.content.yamldoc import YamlDoc, YamlPath, first_problem, format_path, load_yaml, read_text
from harness.errors import ContentError
from harness.model import (
    ArgType,
    AtomicFile,
    AtomicTest,
    Dependency,
    Executor,
    ExecutorName,
    InputArgument,
)

#: ``#{name}`` as Invoke-AtomicRedTeam substitutes it (plain text replace of the exact name).
PLACEHOLDER = re.compile(r"#\{([^{}\r\n]*)\}")

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class CheckedAtomics:
    """Outcome of checking one atomics file: the model (None if it could not be built) and problems."""

    file: AtomicFile | None
    problems: tuple[ContentError, ...]
    doc: YamlDoc | None = None


def load_atomic_file(path: Path) -> AtomicFile:
    """Load one atomics file; raise ContentError with file:line for the first problem."""
    checked = check_atomic_file(path)
    if checked.problems:
        raise first_problem(checked.problems, path)
    assert checked.file is not None
    return checked.file


def check_atomic_file(path: Path, doc: YamlDoc | None = None) -> CheckedAtomics:
    """Parse and schema-check one atomics file, collecting every structural problem. ``doc``: the
    file already parsed (validate classifies files by parsing them; parsing twice doubled its time)."""
    shown = str(path)
    if doc is None:
        try:
            doc = load_yaml(read_text(path), file=shown)
        except ContentError as exc:
            return CheckedAtomics(None, (exc,))
    if doc.data is None:
        return CheckedAtomics(
            None,
            (doc.error((), "file is empty; expected an atomics file (attack_technique, display_name, atomic_tests)"),),
            doc,
        )
    problems = schemacheck.validate(doc, schemacheck.ATOMICS_SCHEMA)
    if problems:
        return CheckedAtomics(None, tuple(problems), doc)
    return CheckedAtomics(_build_file(doc), (), doc)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _build_file(doc: YamlDoc) -> AtomicFile:
    data: dict[str, Any] = doc.data
    technique = str(data["attack_technique"])
    tests = tuple(_build_test(doc, technique, index, raw) for index, raw in enumerate(data["atomic_tests"]))
    return AtomicFile(technique=technique, display_name=str(data["display_name"]), tests=tests, source=doc.file)


def _build_test(doc: YamlDoc, technique: str, index: int, raw: dict[str, Any]) -> AtomicTest:
    base: YamlPath = ("atomic_tests", index)
    args: dict[str, InputArgument] = {}
    for name, spec in (raw.get("input_arguments") or {}).items():
        default_path = (*base, "input_arguments", name, "default")
        # The scalar as written: Invoke-AtomicRedTeam substitutes text, so 1.50 must stay 1.50.
        default = "" if spec.get("default") is None else doc.scalars.get(default_path, str(spec["default"]))
        args[name] = InputArgument(
            name=name,
            description=_text(spec.get("description")),
            type=ArgType(str(spec["type"]).lower()),
            default=default,
        )
    ex = raw["executor"]
    executor = Executor(
        name=ExecutorName(ex["name"]),
        command=ex.get("command"),
        cleanup_command=ex.get("cleanup_command") or None,
        elevation_required=bool(ex.get("elevation_required", False)),
        steps=ex.get("steps"),
    )
    deps = tuple(
        Dependency(
            description=_text(d.get("description")),
            prereq_command=_text(d.get("prereq_command")),
            get_prereq_command=_text(d.get("get_prereq_command")),
        )
        for d in (raw.get("dependencies") or ())
    )
    dep_exec = raw.get("dependency_executor_name")
    return AtomicTest(
        technique=technique,
        name=str(raw["name"]),
        guid=str(raw["auto_generated_guid"]).lower(),
        description=_text(raw.get("description")),
        platforms=tuple(raw["supported_platforms"]),
        executor=executor,
        input_arguments=args,
        dependency_executor_name=ExecutorName(dep_exec) if dep_exec else None,
        dependencies=deps,
        source=doc.file,
        line=doc.line_of(base),
    )


def _raw_tests(doc: YamlDoc) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, mapping) of every test entry that is a mapping, whatever else in the file is broken."""
    data = doc.data
    tests = data.get("atomic_tests") if isinstance(data, dict) else None
    if isinstance(tests, list):
        for index, test in enumerate(tests):
            if isinstance(test, dict):
                yield index, test


def _texts_of(test: dict[str, Any], base: YamlPath) -> Iterator[tuple[YamlPath, str]]:
    """Every text Invoke-AtomicRedTeam substitutes ``#{arg}`` in, with its YAML path."""
    ex = test.get("executor")
    if isinstance(ex, dict):
        for key in ("command", "cleanup_command", "steps"):
            if isinstance(ex.get(key), str):
                yield (*base, "executor", key), ex[key]
    deps = test.get("dependencies")
    for i, dep in enumerate(deps if isinstance(deps, list) else ()):
        for key in ("description", "prereq_command", "get_prereq_command"):
            if isinstance(dep, dict) and isinstance(dep.get(key), str):
                yield (*base, "dependencies", i, key), dep[key]


def lint_atomic_file(checked: CheckedAtomics) -> list[ContentError]:
    """Cross-reference problems inside one file: undeclared and unused arguments. Runs on every
    well-formed part of the file even when the schema check failed elsewhere (one ``validate`` run
    reports all problems); a test whose ``input_arguments`` is not a mapping is left to the schema."""
    doc = checked.doc
    if doc is None:
        return []
    problems: list[ContentError] = []
    for index, test in _raw_tests(doc):
        base: YamlPath = ("atomic_tests", index)
        raw_args = test.get("input_arguments")
        if raw_args is not None and not isinstance(raw_args, dict):
            continue
        declared = dict.fromkeys(str(k) for k in (raw_args or {}))
        used: set[str] = set()
        for path, text in _texts_of(test, base):
            for lineno, line in enumerate(text.splitlines() or [""]):
                for match in PLACEHOLDER.finditer(line):
                    name = match.group(1)
                    used.add(name)
                    if name in declared:
                        continue
                    close = [d for d in declared if d.lower() == name.strip().lower()]
                    hint = (
                        f"did you mean #{{{close[0]}}}? names are case-sensitive"
                        if close
                        else "declare it under input_arguments or fix the name"
                    )
                    problems.append(
                        ContentError(
                            f"placeholder #{{{name}}} is not a declared input argument",
                            file=doc.file,
                            line=_line_in_block(doc, path, lineno),
                            path=format_path(path),
                            hint=hint,
                        )
                    )
        problems.extend(_nested_problems(doc, base, raw_args or {}, used))
        for name in declared:
            if name not in used:
                arg_path = (*base, "input_arguments", name)
                problems.append(
                    doc.error(
                        arg_path,
                        f"input argument {name!r} is declared but never used",
                        key=True,
                        hint="use #{" + name + "} in a command or remove it",
                    )
                )
    for path, where, placeholder in doc.comment_placeholders:
        if path and path[0] == "atomic_tests":
            problems.append(
                ContentError(
                    f"{placeholder} is read as a YAML comment: the value ends before it",
                    file=doc.file,
                    line=where,
                    path=format_path(path),
                    hint="quote the value or use a block scalar (|)",
                )
            )
    problems.sort(key=lambda p: p.line or 0)
    return problems


def _nested_problems(doc: YamlDoc, base: YamlPath, raw_args: dict[str, Any], used: set[str]) -> list[ContentError]:
    """Placeholders inside input-argument defaults (``PathToAtomicsFolder\\...\\x_#{arch}.exe``).

    Invoke-AtomicRedTeam replaces ``#{name}`` in the command once per argument
    (Private/Replace-InputArgs.ps1, ``Merge-InputArgs``), so a default naming another declared
    argument is resolved; atomiclab resolves such nesting whatever the order. A name that is not
    declared, or a chain that comes back to itself, stays as literal ``#{...}`` text in the command
    that runs: that is reported. Names used only in other defaults count as used."""
    problems: list[ContentError] = []
    refs: dict[str, list[str]] = {}
    for name, spec in raw_args.items():
        default = spec.get("default") if isinstance(spec, dict) else None
        if isinstance(default, str):
            refs[str(name)] = [m.group(1) for m in PLACEHOLDER.finditer(default)]
    for name, inner in refs.items():
        for ref in inner:
            where = (*base, "input_arguments", name, "default")
            if ref not in raw_args:
                problems.append(doc.error(where, f"placeholder #{{{ref}}} in the default of {name!r} names no input "
                                          "argument: it stays unresolved in the command",
                                          hint="declare it under input_arguments or fix the name"))
                continue
            used.add(ref)
            if _reaches(refs, ref, name):
                problems.append(doc.error(where, f"placeholder #{{{ref}}} in the default of {name!r} refers back to "
                                          f"{name!r}: it stays unresolved in the command",
                                          hint="break the circular defaults"))
    return problems


def _reaches(refs: dict[str, list[str]], start: str, target: str) -> bool:
    """True when following default references from ``start`` arrives at ``target``."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name == target:
            return True
        if name in seen:
            continue
        seen.add(name)
        todo.extend(refs.get(name, ()))
    return False


def _line_in_block(doc: YamlDoc, path: YamlPath, offset: int) -> int:
    """Source line of line ``offset`` of a (possibly block) scalar at ``path``."""
    start = doc.line_of(path)
    raw = doc.scalars.get(path)
    # A block scalar (| or >) starts on the line after its indicator; a plain/quoted one on its own line.
    key_line = doc.key_lines.get(path, start)
    block = raw is not None and "\n" in raw and start == key_line
    return start + offset + (1 if block else 0)


def duplicate_guids(files: Sequence[AtomicFile], docs: Sequence[YamlDoc] = ()) -> list[ContentError]:
    """A problem for each test whose GUID already appeared (in any of ``files``). With the files'
    ``docs`` the problem points at the ``auto_generated_guid`` line, else at the test's first line."""
    by_source = {d.file: d for d in docs}
    first: dict[str, AtomicTest] = {}
    problems: list[ContentError] = []
    for f in files:
        for index, test in enumerate(f.tests):
            if test.guid in first:
                prior = first[test.guid]
                doc = by_source.get(test.source)
                guid_path: YamlPath = ("atomic_tests", index, "auto_generated_guid")
                problems.append(
                    ContentError(
                        f"duplicate GUID {test.guid} (also {prior.name!r} at {prior.source}:{prior.line})",
                        file=test.source,
                        line=doc.line_of(guid_path) if doc else test.line,
                        path=format_path(("atomic_tests", index, "auto_generated_guid")),
                        hint="give each test its own UUID (python -c 'import uuid; print(uuid.uuid4())')",
                    )
                )
            else:
                first[test.guid] = test
    return problems


def duplicate_guids_in_docs(docs: Sequence[YamlDoc]) -> list[ContentError]:
    """Like :func:`duplicate_guids`, over the parsed documents: every test entry with a scalar
    ``auto_generated_guid`` counts, also in files (or tests) that fail the schema elsewhere."""
    first: dict[str, tuple[str, str, int | None]] = {}  # guid -> (name, file, line)
    problems: list[ContentError] = []
    for doc in docs:
        for index, test in _raw_tests(doc):
            raw = test.get("auto_generated_guid")
            if raw is None or isinstance(raw, bool | dict | list):
                continue
            guid = str(raw).strip().lower()
            base: YamlPath = ("atomic_tests", index)
            guid_path: YamlPath = (*base, "auto_generated_guid")
            if guid in first:
                name, source, line = first[guid]
                problems.append(
                    ContentError(
                        f"duplicate GUID {guid} (also {name!r} at {source}:{line})",
                        file=doc.file,
                        line=doc.line_of(guid_path),
                        path=format_path(guid_path),
                        hint="give each test its own UUID (python -c 'import uuid; print(uuid.uuid4())')",
                    )
                )
            else:
                first[guid] = (str(test.get("name")), doc.file, doc.line_of(base))
    return problems


def iter_yaml_files(paths: Sequence[Path]) -> list[Path]:
    """``paths`` expanded to atomics files as Invoke-AtomicRedTeam finds them: a technique file, a
    technique folder, an atomics folder or a repository root (``harness.content.discovery``). When
    that finds nothing and a folder was given, ContentError naming it: listing or running nothing
    would hide a wrong path."""
    return expand_atomics(paths)


def discover_atomics(paths: Sequence[Path]) -> list[AtomicFile]:
    """Load every atomics file in ``paths`` (files or folders, recursive). Raises on the first bad file
    and on duplicate GUIDs (a run could not tell the tests apart)."""
    files = [load_atomic_file(p) for p in iter_yaml_files(paths)]
    dups = duplicate_guids(files)
    if dups:
        raise dups[0]
    return files


def find_test(files: Sequence[AtomicFile], guid_or_name: str) -> AtomicTest:
    """The test with this GUID (any case) or exact name (case-insensitive if unique)."""
    wanted = guid_or_name.strip()
    tests = [t for f in files for t in f.tests]
    for t in tests:
        if t.guid == wanted.lower():
            return t
    exact = [t for t in tests if t.name == wanted]
    if len(exact) == 1:
        return exact[0]
    loose = exact or [t for t in tests if t.name.casefold() == wanted.casefold()]
    if len(loose) == 1:
        return loose[0]
    if len(loose) > 1:
        guids = ", ".join(t.guid for t in loose)
        raise ContentError(f"test name {wanted!r} is ambiguous ({guids})", hint="select it by GUID")
    # A word of the name ("nbtscan") or a GUID prefix is what people type: suggest, never guess.
    near = [
        t
        for t in tests
        if wanted.casefold() in t.name.casefold() or (len(wanted) >= 4 and t.guid.startswith(wanted.lower()))
    ]
    if near:
        names = "; ".join(f"{t.guid} ({t.name})" for t in near[:3])
        raise ContentError(f"no atomic test with GUID or name {wanted!r}", hint=f"did you mean: {names}")
    raise ContentError(
        f"no atomic test with GUID or name {wanted!r}", hint="`atomiclab list` shows the GUIDs and names"
    )
