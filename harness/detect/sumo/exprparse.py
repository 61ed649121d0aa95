"""Expressions and scope lines parsed with explicit stacks: no recursion, so no nesting limit.

Sumo accepts queries up to 15,000 characters; a ``where`` of a thousand OR'd conditions, or a few
thousand nested parentheses, must parse like any other query (issues 13 and 16). Both parsers here
are operator-precedence parsers driven by a loop over the tokens with an operator stack and an
operand stack. Runs of the same ``and``/``or`` are collected and built as a balanced tree, so a
thousand OR'd conditions are ten levels deep, not a thousand (``a or b`` is associative and pure,
so the result is the same).

Precedence, loosest first (as the former recursive-descent parser): ``? :`` (right-associative),
``or``, ``and``/``&&``, prefix ``!``/``not`` at the start of an operand of those, comparisons
(``= != < <= > >= matches in``, not chained), ``+ -``, ``* / %``, prefix ``-``/``!`` inside
arithmetic and comparisons, primaries. ``in (...)`` items are additive expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.detect.sumo import ast
from harness.detect.sumo.lexer import Tok, Token
from harness.detect.sumo.terms import keyword_problem
from harness.errors import NotSupportedLocallyError, RuleSyntaxError

_CMP_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_PREC = {"or": 2, "and": 3, "cmp": 5, "+": 6, "-": 6, "*": 7, "/": 7, "%": 7}
_NOT_PREC = 4  # '!'/'not' where a boolean operand starts: looser than comparisons
_UNARY_PREC = 8  # '-'/'!' inside arithmetic: tighter than everything


class TokenStream(Protocol):
    """What the expression parser needs from the pipeline parser."""

    @property
    def tok(self) -> Token: ...

    def peek(self, k: int = 1) -> Token: ...

    def advance(self) -> Token: ...

    def error(self, tok: Token, message: str, hint: str | None = None) -> RuleSyntaxError: ...

    def describe(self, tok: Token) -> str: ...

    def unsupported(self, tok: Token, what: str) -> NotSupportedLocallyError: ...


def _pos(tok: Token) -> ast.Pos:
    return ast.Pos(tok.line, tok.column)


@dataclass
class _Chain:
    """A run of the same ``and``/``or`` being collected: operands and the operator before each."""

    op: str
    items: list[ast.Expr]
    op_pos: list[ast.Pos]  # op_pos[i] is the operator before items[i + 1]


def balanced(op: str, items: list[ast.Expr], op_pos: list[ast.Pos]) -> ast.Expr:
    """``items`` joined by ``op`` as a balanced tree (left-to-right order kept), built bottom-up."""
    level: list[tuple[ast.Expr, ast.Pos | None]] = [(items[0], None)]
    level += [(e, p) for e, p in zip(items[1:], op_pos)]
    while len(level) > 1:
        nxt: list[tuple[ast.Expr, ast.Pos | None]] = []
        for i in range(0, len(level) - 1, 2):
            (left, lpos), (right, rpos) = level[i], level[i + 1]
            assert rpos is not None
            nxt.append((ast.Binary(op, left, right, rpos), lpos))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0][0]


@dataclass
class _Pattern:
    """The right side of ``matches`` while it waits for its reduction."""

    tok: Token


@dataclass
class _Items:
    """The finished ``( ... )`` list of ``in``."""

    values: tuple[ast.Expr, ...]


_Operand = ast.Expr | _Chain | _Pattern | _Items


@dataclass
class _Op:
    kind: str  # "bin" | "prefix"
    op: str  # or, and, =, !=, ..., matches, in, notin, +, -, *, /, %, ! (prefix), neg (prefix)
    prec: int
    tok: Token


@dataclass
class _Frame:
    kind: str  # "paren" | "call" | "in" | "?" | ":"
    tok: Token
    args: list[ast.Expr] = field(default_factory=list)
    name: str = ""


_Entry = _Op | _Frame


def _finish(x: _Operand) -> ast.Expr:
    if isinstance(x, _Chain):
        return balanced(x.op, x.items, x.op_pos)
    assert not isinstance(x, _Pattern | _Items)
    return x


class ExprParser:
    """One expression from the token stream; stops at the first token that cannot continue it."""

    def __init__(self, ts: TokenStream, check_call: Callable[[str, int, Token], None],
                 check_regex: Callable[[Token], None]) -> None:
        self.ts = ts
        self.check_call = check_call
        self.check_regex = check_regex
        self.ops: list[_Entry] = []
        self.vals: list[_Operand] = []

    # ---- reductions -------------------------------------------------------------------------
    def _reduce_top(self) -> None:
        op = self.ops.pop()
        assert isinstance(op, _Op)
        if op.kind == "prefix":
            x = _finish(self.vals.pop())
            self.vals.append(ast.Unary("-" if op.op == "neg" else "!", x, _pos(op.tok)))
            return
        right = self.vals.pop()
        left = self.vals.pop()
        if op.op in ("and", "or"):
            r = _finish(right)
            if isinstance(left, _Chain) and left.op == op.op:
                left.items.append(r)
                left.op_pos.append(_pos(op.tok))
                self.vals.append(left)
            else:
                self.vals.append(_Chain(op.op, [_finish(left), r], [_pos(op.tok)]))
            return
        lhs = _finish(left)
        if op.op == "matches":
            assert isinstance(right, _Pattern)
            p = right.tok
            if p.kind is Tok.IDENT:
                self.vals.append(ast.Matches(lhs, "", False, _pos(p), ast.FieldRef(p.text, _pos(p))))
            else:
                self.vals.append(ast.Matches(lhs, p.text, p.kind is Tok.REGEX, _pos(p)))
            return
        if op.op in ("in", "notin"):
            assert isinstance(right, _Items)
            node: ast.Expr = ast.InList(lhs, right.values, _pos(op.tok))
            if op.op == "notin":
                node = ast.Unary("!", node, _pos(op.tok))
            self.vals.append(node)
            return
        rhs = _finish(right)
        if op.op == "contains":
            self.check_call("contains", 2, op.tok)
            self.vals.append(ast.Call("contains", (lhs, rhs), _pos(op.tok)))
            return
        name = _CMP_OPS.get(op.op, op.op)
        pos = _pos(op.tok)
        self.vals.append(ast.Binary(name, lhs, rhs, pos))

    def _reduce_while(self, min_prec: int) -> None:
        while self.ops and isinstance(self.ops[-1], _Op) and self.ops[-1].prec >= min_prec:
            self._reduce_top()

    def _close_ternaries(self) -> None:
        """Reduce every operator and finished ``:`` branch above the innermost open frame."""
        while True:
            self._reduce_while(0)
            top = self.ops[-1] if self.ops else None
            if isinstance(top, _Frame) and top.kind == ":":
                self.ops.pop()
                other = _finish(self.vals.pop())
                then = _finish(self.vals.pop())
                cond = _finish(self.vals.pop())
                self.vals.append(ast.Ternary(cond, then, other, _pos(top.tok)))
                continue
            return

    def _frame(self) -> _Frame | None:
        for e in reversed(self.ops):
            if isinstance(e, _Frame):
                return e
        return None

    def _not_context(self) -> bool:
        """Is a prefix ``!`` here where a boolean operand starts (else inside arithmetic)?"""
        if not self.ops:
            return True
        top = self.ops[-1]
        if isinstance(top, _Frame):
            return top.kind != "in"
        if top.kind == "prefix":
            return top.prec == _NOT_PREC
        return top.op in ("and", "or")

    # ---- the loop -----------------------------------------------------------------------------
    def parse(self) -> ast.Expr:
        ts = self.ts
        expect_operand = True
        while True:
            t = ts.tok
            if expect_operand:
                expect_operand = self._operand(t)
                continue
            state = self._operator(t)
            if state is None:
                break
            expect_operand = state
        # End of the expression: every bracket and '?' must be closed.
        self._close_ternaries()
        frame = self._frame()
        if frame is not None:
            # point at what is left open, not at the end of the query
            t = ts.tok
            if frame.kind == "?":
                raise ts.error(frame.tok, f"'?' without its ':' (expected ':' before {ts.describe(t)})")
            raise ts.error(frame.tok, f"unclosed '(': expected ')' before {ts.describe(t)}")
        assert len(self.vals) == 1
        return _finish(self.vals.pop())

    def _operand(self, t: Token) -> bool:
        """Consume an operand start; True while an operand is still expected."""
        ts = self.ts
        if t.kind is Tok.OP and t.text == "(":
            ts.advance()
            self.ops.append(_Frame("paren", t))
            return True
        if (t.kind is Tok.OP and t.text == "!") or (t.is_kw("not") and not ts.peek().is_kw("in")):
            ts.advance()
            prec = _NOT_PREC if self._not_context() else _UNARY_PREC
            self.ops.append(_Op("prefix", "!", prec, t))
            return True
        if t.kind is Tok.OP and t.text == "-":
            ts.advance()
            self.ops.append(_Op("prefix", "neg", _UNARY_PREC, t))
            return True
        if t.kind is Tok.NUMBER:
            ts.advance()
            is_float = any(c in t.text for c in ".eE")
            self.vals.append(ast.Lit(float(t.text) if is_float else int(t.text), _pos(t)))
            return False
        if t.kind is Tok.DURATION:
            raise ts.unsupported(t, f"the number literal with a suffix {t.text!r}")
        if t.kind is Tok.STRING:
            ts.advance()
            self.vals.append(ast.Lit(t.text, _pos(t)))
            return False
        if t.kind is Tok.REGEX:
            top = self.ops[-1] if self.ops else None
            if isinstance(top, _Frame) and top.kind == "call" and top.name == "replace" and len(top.args) == 1:
                # replace(<sourceString>, /<regex>/, <replaceString>) (replace.md)
                ts.advance()
                self.check_regex(t)
                top.name = "replace_re"
                self.vals.append(ast.Lit(t.text, _pos(t)))
                return False
            raise ts.error(t, "a /regex/ is only valid right after 'matches' or as replace()'s pattern")
        if t.kind is Tok.IDENT:
            nxt = ts.peek()
            if nxt.kind is Tok.OP and nxt.text == "(":
                name = t.text.lower()
                if name == "matches":
                    raise ts.error(
                        t,
                        "'matches(x, \"...\")' is not Sumo Logic: matches is an infix operator",
                        hint="write 'x matches \"wild*card\"' or 'x matches /regex/'; negate with !(...)",
                    )
                if name == "eval":
                    raise ts.error(t, "'eval' is not a Sumo Logic function or operator",
                                   hint="write '<expression> as <field>'")
                ts.advance()
                ts.advance()
                if ts.tok.kind is Tok.OP and ts.tok.text == ")":
                    ts.advance()
                    self.check_call(name, 0, t)
                    self.vals.append(ast.Call(name, (), _pos(t)))
                    return False
                self.ops.append(_Frame("call", t, name=name))
                return True
            ts.advance()
            low = t.text.lower()
            if low in ("true", "false"):
                self.vals.append(ast.Lit(low == "true", _pos(t)))
            else:
                self.vals.append(ast.FieldRef(t.text, _pos(t)))
            return False
        raise ts.error(t, f"expected an expression, found {ts.describe(t)}")

    def _check_substring(self, frame: _Frame) -> None:
        """substring.md: "will not work because the startOffset is negative" / "because numerically the
        endOffset is before the startOffset"; literal offsets are checked here, at their position."""
        lits = [a.value if isinstance(a, ast.Lit) and isinstance(a.value, int | float) else None
                for a in frame.args[1:]]
        neg = [a for a in frame.args[1:] if isinstance(a, ast.Unary) and a.op == "-"
               and isinstance(a.operand, ast.Lit) and isinstance(a.operand.value, int | float)]
        if neg or any(v is not None and v < 0 for v in lits):
            raise self.ts.error(frame.tok, "substring offsets must be non-negative (substring.md)")
        if len(lits) == 2 and lits[0] is not None and lits[1] is not None and lits[1] < lits[0]:
            raise self.ts.error(frame.tok, "substring's endOffset is before its startOffset (substring.md)")

    def _binary(self, t: Token, op: str, prec: int) -> None:
        """Push binary operator ``op`` after reducing what binds tighter."""
        self._reduce_while(prec + 1 if prec == _PREC["cmp"] else prec)
        top = self.ops[-1] if self.ops else None
        if prec == _PREC["cmp"] and isinstance(top, _Op) and top.prec == prec:
            raise self.ts.error(t, f"unexpected {self.ts.describe(t)}: comparisons do not chain")
        frame = self._frame()
        if frame is not None and frame.kind == "in" and prec < _PREC["+"]:
            raise self.ts.error(t, f"expected ',' or ')' in the 'in' list, found {self.ts.describe(t)}")
        self.ops.append(_Op("bin", op, prec, t))

    def _operator(self, t: Token) -> bool | None:
        """Consume an operator after an operand: True when an operand follows, False when another
        operator does, None when ``t`` ends the expression (nothing consumed)."""
        ts = self.ts
        if t.kind is Tok.OP and t.text in _CMP_OPS:
            ts.advance()
            self._binary(t, t.text, _PREC["cmp"])
            return True
        if t.kind is Tok.OP and t.text in ("+", "-", "*", "/", "%"):
            ts.advance()
            self._binary(t, t.text, _PREC[t.text])
            return True
        if t.is_kw("or"):
            ts.advance()
            self._binary(t, "or", _PREC["or"])
            return True
        if t.is_kw("and") or (t.kind is Tok.OP and t.text == "&&"):
            ts.advance()
            self._binary(t, "and", _PREC["and"])
            return True
        if t.is_kw("contains"):
            # '<field1> contains <field2>' (contains.md): the contains() function, infix
            ts.advance()
            self._binary(t, "contains", _PREC["cmp"])
            return True
        if t.is_kw("matches"):
            ts.advance()
            self._binary(t, "matches", _PREC["cmp"])
            p = ts.tok
            if p.kind is Tok.IDENT and not (ts.peek().kind is Tok.OP and ts.peek().text == "("):
                # 'host matches instance_match': the pattern is a field's value (matches.md, last example)
                ts.advance()
                self.vals.append(_Pattern(p))
                return False
            if p.kind not in (Tok.STRING, Tok.REGEX):
                raise ts.error(p, "'matches' needs a quoted wildcard pattern, a /regex/ or a field, found "
                               f"{ts.describe(p)}")
            ts.advance()
            if p.kind is Tok.REGEX:
                self.check_regex(p)
            self.vals.append(_Pattern(p))
            return False
        if t.is_kw("in") or (t.is_kw("not") and ts.peek().is_kw("in")):
            op = "in"
            if t.is_kw("not"):
                ts.advance()
                op = "notin"
            ts.advance()
            self._binary(t, op, _PREC["cmp"])
            open_tok = ts.tok
            if not (open_tok.kind is Tok.OP and open_tok.text == "("):
                raise ts.error(open_tok, f"expected '(', found {ts.describe(open_tok)}")
            ts.advance()
            self.ops.append(_Frame("in", open_tok))
            return True
        if t.kind is Tok.OP and t.text == "?":
            frame = self._frame()
            if frame is not None and frame.kind == "in":
                raise ts.error(t, f"expected ',' or ')' in the 'in' list, found {ts.describe(t)}")
            ts.advance()
            self._reduce_while(0)
            self.ops.append(_Frame("?", t))
            return True
        if t.kind is Tok.OP and t.text == ":":
            self._close_ternaries()
            top = self.ops[-1] if self.ops else None
            if not (isinstance(top, _Frame) and top.kind == "?"):
                return None
            ts.advance()
            self.ops[-1] = _Frame(":", top.tok)
            return True
        if t.kind is Tok.OP and t.text in (")", ","):
            self._close_ternaries()
            top = self.ops[-1] if self.ops else None
            if top is None:
                return None
            assert isinstance(top, _Frame)
            if top.kind == "?":
                raise ts.error(t, f"expected ':', found {ts.describe(t)}")
            if t.text == "," and top.kind == "paren":
                raise ts.error(t, "expected ')', found ','")
            ts.advance()
            if top.kind == "paren":
                self.ops.pop()
                return False  # the parenthesized value is on the operand stack
            top.args.append(_finish(self.vals.pop()))
            if t.text == ",":
                return True  # another argument follows (the caller expects an operand)
            self.ops.pop()
            if top.kind == "call":
                self.check_call(top.name, len(top.args), top.tok)
                if top.name == "substring":
                    self._check_substring(top)
                self.vals.append(ast.Call(top.name, tuple(top.args), _pos(top.tok)))
            else:
                self.vals.append(_Items(tuple(top.args)))
            return False
        return None


