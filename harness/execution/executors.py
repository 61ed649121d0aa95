"""Render an atomic's command the way Invoke-AtomicRedTeam launches it, plus the run marker.

Command lines (Invoke-AtomicRedTeam ``Private/Invoke-ExecuteCommand.ps1``, and the real Sysmon 1
``CommandLine`` values in shared/telemetry/public/atomic-evtx):

* ``powershell``: ``"powershell.exe" & {<command>}``. The command is trimmed, newlines are kept,
  and every ``"`` becomes ``\\""`` (ART's replace; powershell.exe splits its command line into argv
  and re-joins it, and ``\\""`` survives that as one ``"``). Recordings show exactly this, e.g.
  ``"powershell.exe" & {Get-Service -Name \\""Remote Desktop Services\\""}``. One deliberate
  difference: a run of backslashes directly before a ``"`` is doubled first, because under the
  Windows argv rules ``\\\\""`` would otherwise eat the quote (ART produces a broken line there).
* ``command_prompt``: ``"cmd.exe" /c <command>`` with the trimmed command's newlines replaced by
  `` & `` (``"cmd.exe" /c netstat & net use & net sessions``).
* ``sh`` / ``bash``: ``sh -c '<command>'`` / ``bash -c '<command>'``: the trimmed script, newlines
  kept, POSIX single-quoted as a whole (``'`` becomes ``'\\''``) so it reaches the shell byte for
  byte. ART double-quotes instead, which lets the *outer* shell expand ``$`` and backticks once
  more; single quotes avoid that second expansion.
* ``manual``: no command line; :func:`render_command_line` raises and the runner skips the test.

Run marker
----------
:func:`new_run_marker` returns ``atomiclab_run_`` + 32 lowercase hex digits (a UUID4), unique per
execution, so telemetry attribution can find the root process of *this* run even when the same
test runs twice at once on one host. It is placed outside the original command text:

* powershell: `` #<marker>`` after the closing brace - a PowerShell comment;
* command_prompt: `` & rem <marker>`` at the end - a no-op cmd statement;
* sh/bash: ``: <marker>; `` at the start of the ``-c`` script - the null command.

Why it cannot change whether a detection fires: the original command text is unchanged and kept
contiguous (the marker is only appended/prepended with a separator), so every "contains",
"startswith" (cmd/powershell) or token rule over the command keeps matching what it matched. The
marker's alphabet is ``[a-z0-9_]`` - no spaces, dashes, slashes, quotes or dots - so it cannot form a
command-line flag (``-sV``, ``/c``), a path, an address, a port list or a tool name that a rule
looks for. Rules anchored at the very end of the command line (``endswith``) or at the start of
an sh script are the only ones that could see a difference; the test
``tests/test_exec_marker_detection.py`` evaluates the project's detection rules with and without
the marker and requires identical outcomes.
"""

from __future__ import annotations

import base64
import re
import uuid

from harness.errors import ContentError
from harness.model import ExecutorName

#: The exact shape of a run marker.
RUN_MARKER_RE = re.compile(r"atomiclab_run_[0-9a-f]{32}")

_WINDOWS_EXECUTORS = frozenset({ExecutorName.POWERSHELL, ExecutorName.COMMAND_PROMPT})


def new_run_marker() -> str:
    """A fresh run marker: ``atomiclab_run_<32 lowercase hex>``."""
    return f"atomiclab_run_{uuid.uuid4().hex}"


def is_executable(executor: ExecutorName) -> bool:
    """False for ``manual`` (the runner skips such tests with a reason)."""
    return executor is not ExecutorName.MANUAL


def is_windows_executor(executor: ExecutorName) -> bool:
    """True for powershell and command_prompt (their command lines are Windows command lines)."""
    return executor in _WINDOWS_EXECUTORS


def find_run_marker(command_line: str) -> str | None:
    """The run marker carried by ``command_line``, or None."""
    match = RUN_MARKER_RE.search(command_line)
    return match.group(0) if match else None


def posix_single_quote(text: str) -> str:
    """``text`` as one POSIX single-quoted word (``'`` becomes ``'\\''``); exact for every shell."""
    return "'" + text.replace("'", "'\\''") + "'"


def _escape_for_windows_argv(command: str) -> str:
    """ART's ``"`` -> ``\\""`` with backslash runs before a quote doubled (Windows argv rules)."""
    doubled = re.sub(r'(\\+)"', lambda m: m.group(1) * 2 + '"', command)
    return doubled.replace('"', '\\""')


