"""Argument quoting (issue 16, quoting items; issue 12, argument types as ART uses them).

Reproductions first: a ``#`` inside a PowerShell word (``see#note``) was read as a comment start, so
an override ``x'; Start-Process calc; '`` became its own statement; a placeholder inside an sh
here-document was not treated as one, so ``$(id > FILE)`` ran. Then properties over comments,
here-documents and subexpressions for PowerShell (a tokenizer oracle that follows PowerShell's
ForceStartNewToken rule for ``#``), sh/bash (real shells) and cmd (a metacharacter skeleton).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from harness.errors import ContentError
from harness.execution.arguments import Context, check_type, placeholder_contexts, substitute
from harness.execution.executors import render_command_line
from harness.model import ArgType, AtomicTest, Executor, ExecutorName, InputArgument

SQ = "'\u2018\u2019\u201a\u201b"
DQ = '"\u201c\u201d\u201e'
BREAK = " \t\n{}();,|&"
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    max_size=30,
)
_ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


def _test(executor: ExecutorName, command: str, arg_type: ArgType = ArgType.STRING) -> AtomicTest:
    return AtomicTest(
        technique="T0000", name="t", guid="00000000-0000-0000-0000-000000000000", description="d",
        platforms=("linux",), executor=Executor(name=executor, command=command),
        input_arguments={"v": InputArgument("v", "value", arg_type, "DEFAULT")},
        source="atomics/T0000/T0000.yaml", line=7,
    )


def _sub(executor: ExecutorName, template: str, value: str, arg_type: ArgType = ArgType.STRING) -> str:
    return substitute(template, _test(executor, template, arg_type), executor, {"v": value})


# --- PowerShell oracle: words, strings, comments (a '#' starts one only at a token start) ------------


def ps_tokens(script: str) -> list[tuple[str, str]]:
    """Tokens of a simple command-mode PowerShell script; comments are dropped. ValueError when a
    string does not end or a double-quoted string holds an unescaped ``$`` (it would expand)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in " \t\n":
            i += 1
        elif c == "#":  # at a token start: a comment to the end of the line
            end = script.find("\n", i)
            i = n if end < 0 else end
        elif c in SQ:
            j, buf = i + 1, ""
            while True:
                if j >= n:
                    raise ValueError("unterminated '")
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
                    raise ValueError('unterminated "')
                ch = script[j]
                if ch == "`":
                    buf += script[j + 1]
                    j += 2
                    continue
                if ch == "$":
                    raise ValueError("unescaped $ in a double-quoted string")
                if ch in DQ:
                    j += 1
                    break
                buf += ch
                j += 1
            out.append(("str", buf))
            i = j
        elif c in ";|&(){},":
            out.append(("op", c))
            i += 1
        else:  # a generic word: '#' inside it is part of it (PowerShell's ForceStartNewToken set)
            j = i
            while j < n and script[j] not in BREAK + SQ + DQ:
                j += 1
            out.append(("word", script[i:j]))
            i = j
    return out


def test_repro_hash_inside_a_powershell_word_is_not_a_comment() -> None:
    template = "Write-Output see#note '#{v}'"
    script = _sub(ExecutorName.POWERSHELL, template, "x'; Start-Process calc; '")
    assert ps_tokens(script) == [("word", "Write-Output"), ("word", "see#note"),
                                 ("str", "x'; Start-Process calc; '")]
    assert placeholder_contexts(ExecutorName.POWERSHELL, template) == [("v", Context.SINGLE)]


def test_hash_after_a_token_break_is_still_a_comment() -> None:
    ps = "Write-Output a #note '#{v}\nWrite-Output '#{v}'"
    assert [c for _, c in placeholder_contexts(ExecutorName.POWERSHELL, ps)] == [Context.BARE, Context.SINGLE]


def test_hash_whose_meaning_depends_on_the_mode_admits_plain_words_only() -> None:
    # `$x#y` is one word in command mode but a variable and a comment in expression mode.
    template = "$a = $x#y '#{v}'\nWrite-Output '#{v}'"
    assert [c for _, c in placeholder_contexts(ExecutorName.POWERSHELL, template)] == [Context.UNCERTAIN] * 2
    assert _sub(ExecutorName.POWERSHELL, template, "plain-word_1.0") == (
        "$a = $x#y 'plain-word_1.0'\nWrite-Output 'plain-word_1.0'")
    with pytest.raises(ContentError, match="depends on PowerShell's parsing mode"):
        _sub(ExecutorName.POWERSHELL, template, "x'; calc; '")


PS_FORMS = {
    "word-hash-single": ("Write-Output see#note 'a#{v}z'", lambda v: [("word", "Write-Output"),
                                                                     ("word", "see#note"), ("str", f"a{v}z")]),
    "comment-then-line": ("Write-Output x # it's #{v}\nWrite-Output #{v}",
                          lambda v: [("word", "Write-Output"), ("word", "x"), ("word", "Write-Output"), ("str", v)]),
    "subexpression": ('Write-Output "a$(\'#{v}\')z"', None),
    "url-fragment": ("Write-Output http://h/#frag \"#{v}\"", lambda v: [("word", "Write-Output"),
                                                                       ("word", "http://h/#frag"), ("str", v)]),
}