def parse_expression(ts: TokenStream, check_call: Callable[[str, int, Token], None],
                     check_regex: Callable[[Token], None]) -> ast.Expr:
    """Parse one expression at the stream's position (see the module docstring for precedence)."""
    return ExprParser(ts, check_call, check_regex).parse()


# ---- scope line ----------------------------------------------------------------------------------
_SCOPE_PREC = {"or": 1, "and": 2}


def _scope_join(op: str, left: ast.ScopeExpr, right: ast.ScopeExpr, pos: ast.Pos) -> ast.ScopeExpr:
    """``left op right``; an unparenthesized run of the same operator stays one n-ary node."""
    if isinstance(left, ast.ScopeBool) and left.op == op:
        return ast.ScopeBool(op, (*left.operands, right), left.pos)
    return ast.ScopeBool(op, (left, right), pos)


def parse_scope(toks: tuple[Token, ...], error: Callable[[Token, str], RuleSyntaxError]) -> ast.ScopeExpr:
    """The scope line's boolean search expression; adjacent terms are an implicit AND."""

    @dataclass
    class Grouped:
        """A parenthesized scope expression: not merged into an enclosing run of its operator."""

        expr: ast.ScopeExpr

    ops: list[tuple[str, Token]] = []  # ("or" | "and" | "not" | "(", token)
    vals: list[tuple[ast.ScopeExpr | Grouped, ast.Pos]] = []  # value, position of its first token

    def value(x: ast.ScopeExpr | Grouped) -> ast.ScopeExpr:
        return x.expr if isinstance(x, Grouped) else x

    def reduce_top() -> None:
        op, tok = ops.pop()
        if op == "not":
            inner, _ = vals.pop()
            vals.append((ast.ScopeNot(value(inner), _pos(tok)), _pos(tok)))
            return
        right, _ = vals.pop()
        left, left_pos = vals.pop()
        if isinstance(left, Grouped):
            vals.append((ast.ScopeBool(op, (left.expr, value(right)), left_pos), left_pos))
        else:
            vals.append((_scope_join(op, left, value(right), left_pos), left_pos))

    def reduce_while(prec: int) -> None:
        while ops and ops[-1][0] != "(" and (ops[-1][0] == "not" or _SCOPE_PREC[ops[-1][0]] >= prec):
            reduce_top()

    def is_word(t: Token, *words: str) -> bool:
        return t.kind is Tok.WORD and t.text.upper() in words

    i, n = 0, len(toks)
    expect_operand = True
    while True:
        t = toks[i] if i < n else None
        if expect_operand:
            if t is None:
                raise error(toks[-1], "the scope line ends where a search term was expected")
            if t.kind is Tok.OP and t.text == "(":
                ops.append(("(", t))
                i += 1
                continue
            if is_word(t, "NOT") or (t.kind is Tok.WORD and t.text.strip("!") == ""):
                ops.append(("not", t))
                i += 1
                continue
            if t.kind is Tok.OP:
                raise error(t, f"unexpected {t.text!r} in the scope line")
            if t.kind is Tok.WORD and t.text.startswith("!"):
                # "Alt-click any term to remove the term from results (NOT term or !term)"
                # (keyword-search-expressions.md): '!term' is 'NOT term'
                ops.append(("not", t))
                t = Token(t.kind, t.text[1:], t.offset + 1, t.line, t.column + 1, t.raw[1:])
            pos = _pos(t)
            i += 1
            nxt = toks[i] if i < n else None
            if t.kind is Tok.WORD and nxt is not None and nxt.kind is Tok.OP and nxt.text == "=":
                i += 1
                val = toks[i] if i < n else None
                if val is None or val.kind not in (Tok.WORD, Tok.STRING):
                    raise error(nxt, f"'{t.text}=' needs a value")
                i += 1
                vals.append((ast.ScopeMeta(t.text, val.text, pos), pos))
            else:
                problem = keyword_problem(t.text)
                if problem is not None:
                    raise error(t, problem)
                vals.append((ast.ScopeKeyword(t.text, pos), pos))
            expect_operand = False
            continue
        if t is None:
            break
        if t.kind is Tok.OP and t.text == ")":
            reduce_while(0)
            if not ops:
                raise error(t, f"unexpected {t.text!r} in the scope line")
            _, open_tok = ops.pop()
            inner, _ = vals.pop()
            vals.append((Grouped(value(inner)), _pos(open_tok)))
            i += 1
            continue
        op = "or" if is_word(t, "OR") else "and"
        if is_word(t, "OR", "AND"):
            i += 1
        reduce_while(_SCOPE_PREC[op])
        ops.append((op, t))
        expect_operand = True
    reduce_while(0)
    if ops:
        raise error(ops[-1][1], "unbalanced '(' in the scope line")
    assert len(vals) == 1
    return value(vals[0][0])
