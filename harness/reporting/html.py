"""``report.html``: one self-contained page for auditors and the purple team.

Who ran what where and when, content hashes, a coverage matrix (test x executed / telemetry /
detection), per-test evidence (commands, exit codes, key fields of matched events with the raw event
on demand, detection rows), findings on benign tests, lint findings of every rule judged (and of the
published upstream rules, marked "published, not judged"), a trend chart from the history (inline
SVG) and a plain banner when the target was emulated. No scripts, no external resources: the page
opens from an archive years later. Jinja2 autoescaping is on, so event text (attacker-controlled
command lines) can never become markup; and should anything slip through, the page's
Content-Security-Policy (``CSP`` below, a meta tag: a file has no headers) forbids every script,
plugin, form target and remote resource (styles inline only, images ``data:`` only).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from harness.reporting.history import RunSummary
from harness.results import (
    EVENTS_FILE,
    DetectionVerdict,
    EventVerdict,
    LintRecord,
    Outcome,
    RunResult,
    TestResult,
    TestStatus,
    rule_file,
)

FILENAME = "report.html"
#: The policy the page's meta tag declares (tests check the rendered page carries exactly this).
CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)

#: Event fields shown for matched events (the rest is in the raw event and events.jsonl).
KEY_FIELDS = (
    "Image",
    "NewProcessName",
    "CommandLine",
    "ParentImage",
    "ParentProcessName",
    "User",
    "SubjectUserName",
    "DestinationIp",
    "DestinationPort",
    "Protocol",
    "TargetFilename",
    "QueryName",
    "ScriptBlockText",
)
_CLIP = 300
#: Size bounds (report.html stays usable with thousands of tests): evidence events shown per
#: verdict, raw events shown on the whole page (the rest by their events.jsonl line), and the
#: longest command / raw event / reason text shown (the transcripts and events.jsonl have it all).
EVIDENCE_SHOWN = 3
RAW_EVENTS_SHOWN = 300
_CLIP_TEXT = 4000


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clip(text: str, limit: int = _CLIP_TEXT) -> str:
    """``text`` up to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters]"


