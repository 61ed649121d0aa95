"""Lint precision (issue 13 item 5): findings at the offending token, new findings, and queries copied
from Sumo's documentation lint clean."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.detect.lint import Severity
from harness.detect.sumo.lint import lint_sumo

CASES = Path(__file__).parent / "conformance" / "sumo"


def codes(query: str) -> list[tuple[int, int, str]]:
    return [(f.line, f.column, f.code) for f in lint_sumo(query)]


def documented_queries() -> list[tuple[str, str, list[str]]]:
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            if "rows" in case:
                out.append((case["id"], case["query"], case.get("lint", [])))
    return out


@pytest.mark.parametrize(("case_id", "query", "expected"), documented_queries())
def test_queries_from_sumos_documentation_lint_clean(case_id: str, query: str, expected: list[str]) -> None:
    """Clean, except the documented pitfalls a case names in ``lint`` (e.g. 'in' against uncast integers)."""
    assert sorted({f.code for f in lint_sumo(query) if f.severity is not Severity.NOTE}) == expected, case_id


def test_documented_idioms_that_used_to_be_flagged() -> None:
    # limit.md: a field legitimately named host (parse regex "(?<host>...)")
    q = ('_sourceCategory=OS/Windows\n| parse regex "ComputerName = \\"(?<host>[^\\"]+)\\";"\n'
         '| count by host')
    assert codes(q) == []
    # if.md: a wildcard pattern with a literal '?' (a URL query)
    assert codes('| if(message matches "*/schedule?*", "Alert Scheduled", "N/A") as problem') == []
    # a Windows path is wildcard text, not a regex
    assert codes('| where Image matches "*\\\\Windows\\\\System32\\\\*"') == []
    # the Splunk names are still flagged in a query that speaks Splunk
    assert codes("| fields _time, host") == [(1, 10, "SUMO005"), (1, 17, "SUMO005")]


def test_valid_operators_the_engine_does_not_run_are_a_note_and_the_rule_stays_clean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = "_sourceCategory=x\n| count by a\n| transpose row a column b as *"
    findings = lint_sumo(q)
    assert [(f.line, f.column, f.code, f.severity) for f in findings] == [(3, 3, "SUMO008", Severity.NOTE)]
    assert "not supported by the local engine" in findings[0].message
    rule = tmp_path / "t.sumo"
    rule.write_text(q, encoding="utf-8")
    assert main(["lint", str(rule)]) == 0
    assert "SUMO008" in capsys.readouterr().out


@pytest.mark.parametrize(("query", "want"), [
    ('| where User = "adm*"', [(1, 16, "SUMO009")]),
    ('| where User != "*$"', [(1, 17, "SUMO009")]),
    ("| where EventID in (a, \"4688\")", [(1, 21, "SUMO010")]),
    ("| where EventID in (1, 4688)", [(1, 21, "SUMO011"), (1, 24, "SUMO011")]),
    ("| num(EventID) | where EventID in (1, 4688)", []),
    ("| count by u | where _count in (1, 2)", []),
    ("'failed login' | count", [(1, 1, "SUMO012")]),
    ('"failed login" | count', []),
])
def test_new_findings_point_at_the_offending_token(query: str, want: list[tuple[int, int, str]]) -> None:
    assert codes(query) == want


def test_parse_errors_point_at_the_token_not_the_end_of_the_query() -> None:
    assert codes("| where (a = 1 and (b = 2)\n| fields a") == [(1, 9, "SUMO000")]
    assert codes("| if(a, 1 ? 2, 3) as x") == [(1, 14, "SUMO000")]


def test_detect_refuses_valid_but_unsupported_sumo_at_its_position_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = tmp_path / "t.sumo"
    rule.write_text("_sourceCategory=x\n| count by a\n| transpose row a column b as *\n", encoding="utf-8")
    events = tmp_path / "e.jsonl"
    events.write_text("", encoding="utf-8")
    assert main(["detect", "--rule", str(rule), str(events)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{rule}:3:3: the Sumo operator 'transpose' is not supported by the local engine" in err
    assert "\n" not in err and "syntax" not in err
