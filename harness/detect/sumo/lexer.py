"""Tokens of a Sumo Logic Log Search query, each with its exact line and column.

The scope line (everything before the first top-level ``|``) and the pipeline use different token
rules: in the scope, ``_sourceCategory=*Windows/Sysmon*`` is one metadata term whose value is a bare
wildcard word, while in the pipeline ``/`` is division and ``/.../`` is a regex only right after
``matches``. ``tokenize`` therefore returns the scope tokens and the pipeline tokens separately.
Comments (``//`` to end of line, ``/* ... */``) are skipped in both parts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from harness.errors import RuleSyntaxError


class Tok(enum.Enum):
    IDENT = "identifier"
    STRING = "string"
    REGEX = "regex"
    NUMBER = "number"
    DURATION = "duration"
    OP = "operator"
    PIPE = "|"
    WORD = "word"  # scope line only: a bare keyword or metadata value
    EOF = "end of query"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str  # the value: unescaped for strings, the pattern for regexes, the source text otherwise
    offset: int
    line: int
    column: int
    raw: str = ""  # exact source text (strings and regexes keep their quotes/slashes here)

    def is_kw(self, *words: str) -> bool:
        """True for an identifier equal (case-insensitively) to one of ``words``."""
        return self.kind is Tok.IDENT and self.text.lower() in words


_DIGITS = frozenset("0123456789")  # ASCII only: str.isdigit() also accepts '²' and other scripts' digits
_TWO_CHAR_OPS = ("==", "!=", "<>", "<=", ">=", "&&")
_ONE_CHAR_OPS = "()=,<>!+-*/%?:[]."


class _Source:
    """The query text with offset -> (line, column) conversion (both 1-based)."""

    def __init__(self, text: str, file: str | Path | None) -> None:
        self.text = text
        self.file = file
        self._line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self._line_starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:  # last line start <= offset
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._line_starts[lo] + 1

    def error(self, offset: int, message: str, hint: str | None = None) -> RuleSyntaxError:
        line, column = self.position(offset)
        return RuleSyntaxError(message, file=self.file, line=line, column=column, hint=hint)

    def token(self, kind: Tok, text: str, offset: int, raw: str = "") -> Token:
        line, column = self.position(offset)
        return Token(kind, text, offset, line, column, raw or text)


@dataclass(frozen=True, slots=True)
class Lexed:
    """A tokenized query: scope tokens (WORD/STRING/OP parens), then pipeline tokens (ending in EOF)."""

    source: _Source
    scope: tuple[Token, ...]
    pipeline: tuple[Token, ...]


def _skip_comment(text: str, i: int, src: _Source) -> int:
    """If a comment starts at ``i`` return the offset after it, else ``i``."""
    if text.startswith("//", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j + 1
    if text.startswith("/*", i):
        j = text.find("*/", i + 2)
        if j < 0:
            raise src.error(i, "unterminated /* comment", "close it with */")
        return j + 2
    return i


def _read_string(text: str, i: int, src: _Source) -> tuple[str, int]:
    """Read a double-quoted string at ``i``; return (value, offset after the closing quote).

    Only ``\\"`` and ``\\\\`` are escapes; any other backslash is kept as written. Sumo documents
    ``\\"`` only; keeping other backslashes means a quoted pattern such as ``".*\\$"`` keeps its
    backslash, which is what the wildcard matcher then sees literally (docs/sumo-semantics.md).
    """
    out: list[str] = []
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\" and j + 1 < n and text[j + 1] in "\"\\":
            out.append(text[j + 1])
            j += 2
            continue
        if ch == '"':
            return "".join(out), j + 1
        out.append(ch)
        j += 1
    raise src.error(i, "unterminated string literal", 'close it with "')


def _read_regex(text: str, i: int, src: _Source) -> tuple[str, int]:
    """Read ``/pattern/`` at ``i``; ``\\/`` stays in the pattern (RE2 reads it as a literal slash)."""
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\" and j + 1 < n:
            j += 2
            continue
        if ch == "/":
            return text[i + 1 : j], j + 1
        if ch == "\n":
            break
        j += 1
    raise src.error(i, "unterminated /regex/", "close the regular expression with / on the same line")


def _token_start(text: str, i: int) -> bool:
    """In the scope line a comment starts only where a token could: ``prod/*`` is a wildcard value."""
    return i == 0 or text[i - 1].isspace() or text[i - 1] in "()"


def _scope_end(text: str, src: _Source) -> int:
    """Offset of the first ``|`` outside strings and comments (or len(text))."""
    i, n = 0, len(text)
    while i < n:
        j = _skip_comment(text, i, src) if _token_start(text, i) else i
        if j != i:
            i = j
            continue
        ch = text[i]
        if ch == '"':
            _, i = _read_string(text, i, src)
            continue
        if ch == "|":
            return i
        i += 1
    return n


def _lex_scope(text: str, end: int, src: _Source) -> list[Token]:
    toks: list[Token] = []
    i = 0
    while i < end:
        j = _skip_comment(text, i, src) if _token_start(text, i) else i
        if j != i:
            i = j
            continue
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            toks.append(src.token(Tok.OP, ch, i))
            i += 1
        elif ch == "=":
            toks.append(src.token(Tok.OP, "=", i))
            i += 1
        elif ch == '"':
            value, k = _read_string(text, i, src)
            toks.append(src.token(Tok.STRING, value, i, text[i:k]))
            i = k
        else:
            k = i
            while k < end and not text[k].isspace() and text[k] not in '()="':
                k += 1
            toks.append(src.token(Tok.WORD, text[i:k], i))
            i = k
    return toks


def _lex_pipeline(text: str, start: int, src: _Source) -> list[Token]:
    toks: list[Token] = []
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        # a /regex/ follows 'matches', or starts an argument ('replace(x, /re/, y)'): after '(' or ',' a
        # '/' cannot be division
        regex_allowed = bool(toks) and (toks[-1].is_kw("matches") or (
            toks[-1].kind is Tok.OP and toks[-1].text in ("(", ",")))
        if ch == "/" and regex_allowed and not text.startswith("/*", i) and not text.startswith("//", i):
            pattern, k = _read_regex(text, i, src)
            toks.append(src.token(Tok.REGEX, pattern, i, text[i:k]))
            i = k
            continue
        j = _skip_comment(text, i, src)
        if j != i:
            i = j
            continue
        if ch.isspace():
            i += 1
        elif ch == "|":
            toks.append(src.token(Tok.PIPE, "|", i))
            i += 1
        elif ch == '"':
            value, k = _read_string(text, i, src)
            toks.append(src.token(Tok.STRING, value, i, text[i:k]))
            i = k
        elif ch in _DIGITS:
            k = i
            while k < n and (text[k] in _DIGITS or text[k] == "."):
                if text[k] == "." and not (k + 1 < n and text[k + 1] in _DIGITS):
                    break
                k += 1
            if k < n and text[k] in "eE" and (
                (k + 1 < n and text[k + 1] in _DIGITS)
                or (k + 2 < n and text[k + 1] in "+-" and text[k + 2] in _DIGITS)
            ):  # an exponent: 1e3, 2.5E-3
                k += 2
                while k < n and text[k] in _DIGITS:
                    k += 1
                toks.append(src.token(Tok.NUMBER, text[i:k], i))
                i = k
            elif k < n and text[k].isalpha():  # 1m, 15s, 1h: a duration (timeslice)
                m = k
                while m < n and text[m].isalpha():
                    m += 1
                toks.append(src.token(Tok.DURATION, text[i:m], i))
                i = m
            else:
                toks.append(src.token(Tok.NUMBER, text[i:k], i))
                i = k
        elif ch.isalpha() or ch == "_":
            k = i + 1
            while k < n and (text[k].isalnum() or text[k] == "_"):
                k += 1
            toks.append(src.token(Tok.IDENT, text[i:k], i))
            i = k
        elif ch == "%" and text.startswith('%"', i):
            # %"field name": a field whose name has spaces or other characters (fields.md)
            name, k = _read_string(text, i + 1, src)
            if not name:
                raise src.error(i, 'empty field name %""')
            toks.append(src.token(Tok.IDENT, name, i, text[i:k]))
            i = k
        elif text[i : i + 2] in _TWO_CHAR_OPS:
            toks.append(src.token(Tok.OP, text[i : i + 2], i))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            toks.append(src.token(Tok.OP, ch, i))
            i += 1
        else:
            raise src.error(i, f"unexpected character {ch!r}")
    toks.append(src.token(Tok.EOF, "", n))
    return toks


def tokenize(text: str, file: str | Path | None = None) -> Lexed:
    """Split ``text`` into scope and pipeline tokens. Raises RuleSyntaxError with line:column."""
    src = _Source(text, file)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no Sumo query (UTF-8 text) can hold one
        raise src.error(exc.start, "the query is not valid Unicode (a lone surrogate code point)",
                        "save the rule as UTF-8 text") from exc
    end = _scope_end(text, src)
    return Lexed(src, tuple(_lex_scope(text, end, src)), tuple(_lex_pipeline(text, end, src)))
