"""Detection coverage by ATT&CK: ``run --rules DIR`` judges each test against the rule library.

A library is every Sigma rule (``.yml``/``.yaml``) and Sumo Logic query (``.sumo``) under the given
folders (or files). Each rule names the ATT&CK techniques it detects: Sigma by its ``tags``
(``attack.t1046``, ``attack.t1003.001``), a ``.sumo`` file by the technique ids (``T1046``) in its
leading comment lines or file name. A test is judged against every rule whose technique is its own,
a sub-technique of it, or its parent (``T1003`` <-> ``T1003.001``), with one outcome per rule:

* ``fired``: the rule returned rows over the test's attributed events;
* ``silent``: it ran and returned none;
* ``rule_invalid``: it cannot be compiled or run by its engine (the reason is kept);
* ``not_applicable``: it reads a log source the run does not collect (or the engine does not map),
  so silence would prove nothing.

Rules are indexed once (their tags only) and each is compiled at most once per run, on first use,
whatever the number of tests and hosts (``RuleLibrary`` is thread-safe). The outcome never changes
a test's status: coverage is a matrix beside the verdicts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.detect.base import Detector
from harness.errors import ContentError, DetectionError, HarnessError
from harness.results import CoverageCell, CoverageOutcome
from harness.telemetry.event import Event

#: Rule files read for their tags at most this large (SigmaHQ rules are a few KiB).
MAX_INDEX_BYTES = 1024 * 1024
_TECHNIQUE = re.compile(r"\bt(\d{4})(?:\.(\d{3}))?\b", re.IGNORECASE)
_SUFFIXES = (".yml", ".yaml", ".sumo")


@dataclass(frozen=True, slots=True)
class LibraryRule:
    """One rule of the library as indexed: where it is, what it detects, whether it can apply."""

    key: str  # <folder name>/<path below it>, as reports name it
    path: Path
    title: str
    techniques: tuple[str, ...]  # upper case: T1046, T1003.001
    engine: str  # sigma | sumo
    not_applicable: str | None = None  # why it reads nothing this run collects
    invalid: str | None = None  # why it cannot even be indexed (bad YAML)


def _norm_technique(t: str) -> str:
    return t.strip().upper()


def related(test_technique: str, rule_technique: str) -> bool:
    """Same technique, or one is a sub-technique of the other (T1003 ~ T1003.001)."""
    a, b = _norm_technique(test_technique), _norm_technique(rule_technique)
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _techniques(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for m in _TECHNIQUE.finditer(text):
        t = f"T{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")
        if t not in out:
            out.append(t)
    return tuple(out)


def _index_sigma(path: Path, key: str, text: str, applicable: Callable[[Mapping[str, Any]], str | None]) -> LibraryRule:
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        return LibraryRule(key, path, path.stem, (), "sigma", invalid=f"not valid YAML: {str(exc).splitlines()[0]}")
    if not docs:
        return LibraryRule(key, path, path.stem, (), "sigma", invalid="no Sigma rule in the file")
    doc = docs[0]
    tags = [str(t) for t in doc.get("tags") or () if isinstance(t, str | int)]
    techniques = _techniques(" ".join(t for t in tags if t.lower().startswith("attack.")))
    raw = doc.get("logsource")
    logsource: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    return LibraryRule(
        key, path, str(doc.get("title") or path.stem), techniques, "sigma", not_applicable=applicable(logsource)
    )


def _index_sumo(path: Path, key: str, text: str) -> LibraryRule:
    head = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("//", "/*", "*")) or not s:
            head.append(s)
            continue
        break
    techniques = _techniques(" ".join(head) + " " + path.stem)
    title = next((h.lstrip("/* ").strip() for h in head if h.strip("/* ")), path.stem)
    return LibraryRule(key, path, title[:120], techniques, "sumo")


def sigma_applicability(collected: Sequence[str]) -> Callable[[Mapping[str, Any]], str | None]:
    """A Sigma ``logsource`` -> why it reads nothing from the ``collected`` channels (None: it can)."""
    from harness.detect.sigma_pipeline import find_logsource

    wanted = {c.lower() for c in collected}

    def check(logsource: Mapping[str, Any]) -> str | None:
        cat, prod, svc = (logsource.get(k) for k in ("category", "product", "service"))
        desc = " ".join(f"{k}={v}" for k, v in (("product", prod), ("category", cat), ("service", svc)) if v)
        m = find_logsource(
            str(cat) if cat is not None else None,
            str(prod) if prod is not None else None,
            str(svc) if svc is not None else None,
        )
        if m is None:
            return f"log source {desc or '(none)'} is not one the Sigma engine maps to collected Windows channels"
        if not any(c.lower() in wanted for c in m.channels):
            return f"log source {desc} reads {', '.join(m.channels)}, which this run does not collect"
        return None

    return check


def _rule_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in _SUFFIXES and p.is_file():
            yield p


class RuleLibrary:
    """The ``--rules`` library: indexed at construction, each rule compiled once on first use."""

    def __init__(self, rules: Sequence[LibraryRule], load: Callable[[Path], Detector]) -> None:
        self.rules = tuple(rules)
        self._load = load
        self._compiled: dict[str, Detector | str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_paths(
        cls, roots: Sequence[Path], *, collected: Sequence[str], load: Callable[[Path], Detector]
    ) -> RuleLibrary:
        """Index every rule under ``roots``. ContentError (one line) for a path that is not there."""
        applicable = sigma_applicability(collected)
        rules: list[LibraryRule] = []
        seen: set[Path] = set()
        for root in roots:
            if not root.exists():
                raise ContentError(f"--rules {root}: no such folder or file", hint="point --rules at a rule folder")
            base = root.parent  # keys keep the folder's own name: windows/process_creation/x.yml
            for path in _rule_files(root):
                real = path.resolve()
                if real in seen:
                    continue
                seen.add(real)
                key = path.relative_to(base).as_posix()
                try:
                    with path.open("rb") as fh:
                        text = fh.read(MAX_INDEX_BYTES + 1).decode("utf-8", "replace")
                except OSError as exc:
                    rules.append(LibraryRule(key, path, path.stem, (), "sigma", invalid=f"cannot read: {exc}"))
                    continue
                if path.suffix.lower() == ".sumo":
                    rules.append(_index_sumo(path, key, text))
                else:
                    rules.append(_index_sigma(path, key, text, applicable))
        return cls(rules, load)

    def for_technique(self, technique: str) -> list[LibraryRule]:
        """Rules tagged with ``technique``, a sub-technique of it, or its parent."""
        return [r for r in self.rules if any(related(technique, t) for t in r.techniques)]

    def _detector(self, rule: LibraryRule) -> Detector | str:
        with self._lock:
            got = self._compiled.get(rule.key)
        if got is not None:
            return got
        try:
            compiled: Detector | str = self._load(rule.path)
        except HarnessError as exc:
            compiled = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with self._lock:
            return self._compiled.setdefault(rule.key, compiled)

    @property
    def compiled_count(self) -> int:
        with self._lock:
            return len(self._compiled)

    def judge(self, technique: str, events: Sequence[Event]) -> tuple[CoverageCell, ...]:
        """Every rule of ``technique`` over one test's attributed ``events``."""
        out: list[CoverageCell] = []
        for rule in self.for_technique(technique):
            cell = CoverageCell(rule.key, rule.title, rule.engine, CoverageOutcome.NOT_APPLICABLE)
            if rule.invalid is not None:
                out.append(_cell(cell, CoverageOutcome.RULE_INVALID, reason=rule.invalid))
                continue
            if rule.not_applicable is not None:
                out.append(_cell(cell, CoverageOutcome.NOT_APPLICABLE, reason=rule.not_applicable))
                continue
            det = self._detector(rule)
            if isinstance(det, str):
                out.append(_cell(cell, CoverageOutcome.RULE_INVALID, reason=det))
                continue
            try:
                result = det.evaluate(events, None)
            except DetectionError as exc:
                out.append(_cell(cell, CoverageOutcome.RULE_INVALID, reason=str(exc).splitlines()[0]))
                continue
            n = len(result.rows)
            outcome = CoverageOutcome.FIRED if n else CoverageOutcome.SILENT
            out.append(_cell(cell, outcome, rows=n, reason=f"{n} row(s) over {result.events_in} event(s)"))
        return tuple(out)


def _cell(base: CoverageCell, outcome: CoverageOutcome, *, rows: int = 0, reason: str = "") -> CoverageCell:
    return CoverageCell(base.rule, base.title, base.engine, outcome, rows, reason)
