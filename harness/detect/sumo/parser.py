"""Parse a Sumo Logic Log Search query into ``harness.detect.sumo.ast.Query``.

Errors are ``RuleSyntaxError`` naming file, line and column of the offending token; a real Sumo
operator this engine does not implement is an ``UnsupportedRuleError`` with the same position.
Splunk-isms that are not Sumo (``eval``, the ``matches(x, "...")`` call form) are rejected at the
token that introduces them, with the Sumo spelling as the hint.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.detect.sumo import ast
from harness.detect.sumo.exprparse import parse_expression, parse_scope
from harness.detect.sumo.functions import check_call
from harness.detect.sumo.lexer import Lexed, Tok, Token, tokenize
from harness.detect.sumo.patterns import compile_regex
from harness.errors import NotSupportedLocallyError, RuleSyntaxError

#: Aggregating operators and their default output field (Sumo names them ``_count``, ``_max`` ...).
AGGREGATES: dict[str, str] = {
    "count": "_count",
    "count_distinct": "_count_distinct",
    "min": "_min",
    "max": "_max",
    "sum": "_sum",
    "avg": "_avg",
}

#: Real Sumo operators this engine does not evaluate: rejected as unsupported, not as syntax errors.
KNOWN_UNSUPPORTED = frozenset(
    {
        # operators of Sumo's index (docs/search/search-query-language/search-operators/index.md and
        # parse-operators/) that the local engine does not evaluate
        "accum", "backshift", "bin", "cat", "compare", "csv", "decision", "dedup", "diff", "fillmissing",
        "filter", "geoip", "geo", "join", "keyvalue", "kv", "logcompare", "logreduce", "lookup",
        "lookupcontains", "macro", "merge", "outlier", "parsedate", "parsehex", "predict", "rollingstd",
        "save", "sessionize", "smooth", "split", "subquery", "threatip", "threatlookup", "top", "topk",
        "total", "trace", "transaction", "transactionize", "transpose", "xml", "asn", "count_frequent",
    }
)
#: ``| num(x)`` without ``as`` casts the field in place
#: (docs/search/search-query-language/search-operators/manually-cast-data-string-number.md).
CASTS = {"num": "num", "number": "num", "tolong": "tolong", "todouble": "num", "tostring": "tostring"}
#: "The limit operator supports requests for up to 10,000 results" (search-operators/limit.md).
MAX_LIMIT = 10_000
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class _Parser:
    def __init__(self, lexed: Lexed) -> None:
        self.src = lexed.source
        self.lexed = lexed
        self.toks = lexed.pipeline
        self.i = 0

    # ---- helpers ------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not Tok.EOF:
            self.i += 1
        return t

    def error(self, tok: Token, message: str, hint: str | None = None) -> RuleSyntaxError:
        return RuleSyntaxError(message, file=self.src.file, line=tok.line, column=tok.column, hint=hint)

    def unsupported(self, tok: Token, what: str) -> NotSupportedLocallyError:
        return NotSupportedLocallyError(what, file=self.src.file, line=tok.line, column=tok.column)

    def describe(self, tok: Token) -> str:
        return tok.kind.value if tok.kind is Tok.EOF else f"{tok.raw!r}"

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind is Tok.OP and self.tok.text in ops

    def expect_op(self, op: str) -> Token:
        if not self.is_op(op):
            raise self.error(self.tok, f"expected {op!r}, found {self.describe(self.tok)}")
        return self.advance()

    def expect_ident(self, what: str) -> Token:
        if self.tok.kind is not Tok.IDENT:
            raise self.error(self.tok, f"expected {what}, found {self.describe(self.tok)}")
        return self.advance()

    def stage_end(self) -> bool:
        return self.tok.kind in (Tok.PIPE, Tok.EOF)

    def expect_stage_end(self) -> None:
        if not self.stage_end():
            raise self.error(self.tok, f"unexpected {self.describe(self.tok)}; expected '|' or end of query")

    @staticmethod
    def pos(tok: Token) -> ast.Pos:
        return ast.Pos(tok.line, tok.column)

    # ---- scope ----------------------------------------------------------------------------------
    def parse_scope(self) -> ast.ScopeExpr | None:
        toks = self.lexed.scope
        if not toks:
            return None
        return parse_scope(toks, self.error)

    # ---- pipeline -------------------------------------------------------------------------------
    def parse_query(self) -> ast.Query:
        if not self.lexed.scope and self.tok.kind is Tok.EOF:
            raise RuleSyntaxError(
                "empty query: the rule has no search expression or operator (only blanks or comments)",
                file=self.src.file,
                line=1,
                column=1,
                hint="write a query such as '_sourceCategory=windows/sysmon | where ...'",
            )
        scope = self.parse_scope()
        stages: list[ast.Stage] = []
        while self.tok.kind is Tok.PIPE:
            self.advance()
            stages.append(self.parse_stage())
        if self.tok.kind is not Tok.EOF:
            raise self.error(self.tok, f"unexpected {self.describe(self.tok)}")
        return ast.Query(scope, tuple(stages))

    def parse_stage(self) -> ast.Stage:
        t = self.tok
        if t.kind is Tok.EOF or t.kind is Tok.PIPE:
            raise self.error(t, "empty pipeline stage after '|'")
        word = t.text.lower() if t.kind is Tok.IDENT else ""
        nxt = self.peek()
        if word == "eval":
            raise self.error(
                t,
                "'eval' is not a Sumo Logic operator (Splunk syntax); in Sumo 'x = y' is a comparison",
                hint="write '<expression> as <field>', e.g. '| toLowerCase(cmdline) as cmdline_lower'",
            )
        if word == "where":
            self.advance()
            expr = self.parse_expr()
            self.expect_stage_end()
            return ast.Where(expr, self.pos(t))
        if word in ("parse", "extract"):
            return self.parse_parse()
        if word == "json":
            return self.parse_json()
        if word == "fields":
            return self.parse_fields()
        if word in ("sort", "order"):
            return self.parse_sort()
        if word == "limit":
            self.advance()
            n = self.tok
            if n.kind is not Tok.NUMBER or not (n.text.isascii() and n.text.isdigit()):
                raise self.error(n, f"'limit' needs a whole number, found {self.describe(n)}")
            if int(n.text) > MAX_LIMIT:
                raise self.error(n, f"limit {n.text} is above Sumo's maximum of {MAX_LIMIT:,} results",
                                 hint="'The limit operator supports requests for up to 10,000 results' (limit.md)")
            self.advance()
            self.expect_stage_end()
            return ast.Limit(int(n.text), self.pos(t))
        if word == "timeslice":
            return self.parse_timeslice()
        if word in AGGREGATES and not self._is_math_call():
            return self.parse_aggregate()
        if word in KNOWN_UNSUPPORTED and not (nxt.kind is Tok.OP and nxt.text == "("):
            raise NotSupportedLocallyError(f"the Sumo operator '{t.text}'", file=self.src.file, line=t.line,
                                           column=t.column)
        if t.kind is Tok.IDENT and nxt.kind in (Tok.IDENT, Tok.STRING, Tok.NUMBER) and not nxt.is_kw(
                "as", "matches", "contains", "in", "not", "and", "or"):
            raise self.error(t, f"unknown operator '{t.text}'")
        expr = self.parse_expr()
        if (self.stage_end() and isinstance(expr, ast.Call) and expr.name in CASTS and len(expr.args) == 1
                and isinstance(expr.args[0], ast.FieldRef)):
            # '| num(duration)': the field is cast in place (manually-cast-data-string-number.md)
            return ast.Assign(ast.Call(CASTS[expr.name], expr.args, expr.pos), expr.args[0].name, self.pos(t))
        if not self.tok.is_kw("as"):
            raise self.error(
                self.tok,
                f"expected 'as <field>' after the expression, found {self.describe(self.tok)}",
                hint="a pipeline stage that computes a value must name it: '<expression> as <field>'",
            )
        self.advance()
        name = self.expect_ident("a field name after 'as'")
        self.expect_stage_end()
        return ast.Assign(expr, name.text, self.pos(t))

    def _is_math_call(self) -> bool:
        """``min(a, b)``/``max(a, b)`` with two arguments is the math function, not the aggregate."""
        if not (self.peek().kind is Tok.OP and self.peek().text == "("):
            return False
        depth, k = 0, self.i + 1
        while k < len(self.toks):
            tk = self.toks[k]
            if tk.kind is Tok.OP and tk.text == "(":
                depth += 1
            elif tk.kind is Tok.OP and tk.text == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif tk.kind is Tok.OP and tk.text == "," and depth == 1:
                return True
            elif tk.kind in (Tok.PIPE, Tok.EOF):
                return False
            k += 1
        return False

    def parse_trailing_options(self, stage: str, source: str | None, *, allow_multi: bool = False
                               ) -> tuple[str | None, bool, bool]:
        """``nodrop``, ``multi`` (parse regex) and (when not given before) ``field=F`` after a parse/json
        stage: (source, nodrop, multi)."""
        nodrop = multi = False
        while not self.stage_end():
            if self.tok.is_kw("nodrop"):
                self.advance()
                nodrop = True
            elif allow_multi and self.tok.is_kw("multi"):
                self.advance()
                multi = True
            elif self.tok.is_kw("field") and source is None:
                source = self.parse_field_option()
            elif stage == "json" and self.tok.is_kw("maxdepth", "extractarrays", "keys", "refonly"):
                # documented json auto options (parse-json-formatted-logs.md) this engine does not implement
                raise self.unsupported(self.tok, f"the json option '{self.tok.text}'")
            else:
                raise self.error(self.tok, f"unexpected {self.describe(self.tok)} in {stage}")
        return source, nodrop, multi

    def parse_field_option(self) -> str | None:
        """``field=F`` (the field a parse/json reads instead of ``_raw``)."""
        if self.tok.is_kw("field") and self.peek().kind is Tok.OP and self.peek().text == "=":
            self.advance()
            self.advance()
            return self.expect_ident("a field name after 'field='").text
        return None

    def parse_names(self) -> tuple[str, ...]:
        names = [self.expect_ident("a field name").text]
        while self.is_op(","):
            self.advance()
            names.append(self.expect_ident("a field name").text)
        return tuple(names)

    def parse_parse(self) -> ast.Stage:
        start = self.advance()
        is_regex = start.is_kw("extract")  # 'extract' is the alternate name of parse regex
        if not is_regex and self.tok.is_kw("regex"):
            self.advance()
            is_regex = True
        source = self.parse_field_option()
        pat = self.tok
        if pat.kind is not Tok.STRING:
            raise self.error(pat, f"expected a quoted parse pattern, found {self.describe(pat)}")
        self.advance()
        names: tuple[str, ...] = ()
        pattern = pat.text
        if is_regex:
            try:
                compiled = compile_regex(pattern, file=self.src.file, line=pat.line, column=pat.column)
            except RuleSyntaxError:
                # "Regex must be a valid JAVA or RE2 regular expression" (parse-variable-patterns-using-regex.md):
                # a Java-only construct (look-around, back-reference) is valid Sumo the RE2 engine can't run
                if _java_like_regex(pattern):
                    raise self.unsupported(pat, "a parse regex that only Java's regex engine accepts") from None
                raise
            names = tuple(sorted(compiled.groupindex, key=lambda n: compiled.groupindex[n]))
            # "The parse regex operator only supports regular expressions that contain at least one named
            # capturing group. We do not support regular expressions that either do not have any capturing
            # groups or contain unnamed/numbered capturing group." (parse-variable-patterns-using-regex.md)
            if not names:
                raise self.error(pat, "parse regex needs at least one named group (?<name>...)")
            if compiled.groups != len(names):
                raise self.error(pat, "parse regex does not accept unnamed (numbered) capturing groups",
                                 hint="make them non-capturing (?:...) or name them (?<name>...)")
        else:
            if "**" in pattern:
                # "Wildcards must be separated by a space or other character. ** is not valid."
                raise self.error(pat, "'**' is not valid in a parse pattern (Sumo: wildcards must be separated)",
                                 hint="use parse regex for adjacent captures")
            pattern = _anchor_escapes(pattern)
            stars = pattern.count("*")
            if stars == 0:
                raise self.error(pat, "the parse pattern has no '*' to capture")
            if not self.tok.is_kw("as"):
                raise self.error(self.tok, f"expected 'as' and {stars} field name(s) after the parse pattern")
            self.advance()
            names = self.parse_names()
            if len(names) != stars:
                raise self.error(
                    pat, f"the parse pattern has {stars} '*' but {len(names)} field name(s) follow 'as'"
                )
        source, nodrop, multi = self.parse_trailing_options("parse", source, allow_multi=is_regex)
        if is_regex:
            return ast.ParseRegex(source, pattern, names, nodrop, self.pos(start), multi)
        return ast.Parse(source, pattern, names, nodrop, self.pos(start))

    def parse_json(self) -> ast.Json:
        start = self.advance()
        source = self.parse_field_option()
        auto = False
        keys: list[str] = []
        names: tuple[str, ...] = ()
        if self.tok.is_kw("auto"):
            self.advance()
            auto = True
        else:
            while True:
                k = self.tok
                if k.kind is not Tok.STRING:
                    raise self.error(k, f"expected a quoted JSON key, found {self.describe(k)}")
                if not k.text:
                    raise self.error(k, "empty JSON key")
                keys.append(k.text)
                self.advance()
                if not self.is_op(","):
                    break
                self.advance()
            if self.tok.is_kw("as"):
                self.advance()
                names = self.parse_names()
                if len(names) != len(keys):
                    raise self.error(start, f"json names {len(keys)} key(s) but {len(names)} field name(s)")
            else:
                # Without 'as' the field is named after the key's last path element.
                names = tuple(k.rsplit(".", 1)[-1] for k in keys)
        source, nodrop, _ = self.parse_trailing_options("json", source)
        return ast.Json(source, tuple(keys), names, auto, nodrop, self.pos(start))

    def parse_fields(self) -> ast.Fields:
        start = self.advance()
        remove = False
        if self.is_op("-", "+"):
            remove = self.advance().text == "-"
        names = self.parse_names()
        seen: set[str] = set()
        for k, n in enumerate(names):
            if n.lower() in seen:
                raise self.error(start, f"field '{n}' is listed twice in 'fields' (entry {k + 1})")
            seen.add(n.lower())
        self.expect_stage_end()
        return ast.Fields(names, remove, self.pos(start))

    def parse_sort(self) -> ast.Sort:
        start = self.advance()
        if self.tok.is_kw("by"):
            self.advance()
        keys: list[ast.SortKey] = []
        while True:
            desc = True  # Sumo sorts descending unless told otherwise
            if self.is_op("+", "-"):
                desc = self.advance().text == "-"
            name = self.expect_ident("a field to sort by").text
            if self.tok.is_kw("asc"):
                self.advance()
                desc = False
            elif self.tok.is_kw("desc"):
                self.advance()
                desc = True
            keys.append(ast.SortKey(name, desc))
            if not self.is_op(","):
                break
            self.advance()
        self.expect_stage_end()
        return ast.Sort(tuple(keys), self.pos(start))

    def parse_timeslice(self) -> ast.Timeslice:
        """``timeslice [by] <N><unit> [as f]`` or ``timeslice <N> buckets [as f]`` (timeslice.md)."""
        start = self.advance()
        if self.tok.is_kw("by"):
            self.advance()
        d = self.tok
        span_ms = 0
        buckets = 0
        if self.stage_end() or d.is_kw("as"):
            # "If no time period or bucket is specified, it defaults to the time range of the Search."
            # (timeslice.md): one bucket over the messages' time range
            buckets = 1
        elif d.kind is Tok.NUMBER and self.peek().is_kw("buckets"):
            if not (d.text.isascii() and d.text.isdigit()) or int(d.text) == 0:
                raise self.error(d, f"bad bucket count {d.text!r}", hint="e.g. timeslice 150 buckets")
            buckets = int(d.text)
            self.advance()
            self.advance()
        elif d.kind is Tok.DURATION:
            self.advance()
            digits = "".join(ch for ch in d.text if ch in "0123456789")
            unit = d.text[len(digits):].lower()
            if unit not in _UNIT_MS or not digits or int(digits) == 0:
                raise self.error(d, f"bad timeslice duration {d.text!r}", hint="use e.g. 30s, 5m, 1h, 1d, 1w")
            span_ms = int(digits) * _UNIT_MS[unit]
        else:
            raise self.error(d, f"expected a duration such as 1m or 15s, found {self.describe(d)}")
        alias = "_timeslice"
        if self.tok.is_kw("as"):
            self.advance()
            alias = self.expect_ident("a field name after 'as'").text
        self.expect_stage_end()
        return ast.Timeslice(span_ms, alias, self.pos(start), buckets)

    def parse_aggregate(self) -> ast.Aggregate:
        """``count [as n] [by|group by f, ...]``, ``count(*)``, ``count f, g`` (= by f, g),
        ``count_distinct(x) [as n] group by y``, ``min/max/sum/avg(x)`` (search-operators/ and
        group-aggregate-operators/ pages)."""
        start = self.tok
        aggs: list[ast.Agg] = []
        by: list[str] = []
        while True:
            f = self.expect_ident("an aggregate function")
            func = f.text.lower()
            if func not in AGGREGATES:
                raise self.error(f, f"'{f.text}' is not an aggregate function (count, count_distinct, "
                                 "min, max, sum, avg)")
            arg: str | None = None
            if self.is_op("("):
                self.advance()
                if self.is_op("*"):
                    self.advance()
                elif not self.is_op(")"):
                    arg = self.expect_ident("a field name").text
                self.expect_op(")")
            elif func == "count" and self.tok.kind is Tok.IDENT and not self.tok.is_kw("as", "by", "group"):
                # '| count user' and '| count _timeslice, ip_address': count by those fields
                by.extend(self.parse_names())
                aggs.append(ast.Agg(func, None, AGGREGATES[func]))
                break
            if func != "count" and arg is None:
                raise self.error(f, f"'{func}' needs a field: {func}(field)")
            alias = AGGREGATES[func]
            if self.tok.is_kw("as"):
                self.advance()
                alias = self.expect_ident("a field name after 'as'").text
            aggs.append(ast.Agg(func, arg, alias))
            if not self.is_op(","):
                break
            self.advance()
        if self.tok.is_kw("group") and self.peek().is_kw("by"):
            self.advance()
        if self.tok.is_kw("by"):
            self.advance()
            by.extend(self.parse_names())
        self.expect_stage_end()
        return ast.Aggregate(tuple(aggs), tuple(by), self.pos(start))

    # ---- expressions ----------------------------------------------------------------------------
    def parse_expr(self) -> ast.Expr:
        """One expression, parsed without recursion (exprparse.py): no nesting limit."""
        return parse_expression(self, self._check_call, self._check_regex)

    def _check_call(self, name: str, nargs: int, tok: Token) -> None:
        check_call(name, nargs, self.src.file, tok.line, tok.column)

    def _check_regex(self, tok: Token) -> None:
        compile_regex(tok.text, file=self.src.file, line=tok.line, column=tok.column)


def _java_like_regex(pattern: str) -> bool:
    """Does a backtracking (Java-like) engine accept ``pattern``? Python's ``re`` stands in for Java's
    here, only to tell "valid Sumo, not runnable locally" from a broken pattern; it never matches."""
    try:
        re.compile(re.sub(r"\(\?<([A-Za-z][A-Za-z0-9_]*)>", r"(?P<\1>", pattern))
    except (re.error, RecursionError, OverflowError):
        return False
    return True


_ANCHOR_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _anchor_escapes(pattern: str) -> str:
    """``\\n``, ``\\r``, ``\\t`` in a parse anchor are line breaks and tabs: "use the following ... as a
    stop anchor on the line break: Linux logs: \\n, Windows logs: \\r"
    (parse-predictable-patterns-using-an-anchor.md). Other backslashes stay as written."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in _ANCHOR_ESCAPES:
            out.append(_ANCHOR_ESCAPES[pattern[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_query(text: str, file: str | Path | None = None) -> ast.Query:
    """Parse ``text`` (the contents of ``file``, used only in error messages)."""
    return _Parser(tokenize(text, file)).parse_query()
