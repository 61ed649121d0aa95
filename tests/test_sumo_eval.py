"""Evaluator of the local Sumo engine, operator by operator: nulls, missing fields, case, newlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness.detect.base import Engine, TimeWindow
from harness.detect.sumo.detector import SumoDetector
from harness.detect.sumo.messages import MessageConfig
from harness.telemetry.event import SECURITY, SYSMON, Event

T0 = datetime(2024, 10, 22, 14, 46, 21, tzinfo=UTC)


def ev(eid: int = 1, channel: str = SYSMON, computer: str = "HOST1", t: int = 0, **fields: str) -> Event:
    return Event(channel=channel, provider="p", event_id=eid, time=T0 + timedelta(seconds=t),
                 computer=computer, fields=fields)


def rows(query: str, events: list[Event], config: MessageConfig | None = None) -> list[dict[str, object]]:
    return [dict(r) for r in SumoDetector(query, config).evaluate(events).rows]


def col(query: str, events: list[Event], name: str) -> list[object]:
    return [r[name] for r in rows(query, events)]


# ---- scope ------------------------------------------------------------------------------------------
def test_scope_metadata_is_case_insensitive_wildcard_on_the_whole_value() -> None:
    events = [ev(1, SYSMON, Image="a"), ev(4688, SECURITY, Image="b"), ev(7, "Application", Image="c")]
    assert col("_sourceCategory=*windows/SYSMON* | fields Image", events, "Image") == ["a"]
    assert col("_sourceCategory=winevent*", events, "Image") == ["b"]
    assert col("_sourceCategory=Windows/Application", events, "Image") == ["c"]
    assert col("_sourceCategory=Windows", events, "Image") == []  # whole value, not a substring
    assert col("NOT _sourceCategory=*sysmon* AND _sourceHost=host1", events, "Image") == ["b", "c"]


def test_scope_keyword_searches_raw_case_insensitively() -> None:
    events = [ev(CommandLine="NMAP -sV"), ev(CommandLine="ping")]
    assert col("nmap | fields CommandLine", events, "CommandLine") == ["NMAP -sV"]
    assert col('"-SV" OR ping', events, "CommandLine") == ["NMAP -sV", "ping"]


def test_configurable_channel_map() -> None:
    cfg = MessageConfig(categories={SYSMON: "prod/endpoint/sysmon"})
    det = SumoDetector("_sourceCategory=prod/endpoint/* | fields EventID", cfg)
    assert [r["EventID"] for r in det.evaluate([ev(1), ev(4688, SECURITY)]).rows] == ["1"]


# ---- where, comparisons, nulls ----------------------------------------------------------------------
def test_equality_on_strings_is_case_sensitive_and_null_is_never_equal() -> None:
    events = [ev(User="Admin", t=0), ev(User="admin", t=1), ev(t=2)]
    assert col('| where User = "admin" | fields User', events, "User") == ["admin"]
    assert col('| where User != "admin" | fields User', events, "User") == ["Admin"]  # null: not true
    assert col("| where isNull(User) | fields _messageTime", events, "_messageTime") == [
        int((T0 + timedelta(seconds=2)).timestamp() * 1000)
    ]


def test_numeric_comparisons_read_numbers_from_strings() -> None:
    events = [ev(DestinationPort="445"), ev(DestinationPort="80"), ev(DestinationPort="abc"), ev()]
    assert col("| where DestinationPort > 100 | fields DestinationPort", events, "DestinationPort") == ["445"]
    assert col("| where DestinationPort = 80 | fields DestinationPort", events, "DestinationPort") == ["80"]
    assert col("| where DestinationPort <= 445 | fields DestinationPort", events, "DestinationPort") == [
        "445", "80"]


def test_in_list_and_negation() -> None:
    events = [ev(1), ev(3), ev(4688, SECURITY)]
    assert col('| where EventID in ("1", "4688") | fields EventID', events, "EventID") == ["1", "4688"]
    assert col('| where !(EventID in ("1", "4688")) | fields EventID', events, "EventID") == ["3"]
    assert col('| where EventID not in ("1") | fields EventID', events, "EventID") == ["3", "4688"]
    # in against numbers needs a cast (manually-cast-data-string-number.md): the text "3" is not the number 3
    assert col("| where EventID in (3, 4688) | fields EventID", events, "EventID") == []
    assert col("| where num(EventID) in (3, 4688) | fields EventID", events, "EventID") == ["3", "4688"]


def test_field_names_are_case_insensitive() -> None:
    events = [ev(CommandLine="x y")]
    assert rows("| where commandline = \"x y\" | COMMANDLINE as c | fields C", events) == [{"C": "x y"}]


# ---- matches ------------------------------------------------------------------------------------------
def test_quoted_matches_is_a_whole_value_wildcard_with_only_star_special() -> None:
    events = [ev(Image=r"c:\tools\nmap.exe"), ev(Image=".x(nmap"), ev(Image="HOST$")]
    q = '| where Image matches "{}" | fields Image'
    assert col(q.format("*nmap.exe"), events, "Image") == [r"c:\tools\nmap.exe"]
    assert col(q.format("nmap.exe"), events, "Image") == []  # whole value
    assert col(q.format(".*(nmap*"), events, "Image") == [".x(nmap"]  # '.' and '(' are literal
    assert col(q.format("*NMAP.EXE"), events, "Image") == []  # case-sensitive
    assert col("| where !(Image matches \"*$\") | fields Image", events, "Image") == [
        r"c:\tools\nmap.exe", ".x(nmap"]


def test_regex_matches_is_an_unanchored_re2_search() -> None:
    events = [ev(CommandLine="a nmap -sV b"), ev(CommandLine="x")]
    assert col("| where CommandLine matches /nmap\\s+-s/ | fields CommandLine", events, "CommandLine") == [
        "a nmap -sV b"]
    assert col("| where CommandLine matches /^nmap/ | fields CommandLine", events, "CommandLine") == []
    assert col("| where CommandLine matches /(?i)NMAP/ | fields CommandLine", events, "CommandLine") == [
        "a nmap -sV b"]


def test_multiline_values_dot_stops_at_newline_without_dotall() -> None:
    events = [ev(CommandLine="powershell & {\n$t = New-Object Net.Sockets.TcpClient\n}")]
    q = "| where CommandLine matches /{}/ | fields EventID"
    assert len(rows(q.format("net\\.sockets"), events)) == 0  # case-sensitive
    assert len(rows(q.format("Net\\.Sockets"), events)) == 1  # search crosses lines
    assert len(rows(q.format("powershell.*Net\\.Sockets"), events)) == 0  # '.' stops at \n
    assert len(rows(q.format("(?s)powershell.*Net\\.Sockets"), events)) == 1
    assert len(rows('| where CommandLine matches "powershell*TcpClient*" | fields EventID', events)) == 1


def test_matches_on_null_is_false_both_ways() -> None:
    events = [ev()]
    assert rows('| where Missing matches "*" | fields EventID', events) == []
    assert rows('| where !(Missing matches "*") | fields EventID', events) == [{"EventID": "1"}]


# ---- parse, parse regex, json -----------------------------------------------------------------------
def test_parse_anchors_several_fields_and_drop_without_nodrop() -> None:
    events = [ev(CommandLine="nmap -p 22,80 -oN out.txt host"), ev(CommandLine="ping host")]
    q = '| parse field=CommandLine "-p * -oN * " as ports, out | fields ports, out'
    assert rows(q, events) == [{"ports": "22,80", "out": "out.txt"}]
    q2 = '| parse field=CommandLine "-p * -oN * " as ports, out nodrop | fields ports, out'
    assert rows(q2, events) == [{"ports": "22,80", "out": "out.txt"}, {"ports": None, "out": None}]


def test_parse_star_keeps_a_multiline_value_and_missing_source_is_null() -> None:
    events = [ev(CommandLine="line1\nline2"), ev(Image="x")]
    q = '| parse field=CommandLine "*" as cmd nodrop | fields cmd'
    assert rows(q, events) == [{"cmd": "line1\nline2"}, {"cmd": None}]
    assert rows('| parse field=CommandLine "*" as cmd | fields cmd', events) == [{"cmd": "line1\nline2"}]


def test_parse_regex_named_groups() -> None:
    events = [ev(Image="C:\\Windows\\System32\\cmd.exe"), ev(Image="nodir")]
    q = '| parse regex field=Image "(?<dir>.*)\\\\\\\\(?<exe>[^\\\\\\\\]+)$" nodrop | fields dir, exe'
    assert rows(q, events) == [{"dir": "C:\\Windows\\System32", "exe": "cmd.exe"}, {"dir": None, "exe": None}]


def test_json_keys_nested_auto_and_nodrop_from_raw() -> None:
    events = [ev(Image="C:\\a.exe", User="u")]
    assert rows('| json "EventData.Image", "EventID" as img, id | fields img, id', events) == [
        {"img": "C:\\a.exe", "id": "1"}]
    assert rows('| json "EventData.Nope" as n | fields EventID', events) == []
    assert rows('| json "EventData.Nope" as n nodrop | fields n', events) == [{"n": None}]
    assert rows('| json "eventid" as n nodrop | fields n', events) == [{"n": None}]  # keys case-sensitive
    auto = rows("| json auto | fields Channel, EventData", events)
    assert auto[0]["Channel"] == SYSMON and auto[0]["EventData"] == '{"Image":"C:\\\\a.exe","User":"u"}'
    assert rows('| "{\\"a\\": {\\"b\\": [5, 6]}}" as doc | json field=doc "a.b[1]" as v | fields v',
                events) == [{"v": "6"}]


# ---- expressions --------------------------------------------------------------------------------------
def test_if_ternary_and_null_tests() -> None:
    events = [ev(User="u", t=0), ev(SubjectUserName="HOST$", t=1), ev(User="", t=2), ev(User="  ", t=3)]
    q = ("| if(isNull(User), SubjectUserName, User) as who"
         " | isNull(User) ? \"null\" : isEmpty(User) ? \"empty\" : isBlank(User) ? \"blank\" : \"set\" as kind"
         " | fields who, kind")
    assert rows(q, events) == [{"who": "u", "kind": "set"}, {"who": "HOST$", "kind": "null"},
                               {"who": "", "kind": "empty"}, {"who": "  ", "kind": "blank"}]


def test_a_computed_field_shadows_a_source_field_of_any_case() -> None:
    events = [ev(SubjectUserName="HOST$")]
    q = "| if(isNull(User), SubjectUserName, User) as user | isNull(User) as was_null | fields USER, was_null"
    assert rows(q, events) == [{"USER": "HOST$", "was_null": False}]


def test_string_functions_and_null_propagation() -> None:
    events = [ev(A="  MiXed  ", B="abcdef")]
    q = ("| toLowerCase(A) as lo | toUpperCase(A) as up | trim(A) as tr | length(B) as n"
         " | substring(B, 1, 3) as sub | concat(B, \"-\", trim(A)) as cat | replace(B, \"cd\", \"X\") as rep"
         " | contains(B, \"cde\") as has | toLowerCase(Missing) as nul | concat(B, Missing) as nulcat"
         " | fields lo, up, tr, n, sub, cat, rep, has, nul, nulcat")
    assert rows(q, events) == [{"lo": "  mixed  ", "up": "  MIXED  ", "tr": "MiXed", "n": 6, "sub": "bc",
                                "cat": "abcdef-MiXed", "rep": "abXef", "has": True, "nul": None,
                                "nulcat": "abcdef"}]  # concat.md: "A null field is treated as an empty string."


def test_arithmetic_and_math_functions() -> None:
    events = [ev(X="7", Y="2")]
    q = ("| X + Y as s | X - Y as d | X * Y as p | X / Y as q | X % Y as r | -X as neg | X / 0 as z"
         " | abs(-3) as a | ceil(2.1) as c | floor(2.9) as f | round(2.5) as rd | round(2.345, 2) as r2"
         " | min(X, Y) as lo | max(X, Y) as hi | X + Missing as nul"
         " | fields s, d, p, q, r, neg, z, a, c, f, rd, r2, lo, hi, nul")
    assert rows(q, events) == [{"s": 9, "d": 5, "p": 14, "q": 3.5, "r": 1, "neg": -7, "z": None, "a": 3,
                                "c": 3, "f": 2, "rd": 3, "r2": 2.35, "lo": 2, "hi": 7, "nul": None}]


# ---- fields, sort, limit, aggregates, timeslice ---------------------------------------------------------
def test_fields_keep_order_and_remove() -> None:
    events = [ev(Image="i", User="u", CommandLine="c")]
    assert rows("| fields User, Image", events) == [{"User": "u", "Image": "i"}]
    out = rows("| fields - CommandLine, Channel", events)
    assert out == [{"EventID": "1", "Computer": "HOST1", "Image": "i", "User": "u"}]
    assert rows("| fields Image | where User = \"u\" | fields Image", events) == []  # User was dropped


def test_sort_default_descending_plus_ascending_nulls_last_and_limit() -> None:
    events = [ev(N="10"), ev(N="9"), ev(), ev(N="100")]
    # sort.md: "To numerically sort, first cast the field to a number. Otherwise, the sort will be ordered
    # as a text field."
    assert col("| sort by N | fields N", events, "N") == ["9", "100", "10", None]
    assert col("| num(N) | sort by N | fields N", events, "N") == [100, 10, 9, None]
    assert col("| num(N) | sort by +N | fields N", events, "N") == [9, 10, 100, None]
    assert col("| num(N) | sort N asc | limit 2 | fields N", events, "N") == [9, 10]


def test_count_by_and_other_aggregates() -> None:
    events = [ev(H="a", V="1"), ev(H="a", V="5"), ev(H="b", V="2"), ev(H="b"), ev(H="b", V="2")]
    out = rows("| count by H | sort by H asc", events)
    assert out == [{"H": "a", "_count": 2}, {"H": "b", "_count": 3}]
    out = rows("| count_distinct(V) as dv, min(V), max(V) as mx, sum(V) as s, avg(V) as av, count(V) as c"
               " by H | sort by H asc", events)
    assert out == [{"H": "a", "dv": 2, "_min": 1, "mx": 5, "s": 6, "av": 3.0, "c": 2},
                   {"H": "b", "dv": 1, "_min": 2, "mx": 2, "s": 4, "av": 2.0, "c": 2}]
    det = SumoDetector("| count by H")
    result = det.evaluate(events)
    assert {tuple(v) for v in result.source_events.values()} == {(0, 1), (2, 3, 4)}


def test_timeslice_buckets_message_time() -> None:
    events = [ev(t=0), ev(t=30), ev(t=61)]
    out = rows("| timeslice 1m | count by _timeslice | sort by +_timeslice", events)
    base = int(T0.timestamp() * 1000) // 60000 * 60000
    assert out == [{"_timeslice": base, "_count": 2}, {"_timeslice": base + 60000, "_count": 1}]


def test_rows_without_fields_list_every_non_internal_field_and_map_source_events() -> None:
    det = SumoDetector("| where Image = \"b\" | toUpperCase(Image) as up")
    result = det.evaluate([ev(Image="a"), ev(Image="b")])
    assert result.rule_id == "inline" and result.engine is Engine.SUMO_LOCAL and result.events_in == 2
    assert [dict(r) for r in result.rows] == [
        {"EventID": "1", "Channel": SYSMON, "Computer": "HOST1", "Image": "b", "up": "B"}]
    assert result.source_events == {0: (1,)}


def test_time_window_limits_the_events_evaluated() -> None:
    det = SumoDetector("| fields EventID")
    window = TimeWindow(T0 + timedelta(seconds=1), T0 + timedelta(seconds=3))
    result = det.evaluate([ev(t=0), ev(t=1), ev(t=2), ev(t=3)], window)
    assert result.events_in == 2 and result.source_events == {0: (1,), 1: (2,)}


@pytest.mark.parametrize("query", ["| where x matches /a/ | fields x", "x | count"])
def test_detector_is_reusable_across_evaluations(query: str) -> None:
    det = SumoDetector(query)
    first = det.evaluate([ev(x="a")])
    second = det.evaluate([ev(x="a")])
    assert first.rows == second.rows and first.rows


# ---- the fused (generated) stream agrees with the per-stage closures --------------------------------
@pytest.mark.parametrize(
    "query",
    [
        '| parse field=CommandLine "*" as c nodrop | toLowerCase(c) as l | where l matches /nmap/ | fields c',
        '| parse field=CommandLine "*" as c | if(isNull(User), "none", User) as u | fields u, c',
        '| parse field=CommandLine "*" as CommandLine nodrop | CommandLine as again | fields again',
        "| X + Y as s | where s > 3 | s = 9 as nine | fields s, nine",
        '| where !(User matches "*$") and (EventID = 1 or CommandLine matches "*a*") | fields User',
        '| json field=_raw "EventData.X" as jx nodrop | jx + 1 as n | fields n',
        '| parse field=CommandLine "* *" as a, b nodrop | concat(a, "|", b) as ab | fields ab',
    ],
)
def test_generated_stream_matches_the_stage_closures(query: str) -> None:
    events = [ev(CommandLine="nmap -sV", User="u", X="2", Y="3"), ev(CommandLine="a b", User="H$", X="x"),
              ev(User="u", X="7", Y="2"), ev(2, CommandLine="zzz")]
    det = SumoDetector(query)
    compiled = det.compiled
    reference = []
    for idx, event in enumerate(events):
        from harness.detect.sumo.compiler import Msg

        m = Msg(event, idx)
        if all(fn(m) for fn in compiled.stream):
            assert compiled.columns is not None
            reference.append({name: read(m) for name, read in compiled.columns})
    assert [dict(r) for r in det.evaluate(events).rows] == reference
