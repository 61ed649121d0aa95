"""Live console output for ``atomiclab run``/``evaluate``: a progress bar per host, one line per
finished test, and a summary table. This is the only place the run's UI lives; the runner only
calls the ``RunObserver`` methods (from worker threads: rich's Progress is thread-safe).

On a terminal: bars and a boxed rich table. In a log (stdout not a terminal, or ``--no-progress``):
no bars, one line per finished test (never wrapped, so grep finds it) and a plain aligned table."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from harness.model import AtomicTest
from harness.results import RunResult, TestResult, TestStatus
from harness.textsafe import for_terminal

STYLE = {
    TestStatus.PASSED: "green",
    TestStatus.FAILED: "red",
    TestStatus.INCONCLUSIVE: "cyan",
    TestStatus.ERROR: "magenta",
    TestStatus.SKIPPED: "yellow",
}


class ConsoleProgress:
    """A ``RunObserver`` drawing rich progress; use as a context manager around the run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.fields[host]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ConsoleProgress:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def host_started(self, target: str, total: int) -> None:
        with self._lock:
            self._tasks[target] = self.progress.add_task("connecting", total=total, host=target)

    def test_started(self, target: str, test: AtomicTest) -> None:
        task = self._tasks.get(target)
        if task is not None:
            self.progress.update(task, description=test.name[:60])

    def test_finished(self, result: TestResult) -> None:
        task = self._tasks.get(result.target)
        if task is not None:
            self.progress.advance(task)
        self.progress.console.print(result_line(result))

    def host_finished(self, target: str) -> None:
        task = self._tasks.get(target)
        if task is not None:
            self.progress.update(task, description="done")


class ConsoleLines:
    """A ``RunObserver`` for logs: one line per finished test, no progress bars."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def host_started(self, target: str, total: int) -> None:
        return None

    def test_started(self, target: str, test: AtomicTest) -> None:
        return None

    def test_finished(self, result: TestResult) -> None:
        with self._lock:
            self.console.print(result_line(result), soft_wrap=True)

    def host_finished(self, target: str) -> None:
        return None


def result_line(r: TestResult) -> Text:
    """``PASSED  win2022  T1046  Nmap service scan ... : reason`` (names and reasons come from
    content and events: terminal controls in them are shown escaped)."""
    line = Text()
    line.append(f"{r.status.value.upper():8} ", style=STYLE[r.status])
    line.append(for_terminal(f"{r.target}  {r.technique}  {r.name}"))
    baseline = any(v.origin == "baseline" for v in r.event_verdicts)
    if r.status is not TestStatus.PASSED or r.findings or baseline:
        line.append(for_terminal(f": {r.reason}"), style="dim" if r.status is TestStatus.PASSED else None)
    return line


SUMMARY_COLUMNS = ("Target", "Technique", "Test", "Status", "Failure", "Events", "Detections")


def _summary_rows(run: RunResult) -> list[tuple[TestResult, list[str]]]:
    rows = []
    for t in sorted(run.tests, key=lambda t: (t.target, t.benign, t.technique, t.name)):
        det = sum(v.ok for v in t.detection_verdicts)
        ev = sum(v.ok for v in t.event_verdicts)
        rows.append((t, [
            for_terminal(t.target),
            for_terminal(t.technique + (" (benign)" if t.benign and t.technique != "benign" else "")),
            for_terminal(t.name),
            t.status.value,
            t.failure.value if t.failure else "",
            _events_cell(t, ev),
            f"{det}/{len(t.detection_verdicts)}" if t.detection_verdicts else "-",
        ]))
    return rows


def _events_cell(t: TestResult, met: int) -> str:
    """``2/2``, ``2/2 baseline`` (no expectations authored) or ``3/3 (1 baseline)``."""
    if not t.event_verdicts:
        return "-"
    n = len(t.event_verdicts)
    base = sum(v.origin == "baseline" for v in t.event_verdicts)
    return f"{met}/{n}" + ("" if not base else " baseline" if base == n else f" ({base} baseline)")


def _title(run: RunResult) -> str:
    return f"atomiclab {run.mode.value} {run.run_id}" + (" (EMULATED target)" if run.emulated else "")


def _caption(run: RunResult) -> str:
    c = run.counts()
    return ", ".join(f"{n} {s.value}" for s, n in c.items()) + ("; interrupted" if run.interrupted else "")


def summary_table(run: RunResult) -> Table:
    table = Table(title=_title(run), show_lines=False)
    for col in SUMMARY_COLUMNS:
        table.add_column(col)
    for t, cells in _summary_rows(run):
        # Text cells: a '[bold]' in a test name is text, not rich markup.
        table.add_row(*map(Text, cells[:3]), Text(cells[3], style=STYLE[t.status]), *map(Text, cells[4:]))
    table.caption = _caption(run)
    return table


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns without box drawing or wrapping: stable in logs, for grep and awk."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in [header, *rows]]


def summary_lines(run: RunResult) -> list[str]:
    """The summary table as plain lines (for logs): title, header, one line per test, counts."""
    rows = [cells for _, cells in _summary_rows(run)]
    return [_title(run), *plain_table([c.upper() for c in SUMMARY_COLUMNS], rows), _caption(run)]


def print_summary(console: Console, run: RunResult) -> None:
    """A boxed table on a terminal, plain aligned lines in a log."""
    if console.is_terminal:
        console.print(summary_table(run))
        return
    for line in summary_lines(run):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
