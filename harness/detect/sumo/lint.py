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
* SUMO008 note    valid Sumo that the local engine does not run ("not supported by the local engine"),
                  at the operator: the query is clean Sumo, and lint still says ``detect`` cannot run it.
* SUMO009 warning ``x = "a*"``: ``=`` compares literally, the ``*`` is not a wildcard (use matches).
* SUMO010 warning an unquoted word in ``in (...)``: a field reference, not the text.
* SUMO011 warning ``x in (1, 2)`` on an uncast field: ``in`` does not cast text to numbers.
* SUMO012 warning a single-quoted phrase in the scope line: only double quotes delimit strings.
* SUMO000 error   any other parse error of the engine's parser (not already reported above).

The lint works on tokens, so it reports every defect, not just the first one the parser meets.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.detect.lint import LintFinding, Severity
from harness.detect.sumo import ast
from harness.detect.sumo.lexer import Tok, Token, tokenize
from harness.detect.sumo.parser import parse_query
from harness.errors import NotSupportedLocallyError, RuleSyntaxError, UnsupportedRuleError

_NUMBER_FUNCS = frozenset({"num", "number", "tolong", "todouble", "length", "abs", "ceil", "floor", "round",
                           "sqrt", "min", "max"})
_SPLUNK_FIELDS = {"_time": "_messageTime (or _receiptTime)", "host": "_sourceHost"}
#: Strong signs that a quoted wildcard pattern was written as a regex: ``.*``/``.+``, an escape followed by
#: a quantifier (``\\d+``), an escaped regex metacharacter (``\\.``, ``\\$``), a class range (``[a-z]``),
#: an alternation group, a leading ``^``. Windows paths (``\\Windows\\system32``), URL queries
#: (``"*/schedule?*"``, from search-operators/if.md) and ``+`` are ordinary wildcard text.
_REGEX_SIGNS = re.compile(r"\.[*+]|\\[dwsb][*+?{]|\\[.$()\[\]|]|\[[^\]]*-[^\]]*\]|\([^)]*\||^\^")


