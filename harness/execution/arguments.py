"""Input arguments: substitute ``#{name}`` placeholders, defaults as written, overrides quoted.

Contract
--------
* Defaults come from the atomic's YAML. That file is trusted content reviewed with the project, so
  a default is substituted exactly as written - like Invoke-AtomicRedTeam's plain string replace
  (``$env:TEMP\\x.txt`` must stay expandable, ``%TEMP%`` too).
* Overrides come from the CLI or the lab config and are *untrusted*. Each is checked against the
  declared type (integer, float, url, path, string), then quoted for the executor **and** for the
  lexical context of the placeholder in the command (bare, inside ``"..."``, inside ``'...'``):

  ============== ================================== ====================================================
  executor       bare                               inside a quoted string
  ============== ================================== ====================================================
  powershell     ``'v'``, ``'`` (and ‘ ’ ‚ ‛) doubled ``"..."``: backtick before `` ` `` ``"`` ``$`` “ ” „;
                                                    ``'...'``: quote characters doubled
  command_prompt strict allow-list; ``"v"`` if it    ``"..."``: as is (the allow-list has no metacharacter)
                 holds a space
  sh / bash      ``'v'`` with ``'`` as ``'\\''``       ``"..."``: backslash before ``\\ " $ ` ``;
                                                    ``'...'``: ``'\\''``; ``$'...'``: ``\\`` before ``\\ '``
  ============== ================================== ====================================================

  Validated integers and floats (``[0-9+-.eE]`` only) are inserted without quotes in every
  context: they cannot contain a metacharacter, and a bare number keeps commands such as
  ``1..#{last_host}`` working.
* The cmd allow-list is ASCII letters, digits, space and ``. _ - : \\ / , @ = +``. Everything else
  (notably ``% ! ^ & | < > " ( )``) is refused: ``%``/``!`` expansion happens even inside quotes,
  so cmd cannot be escaped reliably. Non-ASCII letters are refused too, because Windows "best fit"
  code-page mapping turns some of them (fullwidth ``＂``) into ASCII metacharacters.
* Control characters (newline, NUL, ...) are refused in every override: cmd joins lines with
  `` & ``, and here-documents / here-strings end at a line.
* Any problem raises ContentError naming the atomic file, line, argument and what to do.

The executor's own command-line layer (``"powershell.exe" & {...}``, ``sh -c '...'``) is applied
afterwards by :mod:`harness.execution.executors`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from harness.errors import ContentError
from harness.model import ArgType, AtomicTest, ExecutorName

PLACEHOLDER_RE = re.compile(r"#\{([A-Za-z0-9_.-]+)\}")

_PS_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_PS_DOUBLE_QUOTES = '"\u201c\u201d\u201e'
_CMD_ALLOWED_RE = re.compile(r"[A-Za-z0-9 ._\-:\\/,@=+]*")
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")
_URL_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "file", "smb", "ldap", "ldaps"})


class Context(enum.StrEnum):
    """Where a placeholder sits in the command text."""

    BARE = "bare"
    SINGLE = "single"  # inside '...'
    DOUBLE = "double"  # inside "..."
    HERE_SINGLE = "here_single"  # PowerShell @'...'@ (literal, ends only at a line)
    ANSI_C = "ansi_c"  # bash $'...'


# --- lexers: the context of each placeholder ------------------------------------------------------


def _placeholder_at(text: str, i: int) -> re.Match[str] | None:
    return PLACEHOLDER_RE.match(text, i) if text.startswith("#{", i) else None


def _here_string_end(text: str, i: int, quotes: str) -> bool:
    """True when a PowerShell here-string closes at ``i`` (newline, quote, ``@``)."""
    nxt = text[i + 1 : i + 2]
    return text[i] == "\n" and nxt != "" and nxt in quotes and text[i + 2 : i + 3] == "@"


_Stack = list[list[str | int]]  # frames: [kind, open-bracket depth]
_Found = list[tuple[re.Match[str], Context]]


def _scan(text: str, contexts: Mapping[str, Context], step: Callable[[str, int, _Stack], int]) -> _Found:
    """Placeholders of ``text`` with the context of the innermost frame (``contexts``, else BARE).

    ``step`` lexes the character at ``i``, pushing and popping frames of the stack, and returns
    the next position.
    """
    found: _Found = []
    stack: _Stack = [["code", 0]]
    i = 0
    while i < len(text):
        m = _placeholder_at(text, i)
        if m is not None:
            found.append((m, contexts.get(str(stack[-1][0]), Context.BARE)))
            i = m.end()
        else:
            i = step(text, i, stack)
    return found


def _push(stack: _Stack, kind: str, i: int) -> int:
    """Open a ``kind`` frame at the two-character opener at ``i``; the position after it."""
    stack.append([kind, 0])
    return i + 2


_PS_CONTEXTS = {"sq": Context.SINGLE, "dq": Context.DOUBLE, "hdq": Context.DOUBLE, "hsq": Context.HERE_SINGLE}


def _powershell_step(text: str, i: int, stack: _Stack) -> int:
    """One step of a small PowerShell lexer.

    Frames: code (with ``$(`` subexpression nesting), '...', "...", @'...'@, @"..."@, comments.
    """
    n = len(text)
    kind = str(stack[-1][0])
    c = text[i]
    if kind == "code":
        if c == "`":
            return i + 2
        if text.startswith("<#", i):
            return _push(stack, "block", i)
        if c == "#":
            stack.append(["line", 0])
        elif c == "@" and i + 1 < n and text[i + 1] in _PS_SINGLE_QUOTES + _PS_DOUBLE_QUOTES:
            rest = text[i + 2 : text.find("\n", i + 2) if "\n" in text[i + 2 :] else n]
            if rest.strip() == "":
                return _push(stack, "hsq" if text[i + 1] in _PS_SINGLE_QUOTES else "hdq", i)
        elif c in _PS_SINGLE_QUOTES:
            stack.append(["sq", 0])
        elif c in _PS_DOUBLE_QUOTES:
            stack.append(["dq", 0])
        elif c in "({":
            stack[-1][1] = int(stack[-1][1]) + 1
        elif c in ")}":
            if int(stack[-1][1]) == 0 and len(stack) > 1:
                stack.pop()  # end of a $( ) subexpression inside a string
            else:
                stack[-1][1] = max(0, int(stack[-1][1]) - 1)
    elif kind == "sq":
        if c in _PS_SINGLE_QUOTES:
            if i + 1 < n and text[i + 1] in _PS_SINGLE_QUOTES:
                return i + 2
            stack.pop()
    elif kind in ("dq", "hdq"):
        if c == "`":
            return i + 2
        if text.startswith("$(", i):
            return _push(stack, "code", i)
        if kind == "dq" and c in _PS_DOUBLE_QUOTES:
            if i + 1 < n and text[i + 1] in _PS_DOUBLE_QUOTES:
                return i + 2
            stack.pop()
        elif kind == "hdq" and _here_string_end(text, i, _PS_DOUBLE_QUOTES):
            stack.pop()
            return i + 3
    elif kind == "hsq":
        if _here_string_end(text, i, _PS_SINGLE_QUOTES):
            stack.pop()
            return i + 3
    elif kind == "line":
        if c == "\n":
            stack.pop()
    elif kind == "block" and text.startswith("#>", i):
        stack.pop()
        return i + 2
    return i + 1


_POSIX_CONTEXTS = {"sq": Context.SINGLE, "dq": Context.DOUBLE, "ansi": Context.ANSI_C}


def _posix_step(text: str, i: int, stack: _Stack) -> int:
    """One step of a small POSIX shell (sh/bash) lexer."""
    kind = str(stack[-1][0])
    c = text[i]
    if kind in ("code", "bq"):
        if c == "\\":
            return i + 2
        if kind == "bq" and c == "`":
            stack.pop()
        elif c == "`":
            stack.append(["bq", 0])
        elif text.startswith("$'", i):
            return _push(stack, "ansi", i)
        elif text.startswith("$(", i):
            return _push(stack, "code", i)
        elif c == "'":
            stack.append(["sq", 0])
        elif c == '"':
            stack.append(["dq", 0])
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n;&|(){}"):
            stack.append(["comment", 0])
        elif c == "(":
            stack[-1][1] = int(stack[-1][1]) + 1
        elif c == ")":
            if int(stack[-1][1]) == 0 and len(stack) > 1:
                stack.pop()
            else:
                stack[-1][1] = max(0, int(stack[-1][1]) - 1)
    elif kind == "sq":
        if c == "'":
            stack.pop()
    elif kind == "ansi":
        if c == "\\":
            return i + 2
        if c == "'":
            stack.pop()
    elif kind == "dq":
        if c == "\\":
            return i + 2
        if c == '"':
            stack.pop()
        elif text.startswith("$(", i):
            return _push(stack, "code", i)
        elif c == "`":
            stack.append(["bq", 0])
    elif kind == "comment" and c == "\n":
        stack.pop()
    return i + 1


def _cmd_contexts(text: str) -> list[tuple[re.Match[str], Context]]:
    """Placeholders of a cmd command with their context (cmd only knows ``"`` toggling)."""
    found: list[tuple[re.Match[str], Context]] = []
    in_quotes = False
    i = 0
    while i < len(text):
        m = _placeholder_at(text, i)
        if m is not None:
            found.append((m, Context.DOUBLE if in_quotes else Context.BARE))
            i = m.end()
            continue
        if text[i] == '"':
            in_quotes = not in_quotes
        elif text[i] == "\n":
            in_quotes = False  # every line becomes its own `&`-joined statement
        i += 1
    return found


def placeholder_contexts(executor: ExecutorName, template: str) -> list[tuple[str, Context]]:
    """(argument name, context) for every ``#{name}`` in ``template``, in order."""
    return [(m.group(1), ctx) for m, ctx in _contexts(executor, template)]


def _contexts(executor: ExecutorName, template: str) -> list[tuple[re.Match[str], Context]]:
    if executor is ExecutorName.POWERSHELL:
        return _scan(template, _PS_CONTEXTS, _powershell_step)
    if executor is ExecutorName.COMMAND_PROMPT:
        return _cmd_contexts(template)
    if executor in (ExecutorName.SH, ExecutorName.BASH):
        return _scan(template, _POSIX_CONTEXTS, _posix_step)
    return [(m, Context.BARE) for m in PLACEHOLDER_RE.finditer(template)]


# --- type checks and quoting ----------------------------------------------------------------------


def check_type(arg_type: ArgType, value: str) -> str | None:
    """Why ``value`` is not a valid ``arg_type`` override, or None when it is."""
    if _CONTROL_RE.search(value):
        return "control characters (newline, NUL, ...) are not allowed"
    if arg_type is ArgType.INTEGER:
        return None if _INTEGER_RE.fullmatch(value) else "expected an integer such as 42"
    if arg_type is ArgType.FLOAT:
        return None if _FLOAT_RE.fullmatch(value) else "expected a number such as 1.5"
    if arg_type is ArgType.URL:
        parts = urlsplit(value)
        if parts.scheme.lower() not in _URL_SCHEMES or (not parts.netloc and parts.scheme != "file"):
            return "expected an absolute URL such as https://host/path"
        if any(ch.isspace() for ch in value):
            return "a URL cannot contain spaces"
        return None
    if arg_type is ArgType.PATH:
        return None if value.strip() else "expected a non-empty path"
    return None


def _is_number(arg_type: ArgType, value: str) -> bool:
    return arg_type in (ArgType.INTEGER, ArgType.FLOAT) and bool(
        (_INTEGER_RE if arg_type is ArgType.INTEGER else _FLOAT_RE).fullmatch(value)
    )


def quote_value(executor: ExecutorName, context: Context, value: str) -> str:
    """``value`` quoted so it stays one literal in ``context`` of ``executor``'s language.

    Raises ValueError when cmd's allow-list refuses the value (callers add file/line).
    """
    if executor is ExecutorName.POWERSHELL:
        if context is Context.DOUBLE:
            return re.sub(r"[`$" + _PS_DOUBLE_QUOTES + "]", lambda m: "`" + m.group(0), value)
        if context is Context.HERE_SINGLE:
            return value  # literal up to "\n'@", and control characters were refused
        doubled = re.sub("[" + _PS_SINGLE_QUOTES + "]", lambda m: m.group(0) * 2, value)
        return doubled if context is Context.SINGLE else f"'{doubled}'"
    if executor is ExecutorName.COMMAND_PROMPT:
        if _CMD_ALLOWED_RE.fullmatch(value) is None:
            bad = sorted({ch for ch in value if _CMD_ALLOWED_RE.fullmatch(ch) is None})
            raise ValueError(
                f"characters {''.join(bad)!r} are not allowed in a cmd argument "
                "(allowed: letters, digits, space and . _ - : \\ / , @ = +)"
            )
        if context is Context.BARE and (" " in value or value == ""):
            return f'"{value}"'
        return value
    if context is Context.DOUBLE:
        return re.sub(r'[\\"$`]', lambda m: "\\" + m.group(0), value)
    if context is Context.SINGLE:
        return value.replace("'", "'\\''")
    if context is Context.ANSI_C:
        return re.sub(r"[\\']", lambda m: "\\" + m.group(0), value)
    return "'" + value.replace("'", "'\\''") + "'"


def _error(test: AtomicTest, name: str, message: str, hint: str | None = None) -> ContentError:
    return ContentError(message, file=test.source or None, line=test.line, path=f"input_arguments.{name}", hint=hint)


def check_overrides(test: AtomicTest, overrides: Mapping[str, str]) -> None:
    """Raise ContentError for an override naming no declared argument or failing its type check."""
    for name, value in overrides.items():
        declared = test.input_arguments.get(name)
        if declared is None:
            known = ", ".join(sorted(test.input_arguments)) or "none"
            raise _error(test, name, f"unknown input argument {name!r}", hint=f"declared: {known}")
        problem = check_type(declared.type, value)
        if problem is not None:
            raise _error(test, name, f"override for {declared.type.value} argument {name!r} refused: {problem}")


#: ``$PathToAtomicsFolder`` or ``PathToAtomicsFolder``, any case: Invoke-AtomicRedTeam replaces both
#: with PowerShell's ``-replace``, which ignores case (Private/Replace-InputArgs.ps1, ``Merge-InputArgs``;
#: upstream T1609 writes ``$PathtoAtomicsFolder``).
ATOMICS_FOLDER_RE = re.compile(r"\$?PathToAtomicsFolder", re.IGNORECASE)
#: What an override may hold when it lands inside another argument's default (``..._#{arch}.exe``):
#: there it is part of a word the default's author wrote, so no quoting can be applied.
_NESTED_SAFE_RE = re.compile(r"[A-Za-z0-9._-]*")


def with_atomics_folder(text: str, atomics_folder: str | None) -> str:
    """``text`` with ``$PathToAtomicsFolder`` / ``PathToAtomicsFolder`` (any case) replaced by the
    target-side atomics folder, as Invoke-AtomicRedTeam does; unchanged when ``atomics_folder`` is None."""
    if atomics_folder is None:
        return text
    return ATOMICS_FOLDER_RE.sub(lambda _m: atomics_folder, text)


def _default_value(test: AtomicTest, name: str, overrides: Mapping[str, str], seen: tuple[str, ...] = ()) -> str:
    """The default of ``name`` with nested ``#{other}`` placeholders resolved.

    Invoke-AtomicRedTeam replaces each argument's ``#{name}`` in turn (Merge-InputArgs), so a default
    that names another argument (upstream T1055.011: ``...\\T1055.011_#{arch}.exe``) ends up holding
    that argument's value when the outer one is replaced first. atomiclab resolves such nesting in any
    order. Undeclared names and circular chains stay as written (``atomiclab validate`` reports them).
    An override that lands inside a default must be a plain word (letters, digits, ``. _ -``): it
    cannot be quoted in the middle of someone else's word.
    """
    declared = test.input_arguments[name]

    def inner(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref not in test.input_arguments or ref in seen or ref == name:
            return m.group(0)
        if ref in overrides:
            value = overrides[ref]
            if _NESTED_SAFE_RE.fullmatch(value) is None:
                raise _error(test, ref, f"override for {ref!r} refused: it is used inside the default of {name!r}, "
                             "where only letters, digits and . _ - can be inserted safely",
                             hint=f"override {name!r} itself instead")
            return value
        return _default_value(test, ref, overrides, (*seen, name))

    return PLACEHOLDER_RE.sub(inner, declared.default)


def substitute(
    template: str,
    test: AtomicTest,
    executor: ExecutorName,
    overrides: Mapping[str, str],
    *,
    atomics_folder: str | None = None,
) -> str:
    """``template`` with every ``#{name}`` replaced: defaults as written (nested placeholders
    resolved), overrides checked and quoted.

    ``executor`` is the language ``template`` is written in (the test's executor for its command
    and cleanup; ``dependency_executor_name`` for prerequisites). ``atomics_folder``: the target-side
    atomics folder that replaces ``PathToAtomicsFolder`` in the template and in defaults (never inside
    an override: an override is one quoted literal). Raises ContentError for an unknown placeholder or
    override, or an override that fails its type or quoting rules.
    """
    check_overrides(test, overrides)
    out: list[str] = []
    last = 0
    for m, context in _contexts(executor, template):
        name = m.group(1)
        declared = test.input_arguments.get(name)
        if declared is None:
            raise _error(test, name, f"placeholder #{{{name}}} names no input argument", hint="declare it or fix it")
        out.append(with_atomics_folder(template[last : m.start()], atomics_folder))
        if name in overrides:
            value = overrides[name]
            if _is_number(declared.type, value):
                out.append(value)
            else:
                try:
                    out.append(quote_value(executor, context, value))
                except ValueError as exc:
                    raise _error(test, name, f"override for {name!r} refused: {exc}") from exc
        else:
            out.append(with_atomics_folder(_default_value(test, name, overrides), atomics_folder))
        last = m.end()
    out.append(with_atomics_folder(template[last:], atomics_folder))
    return "".join(out)


def describe(text: str, test: AtomicTest, overrides: Mapping[str, str], *, atomics_folder: str | None = None) -> str:
    """Human text (a dependency description) with placeholders replaced by the plain values."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in overrides:
            return overrides[name]
        if name in test.input_arguments:
            try:
                return with_atomics_folder(_default_value(test, name, overrides), atomics_folder)
            except ContentError:
                return test.input_arguments[name].default
        return m.group(0)

    return with_atomics_folder(PLACEHOLDER_RE.sub(value, text), atomics_folder)


__all__ = [
    "ATOMICS_FOLDER_RE",
    "PLACEHOLDER_RE",
    "Context",
    "check_overrides",
    "check_type",
    "describe",
    "placeholder_contexts",
    "quote_value",
    "substitute",
    "with_atomics_folder",
]
