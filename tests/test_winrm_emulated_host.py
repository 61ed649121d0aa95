"""The five T1046 atomics end to end: lifecycle -> WinRM transport (pypsrp) -> emulated Windows host.

Checks what the transport promises the rest of the harness: each atomic executes with its
prerequisites and cleanup, the marked command line is the process command line the host logs in
Sysmon 1 (so attribution can find it), and a PowerShell command overrunning its deadline is
terminated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emulated_lab import winrm_host
from lxml import etree

from harness.content.atomics import load_atomic_file
from harness.execution.executors import new_run_marker, render_command_line
from harness.execution.lifecycle import ExecutionStatus, execute_atomic
from harness.execution.transports.winrm import WinRMTransport
from harness.model import ExecutorName
from harness.telemetry.event import SYSMON

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[1]
NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"


def _sysmon_process_creations(host: object) -> list[dict[str, str]]:
    """EventData of every Sysmon 1 event the emulated host logged (parsed with entities off)."""
    out = []
    for xml in host.eventlog.query(SYSMON):  # type: ignore[attr-defined]
        root = etree.fromstring(xml.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
        if root.findtext(f"{NS}System/{NS}EventID") == "1":
            out.append({d.get("Name"): d.text or "" for d in root.iter(f"{NS}Data")})
    return out


@pytest.fixture
def emulated() -> Iterator[tuple[object, WinRMTransport]]:
    with winrm_host() as pair:
        yield pair


def test_t1046_atomics_execute_with_prereqs_cleanup_and_logged_command_lines(emulated) -> None:  # type: ignore[no-untyped-def]
    host, transport = emulated
    atomics = load_atomic_file(ROOT / "atomics" / "T1046" / "T1046.yaml")
    for test in atomics.tests:
        marker = new_run_marker()
        record = execute_atomic(transport, test, args={}, marker=marker, get_prereqs=True, timeout=60,
                                platform="windows")
        assert record.status is ExecutionStatus.EXECUTED, (test.name, record.reason, record.error)
        assert record.result is not None and record.result.exit_code == 0 and not record.result.timed_out
        assert record.result.stdout.strip() or ">" in test.executor.command, test.name  # netstat > file
        assert all(p.met for p in record.prereqs)
        if test.executor.cleanup_command:
            assert record.cleanup is not None and record.cleanup_error is None, test.name
        roots = [e for e in _sysmon_process_creations(host) if marker in e.get("CommandLine", "")]
        assert len(roots) == 1, f"{test.name}: the marked root process must appear exactly once in Sysmon 1"
        # Byte for byte the line the executor rendered: what detections and attribution see.
        assert roots[0]["CommandLine"] == record.command_line
        # The launcher started it (one execution path for lab and emulated hosts).
        assert roots[0]["ParentImage"].lower().endswith("powershell.exe")
        assert roots[0]["ParentCommandLine"].startswith("powershell.exe  -NoProfile -NonInteractive -EncodedCommand ")

def test_powershell_deadline_overrun_is_terminated(emulated) -> None:  # type: ignore[no-untyped-def]
    _host, transport = emulated
    line = render_command_line(ExecutorName.POWERSHELL, "Write-Output begin\nStart-Sleep -Seconds 60",
                               marker=new_run_marker())
    result = transport.run(line, timeout=2)
    assert result.timed_out and result.exit_code is None
    after = transport.run(render_command_line(ExecutorName.COMMAND_PROMPT, "echo still usable"), timeout=20)
    assert after.exit_code == 0 and "still usable" in after.stdout
