"""Deeply nested expressions evaluated without recursion.

The regular compiler turns an expression into nested closures (and codegen.py into nested Python
expressions); both recurse once per nesting level, at compile time and per event. Sumo has no
nesting limit below its 15,000-character query size, so an expression deeper than ``MAX_NESTED``
is instead flattened once into post-order instructions and evaluated with a value stack.

Evaluation here is eager (every operand is computed, then combined). That is the same result as the
closures' short-circuit evaluation because every Sumo expression the engine evaluates is pure: no
function has a side effect and none raises (errors are null values, values.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.detect.sumo import ast
from harness.detect.sumo.values import Value, arith, compare, equals, in_equals, to_number, to_text, truthy

#: Nesting depth up to which the recursive compiler and the code generator are used. Well below
#: Python's recursion limit and the parser's limit on nested parentheses in generated code.
MAX_NESTED = 40

Node = Any  # an ast.Expr or ast.ScopeExpr
Step = Callable[[Any, list[Value]], Value]  # (message, operand values) -> value


def children(node: Node) -> Sequence[Node]:
    """The operands of an expression or scope node, left to right."""
    if isinstance(node, ast.Unary):
        return (node.operand,)
    if isinstance(node, ast.Binary):
        return (node.left, node.right)
    if isinstance(node, ast.Matches):
        return (node.subject,) if node.pattern_expr is None else (node.subject, node.pattern_expr)
    if isinstance(node, ast.InList):
        return (node.subject, *node.values)
    if isinstance(node, ast.Call):
        return node.args
    if isinstance(node, ast.Ternary):
        return (node.cond, node.then, node.other)
    if isinstance(node, ast.ScopeBool):
        return node.operands
    if isinstance(node, ast.ScopeNot):
        return (node.operand,)
    return ()


class DepthMemo:
    """Nesting depth of AST nodes, computed iteratively and remembered per node."""

    def __init__(self) -> None:
        self._depth: dict[int, int] = {}
        self._keep: list[Node] = []  # keeps the nodes alive so their ids stay unique

    def depth(self, root: Node) -> int:
        known = self._depth.get(id(root))
        if known is not None:
            return known
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in self._depth:
                continue
            kids = children(node)
            if expanded or not kids:
                self._depth[id(node)] = 1 + max((self._depth[id(k)] for k in kids), default=0)
                self._keep.append(node)
                continue
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in self._depth)
        return self._depth[id(root)]

    def deep(self, node: Node) -> bool:
        return self.depth(node) > MAX_NESTED


def _postorder(root: Node) -> list[Node]:
    out: list[Node] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        kids = children(node)
        if expanded or not kids:
            out.append(node)
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(kids))
    return out


def _cmp_step(op: str) -> Step:
    if op == "=":
        return lambda m, a: equals(a[0], a[1]) is True
    if op == "!=":
        return lambda m, a: equals(a[0], a[1]) is False
    tests: dict[str, Callable[[int], bool]] = {
        "<": lambda c: c < 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0
    }
    test = tests[op]

    def step(m: Any, a: list[Value]) -> Value:
        c = compare(a[0], a[1])
        return c is not None and test(c)

    return step


def _neg(m: Any, a: list[Value]) -> Value:
    n = to_number(a[0])
    return None if n is None else -n


def _in_list(m: Any, a: list[Value]) -> Value:
    subject = a[0]
    return subject is not None and any(in_equals(subject, v) for v in a[1:])


def _choose(m: Any, a: list[Value]) -> Value:
    return a[1] if truthy(a[0]) else a[2]


class ExprProgram:
    """An expression as post-order steps; ``value(m)`` runs them with a value stack."""

    def __init__(self, root: ast.Expr, leaf: Callable[[ast.Expr], Callable[[Any], Value]],
                 predicate_of: Callable[[ast.Matches], Callable[..., bool]],
                 function: Callable[[str], Callable[..., Value]]) -> None:
        self.code: list[tuple[Step, int]] = []
        for node in _postorder(root):
            self.code.append((self._step(node, leaf, predicate_of, function), len(children(node))))

    @staticmethod
    def _step(node: ast.Expr, leaf: Callable[[ast.Expr], Callable[[Any], Value]],
              predicate_of: Callable[[ast.Matches], Callable[..., bool]],
              function: Callable[[str], Callable[..., Value]]) -> Step:
        if isinstance(node, ast.Lit | ast.FieldRef):
            read = leaf(node)
            return lambda m, a: read(m)
        if isinstance(node, ast.Unary):
            if node.op == "!":
                return lambda m, a: not truthy(a[0])
            return _neg
        if isinstance(node, ast.Binary):
            op = node.op
            if op == "and":
                return lambda m, a: truthy(a[0]) and truthy(a[1])
            if op == "or":
                return lambda m, a: truthy(a[0]) or truthy(a[1])
            if op in ("=", "!=", "<", "<=", ">", ">="):
                return _cmp_step(op)
            return lambda m, a: arith(op, a[0], a[1])
        if isinstance(node, ast.Matches):
            pred = predicate_of(node)
            if node.pattern_expr is not None:
                return lambda m, a: (t := to_text(a[0])) is not None and bool(pred(t, to_text(a[1])))

            def matches(m: Any, a: list[Value]) -> Value:
                text = to_text(a[0])
                return text is not None and pred(text)

            return matches
        if isinstance(node, ast.InList):
            return _in_list
        if isinstance(node, ast.Ternary) or (isinstance(node, ast.Call) and node.name == "if"):
            return _choose
        if isinstance(node, ast.Call):
            impl = function(node.name)
            return lambda m, a: impl(*a)
        raise AssertionError(f"unhandled expression {node!r}")  # pragma: no cover - exhaustive above

    def value(self, m: Any) -> Value:
        stack: list[Value] = []
        for step, n in self.code:
            if n:
                args = stack[-n:]
                del stack[-n:]
            else:
                args = []
            stack.append(step(m, args))
        return stack[0]

    def pred(self, m: Any) -> bool:
        return truthy(self.value(m))


class ScopeProgram:
    """A scope expression as post-order steps over precompiled term predicates."""

    def __init__(self, root: ast.ScopeExpr, term: Callable[[ast.ScopeExpr], Callable[[Any], bool]]) -> None:
        self.code: list[tuple[Callable[[Any, list[bool]], bool], int]] = []
        for node in _postorder(root):
            n = len(children(node))
            if isinstance(node, ast.ScopeBool):
                step: Callable[[Any, list[bool]], bool] = (
                    (lambda m, a: all(a)) if node.op == "and" else (lambda m, a: any(a)))
            elif isinstance(node, ast.ScopeNot):
                step = lambda m, a: not a[0]  # noqa: E731
            else:
                pred = term(node)
                step = lambda m, a, pred=pred: pred(m)  # type: ignore[misc]  # noqa: E731
            self.code.append((step, n))

    def __call__(self, m: Any) -> bool:
        stack: list[bool] = []
        for step, n in self.code:
            if n:
                args = stack[-n:]
                del stack[-n:]
            else:
                args = []
            stack.append(step(m, args))
        return stack[0]
