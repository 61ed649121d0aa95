"""Built-in functions of Sumo expressions: name -> (arity range, implementation).

Strings functions return null when a string argument is null (Sumo's null propagation), and
``toLowerCase``/``toUpperCase`` accept strings only (a number gives null). ``if`` is not here: the
compiler evaluates it lazily, only the branch it needs. ``replace`` replaces a literal string (the
regex form is not implemented). Names are case-insensitive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from harness.detect.sumo.values import Value, to_number, to_text
from harness.errors import RuleSyntaxError, UnsupportedRuleError

Impl = Callable[..., Value]


def _str_args(fn: Callable[..., Value]) -> Impl:
    """Wrap ``fn`` so that any null argument gives null and values arrive as strings."""

    def wrapped(*args: Value) -> Value:
        texts = [to_text(a) for a in args]
        if any(t is None for t in texts):
            return None
        return fn(*texts)

    return wrapped


def _num_args(fn: Callable[..., Value]) -> Impl:
    def wrapped(*args: Value) -> Value:
        nums = [to_number(a) for a in args]
        if any(n is None for n in nums):
            return None
        try:
            return fn(*nums)
        except (ValueError, OverflowError, ZeroDivisionError):
            return None

    return wrapped


def _is_null(v: Value) -> Value:
    return v is None


def _is_empty(v: Value) -> Value:
    return v is None or v == ""


def _is_blank(v: Value) -> Value:
    return v is None or (isinstance(v, str) and not v.strip())


def _lower(v: Value) -> Value:
    return v.lower() if isinstance(v, str) else None


def _upper(v: Value) -> Value:
    return v.upper() if isinstance(v, str) else None


def _substring(s: str, start: str, end: str | None = None) -> Value:
    a = to_number(start)
    b = None if end is None else to_number(end)
    if a is None or (end is not None and b is None):
        return None
    return s[int(a) :] if b is None else s[int(a) : int(b)]


def _round(x: float, digits: float | None = None) -> Value:
    if digits is None:
        return math.floor(x + 0.5)  # Sumo rounds half up, not to even
    scale = 10 ** int(digits)
    return float(math.floor(x * scale + 0.5) / scale)


def _num(v: Value) -> Value:
    return to_number(v)


def _is_numeric(v: Value) -> Value:
    return to_number(v) is not None


FUNCTIONS: dict[str, tuple[int, int, Impl]] = {
    "isnull": (1, 1, _is_null),
    "isempty": (1, 1, _is_empty),
    "isblank": (1, 1, _is_blank),
    "tolowercase": (1, 1, _lower),
    "touppercase": (1, 1, _upper),
    "concat": (1, 64, _str_args(lambda *s: "".join(s))),
    "substring": (2, 3, _str_args(_substring)),
    "length": (1, 1, _str_args(len)),
    "replace": (3, 3, _str_args(lambda s, a, b: s.replace(a, b) if a else s)),
    "trim": (1, 1, _str_args(str.strip)),
    "contains": (2, 2, _str_args(lambda s, sub: sub in s)),
    "isnumeric": (1, 1, _is_numeric),
    "num": (1, 1, _num),
    "abs": (1, 1, _num_args(abs)),
    "ceil": (1, 1, _num_args(math.ceil)),
    "floor": (1, 1, _num_args(math.floor)),
    "round": (1, 2, _num_args(_round)),
    "sqrt": (1, 1, _num_args(math.sqrt)),
    "min": (2, 2, _num_args(min)),
    "max": (2, 2, _num_args(max)),
}

#: Functions the compiler implements itself (lazy evaluation).
SPECIAL = {"if": (3, 3)}


def check_call(name: str, nargs: int, file: str | Path | None, line: int, column: int) -> None:
    """Raise if ``name`` is unknown or called with the wrong number of arguments."""
    spec = SPECIAL.get(name) or (FUNCTIONS[name][:2] if name in FUNCTIONS else None)
    if spec is None:
        raise UnsupportedRuleError(
            f"{file or '<rule>'}:{line}:{column}: function '{name}' is not supported by the local Sumo engine",
            hint="supported: if, " + ", ".join(sorted(FUNCTIONS)),
        )
    lo, hi = spec
    if not lo <= nargs <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise RuleSyntaxError(f"{name}() takes {want} argument(s), got {nargs}", file=file, line=line,
                              column=column)
