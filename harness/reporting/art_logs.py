"""Execution logs the Atomic Red Team ecosystem reads, beside atomiclab's own reports.

* ``ArtCsvReporter`` -> ``art-execution-log.csv``: Invoke-AtomicRedTeam's default execution log
  (Public/Default-ExecutionLogger.psm1, ``Write-ExecutionLog``): the columns ``Execution Time (UTC)``,
  ``Execution Time (Local)``, ``Technique``, ``Test Number``, ``Test Name``, ``Hostname``,
  ``IP Address``, ``Username``, ``GUID``, ``ProcessId``, ``ExitCode`` in that order, written as
  PowerShell's ``Export-Csv -NoTypeInformation`` writes them (a header row, every field in double
  quotes, ``""`` for a quote). Times use the logger's ``-uformat "%Y-%m-%dT%H:%M:%SZ"`` (its local
  column keeps the literal ``Z`` too). One row per test whose attack command ran.
* ``AttireReporter`` -> ``attire.json``: the ATTiRe log Invoke-AtomicRedTeam writes for VECTR
  (Public/Attire-ExecutionLogger.psm1): ``attire-version`` 1.1, ``execution-data`` (source,
  base64 execution id, category ``Atomic Red Team``/``ART``, the command, target user/host/ip/path,
  time generated) and one procedure per executed test (``mitre-technique-id``, name, ``procedure-id``
  ``{type: guid, id}``, description, order = test number, one step with times
  ``%Y-%m-%dT%H:%M:%S.000Z``, executor, command, process id, exit code, ``is-timeout`` and the console
  output, STDOUT then STDERR, or one empty STDOUT entry).

What atomiclab does not know it leaves empty rather than inventing it: the remote process id (no
transport reports it), the target's own host name and account when the lab file does not name them.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.results import RunResult, StepRecord, TargetInfo, TestResult

CSV_FILENAME = "art-execution-log.csv"
ATTIRE_FILENAME = "attire.json"
CSV_COLUMNS = (
    "Execution Time (UTC)",
    "Execution Time (Local)",
    "Technique",
    "Test Number",
    "Test Name",
    "Hostname",
    "IP Address",
    "Username",
    "GUID",
    "ProcessId",
    "ExitCode",
)
ATTIRE_VERSION = "1.1"
#: Console output kept per stream in attire.json (the transcripts hold all of it).
MAX_OUTPUT_CHARS = 64 * 1024


def _command(result: TestResult) -> StepRecord | None:
    return next((s for s in result.steps if s.role == "command"), None)


class _Numbers:
    """Test numbers (1-based within the technique file, as Invoke-AtomicTest counts them), read
    once per atomics file."""

    def __init__(self) -> None:
        self._by_file: dict[str, dict[str, tuple[int, str]]] = {}

    def of(self, result: TestResult) -> tuple[int | None, str]:
        """(number, description) of ``result``'s test; (None, "") when its file cannot be read."""
        if result.source not in self._by_file:
            from harness.content.atomics import load_atomic_file
            from harness.errors import ContentError

            try:
                loaded = load_atomic_file(Path(result.source))
                self._by_file[result.source] = {
                    t.guid: (i + 1, t.description) for i, t in enumerate(loaded.tests)}
            except ContentError:
                self._by_file[result.source] = {}
        return self._by_file[result.source].get(result.guid, (None, ""))


def _target(run: RunResult, name: str) -> TargetInfo | None:
    return next((t for t in run.targets if t.name == name), None)


class ArtCsvReporter:
    """Invoke-AtomicRedTeam's CSV execution log (see the module docstring)."""

    filename = CSV_FILENAME

    def __init__(self, usernames: Mapping[str, str] | None = None) -> None:
        self._numbers = _Numbers()
        self._usernames = dict(usernames or {})

    def render(self, run: RunResult) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for result in run.tests:
            step = _command(result)
            if step is None:
                continue
            started = step.started or result.started
            target = _target(run, result.target)
            number, _ = self._numbers.of(result)
            writer.writerow((
                started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                started.astimezone().strftime("%Y-%m-%dT%H:%M:%SZ"),
                result.technique,
                "" if number is None else str(number),
                result.name,
                result.target,
                target.address if target else "",
                self._usernames.get(result.target, ""),
                result.guid,
                "",
                "" if step.exit_code is None else str(step.exit_code),
            ))
        return buf.getvalue()


def _transcript_output(out: Path | None, step: StepRecord) -> tuple[str, str]:
    """(stdout, stderr) of a step from its transcript file (evidence.add_transcript's layout)."""
    if out is None or not step.transcript:
        return "", ""
    try:
        text = (out / step.transcript).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", ""
    _head, sep, rest = text.partition("--- stdout ---\n")
    if not sep:
        return "", ""
    stdout, sep, stderr = rest.partition("\n--- stderr ---\n")
    return stdout[:MAX_OUTPUT_CHARS], stderr.removesuffix("\n")[:MAX_OUTPUT_CHARS]


def _attire_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class AttireReporter:
    """The ATTiRe JSON log VECTR imports (see the module docstring)."""

    filename = ATTIRE_FILENAME

    def __init__(self, out: Path | None = None, usernames: Mapping[str, str] | None = None) -> None:
        self._out = out
        self._numbers = _Numbers()
        self._usernames = dict(usernames or {})

    def render(self, run: RunResult) -> str:
        procedures: list[dict[str, Any]] = []
        for result in run.tests:
            step = _command(result)
            if step is None:
                continue
            number, description = self._numbers.of(result)
            stdout, stderr = _transcript_output(self._out, step)
            output = [{"content": stdout, "level": "STDOUT", "type": "console"}] if stdout else []
            if stderr:
                output.append({"content": stderr, "level": "STDERR", "type": "console"})
            procedures.append({
                "mitre-technique-id": result.technique,
                "procedure-name": result.name,
                "procedure-id": {"type": "guid", "id": result.guid},
                "procedure-description": description,
                "order": number,
                "steps": [{
                    "order": 1,
                    "time-start": _attire_time(step.started or result.started),
                    "time-stop": _attire_time(step.ended or result.ended),
                    "executor": result.executor,
                    "command": step.command,
                    "process-id": None,
                    "exit-code": step.exit_code,
                    "is-timeout": step.timed_out,
                    "output": output or [{"content": "", "level": "STDOUT", "type": "console"}],
                }],
            })
        first = run.targets[0] if run.targets else None
        # Invoke-AtomicRedTeam: base64 of a GUID's text; here a GUID derived from the run id (stable per run).
        run_guid = str(uuid.uuid5(uuid.NAMESPACE_URL, "atomiclab:" + run.run_id))
        execution_id = base64.b64encode(run_guid.encode()).decode()
        log = {
            "attire-version": ATTIRE_VERSION,
            "execution-data": {
                "execution-source": "atomiclab",
                "execution-id": execution_id,
                "execution-category": {"name": "Atomic Red Team", "abbreviation": "ART"},
                "execution-command": " ".join(run.command),
                "target": {
                    "user": self._usernames.get(first.name, "") if first else "",
                    "host": first.name if first else "",
                    "ip": first.address if first else "",
                    "path": "",
                },
                "time-generated": _attire_time(run.ended or run.started),
            },
            "procedures": procedures,
        }
        return json.dumps(log, indent=2, ensure_ascii=False) + "\n"

__all__ = ["ATTIRE_FILENAME", "CSV_COLUMNS", "CSV_FILENAME", "ArtCsvReporter", "AttireReporter"]
