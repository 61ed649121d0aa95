"""cmd.exe and PowerShell semantics of the emulated host (driven through the host API)."""

from __future__ import annotations

import base64
import re

import pytest

from harness.emulated.cmd_shell import Parser, command_string, expand_percent, strip_outer_quotes
from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.emulated.tools import quote_arg, split_command_line
from harness.telemetry.event import SYSMON

TEMP = "C:\\Users\\atomiclab\\AppData\\Local\\Temp"


@pytest.fixture(scope="module")
def host() -> EmulatedHost:
    # No network delays here (the timing model is tested in test_emulated_network.py).
    return EmulatedHost(HostSettings(network_timing=NetworkTiming.instant()))


def cmd(host: EmulatedHost, text: str) -> tuple[int | None, str, str]:
    r = host.execute('"cmd.exe" /c ' + text)
    return r.exit_code, r.stdout, r.stderr


def ps(host: EmulatedHost, script: str) -> tuple[int | None, str, str]:
    r = host.execute('"powershell.exe" & {' + script.replace('"', '\\""') + "}")
    return r.exit_code, r.stdout, r.stderr


# ------------------------------------------------------------------------------------------- argv


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('"C:\\a b\\x.exe" one "two three"', ["C:\\a b\\x.exe", "one", "two three"]),
        ('x.exe a\\\\\\"b "c\\\\" d', ["x.exe", 'a\\"b', "c\\", "d"]),
        ('"powershell.exe" & {Test-Path \\""C:\\P F\\""}', ["powershell.exe", "&", "{Test-Path", '"C:\\P F"}']),
        ('x "a""b"', ["x", 'a"b']),
    ],
)
def test_split_command_line_msvc_rules(line: str, argv: list[str]) -> None:
    assert split_command_line(line) == argv


def test_quote_arg_round_trips() -> None:
    for arg in ["plain", "with space", 'q"uote', "trail\\", "tr ail\\", ""]:
        assert split_command_line("x " + quote_arg(arg))[1:] == [arg]


# -------------------------------------------------------------------------------------------- cmd


def test_cmd_parsing_helpers() -> None:
    assert command_string('"cmd.exe" /c echo hi') == ("echo hi", False)
    assert command_string('cmd /S /C "x"') == ('"x"', True)
    assert command_string("cmd.exe") == (None, False)
    assert expand_percent("%TEMP%\\a %NOPE% %x", {"TEMP": "T"}.get) == "T\\a %NOPE% %x"
    assert strip_outer_quotes('"nmap 2>nul"', False, lambda s: False) == "nmap 2>nul"
    assert strip_outer_quotes('"C:\\P F\\git.exe" log', False, lambda s: True) == '"C:\\P F\\git.exe" log'
    node = Parser("a & b && c || d | e").parse()
    assert type(node).__name__ == "Binary"


def test_cmd_operators_and_errorlevel(host: EmulatedHost) -> None:
    assert cmd(host, "echo one & echo two")[1] == "one \r\ntwo\r\n"
    code, out, err = cmd(host, "nosuchtool && echo no || echo yes")
    assert out == "yes\r\n" and code == 0
    assert "'nosuchtool' is not recognized as an internal or external command" in err
    code, _, _ = cmd(host, "nosuchtool")
    assert code == 9009  # cmd's errorlevel for an unknown command
    assert cmd(host, "rem echo hidden & echo also hidden")[1] == ""
    assert cmd(host, "ver")[1] == "\r\nMicrosoft Windows [Version 10.0.20348.2700]\r\n"
    assert cmd(host, "exit /b 7")[0] == 7


def test_cmd_redirection_if_exist_type_del(host: EmulatedHost) -> None:
    # echo keeps the space before "&" (the redirection is cut out), as cmd does
    code, out, _ = cmd(host, "echo hello> %TEMP%\\a.txt & type %TEMP%\\a.txt")
    assert code == 0 and out == "hello \r\n"
    cmd(host, f"echo more>> {TEMP}\\a.txt")
    assert host.fs.read(f"{TEMP}\\a.txt") == b"hello \r\nmore\r\n"
    out = cmd(host, f'if exist "{TEMP}\\a.txt" (echo yes) else (echo no)')[1]
    assert out == "yes\r\n"
    assert (
        cmd(host, f"del /f /q {TEMP}\\a.txt >nul 2>&1 & if exist {TEMP}\\a.txt (echo yes) else (echo no)")[1]
        == "no\r\n"
    )
    code, _, err = cmd(host, f"del {TEMP}\\missing.txt")
    assert code == 0 and err == f"Could Not Find {TEMP}\\missing.txt\r\n"
    code, out, err = cmd(host, "type C:\\nope.txt 2>&1")
    assert out == "The system cannot find the file specified.\r\n" and err == "" and code == 1
    assert cmd(host, "echo x > C:\\no\\such\\dir\\f.txt")[2] == "The system cannot find the path specified.\r\n"


