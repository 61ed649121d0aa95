"""Parser of the local Sumo engine: accepted syntax and exact error positions."""

from __future__ import annotations

import pytest

from harness.detect.sumo import ast
from harness.detect.sumo.parser import parse_query
from harness.errors import RuleSyntaxError, UnsupportedRuleError


def err(text: str) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse_query(text, "rule.sumo")
    return info.value


def test_scope_line_with_metadata_boolean_and_parentheses() -> None:
    q = parse_query('(_sourceCategory=*Windows/Sysmon* OR _sourceCategory=*Security*) AND NOT error "a b"')
    assert isinstance(q.scope, ast.ScopeBool) and q.scope.op == "and"
    first, negated, keyword = q.scope.operands
    assert isinstance(first, ast.ScopeBool) and first.op == "or"
    assert first.operands[0] == ast.ScopeMeta("_sourceCategory", "*Windows/Sysmon*", ast.Pos(1, 2))
    assert isinstance(negated, ast.ScopeNot) and negated.operand == ast.ScopeKeyword("error", ast.Pos(1, 74))
    assert keyword == ast.ScopeKeyword("a b", ast.Pos(1, 80))
    assert q.stages == ()


def test_pipeline_stages_parse_to_their_nodes() -> None:
    q = parse_query(
        '_sourceCategory=x // comment | not a stage\n'
        '| parse field=CommandLine "* -p *" as exe, ports nodrop\n'
        '| parse regex field=Image "(?<dir>.*)/(?<file>[^/]+)$"\n'
        '| json field=_raw "EventData.Image", "EventID" as img, id nodrop\n'
        '| json auto\n'
        '/* multi\n line */\n'
        '| toLowerCase(exe) as exe_l\n'
        '| where exe_l matches "*nmap*" and !(id in ("1", "3"))\n'
        '| fields - ports\n'
        '| timeslice 5m\n'
        '| count as n, max(id) as top by exe_l, _timeslice\n'
        '| sort by n asc, +exe_l, top\n'
        '| limit 10\n'
    )
    kinds = [type(s).__name__ for s in q.stages]
    assert kinds == ["Parse", "ParseRegex", "Json", "Json", "Assign", "Where", "Fields", "Timeslice",
                     "Aggregate", "Sort", "Limit"]
    parse, regex, js, auto = q.stages[:4]
    assert isinstance(parse, ast.Parse) and parse.source == "CommandLine" and parse.names == ("exe", "ports")
    assert parse.nodrop
    assert isinstance(regex, ast.ParseRegex) and regex.names == ("dir", "file") and not regex.nodrop
    assert isinstance(js, ast.Json) and js.keys == ("EventData.Image", "EventID") and js.names == ("img", "id")
    assert isinstance(auto, ast.Json) and auto.auto
    agg = q.stages[8]
    assert isinstance(agg, ast.Aggregate)
    assert agg.aggs == (ast.Agg("count", None, "n"), ast.Agg("max", "id", "top"))
    assert agg.by == ("exe_l", "_timeslice")
    sort = q.stages[9]
    assert isinstance(sort, ast.Sort)
    assert [(k.name, k.descending) for k in sort.keys] == [("n", False), ("exe_l", False), ("top", True)]
    ts = q.stages[7]
    assert isinstance(ts, ast.Timeslice) and ts.span_ms == 300_000 and ts.alias == "_timeslice"


def test_expression_precedence_ternary_and_arithmetic() -> None:
    q = parse_query("| a + b * 2 > 3 and !c ? \"x\" : \"y\" as out")
    stage = q.stages[0]
    assert isinstance(stage, ast.Assign) and stage.field == "out"
    tern = stage.expr
    assert isinstance(tern, ast.Ternary)
    cond = tern.cond
    assert isinstance(cond, ast.Binary) and cond.op == "and"
    gt = cond.left
    assert isinstance(gt, ast.Binary) and gt.op == ">"
    add = gt.left
    assert isinstance(add, ast.Binary) and add.op == "+"
    assert isinstance(add.right, ast.Binary) and add.right.op == "*"


def test_eval_is_rejected_at_its_column_with_the_sumo_spelling() -> None:
    e = err('_sourceCategory=x\n| where a = "1"\n|   eval b = toLowerCase(a)\n')
    assert (e.line, e.column) == (3, 5)
    assert "'eval' is not a Sumo Logic operator" in str(e)
    assert "<expression> as <field>" in str(e)
    assert str(e).startswith("rule.sumo:3:5: ")


def test_matches_call_form_is_rejected_at_the_function_name() -> None:
    e = err('| where !matches(user, ".*\\$")')
    assert (e.line, e.column) == (1, 10)
    assert "infix" in str(e)


def test_re2_rejects_what_sumo_rejects_at_the_regex_position() -> None:
    e = err("| where x matches /(?=look)ahead/")
    assert (e.line, e.column) == (1, 19)
    assert "RE2" in str(e)
    e = err("| where x matches /(a)\\1/")
    assert "RE2" in str(e)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ('| where a = "open', 1, 13, "unterminated string"),
        ("| where x matches /abc", 1, 19, "unterminated /regex/"),
        ("x /* never closed", 1, 3, "unterminated /* comment"),
        ("| where (a = 1", 1, 9, "unclosed '('"),  # the open parenthesis, not the end of the query
        ("| toLowerCase(a)", 1, 17, "expected 'as <field>'"),
        ('| parse "a*b*" as one', 1, 9, "2 '*' but 1 field"),
        ('| parse regex "(no names)"', 1, 15, "named group"),
        ("| fields a, b, A", 1, 3, "listed twice"),
        ("| limit x", 1, 9, "whole number"),
        ("| timeslice 5y", 1, 13, "bad timeslice"),
        ("| where a = 1 |", 1, 16, "empty pipeline stage"),
        ("| foo bar", 1, 3, "unknown operator"),
        ("| toLowerCase(a, b) as c", 1, 3, "takes 1 argument"),
        ("(a OR b", 1, 1, "unbalanced"),
    ],
)
def test_syntax_errors_name_line_and_column(text: str, line: int, column: int, fragment: str) -> None:
    e = err(text)
    assert (e.line, e.column) == (line, column), str(e)
    assert fragment in str(e)


def test_unsupported_operator_and_function_are_not_syntax_errors() -> None:
    with pytest.raises(UnsupportedRuleError, match=r"rule\.sumo:2:3: the Sumo operator 'lookup'"):
        parse_query("x\n| lookup a from path://x on a=a", "rule.sumo")
    with pytest.raises(UnsupportedRuleError, match="function 'geoip2'"):
        parse_query("| geoip2(a) as b", "rule.sumo")


def test_field_names_and_keywords_are_case_insensitive() -> None:
    q = parse_query('| WHERE EventID IN ("1") AND x MATCHES "a*" | Fields EventID')
    assert isinstance(q.stages[0], ast.Where)
    assert isinstance(q.stages[1], ast.Fields) and q.stages[1].names == ("EventID",)


def test_two_argument_min_is_the_math_function_not_the_aggregate() -> None:
    q = parse_query("| min(a, b) as lower | min(lower) as smallest")
    assert isinstance(q.stages[0], ast.Assign)
    assert isinstance(q.stages[1], ast.Aggregate)
