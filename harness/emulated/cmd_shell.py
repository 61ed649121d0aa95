"""cmd.exe of the emulated host: ``/c`` command lines with the parsing rules of the real cmd.exe.

Contract: ``run_cmd(ctx, argv, profile)`` runs the command string of ``ctx.proc.command_line`` (after
``/c`` or ``/k``, with cmd's rule for stripping the outer quotes) and returns the errorlevel of the
last command, as ``cmd /c`` does. Supported: ``%VAR%`` expansion (whole line, before parsing; undefined
variables stay literal as on the command line), quotes, ``^`` escapes, ``&``, ``&&``, ``||``, ``|``,
parentheses, redirections ``>``, ``>>``, ``<``, ``2>``, ``2>&1``, ``>nul``; built-ins ``echo``, ``rem``,
``del``/``erase``, ``if [/i] [not] exist|errorlevel|defined|a==b ... else ...``, ``ver``, ``type``,
``set``, ``cd``, ``md``, ``exit``. Other built-ins print the "not modelled" note. External programs
are created as children of this cmd.exe with the command line cmd builds (the name as typed, a space,
then the rest of the segment verbatim: ``netstat  -ano ``), exactly as real recordings show.
"""

from __future__ import annotations

import fnmatch
import ntpath
import re
from dataclasses import dataclass, field

from harness.emulated.filesystem import FsError, normalize
from harness.emulated.tools import (
    NOT_RECOGNIZED_CMD,
    BufferSink,
    Ctx,
    ProgramProfile,
    Sink,
    not_modelled_note,
)

BUILTINS = frozenset(
    [
        "assoc",
        "break",
        "call",
        "cd",
        "chdir",
        "cls",
        "color",
        "copy",
        "date",
        "del",
        "dir",
        "echo",
        "endlocal",
        "erase",
        "exit",
        "for",
        "ftype",
        "goto",
        "if",
        "md",
        "mkdir",
        "mklink",
        "move",
        "path",
        "pause",
        "popd",
        "prompt",
        "pushd",
        "rd",
        "rem",
        "ren",
        "rename",
        "rmdir",
        "set",
        "setlocal",
        "shift",
        "start",
        "time",
        "title",
        "type",
        "ver",
        "verify",
        "vol",
    ]
)
_SPECIAL = set("&<>()@^|")


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


# ------------------------------------------------------------------------------------------- syntax


@dataclass(slots=True)
class Redir:
    fd: int  # 0 stdin, 1 stdout, 2 stderr
    mode: str  # ">" | ">>" | "<" | ">&"
    target: str


@dataclass(slots=True)
class Simple:
    text: str  # the command segment with redirections removed (verbatim spacing)
    redirs: list[Redir] = field(default_factory=list)


@dataclass(slots=True)
class Block:
    body: Node
    redirs: list[Redir] = field(default_factory=list)


@dataclass(slots=True)
class If:
    negate: bool
    kind: str  # exist | errorlevel | defined | compare
    args: tuple[str, ...]
    ignore_case: bool
    then: Node
    otherwise: Node | None


@dataclass(slots=True)
class Binary:
    op: str  # "&" | "&&" | "||" | "|"
    left: Node
    right: Node


@dataclass(slots=True)
class Empty:
    pass


Node = Simple | Block | If | Binary | Empty


class CmdSyntaxError(Exception):
    """cmd refuses the line (message is cmd's text)."""


class Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.depth = 0

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t", ";", ",", "=") and self.peek() != "":
            self.i += 1

    def parse(self) -> Node:
        # A stray ")" at top level ends the line for cmd, like the end of the text.
        return self.seq()

    def seq(self) -> Node:
        node = self.cond()
        while True:
            self.skip_ws()
            c = self.peek()
            if c in ("\r", "\n") or (c == "&" and self.peek(1) != "&"):
                self.i += 1
            else:
                return node
            self.skip_ws()
            if self.peek() in ("", ")") or (self.peek() == ")" and self.depth):
                return node
            node = Binary("&", node, self.cond())

    def cond(self) -> Node:
        node = self.pipe()
        while True:
            self.skip_ws()
            if self.s.startswith("&&", self.i):
                op = "&&"
            elif self.s.startswith("||", self.i):
                op = "||"
            else:
                return node
            self.i += 2
            node = Binary(op, node, self.pipe())

    def pipe(self) -> Node:
        node = self.command()
        while True:
            self.skip_ws()
            if self.peek() == "|" and self.peek(1) != "|":
                self.i += 1
                node = Binary("|", node, self.command())
            else:
                return node

    def word_at(self) -> str:
        m = re.match(r"[^\s&|<>()\"^]+", self.s[self.i :])
        return m.group(0) if m else ""

    def command(self) -> Node:
        self.skip_ws()
        while self.peek() == "@":
            self.i += 1
        c = self.peek()
        if c == "(":
            self.i += 1
            self.depth += 1
            body = self.seq()
            self.skip_ws()
            if self.peek() != ")":
                raise CmdSyntaxError("The syntax of the command is incorrect.")
            self.i += 1
            self.depth -= 1
            return Block(body, self.redirections_only())
        word = self.word_at().lower()
        if word == "if":
            return self.if_cmd()
        if word == "rem" or word.startswith("rem"):
            # REM comments out the rest of the line, operators included.
            end = self.s.find("\n", self.i)
            self.i = len(self.s) if end < 0 else end
            return Empty()
        if c in ("", "&", "|", ")", "\r", "\n"):
            return Empty()
        return self.simple()

    def redirections_only(self) -> list[Redir]:
        out: list[Redir] = []
        while True:
            self.skip_ws()
            r = self.try_redirect()
            if r is None:
                return out
            out.append(r)

    def try_redirect(self) -> Redir | None:
        j = self.i
        fd = 1
        if self.peek() in ("1", "2") and self.peek(1) in (">", "<"):
            fd = int(self.peek())
            j += 1
        if j >= len(self.s) or self.s[j] not in "<>":
            return None
        if self.s[j] == "<":
            mode, fd, j = "<", 0, j + 1
        elif self.s.startswith(">>", j):
            mode, j = ">>", j + 2
        else:
            mode, j = ">", j + 1
        if mode != "<" and self.s.startswith("&", j):
            self.i = j + 1
            return Redir(fd, ">&", self.s[self.i : self.i + 1] and self._take(1))
        self.i = j
        while self.peek() in (" ", "\t"):
            self.i += 1
        target = self.token()
        if not target:
            raise CmdSyntaxError("The syntax of the command is incorrect.")
        return Redir(fd, mode, target)

    def _take(self, n: int) -> str:
        out = self.s[self.i : self.i + n]
        self.i += n
        return out

    def token(self) -> str:
        buf: list[str] = []
        quoted = False
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == '"':
                quoted = not quoted
                buf.append(c)
            elif c == "^" and not quoted and self.i + 1 < len(self.s):
                self.i += 1
                buf.append(self.s[self.i])
            elif not quoted and (c in " \t&|<>\r\n" or (c == ")" and self.depth)):
                break
            else:
                buf.append(c)
            self.i += 1
        return "".join(buf)

    def simple(self) -> Simple:
        buf: list[str] = []
        redirs: list[Redir] = []
        quoted = False
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == '"':
                quoted = not quoted
                buf.append(c)
                self.i += 1
                continue
            if not quoted:
                if c == "^" and self.i + 1 < len(self.s):
                    buf.append(self.s[self.i + 1])
                    self.i += 2
                    continue
                if c in "&|\r\n" or (c == ")" and self.depth):
                    break
                if c in "<>" or (c in "12" and self.peek(1) in "<>" and (not buf or buf[-1] in " \t")):
                    r = self.try_redirect()
                    if r is not None:
                        redirs.append(r)
                        continue
            buf.append(c)
            self.i += 1
        return Simple("".join(buf), redirs)

    def if_cmd(self) -> If:
        self.i += 2
        ignore_case = negate = False
        while True:
            self.skip_ws()
            w = self.word_at().lower()
            if w == "/i":
                ignore_case = True
                self.i += 2
            elif w == "not":
                negate = True
                self.i += 3
            else:
                break
        self.skip_ws()
        w = self.word_at().lower()
        if w in ("exist", "errorlevel", "defined"):
            self.i += len(w)
            self.skip_ws()
            arg = self.token()
            kind = w
            args: tuple[str, ...] = (arg,)
        else:
            left = self.compare_operand()
            self.skip_ws()
            m = re.match(r"==|\s*(equ|neq|lss|leq|gtr|geq)\s", self.s[self.i :], re.IGNORECASE)
            if not m:
                raise CmdSyntaxError("The syntax of the command is incorrect.")
            op = "==" if m.group(0) == "==" else (m.group(1) or "").lower()
            self.i += m.end()
            self.skip_ws()
            right = self.compare_operand()
            kind = "compare"
            args = (left, op, right)
        self.skip_ws()
        then = self.command()
        otherwise: Node | None = None
        self.skip_ws()
        if self.word_at().lower() == "else":
            self.i += 4
            otherwise = self.command()
        return If(negate, kind, args, ignore_case, then, otherwise)

    def compare_operand(self) -> str:
        buf: list[str] = []
        quoted = False
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == '"':
                quoted = not quoted
            elif not quoted and (c in " \t" or self.s.startswith("==", self.i)):
                break
            buf.append(c)
            self.i += 1
        return "".join(buf)


