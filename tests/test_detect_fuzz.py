"""Hostile rules (issue 16 item 3, Sumo and Sigma rule fuzzing): only HarnessError subclasses escape.

Hypothesis builds Sumo queries from the language's own tokens (operators, keywords, quotes, regexes,
parentheses, pipes, numbers, odd Unicode) and Sigma rules from random detection maps with modifiers;
each is parsed, linted, compiled and evaluated over a few events. Any other exception (a traceback
for the user) fails. Matching is linear-time, so no input can stall an example.
"""

from __future__ import annotations

from datetime import UTC, datetime

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.detect.sigma import SigmaDetector
from harness.detect.sumo.detector import SumoDetector
from harness.detect.sumo.lint import lint_sumo
from harness.errors import HarnessError
from harness.telemetry.event import SECURITY, SYSMON, Event

T0 = datetime(2024, 10, 22, 14, 46, 21, tzinfo=UTC)
EVENTS = [
    Event(SYSMON, "Microsoft-Windows-Sysmon", 1, T0, "WIN10",
          {"Image": r"C:\Tools\nmap.exe", "CommandLine": "nmap -sV -p 1-1000\n10.0.0.1", "User": r"LAB\a",
           "Count": "12", "Json": '{"a": {"b": [1, 2, {"c": "x"}]}, "k": null}'}),
    Event(SECURITY, "Microsoft-Windows-Security-Auditing", 4688, T0, "WIN10",
          {"NewProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c echo \ud800 é АДМИНИСТРАТОР"}),
    Event("Application", "x", 7, T0, "H", {}),
]

def refused(exc: HarnessError) -> None:
    """A refusal is one line: what, where, what to do."""
    assert str(exc) and "\n" not in str(exc), str(exc)


def run_sumo(query: str) -> None:
    """Lint, then compile and run: every outcome is findings, rows or a HarnessError."""
    for finding in lint_sumo(query, "fuzz.sumo"):
        assert finding.line >= 1 and finding.column >= 1
    try:
        result = SumoDetector(query, rule_id="fuzz").evaluate(EVENTS)
    except HarnessError as exc:
        refused(exc)
        return
    assert result.events_in == len(EVENTS)


def run_sigma(text: str) -> None:
    try:
        result = SigmaDetector.from_text(text, source="fuzz.yml").evaluate(EVENTS)
    except HarnessError as exc:
        refused(exc)
        return
    assert result.events_in == len(EVENTS) and len(result.rows) <= len(EVENTS) * 8


