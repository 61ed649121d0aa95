"""``results.json``: the run as data, validated against ``schemas/results.schema.json``."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from harness.errors import ReportError
from harness.results import RunResult

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


def schema_problems(data: object) -> list[str]:
    """Every schema violation of ``data`` as ``json.path: message`` (empty when valid)."""
    out = []
    for err in sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{where}: {err.message}")
    return out


class ResultsJsonReporter:
    """Writes ``results.json`` (validated before it is written: a bug never ships an invalid file)."""

    filename = FILENAME

    def render(self, run: RunResult) -> str:
        data = run.to_dict()
        problems = schema_problems(data)
        if problems:
            raise ReportError(
                f"results.json would not match its schema: {problems[0]}",
                hint="this is a harness bug; please report it",
            )
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


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
