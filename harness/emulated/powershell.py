"""powershell.exe of the emulated host: a PowerShell 5.1 language subset with real side effects.

Contract: ``run_powershell(ctx, argv, profile)`` takes the command of ``powershell.exe [switches]
[-Command] <text...>`` (``-EncodedCommand`` too), logs it as a 4104 script block (and each nested
script block the first time it runs), interprets it and returns powershell.exe's exit code: ``exit N``
gives N, otherwise 1 when the last statement failed and 0 when it succeeded.

The subset: statements separated by ``;`` / newlines; pipelines; ``$var`` / ``$env:X`` / ``$_``;
``"..."`` interpolation (``$var``, ``$env:X``, ``$(...)``, backtick escapes) and ``'...'``; numbers,
ranges ``a..b``, arrays ``a,b``; ``-split -join -replace -eq -ne -lt -le -gt -ge -like -notlike -match
-notmatch -contains -in -and -or -not !``; ``[int]``/``[string]``/``[bool]`` casts; ``if/elseif/else``,
``foreach ($x in ...)``, ``for``, ``while``, ``$i++``, ``try/catch/finally``, ``throw``, ``exit``,
``break``/``continue``;
``& {block}``, ``& "path" args`` and bare program names (PowerShell builds the child command line:
full path quoted, arguments with spaces quoted); cmdlets Write-Host, Write-Output, Write-Warning,
Write-Error, ForEach-Object (``%``), Where-Object (``?``), Select-Object -First, Out-Null, Out-String,
Test-NetConnection (``tnc``), Out-File, Set-Content, Add-Content, Get-Content, Remove-Item, Test-Path,
Start-Sleep, New-Object (``System.Net.Sockets.TcpClient`` with Connect / ConnectAsync().Wait /
BeginConnect().AsyncWaitHandle.WaitOne / Close). Other Verb-Noun cmdlets print the "not modelled"
note; unknown names fail with PowerShell's CommandNotFoundException text.
"""

from __future__ import annotations

import base64
import fnmatch
import ntpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from harness.emulated.filesystem import FsError, normalize
from harness.emulated.launch import ConsoleWriter, DotNetError, DotNetObject, ProcessStartInfo, start_process
from harness.emulated.ps_stock import ALIASES, stock_gap
from harness.emulated.stock import APPROVED_VERBS, load_stock
from harness.emulated.tools import (
    BufferSink,
    Ctx,
    ProgramProfile,
    Terminated,
    not_modelled_note,
)

# ============================================================================================ errors


class PSError(Exception):
    """A PowerShell error record. Statement-terminating when raised (try/catch catches it)."""

    def __init__(
        self,
        message: str,
        *,
        category: str = "NotSpecified",
        target: str = "",
        exception: str = "RuntimeException",
        fqid: str = "RuntimeException",
        pos: int | None = None,
        prefix: str = "",
        info: str | None = None,
    ) -> None:
        super().__init__(message)
        self.info = info  # "(target:Type) [Activity]" when it is not the generic "(target:String) []"
        self.message = message
        self.category = category
        self.target = target
        self.exception = exception
        self.fqid = fqid
        self.pos = pos
        self.prefix = prefix


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class PSSyntaxError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


# =============================================================================================== AST


@dataclass(slots=True)
class Node:
    pos: int


@dataclass(slots=True)
class Const(Node):
    value: Any


@dataclass(slots=True)
class Expandable(Node):
    parts: list[str | Node]


@dataclass(slots=True)
class Var(Node):
    name: str  # "env:TEMP", "_", "port"


@dataclass(slots=True)
class ArrayLit(Node):
    items: list[Node]


