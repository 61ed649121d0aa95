"""JSON Schema (draft 2020-12) validation of a ``YamlDoc``, each error placed on its source line.

The schemas ship in ``harness/content/schemas/``. A schema node may carry ``x-message``: the text
shown instead of jsonschema's generic wording (jsonschema ignores unknown keywords).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from harness.content.yamldoc import YamlDoc, YamlPath
from harness.errors import ContentError

ATOMICS_SCHEMA = "atomics.schema.json"
EXPECTATIONS_SCHEMA = "expectations.schema.json"


@cache
def _validator(name: str) -> Draft202012Validator:
    # Cached per schema name: the schemas are immutable package data, compiling them once is safe.
    text = resources.files("harness.content").joinpath("schemas", name).read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_of(name: str) -> dict[str, Any]:
    """The parsed schema document (for docs and tests)."""
    schema: dict[str, Any] = _validator(name).schema  # type: ignore[assignment]
    return schema


def validate(doc: YamlDoc, schema_name: str) -> list[ContentError]:
    """Every schema violation in ``doc`` as a ContentError, in file order, at most one per YAML path."""
    problems: list[tuple[int, str, ContentError]] = []
    seen: set[tuple[YamlPath, str]] = set()
    for err in _validator(schema_name).iter_errors(doc.data):
        for path, message, on_key in _describe(err):
            if (path, message) in seen:
                continue
            seen.add((path, message))
            problem = doc.error(path, message, key=on_key)
            problems.append((problem.line or 0, problem.path or "", problem))
    problems.sort(key=lambda item: (item[0], item[1]))
    # Keep the most specific message per path: the first one jsonschema reported for it.
    out: list[ContentError] = []
    paths: set[str | None] = set()
    for _, _, problem in problems:
        if problem.path in paths:
            continue
        paths.add(problem.path)
        out.append(problem)
    return out


def _describe(err: ValidationError) -> list[tuple[YamlPath, str, bool]]:
    """(path, message, point-at-key) for one jsonschema error."""
    path: YamlPath = tuple(err.absolute_path)
    custom = err.schema.get("x-message") if isinstance(err.schema, dict) else None
    instance = err.instance
    if err.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = set((err.schema.get("properties") or {}) if isinstance(err.schema, dict) else ())
        extras = [k for k in instance if k not in allowed]
        known = ", ".join(sorted(allowed))
        return [((*path, k), f"unknown key {k!r} (allowed here: {known})", True) for k in extras]
    if err.validator == "required" and isinstance(instance, dict):
        required = err.validator_value if isinstance(err.validator_value, list) else []
        missing = [k for k in required if k not in instance]
        text = custom or f"missing required key {missing[0]!r}" if missing else err.message
        return [(path, str(text), False)]
    if "propertyNames" in err.schema_path and isinstance(instance, str):
        return [((*path, instance), f"bad key {instance!r}: {custom or err.message}", True)]
    if custom:
        return [(path, f"{_short(instance)}: {custom}", False)]
    if err.validator == "type":
        wanted = err.validator_value
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        return [(path, f"expected {wanted_text}, got {_kind(instance)} {_short(instance)}", False)]
    if err.validator == "minItems":
        return [(path, f"needs at least {err.validator_value} item(s)", False)]
    if err.validator == "minLength":
        return [(path, "must not be empty", False)]
    return [(path, err.message.splitlines()[0], False)]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
