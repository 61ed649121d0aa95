"""The Reporter seam and the report directory a run writes into as it goes.

A ``Reporter`` turns a ``RunResult`` (possibly still in progress) into one file. ``ReportDirectory``
is the runner's ``ReportSink``: it appends evidence (events, transcripts) as tests finish, appends
each finished test to ``results.jsonl`` at once (one ``TestResult.to_dict`` per line, flushed), and
renders the whole reports (each reporter's file, then ``manifest.json``) on ``publish`` (the start
and end of a run) and, while the run goes on, on a background thread started by ``add_result`` at
most every ``interval_s`` seconds - and never more often than keeps rendering under
``RENDER_SHARE`` of the wall time - so the pause between tests stays flat however many tests the
run has. A render that is due while another renders is skipped (the next one, or the final
``publish``, includes it): no host waits for report writing, its own or another's. Every file is
written to a temporary name in the same folder and renamed over the old one (atomic on POSIX and
Windows), so a run killed at any moment leaves complete, valid files: the whole reports as of the
last render, and ``results.jsonl`` with every finished test.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.errors import ReportError
from harness.model import CommandResult
from harness.reporting.signing import ManifestSigner
from harness.results import RunResult, TestResult
from harness.telemetry.event import Event

if TYPE_CHECKING:
    from harness.reporting.evidence import DigestCache


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


#: The finished tests, one JSON object per line, appended as they finish (beside results.json).
RESULTS_STREAM = "results.jsonl"
#: While a run goes on, whole reports are rendered at most this often (seconds)...
RENDER_INTERVAL_S = 5.0
#: ...and at most this share of the wall time: after a render that took t, the next waits t / share.
RENDER_SHARE = 0.1


def claim_folder(out: Path) -> int | None:
    """Create ``out`` (or take it when empty) for one run and lock it: the descriptor of the folder,
    held ``flock``-ed until closed (None where there is no ``flock``).

    ReportError when the folder holds anything (another run's reports would be cross-linked with
    this one's and verify could not tell) or another process holds it.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise ReportError(f"{out}: cannot create report folder: {exc.strerror or exc}") from exc
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the emptiness check alone
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise ReportError(f"{out}: another atomiclab run is writing this report folder",
                                  hint="choose another --out") from exc
        with os.scandir(out) as entries:
            if next(entries, None) is not None:
                raise ReportError(
                    f"{out}: the report folder is not empty (a run's reports and evidence go to a folder of their own)",
                    hint="choose a new or empty --out folder",
                )
    except BaseException:
        os.close(fd)
        raise
    if fcntl is None:  # pragma: no cover - nothing to hold
        os.close(fd)
        return None
    return fd


def _provenance(run: RunResult) -> dict[str, object]:
    """The content part of manifest.json: commit, repositories, files with SHA-256."""
    return {
        "commit": run.content_commit,
        "sources": [s.to_dict() for s in run.content_sources],
        "files": [c.to_dict() for c in run.content],
    }


class ReportDirectory:
    """One run's report folder: evidence and results appended as tests finish, whole reports
    rendered on ``publish`` and at most every ``interval_s`` while the run goes on.

    The folder must be new or empty and is locked for the run (``claim_folder``); ``signer`` signs
    each manifest. Thread-safe: hosts finish tests concurrently.
    """

    def __init__(
        self,
        out: Path,
        reporters: Sequence[Reporter],
        *,
        interval_s: float = RENDER_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
        signer: ManifestSigner | None = None,
        background: bool = True,
    ) -> None:
        from harness.reporting.evidence import EvidenceStore  # evidence depends on base helpers

        self.out = out
        self.reporters = tuple(reporters)
        self.interval_s = interval_s
        self.background = background  # False: a due render runs in add_result's thread (tests)
        self._monotonic = monotonic
        self._lock = threading.Lock()  # one whole render at a time
        self._stream_lock = threading.Lock()
        self._next_render = monotonic() + interval_s
        self.renders = 0
        self._failed: Exception | None = None  # a background render's error, raised by the next call
        self._digests: DigestCache = {}  # manifest digests of files unchanged since the last render
        self.signer = signer
        self._folder_fd = claim_folder(out)
        self.evidence = EvidenceStore(out)

    def close(self) -> None:
        """Release the folder's lock (also released when the process ends)."""
        fd, self._folder_fd = getattr(self, "_folder_fd", None), None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    def add_events(self, result_key: str, guid: str, events: Sequence[Event]) -> int:
        return self.evidence.add_events(result_key, guid, events)

    def add_transcript(self, target: str, guid: str, role: str, result: CommandResult) -> str:
        return self.evidence.add_transcript(target, guid, role, result)

    def add_result(self, run: RunResult, result: TestResult) -> None:
        """Append ``result`` to ``results.jsonl`` now; render ``run`` (which includes it) when due.

        Never waits for another thread's render: a due render finding one under way is skipped."""
        line = json.dumps(result.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        path = self.out / RESULTS_STREAM
        with self._stream_lock:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
                with open(fd, "a", encoding="utf-8", errors="backslashreplace") as fh:  # 0600 like every report
                    fh.write(line)
            except OSError as exc:
                raise ReportError(f"{path}: cannot append the result: {exc.strerror or exc}") from exc
        self._raise_failed_render()
        if self._monotonic() < self._next_render or not self._lock.acquire(blocking=False):
            return
        if not self.background:
            self._render_in_background(run)
            self._raise_failed_render()
            return
        # The render runs on a thread of its own: the host that finished this test goes on at once.
        worker = threading.Thread(target=self._render_in_background, args=(run,), name="atomiclab-render", daemon=True)
        try:
            worker.start()
        except BaseException:
            self._lock.release()
            raise

    def _render_in_background(self, run: RunResult) -> None:
        try:
            self._render(run)
        except Exception as exc:  # reported by the next add_result/publish, on a thread that can
            self._failed = exc
        finally:
            self._lock.release()

    def _raise_failed_render(self) -> None:
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def publish(self, run: RunResult) -> None:
        """Render every report for ``run`` now (waits for a render under way)."""
        with self._lock:
            self._failed = None  # this render supersedes a failed background one (or fails itself)
            self._render(run)

    def _render(self, run: RunResult) -> None:
        from harness.reporting.evidence import write_manifest

        began = self._monotonic()
        for r in self.reporters:
            atomic_write_text(self.out / r.filename, r.render(run))
        write_manifest(self.out, self._digests, self.signer, content=_provenance(run))
        took = self._monotonic() - began
        self.renders += 1
        self._next_render = self._monotonic() + max(self.interval_s, took / RENDER_SHARE)
