"""Sumo's loose value semantics, in one place: numbers from strings, truth, equality, ordering.

Values are ``str``, ``int``, ``float``, ``bool`` or ``None`` (null: an absent field or a failed
parse). Choices where Sumo's docs are silent are listed in docs/sumo-semantics.md:

* ``=``/``!=`` with a null side are false (both of them). Two strings compare as strings,
  case-sensitively; a number against a string that reads as a number compares numerically.
* ``<``, ``<=``, ``>``, ``>=`` compare numerically when both sides read as numbers, two other
  strings as strings; a number against non-numeric text, or null on either side, is false.
* Arithmetic reads both sides as numbers; null or a non-number gives null; division by zero is null.
* Truth: booleans as is; numbers are true when non-zero; the strings "true"/"false" (any case);
  null and any other string are false.
"""

from __future__ import annotations

import math

Value = str | int | float | bool | None


def to_number(v: Value) -> int | float | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return v
    s = v.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return None
    return f if f == f else None  # NaN is not a number a query can use


def truthy(v: Value) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    return v.lower() == "true"


def to_text(v: Value) -> str | None:
    """The string form of a value (what ``matches`` and string functions see)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def equals(a: Value, b: Value) -> bool | None:
    """``a = b``; None when either side is null (the caller treats that as not true)."""
    if a is None or b is None:
        return None
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return to_text(a) == to_text(b)
    na, nb = to_number(a), to_number(b)
    if na is not None and nb is not None:
        return na == nb
    return to_text(a) == to_text(b)


def compare(a: Value, b: Value) -> int | None:
    """-1/0/1 ordering, or None when either side is null."""
    if a is None or b is None:
        return None
    na, nb = to_number(a), to_number(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    if not (isinstance(a, str) and isinstance(b, str)):
        return None  # a number against text that is not a number: not comparable, so not true
    sa, sb = to_text(a) or "", to_text(b) or ""
    return (sa > sb) - (sa < sb)


def arith(op: str, x: Value, y: Value) -> Value:
    """``x op y`` for + - * / %: numbers read from both sides; null or non-numbers give null."""
    nx, ny = to_number(x), to_number(y)
    if nx is None or ny is None:
        return None
    if op == "+":
        return nx + ny
    if op == "-":
        return nx - ny
    if op == "*":
        return nx * ny
    if ny == 0:
        return None  # division by zero is null, not an error
    if op == "/":
        q = nx / ny
        return int(q) if isinstance(nx, int) and isinstance(ny, int) and q.is_integer() else q
    return math.fmod(nx, ny) if isinstance(nx, float) or isinstance(ny, float) else nx % ny


def in_equals(subject: Value, item: Value) -> bool:
    """Membership test of ``subject in (..., item, ...)``.

    Unlike ``=``, ``in`` does not cast text to numbers: "When using the where operator to match integers
    like this: where value in (integer_value1, ...)" you "will first need to cast" the value
    (search-operators/manually-cast-data-string-number.md). So a text subject never equals a number item;
    everything else is ``=``.
    """
    if subject is None or item is None:
        return False
    if isinstance(subject, str) and isinstance(item, int | float) and not isinstance(item, bool):
        return False
    return equals(subject, item) is True