@pytest.mark.parametrize("form", [f for f, (_, e) in PS_FORMS.items() if e is not None])
@settings(max_examples=150, deadline=None)
@given(value=values)
@example(value="x'; Start-Process calc; '")
@example(value='"; calc; "')
@example(value="$(calc)")
def test_powershell_override_stays_one_literal_around_comments(form: str, value: str) -> None:
    template, expected = PS_FORMS[form]
    assert expected is not None
    assert ps_tokens(_sub(ExecutorName.POWERSHELL, template, value)) == expected(value)


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_powershell_subexpression_in_double_quotes_keeps_the_value_in_its_single_quotes(value: str) -> None:
    script = _sub(ExecutorName.POWERSHELL, PS_FORMS["subexpression"][0], value)
    inner = script[len('Write-Output "a$('):-len(')z"')]
    assert ps_tokens(inner) == [("str", value)]


# --- sh / bash here-documents: real shells -----------------------------------------------------------


def _run(executor: ExecutorName, script: str, cwd: Path) -> str:
    done = subprocess.run(render_command_line(executor, script), shell=True, capture_output=True, env=_ENV,
                          cwd=cwd, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


def test_repro_placeholder_in_a_heredoc_does_not_run(tmp_path: Path) -> None:
    template = "cat <<EOF\nvalue: #{v}\nEOF"
    assert placeholder_contexts(ExecutorName.SH, template) == [("v", Context.HEREDOC)]
    out = _run(ExecutorName.SH, _sub(ExecutorName.SH, template, "$(id > PWNED)`id > PWNED2`"), tmp_path)
    assert out == "value: $(id > PWNED)`id > PWNED2`\n"
    assert list(tmp_path.iterdir()) == []


HEREDOCS = {
    "unquoted": "cat <<EOF\na#{v}z\nEOF\necho done",
    "quoted": "cat <<'EOF'\na#{v}z\nEOF\necho done",
    "dash-tabs": "cat <<-END\n\ta#{v}z\n\tEND\necho done",
    "subexpression": "cat <<EOF\n$(printf '%s' 'a#{v}z')\nEOF\necho done",
    "two-bodies": "cat <<A; cat <<'B'\nA-#{v}\nA\nB-#{v}\nB\necho done",
}
EXPECTED = {
    "unquoted": lambda v: f"a{v}z\ndone\n",
    "quoted": lambda v: f"a{v}z\ndone\n",
    "dash-tabs": lambda v: f"a{v}z\ndone\n",
    "subexpression": lambda v: f"a{v}z\ndone\n",
    "two-bodies": lambda v: f"A-{v}\nB-{v}\ndone\n",
}


@pytest.mark.parametrize("shell", [ExecutorName.SH, ExecutorName.BASH])
@pytest.mark.parametrize("form", list(HEREDOCS))
@settings(max_examples=25, deadline=None)
@given(value=values.filter(lambda v: v.strip() not in ("EOF", "END", "A", "B")))
@example(value="$(touch PWNED)")
@example(value="`touch PWNED`\\")
@example(value="'; touch PWNED; '")
def test_heredoc_override_round_trips_through_real_shell(shell: ExecutorName, form: str, value: str,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    cwd = tmp_path_factory.mktemp("hd")
    assert _run(shell, _sub(shell, HEREDOCS[form], value), cwd) == EXPECTED[form](value)
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("template", ["cat <<EOF\n#{v}\nEOF\necho x", "cat <<'EOF'\nE#{v}\nEOF\necho x",
                                      "cat <<-EOF\n\t#{v}\nEOF\necho x"])
def test_a_value_that_would_end_the_heredoc_is_refused(template: str) -> None:
    value = "OF" if "E#{v}" in template else "EOF"
    with pytest.raises(ContentError, match="would end the here-document"):
        _sub(ExecutorName.SH, template, value)


@pytest.mark.parametrize("template", ["echo $((1<<2))\nprintf '%s|' #{v}", "((x = 1 << 2))\nprintf '%s|' #{v}",
                                      "echo $(( (1<<2) + $(echo 1) ))\nprintf '%s|' #{v}"])
def test_arithmetic_shift_is_not_a_heredoc(template: str, tmp_path: Path) -> None:
    assert [c for _, c in placeholder_contexts(ExecutorName.BASH, template)] == [Context.BARE]
    out = _run(ExecutorName.BASH, _sub(ExecutorName.BASH, template, "x; touch PWNED"), tmp_path)
    assert out.endswith("x; touch PWNED|") and list(tmp_path.iterdir()) == []


def test_comment_before_heredoc_and_herestring_are_not_heredocs() -> None:
    assert placeholder_contexts(ExecutorName.BASH, "cat <<<#{v}\necho #{v}") == [("v", Context.BARE)] * 2
    assert placeholder_contexts(ExecutorName.SH, "cat <<EOF # note #{v}\n#{v}\nEOF\n#{v}") == [
        ("v", Context.BARE), ("v", Context.HEREDOC), ("v", Context.BARE)]


# --- cmd and argument types as ART uses them -----------------------------------------------------------


def _cmd_skeleton(line: str) -> list[str]:
    found, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            found.append('"')
        elif ch == "!" or (not quoted and ch in "&|<>^()"):
            found.append(ch)
    return found


CMD_PATHS = st.builds(
    lambda a, env, x86, b: f"{a}{env}{x86}{b}",
    st.text(alphabet="abcXYZ0189 ._-:\\/", max_size=12),
    st.sampled_from(["", "%TEMP%", "%ProgramFiles(x86)%", "%SystemRoot%"]),
    st.sampled_from(["", " (x86)"]),
    st.text(alphabet="abc019 ._-\\", max_size=12),
).filter(lambda v: v.strip() != "")


@pytest.mark.parametrize("template", ["type #{v}", 'type "#{v}" > nul', "if exist #{v} (echo yes)"])
@settings(max_examples=200, deadline=None)
@given(value=CMD_PATHS)
def test_cmd_path_with_env_and_x86_adds_no_metacharacter_outside_quotes(template: str, value: str) -> None:
    test = _test(ExecutorName.COMMAND_PROMPT, template, ArgType.PATH)
    line = substitute(template, test, ExecutorName.COMMAND_PROMPT, {"v": value})
    benign = substitute(template, test, ExecutorName.COMMAND_PROMPT, {"v": "x"})
    quoted = not template.startswith('type "') and (" " in value or "%" in value)
    assert _cmd_skeleton(line) == (
        _cmd_skeleton(benign.replace("x", '""', 1)) if quoted else _cmd_skeleton(benign))
    assert value in line


@pytest.mark.parametrize("value", ["%TEMP%&calc", "a%b", "(calc)", "x) & (calc", "%x%%y", "!x!", "C:\\a$b"])
def test_cmd_path_still_refuses_metacharacters(value: str) -> None:
    with pytest.raises(ContentError, match="not allowed in a cmd argument"):
        _sub(ExecutorName.COMMAND_PROMPT, "type #{v}", value, ArgType.PATH)


def test_cmd_string_arguments_keep_the_strict_allow_list() -> None:
    with pytest.raises(ContentError, match="not allowed in a cmd argument"):
        _sub(ExecutorName.COMMAND_PROMPT, "type #{v}", "%TEMP%\\x")
    assert _sub(ExecutorName.COMMAND_PROMPT, "type #{v}", "C:\\Program Files (x86)\\x",
                ArgType.PATH) == 'type "C:\\Program Files (x86)\\x"'


def test_powershell_env_paths_expand_and_the_rest_stays_literal() -> None:
    assert _sub(ExecutorName.POWERSHELL, "Get-Item #{v}", "$env:TEMP\\a $b`c.txt", ArgType.PATH) == (
        'Get-Item "${env:TEMP}\\a `$b``c.txt"')
    assert _sub(ExecutorName.POWERSHELL, 'Get-Item "#{v}"', "${env:ProgramFiles(x86)}\\x", ArgType.PATH) == (
        'Get-Item "${env:ProgramFiles(x86)}\\x"')
    with pytest.raises(ContentError, match="cannot expand inside"):
        _sub(ExecutorName.POWERSHELL, "Get-Item '#{v}'", "$env:TEMP\\x", ArgType.PATH)
    # a string argument is never expanded
    assert _sub(ExecutorName.POWERSHELL, "Get-Item #{v}", "$env:TEMP") == "Get-Item '$env:TEMP'"


@settings(max_examples=200, deadline=None)
@given(rest=values.filter(lambda r: not r[:1].isalnum() and not r.startswith("_")))
def test_powershell_env_path_rest_is_one_literal(rest: str) -> None:
    script = _sub(ExecutorName.POWERSHELL, "Write-Output #{v}", "$env:TEMP" + rest, ArgType.PATH)
    body = script[len('Write-Output "${env:TEMP}'):]
    assert ps_tokens('"' + body) == [("str", rest)]


@pytest.mark.parametrize("value", ["8.8.8.8", "dns.example.com", "target.example.com", "127.0.0.1",
                                   "127.0.0.1:8080", "[::1]:443", "https://example.org/x?y=1"])
def test_url_accepts_ips_hosts_and_urls(value: str) -> None:
    assert check_type(ArgType.URL, value) is None


@pytest.mark.parametrize("value", ["javascript:alert(1)", "a b", "a;b", "$(id)", ""])
def test_url_still_refuses_what_is_neither(value: str) -> None:
    assert check_type(ArgType.URL, value) is not None
