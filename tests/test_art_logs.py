"""Invoke-AtomicRedTeam's CSV execution log and the ATTiRe JSON log (VECTR) per run (issue 12),
validated against their published formats: the CSV columns of Public/Default-ExecutionLogger.psm1 (read
from an Invoke-AtomicRedTeam checkout named by ATOMICLAB_IART_CHECKOUT when present, else the same list
kept here) and ATTiRe 1.1 as Public/Attire-ExecutionLogger.psm1 writes it (tests/fixtures/art-formats)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from harness.cli import main
from harness.reporting.art_logs import CSV_COLUMNS, ArtCsvReporter, AttireReporter
from harness.results import RunMode, RunResult, StepRecord, TargetInfo, TestResult, TestStatus

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "tests" / "fixtures" / "art-formats" / "attire.schema.json").read_text())
ART = REPO / "tests" / "fixtures" / "art-upstream"


def _published_columns() -> tuple[str, ...]:
    raw = os.environ.get("ATOMICLAB_IART_CHECKOUT", "")
    logger = Path(raw) / "Public" / "Default-ExecutionLogger.psm1"
    if not raw or not logger.is_file():
        return CSV_COLUMNS
    text = logger.read_text(encoding="utf-8-sig")
    block = text[text.index("[ordered]@{"):text.index("}", text.index("[ordered]@{"))]
    return tuple(re.findall(r'^\s*"([^"]+)"\s*=', block, re.MULTILINE))


def test_csv_columns_are_invoke_atomicredteams() -> None:
    assert _published_columns() == CSV_COLUMNS
    assert len(CSV_COLUMNS) == 11


def _run(tmp: Path) -> RunResult:
    t0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    transcript = "transcripts/win1/x-command.txt"
    (tmp / "transcripts" / "win1").mkdir(parents=True)
    (tmp / transcript).write_text("role: command\nexit_code: 0\ncommand:\nx\n--- stdout ---\nhello \"world\"\n"
                                  "--- stderr ---\n\n")
    source = str(ART / "atomics" / "T1055.011" / "T1055.011.yaml")
    ran = TestResult(
        guid="93ca40d2-336c-446d-bcef-87f14d438018", name='Process Injection, "EWM"', technique="T1055.011",
        target="win1", status=TestStatus.PASSED, reason="", started=t0, ended=t0 + timedelta(seconds=3),
        executor="powershell", source=source,
        steps=(StepRecord("prereq", "check", 0, t0, t0),
               StepRecord("command", '"powershell.exe" & {x}', 0, t0 + timedelta(seconds=1),
                          t0 + timedelta(seconds=2), transcript=transcript),
               StepRecord("cleanup", "c", 0, t0, t0)),
    )
    skipped = TestResult(guid="0a0a0a0a-0000-4000-8000-000000000001", name="skipped", technique="T1046",
                         target="win1", status=TestStatus.SKIPPED, reason="prereq", started=t0, ended=t0,
                         steps=(StepRecord("prereq", "check", 1, t0, t0),))
    return RunResult(run_id="20261201T100000Z-abcdef", mode=RunMode.RUN, started=t0, ended=t0 + timedelta(minutes=1),
                     harness_version="0", operator="u",
                     command=("atomiclab", "run"), targets=(TargetInfo("win1", "winrm", "192.0.2.10", False),),
                     tests=(ran, skipped))


def test_csv_log_rows_as_export_csv_writes_them(tmp_path: Path) -> None:
    text = ArtCsvReporter().render(_run(tmp_path))
    lines = text.split("\r\n")
    assert lines[0] == ",".join(f'"{c}"' for c in CSV_COLUMNS)
    assert lines[1].startswith('"2026-12-01T10:00:01Z",') and lines[2:] == [""]  # the skipped test ran nothing
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["Technique"] == "T1055.011" and row["Test Number"] == "1"
    assert row["Test Name"] == 'Process Injection, "EWM"' and row["GUID"] == "93ca40d2-336c-446d-bcef-87f14d438018"
    assert (row["Hostname"], row["IP Address"], row["ExitCode"], row["ProcessId"]) == ("win1", "192.0.2.10", "0", "")


def test_attire_log_matches_the_published_structure(tmp_path: Path) -> None:
    log = json.loads(AttireReporter(tmp_path).render(_run(tmp_path)))
    jsonschema.validate(log, SCHEMA)
    [procedure] = log["procedures"]
    assert procedure["order"] == 1 and procedure["procedure-id"]["id"] == "93ca40d2-336c-446d-bcef-87f14d438018"
    [step] = procedure["steps"]
    assert (step["time-start"], step["time-stop"]) == ("2026-12-01T10:00:01.000Z", "2026-12-01T10:00:02.000Z")
    assert step["output"] == [{"content": 'hello "world"', "level": "STDOUT", "type": "console"}]
    assert procedure["procedure-description"].startswith("Hooks functions of main process")


@pytest.mark.network
@pytest.mark.slow
def test_a_run_writes_both_logs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "--no-progress", "--atomics", str(ART), "--tests", "T1046-11", "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    assert code in (0, 1)
    rows = list(csv.DictReader(io.StringIO((out / "art-execution-log.csv").read_text())))
    assert [(r["Technique"], r["Test Number"], r["ExitCode"]) for r in rows] == [("T1046", "11", "0")]
    log = json.loads((out / "attire.json").read_text())
    jsonschema.validate(log, SCHEMA)
    assert log["procedures"][0]["steps"][0]["command"].startswith('"powershell.exe" & {')
    assert main(["verify", str(out)]) == 0