SUMO_TOKENS = [
    "_sourceCategory=*sysmon*", "nmap", "NOT", "OR", "AND", "!", "(", ")", "|", " ", "\n", "where", "parse",
    "regex", "json", "auto", "field=CommandLine", "nodrop", "multi", "as", "x", "y", "Image", "CommandLine",
    "Count", "Json", "_raw", "matches", "in", "not", "=", "!=", "<", ">=", "+", "-", "*", "/", "%", "?", ":",
    ",", "count", "count_distinct(x)", "by", "sort", "limit", "fields", "timeslice", "1m", "10", "2.5", "1e3",
    "\"*\"", "\"a*b\"", "\"*.exe\"", "\"(?<x>\\w+)\"", "/(?i)nm.p/", "/[/", "\"", "'", "toLowerCase(", "concat(",
    "substring(", "length(", "if(", "isNull(", "num(", "replace(", "true", "false", "//c\n", "/*c*/", "\\",
    "\u00e9", "\u0410", "\ud800", "\x00", "\t", "%\"a b\"", "[", "]", "min", "max", "sum", "avg", "lookup",
    "transpose", "eval", "jsmith@*.com", "?", "a?c", "*456*", "Ümlaut", "²", "\u0661", "EventID",
    "extract", "multi", '%"a b"', "buckets", "contains", "/x+/", '"Actor[*].Type"', "\"['a.b']\"", "group",
    "toLong(", "tostring(", "isNumeric(", "2k", "1e5", "__timeslice_end", "maxdepth", "(?<n>\\d+)", "$1",
    "'quoted'", "\"a=**\"", "limit 10001", "!nmap",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(["|", '"x"', "as", "Ümlaut", "|", "where", "Ümlaut", "=", '"x"'])  # non-ASCII computed field
@example(["|", "where", "EventID", "in", "(", '"²"', ")"])  # str.isdigit() digits that int() refuses
@example(["|²"])
@example(["\ud800"])
@given(st.lists(st.sampled_from(SUMO_TOKENS) | st.text(max_size=6), max_size=40))
def test_sumo_queries_from_tokens_never_escape_with_a_non_harness_error(parts: list[str]) -> None:
    run_sumo(" ".join(parts))


STAGES = [
    'where {e}', '{e} as x', 'parse "{a}*{b}" as x nodrop', 'parse "{a}*{b}" as y', 'json "{k}" nodrop', 'json auto',
    'count by x', 'sort by x', 'limit 3', 'fields x, y', 'timeslice 1m', 'timeslice 3 buckets', 'num(x)',
    'parse regex "(?<x>\\w+)" multi', 'extract "(?<y>\\d)"', 'count_distinct(x) group by y',
    'replace(x, /a+/, "$0$0") as z', 'parse field=CommandLine "{a}*" as x',
]
EXPRS = ['x = "a*"', 'x matches "*a*"', 'x in (1, "a")', 'Count > 3', 'contains(x, y)', 'x contains y',
         'length(x) < 2', 'isNumeric(x)', 'substring(x, 1, 3) = "b"', '!(y matches x)', 'x matches /a.b/']


@st.composite
def pipelines(draw: st.DrawFn) -> str:
    out = ["_sourceCategory=*"]
    for _ in range(draw(st.integers(1, 6))):
        out.append(draw(st.sampled_from(STAGES)).format(
            e=draw(st.sampled_from(EXPRS)), a=draw(st.sampled_from(["a=", "-p ", "", "\\n", "\u00e9"])),
            b=draw(st.sampled_from([",", " ", ""])), k=draw(st.sampled_from(["a.b", "a[0]", "a[*].c", "['k']"]))))
    return " | ".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines())
def test_sumo_pipelines_of_real_stages_over_hostile_events(query: str) -> None:
    run_sumo(query)  # the events include a lone surrogate, Cyrillic, JSON and multi-line text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_sumo_arbitrary_text_never_escapes(query: str) -> None:
    run_sumo(query)


MODIFIERS = ["", "|contains", "|startswith", "|endswith", "|re", "|contains|all", "|base64offset|contains",
             "|windash", "|cidr", "|gt", "|lte", "|re|i", "|contains|cased", "|exists", "|fieldref", "|bogus",
             "|utf16le|base64", "|expand"]
FIELDS = ["Image", "CommandLine", "User", "Count", "Source Name", "EventID", "x"]
SCALARS = st.one_of(st.text(max_size=12), st.integers(-5, 10**6), st.sampled_from(
    ["*", "?", "(a+)+$", "[", "10.0.0.0/8", "\\", "%x%", "null", "", "(?<n>x)", "\\d+", "*nmap*"]), st.none())


@st.composite
def sigma_rules(draw: st.DrawFn) -> str:
    selections = {}
    for i in range(draw(st.integers(1, 3))):
        sel = {}
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(FIELDS)) + draw(st.sampled_from(MODIFIERS))
            sel[key] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3)))
        selections[f"sel{i}"] = sel if sel or draw(st.booleans()) else draw(st.lists(SCALARS, max_size=3))
    names = list(selections)
    condition = draw(st.sampled_from([
        names[0], " or ".join(names), " and ".join(names), f"not {names[0]}", "1 of sel*", "all of them",
        f"{names[0]} | count() > 1", "(", "sel9", f"{names[0]} and not ({' or '.join(names)})",
    ]))
    rule = {
        "title": draw(st.text(min_size=1, max_size=10)),
        "logsource": draw(st.sampled_from([
            {"product": "windows", "category": "process_creation"}, {"product": "windows", "service": "security"},
            {"product": "windows", "service": "taskscheduler"}, {"product": "linux"}, {},
        ])),
        "detection": {**selections, "condition": condition},
    }
    if draw(st.booleans()):
        rule["level"] = draw(st.sampled_from(["low", "high", "bogus"]))
    return yaml.safe_dump(rule, allow_unicode=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sigma_rules())
def test_sigma_rules_never_escape_with_a_non_harness_error(text: str) -> None:
    run_sigma(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_sigma_arbitrary_yaml_text_never_escapes(text: str) -> None:
    run_sigma(text)
