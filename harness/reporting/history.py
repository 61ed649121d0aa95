"""Run history in SQLite (``reports/history.sqlite`` by default): trends, regressions, fixes, flakiness.

Each finished (or interrupted) run is appended: one ``runs`` row and one ``results`` row per target x
test. ``analyze`` compares the last N runs per test:

* regression: passed in the previous run that judged it, failed or errored in the latest;
* fix: failed or errored before, passed in the latest;
* flaky: its judged outcome (passed vs not) changed at least twice across the last N runs.

Skipped results are not judgements and are left out of these comparisons.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import stat
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ReportError
from harness.results import RunResult, TestStatus
from harness.textsafe import storable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    ended TEXT,
    mode TEXT NOT NULL,
    emulated INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    error INTEGER NOT NULL,
    report_dir TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    guid TEXT NOT NULL,
    name TEXT NOT NULL,
    technique TEXT NOT NULL,
    status TEXT NOT NULL,
    failure TEXT,
    reason TEXT NOT NULL,
    PRIMARY KEY (run_id, target, guid)
);
CREATE INDEX IF NOT EXISTS results_by_test ON results(target, guid);
"""


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    started: str
    ended: str | None
    mode: str
    emulated: bool
    complete: bool
    passed: int
    failed: int
    skipped: int
    error: int
    report_dir: str | None
    #: Counted from the results table (the runs table predates the status; its columns stay).
    inconclusive: int = 0


@dataclass(frozen=True, slots=True)
class TestTrend:
    """One target x test across the analysed runs (newest last)."""

    __test__ = False

    target: str
    guid: str
    name: str
    statuses: tuple[str, ...]
    regression: bool
    fix: bool
    flaky: bool
    last_reason: str


#: ``PRAGMA application_id`` of a history database atomiclab created ("ATLH").
APPLICATION_ID = 0x41544C48
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OWN_TABLES = {"runs", "results"}
_RUNS_COLUMNS = ("run_id", "started", "ended", "mode", "emulated", "complete", "passed", "failed", "skipped",
                 "error", "report_dir")
_RESULTS_COLUMNS = ("run_id", "target", "guid", "name", "technique", "status", "failure", "reason")
_HINT = "pass --history a history.sqlite written by atomiclab, or a path that does not exist yet"