def _check_marker(marker: str | None) -> None:
    if marker is not None and RUN_MARKER_RE.fullmatch(marker) is None:
        raise ValueError(f"not a run marker: {marker!r} (use new_run_marker())")


def render_command_line(executor: ExecutorName, command: str, *, marker: str | None = None) -> str:
    """The full command line for ``command`` (input arguments already substituted).

    With ``marker`` (from :func:`new_run_marker`) the line carries it as documented in the module
    docstring. Raises ContentError for ``manual`` or an empty command.
    """
    _check_marker(marker)
    if not is_executable(executor):
        raise ContentError(
            "the manual executor has no command line", hint="the runner skips manual tests with a reason"
        )
    # ART trims the command (YAML block scalars end with a newline); CRLF files behave as LF.
    text = command.replace("\r\n", "\n").strip()
    if not text:
        raise ContentError(f"empty {executor.value} command", hint="give the executor a command")
    if executor is ExecutorName.POWERSHELL:
        line = '"powershell.exe" & {' + _escape_for_windows_argv(text) + "}"
        return f"{line} #{marker}" if marker else line
    if executor is ExecutorName.COMMAND_PROMPT:
        line = '"cmd.exe" /c ' + text.replace("\n", " & ")
        return f"{line} & rem {marker}" if marker else line
    script = f": {marker}; {text}" if marker else text
    shell = "bash" if executor is ExecutorName.BASH else "sh"
    return f"{shell} -c {posix_single_quote(script)}"


def split_windows_command_line(command_line: str) -> tuple[str, str]:
    """Split ``"image" arguments`` (the shape this module renders) into (image, arguments)."""
    if command_line.startswith('"'):
        end = command_line.find('"', 1)
        if end > 1:
            return command_line[1:end], command_line[end + 1 :].removeprefix(" ")
    image, _, rest = command_line.partition(" ")
    return image, rest


def windows_launcher(command_line: str, *, deadline_s: float | None = None) -> str:
    """A ``powershell.exe -EncodedCommand`` line that starts ``command_line`` with its exact text.

    For targets whose remote shell would re-interpret the line (Windows OpenSSH runs commands via
    ``cmd.exe /c`` or PowerShell; real WinRS via ``cmd.exe /c``): the launcher builds a
    ``ProcessStartInfo`` like Invoke-AtomicRedTeam's Invoke-Process does, so the child's command
    line is exactly ``command_line`` (.NET writes ``"image" arguments``). It relays stdout/stderr
    and the exit code. With ``deadline_s`` it kills the child's whole process tree
    (``taskkill /T /F``) when the deadline passes and exits with code 124.
    """
    image, arguments = split_windows_command_line(command_line)

    def ps_literal(value: str) -> str:
        return "'" + re.sub("['\u2018\u2019\u201a\u201b]", lambda m: m.group(0) * 2, value) + "'"

    wait = (
        f"if (-not $p.WaitForExit({max(1, int(deadline_s * 1000))})) "
        "{ & taskkill.exe /T /F /PID $p.Id | Out-Null; $p.WaitForExit(); "
        "[Console]::Out.Write($out.Result); [Console]::Error.Write($err.Result); exit 124 }"
        if deadline_s is not None
        else ""
    )
    script = (
        "$psi = New-Object System.Diagnostics.ProcessStartInfo; "
        f"$psi.FileName = {ps_literal(image)}; $psi.Arguments = {ps_literal(arguments)}; "
        "$psi.UseShellExecute = $false; $psi.RedirectStandardOutput = $true; "
        "$psi.RedirectStandardError = $true; "
        # A failed start (CreateProcess: file not found) must fail the command, not exit 0 with $p
        # null; 2 is ERROR_FILE_NOT_FOUND, what WinRS reports for a command it cannot start.
        "try { $p = [System.Diagnostics.Process]::Start($psi) } "
        "catch { [Console]::Error.WriteLine($_.Exception.Message); exit 2 }; "
        "$out = $p.StandardOutput.ReadToEndAsync(); $err = $p.StandardError.ReadToEndAsync(); "
        f"{wait}$p.WaitForExit(); [Console]::Out.Write($out.Result); [Console]::Error.Write($err.Result); "
        "exit $p.ExitCode"
    )
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"powershell.exe -NoProfile -NonInteractive -EncodedCommand {encoded}"


__all__ = [
    "RUN_MARKER_RE",
    "find_run_marker",
    "is_executable",
    "is_windows_executor",
    "new_run_marker",
    "posix_single_quote",
    "render_command_line",
    "split_windows_command_line",
    "windows_launcher",
]
