"""Expectations: what must (and must not) happen when an atomics file's tests run.

One YAML per atomics file (``expectations/T1046.yaml`` for ``atomics/T1046/T1046.yaml``), keyed by
test GUID; the format is ``schemas/expectations.schema.json``::

    atomics: atomics/T1046/T1046.yaml        # relative to the content root
    tests:
      <guid>:
        name: <the atomic's name>            # checked against the atomics file
        time_budget: 60                      # seconds from test start for every event and detection
        events:                              # each must be seen min..max times
          - {id, description, channel, event_id, where, min (1), max (null), requires: [LabFeature]}
        detections:                          # each rule must fire / stay silent
          - {rule: detections/..., fires: true|false, where, known_false_positive: "<reason>"}

``fires: true`` holds when the rule returns at least one row matching ``where``; ``fires: false`` holds
when it returns no row matching ``where`` (no ``where``: no row at all).
``known_false_positive`` (only with ``fires: false``) says the rule is expected to stay silent but
is KNOWN to fire on this activity: the runner reports a finding instead of a failure.

``load_expectations`` checks the file alone (YAML, schema, conditions, unique event ids, min <= max);
``cross_check`` checks it against the content (atomics file, GUIDs, names, rule files).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.content import schemacheck
from harness.content.atomics import check_atomic_file
from harness.content.yamldoc import YamlDoc, YamlPath, first_problem, format_path, load_yaml, read_text
from harness.errors import ContentError
from harness.matching import Conditions
from harness.model import AtomicFile


class LabFeature(enum.StrEnum):
    """Lab capabilities an expected event depends on (preflight reports which are on)."""

    SYSMON = "sysmon"  # Sysmon installed (EID 1 process create)
    SYSMON_NETWORK = "sysmon_network"  # Sysmon EID 3 network connections logged
    SYSMON_FILE = "sysmon_file"  # Sysmon EID 11 file create logged
    PROCESS_AUDITING = "process_auditing"  # Security 4688/4689
    PROCESS_COMMAND_LINE = "process_command_line"  # 4688 carries CommandLine
    SCRIPT_BLOCK_LOGGING = "script_block_logging"  # PowerShell 4104


@dataclass(frozen=True, slots=True)
class EventExpectation:
    """Between ``min_count`` and ``max_count`` (None = unbounded) events matching all of this."""

    id: str
    description: str
    channel: str
    event_id: int
    where: Conditions
    min_count: int = 1
    max_count: int | None = None
    requires: tuple[LabFeature, ...] = ()
    line: int | None = None
    origin: str = "authored"  # written in an expectations file (harness.baseline makes "baseline" ones)

    def matches(self, channel: str, event_id: int, fields: Mapping[str, object]) -> bool:
        """Channel (case-insensitive), event id and every condition."""
        return (event_id == self.event_id and channel.casefold() == self.channel.casefold()
                and self.where.matches(fields))


@dataclass(frozen=True, slots=True)
class DetectionExpectation:
    """Rule ``rule`` (path relative to the content root) fires (a row matching ``where``) or not."""

    rule: str
    fires: bool
    where: Conditions = field(default_factory=Conditions)
    known_false_positive: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class TestExpectations:
    guid: str
    name: str
    time_budget_s: float
    events: tuple[EventExpectation, ...] = ()
    detections: tuple[DetectionExpectation, ...] = ()
    line: int | None = None

    __test__ = False  # not a pytest test class despite the name


@dataclass(frozen=True, slots=True)
class ExpectationFile:
    source: str  # path of the expectations file as loaded
    atomics: str  # the atomics file, relative to the content root
    tests: Mapping[str, TestExpectations]

    def rules(self) -> list[str]:
        """Every rule named, in first-seen order."""
        return list(dict.fromkeys(d.rule for t in self.tests.values() for d in t.detections))


@dataclass(frozen=True, slots=True)
class CheckedExpectations:
    file: ExpectationFile | None
    problems: tuple[ContentError, ...]
    doc: YamlDoc | None = None


def load_expectations(path: Path) -> ExpectationFile:
    """Load one expectations file; raise ContentError (file:line) for the first problem."""
    checked = check_expectations_file(path)
    if checked.problems:
        raise first_problem(checked.problems, path)
    assert checked.file is not None
    return checked.file


def check_expectations_file(path: Path) -> CheckedExpectations:
    """Parse and check one expectations file on its own, collecting every problem."""
    try:
        doc = load_yaml(read_text(path), file=str(path))
    except ContentError as exc:
        return CheckedExpectations(None, (exc,))
    if doc.data is None:
        return CheckedExpectations(None, (doc.error((), "file is empty; expected `atomics:` and `tests:`"),), doc)
    problems = schemacheck.validate(doc, schemacheck.EXPECTATIONS_SCHEMA)
    if problems:
        return CheckedExpectations(None, tuple(problems), doc)
    tests: dict[str, TestExpectations] = {}
    errors: list[ContentError] = []
    for guid, raw in doc.data["tests"].items():
        try:
            test = _build_test(doc, guid, raw)
        except _Problems as exc:
            errors.extend(exc.problems)
            continue
        if test.guid in tests:  # same GUID in another case
            errors.append(doc.error(("tests", guid), f"test {guid} is listed twice (GUIDs ignore case)",
                                    key=True))
        tests[test.guid] = test
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        return CheckedExpectations(None, tuple(errors), doc)
    result = ExpectationFile(source=doc.file, atomics=str(doc.data["atomics"]), tests=MappingProxyType(tests))
    return CheckedExpectations(result, (), doc)


class _Problems(Exception):
    def __init__(self, problems: list[ContentError]) -> None:
        super().__init__(len(problems))
        self.problems = problems


def _where(doc: YamlDoc, path: YamlPath, raw: Mapping[str, Any] | None) -> Conditions:
    if raw is None:
        return Conditions()
    lines = {k: doc.line_of((*path, k), key=True) for k in raw}
    return Conditions.parse(raw, file=doc.file, line=doc.line_of(path), path=format_path(path), lines=lines)


def _build_test(doc: YamlDoc, guid: str, raw: dict[str, Any]) -> TestExpectations:
    base: YamlPath = ("tests", guid)
    problems: list[ContentError] = []
    events: list[EventExpectation] = []
    seen_ids: dict[str, int] = {}
    for i, ev in enumerate(raw.get("events") or ()):
        path = (*base, "events", i)
        ev_id = str(ev["id"])
        if ev_id in seen_ids:
            problems.append(doc.error((*path, "id"), f"event id {ev_id!r} is used twice in this test "
                                      f"(first at line {seen_ids[ev_id]})", hint="event ids are unique per test"))
        seen_ids.setdefault(ev_id, doc.line_of((*path, "id")))
        min_count = int(ev.get("min", 1))
        max_count = ev.get("max")
        if max_count is not None and int(max_count) < min_count:
            problems.append(doc.error((*path, "max"), f"max ({max_count}) is below min ({min_count})"))
        try:
            where = _where(doc, (*path, "where"), ev.get("where"))
        except ContentError as exc:
            problems.append(exc)
            continue
        events.append(EventExpectation(
            id=ev_id, description=str(ev.get("description") or ""), channel=str(ev["channel"]),
            event_id=int(ev["event_id"]), where=where, min_count=min_count,
            max_count=None if max_count is None else int(max_count),
            requires=tuple(LabFeature(r) for r in ev.get("requires") or ()),
            line=doc.line_of(path)))
    detections: list[DetectionExpectation] = []
    for i, det in enumerate(raw.get("detections") or ()):
        path = (*base, "detections", i)
        try:
            where = _where(doc, (*path, "where"), det.get("where"))
        except ContentError as exc:
            problems.append(exc)
            continue
        detections.append(DetectionExpectation(
            rule=str(det["rule"]), fires=bool(det["fires"]), where=where,
            known_false_positive=det.get("known_false_positive"), line=doc.line_of(path)))
    if problems:
        raise _Problems(problems)
    return TestExpectations(guid=guid.lower(), name=str(raw["name"]), time_budget_s=float(raw["time_budget"]),
                            events=tuple(events), detections=tuple(detections), line=doc.line_of(base))


def expectations_dir(root: Path) -> Path:
    """``root/expectations`` when it exists, else ``root`` itself."""
    sub = root / "expectations"
    return sub if sub.is_dir() else root


def discover_expectations(root: Path) -> list[ExpectationFile]:
    """Load every expectations file under the content root's ``expectations/`` (recursive, sorted)."""
    folder = expectations_dir(root)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
    return [load_expectations(p) for p in files]


