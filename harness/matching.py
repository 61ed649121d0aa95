"""Sigma-style field conditions, used by expectations (``where:``) over events and detection rows.

A ``where`` mapping holds ``Field`` or ``Field|mod|mod`` keys; all conditions must hold (AND).

=============  =================================================================================
modifier       meaning
=============  =================================================================================
(none)         equals (case-insensitive; numbers also compare numerically: ``80`` == ``"80.0"``)
contains       substring
startswith     prefix
endswith       suffix
re             Python ``re.search`` with IGNORECASE, unless the pattern starts with ``(?-i)``
all            with a list value: every value must match (default: any one of them)
gt gte lt lte  numeric comparison (the field must parse as a number, decimal or 0x-hex)
=============  =================================================================================

Semantics as in Sigma: matching is case-insensitive; a list value means OR (with ``|all``, AND); a
condition on an absent field is false; the value ``null`` (alone or in a list) means "field absent".
A field whose value is ``None`` counts as absent (detection rows use None for Sumo nulls).

Field lookup is exact first, then case-insensitive (Sumo returns field names lower-cased). Everything
is compiled once in ``Conditions.parse`` because ``matches`` runs over many events.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

from harness.errors import ContentError


class Modifier(enum.StrEnum):
    CONTAINS = "contains"
    STARTSWITH = "startswith"
    ENDSWITH = "endswith"
    RE = "re"
    ALL = "all"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


_OPERATORS = frozenset(Modifier) - {Modifier.ALL}
_NUMERIC = frozenset({Modifier.GT, Modifier.GTE, Modifier.LT, Modifier.LTE})
_CASE_SENSITIVE_PREFIX = "(?-i)"

Scalar = str | int | float | bool
_Test = Callable[[str], bool]


def _as_number(text: str) -> float | None:
    t = text.strip()
    if not t:
        return None
    try:
        return float(int(t, 0)) if t.lower().startswith(("0x", "-0x")) else float(t)
    except ValueError:
        return None


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _field_text(value: object) -> str:
    if isinstance(value, bool | int | float):
        return _scalar_text(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``Field|mods: value(s)`` condition, compiled."""

    field: str
    operator: Modifier | None  # None = equals
    match_all: bool
    values: tuple[Scalar, ...]  # the non-null values, as written
    absent_ok: bool  # a null value was given: an absent field satisfies the condition
    key: str  # the key as written, for messages
    _tests: tuple[_Test, ...] = dc_field(repr=False, compare=False, default=())

    @property
    def expects_absent_only(self) -> bool:
        return self.absent_ok and not self.values

    def lookup(self, fields: Mapping[str, object]) -> tuple[bool, object]:
        """(found, value): exact name first, then case-insensitive."""
        if self.field in fields:
            value = fields[self.field]
            return value is not None, value
        wanted = self.field.casefold()
        for name, value in fields.items():
            if name.casefold() == wanted:
                return value is not None, value
        return False, None

    def matches(self, fields: Mapping[str, object]) -> bool:
        found, value = self.lookup(fields)
        if not found:
            return self.absent_ok
        if not self._tests:
            return False  # only null was allowed, and the field is present
        text = _field_text(value)
        if self.match_all:
            return all(test(text) for test in self._tests)
        return any(test(text) for test in self._tests)

    def explain(self, fields: Mapping[str, object]) -> str | None:
        """None when it matches, else one line saying why not."""
        if self.matches(fields):
            return None
        found, value = self.lookup(fields)
        if not found:
            return f"{self.key}: field {self.field} is absent"
        text = _field_text(value)
        if not self._tests:
            return f"{self.key}: field {self.field} should be absent but is {_quote(text)}"
        if self.operator in _NUMERIC and _as_number(text) is None:
            return f"{self.key}: {self.field}={_quote(text)} is not a number"
        failing = [v for v, t in zip(self.values, self._tests, strict=True) if not t(text)]
        quant = "every one of" if self.match_all else "any of"
        shown = ", ".join(_quote(_scalar_text(v)) for v in (failing if self.match_all else self.values))
        verb = _VERBS[self.operator]
        return f"{self.key}: {self.field}={_quote(text)} does not {verb} {quant} [{shown}]"

    def describe(self) -> str:
        vals = [_scalar_text(v) for v in self.values] + (["null"] if self.absent_ok else [])
        return f"{self.key}: {vals[0] if len(vals) == 1 else vals}"


def _quote(text: str, n: int = 120) -> str:
    """'text' for messages: backslashes as written (Windows paths stay readable), newlines shown."""
    clipped = text if len(text) <= n else text[: n - 3] + "..."
    return "'" + clipped.replace("\r", "\\r").replace("\n", "\\n") + "'"


_VERBS: dict[Modifier | None, str] = {
    None: "equal",
    Modifier.CONTAINS: "contain",
    Modifier.STARTSWITH: "start with",
    Modifier.ENDSWITH: "end with",
    Modifier.RE: "match",
    Modifier.GT: "exceed",
    Modifier.GTE: "reach",
    Modifier.LT: "stay below",
    Modifier.LTE: "stay at or below",
}


