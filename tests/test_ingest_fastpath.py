"""Fast ingest paths pinned to the slow reference (issue 15 item 1): orjson decoding, the direct
Event constructor, and the rule's prefilter letting the reader skip lines the rule drops first."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.detect.sumo.detector import SumoDetector
from harness.telemetry.event import JSONL_FORMAT, Event
from harness.telemetry.readers import ReadStats, read_events
from harness.telemetry.readers.auto import SKIPPED, _loads

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "detections" / "sumo" / "t1046_network_service_discovery.sumo"


def reference_from_dict(d: Mapping[str, Any]) -> Event:
    """``Event.from_dict`` as it was before the fast path: every value converted."""
    t = datetime.fromisoformat(str(d["time"]).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    fields = d.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise TypeError("fields must be an object")
    return Event(
        channel=str(d["channel"]),
        provider=str(d.get("provider") or ""),
        event_id=int(d["event_id"]),
        version=int(d.get("version") or 0),
        record_id=None if d.get("record_id") is None else int(d["record_id"]),
        time=t.astimezone(UTC),
        computer=str(d.get("computer") or ""),
        user_sid=None if d.get("user_sid") is None else str(d["user_sid"]),
        pid=None if d.get("pid") is None else int(d["pid"]),
        tid=None if d.get("tid") is None else int(d["tid"]),
        fields={str(k): "" if v is None else str(v) for k, v in fields.items()},
        raw=None if d.get("raw") is None else str(d["raw"]),
        origin=None if d.get("origin") is None else str(d["origin"]),
    )


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:  # the same kind of failure is part of the contract
        return "error", type(exc).__name__


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
    st.floats(allow_nan=False), st.text(max_size=8), st.sampled_from(["1", "x", "", "4688", "2024-01-01T00:00:00Z"]),
)
times = st.one_of(
    st.sampled_from(["2024-10-28T15:07:35.149500Z", "2024-10-28T15:07:35+02:00", "2024-10-28T15:07:35",
                     "not a time", "2024-13-01T00:00:00Z"]),
    scalars,
)
channels = st.sampled_from(["Microsoft-Windows-Sysmon/Operational", "Security", "System", "Windows PowerShell"])
event_dicts = st.fixed_dictionaries(
    {"format": st.just(JSONL_FORMAT), "channel": st.one_of(channels, scalars),
     "event_id": st.one_of(st.sampled_from([1, 3, 4688, 4689, 12]), scalars), "time": times},
    optional={
        "provider": scalars, "version": scalars, "record_id": scalars, "computer": scalars, "user_sid": scalars,
        "pid": scalars, "tid": scalars, "raw": scalars, "origin": scalars,
        "fields": st.one_of(st.dictionaries(st.sampled_from(["Image", "CommandLine", "User", "x"]), scalars,
                                            max_size=4), scalars),
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(event_dicts)
def test_from_dict_fast_path_equals_the_reference(d: dict[str, Any]) -> None:
    assert _outcome(Event.from_dict, d) == _outcome(reference_from_dict, d)


json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=10)


@settings(max_examples=400)
@given(st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    event_dicts.map(lambda d: json.dumps(d, ensure_ascii=False)),
    st.sampled_from(['{"a":1,"a":2}', '"\\ud800"', "NaN", "[Infinity]", "1e400", "123456789012345678901234567890",
                     '{"format":"atomiclab.event/1","event_id":123456789012345678901234567890}', "{", "[1,]",
                     '{"format":"atomiclab.event/1","fields":{"x":1e400}}']),
))
def test_orjson_decoding_equals_json_loads(text: str) -> None:
    assert _outcome(_loads, text) == _outcome(json.loads, text)


def _jsonl(tmp_path: Path, records: list[Any], extra_lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + extra_lines
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(event_dicts, min_size=1, max_size=25),
       st.lists(st.sampled_from(["not json", "[1, 2]", '{"x": 1}', '{"format":"atomiclab.event/1"}']), max_size=3))
def test_prefiltered_read_is_the_full_read_with_refused_events_replaced(
    tmp_path: Path, records: list[dict[str, Any]], junk: list[str]
) -> None:
    # the first line is always a good event (the JSON-lines decision is made on it)
    first = {"format": JSONL_FORMAT, "channel": "Security", "event_id": 4688, "time": "2024-10-28T15:07:35Z"}
    path = _jsonl(tmp_path, [first, *records], junk)

    def wanted(channel: str, event_id: int) -> bool:
        return channel == "Security" and event_id == 4688

    full_stats, fast_stats = ReadStats(), ReadStats()
    full = _outcome(lambda: list(read_events(path, stats=full_stats)))
    fast = _outcome(lambda: list(read_events(path, stats=fast_stats, wanted=wanted)))
    assert full[0] == fast[0]
    if full[0] == "error":
        assert full == fast
        return
    assert len(full[1]) == len(fast[1])
    for ref, got in zip(full[1], fast[1], strict=True):
        if got is SKIPPED:
            assert not wanted(ref.channel, ref.event_id)
        else:
            assert got == ref
    assert (fast_stats.events, fast_stats.skipped_records, fast_stats.problems) == (
        full_stats.events, full_stats.skipped_records, full_stats.problems)


def test_rule_over_prefiltered_events_gives_the_same_result(tmp_path: Path) -> None:
    """Rows, their source event positions and the events counted are those of the full read."""
    recordings = REPO / ".." / "shared" / "telemetry" / "public"
    sources = sorted(p for p in recordings.rglob("*.evtx"))[:12] if recordings.is_dir() else []
    events: list[Event] = []
    for p in sources:
        events.extend(read_events(p, keep_raw=False))
    events.append(Event(channel="Security", provider="p", event_id=4688, time=datetime(2024, 1, 1, tzinfo=UTC),
                        computer="W", fields={"NewProcessName": r"C:\nmap\nmap.exe", "CommandLine": "nmap -sV x"}))
    path = tmp_path / "all.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")
    det = SumoDetector(RULE)
    wanted = det.prefilter()
    assert wanted is not None and not wanted(SKIPPED.channel, SKIPPED.event_id)
    full = det.evaluate(read_events(path))
    fast = det.evaluate(read_events(path, wanted=wanted))
    assert full.rows and (fast.rows, fast.source_events, fast.events_in) == (
        full.rows, full.source_events, full.events_in)
