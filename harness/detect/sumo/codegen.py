"""Fuse the streaming stages of a compiled query into ONE generated Python function.

Calling a closure per stage and per sub-expression costs more than the work itself for simple
detection logic, so the streaming part of the pipeline (``where``, ``<expr> as f``, ``parse "*"``)
is turned into the source of a single function with the computed fields in a local dict, and
compiled once with ``compile()``. Only generated names appear in the source (computed fields live in
locals ``v<n>``, field names are namespace constants); every literal, pattern and helper is passed
in through the function's namespace, never spliced into the text. Anything this generator does
not handle is called as the closure the regular compiler built for it, so semantics stay in one
place (compiler.py, values.py); this module only removes call overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.detect.sumo import ast
from harness.detect.sumo.values import Value, arith, compare, equals, to_text, truthy


@dataclass
class Codegen:
    """Collects the generated lines and the namespace objects they refer to."""

    lines: list[str] = field(default_factory=list)
    ns: dict[str, Any] = field(default_factory=dict)
    counter: int = 0
    #: Computed fields live in Python locals (``v_<key>``) and reach ``m.d`` only when the message
    #: survives the whole segment; impossible when a fallback closure must see ``m.d`` mid-way.
    use_locals: bool = True
    needs_dict: bool = False  # set when a fallback closure was emitted: rebuild with use_locals off
    assigned: dict[str, None] = field(default_factory=dict)  # keys written, in order
    locals: dict[str, str] = field(default_factory=dict)  # computed field key -> local variable
    keys: dict[str, str] = field(default_factory=dict)  # field key -> namespace constant

    def name(self, prefix: str, obj: object) -> str:
        self.counter += 1
        n = f"_{prefix}{self.counter}"
        self.ns[n] = obj
        return n

    def local(self, key: str) -> str:
        """The Python local holding computed field ``key`` (any Unicode name maps to ``v<n>``)."""
        name = self.locals.get(key)
        if name is None:
            name = self.locals[key] = f"v{len(self.locals)}"
        return name

    def key(self, key: str) -> str:
        """A namespace constant holding the string ``key`` (never spliced into the source)."""
        name = self.keys.get(key)
        if name is None:
            name = self.keys[key] = self.name("k", key)
        return name

    def temp(self) -> str:
        self.counter += 1
        return f"_t{self.counter}"

    def build(self) -> Callable[[Any], bool]:
        body = "".join(f"    {line}\n" for line in self.lines)
        if self.use_locals and self.assigned:
            body += "".join(f"    d[{self.key(k)}] = {self.local(k)}\n" for k in self.assigned)
        src = "def _stream(m):\n    d = m.d\n    evf = m.ev.fields\n" + body + "    return True\n"
        namespace: dict[str, Any] = {
            "_equals": equals, "_arith": arith, "_compare": compare, "_to_text": to_text, "_truthy": truthy, **self.ns,
        }
        exec(compile(src, "<sumo-stream>", "exec"), namespace)  # noqa: S102 - generated from the AST only
        fn: Callable[[Any], bool] = namespace["_stream"]
        return fn


def _match_slow(pred: Callable[[str], bool], v: Value) -> bool:
    if v is None:
        return False
    text = to_text(v)
    return text is not None and pred(text)


class ExprGen:
    """Generates Python expressions for Sumo expressions over a known set of computed fields.

    ``value_fallback``/``pred_fallback`` give the regular compiler's closure for a node this
    generator does not inline; ``reader`` gives the closure reading a field that no earlier stage
    computed (metadata, header, EventData).
    """

    def __init__(self, cg: Codegen, defined: set[str], reader: Callable[[str], Callable[[Any], Value]],
                 value_fallback: Callable[[ast.Expr], Callable[[Any], Value]],
                 pred_fallback: Callable[[ast.Expr], Callable[[Any], bool]],
                 predicate_of: Callable[[ast.Matches], Callable[[str], bool]],
                 eventdata_name: Callable[[str], str | None]) -> None:
        self.cg = cg
        self.defined = defined
        self.reader = reader
        self.value_fallback = value_fallback
        self.pred_fallback = pred_fallback
        self.predicate_of = predicate_of
        self.eventdata_name = eventdata_name

    def value(self, e: ast.Expr) -> str:
        cg = self.cg
        if isinstance(e, ast.Lit):
            return cg.name("c", e.value)
        if isinstance(e, ast.FieldRef):
            if e.key in self.defined:
                if cg.use_locals:
                    return cg.local(e.key)
                return f"d.get({cg.key(e.key)})"
            reader = cg.name("r", self.reader(e.name))
            written = self.eventdata_name(e.name)
            if written is not None:  # EventData spelled as in the event: one dict lookup, else the reader
                t = cg.temp()
                return f"({t} if ({t} := evf.get({cg.key(written)})) is not None else {reader}(m))"
            return f"{reader}(m)"
        if isinstance(e, ast.Call) and e.name in ("tolowercase", "touppercase"):
            t = cg.temp()
            method = "lower" if e.name == "tolowercase" else "upper"
            return f"({t}.{method}() if ({t} := {self.value(e.args[0])}).__class__ is str else None)"
        if isinstance(e, ast.Call) and e.name == "isnull":
            return f"({self.value(e.args[0])} is None)"
        if isinstance(e, ast.Binary) and e.op == "+":
            a, b, t1, t2 = self.value(e.left), self.value(e.right), cg.temp(), cg.temp()
            # '&' (not 'and') so both temporaries are always bound
            return (f"({t1} + {t2} if (({t1} := {a}).__class__ is int) & (({t2} := {b}).__class__ is int) "
                    f"else _arith('+', {t1}, {t2}))")
        if isinstance(e, ast.Call) and e.name == "if":
            return f"({self.value(e.args[1])} if {self.pred(e.args[0])} else {self.value(e.args[2])})"
        if isinstance(e, ast.Ternary):
            return f"({self.value(e.then)} if {self.pred(e.cond)} else {self.value(e.other)})"
        if isinstance(e, ast.Matches | ast.InList) or (
            isinstance(e, ast.Binary) and e.op in ("and", "or", "=", "!=", "<", "<=", ">", ">=")
        ) or (isinstance(e, ast.Unary) and e.op == "!"):
            return self.pred(e)
        cg.needs_dict = True
        return f"{cg.name('v', self.value_fallback(e))}(m)"

    def pred(self, e: ast.Expr) -> str:
        cg = self.cg
        if isinstance(e, ast.Binary) and e.op in ("and", "or"):
            return f"({self.pred(e.left)} {e.op} {self.pred(e.right)})"
        if isinstance(e, ast.Unary) and e.op == "!":
            return f"(not {self.pred(e.operand)})"
        if isinstance(e, ast.Call) and e.name == "isnull":
            return f"({self.value(e.args[0])} is None)"
        if (isinstance(e, ast.Call) and e.name == "if") or isinstance(e, ast.FieldRef | ast.Lit):
            return f"_truthy({self.value(e)})"
        if isinstance(e, ast.Matches) and e.pattern_expr is None:
            pred = self.predicate_of(e)
            p = cg.name("p", pred)
            raw = getattr(pred, "re2_match", None)
            if raw is not None:  # call RE2 directly on the UTF-8 bytes: no wrapper call per test
                match, anchor, null = (cg.name("M", raw[0]), cg.name("A", raw[1]), cg.name("N", raw[2]))
                t, b = cg.temp(), cg.temp()
                slow = cg.name("ms", _match_slow)
                return (f"({match}({anchor}, ({b} := {t}.encode('utf-8', 'surrogatepass')), 0, len({b}))[0] != "
                        f"{null} if ({t} := {self.value(e.subject)}).__class__ is str else {slow}({p}, {t}))")
            t = cg.temp()
            slow = cg.name("ms", _match_slow)
            return f"({p}({t}) if ({t} := {self.value(e.subject)}).__class__ is str else {slow}({p}, {t}))"
        if isinstance(e, ast.Binary) and e.op in ("=", ">", ">=", "<", "<=") and isinstance(e.right, ast.Lit) \
                and e.right.value.__class__ is int:
            lit = cg.name("c", e.right.value)
            t = cg.temp()
            op = "==" if e.op == "=" else e.op
            slow = (f"(_equals({t}, {lit}) is True)" if e.op == "=" else
                    f"((_c := _compare({t}, {lit})) is not None and _c {op} 0)")
            return f"({t} {op} {lit} if ({t} := {self.value(e.left)}).__class__ is int else {slow})"
        cg.needs_dict = True
        return f"{cg.name('f', self.pred_fallback(e))}(m)"


def stage_lines(stage: ast.Stage, gen: ExprGen, fallback: Callable[[Any], bool], *, inline: bool = True
                ) -> list[str]:
    """Source lines for one streaming stage; other stages (or ``inline=False``) call their closure."""
    cg = gen.cg
    if not inline:
        cg.needs_dict = True
        return [f"if not {cg.name('s', fallback)}(m):", "    return False"]
    if isinstance(stage, ast.Where):
        return [f"if not {gen.pred(stage.expr)}:", "    return False"]
    if isinstance(stage, ast.Assign):
        return [_store(cg, stage.field.lower(), gen.value(stage.expr))]
    if isinstance(stage, ast.Parse) and stage.pattern == "*":
        # parse [field=F] "*" as x: the whole value; on a miss (null source) the nodrop rule: drop the
        # message, or keep it with x as it was (a computed x stays, otherwise x is read as before)
        t = cg.temp()
        src = gen.value(ast.FieldRef(stage.source or "_raw", stage.pos))
        key = stage.names[0].lower()
        previous = gen.value(ast.FieldRef(stage.names[0], stage.pos))
        lines = [f"if ({t} := {src}).__class__ is str:", f"    {_store(cg, key, t)}",
                 f"elif {t} is not None:", f"    {_store(cg, key, f'_to_text({t})')}"]
        if not stage.nodrop:
            return [*lines, "else:", "    return False"]
        if key in gen.defined:
            return lines
        return [*lines, "else:", f"    {_store(cg, key, previous)}"]
    cg.needs_dict = True
    return [f"if not {cg.name('s', fallback)}(m):", "    return False"]


def _store(cg: Codegen, key: str, value: str) -> str:
    cg.assigned[key] = None
    return f"{cg.local(key)} = {value}" if cg.use_locals else f"d[{cg.key(key)}] = {value}"