def expand_percent(text: str, env_get: object) -> str:
    """Command-line ``%VAR%`` expansion: defined names are replaced, undefined ones stay literal."""
    get = env_get if callable(env_get) else None

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        val = get(name) if get else None
        return m.group(0) if val is None else str(val)

    return re.sub(r"%([^%\r\n]+)%", sub, text)


def command_string(command_line: str) -> tuple[str | None, bool]:
    """The text after ``/c`` or ``/k`` (and whether /s was given), or None for an interactive cmd."""
    # Skip argv[0] the way cmd does (quoted, or up to whitespace), then switches.
    s = command_line.lstrip()
    if s.startswith('"'):
        end = s.find('"', 1)
        s = s[end + 1 :] if end >= 0 else ""
    else:
        m = re.match(r"\S*", s)
        s = s[m.end() if m else 0 :]
    strip_s = False
    while True:
        m = re.match(r"\s*/([A-Za-z])(:\w+)?", s)
        if not m:
            return None, strip_s
        sw = m.group(1).lower()
        s = s[m.end() :]
        if sw in ("c", "k"):
            return (s[1:] if s.startswith(" ") else s), strip_s
        if sw == "s":
            strip_s = True


def strip_outer_quotes(cmd: str, strip_s: bool, is_executable: object) -> str:
    """cmd's rule for a command string that starts with a quote (see ``cmd /?``)."""
    body = cmd.lstrip()
    if not body.startswith('"'):
        return cmd
    if not strip_s and body.count('"') == 2:
        inner = body[1 : body.index('"', 1)]
        check = is_executable if callable(is_executable) else None
        if not (set(inner) & _SPECIAL) and any(ch.isspace() for ch in inner) and check and check(inner):
            return cmd
    last = body.rfind('"')
    return body[1:last] + body[last + 1 :]


# ----------------------------------------------------------------------------------------- executor