def _raw_refs(doc: YamlDoc) -> tuple[str | None, list[tuple[str, str | None, list[tuple[int, str]]]]]:
    """(atomics path, [(test key, name, [(detection index, rule)])]) read from whatever parts of the
    document are well-formed; the schema check reports the rest."""
    data = doc.data if isinstance(doc.data, dict) else {}
    atomics = data.get("atomics")
    tests = data.get("tests")
    refs: list[tuple[str, str | None, list[tuple[int, str]]]] = []
    for key, raw in (tests.items() if isinstance(tests, dict) else ()):
        if not isinstance(key, str) or not isinstance(raw, dict):
            continue
        name = raw.get("name")
        dets = raw.get("detections")
        rules = [(i, d["rule"]) for i, d in enumerate(dets if isinstance(dets, list) else ())
                 if isinstance(d, dict) and isinstance(d.get("rule"), str) and d["rule"].strip()]
        refs.append((key, name if isinstance(name, str) else None, rules))
    return (atomics if isinstance(atomics, str) and atomics.strip() else None), refs


def cross_check(checked: CheckedExpectations, root: Path,
                atomics_cache: dict[Path, AtomicFile | None] | None = None) -> list[ContentError]:
    """Problems of an expectations file against the content under ``root``: atomics file missing or
    broken, GUIDs it does not hold, names that differ, rule files missing. Runs on the well-formed
    parts of the file even when the file's own checks failed (one ``validate`` run reports all)."""
    doc = checked.doc
    if doc is None:
        return []
    atomics_rel, refs = _raw_refs(doc)
    cache = atomics_cache if atomics_cache is not None else {}
    problems: list[ContentError] = []
    atomics: AtomicFile | None = None
    if atomics_rel is not None:
        atomics_path = (root / atomics_rel).resolve()
        if atomics_path not in cache:
            loaded = check_atomic_file(atomics_path) if atomics_path.is_file() else None
            cache[atomics_path] = loaded.file if loaded is not None else None
        atomics = cache[atomics_path]
        if not atomics_path.is_file():
            problems.append(doc.error(("atomics",), f"atomics file {atomics_rel} does not exist under {root}",
                                      hint="the path is relative to the content root"))
        elif atomics is None:
            problems.append(doc.error(("atomics",), f"atomics file {atomics_rel} does not load",
                                      hint=f"run `atomiclab validate {atomics_rel}`"))
    by_guid = {t.guid: t for t in atomics.tests} if atomics is not None else {}
    for key_guid, name, rules in refs:
        guid = key_guid.lower()
        base: YamlPath = ("tests", key_guid)
        if atomics is not None:
            atomic = by_guid.get(guid)
            if atomic is None:
                problems.append(doc.error(base, f"unknown test GUID {guid}: not in {atomics_rel}", key=True,
                                          hint="`atomiclab list` shows the GUIDs"))
            elif name is not None and atomic.name != name:
                problems.append(doc.error((*base, "name"), f"name {name!r} differs from the atomic's "
                                          f"name {atomic.name!r} ({atomic.source}:{atomic.line})",
                                          hint="copy the atomic's name exactly"))
        for i, rule in rules:
            rule_path = root / rule
            if not rule_path.is_file():
                problems.append(doc.error((*base, "detections", i, "rule"),
                                          f"rule file {rule} does not exist under {root}",
                                          hint="rule paths are relative to the content root"))
    return problems