def _compile_test(op: Modifier | None, value: Scalar, *, where: str, file: object, line: int | None,
                  path: str | None) -> _Test:
    def bad(message: str, hint: str | None = None) -> ContentError:
        return ContentError(message, file=file if isinstance(file, str) else None if file is None else str(file),
                            line=line, path=path, hint=hint)

    if op in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                (isinstance(value, float) and math.isnan(value)):
            raise bad(f"{where}: |{op} needs a number, got {value!r}")
        bound = float(value)
        cmp: dict[Modifier, Callable[[float], bool]] = {
            Modifier.GT: lambda x: x > bound,
            Modifier.GTE: lambda x: x >= bound,
            Modifier.LT: lambda x: x < bound,
            Modifier.LTE: lambda x: x <= bound,
        }
        check = cmp[op]

        def numeric(text: str) -> bool:
            n = _as_number(text)
            return n is not None and check(n)

        return numeric
    if op is Modifier.RE:
        if not isinstance(value, str):
            raise bad(f"{where}: |re needs a string pattern, got {value!r}")
        flags: int = re.IGNORECASE
        pattern = value
        if pattern.startswith(_CASE_SENSITIVE_PREFIX):
            pattern, flags = pattern[len(_CASE_SENSITIVE_PREFIX):], 0
        try:
            compiled = re.compile(pattern, flags)
        except (re.error, OverflowError, RecursionError) as exc:
            raise bad(f"{where}: bad regular expression {value!r}: {exc}",
                      hint="Python re syntax; (?-i) at the start makes it case-sensitive") from exc
        return lambda text: compiled.search(text) is not None
    needle = _scalar_text(value).casefold()
    if op is Modifier.CONTAINS:
        return lambda text: needle in text.casefold()
    if op is Modifier.STARTSWITH:
        return lambda text: text.casefold().startswith(needle)
    if op is Modifier.ENDSWITH:
        return lambda text: text.casefold().endswith(needle)
    # equals: text compare, plus numeric compare when the expected value is a number.
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def equals(text: str) -> bool:
        if text.casefold() == needle:
            return True
        if number is None:
            return False
        n = _as_number(text)
        return n is not None and n == number

    return equals


def parse_condition(key: str, value: object, *, file: object = None, line: int | None = None,
                    path: str | None = None) -> Condition:
    """One condition from a ``where`` entry; ContentError (with file/line) when it is malformed."""

    def bad(message: str, hint: str | None = None) -> ContentError:
        return ContentError(message, file=None if file is None else str(file), line=line, path=path, hint=hint)

    if not isinstance(key, str) or not key.strip():
        raise bad(f"condition key {key!r} must be a non-empty field name")
    parts = key.split("|")
    name = parts[0].strip()
    if not name:
        raise bad(f"{key}: the field name before '|' is empty")
    operator: Modifier | None = None
    match_all = False
    for raw in parts[1:]:
        mod = raw.strip().lower()
        try:
            m = Modifier(mod)
        except ValueError:
            known = ", ".join(m.value for m in Modifier)
            raise bad(f"{key}: unknown modifier {raw!r}", hint=f"known modifiers: {known}") from None
        if m is Modifier.ALL:
            if match_all:
                raise bad(f"{key}: modifier 'all' given twice")
            match_all = True
        elif operator is not None:
            raise bad(f"{key}: modifiers {operator.value!r} and {m.value!r} cannot be combined")
        else:
            operator = m
    items: Sequence[object] = value if isinstance(value, list | tuple) else [value]
    if isinstance(value, list | tuple) and not value:
        raise bad(f"{key}: empty list of values")
    absent_ok = any(v is None for v in items)
    values: list[Scalar] = []
    for v in items:
        if v is None:
            continue
        if not isinstance(v, str | int | float | bool):
            raise bad(f"{key}: values must be strings, numbers or null, got {type(v).__name__}")
        values.append(v)
    if match_all and not isinstance(value, list | tuple):
        raise bad(f"{key}: |all needs a list of values")
    if match_all and absent_ok:
        raise bad(f"{key}: |all cannot be combined with null (absent)")
    if absent_ok and operator is not None and not values:
        raise bad(f"{key}: null means 'field absent' and takes no modifier")
    tests = tuple(_compile_test(operator, v, where=key, file=file, line=line, path=path) for v in values)
    return Condition(field=name, operator=operator, match_all=match_all, values=tuple(values),
                     absent_ok=absent_ok, key=key, _tests=tests)


@dataclass(frozen=True, slots=True)
class Conditions:
    """All conditions of one ``where`` mapping (AND). Empty conditions match everything."""

    items: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, mapping: Mapping[str, object] | None, *, file: object = None, line: int | None = None,
              path: str | None = None, lines: Mapping[str, int] | None = None) -> Conditions:
        """Compile a ``where`` mapping. ``lines`` may give each key's own source line."""
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ContentError(f"where must be a mapping of Field|modifier: value, got {type(mapping).__name__}",
                               file=None if file is None else str(file), line=line, path=path)
        out = []
        for key, value in mapping.items():
            key_line = (lines or {}).get(key, line)
            key_path = f"{path}.{key}" if path else key
            out.append(parse_condition(key, value, file=file, line=key_line, path=key_path))
        return cls(tuple(out))

    def __iter__(self) -> Iterator[Condition]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def matches(self, fields: Mapping[str, object]) -> bool:
        return all(c.matches(fields) for c in self.items)

    def explain(self, fields: Mapping[str, object]) -> list[str]:
        """One reason per failing condition (empty when everything matches)."""
        return [why for c in self.items if (why := c.explain(fields)) is not None]

    def describe(self) -> str:
        """The conditions as text, for reports: ``Image|endswith: \\nmap.exe; ...``."""
        return "; ".join(c.describe() for c in self.items) or "(any)"
