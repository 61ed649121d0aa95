"""The run marker cannot change whether a detection fires.

Every rule in detections/ (Sigma and Sumo, through harness.detect.loader.load_detector) is evaluated
on Sysmon 1 and Security 4688 process-creation events whose command lines are rendered from the
T1046 atomics and from benign look-alikes, once without and once with the run marker. The outcome
(fired or not, and the number of rows) must be identical.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.content.atomics import load_atomic_file
from harness.execution.arguments import substitute
from harness.execution.executors import new_run_marker, render_command_line
from harness.model import ExecutorName
from harness.telemetry.event import SECURITY, SYSMON, Event

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted([*(ROOT / "detections" / "sigma").glob("*.yml"), *(ROOT / "detections" / "sumo").glob("*.sumo")])
IMAGES = {
    ExecutorName.POWERSHELL: "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
    ExecutorName.COMMAND_PROMPT: "C:\\Windows\\System32\\cmd.exe",
}
#: Benign or borderline commands the rules must treat the same with and without a marker.
LOOKALIKES = [
    (ExecutorName.POWERSHELL, "Test-NetConnection -ComputerName intranet.example -Port 443"),
    (ExecutorName.POWERSHELL, "Get-Service -Name WinRM"),
    (ExecutorName.COMMAND_PROMPT, "netstat -an"),
    (ExecutorName.COMMAND_PROMPT, "arp -a"),
    (ExecutorName.COMMAND_PROMPT, "attrib  +h nbtscan.exe"),
    (ExecutorName.POWERSHELL, "1..3 | ForEach-Object { Test-NetConnection 10.0.0.$_ -Port 8081 }"),
]


def _commands() -> list[tuple[ExecutorName, str]]:
    atomics = load_atomic_file(ROOT / "atomics" / "T1046" / "T1046.yaml")
    out = []
    for test in atomics.tests:
        assert test.executor.command is not None
        out.append((test.executor.name, substitute(test.executor.command, test, test.executor.name, {})))
    return out + LOOKALIKES


def _events(executor: ExecutorName, command_line: str, n: int) -> list[Event]:
    image = IMAGES[executor]
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=n)
    parent = "C:\\Windows\\System32\\wsmprovhost.exe"
    sysmon = Event(
        channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1, time=t, computer="WIN-LAB1", version=5,
        record_id=100 + n,
        fields={
            "RuleName": "-", "UtcTime": t.strftime("%Y-%m-%d %H:%M:%S.000"),
            "ProcessGuid": f"{{dbf410b3-fc06-6717-b500-0000000039{n:02x}}}", "ProcessId": str(4000 + n),
            "Image": image, "OriginalFileName": image.rsplit("\\", 1)[1].upper(), "CommandLine": command_line,
            "CurrentDirectory": "C:\\Users\\lab\\", "User": "WIN-LAB1\\lab", "IntegrityLevel": "High",
            "ParentProcessGuid": "{dbf410b3-fc06-6717-b400-000000003900}", "ParentProcessId": "3000",
            "ParentImage": parent, "ParentCommandLine": parent + " -Embedding", "ParentUser": "WIN-LAB1\\lab",
        },
    )
    security = Event(
        channel=SECURITY, provider="Microsoft-Windows-Security-Auditing", event_id=4688, time=t, computer="WIN-LAB1",
        version=2, record_id=500 + n,
        fields={
            "SubjectUserName": "lab", "SubjectDomainName": "WIN-LAB1", "NewProcessId": hex(4000 + n),
            "NewProcessName": image, "TokenElevationType": "%%1937", "ProcessId": "0xbb8",
            "CommandLine": command_line, "ParentProcessName": parent, "MandatoryLabel": "S-1-16-12288",
        },
    )
    return [sysmon, security]


@pytest.mark.parametrize("rule", RULES, ids=lambda p: p.name)
def test_marker_never_changes_a_detection_outcome(rule: Path) -> None:
    loader = pytest.importorskip("harness.detect.loader")
    detector = loader.load_detector(rule)
    fired_any = False
    for n, (executor, command) in enumerate(_commands()):
        plain = render_command_line(executor, command)
        marked = render_command_line(executor, command, marker=new_run_marker())
        without = detector.evaluate(_events(executor, plain, n))
        with_marker = detector.evaluate(_events(executor, marked, n))
        assert (with_marker.fired, len(with_marker.rows)) == (without.fired, len(without.rows)), (
            f"{rule.name}: the marker changed the outcome for {plain!r}"
        )
        fired_any = fired_any or without.fired
    # The comparison means something only if the rule does fire on some of these commands.
    assert fired_any, f"{rule.name} fired on none of the T1046 atomics"


def test_rules_exist() -> None:
    if not RULES:
        pytest.skip("no detection rules in detections/ yet")
    assert all(p.is_file() for p in RULES)