def test_cmd_pipes_feed_findstr(host: EmulatedHost) -> None:
    code, out, _ = cmd(host, "netstat -an | findstr 445")
    assert code == 0 and out.strip().startswith("TCP    0.0.0.0:445") and "135" not in out
    code, out, _ = cmd(host, "netstat -an | findstr NOTHING")
    assert code == 1 and out == ""


def test_cmd_not_modelled_builtin_and_program(host: EmulatedHost) -> None:
    code, out, err = cmd(host, "dir C:\\")
    assert code == 0 and out == "" and err == "atomiclab-emulated: 'dir' is not modelled; no effect\r\n"
    before = host.eventlog.last_record_id(SYSMON)
    code, _, err = cmd(host, "tasklist /v")
    assert code == 0 and "'tasklist' is not modelled" in err
    created = [x for x in host.eventlog.query(SYSMON, after_record_id=before) if "tasklist.exe" in x]
    assert created  # the process is still created and logged


def test_cmd_quoted_program_with_spaces_runs_git(host: EmulatedHost) -> None:
    r = host.execute('"cmd.exe" /c "C:\\Program Files\\Git\\cmd\\git.exe" log --stat -n 1')
    assert r.exit_code == 128 and "not a git repository" in r.stderr


# ------------------------------------------------------------------------------------- PowerShell


def test_ps_pipelines_ranges_and_interpolation(host: EmulatedHost) -> None:
    assert ps(host, '1..3 | ForEach-Object { "n=$_" }')[1] == "n=1\r\nn=2\r\nn=3\r\n"
    assert ps(host, "1..3 | % { $_ * 2 }")[1] == "2\r\n4\r\n6\r\n"
    assert ps(host, '$a = "x,y" -split ","; $a.Count; $a -join "+"')[1] == "2\r\nx+y\r\n"
    assert ps(host, 'Write-Output "$env:USERNAME at $($env:COMPUTERNAME)"')[1] == "atomiclab at WIN-ATOMICLAB1\r\n"
    assert ps(host, "[int]'42' + 1; 'a''b'")[1] == "43\r\na'b\r\n"
    assert ps(host, "foreach ($i in 1..3) { if ($i -eq 2) { continue }; Write-Host $i }")[1] == "1\r\n3\r\n"
    assert ps(host, "$x = 5; if ($x -gt 3) { 'big' } elseif ($x -gt 1) { 'mid' } else { 'small' }")[1] == "big\r\n"
    assert ps(host, "1..5 | Where-Object { $_ -ge 4 } | Select-Object -First 1")[1] == "4\r\n"
    assert ps(host, "for ($i = 0; $i -lt 3; $i++) { $i }; $n = 1; while ($n -lt 100) { $n *= 10 }; $n")[1] == (
        "0\r\n1\r\n2\r\n100\r\n"
    )


def test_ps_try_catch_finally_and_exit_codes(host: EmulatedHost) -> None:
    code, out, _ = ps(host, "try { throw 'boom' } catch { Write-Host caught } finally { Write-Host done }")
    assert out == "caught\r\ndone\r\n" and code == 0
    assert ps(host, "exit 3")[0] == 3
    code, _, err = ps(host, "[int]'abc'")
    assert code == 1 and 'Cannot convert value "abc" to type "System.Int32"' in err
    assert ps(host, "Write-Host ok")[0] == 0


