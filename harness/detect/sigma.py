"""Sigma engine: pySigma 2.x parses the rule, pySigma-backend-sqlite turns it into SQL, and the SQL
runs over the events loaded into an in-memory SQLite table (the way Zircolite works).

Contract of ``SigmaDetector.evaluate``:

* events outside ``window`` are not loaded; ``events_in`` counts every event given;
* the table has one ``TEXT COLLATE SIGMA_NOCASE`` column per field seen (and per field a rule names,
  NULL where absent), so ``=`` ignores case as Sigma requires, for every script (Python's casefold:
  ``ADMINISTRATÖR``, ``АДМИНИСТРАТОР``; SQLite's own NOCASE folds ASCII only), plus
  ``Channel``, ``EventID`` (INTEGER) and a row index column; ``LIKE`` is replaced by the same
  Unicode case-insensitive match (``contains``/``startswith``/``endswith``), linear-time;
* ``|re`` runs through a registered ``REGEXP`` function using RE2 (linear time; Sigma regexes are
  unanchored and case-sensitive unless the rule adds ``(?i)``/``|i``; ``.`` does not cross newlines);
* ``|gt``/``|lt``... compare numerically (a field that is not a number never satisfies them);
* keyword (field-less) detections match a text column holding all of the event's values;
* each result row is the matched event's record (header, fields; 4688 with its Sysmon view, see
  ``sigma_pipeline``) preceded by ``rule_title`` and ``rule_level``; ``source_events`` maps each row
  to the index of its event in the evaluated sequence.

Loading fails with ``RuleSyntaxError`` (bad YAML or not a valid Sigma rule, with file:line) or
``UnsupportedRuleError`` (correlation rules, deprecated ``| count()`` aggregations, ``|expand``
placeholders, log sources this engine does not map), never with a library traceback.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import re2
import yaml
from sigma.backends.sqlite.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import (
    SigmaConditionError,
    SigmaError,
    SigmaFeatureNotSupportedByBackendError,
    SigmaPlaceholderError,
    SigmaRegularExpressionError,
)
from sigma.rule import SigmaRule

from harness.detect.base import DetectionResult, Engine, TimeWindow
from harness.detect.sigma_pipeline import (
    EVENT_ID,
    HEADER_COLUMNS,
    LOGSOURCES,
    build_pipeline,
    event_record,
    find_logsource,
)
from harness.detect.sumo.patterns import regex_predicate
from harness.errors import DetectionError, RuleSyntaxError, UnsupportedRuleError
from harness.telemetry.event import Event

TABLE = "logs"
ROW_COLUMN = "atomiclab_row"
TEXT_COLUMN = "atomiclab_text"
_INTEGER_COLUMNS = frozenset({EVENT_ID.lower(), "eventrecordid"})
#: Upper bound on a Sigma rule file (SigmaHQ rules are a few KiB; a collection file stays far below).
MAX_RULE_BYTES = 4 * 1024 * 1024


class _AtomiclabSqliteBackend(sqliteBackend):  # type: ignore[misc]  # pySigma is untyped here
    """The SQLite backend with numeric comparisons that do not fall back to text order.

    Columns are TEXT (values keep their exact spelling), and SQLite would compare ``'999' > 1000``
    as text. ``sigma_num`` is registered per connection and yields NULL for non-numbers.
    """

    compare_op_expression: ClassVar[str] = "sigma_num({field}) {operator} {value}"


def _quote(name: str) -> str:
    # Same quoting as the backend (backticks: SQLite reads an unknown "name" as a string).
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True, slots=True)
class CompiledSigmaRule:
    """One Sigma rule converted to SQL: the queries (any match counts) and the fields they name."""

    title: str
    level: str
    sigma_id: str | None
    queries: tuple[str, ...]
    fields: tuple[str, ...]
    needs_text: bool


# --- locating things in the YAML -------------------------------------------------------------


class _Lines:
    """Line numbers (1-based) of top-level keys and of ``detection.condition`` per YAML document."""

    def __init__(self, text: str) -> None:
        self.docs: list[dict[str, int]] = []
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            keys: dict[str, int] = {"": node.start_mark.line + 1} if node is not None else {}
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode):
                        keys[str(k.value)] = k.start_mark.line + 1
                        if k.value == "detection" and isinstance(v, yaml.MappingNode):
                            for dk, _ in v.value:
                                if isinstance(dk, yaml.ScalarNode) and dk.value == "condition":
                                    keys["condition"] = dk.start_mark.line + 1
                        if k.value == "title" and isinstance(v, yaml.ScalarNode):
                            keys["title=" + str(v.value)] = k.start_mark.line + 1
            self.docs.append(keys)

    def find(self, key: str, *, title: str | None = None) -> int | None:
        """Line of ``key`` in the document titled ``title`` (else the first document having it)."""
        docs = self.docs
        if title is not None:
            titled = [d for d in docs if f"title={title}" in d]
            docs = titled or docs
        for d in docs:
            if key in d:
                return d[key]
        return None


def _where(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line is not None else source


# --- loading -----------------------------------------------------------------------------------


def _error_key(exc: SigmaError) -> str:
    """Which YAML key an error most likely concerns, to point at its line."""
    name = type(exc).__name__
    for fragment, key in (
        ("Condition", "condition"),
        ("Detection", "detection"),
        ("Modifier", "detection"),
        ("Regular", "detection"),
        ("Placeholder", "detection"),
        ("Logsource", "logsource"),
        ("Identifier", "id"),
        ("Status", "status"),
        ("Level", "level"),
        ("Date", "date"),
        ("Tag", "tags"),
        ("Title", "title"),
        ("Correlation", "correlation"),
    ):
        if fragment in name:
            return key
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sigma_message(exc: SigmaError) -> str:
    # SigmaError.__str__ appends " in <resolved path>"; the location is ours to print.
    return _one_line(str(exc.args[0])) if exc.args else type(exc).__name__


def _map_sigma_error(exc: SigmaError, source: str, lines: _Lines, title: str | None) -> DetectionError:
    loc = getattr(exc, "source", None)
    line = getattr(loc, "line", None) or lines.find(_error_key(exc), title=title) or lines.find("")
    msg = _sigma_message(exc)
    if isinstance(exc, SigmaConditionError) and "pipe" in msg.lower():
        return UnsupportedRuleError(
            f"{_where(source, line)}: aggregation in the condition (`| count() ...`) is not supported",
            hint="Sigma 2 replaced it with correlation rules; express the rule without aggregation",
        )
    if isinstance(exc, SigmaPlaceholderError):
        return UnsupportedRuleError(
            f"{_where(source, line)}: `|expand` placeholders are not supported ({msg})",
            hint="replace the %placeholder% with the concrete values",
        )
    if isinstance(exc, SigmaRegularExpressionError):
        # pySigma's default policy checks |re with RE2, as SigmaHQ requires of its rules.
        return UnsupportedRuleError(
            f"{_where(source, line)}: regular expression not accepted by RE2 ({msg})",
            hint="lookarounds and backreferences are not portable Sigma; rewrite the pattern",
        )
    if isinstance(exc, SigmaFeatureNotSupportedByBackendError):
        return UnsupportedRuleError(f"{_where(source, line)}: unsupported Sigma feature: {msg}")
    return RuleSyntaxError(f"invalid Sigma rule: {msg}", file=source, line=line)


def _parse_yaml(text: str, source: str) -> tuple[list[Any], _Lines]:
    try:
        docs = list(yaml.safe_load_all(text))
        lines = _Lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RuleSyntaxError(
            f"YAML error: {_one_line(str(exc.problem or exc.context or 'cannot parse'))}",
            file=source,
            line=None if mark is None else mark.line + 1,
            column=None if mark is None else mark.column + 1,
        ) from exc
    except yaml.YAMLError as exc:  # e.g. ReaderError (a control character): its str() spans lines
        raise RuleSyntaxError(f"YAML error: {_one_line(str(exc))}", file=source) from exc
    docs = [d for d in docs if d is not None]
    if not docs:
        raise RuleSyntaxError("no Sigma rule in the file", file=source, line=1)
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise RuleSyntaxError(
                f"YAML document {i + 1} is a {type(d).__name__}, a Sigma rule is a mapping",
                file=source,
                line=lines.docs[i].get("") if i < len(lines.docs) else None,
            )
    return docs, lines


#: What pySigma raises, besides SigmaError, on rules it does not expect (e.g. a null in a keyword list:
#: TypeError "Unexpected value type class in condition parse tree: SigmaNull"); mapped at this edge.
_LIBRARY_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError)


def _library_error(exc: Exception, source: str, line: int | None) -> RuleSyntaxError:
    return RuleSyntaxError(f"pySigma cannot convert this rule: {_one_line(str(exc)) or type(exc).__name__}",
                           file=source, line=line, hint="check the detection section against the Sigma specification")


def compile_rules(text: str, source: str) -> list[CompiledSigmaRule]:
    """Parse Sigma YAML (one or more documents) and convert each rule to SQL.

    Raises RuleSyntaxError / UnsupportedRuleError naming ``source`` and the line.
    """
    docs, lines = _parse_yaml(text, source)
    try:
        collection = SigmaCollection.from_dicts(docs)
    except SigmaError as exc:
        raise _map_sigma_error(exc, source, lines, None) from exc
    except _LIBRARY_ERRORS as exc:
        raise _library_error(exc, source, lines.find("")) from exc
    for item in collection:
        if isinstance(item, SigmaCorrelationRule):
            raise UnsupportedRuleError(
                f"{_where(source, lines.find('correlation', title=item.title))}: "
                f"correlation rule {item.title!r} is not supported by the Sigma engine",
                hint="evaluate the base rules on their own",
            )
    rules = [r for r in collection if isinstance(r, SigmaRule)]
    if not rules:
        raise RuleSyntaxError("no Sigma detection rule in the file", file=source, line=1)

    # The backend's methods are untyped; keep it as Any at this one edge.
    backend_class: Any = _AtomiclabSqliteBackend
    backend = backend_class(build_pipeline(), table=TABLE, fulltext_field=TEXT_COLUMN)
    compiled: list[CompiledSigmaRule] = []
    for rule in rules:
        ls = rule.logsource
        if find_logsource(ls.category, ls.product, ls.service) is None:
            known = ", ".join(sorted({m.category or f"service:{m.service}" for m in LOGSOURCES}))
            raise UnsupportedRuleError(
                f"{_where(source, lines.find('logsource', title=rule.title))}: log source "
                f"product={ls.product} category={ls.category} service={ls.service} "
                "is not mapped to Windows channels by the Sigma engine",
                hint=f"implemented (product: windows): {known}",
            )
        try:
            queries = tuple(str(q) for q in backend.convert_rule(rule))
            fields = tuple(str(f) for f in backend.required_fields(rule))
            needs_text = bool(backend.fulltext_requirements(rule))
        except SigmaError as exc:
            raise _map_sigma_error(exc, source, lines, rule.title) from exc
        except _LIBRARY_ERRORS as exc:
            raise _library_error(exc, source, lines.find("detection", title=rule.title)) from exc
        if not queries:
            raise UnsupportedRuleError(
                f"{_where(source, lines.find('title', title=rule.title))}: rule {rule.title!r} "
                "produced no query (a correlation-only base rule?)"
            )
        compiled.append(
            CompiledSigmaRule(
                title=str(rule.title),
                level=rule.level.name.lower() if rule.level else "",
                sigma_id=str(rule.id) if rule.id else None,
                queries=queries,
                fields=fields,
                needs_text=needs_text,
            )
        )
    return compiled


# --- evaluation ----------------------------------------------------------------------------------


def _regexp_function() -> Callable[[str, object], int]:
    """SQLite REGEXP(pattern, value) over RE2 (linear time, never backtracking: issue 16).

    pySigma's default policy already refuses at load any ``|re`` pattern RE2 cannot compile, so
    RE2 here runs exactly the patterns SigmaHQ accepts; an unanchored search as Sigma specifies.
    Compiled patterns are cached per connection (the cache lives and dies with the evaluate call).
    """
    cache: dict[str, Callable[[str], bool]] = {}

    def regexp(pattern: str, value: object) -> int:
        if value is None:
            return 0
        pred = cache.get(pattern)
        if pred is None:
            pred = cache[pattern] = regex_predicate(pattern)
        return 1 if pred(str(value)) else 0

    return regexp


COLLATION = "SIGMA_NOCASE"


def _casefold_compare(a: str, b: str) -> int:
    """Sigma's case-insensitive equality for every script (SQLite's NOCASE folds A-Z only)."""
    fa, fb = a.casefold(), b.casefold()
    return (fa > fb) - (fa < fb)


def _like_function() -> Callable[..., int | None]:
    """SQLite ``LIKE(pattern, value[, escape])`` with Unicode case folding, in linear time.

    The backend writes ``contains``/``startswith``/``endswith`` as ``LIKE '%x%' ESCAPE '\\'``; those
    shapes become casefolded ``in``/``startswith``/``endswith``, anything else (``_``, inner ``%``) an
    RE2 match. NULL stays NULL, so ``NOT (x LIKE ...)`` on a missing field is as SQL defines it.
    """
    cache: dict[tuple[str, str | None], Callable[[str], bool]] = {}

    def compile_like(pattern: str, escape: str | None) -> Callable[[str], bool]:
        pieces: list[tuple[str, str]] = []  # ("lit", text) | ("any", "") | ("one", "")
        i, n = 0, len(pattern)
        while i < n:
            ch = pattern[i]
            if escape and ch == escape and i + 1 < n:
                pieces.append(("lit", pattern[i + 1]))
                i += 2
                continue
            pieces.append(("any", "") if ch == "%" else ("one", "") if ch == "_" else ("lit", ch))
            i += 1
        kinds = [k for k, _ in pieces]
        if "one" not in kinds:
            inner = kinds[1:-1] if len(kinds) > 1 else []
            if "any" not in inner:
                lead = bool(kinds) and kinds[0] == "any"
                trail = len(kinds) > 1 and kinds[-1] == "any"
                text = "".join(t for k, t in pieces if k == "lit").casefold()
                if lead and trail:
                    return lambda v: text in v.casefold()
                if lead:
                    return lambda v: v.casefold().endswith(text)
                if trail:
                    return lambda v: v.casefold().startswith(text)
                return lambda v: v.casefold() == text
        body = "".join(".*" if k == "any" else "." if k == "one" else str(re2.escape(t)) for k, t in pieces)
        return regex_predicate(f"(?is)^(?:{body})$")

    def like(pattern: str | None, value: object, escape: str | None = None) -> int | None:
        if pattern is None or value is None:
            return None
        pred = cache.get((pattern, escape))
        if pred is None:
            pred = cache[(pattern, escape)] = compile_like(pattern, escape)
        return 1 if pred(str(value)) else 0

    return like


def _sqlite_text(value: object) -> object:
    """``value`` as SQLite can store it: a lone surrogate (possible in hostile JSON events) is not
    UTF-8, so it becomes U+FFFD; the rest of the text, and so every match on it, is unchanged."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _sigma_num(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class SigmaDetector:
    """One Sigma rule file, compiled and ready to evaluate (implements ``Detector``).

    ``rule_id`` is the Sigma ``id`` when the file holds one rule that has one, else the file stem.
    """

    def __init__(self, rules: Sequence[CompiledSigmaRule], *, rule_id: str, source: str) -> None:
        if not rules:
            raise ValueError("a SigmaDetector needs at least one compiled rule")
        self._rules = tuple(rules)
        self._rule_id = rule_id
        self._source = source

    @classmethod
    def from_text(cls, text: str, *, source: str = "<sigma>", rule_id: str | None = None) -> SigmaDetector:
        """Compile Sigma YAML text. ``source`` names it in error messages."""
        rules = compile_rules(text, source)
        if rule_id is None:
            rule_id = rules[0].sigma_id if len(rules) == 1 and rules[0].sigma_id else Path(source).stem
        return cls(rules, rule_id=rule_id, source=source)

    @classmethod
    def from_file(cls, path: Path) -> SigmaDetector:
        """Load and compile a Sigma rule file (``.yml``/``.yaml``)."""
        path = Path(path)
        try:
            if path.exists() and not path.is_file() and not path.is_dir():
                # a FIFO or device would block the read forever
                raise DetectionError(f"{path}: not a regular file", hint="point --rule at a Sigma .yml file")
            with path.open("rb") as fh:
                raw = fh.read(MAX_RULE_BYTES + 1)
            if len(raw) > MAX_RULE_BYTES:
                raise DetectionError(f"{path}: larger than {MAX_RULE_BYTES // (1024 * 1024)} MiB, not a Sigma rule",
                                     hint="check the path")
            text = raw.decode("utf-8")
        except OSError as exc:
            raise DetectionError(
                f"{path}: cannot read Sigma rule: {exc.strerror or exc}", hint="check the path"
            ) from exc
        except UnicodeDecodeError as exc:
            raise RuleSyntaxError("rule file is not UTF-8 text", file=path) from exc
        rules = compile_rules(text, str(path))
        rule_id = rules[0].sigma_id if len(rules) == 1 and rules[0].sigma_id else path.stem
        return cls(rules, rule_id=rule_id, source=str(path))

    @property
    def rule_id(self) -> str:
        return self._rule_id

    @property
    def engine(self) -> Engine:
        return Engine.SIGMA

    @property
    def source(self) -> str:
        return self._source

    @property
    def rules(self) -> tuple[CompiledSigmaRule, ...]:
        """The compiled rules (title, level, SQL queries) of the file."""
        return self._rules

    def evaluate(self, events: Iterable[Event], window: TimeWindow | None = None) -> DetectionResult:
        """Run every rule of the file over ``events`` (only those inside ``window``)."""
        started = time.perf_counter()
        records: list[dict[str, str | int]] = []
        origin: list[int] = []
        count = 0
        for i, event in enumerate(events):
            count += 1
            if window is not None and not window.contains(event.time):
                continue
            records.append(event_record(event))
            origin.append(i)
        rows: list[Mapping[str, object]] = []
        sources: dict[int, tuple[int, ...]] = {}
        if records:
            try:
                with closing(sqlite3.connect(":memory:")) as con:
                    self._load(con, records)
                    for rule in self._rules:
                        for pos in self._matches(con, rule):
                            sources[len(rows)] = (origin[pos],)
                            rows.append({"rule_title": rule.title, "rule_level": rule.level, **records[pos]})
            except sqlite3.Error as exc:
                raise DetectionError(f"{self._source}: SQLite could not run the Sigma query: {exc}") from exc
        return DetectionResult(
            rule_id=self._rule_id,
            engine=Engine.SIGMA,
            rows=tuple(rows),
            events_in=count,
            elapsed_s=time.perf_counter() - started,
            source_events=sources,
        )

    def _matches(self, con: sqlite3.Connection, rule: CompiledSigmaRule) -> list[int]:
        hits: set[int] = set()
        for query in rule.queries:
            # The backend emits `SELECT * FROM logs WHERE ...`; only the row index is needed.
            for (pos,) in con.execute(f"SELECT {ROW_COLUMN} FROM ({query})"):  # noqa: S608
                hits.add(int(pos))
        return sorted(hits)

    def _load(self, con: sqlite3.Connection, records: Sequence[Mapping[str, str | int]]) -> None:
        con.create_function("regexp", 2, _regexp_function(), deterministic=True)
        like = _like_function()
        con.create_function("like", 2, like, deterministic=True)
        con.create_function("like", 3, like, deterministic=True)
        con.create_collation(COLLATION, _casefold_compare)
        con.create_function("sigma_num", 1, _sigma_num, deterministic=True)
        # SQLite column names are case-insensitive: the first spelling seen names the column.
        columns: dict[str, str] = {c.lower(): c for c in HEADER_COLUMNS}
        for rec in records:
            for name in rec:
                columns.setdefault(name.lower(), name)
        for rule in self._rules:
            for name in rule.fields:
                columns.setdefault(name.lower(), name)
        columns.pop(ROW_COLUMN, None)
        want_text = any(r.needs_text for r in self._rules)
        columns.pop(TEXT_COLUMN, None)
        names = list(columns.values())
        ddl = [f"{ROW_COLUMN} INTEGER PRIMARY KEY"]
        for name in names:
            kind = "INTEGER" if name.lower() in _INTEGER_COLUMNS else f"TEXT COLLATE {COLLATION}"
            ddl.append(f"{_quote(name)} {kind}")
        if want_text:
            ddl.append(f"{TEXT_COLUMN} TEXT COLLATE {COLLATION}")
        con.execute(f"CREATE TABLE {TABLE} ({', '.join(ddl)})")
        lowered = [n.lower() for n in names]
        placeholders = ", ".join("?" * (len(names) + 1 + (1 if want_text else 0)))
        insert = f"INSERT INTO {TABLE} VALUES ({placeholders})"  # noqa: S608

        def rows() -> Iterable[tuple[object, ...]]:
            for pos, rec in enumerate(records):
                by_lower: dict[str, str | int] = {}
                for k, v in rec.items():
                    by_lower.setdefault(k.lower(), v)
                values: list[object] = [pos, *(_sqlite_text(by_lower.get(n)) for n in lowered)]
                if want_text:
                    values.append(_sqlite_text("\n".join(str(v) for v in rec.values())))
                yield tuple(values)

        con.executemany(insert, rows())


def lint_sigma(path: Path) -> list[str]:
    """Problems that stop this engine from running the rule file (empty when it compiles)."""
    try:
        SigmaDetector.from_file(path)
    except DetectionError as exc:
        return [str(exc)]
    return []


__all__ = ["CompiledSigmaRule", "SigmaDetector", "compile_rules", "lint_sigma"]