def _looks_like_regex(pattern: str) -> bool:
    if _REGEX_SIGNS.search(pattern) is not None:
        return True
    return pattern.endswith("$") and not pattern.endswith("*$")


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
        defined, casts, dynamic = self._defined_fields()
        # 'host' is an ordinary field name in Sumo's own examples (limit.md, matches.md); it is the Splunk
        # field only in a query that also speaks Splunk (eval, _time)
        splunk = any(t.is_kw("eval", "_time") for t in toks)
        self._scope_quotes(lexed.scope)
        self._in_lists(toks, casts)
        self._equals_wildcards(toks)
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
                and t.text.lower() not in defined  # a field the query made itself, e.g. (?<host>...)
                and (t.text.lower() != "host" or splunk)
                and not dynamic
                and not t.raw.startswith("%")
                and not (prev and prev.is_kw("as"))
                and not (nxt.kind is Tok.OP and nxt.text == "(")
            ):
                self.add(t, Severity.ERROR, "SUMO005",
                         f"'{t.text}' is a Splunk field name; Sumo Logic has no such field (it is null), "
                         f"use {_SPLUNK_FIELDS[t.text.lower()]}")
        self._parse_errors()
        return sorted(self.found, key=lambda f: (f.line, f.column, f.code))

    def _defined_fields(self) -> tuple[set[str], set[str], bool]:
        """Fields the query defines, fields holding numbers (casts, aggregates), and whether ``json auto``
        makes the field set open; none when the query does not parse (SUMO000 reports that)."""
        try:
            query = parse_query(self.text, self.file)
        except (RuleSyntaxError, UnsupportedRuleError):
            return set(), set(), False
        defined: set[str] = set()
        numbers: set[str] = set()
        dynamic = False
        for st in query.stages:
            if isinstance(st, ast.Parse | ast.ParseRegex):
                defined.update(n.lower() for n in st.names)
            elif isinstance(st, ast.Json):
                dynamic = dynamic or st.auto
                defined.update(n.lower() for n in st.names)
            elif isinstance(st, ast.Assign):
                defined.add(st.field.lower())
                if isinstance(st.expr, ast.Call) and st.expr.name in _NUMBER_FUNCS:
                    numbers.add(st.field.lower())
            elif isinstance(st, ast.Aggregate):
                defined.update(n.lower() for n in st.by)
                for a in st.aggs:
                    defined.add(a.alias.lower())
                    numbers.add(a.alias.lower())
            elif isinstance(st, ast.Timeslice):
                defined.add(st.alias.lower())
                numbers.add(st.alias.lower())
        return defined, numbers, dynamic

    def _scope_quotes(self, scope: tuple[Token, ...]) -> None:
        for t in scope:
            if t.kind is Tok.WORD and t.text.startswith("'"):
                self.add(t, Severity.WARNING, "SUMO012",
                         f"{t.text} is not a quoted phrase: \"Characters quoted with double quotes (not single "
                         "quotes) are string literals\" (keyword-search-expressions.md); write the phrase in "
                         "double quotes")

    def _in_lists(self, toks: tuple[Token, ...], numbers: set[str]) -> None:
        for i, t in enumerate(toks):
            if not (t.is_kw("in") and i + 1 < len(toks) and toks[i + 1].kind is Tok.OP and toks[i + 1].text == "("):
                continue
            k = i - 1
            if k >= 0 and toks[k].is_kw("not"):
                k -= 1
            subject = toks[k] if k >= 0 else None
            depth = 0
            for j in range(i + 1, len(toks)):
                u = toks[j]
                if u.kind is Tok.OP and u.text == "(":
                    depth += 1
                elif u.kind is Tok.OP and u.text == ")":
                    depth -= 1
                    if depth == 0:
                        break
                elif u.kind in (Tok.PIPE, Tok.EOF):
                    break
                elif depth == 1 and u.kind is Tok.IDENT and not u.is_kw("true", "false") and not (
                        toks[j + 1].kind is Tok.OP and toks[j + 1].text == "(") and not u.raw.startswith("%"):
                    self.add(u, Severity.WARNING, "SUMO010",
                             f"'{u.text}' in an 'in' list is a field reference, not the text {u.text!r}; "
                             f"quote it: \"{u.text}\"")
                elif (depth == 1 and u.kind is Tok.NUMBER and subject is not None and subject.kind is Tok.IDENT
                      and subject.text.lower() not in numbers):
                    self.add(u, Severity.WARNING, "SUMO011",
                             f"'in' does not cast text to numbers: {subject.text} in ({u.text}, ...) never matches "
                             f"the text {u.text!r}; cast first with num({subject.text}) "
                             "(manually-cast-data-string-number.md), or quote the values")

    def _equals_wildcards(self, toks: tuple[Token, ...]) -> None:
        for i, t in enumerate(toks[:-1]):
            nxt = toks[i + 1]
            if t.kind is Tok.OP and t.text in ("=", "==", "!=", "<>") and nxt.kind is Tok.STRING and "*" in nxt.text:
                self.add(nxt, Severity.WARNING, "SUMO009",
                         f"'{t.text}' compares text literally, so the '*' in {nxt.raw} is not a wildcard; "
                         f"write 'matches {nxt.raw}'")

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
            self.found.append(LintFinding(self.file, exc.line or 1, exc.column or 1, Severity.NOTE, "SUMO008",
                                          f"{exc.detail}; the query is valid Sumo, run it against the tenant"))
        except UnsupportedRuleError as exc:
            self.found.append(LintFinding(self.file, 1, 1, Severity.ERROR, "SUMO000", str(exc)))


def _detail(exc: RuleSyntaxError) -> str:
    """The parser's message without its ``FILE:LINE:COL:`` prefix (the finding prints the position)."""
    return f"{exc.detail} ({exc.hint})" if exc.hint else exc.detail


def lint_sumo(text: str, file: str | Path | None = None) -> list[LintFinding]:
    """All findings for the query ``text`` (``file`` names it in the findings)."""
    return _Lint(text, str(file) if file is not None else "<rule>").run()
