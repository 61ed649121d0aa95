"""Sumo Logic lint: every construct real Sumo would reject or read differently, with line:column.

Checks (code, severity):

* SUMO001 error   ``| eval x = ...``: no such operator (Splunk); Sumo writes ``<expr> as x``.
* SUMO002 error   ``matches(x, "...")``: the call form is not Sumo; ``x matches "..."``/``/re/``.
* SUMO003 error   a quoted ``matches`` pattern that looks like a regex: quoted patterns are
                  wildcards (only ``*`` is special), so ``".*(a|b).*"`` needs a literal ``.``/``(``.
* SUMO004 error   a negated wildcard such as ``!matches(user, ".*\\$")`` that excludes nothing.
* SUMO005 error   Splunk field names ``_time`` / ``host`` (Sumo: ``_messageTime``, ``_sourceHost``).
* SUMO006 warning a pattern whose outcome depends on newlines (RE2 ``.`` stops at ``\\n`` without
                  ``(?s)``; multi-line command lines are common).
* SUMO007 warning a pattern whose outcome depends on whole-value vs search matching (``.*`` at the
                  start or end of a /regex/: redundant for a search, required for a whole match).
* SUMO008 error   valid Sumo that the local engine does not run ("not supported by the local engine"),
                  at the operator: lint never calls a query clean that ``detect`` cannot run.
* SUMO000 error   any other parse error of the engine's parser (not already reported above).

The lint works on tokens, so it reports every defect, not just the first one the parser meets.
"""

from __future__ import annotations

from pathlib import Path

from harness.detect.lint import LintFinding, Severity
from harness.detect.sumo.lexer import Tok, Token, tokenize
from harness.detect.sumo.parser import parse_query
from harness.errors import NotSupportedLocallyError, RuleSyntaxError, UnsupportedRuleError

_REGEX_HINTS = (".*", ".+", "\\", "(", "|", "[", "^", "?", "+", "{")
_SPLUNK_FIELDS = {"_time": "_messageTime (or _receiptTime)", "host": "_sourceHost"}


def _looks_like_regex(pattern: str) -> bool:
    return any(h in pattern for h in _REGEX_HINTS) or (pattern.endswith("$") and not pattern.endswith("*$"))


def _dot_outside_class(pattern: str) -> bool:
    """True when the regex has an unescaped ``.`` outside a character class."""
    i, n, in_class = 0, len(pattern), False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern.startswith("]", i + 1):
                i += 1
        elif ch == ".":
            return True
        i += 1
    return False


def _dotall(pattern: str) -> bool:
    head = pattern[: pattern.find(")") + 1] if pattern.startswith("(?") else ""
    return "s" in head.split(":")[0]


