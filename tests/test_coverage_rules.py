"""Issue 11 item 4: ``run --rules DIR`` judges each test against the rules tagged with its technique.

The committed folder ``tests/fixtures/coverage-rules/windows`` holds one rule per matrix outcome
(fired, silent, rule invalid, not applicable, a .sumo query, a rule of another technique); the run
over SigmaHQ's Windows rules needs a checkout (``ATOMICLAB_SIGMA_CHECKOUT``: the checkout root or
its ``rules/windows`` folder) and skips with that reason when it is absent.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.coverage import RuleLibrary, related
from harness.detect.loader import load_detector
from harness.reporting.results_json import schema_problems
from harness.results import CoverageOutcome
from harness.targets import CHANNELS
from harness.telemetry.event import SYSMON, Event

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "coverage-rules" / "windows"
NMAP = "c9c5c712-9e58-4613-85f6-139cddfa1f30"
SIGMA_ENV = "ATOMICLAB_SIGMA_CHECKOUT"  # as the SigmaHQ regression suite (tests/test_sigma_*)

pytestmark = pytest.mark.network


def _run(tmp: Path, *extra: str) -> tuple[int, dict, Path]:
    out = tmp / "report"
    code = main(["run", "--no-progress", "--out", str(out), "--history", str(tmp / "h.sqlite"), *extra])
    return code, json.loads((out / "results.json").read_text()), out


def test_technique_relation_includes_sub_techniques() -> None:
    assert related("T1046", "t1046") and related("T1003", "T1003.001") and related("T1003.001", "T1003")
    assert not related("T1003.001", "T1003.002") and not related("T1046", "T10460")


def test_each_rule_is_compiled_once_per_run() -> None:
    loads: list[Path] = []

    def load(p: Path):  # type: ignore[no-untyped-def]
        loads.append(p)
        return load_detector(p)

    lib = RuleLibrary.from_paths([FIXTURE], collected=CHANNELS, load=load)
    ev = Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1, record_id=1,
               time=datetime.now(UTC), computer="h", fields={"Image": "C:\\x\\nmap.exe", "CommandLine": "nmap -sV"})
    for _ in range(3):
        cells = {c.rule: c.outcome for c in lib.judge("T1046", [ev])}
    assert cells["windows/proc_creation_nmap.yml"] is CoverageOutcome.FIRED
    assert "windows/proc_creation_credentials.yml" not in cells  # another technique
    # compiled: nmap, masscan, broken, the .sumo; the System-channel rule is never compiled (not applicable)
    assert sorted(p.name for p in loads) == sorted(
        ["proc_creation_nmap.yml", "proc_creation_masscan.yml", "proc_creation_broken.yml",
         "t1046_scanner_command_line.sumo"])


def test_rules_matrix_and_layer_on_the_emulated_host(tmp_path: Path) -> None:
    code, data, out = _run(tmp_path, "--tests", NMAP, "--rules", str(FIXTURE))
    assert code == 0 and schema_problems(data) == []
    (t,) = data["tests"]
    cells = {c["rule"]: c for c in t["coverage"]}
    assert {r: c["outcome"] for r, c in cells.items()} == {
        "windows/proc_creation_nmap.yml": "fired",
        "windows/t1046_scanner_command_line.sumo": "fired",
        "windows/proc_creation_masscan.yml": "silent",
        "windows/proc_creation_broken.yml": "rule_invalid",
        "windows/system_service_install.yml": "not_applicable",
    }
    assert "missing_selection" in cells["windows/proc_creation_broken.yml"]["reason"]
    assert "does not collect" in cells["windows/system_service_install.yml"]["reason"]
    assert t["status"] == "passed"  # coverage never changes the verdict
    layer = json.loads((out / "navigator-coverage-layer.json").read_text())
    (entry,) = layer["techniques"]
    assert entry["techniqueID"] == "T1046" and entry["score"] == 100
    assert "proc_creation_nmap.yml" in entry["comment"]
    html = (out / "report.html").read_text()
    assert "Detection coverage by ATT&amp;CK (--rules)" in html and "windows/proc_creation_masscan.yml" in html


def test_a_missing_rules_folder_is_a_usage_error_before_anything_runs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    code = main(["run", "--no-progress", "--rules", str(tmp_path / "nope"), "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rules" in err[0] and "nope" in err[0]


def _sigmahq() -> Path:
    raw = os.environ.get(SIGMA_ENV, "")
    if not raw:
        pytest.skip(f"{SIGMA_ENV} is not set (a SigmaHQ checkout or its rules/windows folder)")
    p = Path(raw)
    for cand in (p, p / "rules" / "windows", p / "windows"):
        if cand.is_dir() and cand.name == "windows":
            return cand
    pytest.skip(f"{SIGMA_ENV}={raw}: no rules/windows folder there")


@pytest.mark.slow
def test_rules_over_sigmahq_windows_rules(tmp_path: Path) -> None:
    rules = _sigmahq()
    code, data, out = _run(tmp_path, "--rules", str(rules))
    assert code == 0 and schema_problems(data) == []
    t1046 = [t for t in data["tests"] if t["technique"] == "T1046" and not t["benign"]]
    assert t1046 and all(t["coverage"] for t in t1046)
    nmap = next(t for t in t1046 if t["guid"] == NMAP)
    fired = {c["rule"] for c in nmap["coverage"] if c["outcome"] == "fired"}
    assert "windows/process_creation/proc_creation_win_pua_nmap_zenmap.yml" in fired
    assert all(c["outcome"] in {o.value for o in CoverageOutcome} for t in t1046 for c in t["coverage"])
    layer = json.loads((out / "navigator-coverage-layer.json").read_text())
    assert {e["techniqueID"] for e in layer["techniques"]} == {"T1046"}
    assert 0 < layer["techniques"][0]["score"] <= 100
