"""Scope keywords follow Sumo's term model (issue 13 item 1).

Source: SumoLogic/sumologic-documentation, docs/search/get-started-with-search/build-search/
keyword-search-expressions.md ("Phrases", "Normalization of phrase queries", "Rules") and
docs/search/get-started-with-search/how-to-use-search-page/wildcards-in-full-text-searches.md.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harness.detect.sumo.detector import SumoDetector
from harness.detect.sumo.terms import split_terms
from harness.errors import RuleSyntaxError
from harness.telemetry.event import SYSMON, Event

T0 = datetime(2024, 10, 22, 14, 46, 21, tzinfo=UTC)
DOC_MESSAGE = ("2013-08-13 21:25:15,456 98765432 [com.test.services.test.TESTClientImpl] TEST "
               "Request:id=1234567 TEST1234567")


def ev(text: str) -> Event:
    return Event(channel=SYSMON, provider="p", event_id=1, time=T0, computer="H", fields={"Message": text})


def hits(scope: str, *texts: str) -> list[str]:
    rows = SumoDetector(scope + " | fields Message").evaluate([ev(t) for t in texts]).rows
    return [str(r["Message"]) for r in rows]


def test_the_documented_message_splits_into_the_documented_terms() -> None:
    # "Sumo Logic indexes each value separately, 2013, 08, 13, 21, 25, 15, 456, 98765432, com, test,
    # services, test, TESTClientImpl, TEST, Request, id, 1234567, and TEST1234567." plus the special
    # characters, "indexed as separate keywords".
    words = [t.text for t in split_terms(DOC_MESSAGE) if t.word]
    assert words == ["2013", "08", "13", "21", "25", "15", "456", "98765432", "com", "test", "services", "test",
                     "TESTClientImpl", "TEST", "Request", "id", "1234567", "TEST1234567"]
    assert [t.text for t in split_terms(DOC_MESSAGE) if not t.word] == [
        "-", "-", ":", ":", ",", "[", ".", ".", ".", ".", "]", ":", "="]


@pytest.mark.parametrize(("keyword", "found"), [
    ("TEST*", True),  # "TEST* - finds "test", "TESTClientImpl", "TEST" and "TEST1234567""
    ("test", True),  # "test - finds "test" and "TEST""
    ("456", True),  # "456 - finds "456""
    ("*456*", True),  # "*456* - finds "456", "1234567" and "TEST1234567""
    ("com*services", False),  # "the keyword com*services will not find the message"
    ("com.*.services*", True),  # "If you change it to have the periods, com.*.services*, the query will return"
    ("testclientimpl", True),  # "Keywords are case insensitive."
    ("clientimpl", False),  # a keyword must match a whole term
])
def test_documented_keyword_examples(keyword: str, found: bool) -> None:
    assert hits(keyword, DOC_MESSAGE) == ([DOC_MESSAGE] if found else [])


def test_a_keyword_matches_whole_terms_not_substrings() -> None:
    assert hits("net", "netstat -ano", "net use \\\\host") == ["net use \\\\host"]
    assert hits("psexec", r"C:\Tools\PsExec64.exe -s cmd", "psexec.exe") == ["psexec.exe"]
    assert hits("456", "1234567", "id=456") == ["id=456"]
    assert hits("*456*", "1234567", "id=456", "45") == ["1234567", "id=456"]


def test_question_mark_is_one_character() -> None:
    # "err?r matches error." (wildcards-in-full-text-searches.md)
    assert hits("err?r", "an error here", "an errr here", "an errorr here") == ["an error here"]


def test_phrases_need_adjacent_terms_and_normalize_whitespace() -> None:
    # "the Sumo Logic search engine looks for the individual indexed terms that appear next to each other"
    assert hits("10.1.1.123", "from 10.1.1.123:80", "from 10.1.1.1234", "10.1 1.123") == ["from 10.1.1.123:80"]
    # "You can use a wildcard to represent one full term: jsmith@*.com"
    assert hits("jsmith@*.com", "to jsmith@example.com.", "to jsmith@a.b.com") == ["to jsmith@example.com."]
    # consecutive whitespace (Java's definition) in quoted phrases is normalized to one space. _raw is
    # the Windows Event Log source's JSON, where a newline or tab is the escape text \n / \t, so the
    # whitespace here is what JSON keeps as is: spaces and Unicode spaces.
    assert hits('"VM Periodic Task Thread"', "VM Periodic   Task\u2003 Thread", "VM PeriodicTask Thread") == [
        "VM Periodic   Task\u2003 Thread"]


def test_partial_term_wildcards_inside_a_phrase_are_refused_as_sumo_documents() -> None:
    # "Sumo Logic currently does not support partial-term wildcards *within* the phrase, such as
    # jsmith@some*re.com" -- the engine refuses instead of guessing.
    with pytest.raises(RuleSyntaxError) as info:
        SumoDetector("jsmith@some*re.com", rule_id="r")
    assert "1:1:" in str(info.value) and "partial-term wildcard" in str(info.value)


def test_not_and_bang_negate_a_term() -> None:
    # "Alt-click any term to remove the term from results (NOT term or !term)."
    assert hits("NOT netstat", "netstat -ano", "whoami") == ["whoami"]
    assert hits("!netstat", "netstat -ano", "whoami") == ["whoami"]
    assert hits("ano !netstat", "netstat -ano", "x -ano") == ["x -ano"]


def test_boolean_precedence_not_and_or() -> None:
    # "The precedence of boolean operators is NOT, AND, OR."
    texts = ("error debug", "fail", "fail debug", "error")
    assert hits("error OR fail debug", *texts) == ["error debug", "fail debug", "error"]
    assert hits("(error OR fail) NOT debug", *texts) == ["fail", "error"]
