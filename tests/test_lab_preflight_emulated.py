"""Preflight against the emulated host (real WinRM on 127.0.0.1): each misconfiguration its settings
emulate produces the verdict a real misconfigured lab would."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.content.expectations import LabFeature
from harness.lab.check import check_lab

ALL = set(LabFeature)

CASES: dict[str, tuple[list[str], set[LabFeature], str]] = {
    "sysmon not installed": (["sysmon_installed=false"],
                             {LabFeature.SYSMON, LabFeature.SYSMON_NETWORK, LabFeature.SYSMON_FILE}, "Sysmon is not installed"),
    "sysmon network logging off": (["sysmon_network=false"], {LabFeature.SYSMON_NETWORK}, "(EID 3)"),
    "sysmon file events off": (["sysmon_file=false"], {LabFeature.SYSMON_FILE}, "EID 11"),
    "no process auditing": (["process_auditing=false"],
                            {LabFeature.PROCESS_AUDITING, LabFeature.PROCESS_COMMAND_LINE}, "No Auditing"),
    "no command lines in 4688": (["command_line_auditing=false"], {LabFeature.PROCESS_COMMAND_LINE}, "no CommandLine"),
    "script block logging off": (["script_block_logging=false"], {LabFeature.SCRIPT_BLOCK_LOGGING}, "script block"),
}


def test_default_emulated_host_passes_every_check() -> None:
    [hc] = check_lab(None)
    assert hc.emulated and hc.report is not None
    assert hc.ok, hc.report.problems
    assert {f for f, on in hc.report.features.items() if on} == ALL
    assert hc.report.tools == {"nmap": True, "nbtscan": True}
    assert hc.report.facts["sysmon_version"] and len(hc.report.facts["sysmon_config_hash"]) == 64


@pytest.mark.parametrize("case", sorted(CASES))
def test_misconfiguration_verdicts(case: str) -> None:
    settings, off, words = CASES[case]
    [hc] = check_lab(None, settings)
    assert hc.report is not None and not hc.ok
    assert {f for f, on in hc.report.features.items() if not on} == off
    if words:
        assert any(words in p for p in hc.report.problems), hc.report.problems


def test_missing_tools_are_reported_and_the_cli_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check", "--emulate-setting", "tools=git"]) == 1
    out = capsys.readouterr().out
    assert "EMULATED" in out and "MISCONFIGURED" in out
    assert "[FAIL] tool nmap" in out and "[FAIL] tool nbtscan" in out


def test_cli_ok_and_bad_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["lab", "check", "--emulate-setting", "no_such=1"]) == 2
    assert "no_such" in capsys.readouterr().err
