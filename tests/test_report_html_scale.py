"""report.html with thousands of tests: filterable by status and technique without scripts, every
test collapsed, and a size bounded per test (issue 11 item 5, issue 15)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from run_fakes import T0, atomic

from harness.plan import PlannedTest
from harness.reporting.html import RAW_EVENTS_SHOWN, HtmlReporter
from harness.results import EVENTS_FILE, EventVerdict, EvidenceRef, Outcome, RunMode, RunResult, StepRecord, TestStatus
from harness.runner import _result

N = 2000
STATUSES = (TestStatus.PASSED, TestStatus.FAILED, TestStatus.INCONCLUSIVE, TestStatus.ERROR, TestStatus.SKIPPED)


def _big_run(out: Path) -> RunResult:
    raw = "<Event>" + "x" * 20_000 + "</Event>"  # a huge raw event (a long script block)
    (out / EVENTS_FILE).parent.mkdir(parents=True)
    with (out / EVENTS_FILE).open("w") as fh:
        for _ in range(N * 4):
            fh.write(json.dumps({"channel": "Security", "event_id": 4688, "fields": {"CommandLine": "c" * 5000},
                                 "raw": raw}) + "\n")
    base = _result(PlannedTest(atomic(), None), "emulated", TestStatus.PASSED, None, "ok", T0, T0)
    tests = []
    for i in range(N):
        refs = tuple(EvidenceRef(line=i * 4 + k + 1, channel="Security", event_id=4688) for k in range(4))
        verdict = EventVerdict("proc", "process", "Security", 4688, 1, None, 4, Outcome.MET, "met", evidence=refs,
                               near_misses=("n" * 3000,) * 20)
        step = StepRecord(role="command", command="powershell " + "A" * 50_000, exit_code=0, started=T0, ended=T0,
                          timed_out=False, transcript="evidence/transcripts/x.txt")
        tests.append(replace(base, guid=f"00000000-0000-4000-8000-{i:012d}", technique=f"T{1000 + i % 300}",
                             status=STATUSES[i % len(STATUSES)], reason="r" * 5000, event_verdicts=(verdict,),
                             steps=(step,)))
    return RunResult(run_id="big", mode=RunMode.RUN, started=T0, harness_version="t", operator="me",
                     tests=tuple(tests))


def test_report_html_at_library_scale_is_filterable_collapsed_and_bounded(tmp_path: Path) -> None:
    run = _big_run(tmp_path)
    page = HtmlReporter(tmp_path).render(run)
    assert "Content-Security-Policy" in page and "<script" not in page
    # status filter: one radio per status, CSS rules hiding the others (no script needed)
    for s in STATUSES:
        assert f'id="sf-{s.value}"' in page and f"#sf-{s.value}:checked~.filtered .st:not(.st-{s.value})" in page
    # technique filter: one section per technique, targeted by its link; the others hidden by CSS
    assert len(re.findall(r'<section class="tq" id="tq-T\d+">', page)) == 300
    assert ".filtered:has(.tq:target) .tq:not(:target){display:none}" in page
    # every test collapsed
    details = re.findall(r'<details class="test st st-(\w+)"[^>]*>', page)
    assert len(details) == N and all(" open" not in d for d in re.findall(r'<details class="test[^>]*>', page))
    # bounded: raw events on the page at most RAW_EVENTS_SHOWN, long texts clipped
    assert page.count("<summary>raw event</summary>") <= RAW_EVENTS_SHOWN
    assert "more characters]" in page
    assert len(page.encode()) / N < 32_000, len(page.encode()) / N
