"""Input arguments: defaults as written, overrides type-checked and quoted per executor and context.

The property tests use independent oracles: a small PowerShell tokenizer plus the Windows argv
rules powershell.exe applies to its command line, real ``sh -c`` / ``bash -c`` runs with printf,
and a cmd metacharacter skeleton.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.content.atomics import load_atomic_file
from harness.errors import ContentError
from harness.execution.arguments import Context, check_type, placeholder_contexts, substitute
from harness.execution.executors import new_run_marker, render_command_line
from harness.model import ArgType, AtomicTest, Executor, ExecutorName, InputArgument

ROOT = Path(__file__).resolve().parents[1]
SQ = "'\u2018\u2019\u201a\u201b"
DQ = '"\u201c\u201d\u201e'

# Any text a user could type on a CLI or in a lab file, minus control characters (refused by design).
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    max_size=40,
)
HOSTILE = ["'; touch /tmp/pwned; '", '"; calc; "', "$(id)", "`id`", "a'b\"c$d`e\\", "\\", "x\\",
           "\u2019; calc; \u2018", "\u201d; calc; \u201c", "--% & | ^ < >", "' + $(calc) + '", "$'x'"]


def _test(executor: ExecutorName, command: str, arg_type: ArgType = ArgType.STRING) -> AtomicTest:
    return AtomicTest(
        technique="T0000", name="t", guid="00000000-0000-0000-0000-000000000000", description="d",
        platforms=("linux",), executor=Executor(name=executor, command=command),
        input_arguments={"v": InputArgument("v", "value", arg_type, "DEFAULT")},
        source="atomics/T0000/T0000.yaml", line=7,
    )


# --- PowerShell oracle -----------------------------------------------------------------------------


class PsLexError(Exception):
    pass


def ps_tokens(script: str) -> list[tuple[str, str]]:
    """Tokens of a simple PowerShell command: words, operators, and decoded string literals.

    Raises PsLexError on an unterminated string or an unescaped ``$`` in a double-quoted string
    (that would expand, i.e. the value would not be a literal).
    """
    out: list[tuple[str, str]] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in " \t\n":
            i += 1
        elif c in SQ:
            j, buf = i + 1, ""
            while True:
                if j >= n:
                    raise PsLexError("unterminated '")
                if script[j] in SQ:
                    if j + 1 < n and script[j + 1] in SQ:
                        buf += script[j + 1]
                        j += 2
                        continue
                    j += 1
                    break
                buf += script[j]
                j += 1
            out.append(("str", buf))
            i = j
        elif c in DQ:
            j, buf = i + 1, ""
            while True:
                if j >= n:
                    raise PsLexError('unterminated "')
                ch = script[j]
                if ch == "`":
                    buf += script[j + 1]
                    j += 2
                    continue
                if ch == "$":
                    raise PsLexError("unescaped $ expands in a double-quoted string")
                if ch in DQ:
                    if j + 1 < n and script[j + 1] in DQ:
                        buf += script[j + 1]
                        j += 2
                        continue
                    j += 1
                    break
                buf += ch
                j += 1
            out.append(("str", buf))
            i = j
        elif c in ";|&(){}":
            out.append(("op", c))
            i += 1
        else:
            j = i
            while j < n and script[j] not in " \t\n;|&(){}" + SQ + DQ:
                j += 1
            out.append(("word", script[i:j]))
            i = j
    return out


def windows_argv(command_line: str) -> list[str]:
    """CommandLineToArgvW rules (the CLR parses powershell.exe's arguments the same way)."""
    args: list[str] = []
    i, n = 0, len(command_line)
    # argv[0]: up to the closing quote, no escapes.
    if command_line.startswith('"'):
        end = command_line.index('"', 1)
        args.append(command_line[1:end])
        i = end + 1
    while i < n:
        while i < n and command_line[i] in " \t":
            i += 1
        if i >= n:
            break
        buf, quoted = "", False
        while i < n and (quoted or command_line[i] not in " \t"):
            if command_line[i] == "\\":
                j = i
                while j < n and command_line[j] == "\\":
                    j += 1
                count = j - i
                if j < n and command_line[j] == '"':
                    buf += "\\" * (count // 2)
                    if count % 2:
                        buf += '"'
                        i = j + 1
                    else:
                        i = j  # the quote toggles below
                    continue
                buf += "\\" * count
                i = j
                continue
            if command_line[i] == '"':
                quoted = not quoted
                i += 1
                continue
            buf += command_line[i]
            i += 1
        args.append(buf)
    return args


def _collapse(text: str) -> str:
    return re.sub(r"[ \t]+", " ", text)


PS_TEMPLATES = {
    Context.BARE: ("Write-Output A #{v} Z", lambda v: [("word", "Write-Output"), ("word", "A"), ("str", v),
                                                       ("word", "Z")]),
    Context.SINGLE: ("Write-Output 'a#{v}z'", lambda v: [("word", "Write-Output"), ("str", f"a{v}z")]),
    Context.DOUBLE: ('Write-Output "a#{v}z"', lambda v: [("word", "Write-Output"), ("str", f"a{v}z")]),
}


@pytest.mark.parametrize("context", list(PS_TEMPLATES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_powershell_override_stays_one_literal(context: Context, value: str) -> None:
    template, expected = PS_TEMPLATES[context]
    test = _test(ExecutorName.POWERSHELL, template)
    assert placeholder_contexts(ExecutorName.POWERSHELL, template) == [("v", context)]
    script = substitute(template, test, ExecutorName.POWERSHELL, {"v": value})
    assert ps_tokens(script) == expected(value)
    # The Windows command-line layer: what powershell.exe re-joins from its argv is the script
    # (whitespace runs outside argv quotes collapse; no character is lost, added or reordered).
    marker = new_run_marker()
    line = render_command_line(ExecutorName.POWERSHELL, script, marker=marker)
    argv = windows_argv(line)
    assert argv[0] == "powershell.exe"
    assert _collapse(" ".join(argv[1:])) == _collapse("& {" + script.strip() + "} #" + marker)


@pytest.mark.parametrize("value", HOSTILE)
def test_powershell_hostile_examples(value: str) -> None:
    for template, expected in PS_TEMPLATES.values():
        script = substitute(template, _test(ExecutorName.POWERSHELL, template), ExecutorName.POWERSHELL, {"v": value})
        assert ps_tokens(script) == expected(value)


# --- sh / bash: real shells ------------------------------------------------------------------------

SH_TEMPLATES = {
    "bare": ("printf '%s|' #{v}", lambda v: f"{v}|"),
    "double": ("printf '%s|' \"a#{v}z\"", lambda v: f"a{v}z|"),
    "single": ("printf '%s|' 'a#{v}z'", lambda v: f"a{v}z|"),
    "nested": ("printf '%s|' \"$(printf '%s' \"<#{v}>\")\"", lambda v: f"<{v}>|"),
}
_ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


def _run(line: str) -> str:
    done = subprocess.run(line, shell=True, capture_output=True, env=_ENV, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


@pytest.mark.parametrize("shell", [ExecutorName.SH, ExecutorName.BASH])
@pytest.mark.parametrize("form", list(SH_TEMPLATES))
@settings(max_examples=40, deadline=None)
@given(value=values)
@example(value="'; touch /tmp/atomiclab_pwned; '")
@example(value='"; touch /tmp/atomiclab_pwned; "')
@example(value="$(touch /tmp/atomiclab_pwned)`touch /tmp/atomiclab_pwned`\\")
def test_posix_override_round_trips_through_real_shell(shell: ExecutorName, form: str, value: str) -> None:
    template, expected = SH_TEMPLATES[form]
    script = substitute(template, _test(shell, template), shell, {"v": value})
    line = render_command_line(shell, script, marker=new_run_marker())
    assert _run(line) == expected(value)
    assert not Path("/tmp/atomiclab_pwned").exists()


@settings(max_examples=40, deadline=None)
@given(value=values)
def test_bash_ansi_c_string_round_trips(value: str) -> None:
    template = "printf '%s|' $'a#{v}z'"
    assert placeholder_contexts(ExecutorName.BASH, template) == [("v", Context.ANSI_C)]
    script = substitute(template, _test(ExecutorName.BASH, template), ExecutorName.BASH, {"v": value})
    assert _run(render_command_line(ExecutorName.BASH, script)) == f"a{value}z|"


# --- cmd: strict allow-list ------------------------------------------------------------------------

CMD_ALLOWED = st.text(
    alphabet="abcXYZ0189 ._-:\\/,@=+", max_size=30
)


def _cmd_skeleton(line: str) -> list[tuple[int, str]]:
    """Metacharacters cmd acts on, outside quotes, numbered by occurrence (plus % and ! anywhere)."""
    found: list[str] = []
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            found.append('"')
        elif ch in "%!" or (not quoted and ch in "&|<>^()"):
            found.append(ch)
    return list(enumerate(found))


@pytest.mark.parametrize("template", ["nbtscan.exe #{v} -x", 'type "#{v}" > nul', "echo a#{v}b"])
@settings(max_examples=200, deadline=None)
@given(value=CMD_ALLOWED)
def test_cmd_allowed_values_never_add_metacharacters(template: str, value: str) -> None:
    test = _test(ExecutorName.COMMAND_PROMPT, template)
    line = render_command_line(ExecutorName.COMMAND_PROMPT,
                               substitute(template, test, ExecutorName.COMMAND_PROMPT, {"v": value}))
    benign = render_command_line(ExecutorName.COMMAND_PROMPT,
                                 substitute(template, test, ExecutorName.COMMAND_PROMPT, {"v": "x"}))
    bare = not template.startswith("type")
    quotes_added = 2 if bare and (" " in value or value == "") else 0
    assert len(_cmd_skeleton(line)) == len(_cmd_skeleton(benign)) + quotes_added
    assert value in line


@settings(max_examples=200, deadline=None)
@given(value=values.filter(lambda v: re.fullmatch(r"[A-Za-z0-9 ._\-:\\/,@=+]*", v) is None))
def test_cmd_refuses_everything_outside_the_allow_list(value: str) -> None:
    template = "nbtscan.exe #{v}"
    with pytest.raises(ContentError, match=r"atomics/T0000/T0000\.yaml:7: input_arguments\.v: override"):
        substitute(template, _test(ExecutorName.COMMAND_PROMPT, template), ExecutorName.COMMAND_PROMPT, {"v": value})


@pytest.mark.parametrize("value", ["a%PATH%", "!x!", "a^b", "a&calc", "a|b", "<x", ">x", 'a"b', "(x)",
                                   "\uff02", "caf\u00e9"])
def test_cmd_refuses_metacharacters_and_non_ascii(value: str) -> None:
    template = "nbtscan.exe #{v}"
    with pytest.raises(ContentError, match="not allowed in a cmd argument"):
        substitute(template, _test(ExecutorName.COMMAND_PROMPT, template), ExecutorName.COMMAND_PROMPT, {"v": value})


# --- types, defaults, errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg_type", "good", "bad"),
    [
        (ArgType.INTEGER, ["5", "-3", "+12"], ["5.0", "5; calc", "", "٣"]),
        (ArgType.FLOAT, ["1.5", "-2", ".5", "1e3"], ["1.5.5", "nan", "1,5"]),
        (ArgType.URL, ["https://example.org/x?y=1", "file:///tmp/x", "example.org"], ["javascript:alert(1)",
                                                                       "https://a b"]),
        (ArgType.PATH, ["C:\\x y\\z.exe", "/tmp/x"], ["", "   ", "a\nb", "a\x00b"]),
        (ArgType.STRING, ["anything 'at' all", ""], ["line\nbreak", "nul\x00"]),
    ],
)
def test_type_checks(arg_type: ArgType, good: list[str], bad: list[str]) -> None:
    assert all(check_type(arg_type, v) is None for v in good)
    assert all(check_type(arg_type, v) is not None for v in bad)


def test_integer_overrides_are_bare_and_wrong_types_name_file_and_argument() -> None:
    test = _test(ExecutorName.POWERSHELL, "1..#{v} | % { $_ }", ArgType.INTEGER)
    assert substitute("1..#{v} | % { $_ }", test, ExecutorName.POWERSHELL, {"v": "7"}) == "1..7 | % { $_ }"
    with pytest.raises(ContentError) as info:
        substitute("1..#{v}", test, ExecutorName.POWERSHELL, {"v": "7; calc"})
    assert str(info.value).startswith("atomics/T0000/T0000.yaml:7: input_arguments.v: override for integer")


def test_unknown_override_and_unknown_placeholder() -> None:
    test = _test(ExecutorName.SH, "echo #{v}")
    with pytest.raises(ContentError, match=r"unknown input argument 'nope'.*declared: v"):
        substitute("echo #{v}", test, ExecutorName.SH, {"nope": "1"})
    with pytest.raises(ContentError, match=r"placeholder #\{other\} names no input argument"):
        substitute("echo #{other}", test, ExecutorName.SH, {})


def test_t1046_defaults_substituted_as_written_and_contexts_found() -> None:
    atomics = load_atomic_file(ROOT / "atomics" / "T1046" / "T1046.yaml")
    nmap = atomics.tests[0]
    assert nmap.executor.command is not None
    assert placeholder_contexts(ExecutorName.POWERSHELL, nmap.executor.command) == [
        ("nmap_path", Context.DOUBLE), ("ports", Context.BARE), ("output_file", Context.DOUBLE),
        ("target", Context.BARE)]
    script = substitute(nmap.executor.command, nmap, ExecutorName.POWERSHELL, {})
    assert script.strip() == ('& "C:\\Program Files (x86)\\Nmap\\nmap.exe" -sV -p 22,80,135,445,3389 '
                              '-oN "$env:TEMP\\df00tech-nmap-test.txt" 127.0.0.1')
    # An override of the same argument is quoted for its context, the default was not.
    over = substitute(nmap.executor.command, nmap, ExecutorName.POWERSHELL,
                      {"output_file": "C:\\t\\$x.txt", "target": "10.0.0.1"})
    assert '-oN "C:\\t\\`$x.txt"' in over and over.strip().endswith("'10.0.0.1'")
    netstat = atomics.tests[4]
    assert netstat.executor.command is not None
    assert substitute(netstat.executor.command, netstat, ExecutorName.COMMAND_PROMPT, {}).strip() == (
        "netstat -ano | findstr LISTENING > %TEMP%\\df00tech-netstat.txt")
    with pytest.raises(ContentError):
        substitute(netstat.executor.command, netstat, ExecutorName.COMMAND_PROMPT,
                   {"output_file": "%TEMP%\\x.txt & calc"})


def test_contexts_skip_comments_here_strings_and_subexpressions() -> None:
    ps = "# note #{v}\n$a = @'\n#{v}\n'@\n\"x $(Get-Item '#{v}') #{v}\""
    assert [c for _, c in placeholder_contexts(ExecutorName.POWERSHELL, ps)] == [
        Context.BARE, Context.HERE_SINGLE, Context.SINGLE, Context.DOUBLE]
    sh = "echo \"$(echo '#{v}') #{v}\" `echo #{v}` # #{v}"
    assert [c for _, c in placeholder_contexts(ExecutorName.SH, sh)] == [
        Context.SINGLE, Context.DOUBLE, Context.BARE, Context.BARE]
