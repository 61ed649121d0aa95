"""``navigator-coverage-layer.json`` (``run --rules``): an ATT&CK Navigator layer scored by detection.

One entry per technique the run tested (benign look-alikes excluded): the score is the share of its
executed tests on which at least one rule of the library tagged with the technique fired (0-100);
the comment lists, per test, the rules that fired and how many stayed silent, were invalid or read
a log source the run did not collect. Techniques whose tests met no applicable, valid rule are
grey: the library says nothing about them (no rule, or none that could run here).
"""

from __future__ import annotations

from collections import defaultdict

from harness.reporting.navigator import GREY, layer_json
from harness.results import CoverageOutcome, RunResult, TestResult

FILENAME = "navigator-coverage-layer.json"
LOW = "#ff6666"
HIGH = "#1a9850"


def _judged(t: TestResult) -> bool:
    return any(c.outcome in (CoverageOutcome.FIRED, CoverageOutcome.SILENT) for c in t.coverage)


def _entry(technique: str, tests: list[TestResult]) -> dict[str, object]:
    judged = [t for t in tests if _judged(t)]
    detected = [t for t in judged if any(c.outcome is CoverageOutcome.FIRED for c in t.coverage)]
    lines = []
    for t in tests:
        n = {o: sum(c.outcome is o for c in t.coverage) for o in CoverageOutcome}
        fired = ", ".join(c.rule for c in t.coverage if c.outcome is CoverageOutcome.FIRED) or "none"
        lines.append(
            f"{t.name} [{t.target}]: fired: {fired}; silent {n[CoverageOutcome.SILENT]}, "
            f"rule invalid {n[CoverageOutcome.RULE_INVALID]}, not applicable {n[CoverageOutcome.NOT_APPLICABLE]}"
        )
    entry: dict[str, object] = {
        "techniqueID": technique,
        "comment": "\n".join(lines),
        "enabled": True,
        "metadata": [
            {"name": "tests", "value": str(len(tests))},
            {"name": "tests judged by a rule", "value": str(len(judged))},
            {"name": "tests detected", "value": str(len(detected))},
        ],
        "showSubtechniques": False,
    }
    if judged:
        entry["score"] = round(100 * len(detected) / len(judged))
    else:
        entry["color"] = GREY
    return entry


class CoverageLayerReporter:
    filename = FILENAME

    def render(self, run: RunResult) -> str:
        by_tech: dict[str, list[TestResult]] = defaultdict(list)
        for t in run.tests:
            if not t.benign and t.executed:
                by_tech[t.technique].append(t)
        return layer_json(
            name=f"atomiclab detection coverage {run.run_id}",
            description=(
                f"Detection coverage of run {run.run_id}: rules from {', '.join(run.coverage_sources) or '-'} "
                "judged per test by ATT&CK tag; score = share of executed tests a rule detected"
                + ("; EMULATED target" if run.emulated else "")
            ),
            techniques=[_entry(tech, tests) for tech, tests in sorted(by_tech.items())],
            gradient=(LOW, HIGH),
            legend=[
                ("no test detected", LOW),
                ("every test detected", HIGH),
                ("no applicable rule could judge it", GREY),
            ],
        )
