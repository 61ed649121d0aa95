"""``navigator-layer.json``: an ATT&CK Navigator layer (layer format 4.5) of the run's *results*.

One entry per technique that was tested: the score is the share of its non-skipped tests that
passed (0-100; an inconclusive test counts as not passed), the colour says the worst outcome (green
all passed, red any failed or errored, amber none failed but some inconclusive, e.g. a step the
emulated host does not model, grey all skipped), and the comment lists every test with its target
and status (an inconclusive one names what was not modelled).
"""

from __future__ import annotations

import json
from collections import defaultdict

from harness.results import RunResult, TestResult, TestStatus

FILENAME = "navigator-layer.json"
LAYER_VERSION = "4.5"
NAVIGATOR_VERSION = "5.1.0"
ATTACK_VERSION = "16"

GREEN = "#66bb6a"
RED = "#e53935"
GREY = "#bdbdbd"
AMBER = "#ffb300"


def _entry(technique: str, tests: list[TestResult]) -> dict[str, object]:
    judged = [t for t in tests if t.status is not TestStatus.SKIPPED]
    passed = sum(t.status is TestStatus.PASSED for t in judged)
    if not judged:
        color, score = GREY, None
    else:
        score = round(100 * passed / len(judged))
        bad = any(t.status in (TestStatus.FAILED, TestStatus.ERROR) for t in judged)
        color = GREEN if passed == len(judged) else RED if bad else AMBER
    comment = "\n".join(
        f"{t.name} [{t.target}]: {t.status.value}" + (f" ({t.reason})" if t.status is not TestStatus.PASSED else "")
        for t in tests
    )
    entry: dict[str, object] = {
        "techniqueID": technique,
        "color": color,
        "comment": comment,
        "enabled": True,
        "metadata": [
            {"name": "tests", "value": str(len(tests))},
            {"name": "passed", "value": str(passed)},
            {"name": "inconclusive", "value": str(sum(t.status is TestStatus.INCONCLUSIVE for t in tests))},
        ],
        "showSubtechniques": False,
    }
    if score is not None:
        entry["score"] = score
    return entry


class NavigatorReporter:
    filename = FILENAME

    def render(self, run: RunResult) -> str:
        by_tech: dict[str, list[TestResult]] = defaultdict(list)
        for t in run.tests:
            if not t.benign:  # benign look-alikes are not technique coverage
                by_tech[t.technique].append(t)
        layer = {
            "name": f"atomiclab results {run.run_id}",
            "versions": {"attack": ATTACK_VERSION, "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION},
            "domain": "enterprise-attack",
            "description": (
                f"Results of atomiclab run {run.run_id} ({run.started.isoformat()})"
                + ("; EMULATED target" if run.emulated else "")
            ),
            "sorting": 3,
            "hideDisabled": False,
            "techniques": [_entry(tech, tests) for tech, tests in sorted(by_tech.items())],
            "gradient": {"colors": [RED, GREEN], "minValue": 0, "maxValue": 100},
            "legendItems": [
                {"label": "all tests passed", "color": GREEN},
                {"label": "a test failed or errored", "color": RED},
                {"label": "none failed, some inconclusive (not modelled)", "color": AMBER},
                {"label": "all tests skipped", "color": GREY},
            ],
            "showTacticRowBackground": False,
            "selectTechniquesAcrossTactics": True,
            "selectSubtechniquesWithParent": False,
        }
        return json.dumps(layer, indent=2, ensure_ascii=False) + "\n"
