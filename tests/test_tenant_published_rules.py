"""Every run lints the published upstream rule(s) under detections/sumo/upstream/ and states their
defects in results.json (lint, listed under lint_not_judged) and report.html ("published, not
judged"), without judging them unless --rule adds them. (The tenant engine's neighbour: the
published query is what a tenant would reject.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.detect.lint import lint_rule
from harness.reporting.results_json import load_results, schema_problems

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = "detections/sumo/upstream/t1046_network_service_discovery.sumo"
NETSTAT = "d7b2043f-3075-47e3-87ca-8ca224d06bec"


def _run(tmp: Path, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    out = tmp / "out"
    code = main(["run", "--no-progress", "--tests", NETSTAT, "--out", str(out), "--history", str(tmp / "h.sqlite"),
                 *extra])
    return code, json.loads((out / "results.json").read_text()), (out / "report.html").read_text()


def test_default_run_lints_the_published_rule_without_judging_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data, html = _run(tmp_path)
    assert code == 0
    assert schema_problems(data) == []
    assert data["lint_not_judged"] == [PUBLISHED]
    expected = lint_rule(REPO / PUBLISHED)
    assert expected and len(data["lint"][PUBLISHED]) == len(expected)
    assert [(f["line"], f["column"], f["code"]) for f in data["lint"][PUBLISHED]] == [
        (f.line, f.column, f.code) for f in expected]
    assert not any(v["rule"] == PUBLISHED for t in data["tests"] for v in t["detection_verdicts"])
    assert PUBLISHED not in data["rule_errors"]
    assert any(c["path"] == PUBLISHED and c["kind"] == "rule" for c in data["content"]["files"])
    # report.html: its row says so, with the count and every finding at its position
    row = re.search(rf"<tr><td><code>{re.escape(PUBLISHED)}</code></td>(.*?)</table>", html, re.S)  # + findings
    assert row is not None
    assert "published, not judged" in row.group(1)
    assert f"{len(expected)} finding(s)" in row.group(1)
    first = expected[0]
    assert (f"<td><code>{first.line}:{first.column}</code></td><td class=\"sev-error\">error</td>"
            f"<td>{first.code}</td>") in row.group(1)
    # the file is named once, in the rule cell, relative to the content root (not the checkout path)
    assert str(REPO) not in html and str(REPO) not in json.dumps(data["lint"])
    assert {f["file"] for f in data["lint"][PUBLISHED]} == {PUBLISHED}
    assert row.group(1).count(PUBLISHED) == 0
    # the judged rules keep their status
    assert re.search(r"t1046_network_service_discovery\.sumo</code></td><td><span class=\"passed\">runs", html)
    assert f"published rule {PUBLISHED} (not judged): {len(expected)} lint finding(s)" in " ".join(
        capsys.readouterr().out.split())
    # round trip through the loader (history, verify) keeps the mark
    assert load_results(tmp_path / "out").lint_not_judged == (PUBLISHED,)


def test_rule_flag_judges_the_published_rule_instead(tmp_path: Path) -> None:
    code, data, html = _run(tmp_path, "--rule", str(REPO / PUBLISHED))
    assert code == 1
    assert data["lint_not_judged"] == []
    assert data["lint"][PUBLISHED]
    verdicts = [v for t in data["tests"] for v in t["detection_verdicts"] if v["rule"] == PUBLISHED]
    assert verdicts and all(v["outcome"] == "missed" for v in verdicts)
    assert "published, not judged" not in html


def test_results_without_the_key_still_validate() -> None:
    """results.json written before lint_not_judged existed still loads (the key is optional)."""
    from harness.model import utcnow
    from harness.results import RunMode, RunResult

    data = RunResult("r1", RunMode.RUN, utcnow(), "0", "me").to_dict()
    del data["lint_not_judged"]
    assert schema_problems(data) == []
    assert RunResult.from_dict(data).lint_not_judged == ()
