"""Linux and macOS targets over SSH (issue 12): sh/bash atomics execute against the real test sshd
with a truthful status and reason; telemetry is Sysmon for Linux when installed, otherwise "not
collected on this platform" and never an error before execution."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sshd_fixture import KEY_PASSPHRASE, SshdServer

from harness.cli import main
from harness.content.labconfig import TargetConfig
from harness.model import CommandResult
from harness.targets import _posix_target
from harness.telemetry.sysmon_linux import NotCollectedSource, SysmonLinuxSource

REPO = Path(__file__).resolve().parents[1]
ART = REPO / "tests" / "fixtures" / "art-upstream"

FAILING = """attack_technique: T9998
display_name: Failing shell test
atomic_tests:
- name: Exits 3 with a reason
  auto_generated_guid: 0a0a0a0a-0000-4000-8000-000000009998
  description: d
  supported_platforms: [linux]
  executor:
    name: sh
    command: |
      echo "cannot find the thing" >&2
      exit 3
"""


def _lab(tmp_path: Path, sshd: SshdServer) -> Path:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "targets:\n  - name: linux1\n    transport: ssh\n    platform: linux\n    address: 127.0.0.1\n"
        f"    port: {sshd.port}\n    auth: key\n    username: {sshd.username}\n    key_file: {sshd.user_key}\n"
        f"    key_passphrase_env: ATOMICLAB_TEST_SSH_KEY\n    known_hosts: {sshd.known_hosts}\n")
    return lab


@pytest.mark.network
def test_sh_atomics_run_over_ssh_with_truthful_status(sshd: SshdServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICLAB_TEST_SSH_KEY", KEY_PASSPHRASE)
    failing = tmp_path / "own" / "T9998"
    failing.mkdir(parents=True)
    (failing / "T9998.yaml").write_text(FAILING)
    out = tmp_path / "out"
    # T1033-2 (upstream, sh): users; w; who. T1609-1: containers only. T9998: exits 3.
    code = main(["run", "--no-progress", "--lab", str(_lab(tmp_path, sshd)), "--atomics", str(ART), str(failing),
                 "--tests", "T1033-2", "T1609-1", "T9998", "--out", str(out), "--history", str(tmp_path / "h.sqlite")])
    assert code == 1  # the failing test fails the run
    results = {t["name"]: t for t in json.loads((out / "results.json").read_text())["tests"]}
    ran = results["System Owner/User Discovery"]
    assert (ran["status"], ran["failure"]) == ("inconclusive", "telemetry_not_collected")
    assert ran["reason"] == ("command exited 0; telemetry not collected on this platform "
                             "(linux: no Sysmon for Linux on linux1)")
    command = next(s for s in ran["steps"] if s["role"] == "command")
    assert command["command"].startswith("sh -c ': atomiclab_run_") and "who" in command["command"]
    assert command["exit_code"] == 0
    skipped = results["ExecIntoContainer"]
    assert (skipped["status"], skipped["failure"]) == ("skipped", "skipped_platform")
    failed = results["Exits 3 with a reason"]
    assert (failed["status"], failed["failure"]) == ("failed", "execution_failed")
    assert failed["reason"].startswith("exit code 3: cannot find the thing; telemetry not collected")


class _Scripted:
    host = "linux1"

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.lines: list[str] = []

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.lines.append(command_line)
        now = datetime.now(UTC)
        for text, (code, out) in self.answers.items():
            if text in command_line:
                return CommandResult(command_line, code, out, "", now, now)
        return CommandResult(command_line, 1, "", "", now, now)

    def put_file(self, local: Path, remote: str) -> None:  # pragma: no cover - not used here
        raise AssertionError

    def close(self) -> None:
        pass


# One Sysmon for Linux event as journald's `-o cat` prints the syslog message: the same Event XML
# schema as Windows Sysmon with Provider "Linux-Sysmon" and channel "Linux-Sysmon/Operational"
# (Sysinternals/SysmonForLinux manifest; sample lines in splunk/attack_data sysmon_linux.log).
EVENT = (
    '<Event><System><Provider Name="Linux-Sysmon" Guid="{ff032593-a8d3-4f13-b0d6-01fc615a0f97}"/>'
    "<EventID>1</EventID><Version>5</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode>"
    '<Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime="2026-06-14T19:25:07.772000000Z"/>'
    '<EventRecordID>6</EventRecordID><Correlation/><Execution ProcessID="1102" ThreadID="1102"/>'
    '<Channel>Linux-Sysmon/Operational</Channel><Computer>linux1</Computer><Security UserId="0"/></System>'
    '<EventData><Data Name="RuleName">-</Data><Data Name="UtcTime">2026-06-14 19:25:07.772</Data>'
    '<Data Name="ProcessGuid">{d620852c-7861-76c6-1b96-c6e7ae007dec}</Data><Data Name="ProcessId">4480</Data>'
    '<Data Name="Image">/usr/bin/who</Data><Data Name="CommandLine">who</Data>'
    '<Data Name="ParentProcessId">4470</Data><Data Name="ParentImage">/bin/sh</Data>'
    '<Data Name="ParentCommandLine">sh -c ": atomiclab_run_0; users"</Data></EventData></Event>'
)


def test_sysmon_for_linux_events_are_read_from_the_journal_after_a_cursor() -> None:
    transport = _Scripted({
        "-n 0": (0, "-- cursor: s=abc;i=1\n"),
        "--after-cursor=s=abc;i=1": (0, f"{EVENT}\nsome other line\n-- cursor: s=abc;i=2\n"),
    })
    source = SysmonLinuxSource(transport)  # type: ignore[arg-type]
    mark = source.bookmark()
    assert mark == "s=abc;i=1"
    events = list(source.events_after(mark))
    assert [(e.channel, e.event_id, e.get("Image")) for e in events] == [
        ("Linux-Sysmon/Operational", 1, "/usr/bin/who")]
    assert source.advanced(mark, events) == "s=abc;i=2"
    assert all(line.startswith("sh -c ") for line in transport.lines)


def test_target_without_sysmon_reads_nothing_and_says_why() -> None:
    cfg = TargetConfig(name="mac1", transport="ssh", address="127.0.0.1", port=22, platform="macos")
    opened = _posix_target(cfg, _Scripted({}))  # type: ignore[arg-type]
    assert opened.telemetry_note == "not collected on this platform (macos: no Sysmon for Linux on mac1)"
    source = opened.make_source(_Scripted({}))  # type: ignore[arg-type]
    assert isinstance(source, NotCollectedSource) and list(source.events_after(source.bookmark())) == []
    with_sysmon = _posix_target(cfg, _Scripted({"command -v sysmon": (0, "atomiclab-sysmon-present\n")}))  # type: ignore[arg-type]
    assert with_sysmon.telemetry_note is None
    assert isinstance(with_sysmon.make_source(_Scripted({})), SysmonLinuxSource)  # type: ignore[arg-type]


@pytest.mark.network
def test_lab_check_on_a_linux_target_says_telemetry_is_not_collected(sshd: SshdServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.lab.check import check_lab

    monkeypatch.setenv("ATOMICLAB_TEST_SSH_KEY", KEY_PASSPHRASE)
    [host] = check_lab(_lab(tmp_path, sshd))
    assert host.error is None and host.report is not None
    assert host.report.problems == [
        "telemetry: not collected on this platform (linux: no Sysmon for Linux on linux1): install Sysmon for "
        "Linux to collect it"]