class History:
    """The history database. Opens a connection per call, so it is safe from any thread.

    Only a database atomiclab created is ever opened for writing: an existing file must be an
    SQLite database with atomiclab's ``application_id`` (or, written by an older version, exactly
    the ``runs`` and ``results`` tables). A new database is built aside and linked into place, so
    the path never holds a half-created file. Readers never create anything.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def check(self, *, create: bool) -> None:
        """ReportError (one line) unless ``path`` is an atomiclab history database, or (``create``)
        does not exist yet and can be created. With ``create`` the database (or the folder it goes
        in) must also be writable: call it before a run so a bad or read-only --history fails
        before the first test, not after the last."""
        path = self.path
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise ReportError(f"{path}: cannot read the history database: {exc.strerror or exc}") from exc
        if st is None:
            if not create:
                raise ReportError(f"{path}: no history database", hint="it is written by `atomiclab run`")
            parent = next((p for p in path.parents if p.exists()), None)
            if parent is not None and not parent.is_dir():
                raise ReportError(f"{path}: cannot create the history database: {parent} is not a folder")
            if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
                raise ReportError(f"{path}: cannot create the history database: {parent} is read-only",
                                  hint="pass --history a writable path")
            return
        if not stat.S_ISREG(st.st_mode):
            raise ReportError(f"{path}: not a regular file, not a history database", hint=_HINT)
        if st.st_size == 0:
            raise ReportError(f"{path}: empty file, not a history database", hint=_HINT)
        try:
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise ReportError(f"{path}: cannot read the history database: {exc.strerror or exc}") from exc
        if head != _SQLITE_MAGIC:
            raise ReportError(f"{path}: not an SQLite database, not a history database", hint=_HINT)
        try:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            try:
                app_id = con.execute("PRAGMA application_id").fetchone()[0]
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                columns = {t: tuple(r[1] for r in con.execute(f"PRAGMA table_info({t})")) for t in tables & _OWN_TABLES}
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise ReportError(f"{path}: not a readable history database: {exc}", hint=_HINT) from exc
        legacy = app_id == 0 and tables == _OWN_TABLES
        if app_id != APPLICATION_ID and not legacy:
            raise ReportError(f"{path}: an SQLite database that is not an atomiclab history", hint=_HINT)
        if columns.get("runs") != _RUNS_COLUMNS or columns.get("results") != _RESULTS_COLUMNS:
            raise ReportError(f"{path}: history database with unexpected tables", hint=_HINT)
        # SQLite writes the file and a journal beside it: both must be possible (os.access also
        # sees read-only mounts and immutable files, which root's permission bypass does not).
        if create and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
            where = path if not os.access(path, os.W_OK) else path.parent
            raise ReportError(f"{path}: the history database is read-only ({where} is not writable)",
                              hint="pass --history a writable path, or make it writable")

    def _create(self) -> None:
        """Create the database aside (schema and application id) and link it into place."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        except OSError as exc:
            raise ReportError(f"{path}: cannot create history database: {exc.strerror or exc}") from exc
        tmp = Path(tmp_name)
        try:
            con = sqlite3.connect(tmp)
            try:
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                con.executescript(_SCHEMA)
                con.commit()
            finally:
                con.close()
            try:
                os.link(tmp, path)  # never replaces: a concurrent creator's database wins
            except FileExistsError:
                pass  # another process created it meanwhile: use theirs (checked by the caller)
            except OSError:  # no hard links on this file system
                if not path.exists():
                    os.replace(tmp, path)
        except (OSError, sqlite3.Error) as exc:
            raise ReportError(f"{path}: cannot create history database: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write and not self.path.exists():
            self._create()
        self.check(create=False)
        try:
            if write:
                con = sqlite3.connect(self.path, timeout=30)
            else:
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise ReportError(f"{self.path}: cannot open history database: {exc}") from exc
        try:
            con.execute("PRAGMA foreign_keys = ON")
            with con:
                yield con
        except sqlite3.DatabaseError as exc:
            raise ReportError(
                f"{self.path}: history database error: {exc}", hint="move the file aside to start a new history"
            ) from exc
        finally:
            con.close()

    def record(self, run: RunResult, report_dir: Path | None = None) -> None:
        """Append (or replace) ``run``."""
        c = run.counts()
        d = run.to_dict()
        with self._db(write=True) as con:
            con.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            con.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.run_id,
                    d["started"],
                    d["ended"],
                    run.mode.value,
                    int(run.emulated),
                    int(run.complete),
                    c[TestStatus.PASSED],
                    c[TestStatus.FAILED],
                    c[TestStatus.SKIPPED],
                    c[TestStatus.ERROR],
                    None if report_dir is None else str(report_dir),
                ),
            )
            con.executemany(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?)",
                [
                    (  # names and reasons come from content and events: stored UTF-8-safe
                        storable(run.run_id),
                        storable(t.target),
                        storable(t.guid),
                        storable(t.name),
                        storable(t.technique),
                        t.status.value,
                        None if t.failure is None else t.failure.value,
                        storable(t.reason),
                    )
                    for t in run.tests
                ],
            )

    def runs(self, last: int = 20) -> list[RunSummary]:
        """The ``last`` runs, newest first (none while the database does not exist)."""
        if not self.path.exists():
            return []
        with self._db() as con:
            rows = con.execute(
                "SELECT u.*, (SELECT COUNT(*) FROM results r WHERE r.run_id = u.run_id AND r.status = 'inconclusive') "
                "FROM runs u ORDER BY u.started DESC, u.run_id DESC LIMIT ?",
                (last,),
            ).fetchall()
        return [
            RunSummary(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]), r[6], r[7], r[8], r[9], r[10], r[11])
            for r in rows
        ]

    def trends(self, last: int = 10) -> list[TestTrend]:
        """Per target x test over the ``last`` runs: statuses (oldest first), regression, fix, flaky."""
        if not self.path.exists():
            return []
        with self._db() as con:
            run_ids = [
                r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started DESC, run_id DESC LIMIT ?", (last,))
            ]
            if not run_ids:
                return []
            marks = ",".join("?" * len(run_ids))
            rows = con.execute(
                f"SELECT r.target, r.guid, r.name, r.status, r.reason FROM results r JOIN runs u USING (run_id) "  # noqa: S608 -- only '?' placeholders are interpolated
                f"WHERE r.run_id IN ({marks}) ORDER BY u.started, u.run_id",
                run_ids,
            ).fetchall()
        series: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
        for target, guid, name, status, reason in rows:
            series[(target, guid)].append((name, status, reason))
        out = []
        for (target, guid), items in sorted(series.items()):
            statuses = tuple(s for _, s, _ in items)
            # inconclusive (e.g. not modelled) proves neither way: like a skip, no regression or fix
            judged = [s == "passed" for s in statuses if s not in ("skipped", "inconclusive")]
            changes = sum(1 for a, b in itertools.pairwise(judged) if a != b)
            regression = len(judged) >= 2 and judged[-2] and not judged[-1]
            fix = len(judged) >= 2 and not judged[-2] and judged[-1]
            out.append(TestTrend(target, guid, items[-1][0], statuses, regression, fix, changes >= 2, items[-1][2]))
        return out