class CmdInterpreter:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.errorlevel = 0

    def var(self, name: str) -> str | None:
        """Environment lookup plus cmd's dynamic variables (used when they are not set)."""
        value = self.ctx.env.get(name)
        if value is not None:
            return value
        low = name.lower()
        if low == "errorlevel":
            return str(self.errorlevel)
        if low == "cd":
            return self.ctx.cwd.rstrip("\\")
        if low == "random":
            return str(self.ctx.proc.pid * 7919 % 32768)
        now = self.ctx.host.now()
        if low == "date":
            return now.strftime("%a %m/%d/%Y")
        if low == "time":
            return now.strftime("%H:%M:%S.") + f"{now.microsecond // 10000:02d}"
        return None

    def run_text(self, text: str) -> int:
        expanded = expand_percent(text, self.var)
        try:
            node = Parser(expanded).parse()
        except CmdSyntaxError as exc:
            self.ctx.err.write(f"{exc}\r\n")
            return 255
        try:
            self.run(node, self.ctx.out, self.ctx.err, self.ctx.stdin)
        except _Exit as e:
            self.errorlevel = e.code
        return self.errorlevel

    def run(self, node: Node, out: Sink, err: Sink, stdin: str) -> None:
        self.ctx.check()
        if isinstance(node, Empty):
            return
        if isinstance(node, Binary):
            if node.op == "|":
                buf = BufferSink()
                self.run(node.left, buf, err, stdin)
                self.run(node.right, out, err, buf.getvalue())
                return
            self.run(node.left, out, err, stdin)
            if node.op == "&" or (node.op == "&&") == (self.errorlevel == 0):
                self.run(node.right, out, err, stdin)
            return
        if isinstance(node, If):
            if self.test(node) != node.negate:
                self.run(node.then, out, err, stdin)
            elif node.otherwise is not None:
                self.run(node.otherwise, out, err, stdin)
            return
        redirs = node.redirs
        streams = self.open_redirections(redirs, out, err, stdin)
        if streams is None:
            self.errorlevel = 1
            return
        r_out, r_err, r_in, files = streams
        try:
            if isinstance(node, Block):
                self.run(node.body, r_out, r_err, r_in)
            else:
                self.simple(node.text, r_out, r_err, r_in)
        finally:
            for path, sink, append in files:
                self.flush_file(path, sink, append)

    # -- redirection
    def open_redirections(
        self, redirs: list[Redir], out: Sink, err: Sink, stdin: str
    ) -> tuple[Sink, Sink, str, list[tuple[str, BufferSink, bool]]] | None:
        files: list[tuple[str, BufferSink, bool]] = []
        sinks: dict[int, Sink] = {1: out, 2: err}
        for r in redirs:
            target = r.target.strip('"')
            if r.mode == ">&":
                sinks[r.fd] = sinks.get(int(target) if target.isdigit() else 1, out)
                continue
            if target.lower() in ("nul", "nul:"):
                sinks[r.fd] = BufferSink() if r.mode != "<" else sinks.get(r.fd, out)
                if r.mode == "<":
                    stdin = ""
                continue
            if target.replace("/", "\\").startswith("\\\\") and r.mode != "<":
                # a network share (\\127.0.0.1\ADMIN$\...): the host records it as not modelled
                self.ctx.host.write_file(self.ctx.proc, target, b"", append=r.mode == ">>")
                sinks[r.fd] = BufferSink()
                continue
            path = normalize(target, self.ctx.cwd)
            if r.mode == "<":
                try:
                    stdin = self.ctx.host.fs.read(path).decode("utf-8", "replace")
                except FsError:
                    err.write("The system cannot find the file specified.\r\n")
                    return None
                continue
            try:
                # cmd itself opens (creates) the file before the command runs: Sysmon 11 names cmd.exe.
                self.ctx.host.write_file(self.ctx.proc, path, b"", append=r.mode == ">>")
            except FsError as exc:
                err.write(f"{exc}\r\n")
                return None
            sink = BufferSink()
            files.append((path, sink, True))
            sinks[r.fd] = sink
        return sinks[1], sinks[2], stdin, files

    def flush_file(self, path: str, sink: BufferSink, append: bool) -> None:
        data = sink.getvalue().encode("cp437", errors="replace")
        if data:
            self.ctx.host.fs.write(path, data, now=self.ctx.host.now(), append=append)

    # -- if
    def test(self, node: If) -> bool:
        if node.kind == "exist":
            target = node.args[0].strip('"')
            path = normalize(target, self.ctx.cwd)
            if any(c in target for c in "*?"):
                d = ntpath.dirname(path)
                return any(
                    fnmatch.fnmatch(ntpath.basename(p).lower(), ntpath.basename(path).lower())
                    for p in self.ctx.host.fs.listdir(d)
                )
            return self.ctx.host.fs.exists(path)
        if node.kind == "errorlevel":
            try:
                return self.errorlevel >= int(node.args[0])
            except ValueError:
                return False
        if node.kind == "defined":
            return node.args[0] in self.ctx.env
        left, op, right = node.args
        a, b = (left.lower(), right.lower()) if node.ignore_case else (left, right)
        if op == "==":
            return a == b
        try:
            x: int | str = int(a)
            y: int | str = int(b)
        except ValueError:
            x, y = a, b
        return {
            "equ": x == y, "neq": x != y, "lss": x < y, "leq": x <= y,  # type: ignore[operator]
            "gtr": x > y, "geq": x >= y,  # type: ignore[operator]
        }[op]  # fmt: skip

    # -- simple commands
    def simple(self, text: str, out: Sink, err: Sink, stdin: str) -> None:
        body = text.lstrip(" \t;,=")
        if not body.strip():
            return
        if body.startswith('"'):
            end = body.find('"', 1)
            end = len(body) - 1 if end < 0 else end
            name_raw, rest = body[: end + 1], body[end + 1 :]
        else:
            m = re.match(r"[^\s/]+", body)
            name_raw = m.group(0) if m else body
            rest = body[len(name_raw) :]
            # echo. / echo, / echo( print the rest directly
            if name_raw.lower().startswith("echo") and len(name_raw) > 4 and name_raw[4] in ".,:;(":
                rest = name_raw[4:] + rest
                name_raw = "echo"
        name = name_raw.strip('"')
        low = name.lower()
        if low in BUILTINS and not name_raw.startswith('"'):
            self.builtin(low, rest, out, err)
            return
        program = self.ctx.host.resolve_program(name, self.ctx.cwd, self.ctx.env)
        if program is None:
            err.write(NOT_RECOGNIZED_CMD.format(name=name))
            self.errorlevel = 9009
            return
        self.errorlevel = self.external(program, name_raw + " " + rest, out, err, stdin)

    def external(self, program: ProgramProfile, command_line: str, out: Sink, err: Sink, stdin: str) -> int:
        return self.ctx.host.run_program(self.ctx, program, command_line, stdin=stdin, out=out, err=err)

    def builtin(self, name: str, rest: str, out: Sink, err: Sink) -> None:
        ctx = self.ctx
        args = rest.strip()
        if name == "echo":
            if not args:
                out.write("ECHO is on.\r\n")
            elif rest[:1] in ".,:;(" and rest.strip(".,:;(") == "":
                out.write("\r\n")
            elif args.lower() in ("on", "off"):
                pass
            else:
                out.write(rest[1:] + "\r\n")
            self.errorlevel = 0
        elif name == "ver":
            build = getattr(getattr(ctx.host, "settings", None), "os_build", "10.0.20348.2700")
            out.write(f"\r\nMicrosoft Windows [Version {build}]\r\n")
            self.errorlevel = 0
        elif name in ("del", "erase"):
            self.delete(args, err)
        elif name == "type":
            self.type_(args, out, err)
        elif name == "copy":
            self.copy(args, out, err)
        elif name == "set":
            if "=" in args:
                k, _, v = args.strip('"').partition("=")
                if v:
                    ctx.env[k] = v
                else:
                    del ctx.env[k]
                self.errorlevel = 0
            else:
                for k, v in ctx.env.items():
                    if k.lower().startswith(args.lower()):
                        out.write(f"{k}={v}\r\n")
        elif name in ("cd", "chdir"):
            if not args:
                out.write(ctx.cwd.rstrip("\\") + "\r\n")
                return
            target = normalize(args.replace("/d ", "").strip('"'), ctx.cwd)
            if ctx.host.fs.is_dir(target):
                ctx.cwd = target
                self.errorlevel = 0
            else:
                err.write("The system cannot find the path specified.\r\n")
                self.errorlevel = 1
        elif name in ("md", "mkdir"):
            path = normalize(args.strip('"'), ctx.cwd)
            if ctx.host.fs.exists(path):
                err.write(f"A subdirectory or file {args} already exists.\r\n")
                self.errorlevel = 1
            else:
                ctx.host.fs.mkdir(path)
                self.errorlevel = 0
        elif name == "exit":
            parts = args.split()
            if parts and parts[0].lower() == "/b":
                parts = parts[1:]
            code = int(parts[0]) if parts and re.fullmatch(r"-?\d+", parts[0]) else self.errorlevel
            raise _Exit(code)
        else:
            err.write(not_modelled_note(self.ctx, name))
            self.errorlevel = 0

    def delete(self, args: str, err: Sink) -> None:
        fs = self.ctx.host.fs
        targets = [t.strip('"') for t in re.findall(r'"[^"]*"|\S+', args) if not t.startswith("/")]
        if not targets:
            err.write("The syntax of the command is incorrect.\r\n")
            self.errorlevel = 1
            return
        for t in targets:
            path = normalize(t, self.ctx.cwd)
            if any(c in t for c in "*?"):
                matches = [
                    p
                    for p in fs.listdir(ntpath.dirname(path))
                    if fs.is_file(p) and fnmatch.fnmatch(ntpath.basename(p).lower(), ntpath.basename(path).lower())
                ]
                if not matches:
                    err.write(f"Could Not Find {path}\r\n")
                for p in matches:
                    fs.delete(p)
            elif fs.is_dir(path):
                for p in fs.listdir(path):
                    if fs.is_file(p):
                        fs.delete(p)
            elif not fs.delete(path):
                err.write(f"Could Not Find {path}\r\n")
        # del leaves errorlevel 0 even when a file was not found.
        self.errorlevel = 0

    def copy(self, args: str, out: Sink, err: Sink) -> None:
        """``copy [/y] [/b|/a] [/v] source destination`` for one file (cmd's built-in COPY; texts as
        cmd prints them). Wildcards, ``+`` concatenation and the overwrite prompt are not modelled."""
        ctx = self.ctx
        fs = ctx.host.fs
        words = [t for t in re.findall(r'"[^"]*"|\S+', args)]
        switches = {w.lower() for w in words if w.startswith("/")}
        names = [w.strip('"') for w in words if not w.startswith("/")]
        if len(names) != 2 or any(c in "".join(names) for c in "*?+") or switches - {"/y", "/b", "/a", "/v"}:
            err.write(not_modelled_note(ctx, "copy " + args.strip()))
            self.errorlevel = 0
            return
        src = normalize(names[0], ctx.cwd)
        if not fs.is_file(src):
            err.write("The system cannot find the file specified.\r\n")
            out.write("        0 file(s) copied.\r\n")
            self.errorlevel = 1
            return
        dst = normalize(names[1], ctx.cwd)
        if fs.is_dir(dst):
            dst = ntpath.join(dst, ntpath.basename(src))
        if fs.exists(dst) and "/y" not in switches:
            err.write(not_modelled_note(ctx, "copy onto an existing file (the Overwrite prompt)"))
            self.errorlevel = 0
            return
        try:
            ctx.host.write_file(ctx.proc, dst, fs.read(src))
        except FsError:
            err.write("The system cannot find the path specified.\r\n")
            out.write("        0 file(s) copied.\r\n")
            self.errorlevel = 1
            return
        out.write("        1 file(s) copied.\r\n")
        self.errorlevel = 0

    def type_(self, args: str, out: Sink, err: Sink) -> None:
        path = normalize(args.strip().strip('"'), self.ctx.cwd)
        try:
            data = self.ctx.host.fs.read(path)
        except FsError:
            err.write("The system cannot find the file specified.\r\n")
            self.errorlevel = 1
            return
        if data.startswith(b"\xff\xfe"):
            text = data[2:].decode("utf-16-le", "replace")
        else:
            text = data.decode("utf-8", "replace")
        out.write(text)
        self.errorlevel = 0


def run_cmd(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    """cmd.exe: run the ``/c`` string (or print the banner when interactive) and return errorlevel."""
    text, strip_s = command_string(ctx.proc.command_line)
    if text is None:
        build = getattr(getattr(ctx.host, "settings", None), "os_build", "10.0.20348.2700")
        ctx.out.write(f"Microsoft Windows [Version {build}]\r\n(c) Microsoft Corporation. All rights reserved.\r\n\r\n")
        return 0

    def is_exe(inner: str) -> bool:
        return ctx.host.resolve_program(inner, ctx.cwd, ctx.env) is not None

    text = strip_outer_quotes(text, strip_s, is_exe)
    return CmdInterpreter(ctx).run_text(text)