class _Lint:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.found: list[LintFinding] = []

    def add(self, tok: Token, severity: Severity, code: str, message: str) -> None:
        self.found.append(LintFinding(self.file, tok.line, tok.column, severity, code, message))

    def run(self) -> list[LintFinding]:
        try:
            lexed = tokenize(self.text, self.file)
        except RuleSyntaxError as exc:
            self.found.append(LintFinding(self.file, exc.line or 1, exc.column or 1, Severity.ERROR,
                                          "SUMO000", _detail(exc)))
            return self.found
        toks = lexed.pipeline
        for i, t in enumerate(toks):
            prev = toks[i - 1] if i else None
            nxt = toks[i + 1] if i + 1 < len(toks) else t
            if t.is_kw("eval") and (prev is None or prev.kind is Tok.PIPE):
                self.add(t, Severity.ERROR, "SUMO001",
                         "'eval' is not a Sumo Logic operator (Splunk syntax) and 'x = y' is a comparison "
                         "in Sumo: the query fails with a parse error; write '<expression> as x'")
            elif t.is_kw("matches") and nxt.kind is Tok.OP and nxt.text == "(":
                self.add(t, Severity.ERROR, "SUMO002",
                         "'matches(x, \"...\")' is not Sumo Logic: use the infix form 'x matches \"wild*card\"' "
                         "or 'x matches /regex/', negated as '!(x matches ...)'")
                pat = self._call_pattern(toks, i + 1)
                if pat is not None:
                    negated = prev is not None and prev.kind is Tok.OP and prev.text == "!"
                    self._quoted_pattern(pat, negated)
            elif t.is_kw("matches") and nxt.kind is Tok.STRING:
                negated = self._negated_infix(toks, i)
                self._quoted_pattern(nxt, negated)
            elif t.is_kw("matches") and nxt.kind is Tok.REGEX:
                self._regex_pattern(nxt)
            elif (
                t.kind is Tok.IDENT
                and t.text.lower() in _SPLUNK_FIELDS
                and not (prev and prev.is_kw("as"))
                and not (nxt.kind is Tok.OP and nxt.text == "(")
            ):
                self.add(t, Severity.ERROR, "SUMO005",
                         f"'{t.text}' is a Splunk field name; Sumo Logic has no such field (it is null), "
                         f"use {_SPLUNK_FIELDS[t.text.lower()]}")
        self._parse_errors()
        return sorted(self.found, key=lambda f: (f.line, f.column, f.code))

    @staticmethod
    def _call_pattern(toks: tuple[Token, ...], open_idx: int) -> Token | None:
        """The STRING that is the second argument of ``matches( subject , "pattern" )``."""
        depth = 0
        for k in range(open_idx, len(toks)):
            t = toks[k]
            if t.kind is Tok.OP and t.text == "(":
                depth += 1
            elif t.kind is Tok.OP and t.text == ")":
                depth -= 1
                if depth == 0:
                    return None
            elif t.kind is Tok.OP and t.text == "," and depth == 1:
                after = toks[k + 1] if k + 1 < len(toks) else None
                return after if after is not None and after.kind is Tok.STRING else None
            elif t.kind in (Tok.PIPE, Tok.EOF):
                return None
        return None

    @staticmethod
    def _negated_infix(toks: tuple[Token, ...], i: int) -> bool:
        """``!(x matches "...")`` or ``!x matches``: a '!' right before the subject or its paren."""
        k = i - 1
        while k >= 0 and toks[k].kind in (Tok.IDENT, Tok.NUMBER):
            k -= 1
        while k >= 0 and toks[k].kind is Tok.OP and toks[k].text == "(":
            if k >= 1 and toks[k - 1].kind is Tok.OP and toks[k - 1].text == "!":
                return True
            k -= 1
        return k >= 0 and toks[k].kind is Tok.OP and toks[k].text == "!"

    def _quoted_pattern(self, tok: Token, negated: bool) -> None:
        pattern = tok.text
        if not _looks_like_regex(pattern):
            return
        literal_head = pattern.split("*", 1)[0]
        if negated:
            self.add(tok, Severity.ERROR, "SUMO004",
                     f"{tok.raw} is a wildcard pattern (only * is special): it matches only values that "
                     f"literally start with {literal_head!r} and end with {pattern.rsplit('*', 1)[-1]!r}, so "
                     "negating it excludes (almost) nothing; for machine accounts write !(user matches \"*$\")")
        else:
            self.add(tok, Severity.ERROR, "SUMO003",
                     f"{tok.raw} is a wildcard pattern, not a regex (only * is special; '.', '(', '|', '\\' "
                     "are literal): it never matches what the regex would; write /regex/ (RE2) instead")
        if pattern.startswith(".*") or pattern.endswith(".*"):
            self.add(tok, Severity.WARNING, "SUMO006",
                     "read as the regex it was meant to be, this '.*...' pattern must match the whole value "
                     "and '.' does not cross newlines: it fails on multi-line values such as PowerShell "
                     "script command lines; use an unanchored /(...)/ search (or (?s))")

    def _regex_pattern(self, tok: Token) -> None:
        pattern = tok.text
        dotall = _dotall(pattern)
        body = pattern[pattern.find(")") + 1 :] if pattern.startswith("(?") else pattern
        if body.startswith(".*") or body.endswith(".*"):
            self.add(tok, Severity.WARNING, "SUMO007",
                     f"{tok.raw}: a leading/trailing '.*' only matters if Sumo matched the whole value; "
                     "this engine (like CSE's RLIKE) searches, so the outcome depends on that undocumented "
                     "choice; drop the '.*' (and anchor with ^...$ if the whole value is meant)")
        if not dotall and _dot_outside_class(pattern):
            self.add(tok, Severity.WARNING, "SUMO006",
                     f"{tok.raw}: '.' does not match a newline in RE2, so the outcome depends on whether the "
                     "value spans lines (multi-line command lines are common); add (?s) or use [\\s\\S]")

    def _parse_errors(self) -> None:
        try:
            parse_query(self.text, self.file)
        except RuleSyntaxError as exc:
            line, column = exc.line or 1, exc.column or 1
            if not any(f.line == line and f.column == column for f in self.found):
                self.found.append(LintFinding(self.file, line, column, Severity.ERROR, "SUMO000", _detail(exc)))
        except NotSupportedLocallyError as exc:
            # valid Sumo: not the author's error, but `detect` cannot run it, so lint must not call it clean
            self.found.append(LintFinding(self.file, exc.line or 1, exc.column or 1, Severity.ERROR, "SUMO008",
                                          f"{exc.detail}; the query is valid Sumo, run it against the tenant"))
        except UnsupportedRuleError as exc:
            self.found.append(LintFinding(self.file, 1, 1, Severity.ERROR, "SUMO000", str(exc)))


def _detail(exc: RuleSyntaxError) -> str:
    """The parser's message without its ``FILE:LINE:COL:`` prefix (the finding prints the position)."""
    return f"{exc.detail} ({exc.hint})" if exc.hint else exc.detail


def lint_sumo(text: str, file: str | Path | None = None) -> list[LintFinding]:
    """All findings for the query ``text`` (``file`` names it in the findings)."""
    return _Lint(text, str(file) if file is not None else "<rule>").run()
