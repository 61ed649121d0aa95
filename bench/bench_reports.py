"""Report writing at library scale: the pause a finished test costs, early and late in a long run.

Builds N synthetic but full-sized test results (steps with transcripts, event verdicts with evidence
lines in events.jsonl, the run's real reporters: results.json, junit.xml, navigator layer,
report.html, manifest.json), then measures, side by side in this process:

* rewrite every report after every test (what the runner did before results.jsonl): the cost of
  ``ReportDirectory.publish`` with i tests done, sampled at a few sizes (the whole sequence would
  take hours), and the total over 1..N estimated from the samples (trapezoid);
* append + render at most every few seconds (``ReportDirectory.add_result``): the whole sequence
  1..N, every call timed, each "test" taking ``--test-s`` seconds of (simulated, slept) work.

    python bench/bench_reports.py [--tests 1800] [--test-s 0.05]

No assertions: this prints numbers and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.model import AtomicTest, CommandResult, Executor, ExecutorName  # noqa: E402
from harness.plan import PlannedTest  # noqa: E402
from harness.reporting.base import ReportDirectory  # noqa: E402
from harness.reporting.html import HtmlReporter  # noqa: E402
from harness.reporting.junit import JUnitReporter  # noqa: E402
from harness.reporting.navigator import NavigatorReporter  # noqa: E402
from harness.reporting.results_json import ResultsJsonReporter  # noqa: E402
from harness.results import EventVerdict, EvidenceRef, Outcome, RunMode, RunResult, StepRecord, TestStatus  # noqa: E402
from harness.runner import _result  # noqa: E402
from harness.telemetry.event import SYSMON, Event  # noqa: E402

T0 = datetime(2026, 12, 1, tzinfo=UTC)
STATUSES = (TestStatus.PASSED, TestStatus.FAILED, TestStatus.INCONCLUSIVE, TestStatus.SKIPPED)


def _sink(out: Path) -> ReportDirectory:
    return ReportDirectory(out, [ResultsJsonReporter(), JUnitReporter(), NavigatorReporter(), HtmlReporter(out)])


def _finish_test(sink: ReportDirectory, i: int) -> object:
    """What the runner does for one finished test before recording it: evidence and transcripts."""
    guid = f"00000000-0000-4000-8000-{i:012d}"
    test = AtomicTest(technique=f"T{1000 + i % 250}", name=f"atomic test {i}", guid=guid, description="d",
                      platforms=("windows",), executor=Executor(ExecutorName.POWERSHELL, "whoami /all", None),
                      source="atomics/x.yaml")
    cmd = CommandResult(f"powershell.exe & {{whoami /all}} # marker{i}", 0, "user\n" * 40, "", T0, T0)
    transcript = sink.add_transcript("emulated", guid, "command", cmd)
    events = [Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1, time=T0, computer="WIN",
                    record_id=i * 3 + k, fields={"Image": r"C:\Windows\System32\whoami.exe",
                                                 "CommandLine": "whoami /all", "User": "WIN\\atomiclab"},
                    raw="<Event>" + "x" * 1500 + "</Event>") for k in range(3)]
    first = sink.add_events(f"emulated::{guid}", guid, events)
    refs = tuple(EvidenceRef(first + k, SYSMON, 1, i * 3 + k) for k in range(3))
    verdict = EventVerdict("root", "root process", SYSMON, 1, 1, None, 3, Outcome.MET, "met", evidence=refs,
                           origin="baseline")
    base = _result(PlannedTest(test, None), "emulated", STATUSES[i % len(STATUSES)], None, "ok", T0, T0)
    return replace(base, steps=(StepRecord("command", cmd.command, 0, T0, T0, False, transcript),),
                   event_verdicts=(verdict,))


def _run() -> RunResult:
    return RunResult(run_id="bench", mode=RunMode.RUN, started=T0, harness_version="bench", operator="bench")


def rewrite_every_test(out: Path, n: int, samples: list[int]) -> dict[int, float]:
    """Seconds of ``publish`` with i tests done, for i in ``samples``."""
    sink, run, cost = _sink(out), _run(), {}
    for i in range(1, n + 1):
        run = run.with_test(_finish_test(sink, i))  # type: ignore[arg-type]
        if i in samples:
            t0 = time.perf_counter()
            sink.publish(run)
            cost[i] = time.perf_counter() - t0
    return cost


def append_and_render(out: Path, n: int, test_s: float) -> tuple[list[float], float, int]:
    """Every ``add_result`` call's seconds, the final publish's, and how many renders ran."""
    sink, run, pauses = _sink(out), _run(), []
    sink.publish(run)
    for i in range(1, n + 1):
        time.sleep(test_s)  # the test itself
        result = _finish_test(sink, i)
        run = run.with_test(result)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        sink.add_result(run, result)  # type: ignore[arg-type]
        pauses.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    sink.publish(run)
    return pauses, time.perf_counter() - t0, sink.renders


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tests", type=int, default=1800)
    ap.add_argument("--test-s", type=float, default=0.05, help="simulated duration of one test (s)")
    args = ap.parse_args()
    n = args.tests
    samples = sorted({1, 50, n // 4, n // 2, 3 * n // 4, n})
    with tempfile.TemporaryDirectory() as tmp:
        old = rewrite_every_test(Path(tmp) / "old", n, samples)
        pauses, final, renders = append_and_render(Path(tmp) / "new", n, args.test_s)
    xs = sorted(old)
    old_total = sum((xs[k + 1] - xs[k]) * (old[xs[k]] + old[xs[k + 1]]) / 2 for k in range(len(xs) - 1))
    tenth = max(1, n // 10)  # windows long enough to hold a render: its cost is spread over the tests
    first, last = statistics.mean(pauses[:tenth]), statistics.mean(pauses[-tenth:])
    print(f"{n} tests, each simulated as {args.test_s:g}s of work; reporters: results.json, junit.xml, "
          "navigator layer, report.html, manifest.json")
    print(f"{'mean pause after a test (s)':34}{'rewrite every test':>20}{'append + render':>18}")
    print(f"{'  at the start (first tenth)':34}{old[min(50, n)]:>20.4f}{first:>18.4f}")
    print(f"{'  at the end (last tenth)':34}{old[n]:>20.4f}{last:>18.4f}")
    print(f"{'  median pause, last tenth':34}{'':>20}{statistics.median(pauses[-tenth:]):>18.5f}")
    new_total = sum(pauses) + final
    print(f"{'report writing over the run (s)':34}{old_total:>20.1f}{new_total:>18.1f}   "
          f"(old: estimated from the samples; new: {renders} whole renders, final render {final:.2f}s)")
    print(f"report writing old / new: x{old_total / new_total:.0f}; samples of the old publish: "
          + ", ".join(f"{i}: {old[i]:.3f}s" for i in xs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