@dataclass(slots=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(slots=True)
class Cast(Node):
    type_name: str
    operand: Node


@dataclass(slots=True)
class TypeLit(Node):
    type_name: str


@dataclass(slots=True)
class Member(Node):
    obj: Node
    name: str
    static: bool = False


@dataclass(slots=True)
class Invoke(Node):
    obj: Node
    name: str
    args: list[Node]
    static: bool = False


@dataclass(slots=True)
class Index(Node):
    obj: Node
    index: Node


@dataclass(slots=True)
class SubExpr(Node):
    body: list[Node]
    array: bool = False


@dataclass(slots=True)
class Paren(Node):
    pipeline: Node


@dataclass(slots=True)
class ScriptBlockLit(Node):
    body: list[Node]
    text: str


@dataclass(slots=True)
class Hashtable(Node):
    items: list[tuple[Node, Node]]


@dataclass(slots=True)
class Param:
    name: str  # without the dash
    raw: str  # as typed, for native commands
    value: Node | None = None  # -Name:value


@dataclass(slots=True)
class Command(Node):
    name: Node | str
    elements: list[Param | Node]
    call_op: bool = False
    end: int = 0


@dataclass(slots=True)
class Pipeline(Node):
    elements: list[Node]


@dataclass(slots=True)
class Assign(Node):
    target: Node
    op: str
    value: Node


@dataclass(slots=True)
class IfStmt(Node):
    clauses: list[tuple[Node, list[Node]]]
    otherwise: list[Node] | None


@dataclass(slots=True)
class Foreach(Node):
    var: str
    iterable: Node
    body: list[Node]


@dataclass(slots=True)
class While(Node):
    cond: Node
    body: list[Node]


@dataclass(slots=True)
class DoLoop(Node):
    body: list[Node]
    cond: Node
    until: bool  # do {} until (cond) runs while cond is false


@dataclass(slots=True)
class ParamDecl(Node):
    params: list[tuple[str, Node | None, bool]]  # (name, default, is_switch)


@dataclass(slots=True)
class FunctionDef(Node):
    name: str
    params: list[tuple[str, Node | None, bool]]
    body: list[Node]


@dataclass(slots=True)
class For(Node):
    init: Node | None
    cond: Node | None
    step: Node | None
    body: list[Node]


@dataclass(slots=True)
class TryStmt(Node):
    body: list[Node]
    catches: list[tuple[list[str], list[Node]]]
    final: list[Node] | None


@dataclass(slots=True)
class Flow(Node):
    kind: str  # exit | return | throw | break | continue
    value: Node | None


# ============================================================================================ parser

_BINOPS = {
    "and", "or", "xor", "eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch",
    "contains", "notcontains", "in", "notin", "split", "join", "replace", "ieq", "ine", "ceq", "cne",
    "is", "isnot", "as", "f", "band", "bor",
}  # fmt: skip
_PREC = [
    {"and", "or", "xor"},
    {"eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch", "contains", "notcontains",
     "in", "notin", "split", "join", "replace", "ieq", "ine", "ceq", "cne", "is", "isnot", "as", "band", "bor"},
    {"+", "-"},
    {"*", "/", "%"},
    {"f"},
]  # fmt: skip
_KEYWORDS = {"if", "foreach", "while", "try", "exit", "return", "throw", "break", "continue", "for"}
# Language keywords the parser does not model: a script using them is not modelled, not a failure.
_UNSUPPORTED_KEYWORDS = {
    "filter", "class", "enum", "workflow", "configuration", "switch", "trap", "data",
    "begin", "process", "end", "dynamicparam", "using",
}  # fmt: skip
_ARG_STOP = set(" \t\r\n;|)}")


class Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    # -- low level
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def error(self, msg: str) -> PSSyntaxError:
        return PSSyntaxError(msg, self.i)

    def skip_space(self, newlines: bool = False) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "`" and self.peek(1) in ("\r", "\n"):
                self.i += 2
            elif c == "#" and (self.i == 0 or self.s[self.i - 1] in " \t\r\n;{}()"):
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            elif self.s.startswith("<#", self.i):
                end = self.s.find("#>", self.i)
                self.i = len(self.s) if end < 0 else end + 2
            else:
                break

    def expect(self, ch: str) -> None:
        self.skip_space(newlines=True)
        if not self.s.startswith(ch, self.i):
            raise self.error(f"Missing '{ch}'.")
        self.i += len(ch)

    def word(self) -> str:
        m = re.match(r"[A-Za-z_][A-Za-z0-9_\-]*", self.s[self.i :])
        return m.group(0) if m else ""

    # -- statements
    def script(self, end: str = "") -> list[Node]:
        stmts: list[Node] = []
        while True:
            self.skip_space(newlines=True)
            while self.peek() == ";":
                self.i += 1
                self.skip_space(newlines=True)
            if self.i >= len(self.s):
                if end:
                    raise self.error(f"Missing closing '{end}' in statement block or type definition.")
                return stmts
            if end and self.peek() == end:
                return stmts
            if not end and self.peek() in ")}":
                raise self.error(f"Unexpected token '{self.peek()}' in expression or statement.")
            stmts.append(self.statement())

    def block(self) -> tuple[list[Node], str]:
        self.expect("{")
        start = self.i
        body = self.script("}")
        text = self.s[start : self.i]
        self.i += 1
        return body, text

    def statement(self) -> Node:
        pos = self.i
        w = self.word().lower()
        nxt = self.s[self.i + len(w) : self.i + len(w) + 1]
        if w in ("function", "param", "do") and (nxt == "" or nxt in " \t\r\n(;{"):
            self.i += len(w)
            return self.function_def(pos) if w == "function" else self.do_loop(pos) if w == "do" else ParamDecl(
                pos, self.param_list()
            )
        if w in _UNSUPPORTED_KEYWORDS and (nxt == "" or nxt in " \t\r\n(;{"):
            raise self.error(f"the '{w}' statement is outside the emulated parser's subset")
        if w in _KEYWORDS and (nxt == "" or nxt in " \t\r\n(;{}"):
            self.i += len(w)
            if w == "if":
                return self.if_stmt(pos)
            if w == "foreach":
                self.expect("(")
                self.skip_space(newlines=True)
                if self.peek() != "$":
                    raise self.error("Missing variable name after foreach.")
                self.i += 1
                var = self.word()
                self.i += len(var)
                self.skip_space(newlines=True)
                if self.word().lower() != "in":
                    raise self.error("Missing 'in' after variable in foreach loop.")
                self.i += 2
                it = self.pipeline()
                self.expect(")")
                body, _ = self.block()
                return Foreach(pos, var, it, body)
            if w == "while":
                self.expect("(")
                cond = self.pipeline()
                self.expect(")")
                body, _ = self.block()
                return While(pos, cond, body)
            if w == "for":
                self.expect("(")
                parts: list[Node | None] = []
                for stop in (";", ";", ")"):
                    self.skip_space(newlines=True)
                    parts.append(None if self.peek() == stop else self.pipeline(statement=True))
                    self.expect(stop)
                body, _ = self.block()
                return For(pos, parts[0], parts[1], parts[2], body)
            if w == "try":
                body, _ = self.block()
                catches: list[tuple[list[str], list[Node]]] = []
                final: list[Node] | None = None
                while True:
                    save = self.i
                    self.skip_space(newlines=True)
                    k = self.word().lower()
                    if k == "catch":
                        self.i += 5
                        types: list[str] = []
                        self.skip_space()
                        while self.peek() == "[":
                            end = self.s.index("]", self.i)
                            types.append(self.s[self.i + 1 : end])
                            self.i = end + 1
                            self.skip_space()
                            if self.peek() == ",":
                                self.i += 1
                                self.skip_space()
                        cbody, _ = self.block()
                        catches.append((types, cbody))
                    elif k == "finally":
                        self.i += 7
                        final, _ = self.block()
                    else:
                        self.i = save
                        break
                if not catches and final is None:
                    raise self.error("The Try statement is missing its Catch or Finally block.")
                return TryStmt(pos, body, catches, final)
            # exit / return / throw / break / continue
            self.skip_space()
            value: Node | None = None
            if self.peek() not in ("", ";", "\r", "\n", "}", ")"):
                value = self.pipeline()
            return Flow(pos, w, value)
        return self.pipeline(statement=True)

    def function_def(self, pos: int) -> FunctionDef:
        """``function Name [(params)] { [param(...)] body }`` (about_Functions)."""
        self.skip_space()
        m = re.match(r"[^\s(){};]+", self.s[self.i :])
        if m is None:
            raise self.error("Missing function name after 'function'.")
        self.i += len(m.group(0))
        self.skip_space(newlines=True)
        params = self.param_list() if self.peek() == "(" else []
        self.skip_space(newlines=True)
        body, _ = self.block()
        if body and isinstance(body[0], ParamDecl):
            params = params or body[0].params
            body = body[1:]
        return FunctionDef(pos, m.group(0), params, body)

    def param_list(self) -> list[tuple[str, Node | None, bool]]:
        """``( [attributes][type]$name [= default], ... )``; attributes are skipped, [switch] noted."""
        self.skip_space(newlines=True)
        self.expect("(")
        params: list[tuple[str, Node | None, bool]] = []
        while True:
            self.skip_space(newlines=True)
            if self.peek() == ")":
                self.i += 1
                return params
            is_switch = False
            while self.peek() == "[":
                depth, j = 0, self.i
                while j < len(self.s):
                    depth += {"[": 1, "]": -1}.get(self.s[j], 0)
                    j += 1
                    if depth == 0:
                        break
                attr = self.s[self.i : j].lower()
                is_switch = is_switch or attr in ("[switch]", "[system.management.automation.switchparameter]")
                self.i = j
                self.skip_space(newlines=True)
            if self.peek() != "$":
                raise self.error("Missing variable name in parameter list.")
            var = self.variable()
            self.skip_space(newlines=True)
            default: Node | None = None
            if self.peek() == "=":
                self.i += 1
                default = self.binary(0, comma=False)
                self.skip_space(newlines=True)
            params.append((var.name, default, is_switch))
            if self.peek() == ",":
                self.i += 1

    def do_loop(self, pos: int) -> DoLoop:
        """``do { } while (cond)`` / ``do { } until (cond)`` (about_Do)."""
        self.skip_space(newlines=True)
        body, _ = self.block()
        self.skip_space(newlines=True)
        w = self.word().lower()
        if w not in ("while", "until"):
            raise self.error("Missing while or until in do loop.")
        self.i += len(w)
        self.skip_space()
        self.expect("(")
        cond = self.pipeline()
        self.expect(")")
        return DoLoop(pos, body, cond, w == "until")

    def if_stmt(self, pos: int) -> IfStmt:
        clauses: list[tuple[Node, list[Node]]] = []
        self.expect("(")
        cond = self.pipeline()
        self.expect(")")
        body, _ = self.block()
        clauses.append((cond, body))
        otherwise: list[Node] | None = None
        while True:
            save = self.i
            self.skip_space(newlines=True)
            k = self.word().lower()
            if k == "elseif":
                self.i += 6
                self.expect("(")
                c = self.pipeline()
                self.expect(")")
                b, _ = self.block()
                clauses.append((c, b))
            elif k == "else":
                self.i += 4
                otherwise, _ = self.block()
                return IfStmt(pos, clauses, otherwise)
            else:
                self.i = save
                return IfStmt(pos, clauses, otherwise)

    def pipeline(self, statement: bool = False) -> Node:
        self.skip_space()
        pos = self.i
        first = self.pipeline_element()
        # assignment
        self.skip_space()
        if statement and isinstance(first, Var) and self.s.startswith(("++", "--"), self.i):
            op = self.s[self.i]
            self.i += 2
            return Assign(pos, first, op + "=", Const(pos, 1))
        m = re.match(r"(\+=|-=|\*=|=)(?!=)", self.s[self.i :])
        if statement and m and isinstance(first, Var | Member | Index):
            self.i += len(m.group(1))
            self.skip_space(newlines=True)
            w = self.word().lower()
            value = self.statement() if w in ("if", "foreach", "while", "try") else self.pipeline()
            return Assign(pos, first, m.group(1), value)
        elements = [first]
        while True:
            self.skip_space()
            if self.peek() == "|" and self.peek(1) != "|":
                self.i += 1
                self.skip_space(newlines=True)
                elements.append(self.command(force_command=True))
            else:
                break
        return elements[0] if len(elements) == 1 and not isinstance(elements[0], Command) else Pipeline(pos, elements)

    def pipeline_element(self) -> Node:
        c = self.peek()
        if c == "&" or (c == "." and self.peek(1) in " \t\"'{$"):
            return self.command()
        if c in "$\"'(@[0123456789!" or (
            c == "-" and (self.peek(1).isdigit() or self.word_after_dash() in ("not", "join", "split"))
        ):
            return self.expression()
        if c == "{":
            return self.expression()
        return self.command()

    def word_after_dash(self) -> str:
        m = re.match(r"-([A-Za-z]+)", self.s[self.i :])
        return m.group(1).lower() if m else ""

    # -- commands
    def command(self, force_command: bool = False) -> Node:
        self.skip_space()
        pos = self.i
        call_op = False
        name: Node | str
        if self.peek() in "&." and self.peek(1) in " \t\"'{$(":
            call_op = True
            self.i += 1
            self.skip_space()
            name = self.primary() if self.peek() == "{" else self.argument()
        elif force_command and self.peek() in "$\"'(@[0123456789":
            return self.expression()
        else:
            m = re.match(r"[^\s;|(){}\"'`,]+", self.s[self.i :])
            if not m:
                raise self.error(f"Unexpected token '{self.peek()}' in expression or statement.")
            name = m.group(0)
            self.i += len(name)
        elements: list[Param | Node] = []
        while True:
            self.skip_space()
            c = self.peek()
            if c == "" or c in _ARG_STOP:
                break
            if c == "-" and re.match(r"--?[A-Za-z]", self.s[self.i :]):
                m = re.match(r"(--?[A-Za-z][A-Za-z0-9_\-]*)(:?)", self.s[self.i :])
                assert m
                raw = m.group(1)
                self.i += len(m.group(0))
                value: Node | None = None
                if m.group(2):
                    value = self.argument()
                    raw += ":"
                elements.append(Param(raw.lstrip("-"), raw, value))
                continue
            elements.append(self.argument_list())
        return Command(pos, name, elements, call_op, end=self.i)

    def argument_list(self) -> Node:
        pos = self.i
        first = self.argument()
        if self.peek() != ",":
            return first
        items = [first]
        while self.peek() == ",":
            self.i += 1
            self.skip_space(newlines=True)
            items.append(self.argument())
        return ArrayLit(pos, items)

    def argument(self) -> Node:
        """One command-mode argument: adjacent pieces (bareword, strings, $vars) concatenate."""
        pos = self.i
        pieces: list[Node] = []
        while self.i < len(self.s):
            c = self.peek()
            if c in _ARG_STOP or c == ",":
                break
            if c == "$" and not re.match(r"[A-Za-z_{?$^(:]", self.peek(1) or " "):
                # A "$" that starts no variable is a literal character (e.g. \\host\C$).
                pieces.append(Const(self.i, "$"))
                self.i += 1
            elif c == "'" or c == '"' or c == "$" or c == "(" or (c == "@" and self.peek(1) in "({"):
                pieces.append(self.primary_postfix())
            elif c == "{":
                pieces.append(self.primary())
            else:
                start = self.i
                buf: list[str] = []
                while self.i < len(self.s) and self.s[self.i] not in _ARG_STOP and self.s[self.i] not in ",'\"$(":
                    if self.s[self.i] == "`" and self.i + 1 < len(self.s):
                        self.i += 1
                    buf.append(self.s[self.i])
                    self.i += 1
                text = "".join(buf)
                if re.fullmatch(r"-?\d+", text) and not pieces and self.peek() in _ARG_STOP | {",", ""}:
                    pieces.append(Const(start, int(text)))
                else:
                    pieces.append(Const(start, text))
        if not pieces:
            raise self.error("Missing argument.")
        if len(pieces) == 1:
            return pieces[0]
        return Expandable(pos, list(pieces))

    # -- expressions
    def expression(self) -> Node:
        return self.binary(0)

    def binary(self, level: int, *, comma: bool = True) -> Node:
        """Precedence climbing over ``_PREC``; below the last level the comma operator (array
        literal) when ``comma``, else a range (method arguments, where ``,`` separates them)."""
        if level >= len(_PREC):
            return self.comma() if comma else self.range_()
        left = self.binary(level + 1, comma=comma)
        while True:
            save = self.i
            self.skip_space()
            op = self.operator()
            if op is None or op not in _PREC[level]:
                self.i = save
                return left
            self.skip_space(newlines=True)
            right = self.binary(level + 1, comma=comma)
            left = BinOp(save, op, left, right)

    def operator(self) -> str | None:
        c = self.peek()
        if c == "-":
            m = re.match(r"-([A-Za-z]+)", self.s[self.i :])
            if m and m.group(1).lower() in _BINOPS:
                self.i += len(m.group(0))
                return (
                    m.group(1).lower().removeprefix("i") if m.group(1).lower() in ("ieq", "ine") else m.group(1).lower()
                )
            if self.peek(1) in " \t" or self.peek(1).isdigit() or self.peek(1) in "$(":
                self.i += 1
                return "-"
            return None
        if c in "+*/%" and self.peek(1) != "=" and not (c == "+" and self.peek(1) == "+"):
            self.i += 1
            return c
        return None

    def comma(self) -> Node:
        pos = self.i
        first = self.range_()
        save = self.i
        self.skip_space()
        if self.peek() != ",":
            self.i = save
            return first
        items = [first]
        while self.peek() == ",":
            self.i += 1
            self.skip_space(newlines=True)
            items.append(self.range_())
            save = self.i
            self.skip_space()
        self.i = save
        return ArrayLit(pos, items)

    def range_(self) -> Node:
        left = self.unary()
        if self.s.startswith("..", self.i):
            pos = self.i
            self.i += 2
            right = self.unary()
            return BinOp(pos, "..", left, right)
        return left

    def unary(self) -> Node:
        self.skip_space()
        pos = self.i
        if self.peek() == "!":
            self.i += 1
            return Unary(pos, "not", self.unary())
        if self.word_after_dash() == "not":
            self.i += 4
            self.skip_space()
            return Unary(pos, "not", self.unary())
        if self.word_after_dash() in ("join", "split"):  # unary -join / -split (about_Join, about_Split)
            op = self.word_after_dash()
            self.i += len(op) + 1
            self.skip_space()
            return Unary(pos, op, self.unary())
        if self.peek() == "-" and self.peek(1).isdigit():
            self.i += 1
            return Unary(pos, "neg", self.unary())
        if self.peek() == "[":
            # The type name may itself hold brackets: [Char[]], [Collections.Generic.List[string]].
            depth, end = 0, -1
            for j in range(self.i, len(self.s)):
                depth += {"[": 1, "]": -1}.get(self.s[j], 0)
                if depth == 0:
                    end = j
                    break
            if end < 0:
                raise self.error("Missing ']' after type name.")
            tname = self.s[self.i + 1 : end].strip()
            self.i = end + 1
            if self.s.startswith("::", self.i):
                self.i -= 0
                return self.postfix(TypeLit(pos, tname))
            if self.peek() in "$([\"'0123456789-" and self.peek() != "":
                return Cast(pos, tname, self.unary())
            return self.postfix(TypeLit(pos, tname))
        return self.primary_postfix()

    def primary_postfix(self) -> Node:
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if (self.peek() == "." and re.match(r"\.[A-Za-z_]", self.s[self.i :])) or self.s.startswith("::", self.i):
                static = self.s.startswith("::", self.i)
                pos = self.i
                self.i += 2 if static else 1
                name = self.word()
                self.i += len(name)
                if self.peek() == "(":
                    self.i += 1
                    args: list[Node] = []
                    self.skip_space(newlines=True)
                    while self.peek() != ")":
                        args.append(self.method_arg())
                        self.skip_space(newlines=True)
                        if self.peek() == ",":
                            self.i += 1
                            self.skip_space(newlines=True)
                        elif self.peek() != ")":
                            raise self.error("Missing ')' in method call.")
                    self.i += 1
                    node = Invoke(pos, node, name, args, static)
                else:
                    node = Member(pos, node, name, static)
            elif self.peek() == "[" and not isinstance(node, Const):
                pos = self.i
                self.i += 1
                idx = self.expression()
                self.expect("]")
                node = Index(pos, node, idx)
            else:
                return node

    def method_arg(self) -> Node:
        # Method arguments are expressions without the comma operator.
        return self.binary(0, comma=False)

    def primary(self) -> Node:
        self.skip_space()
        pos = self.i
        c = self.peek()
        if c == "'":
            return Const(pos, self.single_quoted())
        if c == '"':
            return self.double_quoted()
        if c == "$":
            if self.peek(1) == "(":
                self.i += 2
                body = self.script(")")
                self.i += 1
                return SubExpr(pos, body)
            return self.variable()
        if c == "@" and self.peek(1) in ("'", '"') and self.s[self.i + 2 : self.i + 4].lstrip(" \t")[:1] in "\r\n":
            return self.here_string()
        if c == "@" and self.peek(1) == "(":
            self.i += 2
            body = self.script(")")
            self.i += 1
            return SubExpr(pos, body, array=True)
        if c == "@" and self.peek(1) == "{":
            self.i += 2
            items: list[tuple[Node, Node]] = []
            while True:
                self.skip_space(newlines=True)
                while self.peek() == ";":
                    self.i += 1
                    self.skip_space(newlines=True)
                if self.peek() == "}":
                    self.i += 1
                    return Hashtable(pos, items)
                key: Node
                if self.peek() in "'\"":
                    key = self.primary()
                else:
                    w = self.word()
                    self.i += len(w)
                    key = Const(pos, w)
                self.expect("=")
                self.skip_space(newlines=True)
                items.append((key, self.statement()))
        if c == "(":
            self.i += 1
            self.skip_space(newlines=True)
            inner = self.pipeline(statement=True)
            self.expect(")")
            return Paren(pos, inner)
        if c == "{":
            body, text = self.block()
            return ScriptBlockLit(pos, body, text)
        m = re.match(r"0x[0-9a-fA-F]+|\d+(\.\d+)?([kKmMgG][bB])?", self.s[self.i :])
        if (m and not self.s.startswith("..", self.i + len(m.group(0)) - 1)) or (m and "." not in m.group(0)):
            assert m
            t = m.group(0)
            self.i += len(t)
            if t.lower().startswith("0x"):
                return Const(pos, int(t, 16))
            mult = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}.get(t[-2:].lower(), 1)
            if mult != 1:
                t = t[:-2]
            return Const(
                pos, (float(t) if "." in t else int(t)) * mult if mult != 1 else (float(t) if "." in t else int(t))
            )
        w = self.word()
        if w:
            # a bareword in expression mode: a command (e.g. inside parentheses) handled by callers
            return self.command()
        raise self.error(f"Unexpected token '{c}' in expression or statement.")

    def variable(self) -> Var:
        pos = self.i
        self.i += 1
        if self.peek() == "{":
            end = self.s.index("}", self.i)
            name = self.s[self.i + 1 : end]
            self.i = end + 1
            return Var(pos, name)
        m = re.match(
            r"(?:(env|global|script|local|private|variable):)?([A-Za-z_][A-Za-z0-9_]*|_|\?|\$|\^)",
            self.s[self.i :],
            re.IGNORECASE,
        )
        if not m:
            raise self.error("Invalid variable reference.")
        self.i += len(m.group(0))
        return Var(pos, m.group(0))

    def here_string(self) -> Node:
        """``@'...'@`` (literal) or ``@"..."@`` (expandable): from the line after the opening to the
        line before a closing quote + ``@`` at the start of a line (about_Quoting_Rules)."""
        pos = self.i
        quote = self.s[self.i + 1]
        start = self.s.find("\n", self.i) + 1
        m = re.compile(r"\r?\n" + re.escape(quote) + "@").search(self.s, start - 1)
        if m is None:
            self.i = len(self.s)
            raise self.error(f"The string is missing the terminator: {quote}@.")
        content = self.s[start : m.start()] if m.start() >= start else ""
        self.i = m.end()
        if quote == "'":
            return Const(pos, content)
        inner = Parser('"' + content.replace('"', '""') + '"')
        node = inner.double_quoted()
        node.pos = pos
        return node

    def single_quoted(self) -> str:
        self.i += 1
        buf: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "'":
                if self.peek(1) == "'":
                    buf.append("'")
                    self.i += 2
                    continue
                self.i += 1
                return "".join(buf)
            buf.append(c)
            self.i += 1
        raise self.error("The string is missing the terminator: '.")

    def double_quoted(self) -> Node:
        pos = self.i
        self.i += 1
        parts: list[str | Node] = []
        buf: list[str] = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b", "e": "\x1b"}
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "`" and self.i + 1 < len(self.s):
                n = self.s[self.i + 1]
                buf.append(escapes.get(n, n))
                self.i += 2
            elif c == '"':
                if self.peek(1) == '"':
                    buf.append('"')
                    self.i += 2
                    continue
                self.i += 1
                if buf:
                    parts.append("".join(buf))
                return Expandable(pos, parts)
            elif c == "$" and (self.peek(1) == "(" or re.match(r"[A-Za-z_{?$^]", self.peek(1))):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                if self.peek(1) == "(":
                    p = self.i
                    self.i += 2
                    body = self.script(")")
                    self.i += 1
                    parts.append(SubExpr(p, body))
                else:
                    parts.append(self.variable())
            else:
                buf.append(c)
                self.i += 1
        raise self.error('The string is missing the terminator: ".')


