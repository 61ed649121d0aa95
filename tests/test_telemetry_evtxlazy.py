"""EVTX records in the common evtx-rs shape are read without decoding their JSON up front: System
values come from one anchored pattern and EventData is decoded on first use (``LazyFields``). Every
such event must equal what decoding the whole record gives, and behave as a read-only mapping."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import evtx
import pytest

from harness.telemetry.readers import read_events
from harness.telemetry.readers.evtxfile import (
    LazyFields,
    _fast_from_rs_json,
    _lazy_event,
    _rs_match,
    _rs_system,
    json_loads,
)

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T1046_10 = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"
FILES = [
    T1046_10 / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx",
    T1046_10 / "T1046-10_Windows PowerShell.evtx",  # EventID with Qualifiers, unnamed Data
    T1046_10 / "T1046-10_Security.evtx",
]


def _records(path: Path) -> list[str]:
    return [r["data"] for r in evtx.PyEvtxParser(str(path)).records_json()]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_lazy_events_equal_whole_record_mapping(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"shared telemetry not present at {PUBLIC}")
    texts = _records(path)
    events = list(read_events(path))
    assert len(events) == len(texts) > 0
    lazy = 0
    for event, text in zip(events, texts, strict=True):
        reference = _fast_from_rs_json(json_loads(text), str(path), text)
        if isinstance(event.fields, LazyFields):
            lazy += 1
            assert _rs_match(text) is not None
        assert event == reference and event.raw == reference.raw and event.origin == reference.origin
        assert list(event.fields.items()) == list(reference.fields.items())
        assert event.to_json() == reference.to_json()
    assert lazy > 0


def test_lazy_fields_is_a_read_only_mapping() -> None:
    path = FILES[0]
    if not path.is_file():
        pytest.skip(f"shared telemetry not present at {PUBLIC}")
    event = next(e for e in read_events(path) if isinstance(e.fields, LazyFields))
    fields = event.fields
    assert isinstance(fields, Mapping) and not isinstance(fields, dict)
    plain = dict(fields)
    assert plain["Image"] and fields["Image"] == plain["Image"] and "Image" in fields
    assert fields == plain and plain == fields and (fields != plain) is False
    assert len(fields) == len(plain) and list(fields) == list(plain) and list(reversed(fields)) == list(reversed(plain))
    assert list(fields.keys()) == list(plain) and list(fields.values()) == list(plain.values())
    assert fields.get("no such field") is None and fields.get("no such field", "x") == "x"
    assert repr(fields) == repr(plain)
    assert json.dumps(dict(fields)) == json.dumps(plain)
    for clone in (pickle.loads(pickle.dumps(fields)), copy.copy(fields), copy.deepcopy(fields)):
        assert type(clone) is dict and clone == plain
    with pytest.raises(TypeError):
        hash(fields)
    with pytest.raises(AttributeError):
        fields.no_such_attribute  # noqa: B018


@pytest.mark.parametrize("first", ["get", "getitem", "contains", "iter", "len", "items", "eq"])
def test_lazy_fields_load_on_any_first_use(first: str) -> None:
    path = FILES[0]
    if not path.is_file():
        pytest.skip(f"shared telemetry not present at {PUBLIC}")
    fresh = next(e for e in read_events(path) if isinstance(e.fields, LazyFields))
    expected = dict(next(e for e in read_events(path) if isinstance(e.fields, LazyFields)).fields)
    f = fresh.fields
    use = {
        "get": lambda: f.get("Image"),
        "getitem": lambda: f["Image"],
        "contains": lambda: "Image" in f,
        "iter": lambda: list(f),
        "len": lambda: len(f),
        "items": lambda: list(f.items()),
        "eq": lambda: f == expected,
    }[first]
    assert use()
    assert dict(f) == expected


def test_pattern_rejects_what_it_cannot_read_exactly() -> None:
    path = FILES[0]
    if not path.is_file():
        pytest.skip(f"shared telemetry not present at {PUBLIC}")
    text = _records(path)[0]
    assert _rs_match(text) is not None
    # An escaped System string, a string-typed number, a negative number: the whole-record path.
    assert _rs_match(text.replace('"Computer":"', '"Computer":"a\\\\', 1)) is None
    assert _rs_match(text.replace('"Version":5', '"Version":"5"', 1)) is None
    assert _rs_match(text.replace('"Version":5', '"Version":-5', 1)) is None
    assert _rs_match(text.replace('"Version":5', '"Version":05', 1)) is None


def test_segment_memo_and_time_shapes() -> None:
    """System is read in segments whose values are memoized per file: a memo hit gives the values a
    fresh read gives, and a SystemTime in any shape but evtx-rs's own is left to the whole-record path."""
    path = FILES[0]
    if not path.is_file():
        pytest.skip(f"shared telemetry not present at {PUBLIC}")
    texts = _records(path)[:50]
    heads: dict = {}
    tails: dict = {}
    for text in texts * 2:
        system = _rs_system(text, heads, tails)
        assert system is not None and system == _rs_system(text)
        reference = _fast_from_rs_json(json_loads(text), "o", None)
        assert _lazy_event(system, text, "o", None) == reference
    assert 0 < len(heads) < len(texts) and 0 < len(tails) < len(texts)
    text = texts[0]
    stamp = json_loads(text)["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"]
    for other in (stamp.replace("T", " "), stamp.replace("Z", "+01:00"), stamp[:-1], stamp.replace("T", "\\u0054")):
        assert _rs_system(text.replace(stamp, other, 1)) is None
    # a segment that does not match is never memoized
    bad = text.replace('"Computer":"', '"Computer":"a\\\\', 1)
    assert _rs_system(bad, heads, tails) is None and _rs_system(bad, heads, tails) is None
