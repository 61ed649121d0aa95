"""The parsed form of a Sumo Logic query: scope terms, expressions and pipeline stages.

Every node keeps the line and column where it starts so the compiler and lint can point at it.
Field names are kept as written (``name``) and lower-cased (``key``): Sumo field names are
case-insensitive, and the written spelling is used for output column names.
"""

from __future__ import annotations

from dataclasses import dataclass

Value = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int


# ---- scope line ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScopeKeyword:
    """A bare or quoted keyword: searched in ``_raw``, case-insensitive, ``*`` wildcards."""

    pattern: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class ScopeMeta:
    """``field=value``: value matched case-insensitively against the whole field, ``*`` wildcards."""

    name: str
    pattern: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class ScopeNot:
    operand: ScopeExpr
    pos: Pos


@dataclass(frozen=True, slots=True)
class ScopeBool:
    op: str  # "and" | "or"
    operands: tuple[ScopeExpr, ...]
    pos: Pos


ScopeExpr = ScopeKeyword | ScopeMeta | ScopeNot | ScopeBool


# ---- expressions --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Lit:
    value: Value
    pos: Pos


@dataclass(frozen=True, slots=True)
class FieldRef:
    name: str
    pos: Pos

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "!" | "-"
    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % = != < <= > >= and or
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Matches:
    subject: Expr
    pattern: str
    is_regex: bool  # /re2/ (True) or a quoted wildcard pattern (False)
    pos: Pos  # the pattern's position
    pattern_expr: Expr | None = None  # 'x matches <field>': the wildcard pattern is that field's value


@dataclass(frozen=True, slots=True)
class InList:
    subject: Expr
    values: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # lower-cased function name
    args: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Ternary:
    cond: Expr
    then: Expr
    other: Expr
    pos: Pos


Expr = Lit | FieldRef | Unary | Binary | Matches | InList | Call | Ternary


# ---- stages ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Where:
    expr: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Assign:
    """``<expr> as <field>``."""

    expr: Expr
    field: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Parse:
    """``parse [field=F] "anchor*pattern" as a, b [nodrop]``."""

    source: str | None  # None: _raw
    pattern: str
    names: tuple[str, ...]
    nodrop: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class ParseRegex:
    """``parse regex [field=F] "(?<a>...)" [nodrop] [multi]`` (also spelled ``extract``)."""

    source: str | None
    pattern: str
    names: tuple[str, ...]
    nodrop: bool
    pos: Pos
    multi: bool = False  # one message per match


@dataclass(frozen=True, slots=True)
class Json:
    """``json [field=F] "k", "a.b" [as x, y] [nodrop]`` or ``json auto [field=F] [nodrop]``."""

    source: str | None
    keys: tuple[str, ...]  # empty for auto
    names: tuple[str, ...]
    auto: bool
    nodrop: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class Fields:
    names: tuple[str, ...]
    remove: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    descending: bool


@dataclass(frozen=True, slots=True)
class Sort:
    keys: tuple[SortKey, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    pos: Pos


@dataclass(frozen=True, slots=True)
class Agg:
    func: str  # count | count_distinct | min | max | sum | avg
    arg: str | None  # field name (None for bare count)
    alias: str


@dataclass(frozen=True, slots=True)
class Aggregate:
    aggs: tuple[Agg, ...]
    by: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Timeslice:
    span_ms: int  # 0 with ``buckets``: derived from the time range of the events
    alias: str
    pos: Pos
    buckets: int = 0


Stage = Where | Assign | Parse | ParseRegex | Json | Fields | Sort | Limit | Aggregate | Timeslice


@dataclass(frozen=True, slots=True)
class Query:
    scope: ScopeExpr | None
    stages: tuple[Stage, ...]