# ========================================================================================== runtime


@dataclass(slots=True)
class ScriptBlock:
    body: list[Node]
    text: str
    node_id: int

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class PSObject:
    """A property bag with its PowerShell type name (formatted as a list)."""

    type_name: str
    props: dict[str, Any]


class TcpClient:
    """System.Net.Sockets.TcpClient over the host's connection model (Sysmon 3 per attempt)."""

    type_name = "System.Net.Sockets.TcpClient"

    def __init__(self, interp: Interpreter) -> None:
        self.interp = interp
        self.Connected = False
        self.closed = False

    def _resolve(self, host: str) -> str:
        ip = self.interp.resolve(host)
        if ip is None:
            raise _SocketFailure("No such host is known")
        return ip

    def attempt(self, host: str, port: int) -> tuple[bool, str]:
        ip = self._resolve(str(host))
        ok = self.interp.ctx.host.connect(self.interp.ctx.proc, "tcp", ip, int(port))
        self.Connected = ok
        if ok:
            return True, ""
        local = ip.startswith("127.") or ip == self.interp.ctx.host.ipv4
        if local:
            return False, f"No connection could be made because the target machine actively refused it {ip}:{port}"
        return False, (
            "A connection attempt failed because the connected party did not properly respond after a period of "
            f"time, or established connection failed to respond {ip}:{port}"
        )


class _SocketFailure(Exception):
    pass


@dataclass(slots=True)
class ConnectTask:
    ok: bool
    error: str
    remote: bool
    interp: Interpreter

    @property
    def IsCompleted(self) -> bool:
        return not self.remote or self.ok

    def Wait(self, ms: Any = -1) -> bool:
        if self.ok:
            return True
        if self.remote:
            wait = int(ms) if int(ms) >= 0 else 21000
            self.interp.ctx.sleep(wait / 1000)
            return False
        raise PSError(
            'Exception calling "Wait" with "1" argument(s): "One or more errors occurred."',
            exception="MethodInvocationException",
            fqid="AggregateException",
        )


@dataclass(slots=True)
class WaitHandle:
    task: ConnectTask

    def WaitOne(self, ms: Any = -1, exit_context: Any = False) -> bool:
        if self.task.remote and not self.task.ok:
            wait = int(ms) if int(ms) >= 0 else 21000
            self.task.interp.ctx.sleep(wait / 1000)
            return False
        return True


