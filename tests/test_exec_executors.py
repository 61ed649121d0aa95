"""Executors render Invoke-AtomicRedTeam command lines (checked against real recordings) + run marker."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from harness.errors import ContentError
from harness.execution.executors import (
    RUN_MARKER_RE,
    find_run_marker,
    is_executable,
    new_run_marker,
    render_command_line,
    split_windows_command_line,
    windows_launcher,
)
from harness.model import ExecutorName

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
ATOMIC_EVTX = PUBLIC / "atomic-evtx" / "attacks_by_category_unfiltered"


def _recorded_command_lines() -> set[str]:
    """Every Sysmon 1 CommandLine in the atomic-evtx EVTX recordings (XML-unescaped)."""
    if not ATOMIC_EVTX.is_dir():
        pytest.skip(f"public recordings absent: {ATOMIC_EVTX}")
    from evtx import PyEvtxParser

    lines: set[str] = set()
    for path in ATOMIC_EVTX.rglob("*Sysmon_Operational.evtx"):
        for record in PyEvtxParser(str(path)).records():
            for m in re.finditer(r'<Data Name="CommandLine">(.*?)</Data>', record["data"], re.S):
                lines.add(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                          .replace("&amp;", "&"))
    return lines


def test_marker_shape_and_uniqueness() -> None:
    markers = {new_run_marker() for _ in range(200)}
    assert len(markers) == 200
    assert all(RUN_MARKER_RE.fullmatch(m) and re.fullmatch(r"[a-z0-9_]+", m) for m in markers)


@pytest.mark.parametrize(
    ("executor", "command", "recorded"),
    [
        # ART T1571-1, T1049-1, T1057-6, T1046-11 and T1018-1 as Invoke-AtomicRedTeam ran them.
        (ExecutorName.POWERSHELL, "Test-NetConnection -ComputerName google.com -port 8081\n",
         '"powershell.exe" & {Test-NetConnection -ComputerName google.com -port 8081}'),
        (ExecutorName.COMMAND_PROMPT, "netstat\nnet use\nnet sessions\n",
         '"cmd.exe" /c netstat & net use & net sessions'),
        (ExecutorName.COMMAND_PROMPT, "tasklist | findstr lsass\n", '"cmd.exe" /c tasklist | findstr lsass'),
        (ExecutorName.POWERSHELL,
         'Get-Service -Name "Remote Desktop Services", "Remote Desktop Configuration"\n',
         '"powershell.exe" & {Get-Service -Name \\""Remote Desktop Services\\"", '
         '\\""Remote Desktop Configuration\\""}'),
        (ExecutorName.COMMAND_PROMPT, "net view /domain\nnet view\n", '"cmd.exe" /c net view /domain & net view'),
    ],
)
def test_rendered_lines_equal_real_recordings(executor: ExecutorName, command: str, recorded: str) -> None:
    assert render_command_line(executor, command) == recorded
    assert recorded in _recorded_command_lines()


def test_multiline_powershell_keeps_newlines_like_the_recordings() -> None:
    command = "$S3cur3Th1sSh1t_repo='https://example'\niex $x\nfruit -noninteractive -consoleoutput\n"
    line = render_command_line(ExecutorName.POWERSHELL, command)
    assert line == '"powershell.exe" & {' + command.strip() + "}"


def test_marker_placement_per_executor() -> None:
    marker = new_run_marker()
    ps = render_command_line(ExecutorName.POWERSHELL, "nmap 127.0.0.1", marker=marker)
    assert ps == f'"powershell.exe" & {{nmap 127.0.0.1}} #{marker}'
    cmd = render_command_line(ExecutorName.COMMAND_PROMPT, "arp -a", marker=marker)
    assert cmd == f'"cmd.exe" /c arp -a & rem {marker}'
    sh = render_command_line(ExecutorName.SH, "echo hi", marker=marker)
    assert sh == f"sh -c ': {marker}; echo hi'"
    assert render_command_line(ExecutorName.BASH, "echo hi", marker=marker).startswith("bash -c ")
    for line in (ps, cmd, sh):
        assert find_run_marker(line) == marker


def test_bad_marker_and_manual_are_refused() -> None:
    with pytest.raises(ValueError, match="run marker"):
        render_command_line(ExecutorName.SH, "true", marker="atomiclab_run_x; rm -rf /")
    assert not is_executable(ExecutorName.MANUAL)
    with pytest.raises(ContentError, match="manual"):
        render_command_line(ExecutorName.MANUAL, "steps")
    with pytest.raises(ContentError, match="empty"):
        render_command_line(ExecutorName.SH, "  \n")


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_posix_lines_run_byte_for_byte_with_marker(shell: str) -> None:
    script = "x='it''s'; printf '%s|' \"$x\" \"a b\" `echo c` $((1+2))\nprintf 'line2'\n"
    marker = new_run_marker()
    line = render_command_line(ExecutorName(shell), script, marker=marker)
    plain = render_command_line(ExecutorName(shell), script)
    with_marker = subprocess.run(line, shell=True, capture_output=True, text=True, check=True)
    without = subprocess.run(plain, shell=True, capture_output=True, text=True, check=True)
    assert with_marker.stdout == without.stdout == "its|a b|c|3|line2"


def test_backslash_before_quote_survives_windows_argv() -> None:
    line = render_command_line(ExecutorName.POWERSHELL, '& "C:\\dir\\" -x')
    assert line == '"powershell.exe" & {& \\""C:\\dir\\\\\\"" -x}'


def test_windows_launcher_starts_the_exact_command_line() -> None:
    line = render_command_line(ExecutorName.COMMAND_PROMPT, "echo it's", marker=new_run_marker())
    assert split_windows_command_line(line) == ("cmd.exe", line.split('" ', 1)[1])
    launcher = windows_launcher(line, deadline_s=2.5)
    assert re.fullmatch(r"powershell\.exe -NoProfile -NonInteractive -EncodedCommand [A-Za-z0-9+/=]+", launcher)
    script = base64.b64decode(launcher.rsplit(" ", 1)[1]).decode("utf-16-le")
    assert "$psi.FileName = 'cmd.exe'" in script
    assert "$psi.Arguments = '/c echo it''s & rem atomiclab_run_" in script
    assert "WaitForExit(2500)" in script and "taskkill.exe /T /F /PID $p.Id" in script
