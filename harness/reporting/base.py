"""The Reporter seam and the report directory a run writes into as it goes.

A ``Reporter`` turns a ``RunResult`` (possibly still in progress) into one file. ``ReportDirectory``
is the runner's ``ReportSink``: it appends evidence (events, transcripts) as tests finish and, on
every ``publish``, rewrites each reporter's file and then ``manifest.json``. Every file is written to
a temporary name in the same folder and renamed over the old one (atomic on POSIX and Windows), so
a run killed at any moment leaves complete, valid files for what had finished.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from harness.errors import ReportError
from harness.model import CommandResult
from harness.results import RunResult
from harness.telemetry.event import Event


class Reporter(Protocol):
    """Writes one report file for a run."""

    @property
    def filename(self) -> str:
        """The file's path relative to the report directory."""
        ...

    def render(self, run: RunResult) -> str:
        """The whole file's text for ``run`` (called after every finished test and at the end)."""
        ...


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file).

    A lone surrogate (from a YAML ``"\\ud800"`` escape) is written as the text ``\\ud800``: in JSON
    that reads back as the same string, elsewhere it is shown, and the report is still written."""
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ReportError(
            f"{path}: cannot write report file: {exc.strerror or exc}",
            hint="check the --out folder is writable and the disk is not full",
        ) from exc


class ReportDirectory:
    """One run's report folder: evidence appended as tests finish, reports rewritten on publish.

    Thread-safe: hosts finish tests concurrently.
    """

    def __init__(self, out: Path, reporters: Sequence[Reporter]) -> None:
        from harness.reporting.evidence import EvidenceStore  # evidence depends on base helpers

        self.out = out
        self.reporters = tuple(reporters)
        self._lock = threading.Lock()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"{out}: cannot create report folder: {exc.strerror or exc}") from exc
        self.evidence = EvidenceStore(out)

    def add_events(self, result_key: str, guid: str, events: Sequence[Event]) -> int:
        return self.evidence.add_events(result_key, guid, events)

    def add_transcript(self, target: str, guid: str, role: str, result: CommandResult) -> str:
        return self.evidence.add_transcript(target, guid, role, result)

    def publish(self, run: RunResult) -> None:
        from harness.reporting.evidence import write_manifest

        with self._lock:
            for r in self.reporters:
                atomic_write_text(self.out / r.filename, r.render(run))
            write_manifest(self.out)
