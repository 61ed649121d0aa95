"""Documented-behaviour conformance of the local Sumo engine (issue 13 item 6).

Every case in tests/conformance/sumo/*.yaml is one behaviour Sumo Logic's documentation states: the
documentation file (in SumoLogic/sumologic-documentation, cited with its GitHub address) and the
sentence, a query, small events, and the rows Sumo documents, or the error it documents. Events are
Windows events (EventData fields, Sysmon EID 1 unless ``@channel``/``@eid`` say otherwise; ``@t`` is
seconds after T0; ``@computer``) or plain-text messages (``raw``: a text source, ``_raw`` is the line).
Rows are compared on the keys each expected row gives, in order, and their number must match;
``columns`` also fixes the rows' column order.
``error: syntax`` is a RuleSyntaxError, ``error: unsupported`` the "not supported by the local engine"
refusal (NotSupportedLocallyError), both with the position when ``match`` gives it. ``lint`` names
the lint findings a documented pitfall is expected to raise (test_sumo_lint_precision.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.detect.sumo.detector import SumoDetector
from harness.detect.sumo.messages import MessageConfig
from harness.errors import NotSupportedLocallyError, RuleSyntaxError
from harness.telemetry.event import SYSMON, Event

CASES_DIR = Path(__file__).parent / "conformance" / "sumo"
DOCS = "https://github.com/SumoLogic/sumologic-documentation/blob/main/"
T0 = datetime(2024, 10, 22, 14, 46, 21, tzinfo=UTC)
TEXT_SOURCE = MessageConfig(raw_field="_raw_text", eventdata_fields=False, header_fields=())


def _cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            case["file"] = path.name
            out.append(case)
    return out


CASES = _cases()


def _events(case: dict[str, Any]) -> list[Event]:
    if "raw" in case:
        return [Event(SYSMON, "text", 1, T0 + timedelta(seconds=i), "HOST", {"_raw_text": line})
                for i, line in enumerate(case["raw"])]
    events = []
    for i, spec in enumerate(case.get("events") or []):
        fields = {k: str(v) for k, v in spec.items() if not k.startswith("@")}
        events.append(Event(spec.get("@channel", SYSMON), "p", int(spec.get("@eid", 1)),
                            T0 + timedelta(seconds=float(spec.get("@t", i))), spec.get("@computer", "WIN10"),
                            fields))
    return events


def test_the_suite_covers_at_least_150_documented_behaviours() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(ids) >= 150
    for c in CASES:
        assert c["doc"].startswith("docs/") and c["says"].strip(), c["id"]
        assert ("rows" in c) != ("error" in c), c["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_documented_behaviour(case: dict[str, Any]) -> None:
    cite = f"{DOCS}{case['doc']}: {case['says']!r}"
    config = TEXT_SOURCE if "raw" in case else None
    if "error" in case:
        kind = {"syntax": RuleSyntaxError, "unsupported": NotSupportedLocallyError}[case["error"]]
        with pytest.raises(kind) as info:
            SumoDetector(case["query"], config, rule_id=case["id"]).evaluate(_events(case))
        if "match" in case:
            assert case["match"] in str(info.value), (cite, str(info.value))
        return
    rows = [dict(r) for r in SumoDetector(case["query"], config, rule_id=case["id"]).evaluate(_events(case)).rows]
    want = case["rows"]
    got = [{k: r.get(k) for k in w} for r, w in zip(rows, want)]
    assert (len(rows), got) == (len(want), want), cite
    if "columns" in case:  # the documented column order
        assert [list(r) for r in rows] == [case["columns"]] * len(rows), cite
