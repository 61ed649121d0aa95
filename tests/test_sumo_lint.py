"""Lint: each defect of the upstream T1046 query (shared/docs/sumo-logic-semantics.md) at its position."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.detect.lint import LintFinding, Severity, lint_rule
from harness.detect.sumo.lint import lint_sumo
from harness.errors import DetectionError

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "detections" / "sumo" / "upstream" / "t1046_network_service_discovery.sumo"
CORRECTED = ROOT / "detections" / "sumo" / "t1046_network_service_discovery.sumo"
TUNED = ROOT / "detections" / "sumo" / "t1046_network_service_discovery_tuned.sumo"


def at(findings: list[LintFinding], code: str) -> list[tuple[int, int]]:
    return [(f.line, f.column) for f in findings if f.code == code]


@pytest.fixture(scope="module")
def upstream() -> list[LintFinding]:
    return lint_rule(UPSTREAM)


def test_every_eval_is_reported(upstream: list[LintFinding]) -> None:
    text = UPSTREAM.read_text(encoding="utf-8").splitlines()
    expected = [(n, line.index("eval") + 1) for n, line in enumerate(text, 1) if line.startswith("| eval")]
    assert len(expected) == 11
    assert at(upstream, "SUMO001") == expected
    assert all(f.severity is Severity.ERROR for f in upstream if f.code == "SUMO001")


def test_every_matches_call_form_is_reported(upstream: list[LintFinding]) -> None:
    assert at(upstream, "SUMO002") == [(11, 5), (16, 5), (17, 9), (22, 5), (27, 5), (38, 10)]


def test_quoted_regex_looking_patterns_are_reported_as_wildcards(upstream: list[LintFinding]) -> None:
    assert at(upstream, "SUMO003") == [(11, 26), (16, 26), (17, 32), (22, 28), (27, 28)]
    first = next(f for f in upstream if f.code == "SUMO003")
    assert "wildcard pattern, not a regex" in first.message


def test_machine_account_filter_that_excludes_nothing(upstream: list[LintFinding]) -> None:
    (f,) = [f for f in upstream if f.code == "SUMO004"]
    assert (f.line, f.column) == (38, 24)
    assert '!(user matches "*$")' in f.message


def test_splunk_field_names(upstream: list[LintFinding]) -> None:
    found = [(f.line, f.column, f.message.split("'")[1]) for f in upstream if f.code == "SUMO005"]
    assert found == [(39, 10, "_time"), (39, 17, "host"), (42, 11, "_time")]


def test_newline_and_whole_value_dependent_patterns(upstream: list[LintFinding]) -> None:
    assert at(upstream, "SUMO006") == [(11, 26), (16, 26), (17, 32), (22, 28), (27, 28), (38, 24)]
    warnings = lint_sumo("| where a matches /.*nmap.*/ | where b matches /x.y/ | where c matches /(?s)x.y/")
    assert [(f.code, f.column) for f in warnings] == [("SUMO006", 19), ("SUMO007", 19), ("SUMO006", 48)]
    assert all(f.severity is Severity.WARNING for f in warnings)


def test_findings_render_as_file_line_column_lines(upstream: list[LintFinding]) -> None:
    assert str(upstream[0]).startswith(f"{UPSTREAM}:6:3: error SUMO001: ")
    assert upstream == sorted(upstream, key=lambda f: (f.line, f.column, f.code))


@pytest.mark.parametrize("rule", [CORRECTED, TUNED])
def test_corrected_and_tuned_rules_lint_clean(rule: Path) -> None:
    assert lint_rule(rule) == []


def test_other_parse_errors_are_reported_once() -> None:
    (f,) = lint_sumo('| where a = "unterminated')
    assert (f.code, f.line, f.column) == ("SUMO000", 1, 13)
    (f,) = lint_sumo("| where a matches /(?=x)/")
    assert f.code == "SUMO000" and "RE2" in f.message


def test_unreadable_and_unknown_rule_files(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="cannot read rule"):
        lint_rule(tmp_path / "missing.sumo")
    bad = tmp_path / "bad.sumo"
    bad.write_bytes(b"\xff\xfe| where")
    with pytest.raises(DetectionError, match="not UTF-8"):
        lint_rule(bad)
    with pytest.raises(DetectionError, match="unknown rule type"):
        lint_rule(tmp_path / "rule.txt")