def test_ps_files(host: EmulatedHost) -> None:
    code, out, _ = ps(host, 'Set-Content -Path "$env:TEMP\\s.txt" -Value "v1"; Get-Content "$env:TEMP\\s.txt"')
    assert out == "v1\r\n"
    ps(host, '"a","b" | Out-File -FilePath "$env:TEMP\\o.txt"')
    assert host.fs.read(f"{TEMP}\\o.txt") == b"\xff\xfe" + "a\r\nb\r\n".encode("utf-16-le")
    assert ps(host, 'Test-Path "$env:TEMP\\o.txt"')[1] == "True\r\n"
    code, _, err = ps(host, 'Remove-Item -Path "$env:TEMP\\o.txt"; Remove-Item "$env:TEMP\\o.txt"')
    assert "Cannot find path" in err and "ItemNotFoundException" in err and code == 1
    # -ErrorAction Ignore hides the error record, but $? is still False: powershell.exe exits 1
    code, _, err = ps(host, 'Remove-Item -Path "$env:TEMP\\o.txt" -Force -ErrorAction Ignore')
    assert err == "" and code == 1
    assert ps(host, 'Remove-Item -Path "$env:TEMP\\s.txt" -Force -ErrorAction Ignore')[0] == 0


def test_ps_tcpclient_variants(host: EmulatedHost) -> None:
    before = host.eventlog.last_record_id(SYSMON)
    script = (
        "$t = New-Object Net.Sockets.TcpClient; $ok = $t.ConnectAsync('127.0.0.1', 445).Wait(200); $ok; $t.Close(); "
        "$u = New-Object System.Net.Sockets.TcpClient; $w = $u.BeginConnect('127.0.0.1', 3389, $null, $null); "
        "$w.AsyncWaitHandle.WaitOne(100, $false); $u.Connected; "
        "$v = New-Object System.Net.Sockets.TcpClient; try { $v.ConnectAsync('127.0.0.1', 81).Wait(100) } catch { 'refused' }"
    )
    code, out, err = ps(host, script)
    assert out == "True\r\nTrue\r\nTrue\r\nrefused\r\n", err
    assert code == 0
    conns = [x for x in host.eventlog.query(SYSMON, after_record_id=before) if "<EventID>3<" in x]
    # Established 445 and 3389 log both ends (client Initiated=true, listener false); refused 81 nothing.
    initiated = [re.search(r"<Data Name='Initiated'>(\w+)<", x).group(1) for x in conns]  # type: ignore[union-attr]
    assert sorted(initiated) == ["false", "false", "true", "true"]


def test_ps_connect_failure_outside_try_is_reported(host: EmulatedHost) -> None:
    code, _, err = ps(host, "$t = New-Object System.Net.Sockets.TcpClient; $t.Connect('127.0.0.1', 81)")
    assert code == 1
    assert 'Exception calling "Connect" with "2" argument(s): "No connection could be made because the target' in err


def test_ps_test_netconnection_quiet_and_open(host: EmulatedHost) -> None:
    assert ps(host, "tnc 127.0.0.1 -Port 445 -InformationLevel Quiet")[1] == "True\r\n"
    out = ps(host, "Test-NetConnection -ComputerName localhost -Port 5985")[1]
    assert "TcpTestSucceeded : True" in out and "WARNING" not in out


def test_ps_native_command_line_and_missing_commands(host: EmulatedHost) -> None:
    before = host.eventlog.last_record_id(SYSMON)
    code, out, _ = ps(host, '& "C:\\Windows\\System32\\HOSTNAME.EXE"; whoami; $LASTEXITCODE')
    assert out == "WIN-ATOMICLAB1\r\nwin-atomiclab1\\atomiclab\r\n0\r\n"
    lines = [x for x in host.eventlog.query(SYSMON, after_record_id=before) if "<EventID>1<" in x]
    assert any("<Data Name='CommandLine'>\"C:\\Windows\\System32\\HOSTNAME.EXE\"</Data>" in x for x in lines)
    assert any("<Data Name='CommandLine'>\"C:\\Windows\\system32\\whoami.exe\"</Data>" in x for x in lines)
    code, _, err = ps(host, "Get-NetTCPConnection -State Listen")
    assert code == 0 and "'Get-NetTCPConnection' is not modelled" in err
    code, _, err = ps(host, '& "C:\\missing\\tool.exe" -x')
    assert code == 1 and err.startswith("& : The term 'C:\\missing\\tool.exe' is not recognized")


def test_ps_encoded_command_and_syntax_error(host: EmulatedHost) -> None:
    enc = base64.b64encode("Write-Output 'from enc'".encode("utf-16-le")).decode()
    r = host.execute(f"powershell.exe -NoProfile -NonInteractive -EncodedCommand {enc}")
    assert r.exit_code == 0 and r.stdout == "from enc\r\n"
    r = host.execute('powershell.exe -Command "if ($true) { 1"')
    assert r.exit_code == 1 and "ParseError" in r.stderr
