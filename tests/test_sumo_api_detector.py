"""SumoApiDetector against a fake Search Job API on 127.0.0.1 (tests/sumo_api_server.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sumo_api_server import FakeSumo, serve

from harness.detect.base import Detector, Engine, TimeWindow
from harness.detect.sumo_api import (
    SumoApiDetector,
    SumoApiSettings,
    SumoCredentials,
    resolve_endpoint,
)
from harness.errors import DetectionError, RemoteSearchError
from harness.telemetry.event import SYSMON, Event

pytestmark = pytest.mark.network

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = TimeWindow(T0, T0 + timedelta(hours=1))
QUERY = '_sourceCategory=*Windows/Sysmon* | where EventID in ("1", "4688") | fields _messagetime, image'
FAST = SumoApiSettings(poll_interval_s=0.01, backoff_s=0.01, max_retries=3, job_timeout_s=10, http_timeout_s=5)


def ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


def message(i: int, t: datetime) -> dict[str, str]:
    return {"_messageTime": ms(t), "_sourceHost": "WIN10", "Image": f"C:\\t\\tool{i}.exe",
            "CommandLine": f"tool{i} -x", "EventID": "1"}


def make(url: str, state: FakeSumo, query: str = QUERY, **kw: object) -> SumoApiDetector:
    settings = kw.pop("settings", FAST)
    return SumoApiDetector(query, rule_id="t1046", endpoint=url,
                           credentials=SumoCredentials(state.access_id, state.access_key),
                           settings=settings, **kw)  # type: ignore[arg-type]


def assert_no_secret(state: FakeSumo, *texts: object) -> None:
    for text in texts:
        assert state.access_key not in str(text)
        assert state.access_key not in repr(text)


def test_full_job_life_cycle_rows_lowercase_and_deleted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with serve() as (url, state):
        state.messages = [message(i, T0 + timedelta(minutes=i)) for i in range(3)]
        state.messages.append(message(9, T0 - timedelta(minutes=5)))  # outside the window
        det = make(url, state)
        assert isinstance(det, Detector) and det.engine is Engine.SUMO_API
        ev = Event(channel=SYSMON, provider="p", event_id=1, time=T0, computer="h")
        res = det.evaluate([ev, ev], WINDOW)
    assert res.engine is Engine.SUMO_API and res.rule_id == "t1046"
    assert res.events_in == 2
    assert [r["image"] for r in res.rows] == ["C:\\t\\tool0.exe", "C:\\t\\tool1.exe", "C:\\t\\tool2.exe"]
    assert set(res.rows[0]) == {"_messagetime", "_sourcehost", "image", "commandline", "eventid"}
    body = state.bodies[0]
    assert body["query"] == QUERY and body["timeZone"] == "UTC" and body["byReceiptTime"] is False
    assert body["from"] == int(ms(T0)) and body["to"] == int(ms(WINDOW.end))  # type: ignore[arg-type]
    methods = [(m, p.rsplit("/", 1)[-1]) for m, p, _ in state.requests]
    assert methods[0] == ("POST", "jobs")
    assert methods[-1][0] == "DELETE"
    polls = [1 for m, p, _ in state.requests if m == "GET" and p.count("/") == 5]
    assert len(polls) == 3  # NOT STARTED, GATHERING RESULTS, DONE GATHERING RESULTS
    job = next(iter(state.jobs.values()))
    assert job.deleted
    assert_no_secret(state, res, caplog.text)


def test_paging_respects_limit_and_offsets() -> None:
    with serve() as (url, state):
        state.messages = [message(i, T0 + timedelta(seconds=i)) for i in range(25)]
        det = make(url, state, settings=SumoApiSettings(poll_interval_s=0.01, page_limit=10))
        res = det.evaluate([], WINDOW)
    assert len(res.rows) == 25 and res.rows[24]["image"] == "C:\\t\\tool24.exe"
    pages = [(q["offset"][0], q["limit"][0]) for m, p, q in state.requests if p.endswith("/messages")]
    assert pages == [("0", "10"), ("10", "10"), ("20", "5")]


def test_aggregate_query_pages_records() -> None:
    with serve() as (url, state):
        state.messages = [message(i, T0 + timedelta(seconds=i)) for i in range(4)]
        state.records = [{"detection_type": "NativeToolScanning", "_count": "3"},
                         {"detection_type": "KnownScanningTool", "_count": "1"}]
        res = make(url, state, query=QUERY + " | count by detection_type").evaluate([], WINDOW)
    assert res.rows == ({"detection_type": "NativeToolScanning", "_count": "3"},
                        {"detection_type": "KnownScanningTool", "_count": "1"})
    assert not any(p.endswith("/messages") for _, p, _ in state.requests)


def test_aggregate_with_no_records_has_no_rows_and_plain_search_uses_messages() -> None:
    with serve() as (url, state):
        state.messages = [message(1, T0)]
        res = make(url, state, query=QUERY + " | count").evaluate([], WINDOW)
        assert res.rows == ()
        res2 = make(url, state).evaluate([], WINDOW)
        assert len(res2.rows) == 1
    # the plain search asked /records once, got no.records.not.an.aggregation.query, then paged messages
    paths = [p.rsplit("/", 1)[-1] for _, p, _ in state.requests]
    assert "records" in paths and "messages" in paths


def test_429_backs_off_honouring_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    with serve() as (url, state):
        state.rate_limit_first = 2
        state.retry_after = "0.05"
        state.messages = [message(1, T0)]
        res = make(url, state, sleep=slept.append).evaluate([], WINDOW)
    assert len(res.rows) == 1
    assert slept[:2] == [0.05, 0.05]
    assert all(s == FAST.poll_interval_s for s in slept[2:])


def test_429_without_retry_after_uses_bounded_exponential_backoff() -> None:
    slept: list[float] = []
    with serve() as (url, state):
        state.rate_limit_first = 10
        state.retry_after = None
        with pytest.raises(RemoteSearchError, match=r"rate limited \(429\) after 3 retries") as ei:
            make(url, state, sleep=slept.append).evaluate([], WINDOW)
    assert slept == [0.01, 0.02, 0.04]
    assert_no_secret(state, ei.value)


def test_401_gives_api_message_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with serve() as (url, state):
        det = SumoApiDetector(QUERY, rule_id="r", endpoint=url, settings=FAST,
                              credentials=SumoCredentials(state.access_id, state.access_key + "-wrong"))
        with pytest.raises(RemoteSearchError) as ei:
            det.evaluate([], WINDOW)
    msg = str(ei.value)
    assert "401" in msg and "Credential could not be verified." in msg and "SUMO_ACCESS_KEY" in msg
    assert_no_secret(state, msg, caplog.text)
    assert state.access_key + "-wrong" not in msg + caplog.text


def test_parse_error_for_eval_query() -> None:
    with serve() as (url, state), pytest.raises(RemoteSearchError) as ei:
        make(url, state, query=QUERY + " | eval x = 1").evaluate([], WINDOW)
    assert "parse.error" in str(ei.value) and "unknown operator 'eval'" in str(ei.value)
    assert state.jobs == {}


def test_expired_job_is_reported_and_delete_failure_does_not_mask_it(caplog: pytest.LogCaptureFixture) -> None:
    import time as _time

    with serve() as (url, state):
        state.expiry_s = 0.05
        state.polls_until_done = 5
        det = make(url, state, sleep=lambda s: _time.sleep(0.15))  # polls too slowly on purpose
        with pytest.raises(RemoteSearchError, match="is gone") as ei:
            det.evaluate([], WINDOW)
    assert "jobid.invalid" in str(ei.value)
    assert state.requests[-1][0] == "DELETE"  # still attempted in the finally
    assert "could not delete" in caplog.text


def test_cancelled_job_and_pending_errors() -> None:
    with serve() as (url, state):
        state.final_state = "CANCELLED"
        with pytest.raises(RemoteSearchError, match="cancelled"):
            make(url, state).evaluate([], WINDOW)
        state.final_state = "DONE GATHERING RESULTS"
        state.pending_errors = ["Field CommandLine not found"]
        with pytest.raises(RemoteSearchError, match="Field CommandLine not found"):
            make(url, state).evaluate([], WINDOW)
        assert all(j.deleted for j in state.jobs.values())


def test_force_paused_returns_gathered_results() -> None:
    with serve() as (url, state):
        state.final_state = "FORCE PAUSED"
        state.messages = [message(1, T0)]
        res = make(url, state).evaluate([], WINDOW)
    assert len(res.rows) == 1


def test_job_timeout_is_bounded_by_clock() -> None:
    ticks = iter(range(0, 1000, 5))
    with serve() as (url, state):
        state.polls_until_done = 1000
        det = make(url, state, settings=SumoApiSettings(poll_interval_s=0.01, job_timeout_s=12),
                   clock=lambda: float(next(ticks)))
        with pytest.raises(RemoteSearchError, match="did not finish within 12 s"):
            det.evaluate([], WINDOW)
        assert all(j.deleted for j in state.jobs.values())


def test_window_from_events_and_missing_window() -> None:
    with serve() as (url, state):
        state.messages = [message(1, T0 + timedelta(seconds=5))]
        evs = [Event(channel=SYSMON, provider="p", event_id=1, time=T0 + timedelta(seconds=s), computer="h")
               for s in (0, 5)]
        res = make(url, state).evaluate(evs)
        assert len(res.rows) == 1
        assert state.bodies[-1]["to"] == int(ms(T0 + timedelta(seconds=5))) + 1
        with pytest.raises(DetectionError, match="needs a time window"):
            make(url, state).evaluate([])


def test_credentials_from_environment_via_get_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve() as (url, state):
        monkeypatch.setenv("SUMO_ACCESS_ID", state.access_id)
        monkeypatch.setenv("SUMO_ACCESS_KEY", state.access_key)
        det = SumoApiDetector(QUERY, rule_id="r", endpoint=url, settings=FAST)
        assert det.evaluate([], WINDOW).rows == ()
        monkeypatch.delenv("SUMO_ACCESS_KEY")
        monkeypatch.setattr("harness.credentials._system_keyring", lambda service, user: None)
        with pytest.raises(RemoteSearchError, match="SUMO_ACCESS_KEY") as ei:
            det.evaluate([], WINDOW)
        assert_no_secret(state, ei.value)


def test_credentials_repr_hides_key() -> None:
    c = SumoCredentials("id1", "topsecret")
    assert "topsecret" not in repr(c) and "topsecret" not in str(c)


def test_unreachable_endpoint_is_one_clear_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    det = SumoApiDetector(QUERY, rule_id="r", endpoint=f"http://127.0.0.1:{port}", settings=FAST,
                          credentials=SumoCredentials("id", "secret-key-xyz"))
    with pytest.raises(RemoteSearchError, match="failed") as ei:
        det.evaluate([], WINDOW)
    assert "secret-key-xyz" not in str(ei.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("us2", "https://api.us2.sumologic.com"),
        ("US1", "https://api.sumologic.com"),
        ("eu", "https://api.eu.sumologic.com"),
        ("https://api.au.sumologic.com/", "https://api.au.sumologic.com"),
        ("https://api.de.sumologic.com/api/v1", "https://api.de.sumologic.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_resolve_endpoint(given: str, expected: str) -> None:
    assert resolve_endpoint(given) == expected


@pytest.mark.parametrize("bad", ["", "http://api.us2.sumologic.com", "ftp://x", "us2/../x"])
def test_resolve_endpoint_rejects(bad: str) -> None:
    with pytest.raises(DetectionError):
        resolve_endpoint(bad)


def test_from_file_uses_stem_and_env_endpoint(tmp_path: Path) -> None:
    p = tmp_path / "t1046_network_service_discovery.sumo"
    p.write_text(QUERY + "\n")
    det = SumoApiDetector.from_file(p, environ={"SUMO_API_ENDPOINT": "us2"})
    assert det.rule_id == "t1046_network_service_discovery" and det.endpoint == "https://api.us2.sumologic.com"
    with pytest.raises(DetectionError, match="cannot read Sumo rule"):
        SumoApiDetector.from_file(tmp_path / "missing.sumo", endpoint="us2")


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="poll_interval_s"):
        SumoApiSettings(poll_interval_s=25)
    with pytest.raises(ValueError, match="page_limit"):
        SumoApiSettings(page_limit=20000)
