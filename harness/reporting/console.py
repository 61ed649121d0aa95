"""Live console output for ``atomiclab run``/``evaluate``: a progress bar per host, one line per
finished test, and a summary table. This is the only place the run's UI lives; the runner only
calls the ``RunObserver`` methods (from worker threads: rich's Progress is thread-safe)."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from harness.model import AtomicTest
from harness.results import RunResult, TestResult, TestStatus

STYLE = {
    TestStatus.PASSED: "green",
    TestStatus.FAILED: "red",
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


def result_line(r: TestResult) -> Text:
    """``PASSED  win2022  T1046  Nmap service scan ... : reason``"""
    line = Text()
    line.append(f"{r.status.value.upper():8}", style=STYLE[r.status])
    line.append(f"{r.target}  {r.technique}  {r.name}")
    if r.status is not TestStatus.PASSED or r.findings:
        line.append(f": {r.reason}", style="dim" if r.status is TestStatus.PASSED else None)
    return line


def summary_table(run: RunResult) -> Table:
    title = f"atomiclab {run.mode.value} {run.run_id}" + (" (EMULATED target)" if run.emulated else "")
    table = Table(title=title, show_lines=False)
    for col in ("Target", "Technique", "Test", "Status", "Failure", "Events", "Detections"):
        table.add_column(col)
    for t in sorted(run.tests, key=lambda t: (t.target, t.benign, t.technique, t.name)):
        det = sum(v.ok for v in t.detection_verdicts)
        ev = sum(v.ok for v in t.event_verdicts)
        table.add_row(
            t.target,
            t.technique + (" (benign)" if t.benign and t.technique != "benign" else ""),
            t.name,
            Text(t.status.value, style=STYLE[t.status]),
            t.failure.value if t.failure else "",
            f"{ev}/{len(t.event_verdicts)}" if t.event_verdicts else "-",
            f"{det}/{len(t.detection_verdicts)}" if t.detection_verdicts else "-",
        )
    c = run.counts()
    table.caption = ", ".join(f"{n} {s.value}" for s, n in c.items()) + ("; interrupted" if run.interrupted else "")
    return table
