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
from typing import Any

import re2

from harness.detect.sumo.patterns import re2_text
from harness.detect.sumo.values import Value, to_number, to_text
from harness.errors import NotSupportedLocallyError, RuleSyntaxError

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
    """substring.md: offsets are non-negative integers, end >= start, an end past the string is the
    string's end. Literal offsets that break this are refused at parse time (check_call); offsets
    computed per message that break it give null (a choice, docs/sumo-semantics.md)."""
    a = to_number(start)
    b = None if end is None else to_number(end)
    if a is None or (end is not None and b is None) or a < 0 or (b is not None and b < a):
        return None
    if a != int(a) or (b is not None and b != int(b)) or a >= len(s):
        return None
    return s[int(a) :] if b is None else s[int(a) : int(min(b, len(s)))]


def _round(x: float, digits: float | None = None) -> Value:
    if digits is None:
        return math.floor(x + 0.5)  # Sumo rounds half up, not to even
    scale = 10 ** int(digits)
    return float(math.floor(x * scale + 0.5) / scale)


def _num(v: Value) -> Value:
    """``num``: "converts a field to a double value" (num.md); null when it is not a number."""
    n = to_number(v)
    return None if n is None else float(n)


def _to_long(v: Value) -> Value:
    n = to_number(v)
    if n is None or n != n or n in (float("inf"), float("-inf")):
        return None
    return int(n)


def _to_string(v: Value) -> Value:
    return to_text(v)


#: Java number syntax as isNumeric.md describes it (Apache Commons NumberUtils.isCreatable): hex with
#: 0x/0X, octal with a leading zero, decimals with exponent, type qualifiers (123L, 1.5f, 2d).
_JAVA_NUMBER = re2.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F]+[lL]?|0[0-7]*[lL]?|[1-9][0-9]*[lL]"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)"
)


def _is_numeric(v: Value) -> Value:
    """Java's rules (isNumeric.md): "09" is false (not octal), "1e5", "0x1F", "123L" are true; null and
    blank are false."""
    if v is None or isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    text = v
    if not text or text != text.strip():
        return False
    if _JAVA_NUMBER.fullmatch(re2_text(text)) is None:
        return False
    body = text.lstrip("+-")
    # a leading zero followed only by digits is octal: any 8 or 9 makes it invalid
    return not (len(body) > 1 and body[0] == "0" and body.isdigit() and any(c in "89" for c in body))


def _length(v: Value) -> Value:
    """"If the string is null, it returns 0." (length.md)"""
    text = to_text(v)
    return 0 if text is None else len(text)


def _concat(*args: Value) -> Value:
    """"A null field is treated as an empty string." (concat.md)"""
    return "".join(t for t in (to_text(a) for a in args) if t is not None)


def _contains(s: str, sub: str) -> Value:
    """"Returns true if field1 and field2 are empty, and false when only one is empty." (contains.md)"""
    if not sub:
        return not s
    return sub in s


#: Java's String.trim: "eliminates leading and trailing spaces" (trim.md) -- every char <= U+0020.
_TRIM = "".join(chr(c) for c in range(0x21))


def _replace_template(template: str) -> list[tuple[str, str | int]]:
    """Parse a replace() template: ``$1``/``$0``, ``${name}``, ``\\$`` (literal $), ``\\\\``, ``\\n``,
    ``\\t`` (replace.md, "Required characters to escape")."""
    parts: list[tuple[str, str | int]] = []
    lit: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "\\" and i + 1 < n:
            nxt = template[i + 1]
            lit.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        if ch == "$" and i + 1 < n and template[i + 1] == "{":
            end = template.find("}", i + 2)
            if end > 0:
                parts.append(("lit", "".join(lit)))
                lit = []
                parts.append(("name", template[i + 2:end]))
                i = end + 1
                continue
        if ch == "$" and i + 1 < n and template[i + 1].isascii() and template[i + 1].isdigit():
            j = i + 1
            while j < n and template[j].isascii() and template[j].isdigit():
                j += 1
            parts.append(("lit", "".join(lit)))
            lit = []
            parts.append(("num", int(template[i + 1:j])))
            i = j
            continue
        lit.append(ch)
        i += 1
    parts.append(("lit", "".join(lit)))
    return parts


def regex_replacer(pattern: str) -> Callable[[str, str], str]:
    """``replace(s, /re/, template)``: every match of the RE2 ``pattern`` replaced (replace.md)."""
    from harness.detect.sumo.patterns import compile_regex

    rx = compile_regex(pattern)

    def run(s: str, template: str) -> str:
        parts = _replace_template(template)

        def expand(m: Any) -> str:
            out = []
            for kind, val in parts:
                if kind == "lit":
                    out.append(str(val))
                else:
                    try:
                        g = m.group(val)
                    except (IndexError, KeyError, re2.error):
                        g = None
                    out.append(g or "")
            return "".join(out)

        return str(rx.sub(expand, re2_text(s)))

    return run


def _replace_re(s: str, pattern: str, template: str) -> Value:
    return regex_replacer(pattern)(s, template)


FUNCTIONS: dict[str, tuple[int, int, Impl]] = {
    "isnull": (1, 1, _is_null),
    "isempty": (1, 1, _is_empty),
    "isblank": (1, 1, _is_blank),
    "tolowercase": (1, 1, _lower),
    "touppercase": (1, 1, _upper),
    "concat": (2, 16, _concat),  # "The operator allows 2 to 16 input fields." (concat.md)
    "substring": (2, 3, _str_args(_substring)),
    "length": (1, 1, _length),
    "replace": (3, 3, _str_args(lambda s, a, b: s.replace(a, b) if a else s)),
    "replace_re": (3, 3, _str_args(_replace_re)),  # replace(s, /re/, t): the parser names it so
    "trim": (1, 1, _str_args(lambda s: s.strip(_TRIM))),
    "contains": (2, 2, _str_args(_contains)),
    "isnumeric": (1, 1, _is_numeric),
    "num": (1, 1, _num),
    "number": (1, 1, _num),
    "todouble": (1, 1, _num),
    "tolong": (1, 1, _to_long),
    "tostring": (1, 1, _to_string),
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
        raise NotSupportedLocallyError(
            f"the function '{name}'", file=file, line=line, column=column,
            hint="supported: if, " + ", ".join(sorted(n for n in FUNCTIONS if n != "replace_re")),
        )
    lo, hi = spec
    if not lo <= nargs <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise RuleSyntaxError(f"{name}() takes {want} argument(s), got {nargs}", file=file, line=line,
                              column=column)
