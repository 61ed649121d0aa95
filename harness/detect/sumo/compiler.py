"""Compile a parsed Sumo query into Python closures, then stream events through them.

The query is turned into closures once: every field read is resolved at compile time to the
cheapest place it can come from (a value an earlier stage computed, message metadata, a header
field, or an EventData name via the modelled FER), every pattern is compiled once, and the
per-event loop calls a short list of stage functions. Non-aggregate stages stream; ``sort``,
``limit`` and aggregations work on the collected list at the end.

Which fields exist after each stage is known statically (``_State``): ``<expr> as f``, ``parse``
and ``json`` always write their fields (null on a nodrop miss), so a read after them is a dict
lookup; ``fields`` hides what it does not keep; ``json auto`` makes the set dynamic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.detect.base import TimeWindow
from harness.detect.sumo import ast
from harness.detect.sumo.codegen import Codegen, ExprGen, stage_lines
from harness.detect.sumo.deep import DepthMemo, ExprProgram, ScopeProgram, children
from harness.detect.sumo.functions import FUNCTIONS, regex_replacer
from harness.detect.sumo.messages import METADATA, MessageConfig, message_time_ms, raw_json
from harness.detect.sumo.patterns import (
    compile_regex,
    re2_text,
    regex_predicate,
    wildcard_capture,
    wildcard_predicate,
)
from harness.detect.sumo.terms import keyword_regex
from harness.detect.sumo.values import Value, arith, compare, equals, in_equals, to_number, to_text, truthy
from harness.errors import UnsupportedRuleError
from harness.telemetry.event import Event


class Msg:
    """One message flowing through the pipeline: its event, the values stages computed, its index."""

    __slots__ = ("d", "ev", "idx", "members", "names", "parsed", "raw")

    def __init__(self, ev: Event | None, idx: int, d: dict[str, Value] | None = None) -> None:
        self.ev = ev
        self.idx = idx
        self.d: dict[str, Value] = {} if d is None else d
        self.names: dict[str, str] | None = None  # lower-case EventData name -> real name
        self.raw: str | None = None
        self.members: tuple[int, ...] | None = None  # aggregate rows: the events folded into them
        self.parsed = False  # an earlier parse ... nodrop matched (the documented nodrop OR idiom)

    def copy(self) -> Msg:
        m = Msg(self.ev, self.idx, dict(self.d))
        m.names, m.raw, m.members, m.parsed = self.names, self.raw, self.members, self.parsed
        return m


Reader = Callable[[Msg], Value]
Pred = Callable[[Msg], bool]
StageFn = Callable[[Msg], bool]
ListOp = Callable[[list[Msg]], list[Msg]]


@dataclass
class _State:
    """What the compiler knows about the message shape before a stage."""

    defined: dict[str, str] = field(default_factory=dict)  # key -> display name, computed values
    hidden: set[str] = field(default_factory=set)  # removed by 'fields -'
    keep: dict[str, str] | None = None  # set by 'fields a, b' (key -> display), in order
    dynamic: bool = False  # json auto ran: any key may be in Msg.d
    aggregated: bool = False  # rows are aggregates: no event behind them any more


def _sortable(values: list[Value]) -> Callable[[Value], tuple[int, Any]]:
    """Sort key: numerically when every non-null value IS a number (cast with num(), computed, or an
    aggregate), else as text by code point; nulls last. "To numerically sort, first cast the field to a
    number. Otherwise, the sort will be ordered as a text field." and "Sorting is case sensitive with
    lower-case followed by upper-case." (search-operators/sort.md)"""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values if v is not None)
    if numeric:
        return lambda v: (1, 0) if v is None else (0, to_number(v))
    return lambda v: (1, "") if v is None else (0, to_text(v))