@dataclass(slots=True)
class AsyncResult:
    task: ConnectTask

    @property
    def AsyncWaitHandle(self) -> WaitHandle:
        return WaitHandle(self.task)

    @property
    def IsCompleted(self) -> bool:
        return self.task.IsCompleted


class ExceptionText(str):
    """``$_.Exception`` in a catch block: prints as its message and has ``.Message``."""


class Scope:
    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.vars: dict[str, Any] = {}

    def lookup(self, name: str) -> tuple[bool, Any]:
        s: Scope | None = self
        key = name.lower()
        while s is not None:
            if key in s.vars:
                return True, s.vars[key]
            s = s.parent
        return False, None

    def set(self, name: str, value: Any) -> None:
        key = name.lower()
        s: Scope | None = self
        while s is not None:
            if key in s.vars:
                s.vars[key] = value
                return
            s = s.parent
        self.vars[key] = value


CMDLET_ALIASES = {
    "%": "foreach-object", "foreach": "foreach-object", "?": "where-object", "where": "where-object",
    "tnc": "test-netconnection", "echo": "write-output", "write": "write-output", "sleep": "start-sleep",
    "rm": "remove-item", "del": "remove-item", "ri": "remove-item", "erase": "remove-item", "rmdir": "remove-item",
    "cat": "get-content", "gc": "get-content", "type": "get-content", "select": "select-object",
}  # fmt: skip

NOT_RECOGNIZED_PS = (
    "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. "
    "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
)


def to_str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return " ".join(to_str(x) for x in v)
    if isinstance(v, ScriptBlock):
        return v.text
    if isinstance(v, TcpClient):
        return v.type_name
    if isinstance(v, PSObject):
        return "@{" + "; ".join(f"{k}={to_str(x)}" for k, x in v.props.items()) + "}"
    return str(v)


def truthy(v: Any) -> bool:
    if isinstance(v, list):
        if len(v) == 0:
            return False
        if len(v) == 1:
            return truthy(v[0])
        return True
    if isinstance(v, str):
        return v != ""
    return bool(v)


def to_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return round(v)
    s = to_str(v).strip()
    try:
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        try:
            return round(float(s))
        except ValueError:
            raise PSError(
                f'Cannot convert value "{s}" to type "System.Int32". '
                'Error: "Input string was not in a correct format."',
                category="InvalidArgument",
                exception="RuntimeException",
                fqid="InvalidCastFromStringToInteger",
            ) from None


def enumerate_value(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list):
        return v
    return [v]


