"""Sigma-style conditions of ``harness.matching``."""

from __future__ import annotations

import pytest

from harness.errors import ContentError
from harness.matching import Conditions, parse_condition

NMAP = {
    "Image": r"C:\Program Files (x86)\Nmap\nmap.exe",
    "CommandLine": r'"C:\Program Files (x86)\Nmap\nmap.exe" -sV -p 22,80 -oN "x.txt" 127.0.0.1',
    "DestinationPort": "445",
    "ProcessId": "0x1c4",
    "Empty": "",
}


def m(where: dict[str, object], fields: dict[str, object] = NMAP) -> bool:  # type: ignore[assignment]
    return Conditions.parse(where).matches(fields)


@pytest.mark.parametrize(("where", "expected"), [
    ({"Image|endswith": r"\NMAP.EXE"}, True),
    ({"Image|endswith": r"\nbtscan.exe"}, False),
    ({"Image|startswith": "c:\\program files"}, True),
    ({"CommandLine|contains": "-SV -P"}, True),
    ({"CommandLine|contains|all": ["-sV -p", "127.0.0.1"]}, True),
    ({"CommandLine|contains|all": ["-sV -p", "10.0.0.1"]}, False),
    ({"CommandLine|contains": ["10.0.0.1", "127.0.0.1"]}, True),  # list = OR
    ({"Image": r"c:\program files (x86)\nmap\NMAP.exe"}, True),  # equals, case-insensitive
    ({"Image": "nmap.exe"}, False),
    ({"DestinationPort": 445}, True),
    ({"DestinationPort": [80, 445]}, True),
    ({"DestinationPort": 445.0}, True),
    ({"DestinationPort|gt": 444}, True),
    ({"DestinationPort|gte": 445}, True),
    ({"DestinationPort|lt": 445}, False),
    ({"DestinationPort|lte": 445.5}, True),
    ({"ProcessId|gt": 451}, True),  # 0x1c4 = 452
    ({"CommandLine|gt": 1}, False),  # not a number -> false
    ({"CommandLine|re": r"-s[vV]\s+-p"}, True),
    ({"CommandLine|re": r"NMAP\.EXE"}, True),  # IGNORECASE by default
    ({"CommandLine|re": r"(?-i)NMAP\.EXE"}, False),  # (?-i) makes it case-sensitive
    ({"CommandLine|re": r"(?-i)nmap\.exe"}, True),
    ({"CommandLine|re|all": [r"-sV", r"\d+\.\d+\.\d+\.\d+"]}, True),
    ({"Missing|contains": "x"}, False),  # absent field never matches
    ({"Missing": None}, True),  # null = field absent
    ({"Image": None}, False),
    ({"Missing": [None, "x"]}, True),
    ({"Empty": ""}, True),
    ({"Empty": None}, False),  # empty is not absent
    ({"commandline|contains": "127.0.0.1"}, True),  # case-insensitive field lookup fallback
    ({}, True),
    ({"Image|endswith": r"\nmap.exe", "DestinationPort": 80}, False),  # AND across keys
])
def test_modifiers(where: dict[str, object], expected: bool) -> None:
    assert m(where) is expected


def test_exact_field_name_wins_over_case_insensitive() -> None:
    fields = {"image": "a", "Image": "b"}
    assert Conditions.parse({"Image": "b"}).matches(fields)
    assert Conditions.parse({"image": "a"}).matches(fields)
    assert Conditions.parse({"IMAGE": "a"}).matches(fields)  # first case-insensitive hit


def test_row_values_of_other_types() -> None:
    row = {"detection_type": "KnownScanningTool", "suspicion_score": 3, "flag": True, "user": None}
    assert m({"suspicion_score|gte": 3}, row)
    assert m({"suspicion_score": 3}, row)
    assert m({"suspicion_score": "3"}, row)
    assert m({"flag": True}, row)
    assert m({"flag": "TRUE"}, row)
    assert m({"user": None}, row)  # a None value counts as absent
    assert not m({"user|contains": ""}, row)


def test_explain_says_why() -> None:
    conds = Conditions.parse({
        "Image|endswith": r"\nbtscan.exe",
        "CommandLine|contains|all": ["-sV -p", "10.0.0.1"],
        "Missing": "x",
        "Image": None,
        "CommandLine|gt": 5,
    })
    reasons = conds.explain(NMAP)
    assert len(reasons) == 5
    assert reasons[0] == ("Image|endswith: Image='C:\\Program Files (x86)\\Nmap\\nmap.exe' does not "
                          "end with any of ['\\nbtscan.exe']")
    assert "does not contain every one of ['10.0.0.1']" in reasons[1]
    assert reasons[2] == "Missing: field Missing is absent"
    assert reasons[3].startswith("Image: field Image should be absent")
    assert "is not a number" in reasons[4]
    assert Conditions.parse({"Image|endswith": "nmap.exe"}).explain(NMAP) == []


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("Image|endwith", "x", "unknown modifier 'endwith'"),
    ("Image|contains|startswith", "x", "cannot be combined"),
    ("Image|all", "x", "|all needs a list"),
    ("Image|all|all", ["x"], "given twice"),
    ("Image|re", "(", "bad regular expression"),
    ("Image|re", 5, "needs a string pattern"),
    ("Port|gt", "five", "needs a number"),
    ("Port|gt", True, "needs a number"),
    ("Image", [], "empty list"),
    ("Image", {"a": 1}, "values must be strings, numbers or null"),
    ("|contains", "x", "field name before '|' is empty"),
    ("Image|contains", None, "takes no modifier"),
    ("Image|contains|all", ["x", None], "cannot be combined with null"),
])
def test_bad_conditions(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ContentError) as info:
        parse_condition(key, value, file="f.yaml", line=7, path="tests.x.where")
    assert fragment in str(info.value)
    assert str(info.value).startswith("f.yaml:7: tests.x.where: ")


def test_parse_uses_per_key_lines_and_paths() -> None:
    with pytest.raises(ContentError) as info:
        Conditions.parse({"A": 1, "B|nope": 2}, file="e.yaml", line=10, path="tests.g.events[0].where",
                         lines={"A": 11, "B|nope": 12})
    assert str(info.value).startswith("e.yaml:12: tests.g.events[0].where.B|nope: ")


def test_describe_and_container_behaviour() -> None:
    conds = Conditions.parse({"Image|endswith": r"\nmap.exe", "Port": [80, 443], "X": None})
    assert len(conds) == 3 and bool(conds)
    assert [c.field for c in conds] == ["Image", "Port", "X"]
    assert conds.describe() == "Image|endswith: \\nmap.exe; Port: ['80', '443']; X: null"
    assert Conditions().describe() == "(any)"
    assert not Conditions()
    assert Conditions.parse(None).matches({})
    with pytest.raises(ContentError, match="where must be a mapping"):
        Conditions.parse(["x"])  # type: ignore[arg-type]
