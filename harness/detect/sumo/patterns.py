"""Pattern matching with Sumo's semantics: quoted wildcard patterns and RE2 regular expressions.

* A double-quoted pattern (``x matches "a*b"``, scope terms, ``parse "..."``) is a WILDCARD
  pattern: only ``*`` is special (any run of characters, newlines included) and the pattern must
  match the WHOLE value. ``.``, ``(``, ``|``, ``\\`` and ``$`` are literal characters.
* ``x matches /re/`` is RE2 (google-re2), so what Sumo rejects (look-around, back-references,
  repetition counts over 1000 ...) is rejected here too. Sumo's docs do not say whether the regex must
  match the whole value. This engine follows the Cloud SIEM docs, which render ``foo matches /.*bar.*/``
  as ``foo RLIKE '.*bar.*'``: an UNANCHORED search. Write ``^...$`` to require the whole value. Lint
  warns about patterns whose result differs between the two readings (docs/sumo-semantics.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import re2

from harness.errors import RuleSyntaxError

StrPredicate = Callable[[str], bool]


def re2_text(value: str) -> str:
    """``value`` as google-re2's str API accepts it: a lone surrogate (hostile JSON events can carry one)
    is not UTF-8, so it becomes U+FFFD for the match; valid text is returned unchanged."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def compile_regex(pattern: str, *, file: str | Path | None = None, line: int | None = None,
                  column: int | None = None) -> Any:
    """Compile ``pattern`` with RE2; a pattern RE2 refuses is a RuleSyntaxError at its position."""
    options = re2.Options()
    options.log_errors = False  # the error becomes our one-line message; no C++ log on stderr
    try:
        return re2.compile(pattern, options=options)
    except UnicodeEncodeError as exc:
        raise RuleSyntaxError(f"the pattern {pattern!r} is not valid Unicode (a lone surrogate)",
                              file=file, line=line, column=column) from exc
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RuleSyntaxError(
            f"RE2 (the regex engine Sumo Logic uses) rejects /{pattern}/: {reason}",
            file=file, line=line, column=column,
            hint="RE2 has no look-around or back-references; see https://github.com/google/re2/wiki/Syntax",
        ) from exc


def regex_predicate(pattern: str) -> StrPredicate:
    """Unanchored RE2 search (see module docstring), case-sensitive unless the pattern says (?i).

    A yes/no search needs no capture groups, so the pattern is also compiled with RE2's
    ``never_capture`` (DFA only) and matched through the wrapper's RE2 object directly: the public
    ``search`` builds a generator, offset tables and a match object per call, which is most of the
    cost on short strings. If a google-re2 release moves those internals, the public API is used.
    """
    compiled = compile_regex(pattern)
    try:
        options = re2.Options()
        options.never_capture = True
        options.log_errors = False
        raw = re2.compile(pattern, options=options)._regexp
        anchor = re2._Anchor.UNANCHORED
        null_span = re2._NULL_SPAN
        raw.Match(anchor, b"", 0, 0)
    except (AttributeError, TypeError, re2.error):
        search = compiled.search
        return lambda value: search(re2_text(value)) is not None

    match = raw.Match

    def pred(value: str) -> bool:
        data = value.encode("utf-8", "surrogatepass")
        return bool(match(anchor, data, 0, len(data))[0] != null_span)

    pred.re2_match = (match, anchor, null_span)  # type: ignore[attr-defined]  # for codegen.py
    return pred


def _glob_parts_match(head: str, inner: list[str], tail: str, v: str) -> bool:
    """Whole-value match of ``head*inner[0]*...*tail``: each literal found leftmost after the last.

    Greedy leftmost placement is exact for patterns whose only wildcard is ``*`` (an earlier
    placement never leaves less room for the rest), and each ``str.find`` is linear, so the whole
    match is linear in ``len(v)`` times the number of ``*``: no backtracking (issue 16).
    """
    if len(v) < len(head) + len(tail) or not v.startswith(head) or not v.endswith(tail):
        return False
    pos, end = len(head), len(v) - len(tail)
    for seg in inner:
        if seg:
            i = v.find(seg, pos, end)
            if i < 0:
                return False
            pos = i + len(seg)
    return True


def wildcard_predicate(pattern: str, *, ignore_case: bool = False) -> StrPredicate:
    """Whole-value wildcard match where only ``*`` is special, in linear time.

    The common shapes (no star, ``x*``, ``*x``, ``*x*``) become plain string operations; anything
    else is a left-to-right search of the literal pieces (``_glob_parts_match``), never a
    backtracking regular expression.
    """
    norm: Callable[[str], str] = str.lower if ignore_case else (lambda s: s)
    pat = norm(pattern)
    parts = pat.split("*")
    if len(parts) == 1:
        if ignore_case:
            return lambda v: v.lower() == pat
        return lambda v: v == pat
    inner = parts[1:-1]
    head, tail = parts[0], parts[-1]
    if not any(inner) and not head and not tail:  # only stars: matches everything
        return lambda v: True
    if len(parts) == 2:
        if not tail:
            return lambda v: norm(v).startswith(head)
        if not head:
            return lambda v: norm(v).endswith(tail)
    if len(parts) == 3 and not head and not tail and inner[0]:
        needle = inner[0]
        return lambda v: needle in norm(v)
    pieces = [p for p in inner if p]
    return lambda v: _glob_parts_match(head, pieces, tail, norm(v))


def wildcard_capture(pattern: str) -> Any:
    """The RE2 regex for a ``parse "anchor*anchor"`` pattern: each ``*`` is a lazy capture group.

    Sumo's parse finds the anchors anywhere in the value (it is not anchored at the start or end),
    and each ``*`` captures the shortest text up to the next anchor; a trailing ``*`` takes the rest
    of the value. RE2 gives Perl's leftmost-first preference for lazy groups in linear time, so a
    long value cannot make the parse backtrack (issue 16).
    """
    parts = pattern.split("*")
    pieces: list[str] = ["(?s)"]
    for i, literal in enumerate(parts):
        pieces.append(re2.escape(literal))
        if i < len(parts) - 1:
            greedy = i == len(parts) - 2 and not parts[-1]
            pieces.append("(.*)" if greedy else "(.*?)")
    return compile_regex("".join(pieces))