class Interpreter:
    def __init__(self, ctx: Ctx, source: str) -> None:
        self.ctx = ctx
        self.source = source
        self.scope = Scope()
        self.scope.vars.update({"true": True, "false": False, "null": None, "?": True, "lastexitcode": 0})
        self.scope.vars["pid"] = ctx.proc.pid
        self.scope.vars["home"] = ctx.proc.account.profile_dir
        self.scope.vars["erroractionpreference"] = "Continue"
        self.last_ok = True
        self._logged_blocks: set[int] = set()
        self.functions: dict[str, FunctionDef] = {}
        self.statics: dict[str, Any] = {}

    def not_modelled(self, what: str) -> None:
        """Record a step outside the model with the host and write the "not modelled" note."""
        self.ctx.err.write(not_modelled_note(self.ctx, what))

    # -- errors
    def position(self, pos: int | None) -> str:
        if pos is None:
            return ""
        line_no = self.source.count("\n", 0, pos) + 1
        line_start = self.source.rfind("\n", 0, pos) + 1
        line_end = self.source.find("\n", pos)
        line = self.source[line_start : line_end if line_end >= 0 else len(self.source)].rstrip("\r")
        col = pos - line_start
        return f"At line:{line_no} char:{col + 1}\n+ {line}\n+ {' ' * col}~\n"

    def report(self, err: PSError) -> None:
        prefix = f"{err.prefix} : " if err.prefix else ""
        text = (
            f"{prefix}{err.message}\n{self.position(err.pos)}"
            f"    + CategoryInfo          : {err.category}: "
            f"{err.info or '(' + err.target + ':' + ('String' if err.target else '') + ') []'}, "
            f"{err.exception}\n    + FullyQualifiedErrorId : {err.fqid}\n \n"
        )
        if not err.target:
            text = text.replace("(:) [], ", "(:) [], ")
        self.ctx.err.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))
        self.scope.vars["?"] = False
        self.last_ok = False

    def unmodelled(self, what: str, message: str, pos: int | None = None) -> PSError:
        """The error to raise for ``what`` outside the emulated PowerShell, recorded with the host.

        A real PowerShell runs it; the emulated one stops the statement (catchable, as an error
        record), and the record makes the test inconclusive rather than failed or passed.
        """
        self.ctx.host.note_not_modelled(self.ctx.proc, what)
        return PSError(message, pos=pos)

    def warning(self, text: str) -> None:
        self.ctx.out.write(f"WARNING: {text}\r\n")

    # -- statements
    def run_script(self, stmts: list[Node]) -> None:
        for st in stmts:
            self.ctx.check()
            try:
                self.last_ok = True
                self.scope.vars["?"] = True
                self.emit(self.statement(st), to_host=True)
            except PSError as e:
                if self.in_try:
                    raise
                self.report(e)

    in_try = False

    def emit(self, values: Iterable[Any], *, to_host: bool) -> None:
        for v in values:
            self.out_default(v)

    def out_default(self, v: Any) -> None:
        if v is None:
            return
        if isinstance(v, list):
            for x in v:
                self.out_default(x)
            return
        if isinstance(v, PSObject):
            self.ctx.out.write(format_list(v))
            return
        render = getattr(v, "render", None)
        if callable(render):  # items with their own default view (FileInfo, RegistryKey ...)
            self.ctx.out.write(render())
            return
        if isinstance(v, TcpClient):
            self.ctx.out.write(
                format_list(
                    PSObject(v.type_name, {"Connected": v.Connected, "Available": 0, "ExclusiveAddressUse": False})
                )
            )
            return
        self.ctx.out.write(to_str(v) + "\r\n")

    def statement(self, st: Node) -> Iterator[Any]:
        if isinstance(st, Assign):
            value = list(self.pipeline_values(st.value))
            val: Any = value[0] if len(value) == 1 else (value if value else None)
            if st.op != "=":
                current = self.eval(st.target)
                val = self.arith({"+=": "+", "-=": "-", "*=": "*"}[st.op], current, val)
            self.assign(st.target, val)
            return iter(())
        if isinstance(st, IfStmt):
            return self._if(st)
        if isinstance(st, Foreach):
            return self._foreach(st)
        if isinstance(st, While):
            return self._while(st)
        if isinstance(st, For):
            return self._for(st)
        if isinstance(st, DoLoop):
            return self._do(st)
        if isinstance(st, FunctionDef):
            self.functions[st.name.lower()] = st
            return iter(())
        if isinstance(st, ParamDecl):  # a script's own param block: no arguments, defaults apply
            for name, default, is_switch in st.params:
                self.scope.set(name, False if is_switch else self.eval(default) if default else None)
            return iter(())
        if isinstance(st, TryStmt):
            return self._try(st)
        if isinstance(st, Flow):
            return self._flow(st)
        return self.pipeline_values(st)

    def _if(self, st: IfStmt) -> Iterator[Any]:
        for cond, body in st.clauses:
            if truthy(self.value_of(cond)):
                yield from self.block_stmts(body)
                return
        if st.otherwise is not None:
            yield from self.block_stmts(st.otherwise)

    def block_stmts(self, body: list[Node]) -> Iterator[Any]:
        for s in body:
            self.ctx.check()
            self.last_ok = True
            self.scope.vars["?"] = True
            try:
                yield from self.statement(s)
            except PSError as e:
                if self.in_try:
                    raise
                self.report(e)

    def _foreach(self, st: Foreach) -> Iterator[Any]:
        for item in enumerate_value(self.value_of(st.iterable)):
            self.ctx.check()
            self.scope.set(st.var, item)
            try:
                yield from self.block_stmts(st.body)
            except _Continue:
                continue
            except _Break:
                break

    def _while(self, st: While) -> Iterator[Any]:
        while truthy(self.value_of(st.cond)):
            self.ctx.check()
            try:
                yield from self.block_stmts(st.body)
            except _Continue:
                continue
            except _Break:
                break

    def _do(self, st: DoLoop) -> Iterator[Any]:
        while True:
            self.ctx.check()
            try:
                yield from self.block_stmts(st.body)
            except _Continue:
                pass
            except _Break:
                break
            if truthy(self.value_of(st.cond)) == st.until:
                break

    def call_function(self, fn: FunctionDef, cmd: Command, input_: Iterator[Any] | None) -> Iterator[Any]:
        """Run a script-defined function: parameters bound by name (prefix) or position, the rest in
        ``$args``; ``return`` ends it (about_Functions, about_Return)."""
        inner = Scope(self.scope)
        bound: dict[str, Any] = {}
        rest: list[Any] = []
        names = [p[0] for p in fn.params]
        switches = {p[0].lower() for p in fn.params if p[2]}
        els = cmd.elements
        i = 0
        while i < len(els):
            el = els[i]
            if isinstance(el, Param):
                match = [n for n in names if n.lower().startswith(el.name.lower())]
                if not match:
                    rest.append(el.raw)
                elif el.value is not None:
                    bound[match[0]] = self.eval(el.value)
                elif match[0].lower() in switches or i + 1 >= len(els) or isinstance(els[i + 1], Param):
                    bound[match[0]] = True
                else:
                    i += 1
                    bound[match[0]] = self.eval(els[i])  # type: ignore[arg-type]
            else:
                rest.append(self.eval(el))
            i += 1
        for n in names:
            if n not in bound and rest and n.lower() not in switches:
                bound[n] = rest.pop(0)
        inner.vars["args"] = rest
        inner.vars["input"] = list(input_) if input_ is not None else []
        saved = self.scope
        self.scope = inner
        try:
            for name, default, is_switch in fn.params:
                fallback = False if is_switch else self.eval(default) if default else None
                inner.vars[name.lower()] = bound.get(name, fallback)
        finally:
            self.scope = saved
        gen = self.block_stmts(fn.body)

        def run() -> Iterator[Any]:
            while True:
                saved = self.scope
                self.scope = inner
                try:
                    item = next(gen)
                except (StopIteration, _Break):
                    return
                finally:
                    self.scope = saved
                yield item

        return run()

    def _for(self, st: For) -> Iterator[Any]:
        if st.init is not None:
            yield from self.statement(st.init)
        while st.cond is None or truthy(self.value_of(st.cond)):
            self.ctx.check()
            try:
                yield from self.block_stmts(st.body)
            except _Continue:
                pass
            except _Break:
                break
            if st.step is not None:
                yield from self.statement(st.step)

    def _try(self, st: TryStmt) -> Iterator[Any]:
        saved = self.in_try
        try:
            self.in_try = True
            try:
                out = list(self.block_stmts(st.body))
            finally:
                self.in_try = saved
            yield from out
        except PSError as e:
            handler = next(
                (body for types, body in st.catches if not types or any(self._catches(t, e) for t in types)), None
            )
            if handler is None:
                raise
            self.scope.set(
                "_", PSObject("System.Management.Automation.ErrorRecord", {"Exception": ExceptionText(e.message)})
            )
            self.scope.set("PSItem", self.scope.lookup("_")[1])
            yield from self.block_stmts(handler)
        finally:
            if st.final is not None:
                yield from self.block_stmts(st.final)

    @staticmethod
    def _catches(type_name: str, e: PSError) -> bool:
        t = type_name.lower().rsplit(".", 1)[-1]
        return t in ("exception", "systemexception") or t == e.exception.lower() or t == e.fqid.lower()

    def _flow(self, st: Flow) -> Iterator[Any]:
        value = self.value_of(st.value) if st.value is not None else None
        if st.kind == "exit":
            raise _Exit(to_int(value) if value is not None else (0 if self.last_ok else 1))
        if st.kind == "throw":
            raise PSError(to_str(value) or "ScriptHalted", exception="RuntimeException", fqid=to_str(value), pos=st.pos)
        if st.kind == "break":
            raise _Break
        if st.kind == "continue":
            raise _Continue
        if value is not None:
            yield value
        raise _Break

    # -- pipelines
    def value_of(self, node: Node) -> Any:
        vals = list(self.pipeline_values(node))
        if isinstance(node, Pipeline | Command):
            return vals[0] if len(vals) == 1 else (vals if vals else None)
        return vals[0] if len(vals) == 1 else vals if vals else None

    def pipeline_values(self, node: Node) -> Iterator[Any]:
        if isinstance(node, Pipeline):
            stream: Iterator[Any] | None = None
            for i, el in enumerate(node.elements):
                if isinstance(el, Command):
                    stream = self.run_command(el, stream)
                else:
                    if i:
                        raise PSError("Expressions are only allowed as the first element of a pipeline.", pos=el.pos)
                    stream = iter(enumerate_value(self.eval(el)))
            return stream or iter(())
        if isinstance(node, Command):
            return self.run_command(node, None)
        if isinstance(node, Assign | IfStmt | Foreach | While | For | TryStmt | Flow | DoLoop | FunctionDef):
            return self.statement(node)
        if isinstance(node, ParamDecl):
            return self.statement(node)
        v = self.eval(node)
        if isinstance(node, Paren | SubExpr) or isinstance(v, list):
            return iter(enumerate_value(v))
        return iter([v])

    # -- expressions
    def eval(self, node: Node) -> Any:
        self.ctx.check()
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Expandable):
            return "".join(p if isinstance(p, str) else to_str(self.eval(p)) for p in node.parts)
        if isinstance(node, Var):
            return self.get_var(node.name)
        if isinstance(node, ArrayLit):
            return [self.eval(x) for x in node.items]
        if isinstance(node, Paren):
            inner = node.pipeline
            if isinstance(inner, Assign):
                list(self.statement(inner))
                return self.eval(inner.target)
            return self.value_of(inner)
        if isinstance(node, SubExpr):
            out: list[Any] = []
            for s in node.body:
                out.extend(self.statement(s))
            if node.array:
                return out
            return out[0] if len(out) == 1 else (out if out else None)
        if isinstance(node, ScriptBlockLit):
            return ScriptBlock(node.body, node.text, id(node))
        if isinstance(node, Hashtable):
            return {to_str(self.eval(k)): self.value_of(v) for k, v in node.items}
        if isinstance(node, Unary):
            v = self.eval(node.operand)
            if node.op == "join":
                return "".join(to_str(x) for x in enumerate_value(v))
            if node.op == "split":
                return [p for x in enumerate_value(v) for p in to_str(x).split()]
            return (not truthy(v)) if node.op == "not" else -to_int(v) if isinstance(v, str) else -v
        if isinstance(node, Cast):
            return self.cast(node.type_name, self.eval(node.operand), node.pos)
        if isinstance(node, TypeLit):
            return ("type", node.type_name)
        if isinstance(node, BinOp):
            return self.binop(node)
        if isinstance(node, Member):
            return self.member(self.eval(node.obj), node.name, node.pos)
        if isinstance(node, Invoke):
            target = self.eval(node.obj)
            args = [self.eval(a) for a in node.args]
            return self.invoke(target, node.name, args, node.pos)
        if isinstance(node, Index):
            obj = self.eval(node.obj)
            idx = self.eval(node.index)
            try:
                if isinstance(obj, list | str):
                    return obj[to_int(idx)]
                if isinstance(obj, dict):
                    return obj.get(to_str(idx))
            except IndexError:
                return None
            return None
        if isinstance(node, Command | Pipeline):
            return self.value_of(node)
        raise self.unmodelled(
            f"expression {type(node).__name__}", "This expression is not modelled by the emulated PowerShell.", node.pos
        )

    def get_var(self, name: str) -> Any:
        low = name.lower()
        if low.startswith("env:"):
            return self.ctx.env.get(name[4:])
        for pfx in ("global:", "script:", "local:", "private:", "variable:"):
            if low.startswith(pfx):
                name = name[len(pfx) :]
        if name.lower() == "psitem":
            name = "_"
        found, v = self.scope.lookup(name)
        return v if found else None

    def assign(self, target: Node, value: Any) -> None:
        if isinstance(target, Var):
            if target.name.lower().startswith("env:"):
                self.ctx.env[target.name[4:]] = to_str(value)
            else:
                name = target.name.split(":", 1)[1] if ":" in target.name else target.name
                self.scope.set(name, value)
            return
        if isinstance(target, Index):
            obj = self.eval(target.obj)
            if isinstance(obj, list):
                obj[to_int(self.eval(target.index))] = value
                return
            if isinstance(obj, dict):
                obj[to_str(self.eval(target.index))] = value
                return
        if isinstance(target, Member) and target.static and isinstance(target.obj, TypeLit):
            if set_static_member(self, target.obj.type_name, target.name, value):
                return
            raise self.unmodelled(
                f"[{target.obj.type_name}]::{target.name} =",
                f"Static member [{target.obj.type_name}]::{target.name} is not modelled by the emulated PowerShell.",
                target.pos,
            )
        if isinstance(target, Member):
            obj = self.eval(target.obj)
            ps_set = getattr(obj, "ps_set", None)
            if callable(ps_set) and ps_set(self, target.name, value):
                return
            if isinstance(obj, PSObject):
                obj.props[target.name] = value
                return
            if isinstance(obj, DotNetObject) and obj.set(target.name, value):
                return
        raise PSError("The assignment expression is not valid.", pos=target.pos)

    def cast(self, type_name: str, v: Any, pos: int) -> Any:
        t = type_name.lower().removeprefix("system.")
        if t in ("int", "int32", "int64", "long"):
            try:
                return to_int(v)
            except PSError as e:
                e.pos = pos
                raise
        if t == "string":
            return to_str(v)
        if t in ("bool", "boolean"):
            return truthy(v)
        if t in ("double", "float"):
            return float(to_str(v))
        if t in ("char", "char[]", "string[]", "int[]", "int32[]", "byte[]"):
            elem = t.removesuffix("[]")
            items: list[Any] = list(v) if isinstance(v, str) and elem == "char" and t.endswith("[]") else (
                enumerate_value(v)
            )

            def one(x: Any) -> Any:
                if elem == "char":
                    return chr(to_int(x)) if isinstance(x, int) and not isinstance(x, bool) else to_str(x)[:1]
                if elem == "string":
                    return to_str(x)
                return to_int(x) & 0xFF if elem == "byte" else to_int(x)

            out = [one(x) for x in items]
            return out if t.endswith("[]") else (out[0] if out else None)
        if t in ("array", "object[]"):
            return enumerate_value(v)
        if t == "void":
            return None
        return v

    def arith(self, op: str, a: Any, b: Any) -> Any:
        if op == "+":
            if isinstance(a, list):
                return a + enumerate_value(b)
            if isinstance(a, str):
                return a + to_str(b)
            if isinstance(a, dict) and isinstance(b, dict):
                return {**a, **b}
            return (a or 0) + (self._num(b))
        x, y = self._num(a), self._num(b)
        if op == "-":
            return x - y
        if op == "*":
            return to_str(a) * to_int(b) if isinstance(a, str) else x * y
        if op == "/":
            if y == 0:
                raise PSError("Attempted to divide by zero.", exception="RuntimeException", fqid="RuntimeException")
            r = x / y
            return int(r) if float(r).is_integer() else r
        if op == "%":
            return x % y
        raise self.unmodelled(f"operator {op}", f"The operator '{op}' is not modelled.")

    @staticmethod
    def _num(v: Any) -> int | float:
        if isinstance(v, int | float):
            return v
        if v is None:
            return 0
        s = to_str(v)
        try:
            return int(s)
        except ValueError:
            try:
                return float(s)
            except ValueError:
                raise PSError(
                    f'Cannot convert value "{s}" to type "System.Int32". '
                    'Error: "Input string was not in a correct format."',
                    category="InvalidArgument",
                    fqid="InvalidCastFromStringToInteger",
                ) from None

    def binop(self, node: BinOp) -> Any:
        op = node.op
        if op == "and":
            return truthy(self.eval(node.left)) and truthy(self.eval(node.right))
        if op == "or":
            return truthy(self.eval(node.left)) or truthy(self.eval(node.right))
        a = self.eval(node.left)
        b = self.eval(node.right)
        if op == "..":
            x, y = to_int(a), to_int(b)
            return list(range(x, y + 1)) if x <= y else list(range(x, y - 1, -1))
        if op in ("+", "-", "*", "/", "%"):
            return self.arith(op, a, b)
        if op == "xor":
            return truthy(a) != truthy(b)
        if op == "split":
            out: list[str] = []
            for s in enumerate_value(a):
                out.extend(re.split(to_str(b), to_str(s), flags=re.IGNORECASE))
            return out
        if op == "join":
            return to_str(b).join(to_str(x) for x in enumerate_value(a))
        if op == "replace":
            pat, rep = [*enumerate_value(b), ""][:2]
            return re.sub(to_str(pat), to_str(rep).replace("$", "\\"), to_str(a), flags=re.IGNORECASE)
        if op == "f":
            args = enumerate_value(b)
            return re.sub(r"\{(\d+)\}", lambda m: to_str(args[int(m.group(1))]), to_str(a))
        if op in ("contains", "notcontains"):
            hit = any(self.compare("eq", x, b) for x in enumerate_value(a))
            return hit if op == "contains" else not hit
        if op in ("in", "notin"):
            hit = any(self.compare("eq", x, a) for x in enumerate_value(b))
            return hit if op == "in" else not hit
        if op in ("is", "isnot", "as", "band", "bor"):
            if op == "band":
                return to_int(a) & to_int(b)
            if op == "bor":
                return to_int(a) | to_int(b)
            raise self.unmodelled(
                f"operator -{op}", f"The operator '-{op}' is not modelled by the emulated PowerShell.", node.pos
            )
        if isinstance(a, list):
            return [x for x in a if self.compare(op, x, b)]
        return self.compare(op, a, b)

    def compare(self, op: str, a: Any, b: Any) -> bool:
        cs = op.startswith("c") and op not in ("contains",)
        op = op[1:] if cs else op
        if op in ("like", "notlike"):
            hit = fnmatch.fnmatchcase(to_str(a).lower(), to_str(b).lower())
            return hit if op == "like" else not hit
        if op in ("match", "notmatch"):
            m = re.search(to_str(b), to_str(a), flags=re.IGNORECASE)
            if m and op == "match":
                self.scope.set("Matches", {str(i): g for i, g in enumerate([m.group(0), *m.groups()])})
            return bool(m) if op == "match" else not m
        x: Any = a
        y: Any = b
        if isinstance(a, bool):
            y = truthy(b)
        elif isinstance(a, int | float) and not isinstance(b, int | float):
            try:
                y = self._num(b)
            except PSError:
                return op == "ne"
        elif isinstance(a, str) or a is None:
            x, y = to_str(a), to_str(b)
            if not cs:
                x, y = x.lower(), y.lower()
        return bool(
            {
                "eq": lambda: x == y, "ne": lambda: x != y, "gt": lambda: x > y, "ge": lambda: x >= y,
                "lt": lambda: x < y, "le": lambda: x <= y,
            }[op]()
        )  # fmt: skip

    # -- objects
    def member(self, obj: Any, name: str, pos: int) -> Any:
        low = name.lower()
        if isinstance(obj, tuple) and obj and obj[0] == "type":
            found, value = static_member(self, obj[1], name)
            if found:
                return value
            if obj[1].lower().removeprefix("system.") == "console" and low in ("out", "error"):
                return ConsoleWriter(self.ctx.out.write if low == "out" else self.ctx.err.write)
            raise self.unmodelled(
                f"[{obj[1]}]::{name}",
                f"Static member [{obj[1]}]::{name} is not modelled by the emulated PowerShell.",
                pos,
            )
        if isinstance(obj, DotNetObject):
            try:
                return obj.get(name)
            except DotNetError as e:
                raise self.dotnet_error(name, 0, e, pos) from None
        if isinstance(obj, list):
            if low in ("count", "length"):
                return len(obj)
            return [self.member(x, name, pos) for x in obj]
        if isinstance(obj, ExceptionText) and low == "message":
            return str(obj)
        if isinstance(obj, str) and low == "length":
            return len(obj)
        if isinstance(obj, PSObject):
            for k, v in obj.props.items():
                if k.lower() == low:
                    return v
            return None
        if isinstance(obj, dict):
            if low == "count":
                return len(obj)
            return obj.get(name)
        modelled = isinstance(obj, TcpClient | ConnectTask | AsyncResult | WaitHandle)
        if modelled or callable(getattr(obj, "render", None)):
            for attr in dir(obj):
                if attr.lower() == low and not attr.startswith("_"):
                    v = getattr(obj, attr)
                    if not callable(v):
                        return v
        return None

    def dotnet_error(self, name: str, argc: int, exc: DotNetError, pos: int) -> PSError:
        """A .NET exception as PowerShell reports it (``Exception calling "X" with "n" argument(s)``)."""
        return PSError(
            f'Exception calling "{name}" with "{argc}" argument(s): "{exc}"',
            exception="MethodInvocationException",
            fqid=type(exc).__name__,
            pos=pos,
        )

    def invoke(self, obj: Any, name: str, args: list[Any], pos: int) -> Any:
        low = name.lower()
        if isinstance(obj, DotNetObject):
            try:
                found, value = obj.call(name, args)
            except DotNetError as e:
                raise self.dotnet_error(name, len(args), e, pos) from None
            if found:
                return value
        if (
            isinstance(obj, tuple)
            and obj
            and obj[0] == "type"
            and obj[1].lower().removeprefix("system.") == "diagnostics.process"
            and low == "start"
            and len(args) == 1
            and isinstance(args[0], ProcessStartInfo)
        ):
            try:
                return start_process(self.ctx, args[0], cast(Any, self.ctx.host))
            except DotNetError as e:
                raise self.dotnet_error(name, 1, e, pos) from None
        ps_call = getattr(obj, "ps_call", None)
        if callable(ps_call):  # objects modelled in ps_cmdlets (WebClient ...)
            return ps_call(self, name, args, pos)
        if isinstance(obj, TcpClient):
            return self.tcp_method(obj, low, name, args, pos)
        if isinstance(obj, ConnectTask | WaitHandle):
            fn = getattr(obj, name[:1].upper() + name[1:], None)
            if callable(fn):
                try:
                    return cast(Callable[..., Any], fn)(*args)
                except PSError as e:
                    e.pos = pos
                    raise
        if isinstance(obj, str):
            strs: dict[str, Callable[[], Any]] = {
                "tolower": lambda: obj.lower(), "toupper": lambda: obj.upper(), "trim": lambda: obj.strip(),
                "tostring": lambda: obj, "split": lambda: obj.split(to_str(args[0])) if args else obj.split(),
                "contains": lambda: to_str(args[0]) in obj, "startswith": lambda: obj.startswith(to_str(args[0])),
                "endswith": lambda: obj.endswith(to_str(args[0])),
                "replace": lambda: obj.replace(to_str(args[0]), to_str(args[1])),
            }  # fmt: skip
            if low in strs:
                return strs[low]()
        if low == "tostring":
            return to_str(obj)
        if isinstance(obj, tuple) and obj and obj[0] == "type":
            found, value = static_method(self, obj[1], name, args)
            if found:
                return value
            raise self.unmodelled(
                f"[{obj[1]}]::{name}()",
                f"Static method [{obj[1]}]::{name}() is not modelled by the emulated PowerShell.",
                pos,
            )
        # The emulated object model is a small subset (a [adsisearcher] cast yields a string here): a
        # missing method says the model lacks the object far more often than that the script is wrong.
        self.ctx.host.note_not_modelled(self.ctx.proc, f"[{type_name_of(obj)}].{name}()")
        raise PSError(
            f"Method invocation failed because [{type_name_of(obj)}] does not contain a method named '{name}'.",
            category="InvalidOperation",
            exception="RuntimeException",
            fqid="MethodNotFound",
            pos=pos,
        )

    def tcp_method(self, tcp: TcpClient, low: str, name: str, args: list[Any], pos: int) -> Any:
        def fail(msg: str) -> PSError:
            return PSError(
                f'Exception calling "{name}" with "{len(args)}" argument(s): "{msg}"',
                exception="MethodInvocationException",
                fqid="SocketException",
                pos=pos,
            )

        if low in ("close", "dispose"):
            tcp.closed = True
            tcp.Connected = False
            return None
        if low in ("connect", "connectasync", "beginconnect"):
            if len(args) < 2:
                raise fail("Value cannot be null.")
            try:
                ok, msg = tcp.attempt(to_str(args[0]), to_int(args[1]))
            except _SocketFailure as e:
                raise fail(str(e)) from None
            ip = self.resolve(to_str(args[0])) or ""
            remote = not (ip.startswith("127.") or ip == self.ctx.host.ipv4)
            if low == "connect":
                if not ok:
                    raise fail(msg)
                return None
            task = ConnectTask(ok, msg, remote and not ok, self)
            return task if low == "connectasync" else AsyncResult(task)
        if low == "endconnect":
            ar = args[0] if args else None
            if isinstance(ar, AsyncResult) and not ar.task.ok:
                raise fail(ar.task.error or "A connection attempt failed")
            return None
        if low == "getstream":
            raise self.unmodelled(
                "TcpClient.GetStream()", "TcpClient.GetStream() is not modelled by the emulated PowerShell.", pos
            )
        raise PSError(
            "Method invocation failed because [System.Net.Sockets.TcpClient] does not contain a method named "
            f"'{name}'.",
            category="InvalidOperation",
            fqid="MethodNotFound",
            pos=pos,
        )

    def resolve(self, host: str) -> str | None:
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host):
            return host
        return self.ctx.host.resolve_host(host)

    # -- commands
    def run_command(self, cmd: Command, input_: Iterator[Any] | None) -> Iterator[Any]:
        if isinstance(cmd.name, ScriptBlockLit) or (
            cmd.call_op and not isinstance(cmd.name, str) and isinstance(self.eval(cmd.name), ScriptBlock)
        ):
            block = self.eval(cmd.name)
            assert isinstance(block, ScriptBlock)
            return self.invoke_block(block, new_scope=True)
        name = cmd.name if isinstance(cmd.name, str) else to_str(self.eval(cmd.name))
        fn = self.functions.get(name.lower())
        if fn is not None:  # functions come before cmdlets and programs (about_Command_Precedence)
            return self.call_function(fn, cmd, input_)
        low = CMDLET_ALIASES.get(name.lower(), name.lower())
        if low not in CMDLETS and not cmd.call_op:
            # Built-in aliases win over programs, as in PowerShell's command precedence
            # (about_Command_Precedence: alias, function, cmdlet, external command).
            low = ALIASES.get(low, low).lower()
        impl = CMDLETS.get(low)
        if (impl is not None and not cmd.call_op) or (impl is not None and isinstance(cmd.name, str)):
            assert impl is not None
            bound = self.bind(cmd)
            return impl(self, bound, input_ or iter(()), cmd)
        stock = load_stock()
        if stock.is_cmdlet(low) and not cmd.call_op:
            # A stock cmdlet (or an alias of one) without a model: inconclusive, never a program lookup.
            self.not_modelled(stock.canonical_cmdlet(low))
            return iter(())
        # an external program
        # The call operator still discovers a bare name on PATH; only a path is taken as given.
        program = self.find_program(name, explicit_path=any(c in name for c in "\\/:"))
        if program is None:
            if re.fullmatch(r"[A-Za-z]+-[A-Za-z][A-Za-z0-9]*", name) and name.split("-")[0].lower() in APPROVED_VERBS:
                self.not_modelled(name)
                return iter(())
            aliased = CMDLETS.get(ALIASES.get(name.lower(), "").lower())
            if aliased is not None:  # a stock alias of a modelled cmdlet (programs were looked up first)
                return aliased(self, self.bind(cmd), input_ or iter(()), cmd)
            # A keyword, a stock alias or a mis-parsed fragment: a real host runs it, so no error.
            gap = stock_gap(name, literal=isinstance(cmd.name, str) or cmd.call_op)
            if gap is not None:
                self.not_modelled(gap)
                return iter(())
            raise PSError(
                NOT_RECOGNIZED_PS.format(name=name),
                category="ObjectNotFound",
                target=name,
                exception="CommandNotFoundException",
                fqid="CommandNotFoundException",
                pos=cmd.pos,
                prefix="&" if cmd.call_op else name,
            )
        return self.run_native(program, cmd, input_)

    def find_program(self, name: str, *, explicit_path: bool) -> tuple[ProgramProfile, str] | None:
        ctx = self.ctx
        if explicit_path or any(c in name for c in "\\/:"):
            # PowerShell does not run programs from the current directory without a path.
            prog = ctx.host.resolve_program(name, ctx.cwd, ctx.env)
            if prog is None:
                return None
            return prog, normalize(name, ctx.cwd) if ntpath.splitext(name)[1] else prog.image
        for d in [p for p in (ctx.env.get("PATH") or "").split(";") if p]:
            prog = ctx.host.resolve_program(ntpath.join(d, name), ctx.cwd, ctx.env)
            if prog is not None:
                return prog, ntpath.join(d.rstrip("\\"), ntpath.basename(prog.image))
        return None

    def run_native(
        self, found: tuple[ProgramProfile, str], cmd: Command, input_: Iterator[Any] | None
    ) -> Iterator[Any]:
        program, path = found
        parts = ['"' + path + '"']
        for el in cmd.elements:
            if isinstance(el, Param):
                parts.append(el.raw + (to_str(self.eval(el.value)) if el.value is not None else ""))
                continue
            v = self.eval(el)
            if isinstance(v, list) and isinstance(el, ArrayLit):
                text = ",".join(to_str(x) for x in v)  # an array literal argument keeps its commas
                parts.append(quote_ps_arg(text))
            else:
                for x in enumerate_value(v) if isinstance(v, list) else [v]:
                    parts.append(quote_ps_arg(to_str(x)))
        command_line = " ".join(parts)
        stdin = "".join(to_str(x) + "\r\n" for x in input_) if input_ is not None else ""
        buf = BufferSink()
        code = self.ctx.host.run_program(self.ctx, program, command_line, stdin=stdin, out=buf, err=self.ctx.err)
        self.scope.set("LASTEXITCODE", code)
        ok = code == 0
        self.last_ok = ok
        self.scope.vars["?"] = ok
        text = buf.getvalue()
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return iter(lines)

    def invoke_block(
        self, block: ScriptBlock, *, new_scope: bool, dollar_under: Any = None, set_under: bool = False
    ) -> Iterator[Any]:
        """Run a script block lazily (output streams to the next command as it is produced).

        The block's scope is active only while the block itself runs, not while its consumer does."""
        if block.node_id not in self._logged_blocks:
            self._logged_blocks.add(block.node_id)
            # PowerShell logs a block's AST extent, which for a { } literal includes the braces
            # (CompiledScriptBlock.LogScriptBlockCreation: scriptBlock.Ast.Extent.Text).
            self.ctx.host.log_script_block(self.ctx.proc, "{" + block.text + "}")
        inner = Scope(self.scope) if new_scope else self.scope
        if set_under:
            inner.vars["_"] = dollar_under
        gen = self.block_stmts(block.body)

        def run() -> Iterator[Any]:
            while True:
                saved = self.scope
                self.scope = inner
                try:
                    item = next(gen)
                except StopIteration:
                    return
                finally:
                    self.scope = saved
                yield item

        return run()

    def bind(self, cmd: Command) -> Bound:
        b = Bound()
        els = cmd.elements
        i = 0
        while i < len(els):
            el = els[i]
            if isinstance(el, Param):
                key = el.name.lower()
                if el.value is not None:
                    b.named[key] = self.eval(el.value)
                elif i + 1 < len(els) and not isinstance(els[i + 1], Param) and key not in SWITCHES:
                    b.named[key] = self.eval(els[i + 1])  # type: ignore[arg-type]
                    i += 1
                else:
                    b.named[key] = True
            else:
                b.positional.append(self.eval(el))
            i += 1
        return b


