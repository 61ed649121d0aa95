"""No size limit below Sumo's and linear-time matching (issue 13 item 4, issue 16 crashes and stalls).

Sumo accepts queries up to 15,000 characters ("The maximum length of a search query is 15,000
characters", docs/search/get-started-with-search/search-basics/search-query-limits.md in
SumoLogic/sumologic-documentation). These reproductions crashed (RecursionError, "too many nested
parentheses" from the generated code) or stalled (Python ``re`` backtracking) before. There are no
timed assertions: the pathological inputs took minutes with the old matchers, so a regression hangs
the test run instead of passing; bench/bench_detect_limits.py prints the ratios.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.detect.sigma import SigmaDetector
from harness.detect.sumo.detector import SumoDetector
from harness.detect.sumo.lint import lint_sumo
from harness.detect.sumo.patterns import wildcard_capture, wildcard_predicate
from harness.telemetry.event import SYSMON, Event

T0 = datetime(2024, 10, 22, 14, 46, 21, tzinfo=UTC)


def ev(**fields: str) -> Event:
    return Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1, time=T0, computer="HOST1",
                 fields=fields)


EVENTS = [ev(Image=r"C:\Tools\nmap.exe", CommandLine="nmap -p 1-1000 10.0.0.0/24"),
          ev(Image=r"C:\Windows\System32\whoami.exe", CommandLine="whoami")]


def images(query: str, events: list[Event] = EVENTS) -> list[object]:
    return [r["Image"] for r in SumoDetector(query).evaluate(events).rows]


def test_a_where_of_1000_ored_conditions_compiles_runs_and_lints() -> None:
    conds = [f'Image = "C:\\\\x\\\\tool{i}.exe"' for i in range(999)] + ['Image matches "*nmap.exe"']
    query = "_sourceCategory=*sysmon*\n| where " + "\n  or ".join(conds) + "\n| fields Image"
    assert images(query) == [r"C:\Tools\nmap.exe"]
    assert [f for f in lint_sumo(query) if f.severity.value == "error"] == []


def test_250_ored_wildcard_matches_no_longer_overflow_the_generated_code() -> None:
    query = "| where " + " or ".join(f'CommandLine matches "*tool{i}*"' for i in range(249)) + \
        ' or CommandLine matches "*-p 1-1000*" | fields Image'
    assert images(query) == [r"C:\Tools\nmap.exe"]


@pytest.mark.parametrize("depth", [200, 3000])
def test_nested_parentheses_in_where_and_scope(depth: int) -> None:
    where = "| where " + "(" * depth + 'Image matches "*nmap*"' + ")" * depth + " | fields Image"
    assert images(where) == [r"C:\Tools\nmap.exe"]
    scope = "(" * depth + "_sourceCategory=*sysmon* AND nmap" + ")" * depth + " | fields Image"
    assert images(scope) == [r"C:\Tools\nmap.exe"]
    assert lint_sumo(where) == [] and lint_sumo(scope) == []


def test_deep_alternating_and_or_negation_and_calls_keep_their_meaning() -> None:
    # (a or (b and (c or (d and ...)))): nothing to flatten, 600 levels deep
    expr = 'Image matches "*nmap*"'
    for i in range(600):
        expr = f'(Image = "z{i}" {"or" if i % 2 else "and"} {expr})'
    # the innermost condition survives only through the OR levels; an AND with a false left side kills it
    assert images("| where " + expr + " | fields Image") == []
    expr = 'Image matches "*nmap*"'
    for _ in range(600):
        expr = f'(Image matches "*.exe" and (CommandLine = "x" or {expr}))'
    assert images("| where " + expr + " | fields Image") == [r"C:\Tools\nmap.exe"]
    assert images("| where " + "!" * 2001 + 'Image matches "*nmap*" | fields Image') == [
        r"C:\Windows\System32\whoami.exe"]
    query = "| " + "toLowerCase(" * 1500 + "Image" + ")" * 1500 + ' as l | where l matches "*nmap*" | fields Image'
    assert images(query) == [r"C:\Tools\nmap.exe"]
    query = "| " + " + ".join(["1"] * 2000) + " as n | where n = 2000 and Image matches \"*nmap*\" | fields Image"
    assert images(query) == [r"C:\Tools\nmap.exe"]


def test_atomiclab_detect_runs_a_15000_character_query(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    names = [f"tool{i:05d}.exe" for i in range(2000)]
    body = "_sourceCategory=*sysmon* | where Image matches \"*nmap.exe\" or toLowerCase(Image) in (" + \
        ", ".join(f'"{n}"' for n in names)
    body = body[: 15000 - 20].rsplit(",", 1)[0] + ")\n| fields Image"
    body += " " * (15000 - len(body))
    assert len(body) == 15000
    rule = tmp_path / "big.sumo"
    rule.write_text(body, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text("".join(e.to_json() + "\n" for e in EVENTS), encoding="utf-8")
    assert main(["detect", "--rule", str(rule), str(events)]) == 0
    assert [json.loads(line)["Image"] for line in capsys.readouterr().out.splitlines()] == [r"C:\Tools\nmap.exe"]
    assert main(["lint", str(rule)]) == 0


# ---- linear-time matching -------------------------------------------------------------------------
def test_wildcard_matches_with_many_stars_on_a_32kb_command_line_is_linear() -> None:
    # 48 s (one wildcard run) and > 300 s (ten) with the backtracking regex this replaced
    line = "a" * 32_768
    pattern = "*a" * 10 + "*b"
    assert wildcard_predicate(pattern)(line) is False
    assert wildcard_predicate(pattern, ignore_case=True)(line.upper()) is False
    assert wildcard_predicate("*a" * 10 + "*")(line) is True
    query = f'| where CommandLine matches "{pattern}" | fields CommandLine'
    assert SumoDetector(query).evaluate([ev(CommandLine=line)]).rows == ()
    assert SumoDetector(f'{pattern} | fields CommandLine').evaluate([ev(CommandLine=line)]).rows == ()


def test_wildcard_semantics_are_unchanged_by_the_linear_matcher() -> None:
    cases = [("a*b*c", "abc", True), ("a*b*c", "aXbYc", True), ("a*b*c", "acb", False),
             ("*ab*ab*", "abab", True), ("*ab*ab*", "aba", False), ("a**", "a", True),
             ("*aa*a", "aaa", True), ("*aa*aa", "aaa", False), ("x*", "x\ny", True),
             ("*.exe*-p*", "nmap.exe -p 80", True), ("*.exe*-p*", "nmap.exe", False)]
    for pattern, value, want in cases:
        assert wildcard_predicate(pattern)(value) is want, (pattern, value)


def test_parse_anchors_on_a_long_value_do_not_backtrack() -> None:
    rx = wildcard_capture("x*y*z*w")
    assert rx.search("x" + "y" * 40_000) is None
    hit = rx.search("pre x1y2z3w post")
    assert hit is not None and hit.groups() == ("1", "2", "3")


def test_sigma_re_runs_through_re2_not_a_backtracking_engine() -> None:
    rule = """
title: catastrophic backtracking
id: 8c7cbb8c-2b2e-4ad8-a4ae-3f0a0b1b7f11
status: test
logsource: {product: windows, category: process_creation}
detection:
  sel:
    CommandLine|re: '^(a+)+$'
  condition: sel
level: low
"""
    det = SigmaDetector.from_text(rule, source="re.yml")
    hostile = ev(Image="x", CommandLine="a" * 64 + "!")  # exponential for Python re
    benign = ev(Image="y", CommandLine="aaaa")
    rows = det.evaluate([hostile, benign]).rows
    assert [r["Image"] for r in rows] == ["y"]