def _techniques(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matrix rows grouped by technique (rows are sorted by technique within benign/not)."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        t: TestResult = row["t"]
        g = groups.setdefault(t.technique, {"technique": t.technique, "anchor": f"tq-{t.technique}", "rows": [],
                                            "counts": dict.fromkeys((s.value for s in TestStatus), 0)})
        g["rows"].append(row)
        g["counts"][t.status.value] += 1
    return list(groups.values())


def _key_fields(ev: dict[str, Any]) -> list[tuple[str, str]]:
    fields = ev.get("fields") or {}
    out = []
    for k in KEY_FIELDS:
        if k in fields:
            v = str(fields[k])
            out.append((k, v if len(v) <= _CLIP else v[:_CLIP] + "…"))
    return out


def _cells(t: TestResult) -> list[tuple[str, str]]:
    """(css class, text) for executed, telemetry, detection."""
    if t.status is TestStatus.SKIPPED or (t.status is TestStatus.ERROR and not t.steps):
        return [("na", t.status.value)] * 3
    executed = ("yes", "yes") if t.executed else ("no", "no")
    return [executed, _verdict_cell(t.event_verdicts), _verdict_cell(t.detection_verdicts)]


def _verdict_cell(verdicts: Sequence[EventVerdict | DetectionVerdict]) -> tuple[str, str]:
    if not verdicts:
        return ("na", "no expectations")
    ok = sum(1 for v in verdicts if v.ok)
    fp = sum(1 for v in verdicts if v.outcome is Outcome.KNOWN_FALSE_POSITIVE)
    base = sum(1 for v in verdicts if getattr(v, "origin", "") == "baseline")
    text = f"{ok}/{len(verdicts)} met" + (f" ({fp} known FP)" if fp else "")
    if base:
        text += " (baseline: none authored)" if base == len(verdicts) else f" ({base} baseline)"
    return ("yes" if ok == len(verdicts) else "no", text)


def detection_coverage(run: RunResult) -> list[dict[str, Any]]:
    """``run --rules``: per technique, its tests with each tagged rule's outcome, and the counts."""
    by_tech: dict[str, list[TestResult]] = {}
    for t in sorted(run.tests, key=lambda t: (t.technique, t.benign, t.target, t.name)):
        if t.coverage:
            by_tech.setdefault(t.technique, []).append(t)
    out = []
    for tech, tests in sorted(by_tech.items()):
        counts: dict[str, int] = {}
        for t in tests:
            for c in t.coverage:
                counts[c.outcome.value] = counts.get(c.outcome.value, 0) + 1
        detected = sum(1 for t in tests if any(c.outcome.value == "fired" for c in t.coverage))
        out.append({"technique": tech, "tests": tests, "counts": sorted(counts.items()), "detected": detected})
    return out


def _severities(lints: Sequence[LintRecord]) -> list[tuple[str, int]]:
    """(severity, count), errors first: ``[("error", 24), ("warning", 8)]``."""
    counts: dict[str, int] = {}
    for f in lints:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    order = {"error": 0, "warning": 1}
    return sorted(counts.items(), key=lambda kv: (order.get(kv[0], 2), kv[0]))


def trend_svg(runs: Sequence[RunSummary], width: int = 640, height: int = 160) -> str:
    """Stacked bars (passed, failed, error, inconclusive, skipped) per run, oldest left. Empty history -> a note."""
    if not runs:
        return '<p class="small">No history yet: the trend appears after the first recorded run.</p>'
    runs = list(runs)[-30:]
    colors = (
        ("passed", "#66bb6a"),
        ("failed", "#e53935"),
        ("error", "#8e24aa"),
        ("inconclusive", "#ffb300"),
        ("skipped", "#bdbdbd"),
    )
    top = max(1, max(r.passed + r.failed + r.error + r.inconclusive + r.skipped for r in runs))
    pad, bar_gap = 24, 4
    bar_w = max(4, (width - 2 * pad) // len(runs) - bar_gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" role="img" '
        f'aria-label="test outcomes per run">'
    ]
    for i, r in enumerate(runs):
        x = pad + i * (bar_w + bar_gap)
        y = height
        for name, color in colors:
            n = getattr(r, name)
            if not n:
                continue
            h = (height - 10) * n / top
            y -= h
            parts.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{color}">'
                f"<title>{html.escape(r.run_id)}: {n} {name}</title></rect>"
            )
    parts.append(f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#999"/>')
    for j, (name, color) in enumerate(colors):
        parts.append(
            f'<rect x="{pad + j * 110}" y="{height + 12}" width="10" height="10" fill="{color}"/>'
            f'<text x="{pad + j * 110 + 14}" y="{height + 21}" font-size="11">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


class HtmlReporter:
    """Renders ``report.html`` from the run, the evidence in ``out`` and the history."""

    filename = FILENAME

    def __init__(self, out: Path, history: Callable[[], Sequence[RunSummary]] | None = None) -> None:
        self.out = out
        self.history = history
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("harness.reporting", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.template = env.get_template("report.html.j2")

    def _events(self, tests: Sequence[TestResult]) -> dict[int, dict[str, Any]]:
        """The evidence events the verdicts reference, by line (only those, to keep the page small).

        Raw XML is kept for the first ``RAW_EVENTS_SHOWN`` of them (in page order) and clipped."""
        order: list[int] = []
        for t in tests:
            for v in t.event_verdicts:
                order.extend(ref.line for ref in v.evidence[:EVIDENCE_SHOWN])
        wanted = set(order)
        if not wanted:
            return {}
        with_raw = set(list(dict.fromkeys(order))[:RAW_EVENTS_SHOWN])
        out: dict[int, dict[str, Any]] = {}
        try:
            with (self.out / EVENTS_FILE).open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, start=1):
                    if n in wanted:
                        try:
                            ev = json.loads(line)
                        except json.JSONDecodeError:
                            continue  # a torn last line of a killed run: show the reference only
                        raw = ev.get("raw") if n in with_raw else None
                        ev["raw"] = _clip(raw) if isinstance(raw, str) else None
                        out[n] = ev
        except FileNotFoundError:
            return {}
        return out

    def render(self, run: RunResult) -> str:
        history = list(self.history()) if self.history is not None else []
        if run.run_id not in {h.run_id for h in history}:
            c = run.counts()
            history.append(
                RunSummary(
                    run.run_id,
                    run.started.isoformat(),
                    None,
                    run.mode.value,
                    run.emulated,
                    run.complete,
                    c[TestStatus.PASSED],
                    c[TestStatus.FAILED],
                    c[TestStatus.SKIPPED],
                    c[TestStatus.ERROR],
                    None,
                    c[TestStatus.INCONCLUSIVE],
                )
            )
        history.sort(key=lambda h: h.started)
        counts = [(s.value, n) for s, n in run.counts().items() if n]
        order = list(enumerate(sorted(run.tests, key=lambda t: (t.benign, t.technique, t.target, t.name))))
        matrix = [{"t": t, "anchor": f"t-{i}", "cells": _cells(t)} for i, t in order]
        rules = sorted(
            {v.rule for t in run.tests for v in t.detection_verdicts} | set(run.lint) | set(run.rule_errors),
            key=lambda r: (r in run.lint_not_judged, r),  # the published, not judged ones last
        )
        return self.template.render(
            csp=CSP,
            run=run,
            iso=_iso,
            counts=counts,
            statuses=[s.value for s in TestStatus],
            matrix=matrix,
            techniques=_techniques(matrix),
            clip=_clip,
            evidence_shown=EVIDENCE_SHOWN,
            findings=[(t, f) for t in run.tests for f in t.findings],
            rules=[(r, run.lint.get(r, ())) for r in rules],
            rule_file=rule_file,
            severities=_severities,
            events=self._events([t for _, t in order]),
            key_fields=_key_fields,
            trend_svg=trend_svg(history),
            coverage=detection_coverage(run),
        )
