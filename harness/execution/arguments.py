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
#: A bare host as ART's url arguments use it: IPv4, [IPv6] or an RFC 1123 name, optional :port and /path.
_HOST_RE = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+|"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?)"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?"
)
_URL_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "file", "smb", "ldap", "ldaps"})


class Context(enum.StrEnum):
    """Where a placeholder sits in the command text."""

    BARE = "bare"
    SINGLE = "single"  # inside '...'
    DOUBLE = "double"  # inside "..."
    HERE_SINGLE = "here_single"  # PowerShell @'...'@ (literal, ends only at a line)
    ANSI_C = "ansi_c"  # bash $'...'
    HEREDOC = "heredoc"  # sh/bash here-document body, unquoted delimiter: $ ` \ are special
    HEREDOC_LITERAL = "heredoc_literal"  # sh/bash here-document body, quoted delimiter: literal
    UNCERTAIN = "uncertain"  # the lexer cannot tell (a PowerShell '#' that may start a comment)


# --- lexers: the context of each placeholder ------------------------------------------------------


def _placeholder_at(text: str, i: int) -> re.Match[str] | None:
    return PLACEHOLDER_RE.match(text, i) if text.startswith("#{", i) else None


def _here_string_end(text: str, i: int, quotes: str) -> bool:
    """True when a PowerShell here-string closes at ``i`` (newline, quote, ``@``)."""
    nxt = text[i + 1 : i + 2]
    return text[i] == "\n" and nxt != "" and nxt in quotes and text[i + 2 : i + 3] == "@"


_Stack = list[list[str | int]]  # frames: [kind, open-bracket depth, *kind-specific data]
_Found = list[tuple[re.Match[str], Context]]

#: Frame kinds that make every placeholder after them UNCERTAIN (see ``_powershell_step``).
_UNCERTAIN_MARK = "uncertain"


def _scan(text: str, contexts: Mapping[str, Context], step: Callable[[str, int, _Stack], int]) -> _Found:
    """Placeholders of ``text`` with the context of the innermost frame (``contexts``, else BARE).

    ``step`` lexes the character at ``i``, pushing and popping frames of the stack, and returns
    the next position. A step may set ``stack[0][1]`` to -1: from then on the lexer is no longer
    sure of its reading, and every placeholder is UNCERTAIN (only plain words are inserted there).
    """
    found: _Found = []
    stack: _Stack = [["code", 0]]
    i = 0
    while i < len(text):
        m = _placeholder_at(text, i)
        if m is not None:
            sure = not any(f[0] == _UNCERTAIN_MARK for f in stack)
            found.append((m, contexts.get(str(stack[-1][0]), Context.BARE) if sure else Context.UNCERTAIN))
            i = m.end()
        else:
            i = step(text, i, stack)
    return found


def _push(stack: _Stack, kind: str, i: int) -> int:
    """Open a ``kind`` frame at the two-character opener at ``i``; the position after it."""
    stack.append([kind, 0])
    return i + 2


_PS_CONTEXTS = {"sq": Context.SINGLE, "dq": Context.DOUBLE, "hdq": Context.DOUBLE, "hsq": Context.HERE_SINGLE}


#: PowerShell's ForceStartNewToken characters (CharTraits in the PowerShell tokenizer): whitespace and
#: ``{ } ( ) ; , | &``. A ``#`` right after one of them (or at the start) starts a comment; inside a
#: generic word (``see#note``, ``C:\\a#b``, ``http://h/#x``) it is part of the word.
_PS_TOKEN_BREAK = frozenset(" \t\r\n{}();,|&")
#: Characters of a plain command-mode word before a ``#`` that keeps the ``#`` inside the word.
_PS_WORD_CHARS = re.compile(r"[A-Za-z0-9_\-\\/:.@%+~*?!^]")


