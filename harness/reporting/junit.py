"""``junit.xml``: one testcase per target x atomic test, for CI systems that read JUnit.

``<testsuite>`` per target; ``<testcase classname="atomiclab.<target>.<technique>" name="<test
name> [<guid>]">``; a failed test carries ``<failure type="<failure kind>" message="<reason>">`` with
every missed verdict in the body (``<properties>`` count the authored and the baseline
expectations; ``system-out`` lists each event verdict with its origin), an errored one ``<error>``,
a skipped one ``<skipped>``, and an inconclusive one (e.g. an emulated step outside the model)
``<skipped type="<kind>" message="inconclusive: <reason>">`` naming what was not modelled: neither
proven nor disproven is no CI failure by itself
(``--strict`` makes the run's exit code fail on it). Every text passes ``textsafe.for_xml``: a
control character from an event or a test name is shown escaped, so the file is always well-formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict

from harness.results import RunResult, TestResult, TestStatus
from harness.textsafe import for_xml as _x

FILENAME = "junit.xml"


def _case(t: TestResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=_x(f"atomiclab.{t.target}.{t.technique}"),
        name=_x(f"{t.name} [{t.guid}]"),
        time=f"{max(0.0, (t.ended - t.started).total_seconds()):.3f}",
    )
    kind = t.failure.value if t.failure is not None else ""
    if t.status is TestStatus.FAILED:
        el = ET.SubElement(case, "failure", type=kind, message=_x(t.reason))
        el.text = _x("\n".join(t.missed_reasons()))
    elif t.status is TestStatus.ERROR:
        ET.SubElement(case, "error", type=kind, message=_x(t.reason))
    elif t.status is TestStatus.SKIPPED:
        ET.SubElement(case, "skipped", message=_x(t.reason))
    elif t.status is TestStatus.INCONCLUSIVE:
        el = ET.SubElement(case, "skipped", type=kind, message=_x(f"inconclusive: {t.reason}"))
        el.text = _x("\n".join(f"not modelled: {g.what} ({g.process})" for g in t.not_modelled)) or None
    authored = sum(v.origin != "baseline" for v in t.event_verdicts) + len(t.detection_verdicts)
    baseline = sum(v.origin == "baseline" for v in t.event_verdicts)
    props = ET.Element("properties")
    case.insert(0, props)  # first child, as pytest's junit.xml places it
    ET.SubElement(props, "property", name="expectations_authored", value=str(authored))
    ET.SubElement(props, "property", name="expectations_baseline", value=str(baseline))
    out = [f"{s.role}: exit {s.exit_code}: {s.command}" for s in t.steps]
    out += [f"expectation ({v.origin}) {v.expectation_id}: {v.outcome.value}: {v.reason}" for v in t.event_verdicts]
    out += [f"finding: {f.message}" for f in t.findings]
    if out:
        ET.SubElement(case, "system-out").text = _x("\n".join(out))
    return case


class JUnitReporter:
    filename = FILENAME

    def render(self, run: RunResult) -> str:
        root = ET.Element("testsuites", name=_x(f"atomiclab {run.run_id}"))
        by_target: dict[str, list[TestResult]] = defaultdict(list)
        for t in run.tests:
            by_target[t.target].append(t)
        totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for target, tests in sorted(by_target.items()):
            counts = {
                "tests": len(tests),
                "failures": sum(t.status is TestStatus.FAILED for t in tests),
                "errors": sum(t.status is TestStatus.ERROR for t in tests),
                "skipped": sum(t.status in (TestStatus.SKIPPED, TestStatus.INCONCLUSIVE) for t in tests),
            }
            for k, v in counts.items():
                totals[k] += v
            attrs = {"name": _x(f"atomiclab.{target}"), "timestamp": run.started.isoformat()}
            attrs.update({k: str(v) for k, v in counts.items()})
            suite = ET.SubElement(root, "testsuite", attrs)
            for t in tests:
                suite.append(_case(t))
        for k, v in totals.items():
            root.set(k, str(v))
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