SWITCHES = {
    "force", "recurse", "nonewline", "append", "noclobber", "quiet", "passthru", "detailed", "traceroute",
    "whatif", "confirm", "raw", "asjob", "diagnoseRouting".lower(),
}  # fmt: skip


def quote_ps_arg(text: str) -> str:
    """PowerShell 5.1 native argument passing: quote when the value has whitespace or is empty."""
    if text == "":
        return '""'
    if any(c in text for c in " \t") and not (text.startswith('"') and text.endswith('"')):
        return '"' + text + '"'
    return text


def type_name_of(v: Any) -> str:
    if isinstance(v, bool):
        return "System.Boolean"
    if isinstance(v, int):
        return "System.Int32"
    if isinstance(v, str):
        return "System.String"
    if isinstance(v, list):
        return "System.Object[]"
    if isinstance(v, TcpClient | DotNetObject):
        return v.type_name
    if isinstance(v, PSObject):
        return v.type_name
    return "System.Object"


def format_list(obj: PSObject) -> str:
    width = max((len(k) for k in obj.props), default=0)
    lines = ["", ""] + [f"{k:<{width}} : {to_str(v)}" for k, v in obj.props.items()] + ["", ""]
    return "\r\n".join(lines) + "\r\n"


@dataclass(slots=True)
class Bound:
    named: dict[str, Any] = field(default_factory=dict)
    positional: list[Any] = field(default_factory=list)

    def get(self, *names: str, position: int | None = None, default: Any = None) -> Any:
        for n in names:
            for k, v in self.named.items():
                if n.lower() == k or (len(k) >= 2 and n.lower().startswith(k) and k not in ("p",)):
                    return v
        if position is not None and position < len(self.positional):
            return self.positional[position]
        return default