def _ps_hash_is_comment(text: str, i: int) -> bool | None:
    """Whether the ``#`` at ``i`` starts a PowerShell comment: True, False, or None when that depends
    on the parser's mode (after a variable, a quote, ``=``, ``]`` ...: a comment in expression mode, part
    of the word in command mode)."""
    if i == 0 or text[i - 1] in _PS_TOKEN_BREAK:
        return True
    start = i
    while start > 0 and text[start - 1] not in _PS_TOKEN_BREAK:
        start -= 1
    word = text[start:i]
    if word and word[0] not in "$@'\"\u2018\u2019\u201a\u201b\u201c\u201d\u201e" and all(
            _PS_WORD_CHARS.fullmatch(ch) for ch in word):
        return False
    return None


def _powershell_step(text: str, i: int, stack: _Stack) -> int:
    """One step of a small PowerShell lexer.

    Frames: code (with ``$(`` subexpression nesting), '...', "...", @'...'@, @"..."@, comments. A
    ``#`` whose meaning depends on the parser mode is read as part of a word, and every placeholder
    after it becomes UNCERTAIN (an ``uncertain`` frame stays at the bottom of the stack).
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
            comment = _ps_hash_is_comment(text, i)
            if comment is None:
                stack.insert(0, [_UNCERTAIN_MARK, 0])
                return i + 1
            if comment:
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


_POSIX_CONTEXTS = {
    "sq": Context.SINGLE,
    "dq": Context.DOUBLE,
    "ansi": Context.ANSI_C,
    "hdu": Context.HEREDOC,
    "hdq": Context.HEREDOC_LITERAL,
}
_HEREDOC_OPEN = re.compile(r"<<(-?)[ \t]*((?:[^\s;&|()<>'\"\\]|'[^'\n]*'|\"[^\"\n]*\"|\\.)+)")


def _heredoc_open(text: str, i: int, stack: _Stack) -> int | None:
    """At ``<<WORD`` / ``<<-WORD`` (not bash's ``<<<``): remember the here-document whose body starts at
    the next line (POSIX 2.7.4: a quoted WORD makes the body literal, ``-`` strips leading tabs), and
    return the position after WORD."""
    if not text.startswith("<<", i) or text.startswith("<<<", i):
        return None
    m = _HEREDOC_OPEN.match(text, i)
    if m is None:
        return None
    word = m.group(2)
    quoted = any(q in word for q in "'\"\\")
    delimiter = re.sub(r"\\(.)", r"\1", word.replace("'", "").replace('"', "")) if quoted else word
    stack[0].extend([delimiter, ("q" if quoted else "u") + ("-" if m.group(1) else "")])
    return m.end()


def _heredoc_bodies(stack: _Stack) -> None:
    """At the newline ending a command line: the pending here-document bodies start, first one on top."""
    pending = stack[0][2:]
    del stack[0][2:]
    frames = [["hdq" if str(flags)[0] == "q" else "hdu", 0, delim, flags]
              for delim, flags in zip(pending[::2], pending[1::2], strict=True)]
    stack.extend(reversed(frames))


def _heredoc_line_ends(text: str, i: int, frame: list[str | int]) -> int | None:
    """When the line starting at ``i`` is the here-document's delimiter line: the position of its end."""
    if i != 0 and text[i - 1] != "\n":
        return None
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    line = text[i:end]
    if "-" in str(frame[3]):
        line = line.lstrip("\t")
    return end if line == frame[2] else None


def _posix_step(text: str, i: int, stack: _Stack) -> int:
    """One step of a small POSIX shell (sh/bash) lexer: quotes, ``$( )``, backquotes, comments and
    here-documents (unquoted bodies expand ``$`` and backquotes; quoted ones are literal)."""
    kind = str(stack[-1][0])
    c = text[i]
    if kind in ("hdu", "hdq"):
        end = _heredoc_line_ends(text, i, stack[-1])
        if end is not None:
            stack.pop()
            return end
        if kind == "hdu":
            if c == "\\":
                return i + 2
            if text.startswith("$(", i):
                return _push(stack, "code", i)
            if c == "`":
                stack.append(["bq", 0])
        return i + 1
    if kind in ("code", "bq"):
        if c == "\\":
            return i + 2
        if c == "\n" and len(stack[0]) > 2:
            _heredoc_bodies(stack)
            return i + 1
        if text.startswith("<<<", i):  # bash here-string: a word follows, not a here-document
            return i + 3
        # Arithmetic $(( )) / (( )): "<<" there is a shift, not a here-document.
        if text.startswith("$((", i):
            stack.append(["arith", 0])
            return i + 3
        if text.startswith("((", i) and (i == 0 or text[i - 1] in " \t\n;&|("):
            stack.append(["arith", 0])
            return i + 2
        after = _heredoc_open(text, i, stack)
        if after is not None:
            return after
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
    elif kind == "arith":
        if text.startswith("$(", i) and not text.startswith("$((", i):
            return _push(stack, "code", i)
        if c == "(":
            stack[-1][1] = int(stack[-1][1]) + 1
        elif c == ")":
            if int(stack[-1][1]) == 0 and text.startswith("))", i):
                stack.pop()
                return i + 2
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
        if len(stack[0]) > 2:  # ``cat <<EOF # note``: the body starts after the comment's line
            _heredoc_bodies(stack)
    return i + 1


def _heredoc_ends(text: str) -> list[int]:
    """Offsets where here-document bodies of a sh/bash script end (to prove an override ends none)."""
    ends: list[int] = []
    stack: _Stack = [["code", 0]]
    i = 0
    while i < len(text):
        depth = len(stack)
        kind = str(stack[-1][0])
        nxt = _posix_step(text, i, stack)
        if kind in ("hdu", "hdq") and len(stack) < depth:
            ends.append(text.count("\n", 0, i))
        i = nxt
    return ends


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
        if any(ch.isspace() for ch in value):
            return "a URL cannot contain spaces"
        if "://" not in value and _HOST_RE.fullmatch(value):
            return None  # ART's url arguments also take a bare IP or host (8.8.8.8, dns.example.com)
        parts = urlsplit(value)
        if parts.scheme.lower() not in _URL_SCHEMES or (not parts.netloc and parts.scheme != "file"):
            return "expected a URL such as https://host/path, a host name or an IP address"
        return None
    if arg_type is ArgType.PATH:
        return None if value.strip() else "expected a non-empty path"
    return None


def _is_number(arg_type: ArgType, value: str) -> bool:
    return arg_type in (ArgType.INTEGER, ArgType.FLOAT) and bool(
        (_INTEGER_RE if arg_type is ArgType.INTEGER else _FLOAT_RE).fullmatch(value)
    )


#: An override that lands where the lexer is unsure of the context must be a plain word.
_PLAIN_WORD_RE = re.compile(r"[A-Za-z0-9._-]*")
#: ``%NAME%`` (also ``%ProgramFiles(x86)%``) in a cmd path: expanded by cmd as in the atomics' defaults.
_CMD_ENV_RE = re.compile(r"%[A-Za-z_][A-Za-z0-9_]*(?:\(x86\))?%")
#: `` (x86)`` in a cmd path (``C:\Program Files (x86)\...``): the only parentheses a path may hold.
_CMD_X86_RE = re.compile(r" \(x86\)")
#: ``$env:NAME...`` / ``${env:NAME}...`` at the start of a PowerShell path.
_PS_ENV_RE = re.compile(r"\$(?:env:([A-Za-z_][A-Za-z0-9_]*)|\{env:([A-Za-z_][A-Za-z0-9_()]*)\})(.*)", re.DOTALL)


def _ps_double(value: str) -> str:
    return re.sub(r"[`$" + _PS_DOUBLE_QUOTES + "]", lambda m: "`" + m.group(0), value)


def _ps_env_path(context: Context, value: str) -> str | None:
    """A ``$env:`` path as PowerShell expands it: ``"${env:NAME}rest"`` (rest escaped), or None when
    ``value`` is not such a path. ValueError where a variable cannot expand (inside '...')."""
    m = _PS_ENV_RE.fullmatch(value)
    if m is None:
        return None
    name, rest = m.group(1) or m.group(2), m.group(3)
    expanded = "${env:" + name + "}" + _ps_double(rest)
    if context is Context.DOUBLE:
        return expanded
    if context is Context.BARE:
        return f'"{expanded}"'
    raise ValueError("a $env: path cannot expand inside '...' or a here-string here; give a literal path")


def _cmd_path_rest(value: str) -> str:
    """A cmd path without the ``%NAME%`` and `` (x86)`` parts the allow-list accepts in paths."""
    return _CMD_X86_RE.sub("", _CMD_ENV_RE.sub("", value))


def quote_value(executor: ExecutorName, context: Context, value: str, arg_type: ArgType = ArgType.STRING) -> str:
    """``value`` quoted so it stays one literal in ``context`` of ``executor``'s language.

    ``path`` values may also take the forms Atomic Red Team's own defaults use: ``%NAME%`` and
    ``C:\\Program Files (x86)\\...`` for cmd, a leading ``$env:NAME`` / ``${env:NAME}`` for PowerShell
    (expanded, the rest literal). Raises ValueError when the value cannot be made safe there (callers
    add file/line).
    """
    if context is Context.UNCERTAIN:
        if _PLAIN_WORD_RE.fullmatch(value) is None:
            raise ValueError(
                "the command has a '#' whose meaning depends on PowerShell's parsing mode before this "
                "placeholder, so only letters, digits and . _ - can be inserted safely"
            )
        return value
    if executor is ExecutorName.POWERSHELL:
        if arg_type is ArgType.PATH:
            env_path = _ps_env_path(context, value)
            if env_path is not None:
                return env_path
        if context is Context.DOUBLE:
            return _ps_double(value)
        if context is Context.HERE_SINGLE:
            return value  # literal up to "\n'@", and control characters were refused
        doubled = re.sub("[" + _PS_SINGLE_QUOTES + "]", lambda m: m.group(0) * 2, value)
        return doubled if context is Context.SINGLE else f"'{doubled}'"
    if executor is ExecutorName.COMMAND_PROMPT:
        checked = _cmd_path_rest(value) if arg_type is ArgType.PATH else value
        if _CMD_ALLOWED_RE.fullmatch(checked) is None:
            bad = sorted({ch for ch in checked if _CMD_ALLOWED_RE.fullmatch(ch) is None})
            extra = "; paths may also hold %NAME% and (x86)" if arg_type is ArgType.PATH else ""
            raise ValueError(
                f"characters {''.join(bad)!r} are not allowed in a cmd argument "
                f"(allowed: letters, digits, space and . _ - : \\ / , @ = +{extra})"
            )
        # A %NAME% path is quoted too: its expansion (C:\\Program Files (x86)) may hold spaces and
        # parentheses, and cmd expands before it parses (a bare ")" would close an "if (...)" block).
        if context is Context.BARE and (" " in value or value == "" or (arg_type is ArgType.PATH and "%" in value)):
            return f'"{value}"'
        return value
    if context is Context.HEREDOC:
        return re.sub(r"[\\$`]", lambda m: "\\" + m.group(0), value)
    if context is Context.HEREDOC_LITERAL:
        return value  # literal up to the delimiter line; substitute() proves no override forms one
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
    in_heredoc: list[str] = []
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
                    out.append(quote_value(executor, context, value, declared.type))
                except ValueError as exc:
                    raise _error(test, name, f"override for {name!r} refused: {exc}") from exc
                if context in (Context.HEREDOC, Context.HEREDOC_LITERAL):
                    in_heredoc.append(name)
        else:
            out.append(with_atomics_folder(_default_value(test, name, overrides), atomics_folder))
        last = m.end()
    out.append(with_atomics_folder(template[last:], atomics_folder))
    text = "".join(out)
    if in_heredoc:
        # A value can't hold a newline, but it can complete a line that equals the delimiter
        # (``#{v}`` alone on a line, v = EOF): the rest of the body would then run as commands.
        plain = substitute(template, test, executor, {}, atomics_folder=atomics_folder)
        if _heredoc_ends(text) != _heredoc_ends(plain):
            raise _error(test, in_heredoc[0], f"override for {in_heredoc[0]!r} refused: it would end the "
                         "here-document it is placed in", hint="choose a value that is not the delimiter word")
    return text


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
