"""PathToAtomicsFolder and nested placeholders as Invoke-AtomicRedTeam resolves them (issue 12).

Invoke-AtomicRedTeam (Private/Replace-InputArgs.ps1, ``Merge-InputArgs``) replaces each ``#{arg}``,
then ``$PathToAtomicsFolder`` and ``PathToAtomicsFolder`` with PowerShell's case-insensitive
``-replace``. No prerequisite, command or cleanup line may keep a literal PathToAtomicsFolder: proven
over the upstream-layout fixtures always, and over a full checkout when ATOMICLAB_ART_CHECKOUT names one.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.content.atomics import discover_atomics, find_test
from harness.content.labconfig import load_lab_config
from harness.errors import ContentError
from harness.execution.lifecycle import execute_atomic, render_test
from harness.execution.modes import ExecutionSettings, default_atomics_folder
from harness.model import AtomicFile, CommandResult, ExecutionStatus

REPO = Path(__file__).resolve().parents[1]
ATOMICS = REPO / "tests" / "fixtures" / "art-upstream" / "atomics"
LEFT_OVER = re.compile(r"PathToAtomicsFolder|#\{[A-Za-z0-9_.-]+\}", re.IGNORECASE)
PLATFORMS = ("windows", "linux", "macos")


def _leftovers(files: list[AtomicFile]) -> tuple[int, list[str]]:
    rendered, bad = 0, []
    for f in files:
        for t in f.tests:
            for platform in (p for p in t.platforms if p in PLATFORMS):
                r = render_test(t, {}, platform=platform)
                rendered += 1
                texts = [r.command, r.cleanup, *(x for p in r.prereqs for x in p)]
                bad += [f"{t.guid} {platform}: {x[:120]}" for x in texts if x and LEFT_OVER.search(x)]
    return rendered, bad


def test_no_literal_path_to_atomics_folder_in_fixtures() -> None:
    rendered, bad = _leftovers(discover_atomics([ATOMICS]))
    assert rendered >= 30
    assert bad == []


def test_no_literal_path_to_atomics_folder_in_upstream_checkout() -> None:
    raw = os.environ.get("ATOMICLAB_ART_CHECKOUT", "")
    if not raw or not (Path(raw) / "atomics").is_dir():
        pytest.skip("set ATOMICLAB_ART_CHECKOUT to an Atomic Red Team checkout to run this test")
    rendered, bad = _leftovers(discover_atomics([Path(raw)]))
    assert rendered > 1500
    assert bad == []


def _test(technique: str, guid: str):  # type: ignore[no-untyped-def]
    return find_test(discover_atomics([ATOMICS / technique]), guid)


def test_case_insensitive_dollar_form_and_platform_default() -> None:
    # upstream T1609 writes $PathtoAtomicsFolder (lower-case "to")
    t = next(t for t in discover_atomics([ATOMICS / "T1609"])[0].tests if "docker build" in (t.executor.command or ""))
    r = render_test(t, {}, platform="linux")
    assert "docker build -t t1609  /tmp/AtomicRedTeam/atomics/T1609/src/" in (r.command or "")
    assert default_atomics_folder("windows") == "C:\\AtomicRedTeam\\atomics"


def test_nested_default_resolved_with_default_and_override() -> None:
    t = _test("T1055.011", "Process Injection via Extra Window Memory (EWM) x64 executable")
    r = render_test(t, {})
    assert r.command == '"powershell.exe" & {C:\\AtomicRedTeam\\atomics\\T1055.011\\bin\\T1055.011_x64.exe}'
    r = render_test(t, {"arch": "x86"}, settings=ExecutionSettings(atomics_folder="D:\\ART\\atomics"))
    assert r.command == '"powershell.exe" & {D:\\ART\\atomics\\T1055.011\\bin\\T1055.011_x86.exe}'
    with pytest.raises(ContentError, match="used inside the default of 'exe_binary'"):
        render_test(t, {"arch": "x'; calc; '"})


def test_override_text_is_never_rewritten(tmp_path: Path) -> None:
    # An override is one quoted literal: PathToAtomicsFolder inside it stays as the user wrote it.
    t = _test("T1055.011", "Process Injection via Extra Window Memory (EWM) x64 executable")
    r = render_test(t, {"exe_binary": "PathToAtomicsFolder\\x.exe"})
    assert "{'PathToAtomicsFolder\\x.exe'}" in (r.command or "")


class _Recorder:
    host = "recorder"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.lines.append(command_line)
        now = datetime.now(UTC)
        return CommandResult(command_line, 0, "", "", now, now)

    def put_file(self, local: Path, remote: str) -> None:  # pragma: no cover - not used here
        raise AssertionError

    def close(self) -> None:
        pass


def test_every_line_sent_to_the_target_is_substituted() -> None:
    sent: list[str] = []
    for f in discover_atomics([ATOMICS]):
        for t in f.tests:
            if "windows" not in t.platforms:
                continue
            rec = _Recorder()
            record = execute_atomic(rec, t, args={}, marker="atomiclab_run_" + "0" * 32, get_prereqs=True,
                                    timeout=5, platform="windows", settings=ExecutionSettings(elevated=True))
            assert record.status in (ExecutionStatus.EXECUTED, ExecutionStatus.SKIPPED_MANUAL), record.reason
            sent += rec.lines
    assert len(sent) > 30
    assert [x for x in sent if re.search("PathToAtomicsFolder", x, re.IGNORECASE)] == []


def test_lab_atomics_folder_per_target(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("targets:\n  - name: w\n    transport: winrm\n    address: 127.0.0.1\n    username: u\n"
                   "    password_env: P\n    atomics_folder: 'E:\\ART\\atomics'\n")
    assert load_lab_config(lab).targets[0].atomics_folder == "E:\\ART\\atomics"
    lab.write_text("targets:\n  - name: w\n    transport: winrm\n    address: 127.0.0.1\n    username: u\n"
                   "    password_env: P\n    atomics_folder: 'C:\\A\"; calc'\n")
    with pytest.raises(ContentError, match=r"lab.yaml:7: targets\[0\]\.atomics_folder: atomics_folder refused"):
        load_lab_config(lab)
