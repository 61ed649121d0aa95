"""``results.json``: the run as data, validated against ``schemas/results.schema.json``."""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from harness.errors import ReportError
from harness.results import RunResult, TestResult

FILENAME = "results.json"
SCHEMA = "results.schema.json"


@cache
def _validator() -> Draft202012Validator:
    # Package data never changes while the process runs: compile the schema once.
    text = resources.files("harness.reporting").joinpath("schemas", SCHEMA).read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def results_schema() -> dict[str, Any]:
    """The JSON Schema document of results.json."""
    schema: dict[str, Any] = dict(_validator().schema)  # type: ignore[arg-type]
    return schema


@cache
def _test_validator() -> Draft202012Validator:
    """The schema of one ``tests`` entry (``#/$defs/test``, with the definitions it refers to)."""
    root = _validator().schema
    return Draft202012Validator({"$defs": root["$defs"], "$ref": "#/$defs/test"})  # type: ignore[index]


def schema_problems(data: object, *, validator: Draft202012Validator | None = None, at: str = "$") -> list[str]:
    """Every schema violation of ``data`` as ``json.path: message`` (empty when valid)."""
    out = []
    for err in sorted((validator or _validator()).iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = at + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{where}: {err.message}")
    return out


class ResultsJsonReporter:
    """Writes ``results.json`` (validated before it is written: a bug never ships an invalid file).

    A test result is immutable, so each is validated once, the first time it is rendered, against
    the schema of a ``tests`` entry; every render validates the rest of the document. Validating
    the whole document on every render made each render cost what every finished test costs."""

    filename = FILENAME

    def __init__(self) -> None:
        self._valid: dict[int, TestResult] = {}  # id -> the result itself (kept alive: ids stay unique)

    def render(self, run: RunResult) -> str:
        data = run.to_dict()
        tests = data["tests"]
        problems = schema_problems({**data, "tests": []})
        for i, (result, entry) in enumerate(zip(run.tests, tests, strict=True)):
            if self._valid.get(id(result)) is result:
                continue
            found = schema_problems(entry, validator=_test_validator(), at=f"$.tests[{i}]")
            if found:
                problems += found
            else:
                self._valid[id(result)] = result
        if problems:
            raise ReportError(
                f"results.json would not match its schema: {problems[0]}",
                hint="this is a harness bug; please report it",
            )
        return dumps_indented(data)


def dumps_indented(data: Any) -> str:
    """``json.dumps(data, indent=2, ensure_ascii=False)`` + newline, written by orjson when it can
    (an order of magnitude faster for a long run); what orjson refuses (a lone surrogate, a
    non-string key) or would write differently (NaN and infinities, which it writes as null) goes
    to ``json``. Both read back to the same value."""
    import orjson

    if not _all_finite(data):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _all_finite(value: Any) -> bool:
    """No NaN or infinity anywhere in ``value`` (iterative: results nest a few levels deep)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if v.__class__ is float:
            if not math.isfinite(v):
                return False
        elif v.__class__ is dict:
            stack.extend(v.values())
        elif v.__class__ is list or v.__class__ is tuple:
            stack.extend(v)
    return True


def load_results(path: Path) -> RunResult:
    """Read a results.json (a file or a report folder) back; ReportError when unusable."""
    file = path / FILENAME if path.is_dir() else path
    if file.exists() and not file.is_file():  # a FIFO or device would block or never end
        raise ReportError(f"{file}: not a regular file", hint="point at a report folder written by atomiclab")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportError(f"{file}: no results.json", hint="point at a report folder written by atomiclab") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
        raise ReportError(f"{file}: not readable JSON: {reason}") from exc
    problems = schema_problems(data)
    if problems:
        raise ReportError(f"{file}: does not match the results schema: {problems[0]}")
    try:
        return RunResult.from_dict(data)
    except (KeyError, ValueError, TypeError) as exc:  # schema-valid but not what atomiclab writes
        raise ReportError(f"{file}: not a results.json atomiclab can read: {' '.join(str(exc).split())}") from exc
