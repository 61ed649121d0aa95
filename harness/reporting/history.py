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
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ReportError
from harness.results import RunResult, TestStatus

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


class History:
    """The history database. Opens a connection per call, so it is safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise ReportError(f"{self.path}: cannot open history database: {exc}") from exc
        try:
            con.execute("PRAGMA foreign_keys = ON")
            con.executescript(_SCHEMA)
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
        with self._db() as con:
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
                    (
                        run.run_id,
                        t.target,
                        t.guid,
                        t.name,
                        t.technique,
                        t.status.value,
                        None if t.failure is None else t.failure.value,
                        t.reason,
                    )
                    for t in run.tests
                ],
            )

    def runs(self, last: int = 20) -> list[RunSummary]:
        """The ``last`` runs, newest first."""
        with self._db() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY started DESC, run_id DESC LIMIT ?", (last,)).fetchall()
        return [RunSummary(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]), r[6], r[7], r[8], r[9], r[10]) for r in rows]

    def trends(self, last: int = 10) -> list[TestTrend]:
        """Per target x test over the ``last`` runs: statuses (oldest first), regression, fix, flaky."""
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
            judged = [s == "passed" for s in statuses if s != "skipped"]
            changes = sum(1 for a, b in itertools.pairwise(judged) if a != b)
            regression = len(judged) >= 2 and judged[-2] and not judged[-1]
            fix = len(judged) >= 2 and not judged[-2] and judged[-1]
            out.append(TestTrend(target, guid, items[-1][0], statuses, regression, fix, changes >= 2, items[-1][2]))
        return out