CmdletImpl = Callable[[Interpreter, Bound, Iterator[Any], Command], Iterator[Any]]


def _write_host(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    sep = to_str(b.get("separator", default=" "))
    text = sep.join(to_str(v) for v in b.positional)
    if "object" in b.named:
        text = to_str(b.named["object"])
    it.ctx.out.write(text + ("" if b.get("nonewline") else "\r\n"))
    return iter(())


def _write_output(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    vals = b.positional or enumerate_value(b.get("inputobject"))
    out: list[Any] = []
    for v in vals:
        out.extend(enumerate_value(v))
    return iter([*out, *inp])


def _write_warning(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    it.warning(" ".join(to_str(v) for v in b.positional) or to_str(b.get("message")))
    return iter(())


def _write_error(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    msg = " ".join(to_str(v) for v in b.positional) or to_str(b.get("message"))
    err = PSError(
        msg, exception="WriteErrorException", fqid="Microsoft.PowerShell.Commands.WriteErrorException", pos=cmd.pos
    )
    err.prefix = ""
    if _error_action(b) in ("stop",):
        raise err
    if _error_action(b) not in ("silentlycontinue", "ignore"):
        it.report(err)
    return iter(())


def _error_action(b: Bound) -> str:
    return to_str(b.get("erroraction", "ea", default="continue")).lower()


def _foreach_object(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    block = b.get("process", position=0)
    if isinstance(block, str):  # % Name -> member access
        for item in inp:
            yield it.member(item, block, cmd.pos)
        return
    if not isinstance(block, ScriptBlock):
        raise PSError("ForEach-Object needs a script block.", pos=cmd.pos)
    for item in inp:
        it.ctx.check()
        saved_found, saved = it.scope.lookup("_")
        it.scope.vars["_"] = item
        try:
            yield from it.invoke_block(block, new_scope=False)
        except _Continue:
            continue
        finally:
            if saved_found:
                it.scope.vars["_"] = saved


def _where_object(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    block = b.get("filterscript", position=0)
    if not isinstance(block, ScriptBlock):
        raise PSError("Where-Object needs a script block in the emulated PowerShell.", pos=cmd.pos)
    for item in inp:
        it.scope.vars["_"] = item
        if truthy(list(it.invoke_block(block, new_scope=False))):
            yield item


def _select_object(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    first = b.get("first")
    items = list(inp)
    if first is not None:
        return iter(items[: to_int(first)])
    last = b.get("last")
    if last is not None:
        return iter(items[-to_int(last) :])
    it.not_modelled("Select-Object " + " ".join(f"-{k}" for k in b.named))
    return iter(items)


def _out_null(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    for _ in inp:
        pass
    return iter(())


def _out_string(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    return iter(["".join(_render(v) for v in inp)])


def _render(v: Any) -> str:
    if isinstance(v, PSObject):
        return format_list(v)
    return to_str(v) + "\r\n"


def _path_arg(it: Interpreter, b: Bound, position: int = 0) -> str | None:
    p = b.get("path", "literalpath", "filepath", position=position)
    if p is None:
        return None
    return normalize(to_str(p[0] if isinstance(p, list) else p), it.ctx.cwd)


def _write_content(it: Interpreter, path: str, text: str, append: bool, cmd: Command, encoding: str) -> None:
    if encoding == "utf16":
        data = text.encode("utf-16-le")
        if not append or not it.ctx.host.fs.exists(path):
            data = b"\xff\xfe" + data
    else:
        data = text.encode("utf-8" if encoding == "utf8" else "cp1252", errors="replace")
    try:
        it.ctx.host.write_file(it.ctx.proc, path, data, append=append)
    except FsError as exc:
        raise PSError(
            f"Could not find a part of the path '{path}'." if "path" in str(exc) else str(exc),
            category="OpenError",
            target=path,
            exception="DirectoryNotFoundException",
            fqid="FileOpenFailure",
            pos=cmd.pos,
            prefix=cmd.name if isinstance(cmd.name, str) else "",
        ) from None


def _out_file(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    path = _path_arg(it, b)
    if path is None:
        raise PSError(
            "Cannot process command because of one or more missing mandatory parameters: FilePath.", pos=cmd.pos
        )
    values = list(inp) + enumerate_value(b.get("inputobject"))
    text = "".join(_render(v) for v in values)
    enc = to_str(b.get("encoding", default="unicode")).lower()
    _write_content(it, path, text, bool(b.get("append")), cmd, "utf8" if enc in ("utf8", "ascii") else "utf16")
    return iter(())


def _set_content(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command, append: bool = False) -> Iterator[Any]:
    path = _path_arg(it, b)
    if path is None:
        raise PSError("Cannot process command because of one or more missing mandatory parameters: Path.", pos=cmd.pos)
    value = b.get("value", position=1)
    values = enumerate_value(value) + list(inp)
    text = "".join(to_str(v) + "\r\n" for v in values)
    _write_content(it, path, text, append, cmd, "ansi")
    return iter(())


def _add_content(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    return _set_content(it, b, inp, cmd, append=True)


def _get_content(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    path = _path_arg(it, b)
    if path is None:
        raise PSError("Cannot process command because of one or more missing mandatory parameters: Path.", pos=cmd.pos)
    try:
        data = it.ctx.host.fs.read(path)
    except FsError:
        raise PSError(
            f"Cannot find path '{path}' because it does not exist.",
            category="ObjectNotFound",
            target=path,
            exception="ItemNotFoundException",
            fqid="PathNotFound,Microsoft.PowerShell.Commands.GetContentCommand",
            pos=cmd.pos,
            prefix="Get-Content",
        ) from None
    text = data[2:].decode("utf-16-le", "replace") if data.startswith(b"\xff\xfe") else data.decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return iter(lines)


def _remove_item(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    raw = b.get("path", "literalpath", position=0)
    fs = it.ctx.host.fs
    for p in enumerate_value(raw):
        path = normalize(to_str(p), it.ctx.cwd)
        removed = False
        if any(c in path for c in "*?"):
            for f in fs.listdir(ntpath.dirname(path)):
                if fs.is_file(f) and fnmatch.fnmatch(ntpath.basename(f).lower(), ntpath.basename(path).lower()):
                    removed = fs.delete(f) or removed
            removed = True
        else:
            removed = fs.delete(path)
        if not removed:
            err = PSError(
                f"Cannot find path '{path}' because it does not exist.",
                category="ObjectNotFound",
                target=path,
                exception="ItemNotFoundException",
                fqid="PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand",
                pos=cmd.pos,
                prefix="Remove-Item",
            )
            action = _error_action(b)
            if action == "stop":
                raise err
            if action not in ("silentlycontinue", "ignore"):
                it.report(err)
            else:
                it.last_ok = False
    return iter(())


def _test_path(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    raw = b.get("path", "literalpath", position=0)
    out = []
    for p in enumerate_value(raw):
        out.append(it.ctx.host.fs.exists(normalize(to_str(p), it.ctx.cwd)))
    return iter(out)


def _start_sleep(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    ms = b.get("milliseconds", "m")
    secs = to_int(ms) / 1000 if ms is not None else float(to_str(b.get("seconds", "s", position=0, default=0)))
    it.ctx.sleep(secs)
    return iter(())


def _new_object(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    tname = to_str(b.get("typename", position=0)).lower().removeprefix("system.")
    args = enumerate_value(b.get("argumentlist", position=1))
    if tname == "net.sockets.tcpclient":
        tcp = TcpClient(it)
        if len(args) >= 2:
            ok, msg = tcp.attempt(to_str(args[0]), to_int(args[1]))
            if not ok:
                raise PSError(
                    f'Exception calling ".ctor" with "2" argument(s): "{msg}"',
                    category="InvalidOperation",
                    exception="MethodInvocationException",
                    fqid="ConstructorInvokedThrowException,Microsoft.PowerShell.Commands.NewObjectCommand",
                    pos=cmd.pos,
                    prefix="New-Object",
                )
        return iter([tcp])
    if tname in ("management.automation.pscredential", "pscredential"):
        from harness.emulated.ps_cmdlets import new_credential

        cred = new_credential(it, args)
        if cred is not None:
            return iter([cred])
    if tname == "net.webclient":
        from harness.emulated.ps_cmdlets import WebClient

        return iter([WebClient()])
    if tname == "diagnostics.processstartinfo":
        return iter([ProcessStartInfo()])
    if tname in ("psobject", "object", "management.automation.psobject"):
        props = b.get("property")
        return iter(
            [PSObject("System.Management.Automation.PSCustomObject", dict(props) if isinstance(props, dict) else {})]
        )
    com = b.get("comobject")
    what = f"-ComObject {to_str(com)}" if com is not None else to_str(b.get("typename", position=0))
    it.not_modelled(f"New-Object {what}")
    return iter(())


def _tnc(it: Interpreter, b: Bound, inp: Iterator[Any], cmd: Command) -> Iterator[Any]:
    target = to_str(b.get("computername", "cn", "remoteaddress", position=0, default="internetbeacon.msedge.net"))
    port_v = b.get("port")
    common = to_str(b.get("commontcpport", default="")).lower()
    if port_v is None and common:
        port_v = {"http": 80, "rdp": 3389, "smb": 445, "winrm": 5985}.get(common)
    level = to_str(b.get("informationlevel", default="")).lower()
    if b.get("traceroute"):
        it.not_modelled("Test-NetConnection -TraceRoute")
    host = it.ctx.host
    ip = it.resolve(target)
    if ip is None:
        it.warning(f"Name resolution of {target} failed")
        return iter(
            [False]
            if level == "quiet"
            else [
                PSObject(
                    "TestNetConnectionResult", {"ComputerName": target, "RemoteAddress": "", "PingSucceeded": False}
                )
            ]
        )
    local = ip.startswith("127.") or ip == host.ipv4
    alias, src = ("Loopback Pseudo-Interface 1", "127.0.0.1") if ip.startswith("127.") else ("Ethernet", host.ipv4)
    props: dict[str, Any] = {"ComputerName": target, "RemoteAddress": ip}
    if port_v is not None:
        port = to_int(port_v)
        ok = host.connect(it.ctx.proc, "tcp", ip, port)
        if not ok:
            it.warning(f"TCP connect to ({ip} : {port}) failed")
            if not local:
                it.warning(f"Ping to {target} failed with status: TimedOut")
        props["RemotePort"] = port
        props["InterfaceAlias"] = alias
        props["SourceAddress"] = src
        if not ok:
            props["PingSucceeded"] = local
            props["PingReplyDetails (RTT)"] = "0 ms"
        props["TcpTestSucceeded"] = ok
        if level == "quiet":
            return iter([ok])
    else:
        props["InterfaceAlias"] = alias
        props["SourceAddress"] = src
        props["PingSucceeded"] = local
        props["PingReplyDetails (RTT)"] = "0 ms"
        if not local:
            it.warning(f"Ping to {target} failed with status: TimedOut")
        if level == "quiet":
            return iter([local])
    if level == "detailed":
        props["NameResolutionResults"] = ip
        props["NetRoute (NextHop)"] = "0.0.0.0" if local else host.gateway  # noqa: S104
    return iter([PSObject("TestNetConnectionResult", props)])


CMDLETS: dict[str, CmdletImpl] = {
    "write-host": _write_host,
    "write-output": _write_output,
    "write-warning": _write_warning,
    "write-error": _write_error,
    "foreach-object": _foreach_object,
    "where-object": _where_object,
    "select-object": _select_object,
    "out-null": _out_null,
    "out-string": _out_string,
    "out-file": _out_file,
    "set-content": _set_content,
    "add-content": _add_content,
    "get-content": _get_content,
    "remove-item": _remove_item,
    "test-path": _test_path,
    "start-sleep": _start_sleep,
    "new-object": _new_object,
    "test-netconnection": _tnc,
}


# =========================================================================================== entry


# The cmdlet models that live in their own module (they use the interpreter's types above).
from harness.emulated.ps_cmdlets import CMDLETS as _MORE_CMDLETS  # noqa: E402
from harness.emulated.ps_cmdlets import set_static_member, static_member, static_method  # noqa: E402

CMDLETS.update(_MORE_CMDLETS)


def command_text(argv: list[str]) -> tuple[str | None, str | None]:
    """(command text, note) from powershell.exe's argv; note names an unmodelled switch."""
    i = 1
    takes_value = {"executionpolicy", "ep", "ex", "windowstyle", "w", "inputformat", "outputformat", "of",
                   "version", "v", "psconsolefile", "configurationname"}  # fmt: skip
    flags = {"noprofile", "nop", "noninteractive", "noni", "nologo", "nol", "sta", "mta", "noexit", "noe"}
    while i < len(argv):
        a = argv[i]
        if not a.startswith(("-", "/")):
            break
        name = a[1:].lower()
        if name in ("command", "c"):
            return " ".join(argv[i + 1 :]), None
        if name in ("encodedcommand", "enc", "e", "ec"):
            if i + 1 >= len(argv):
                return None, None
            try:
                return base64.b64decode(argv[i + 1]).decode("utf-16-le"), None
            except (ValueError, UnicodeDecodeError):
                return None, "-EncodedCommand with invalid data"
        if name in ("file", "f"):
            return None, "powershell.exe -File"
        if name in takes_value:
            i += 2
            continue
        if name in flags:
            i += 1
            continue
        if a == "-":
            return None, "powershell.exe - (stdin)"
        break
    if i >= len(argv):
        return None, None
    return " ".join(argv[i:]), None


def run_powershell(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    """powershell.exe: interpret the command, log its script blocks (4104), return the exit code."""
    text, note = command_text(argv)
    if note:
        ctx.err.write(not_modelled_note(ctx, note))
        return 0
    # Every engine start writes the classic log's 600s and 400; a normal exit writes 403.
    ctx.host.log_engine_state(ctx.proc, started=True)
    try:
        code = _run_text(ctx, text)
    except Terminated:
        raise  # a killed powershell.exe never logs its engine stop
    ctx.host.log_engine_state(ctx.proc, started=False)
    return code


def _run_text(ctx: Ctx, text: str | None) -> int:
    if text is None:
        ctx.out.write("Windows PowerShell\r\nCopyright (C) Microsoft Corporation. All rights reserved.\r\n\r\n")
        return 0
    ctx.host.log_script_block(ctx.proc, text)
    interp = Interpreter(ctx, text)
    try:
        stmts = Parser(text).script()
    except PSSyntaxError as e:
        # The parser covers a subset of PowerShell 5.1: atomics are written for real hosts, so a
        # parse error says the subset lacks something far more often than that the script is wrong.
        ctx.host.note_not_modelled(ctx.proc, f"PowerShell syntax ({e})")
        report = (
            f"{interp.position(e.pos)}{e}\n"
            "    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\n"
            "    + FullyQualifiedErrorId : ParseError\n \n"
        )
        ctx.err.write(report.replace("\n", "\r\n"))
        return 1
    try:
        interp.run_script(stmts)
    except _Exit as e:
        return e.code
    except (_Break, _Continue):
        pass
    except Terminated:
        raise
    return 0 if interp.last_ok else 1
