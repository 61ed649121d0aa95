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


def layer_json(
    *,
    name: str,
    description: str,
    techniques: list[dict[str, object]],
    gradient: tuple[str, str],
    legend: list[tuple[str, str]],
) -> str:
    """An ATT&CK Navigator layer document (layer format 4.5) as JSON text: the one place its frame
    (versions, domain, display options) is written, for every layer atomiclab produces."""
    layer = {
        "name": name,
        "versions": {"attack": ATTACK_VERSION, "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION},
        "domain": "enterprise-attack",
        "description": description,
        "sorting": 3,
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": list(gradient), "minValue": 0, "maxValue": 100},
        "legendItems": [{"label": label, "color": color} for label, color in legend],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
    }
    return json.dumps(layer, indent=2, ensure_ascii=False) + "\n"


class NavigatorReporter:
    filename = FILENAME

    def render(self, run: RunResult) -> str:
        by_tech: dict[str, list[TestResult]] = defaultdict(list)
        for t in run.tests:
            if not t.benign:  # benign look-alikes are not technique coverage
                by_tech[t.technique].append(t)
        return layer_json(
            name=f"atomiclab results {run.run_id}",
            description=(
                f"Results of atomiclab run {run.run_id} ({run.started.isoformat()})"
                + ("; EMULATED target" if run.emulated else "")
            ),
            techniques=[_entry(tech, tests) for tech, tests in sorted(by_tech.items())],
            gradient=(RED, GREEN),
            legend=[
                ("all tests passed", GREEN),
                ("a test failed or errored", RED),
                ("none failed, some inconclusive (not modelled)", AMBER),
                ("all tests skipped", GREY),
            ],
        )
