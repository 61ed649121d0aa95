"""Preflight verdicts from what a host answers (a scripted transport here; the emulated host in
test_lab_preflight_emulated.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.content.expectations import LabFeature
from harness.lab.preflight import run_preflight
from harness.model import CommandResult

SYSMON_DUMP = """System Monitor v15.15 - System activity monitor
Copyright (C) 2014-2024 Mark Russinovich and Thomas Garnier

Current configuration:
 - Service name:                  Sysmon64
 - Driver name:                   SysmonDrv
 - Config file:                   C:\\atomiclab-lab\\cache\\sysmonconfig.xml
 - Config hash:                   SHA256=6C7C1C7B4AD4CF5AA9A13A8CBA0B5B46ACB3DD5C8C1C2E8A7A5C0E0F4C1B2A3D
 - Network connection:            {network}
 - Image loading:                 disabled

Rule configuration (version 4.90):
 - ProcessCreate                      onmatch: exclude   combine rules using 'Or'
 - FileCreate                         onmatch: include   combine rules using 'Or'
{file_rules}"""

Answer = tuple[int, str]


def windows(**overrides: Answer) -> dict[str, Answer]:
    answers: dict[str, Answer] = {
        "cmd.exe /c ver": (0, "\r\nMicrosoft Windows [Version 10.0.20348.2700]\r\n"),
        "sc.exe query Sysmon64": (0, "SERVICE_NAME: Sysmon64\r\n        TYPE               : 10  WIN32_OWN_PROCESS\r\n"
                                     "        STATE              : 4  RUNNING\r\n"),
        "C:\\Windows\\Sysmon64.exe -c": (0, SYSMON_DUMP.format(
            network="enabled", file_rules="\tTargetFilename                   filter: end with   .txt\n")),
        'auditpol.exe /get /subcategory:"Process Creation"': (0, "System audit policy\r\nCategory/Subcategory"
                                                              "                      Setting\r\nDetailed Tracking\r\n"
                                                              "  Process Creation                        Success and Failure\r\n"),
        "reg.exe query HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\Audit /v "
        "ProcessCreationIncludeCmdLine_Enabled": (0, "\r\nHKEY_LOCAL_MACHINE\\...\\Audit\r\n"
                                                  "    ProcessCreationIncludeCmdLine_Enabled    REG_DWORD    0x1\r\n"),
        "reg.exe query HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging /v "
        "EnableScriptBlockLogging": (0, "    EnableScriptBlockLogging    REG_DWORD    0x1\r\n"),
    }
    answers.update(overrides)
    return answers


class ScriptedTransport:
    """Answers commands from a table; wevtutil reads succeed unless listed; tool checks by path."""

    host = "lab-host"

    def __init__(self, answers: dict[str, Answer], present: set[str] = frozenset(),  # type: ignore[assignment]
                 unreadable: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.answers = answers
        self.present = present
        self.unreadable = unreadable
        self.commands: list[str] = []

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.commands.append(command_line)
        now = datetime.now(UTC)
        if command_line.startswith("wevtutil.exe qe"):
            bad = any(f'"{c}"' in command_line for c in self.unreadable)
            code, out = (15007, "") if bad else (0, "<Event/>")
        elif command_line.startswith("cmd.exe /c if exist"):
            code, out = 0, "present" if any(p in command_line for p in self.present) else "absent"
        else:
            code, out = self.answers.get(command_line, (1060, "The specified service does not exist as an installed service."))
        return CommandResult(command_line, code, out, "", now, now)

    def put_file(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


NMAP = r"C:\Program Files (x86)\Nmap\nmap.exe"


def test_fully_configured_host() -> None:
    r = run_preflight(ScriptedTransport(windows(), present={NMAP}), tools={"nmap": NMAP})
    assert r.ok, r.problems
    assert all(r.features.values())
    assert r.facts["os_build"] == "10.0.20348.2700"
    assert r.facts["sysmon_version"] == "15.15"
    assert r.facts["sysmon_config_hash"].startswith("6C7C1C7B")
    assert r.tools == {"nmap": True}
    assert r.to_dict()["features"]["sysmon_network"] is True


Case = tuple[Callable[[], ScriptedTransport], set[LabFeature], str]

CASES: dict[str, Case] = {
    "sysmon missing": (lambda: ScriptedTransport(windows(**{"sc.exe query Sysmon64": (1060, "does not exist")})),
                       {LabFeature.SYSMON, LabFeature.SYSMON_NETWORK, LabFeature.SYSMON_FILE}, "Sysmon is not installed"),
    "sysmon stopped": (lambda: ScriptedTransport(windows(**{"sc.exe query Sysmon64": (0, "  STATE  : 1  STOPPED\r\n")})),
                       {LabFeature.SYSMON, LabFeature.SYSMON_NETWORK, LabFeature.SYSMON_FILE}, "Sysmon64 is STOPPED"),
    "network logging off": (lambda: ScriptedTransport(windows(**{"C:\\Windows\\Sysmon64.exe -c": (0, SYSMON_DUMP.format(
        network="disabled", file_rules=" - NetworkConnect   onmatch: include\n"))})),
        {LabFeature.SYSMON_NETWORK, LabFeature.SYSMON_FILE}, "does not log network connections"),
    "no process auditing": (lambda: ScriptedTransport(windows(**{
        'auditpol.exe /get /subcategory:"Process Creation"': (0, "  Process Creation                        No Auditing\r\n")})),
        {LabFeature.PROCESS_AUDITING, LabFeature.PROCESS_COMMAND_LINE}, "Process Creation: No Auditing"),
    "no command lines": (lambda: ScriptedTransport(windows(**{
        "reg.exe query HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\Audit /v "
        "ProcessCreationIncludeCmdLine_Enabled": (1, "ERROR: The system was unable to find the specified registry key or value.")})),
        {LabFeature.PROCESS_COMMAND_LINE}, "carry no CommandLine"),
    "script block logging off": (lambda: ScriptedTransport(windows(**{
        "reg.exe query HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging /v "
        "EnableScriptBlockLogging": (0, "    EnableScriptBlockLogging    REG_DWORD    0x0\r\n")})),
        {LabFeature.SCRIPT_BLOCK_LOGGING}, "script block logging is off"),
    "security log unreadable": (lambda: ScriptedTransport(windows(), unreadable={"Security"}),
                                {LabFeature.PROCESS_AUDITING, LabFeature.PROCESS_COMMAND_LINE}, "Event Log Readers"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_misconfiguration_turns_off_exactly_its_features(case: str) -> None:
    make, off, words = CASES[case]
    r = run_preflight(make())
    assert not r.ok
    assert {f for f, on in r.features.items() if not on} == off
    assert any(words in p for p in r.problems), r.problems
    assert r.missing([LabFeature.SYSMON, LabFeature.SCRIPT_BLOCK_LOGGING]) == [
        f for f in (LabFeature.SYSMON, LabFeature.SCRIPT_BLOCK_LOGGING) if f in off
    ]


def test_missing_tool_is_a_problem_naming_the_path() -> None:
    r = run_preflight(ScriptedTransport(windows()), tools={"nmap": NMAP})
    assert r.tools == {"nmap": False}
    assert any(NMAP in p and "install-tools.ps1" in p for p in r.problems)


def test_hostile_answers_are_bounded_and_not_trusted() -> None:
    flood = "x" * 2_000_000 + "\n    EnableScriptBlockLogging    REG_DWORD    0x1\n"
    r = run_preflight(ScriptedTransport(windows(**{
        "reg.exe query HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging /v "
        "EnableScriptBlockLogging": (0, flood)})))
    # the confirming line lies beyond the parse bound: not confirmed
    assert r.features[LabFeature.SCRIPT_BLOCK_LOGGING] is False