class CompiledQuery:
    """A query ready to run. ``run`` is the only per-event work."""

    def __init__(self, query: ast.Query, config: MessageConfig | None = None) -> None:
        self.config = config or MessageConfig()
        self._categories: dict[str, str] = {}
        self._names_cache: dict[tuple[str, ...], dict[str, str]] = {}
        self._header = {h.lower(): h for h in self.config.header_fields}
        self._depths = DepthMemo()  # deeper expressions run as deep.py programs, not nested closures
        self.scope: Pred | None = self._compile_scope(query.scope) if query.scope is not None else None
        self.stream: list[StageFn] = []
        self.tail: list[ListOp] = []  # everything from the first sort/limit/aggregation on
        self.aggregate = False
        state = _State()
        barrier = False
        # Cheap per-event prefilters, decided without building a message: a scope that depends only on
        # the channel (memoized per channel) and leading 'where EventID in (...)' stages (an int set).
        self._channel_scope = query.scope is not None and _channel_only(query.scope)
        self._event_ids: frozenset[int] | None = None
        stages = list(query.stages)
        while (stages and "eventid" in self._header and isinstance(stages[0], ast.Where)
               and (ids := _event_id_set(stages[0].expr)) is not None):
            self._event_ids = ids if self._event_ids is None else self._event_ids & ids
            stages.pop(0)
        streamed: list[tuple[ast.Stage, _State, StageFn]] = []
        # "When your query has multiple parse expressions, using nodrop acts as an OR condition ... the
        # results from the first parse expression using nodrop, even when they don't match the following
        # parse expression are still returned" (parse-nodrop-option.md): a parse without nodrop keeps a
        # message that matched an earlier parse with nodrop. Only then do parse stages track matches.
        self._or_chain = _nodrop_or_chain(stages)
        self._nodrop_before = False
        for stage in stages:
            if isinstance(stage, ast.Sort | ast.Limit | ast.Aggregate) or (
                    isinstance(stage, ast.ParseRegex) and stage.multi) or (
                    isinstance(stage, ast.Timeslice) and stage.buckets):
                barrier = True
                self.tail.append(self._compile_list_stage(stage, state))
                continue
            before = _State(dict(state.defined), set(state.hidden),
                            None if state.keep is None else dict(state.keep), state.dynamic, state.aggregated)
            fn = self._compile_stage(stage, state)
            if fn is None:
                continue
            if barrier:
                self.tail.append(_filter_rows(fn))
                continue
            self.stream.append(fn)
            streamed.append((stage, before, fn))
        # One generated function for the whole streaming segment (codegen.py); same semantics.
        self.fused: StageFn | None = self._fuse(streamed) if streamed else None
        self.aggregate = state.aggregated
        self.columns = self._output_columns(state)
        self._final = state

    def _fuse(self, streamed: list[tuple[ast.Stage, _State, StageFn]]) -> StageFn:
        for use_locals in (True, False):
            cg = Codegen(use_locals=use_locals)
            for stage, before, fn in streamed:
                inline = not (before.dynamic or before.aggregated or self._deep_stage(stage) or (
                    self._or_chain and isinstance(stage, ast.Parse | ast.ParseRegex | ast.Json)))
                cg.lines.extend(stage_lines(stage, self._gen(cg, before), fn, inline=inline))
            if not (use_locals and cg.needs_dict):
                try:
                    return cg.build()
                except (SyntaxError, RecursionError, MemoryError):
                    break  # CPython's own limits on generated code: the stage closures are the same logic
        fns = [fn for _, _, fn in streamed]
        return lambda m: all(fn(m) for fn in fns)

    def _deep_stage(self, stage: ast.Stage) -> bool:
        """A where/assign whose expression is too deep to generate inline code for."""
        return isinstance(stage, ast.Where | ast.Assign) and self._depths.deep(stage.expr)

    def _program(self, e: ast.Expr, st: _State) -> ExprProgram:
        return ExprProgram(
            e, leaf=lambda n: self._value(n, st),
            predicate_of=self._predicate_of,
            function=lambda name: FUNCTIONS[name][2],
        )

    @staticmethod
    def _predicate_of(e: ast.Matches) -> Callable[..., bool]:
        if e.pattern_expr is not None:  # deep.py passes (text, pattern text)
            return lambda v, p=None: p is not None and wildcard_predicate(p)(v)
        return regex_predicate(e.pattern) if e.is_regex else wildcard_predicate(e.pattern)

    def _gen(self, cg: Codegen, st: _State) -> ExprGen:
        return ExprGen(
            cg, set(st.defined),
            reader=lambda name: self._reader(name, st),
            value_fallback=lambda e: self._value(e, st),
            pred_fallback=lambda e: self._pred(e, st),
            predicate_of=lambda e: regex_predicate(e.pattern) if e.is_regex else wildcard_predicate(e.pattern),
            eventdata_name=lambda name: self._fast_eventdata(name, st),
        )

    def _fast_eventdata(self, name: str, st: _State) -> str | None:
        """``name`` when a read of it may first try the event's fields under that exact spelling."""
        key = name.lower()
        visible = key not in st.hidden and (st.keep is None or key in st.keep)
        plain = key not in METADATA and key not in self._header and not st.dynamic and not st.aggregated
        return name if self.config.eventdata_fields is True and visible and plain else None

    # ---- sources --------------------------------------------------------------------------------
    def _category(self, channel: str) -> str:
        cat = self._categories.get(channel)
        if cat is None:
            cat = self._categories[channel] = self.config.category(channel)
        return cat

    def _names_for(self, fields: Mapping[str, str]) -> dict[str, str]:
        key = tuple(fields)
        names = self._names_cache.get(key)
        if names is None:
            cfg = self.config
            names = {n.lower(): n for n in key if cfg.extracts(n) and n.lower() not in self._header}
            if len(self._names_cache) < 4096:  # bounded: schemas repeat, hostile input must not grow it
                self._names_cache[key] = names
        return names

    def _source_reader(self, key: str, written: str) -> Reader:
        """Read field ``key`` from the message as the collector and FER deliver it."""
        cfg = self.config
        if key == "_sourcecategory":
            cats = self._categories
            category = self._category
            return lambda m: None if m.ev is None else (cats.get(m.ev.channel) or category(m.ev.channel))
        if key == "_sourcehost":
            return lambda m: None if m.ev is None else m.ev.computer
        if key in ("_messagetime", "_receipttime"):
            return lambda m: None if m.ev is None else message_time_ms(m.ev)
        if key == "_raw" and cfg.raw_field is not None:
            raw_name = cfg.raw_field
            return lambda m: None if m.ev is None else m.ev.fields.get(raw_name)
        if key == "_raw":
            def raw(m: Msg) -> Value:
                if m.raw is None and m.ev is not None:
                    m.raw = raw_json(m.ev)
                return m.raw
            return raw
        if key == "_collector":
            return lambda m: cfg.collector
        if key == "_source":
            return lambda m: cfg.source_name
        if key == "_sourcename":
            return lambda m: None if m.ev is None else m.ev.channel
        if key in METADATA:
            return lambda m: None
        if key in self._header:
            if key == "eventid":
                return lambda m: None if m.ev is None else str(m.ev.event_id)
            name = self._header[key]
            return lambda m: None if m.ev is None else cfg.header_value(m.ev, name)
        fast = cfg.eventdata_fields is True
        names_for = self._names_for

        def eventdata(m: Msg) -> Value:
            ev = m.ev
            if ev is None:
                return None
            f = ev.fields
            if fast:  # the query usually spells the name as Windows does: one dict lookup
                v = f.get(written)
                if v is not None:
                    return v
            names = m.names
            if names is None:
                names = m.names = names_for(f)
            real = names.get(key)
            return None if real is None else f.get(real)

        return eventdata

    def _reader(self, name: str, state: _State) -> Reader:
        key = name.lower()
        if key in state.defined or state.aggregated:
            return lambda m: m.d.get(key)
        if key in state.hidden or (state.keep is not None and key not in state.keep and not key.startswith("_")):
            if state.dynamic:
                return lambda m: m.d.get(key)
            return lambda m: None
        src = self._source_reader(key, name)
        if state.dynamic:
            def dyn(m: Msg) -> Value:
                d = m.d
                return d[key] if key in d else src(m)
            return dyn
        return src

    # ---- scope ----------------------------------------------------------------------------------
    def _compile_scope(self, expr: ast.ScopeExpr) -> Pred:
        if self._depths.deep(expr):
            return ScopeProgram(expr, self._compile_scope)
        if isinstance(expr, ast.ScopeBool):
            parts = [self._compile_scope(p) for p in expr.operands]
            if expr.op == "and":
                return lambda m: all(p(m) for p in parts)
            return lambda m: any(p(m) for p in parts)
        if isinstance(expr, ast.ScopeNot):
            inner = self._compile_scope(expr.operand)
            return lambda m: not inner(m)
        if isinstance(expr, ast.ScopeMeta):
            # Metadata and indexed-field terms compare case-insensitively against the whole value.
            pred = wildcard_predicate(expr.pattern, ignore_case=True)
            read = self._source_reader(expr.name.lower(), expr.name)
            if expr.name.lower() == "_sourcecategory":  # depends only on the channel: decide once each
                memo: dict[str, bool] = {}

                def by_channel(m: Msg) -> bool:
                    ev = m.ev
                    if ev is None:
                        return False
                    hit = memo.get(ev.channel)
                    if hit is None:
                        hit = memo[ev.channel] = pred(self._category(ev.channel))
                    return hit

                return by_channel

            def meta(m: Msg) -> bool:
                v = to_text(read(m))
                return v is not None and pred(v)

            return meta
        # A keyword matches whole terms of the raw message, case-insensitively (terms.py: Sumo's term model).
        rx = keyword_regex(expr.pattern)
        if rx is None:
            return lambda m: True
        kw = regex_predicate(rx)
        raw = self._source_reader("_raw", "_raw")
        return lambda m: kw(to_text(raw(m)) or "")

    # ---- expressions ----------------------------------------------------------------------------
    def _pred(self, e: ast.Expr, st: _State) -> Pred:
        """A boolean closure for ``e`` (non-boolean values go through Sumo truth)."""
        if self._depths.deep(e):
            return self._program(e, st).pred
        if isinstance(e, ast.Binary) and e.op in ("and", "or"):
            a, b = self._pred(e.left, st), self._pred(e.right, st)
            if e.op == "and":
                return lambda m: a(m) and b(m)
            return lambda m: a(m) or b(m)
        if isinstance(e, ast.Unary) and e.op == "!":
            inner = self._pred(e.operand, st)
            return lambda m: not inner(m)
        if isinstance(e, ast.Matches):
            return self._matches(e, st)
        if isinstance(e, ast.InList):
            return self._in_list(e, st)
        if isinstance(e, ast.Binary) and e.op in ("=", "!=", "<", "<=", ">", ">="):
            return self._comparison(e, st)
        fn = self._value(e, st)
        return lambda m: truthy(fn(m))

    def _matches(self, e: ast.Matches, st: _State) -> Pred:
        if e.pattern_expr is not None:
            subject, pattern = self._value(e.subject, st), self._value(e.pattern_expr, st)

            def matches_field_pattern(m: Msg) -> bool:
                v, p = to_text(subject(m)), to_text(pattern(m))
                return v is not None and p is not None and wildcard_predicate(p)(v)

            return matches_field_pattern
        pred = regex_predicate(e.pattern) if e.is_regex else wildcard_predicate(e.pattern)
        if isinstance(e.subject, ast.FieldRef) and e.subject.key in st.defined:
            key = e.subject.key

            def matches_field(m: Msg) -> bool:  # the hot case: a field an earlier stage computed
                v = m.d.get(key)
                if v.__class__ is str:
                    return pred(v)  # type: ignore[arg-type]
                if v is None:
                    return False
                text = to_text(v)
                return text is not None and pred(text)

            return matches_field
        subj = self._value(e.subject, st)

        def matches(m: Msg) -> bool:
            v = subj(m)
            if v is None:  # null matches nothing
                return False
            if v.__class__ is not str:
                v = to_text(v)
                assert v is not None
            return pred(v)  # type: ignore[arg-type]

        return matches

    def _in_list(self, e: ast.InList, st: _State) -> Pred:
        subj = self._value(e.subject, st)
        if all(isinstance(v, ast.Lit) and isinstance(v.value, str) for v in e.values):
            # All string literals: string equality (the common 'EventID in ("1", "4688")').
            wanted = frozenset(v.value for v in e.values if isinstance(v, ast.Lit) and isinstance(v.value, str))
            literals: list[Value] = list(wanted)

            def in_strings(m: Msg) -> bool:
                v = subj(m)
                if v.__class__ is str:
                    return v in wanted
                return v is not None and any(in_equals(v, w) for w in literals)

            return in_strings
        items = [self._value(v, st) for v in e.values]
        return lambda m: (v := subj(m)) is not None and any(in_equals(v, it(m)) for it in items)

    def _comparison(self, e: ast.Binary, st: _State) -> Pred:
        a, b = self._value(e.left, st), self._value(e.right, st)
        op = e.op
        if op == "=" and isinstance(e.right, ast.Lit) and e.right.value.__class__ is int:
            lit_int = e.right.value

            def eq_int(m: Msg) -> bool:
                x = a(m)
                if x.__class__ is int:
                    return bool(x == lit_int)
                return equals(x, lit_int) is True

            return eq_int
        if op == "=":
            return lambda m: equals(a(m), b(m)) is True
        if op == "!=":
            return lambda m: equals(a(m), b(m)) is False
        tests: dict[str, Callable[[int], bool]] = {
            "<": lambda c: c < 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0
        }
        test = tests[op]
        if isinstance(e.right, ast.Lit) and isinstance(e.right.value, int | float) and not isinstance(
            e.right.value, bool
        ):
            lit = e.right.value

            def vs_number(m: Msg) -> bool:
                x = a(m)
                if x.__class__ is int or x.__class__ is float:
                    return test((x > lit) - (x < lit))  # type: ignore[operator]
                c = compare(x, lit)
                return c is not None and test(c)

            return vs_number

        def general(m: Msg) -> bool:
            c = compare(a(m), b(m))
            return c is not None and test(c)

        return general

    def _value(self, e: ast.Expr, st: _State) -> Reader:
        if self._depths.deep(e):
            return self._program(e, st).value
        if isinstance(e, ast.Lit):
            val = e.value
            return lambda m: val
        if isinstance(e, ast.FieldRef):
            return self._reader(e.name, st)
        if isinstance(e, ast.Matches | ast.InList) or (
            isinstance(e, ast.Binary) and e.op in ("and", "or", "=", "!=", "<", "<=", ">", ">=")
        ) or (isinstance(e, ast.Unary) and e.op == "!"):
            p = self._pred(e, st)
            return lambda m: p(m)
        if isinstance(e, ast.Unary):  # arithmetic negation
            inner = self._value(e.operand, st)

            def neg(m: Msg) -> Value:
                n = to_number(inner(m))
                return None if n is None else -n

            return neg
        if isinstance(e, ast.Binary):
            return self._arith(e, st)
        if isinstance(e, ast.Ternary):
            c, x, y = self._pred(e.cond, st), self._value(e.then, st), self._value(e.other, st)
            return lambda m: x(m) if c(m) else y(m)
        if isinstance(e, ast.Call):
            return self._call(e, st)
        raise AssertionError(f"unhandled expression {e!r}")  # pragma: no cover - exhaustive above

    def _arith(self, e: ast.Binary, st: _State) -> Reader:
        a, b = self._value(e.left, st), self._value(e.right, st)
        op = e.op

        def slow(x: Value, y: Value) -> Value:
            return arith(op, x, y)

        if op == "+" and _computed_fields(e, st) is not None:
            keys = _computed_fields(e, st)
            assert keys is not None

            def add_fields(m: Msg) -> Value:  # a + b + c over computed fields: one pass
                d = m.d
                total: Value = 0
                for k in keys:
                    v = d.get(k)
                    both_int = total.__class__ is int and v.__class__ is int
                    total = total + v if both_int else slow(total, v)  # type: ignore[operator]
                return total

            return add_fields
        if op == "+":
            def add(m: Msg) -> Value:
                x, y = a(m), b(m)
                if x.__class__ is int and y.__class__ is int:
                    return x + y  # type: ignore[operator]
                return slow(x, y)
            return add
        return lambda m: slow(a(m), b(m))

    def _call(self, e: ast.Call, st: _State) -> Reader:
        args = [self._value(a, st) for a in e.args]
        if e.name == "if":
            cond = self._pred(e.args[0], st)
            x, y = args[1], args[2]
            then, other = e.args[1], e.args[2]
            if isinstance(then, ast.Lit) and isinstance(other, ast.Lit):
                tv, ov = then.value, other.value
                return lambda m: tv if cond(m) else ov
            return lambda m: x(m) if cond(m) else y(m)
        impl = FUNCTIONS[e.name][2]
        if e.name == "replace_re" and isinstance(e.args[1], ast.Lit) and isinstance(e.args[1].value, str):
            replacer = regex_replacer(e.args[1].value)  # compiled once, not per message

            def impl(s: Value, _p: Value, t: Value) -> Value:
                ts, tt = to_text(s), to_text(t)
                return None if ts is None or tt is None else replacer(ts, tt)
        if len(args) == 1:
            only = args[0]
            return lambda m: impl(only(m))
        if len(args) == 2:
            a0, a1 = args
            return lambda m: impl(a0(m), a1(m))
        return lambda m: impl(*(a(m) for a in args))

    # ---- stages ---------------------------------------------------------------------------------
    @staticmethod
    def _define(state: _State, name: str) -> str:
        key = name.lower()
        state.defined[key] = name
        state.hidden.discard(key)
        if state.keep is not None and key not in state.keep:
            state.keep[key] = name
        return key

    def _compile_stage(self, stage: ast.Stage, state: _State) -> StageFn | None:
        if isinstance(stage, ast.Where):
            return self._pred(stage.expr, state)
        if isinstance(stage, ast.Assign):
            fn = self._value(stage.expr, state)
            key = self._define(state, stage.field)

            def assign(m: Msg) -> bool:
                m.d[key] = fn(m)
                return True

            return assign
        if isinstance(stage, ast.Parse | ast.ParseRegex):
            return self._parse_stage(stage, state)
        if isinstance(stage, ast.Json):
            return self._json_stage(stage, state)
        if isinstance(stage, ast.Fields):
            keys = {n.lower(): n for n in stage.names}
            if stage.remove:
                for k in keys:
                    state.hidden.add(k)
                    state.defined.pop(k, None)
                    if state.keep is not None:
                        state.keep.pop(k, None)
                if state.dynamic or state.aggregated:
                    def drop(m: Msg) -> bool:
                        for k in keys:
                            m.d.pop(k, None)
                        return True
                    return drop
                return None
            state.keep = dict(keys)
            if state.dynamic or state.aggregated:
                keep = set(keys)

                def keep_only(m: Msg) -> bool:
                    for k in [k for k in m.d if k not in keep and not k.startswith("_")]:
                        del m.d[k]
                    return True

                state.defined = {k: v for k, v in state.defined.items() if k in keep or k.startswith("_")}
                return keep_only
            return None
        if isinstance(stage, ast.Timeslice):
            span = stage.span_ms
            mt = self._reader("_messageTime", state)
            key = self._define(state, stage.alias)
            end_key = self._define(state, "__timeslice_end")

            def timeslice(m: Msg) -> bool:
                t = to_number(mt(m))
                start = None if t is None else int(t // span * span)
                m.d[key] = start
                m.d[end_key] = None if start is None else start + span  # timeslice.md: "__timeslice_end"
                return True

            return timeslice
        raise AssertionError(f"unhandled stage {stage!r}")  # pragma: no cover

    def _parse_stage(self, stage: ast.Parse | ast.ParseRegex, state: _State) -> StageFn:
        src = self._reader(stage.source or "_raw", state)
        before = [self._reader(n, state) for n in stage.names]  # what a nodrop miss leaves in place
        keys = [self._define(state, n) for n in stage.names]
        nodrop = stage.nodrop
        keep_parsed = self._or_chain and self._nodrop_before and not nodrop
        self._nodrop_before = self._nodrop_before or nodrop
        mark = self._or_chain and nodrop

        def miss(m: Msg) -> bool:
            # A missing source field behaves like a failed parse (docs/sumo-semantics.md).
            if not nodrop and not (keep_parsed and m.parsed):
                return False
            d = m.d
            for k, prev in zip(keys, before):
                if k not in d:
                    d[k] = prev(m)
            return True

        if isinstance(stage, ast.Parse) and stage.pattern == "*":
            key = keys[0]

            def whole(m: Msg) -> bool:  # "*" captures the whole value: no regex needed
                v = src(m)
                if v is None:
                    return miss(m)
                m.d[key] = v if v.__class__ is str else to_text(v)
                if mark:
                    m.parsed = True
                return True

            return whole
        if isinstance(stage, ast.Parse):
            search = wildcard_capture(stage.pattern).search

            def anchors(m: Msg) -> bool:
                v = to_text(src(m))
                hit = None if v is None else search(re2_text(v))
                if hit is None:
                    return miss(m)
                for k, g in zip(keys, hit.groups()):
                    m.d[k] = g
                if mark:
                    m.parsed = True
                return True

            return anchors
        rx = compile_regex(stage.pattern)
        names = list(stage.names)

        def regex(m: Msg) -> bool:
            v = to_text(src(m))
            hit = None if v is None else rx.search(re2_text(v))
            if hit is None:
                return miss(m)
            for k, n in zip(keys, names):
                m.d[k] = hit.group(n)
            if mark:
                m.parsed = True
            return True

        return regex

    def _json_stage(self, stage: ast.Json, state: _State) -> StageFn:
        src = self._reader(stage.source or "_raw", state)
        nodrop = stage.nodrop
        if stage.auto:
            state.dynamic = True

            def auto(m: Msg) -> bool:
                # "Note that messages that do not contain JSON are not dropped." and "The JSON portion
                # does not need to span the entire log message." (parse-json-formatted-logs.md)
                doc = _find_json_object(to_text(src(m)))
                if isinstance(doc, dict):
                    for k, v in doc.items():
                        # "Spaces in field names are automatically reformatted to underscores."
                        m.d[str(k).lower().replace(" ", "_")] = _json_value(v)
                return True

            return auto
        paths = [_json_path(k) for k in stage.keys]
        keys = [self._define(state, n) for n in stage.names]
        keep_parsed = self._or_chain and self._nodrop_before and not nodrop
        self._nodrop_before = self._nodrop_before or nodrop
        mark = self._or_chain and nodrop

        def extract(m: Msg) -> bool:
            doc = _load_json(to_text(src(m)))
            found = True
            for k, path in zip(keys, paths):
                v = _walk(doc, path)
                if v is _MISSING:
                    found = False
                    m.d[k] = None
                else:
                    m.d[k] = _json_value(v)
            if found and mark:
                m.parsed = True
            return found or nodrop or (keep_parsed and m.parsed)

        return extract

    def _compile_list_stage(self, stage: ast.Stage, state: _State) -> ListOp:
        if isinstance(stage, ast.ParseRegex):
            return self._parse_multi(stage, state)
        if isinstance(stage, ast.Timeslice):
            return self._timeslice_buckets(stage, state)
        if isinstance(stage, ast.Limit):
            n = stage.count
            return lambda rows: rows[:n]
        if isinstance(stage, ast.Sort):
            readers = [(self._reader(k.name, state), k.descending) for k in stage.keys]

            def sort(rows: list[Msg]) -> list[Msg]:
                out = list(rows)
                for read, desc in reversed(readers):  # stable sorts, last key first
                    vals = [read(r) for r in out]
                    keyf = _sortable(vals)
                    order = sorted(range(len(out)), key=lambda i: keyf(vals[i]), reverse=desc)
                    if desc:  # keep nulls last in descending order too
                        order = [i for i in order if vals[i] is not None] + [i for i in order if vals[i] is None]
                    out = [out[i] for i in order]
                return out

            return sort
        assert isinstance(stage, ast.Aggregate)
        return self._aggregate(stage, state)

    def _parse_multi(self, stage: ast.ParseRegex, state: _State) -> ListOp:
        """``parse regex ... multi``: "creates copies of each message so that each individual value in a
        field can be counted" (parse-variable-patterns-using-regex.md); no match drops unless nodrop."""
        src = self._reader(stage.source or "_raw", state)
        keys = [self._define(state, n) for n in stage.names]
        names = list(stage.names)
        rx = compile_regex(stage.pattern)
        nodrop = stage.nodrop

        def multi(rows: list[Msg]) -> list[Msg]:
            out: list[Msg] = []
            for m in rows:
                v = to_text(src(m))
                hits = [] if v is None else list(rx.finditer(re2_text(v)))
                if not hits:
                    if nodrop:
                        for k in keys:
                            m.d.setdefault(k, None)
                        out.append(m)
                    continue
                for hit in hits:
                    c = m.copy()
                    for k, n in zip(keys, names):
                        c.d[k] = hit.group(n)
                    out.append(c)
            return out

        return multi

    def _timeslice_buckets(self, stage: ast.Timeslice, state: _State) -> ListOp:
        """``timeslice N buckets``: "Sumo Logic will find a reasonable clock-aligned resolution to return
        approximately N buckets" and "The number of buckets ... is a target or maximum" (timeslice.md).
        Locally: the smallest span of _CLOCK_SPANS whose clock-aligned buckets over the messages reaching
        the stage number at most N (a choice, docs/sumo-semantics.md)."""
        mt = self._reader("_messageTime", state)
        key = self._define(state, stage.alias)
        end_key = self._define(state, "__timeslice_end")
        n = stage.buckets

        def buckets(rows: list[Msg]) -> list[Msg]:
            times = [t for t in (to_number(mt(r)) for r in rows) if t is not None]
            span = next((s for s in _CLOCK_SPANS if len({t // s for t in times}) <= n), _CLOCK_SPANS[-1])
            for r in rows:
                t = to_number(mt(r))
                start = None if t is None else int(t // span * span)
                r.d[key] = start
                r.d[end_key] = None if start is None else start + span
            return rows

        return buckets

    def _aggregate(self, stage: ast.Aggregate, state: _State) -> ListOp:
        by = [(n.lower(), self._reader(n, state)) for n in stage.by]
        aggs = [(a, None if a.arg is None else self._reader(a.arg, state)) for a in stage.aggs]
        new = _State(aggregated=True)
        for n in stage.by:
            self._define(new, n)
        for a, _ in aggs:
            self._define(new, a.alias)
        state.__dict__.update(new.__dict__)

        def aggregate(rows: list[Msg]) -> list[Msg]:
            groups: dict[tuple[Value, ...], list[Msg]] = {}
            for r in rows:
                groups.setdefault(tuple(read(r) for _, read in by), []).append(r)
            out: list[Msg] = []
            for gkey, members in groups.items():
                d: dict[str, Value] = {k: v for (k, _), v in zip(by, gkey)}
                for a, read in aggs:
                    d[a.alias.lower()] = _fold(a.func, [] if read is None else [read(r) for r in members],
                                               len(members), read is None)
                row = Msg(None, members[0].idx, d)
                row.members = tuple(i for r in members for i in (r.members or (r.idx,)))
                out.append(row)
            return out

        return aggregate

    # ---- output ---------------------------------------------------------------------------------
    def _output_columns(self, state: _State) -> list[tuple[str, Reader]] | None:
        """Fixed columns when the query says which (``fields`` keep or an aggregation), else None."""
        if state.keep is not None:
            return [(disp, self._reader(disp, state)) for disp in state.keep.values()]
        if state.aggregated:
            return [(disp, self._reader(disp, state)) for disp in state.defined.values()]
        return None

    def _all_fields(self, m: Msg) -> dict[str, object]:
        """Every non-metadata field of ``m``: header and EventData fields, then computed ones."""
        st = self._final
        row: dict[str, object] = {}
        ev = m.ev
        if ev is not None:
            for key, name in self._header.items():
                if key not in st.hidden:
                    row[name] = self.config.header_value(ev, name)
            for name, text in ev.fields.items():
                low = name.lower()
                if low in self._header or low in st.hidden or not self.config.extracts(name):
                    continue
                row[name] = text
        lower_to_name = {k.lower(): k for k in row}
        for dkey, value in m.d.items():
            if dkey in METADATA:
                continue
            row[lower_to_name.get(dkey) or st.defined.get(dkey, dkey)] = value
        return row

    def prefilter(self) -> Callable[[str, int], bool] | None:
        """``wanted(channel, event_id)``: False exactly when ``run`` would drop such an event before
        reading anything else of it (a scope that depends only on the channel, a leading
        ``where EventID in (...)``); None when the query has no such filter. Readers use it to skip
        decoding what the query never reads (``harness.telemetry.readers.read_events(wanted=)``)."""
        scope, ids = self.scope, self._event_ids
        channel_scope = scope if self._channel_scope else None
        if channel_scope is None and ids is None:
            return None
        verdicts: dict[str, bool] = {}
        epoch = datetime(1970, 1, 1, tzinfo=UTC)

        def wanted(channel: str, event_id: int) -> bool:
            if ids is not None and event_id not in ids:
                return False
            if channel_scope is None:
                return True
            ok = verdicts.get(channel)
            if ok is None:  # the scope reads the channel only: any event of that channel answers
                probe = Event(channel=channel, provider="", event_id=event_id, time=epoch, computer="")
                ok = verdicts[channel] = bool(channel_scope(Msg(probe, -1)))
            return ok

        return wanted

    def run(self, events: Iterable[Event], window: TimeWindow | None = None
            ) -> tuple[list[dict[str, object]], dict[int, tuple[int, ...]], int]:
        """Evaluate; returns (rows, row index -> source event indexes, events evaluated)."""
        scope, fused, ids = self.scope, self.fused, self._event_ids
        by_channel: dict[str, bool] | None = {} if self._channel_scope else None
        kept: list[Msg] = []
        n = 0
        pairs: Iterable[tuple[int, Event]] = enumerate(events)
        if window is not None:
            contains = window.contains
            pairs = ((i, ev) for i, ev in pairs if contains(ev.time))
        for idx, ev in pairs:
            n += 1
            if by_channel is not None:
                ok = by_channel.get(ev.channel)
                if ok is None:
                    assert scope is not None
                    ok = by_channel[ev.channel] = scope(Msg(ev, idx))
                if not ok:
                    continue
            if ids is not None and ev.event_id not in ids:
                continue
            m = Msg(ev, idx)
            if by_channel is None and scope is not None and not scope(m):
                continue
            if fused is None or fused(m):
                kept.append(m)
        for op in self.tail:
            kept = op(kept)
        rows: list[dict[str, object]] = []
        sources: dict[int, tuple[int, ...]] = {}
        for i, m in enumerate(kept):
            if self.columns is not None:
                rows.append({name: read(m) for name, read in self.columns})
            else:
                rows.append(self._all_fields(m))
            sources[i] = m.members if m.members is not None else (m.idx,)
        return rows, sources, n


_MISSING = object()
_CLOCK_SPANS = tuple(x * 1000 for x in (1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 14400,
                                       21600, 43200, 86400, 604800))
_PARSES = (ast.Parse, ast.ParseRegex, ast.Json)


def _nodrop_or_chain(stages: list[ast.Stage]) -> bool:
    """Does a parse without nodrop follow a parse with nodrop (the documented OR idiom)?"""
    seen_nodrop = False
    for st in stages:
        if isinstance(st, _PARSES) and not (isinstance(st, ast.Json) and st.auto):
            if not st.nodrop and seen_nodrop:
                return True
            seen_nodrop = seen_nodrop or st.nodrop
    return False


def _find_json_object(text: str | None) -> Any:
    """The JSON object in ``text``: the whole text, else the last ``{...}`` blob that parses (json auto
    looks for JSON "beginning at the end of the message"); at most 64 candidate braces are tried."""
    doc = _load_json(text)
    if doc is not _MISSING or text is None:
        return doc
    decoder = json.JSONDecoder()
    found: Any = _MISSING
    i, tries = text.find("{"), 0
    while i >= 0 and tries < 64:
        tries += 1
        try:
            obj, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            found = obj
        i = text.find("{", end)
    return found
_CHANNEL_METADATA = frozenset({"_sourcecategory", "_sourcename", "_collector", "_source"})


def _channel_only(expr: ast.ScopeExpr) -> bool:
    """True when the scope's outcome depends on nothing but the event's channel."""
    stack: list[ast.ScopeExpr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ScopeBool | ast.ScopeNot):
            stack.extend(children(node))
        elif not (isinstance(node, ast.ScopeMeta) and node.name.lower() in _CHANNEL_METADATA):
            return False
    return True


def _event_id_set(expr: ast.Expr) -> frozenset[int] | None:
    """``EventID in ("1", "4688")`` / ``EventID = "1"`` as a set of ints, when that is exact.

    EventID is ``str(event_id)``, so string equality with a canonical decimal literal is the same as
    integer membership; anything else (other fields, numbers, odd literals) returns None.
    """
    if isinstance(expr, ast.InList):
        subject, values = expr.subject, expr.values
    elif isinstance(expr, ast.Binary) and expr.op == "=":
        subject, values = expr.left, (expr.right,)
    else:
        return None
    if not (isinstance(subject, ast.FieldRef) and subject.key == "eventid"):
        return None
    ids: set[int] = set()
    for v in values:
        if not (isinstance(v, ast.Lit) and isinstance(v.value, str) and v.value.isascii() and v.value.isdigit()
                and str(int(v.value)) == v.value):
            return None
        ids.add(int(v.value))
    return frozenset(ids)


def _computed_fields(e: ast.Expr, st: _State) -> list[str] | None:
    """The keys of ``a + b + ...`` when every operand is a field an earlier stage computed."""
    if isinstance(e, ast.FieldRef):
        return [e.key] if e.key in st.defined else None
    if isinstance(e, ast.Binary) and e.op == "+":
        left, right = _computed_fields(e.left, st), _computed_fields(e.right, st)
        return None if left is None or right is None else left + right
    return None


def _filter_rows(fn: StageFn) -> ListOp:
    return lambda rows: [m for m in rows if fn(m)]


def _load_json(text: str | None) -> Any:
    if text is None:
        return _MISSING
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING


def _json_path(key: str) -> list[str | int]:
    """``"a.b"`` -> ["a", "b"]; ``"a[0].b"`` -> ["a", 0, "b"]; ``"['a.b'].c"`` -> ["a.b", "c"];
    ``"a[*].b"`` -> ["a", -1, "b"] (-1: every element). Bracket notation is how "property names" with
    spaces, '@' or '.' are written (parse-json-formatted-logs.md, "Special characters")."""
    out: list[str | int] = []
    i, n = 0, len(key)
    part: list[str] = []

    def flush() -> None:
        if part:
            out.append("".join(part))
            part.clear()

    while i < n:
        ch = key[i]
        if ch == ".":
            flush()
            i += 1
        elif ch == "[" and key.startswith(("['", '["'), i):
            flush()
            quote = key[i + 1]
            end = key.find(quote + "]", i + 2)
            if end < 0:
                raise UnsupportedRuleError(f"json key {key!r}: unterminated [{quote}...{quote}]")
            out.append(key[i + 2:end])
            i = end + 2
        elif ch == "[":
            flush()
            end = key.find("]", i)
            inner = key[i + 1:end] if end > 0 else ""
            if inner == "*":
                out.append(-1)
            elif inner.isascii() and inner.isdigit():
                out.append(int(inner))
            else:
                raise UnsupportedRuleError(f"json key {key!r}: only [index], [*] and ['name'] selectors are supported")
            i = end + 1
        else:
            part.append(ch)
            i += 1
    flush()
    return out


def _walk(doc: Any, path: list[str | int]) -> Any:
    cur = doc
    for pos, p in enumerate(path):
        if isinstance(p, int) and p < 0:  # [*]: the list of every element's value further down the path
            if not isinstance(cur, list):
                return _MISSING
            vals = [_walk(x, path[pos + 1:]) for x in cur]
            return [v for v in vals if v is not _MISSING]
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return _MISSING
            cur = cur[p]
        else:
            if not isinstance(cur, dict) or p not in cur:  # explicit keys are case-sensitive
                return _MISSING
            cur = cur[p]
    return cur


def _json_value(v: Any) -> Value:
    """Sumo fields are text: nested objects/arrays keep their JSON text, scalars their string form."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return to_text(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _fold(func: str, values: list[Value], count: int, bare: bool) -> Value:
    if func == "count":
        return count if bare else sum(1 for v in values if v is not None)
    present = [v for v in values if v is not None]
    if func == "count_distinct":
        return len({to_text(v) for v in present})
    nums = [n for n in (to_number(v) for v in present) if n is not None]
    if not nums:
        return None
    if func == "min":
        return min(nums)
    if func == "max":
        return max(nums)
    if func == "sum":
        return sum(nums)
    return sum(nums) / len(nums)
