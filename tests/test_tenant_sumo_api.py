"""The Sumo Logic tenant wired in: `atomiclab detect --engine sumo-api` and `atomiclab run --sumo-tenant`,
against the fake Search Job API on 127.0.0.1 (tests/sumo_api_server.py). The lab target of the run
is an emulated host reached through a real lab.yaml (the fake tenant plays the SIEM its logs would
ship to); only the emulated host a run starts itself (no --lab) is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sumo_api_server import FakeSumo, serve

from harness.cli import main

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[1]
RULE = "detections/sumo/t1046_network_service_discovery.sumo"
TUNED = "detections/sumo/t1046_network_service_discovery_tuned.sumo"
NETSTAT = "d7b2043f-3075-47e3-87ca-8ca224d06bec"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


def row(t: datetime, image: str = r"C:\Windows\System32\cmd.exe") -> dict[str, str]:
    """A result message as the tenant would return it for the corrected rule (fields as the rule names them)."""
    return {"_messageTime": ms(t), "_sourceHost": "WIN-SERVER", "user": r"LAB\analyst", "image_path": image,
            "cmdline": "cmd.exe /c netstat -ano | findstr LISTENING", "detection_type": "NativeToolScanning",
            "suspicion_score": "1"}


@pytest.fixture
def tenant(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeSumo]]:
    """The fake tenant with its credentials in the environment (and never in a keyring)."""
    monkeypatch.setattr("harness.credentials._system_keyring", lambda service, user: None)
    monkeypatch.delenv("SUMO_API_ENDPOINT", raising=False)
    with serve() as (url, state):
        monkeypatch.setenv("SUMO_ACCESS_ID", state.access_id)
        monkeypatch.setenv("SUMO_ACCESS_KEY", state.access_key)
        yield url, state


def assert_secret_absent(state: FakeSumo, *texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert state.access_key not in text
    if folder is not None:
        for f in folder.rglob("*"):
            if f.is_file():
                assert state.access_key.encode() not in f.read_bytes(), f


# ------------------------------------------------------------------------------------ detect


def test_detect_in_the_tenant_prints_rows_like_the_local_engine(
    tenant: tuple[str, FakeSumo], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = tenant
    state.messages = [row(T0 + timedelta(minutes=1)), row(T0 + timedelta(minutes=2), r"C:\t\nmap.exe"),
                      row(T0 - timedelta(hours=2))]  # the last is outside the window
    code = main(["detect", "--rule", str(REPO / RULE), "--engine", "sumo-api", "--from", "2026-11-30T12:00:00Z",
                 "--to", "2026-11-30T13:00:00Z", "--endpoint", url])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image_path"] for r in rows] == [r"C:\Windows\System32\cmd.exe", r"C:\t\nmap.exe"]
    assert rows[0]["detection_type"] == "NativeToolScanning" and "_messagetime" in rows[0]  # lower-cased by the API
    (body,) = state.bodies
    assert body["query"] == (REPO / RULE).read_text(encoding="utf-8")
    assert (body["from"], body["to"]) == (int(ms(T0)), int(ms(T0 + timedelta(hours=1))))
    assert all(job.deleted for job in state.jobs.values())
    assert_secret_absent(state, out, err)


def test_detect_in_the_tenant_table_and_endpoint_from_the_environment(
    tenant: tuple[str, FakeSumo], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = tenant
    monkeypatch.setenv("SUMO_API_ENDPOINT", url)
    state.messages = [row(T0 + timedelta(seconds=5))]
    assert main(["detect", "--rule", str(REPO / TUNED), "--engine", "sumo-api", "--format", "table",
                 "--from", "2026-11-30T12:00:00", "--to", "2026-11-30T12:00:10"]) == 0
    out, err = capsys.readouterr()
    assert "NativeToolScanning" in out and "1 row(s)" in err


def test_detect_in_the_tenant_without_credentials_is_one_clear_line(
    tenant: tuple[str, FakeSumo], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = tenant
    monkeypatch.delenv("SUMO_ACCESS_KEY")
    code = main(["detect", "--rule", str(REPO / RULE), "--engine", "sumo-api", "--from", "2026-11-30T12:00:00Z",
                 "--to", "2026-11-30T13:00:00Z", "--endpoint", url])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no Sumo Logic credentials" in err and "SUMO_ACCESS_KEY" in err
    assert state.requests == []  # nothing was sent without credentials


def test_detect_in_the_tenant_without_endpoint_or_window_is_a_usage_error(
    tenant: tuple[str, FakeSumo], capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = tenant
    assert main(["detect", "--rule", str(REPO / RULE), "--engine", "sumo-api", "--from", "2026-11-30T12:00:00Z",
                 "--to", "2026-11-30T13:00:00Z"]) == 2
    err = capsys.readouterr().err
    assert "no Sumo Logic API endpoint configured" in err and "SUMO_API_ENDPOINT" in err
    assert main(["detect", "--rule", str(REPO / RULE), "--engine", "sumo-api", "--endpoint", "us2"]) == 2
    assert "--from and --to" in capsys.readouterr().err
    assert main(["detect", "--rule", str(REPO / RULE)]) == 2  # the local engine still needs FILEs
    assert "FILE" in capsys.readouterr().err
    assert state.requests == []


def test_detect_in_the_tenant_access_refused_never_prints_the_key(
    tenant: tuple[str, FakeSumo], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = tenant
    wrong = state.access_key + "-wrong"
    monkeypatch.setenv("SUMO_ACCESS_KEY", wrong)
    code = main(["detect", "--rule", str(REPO / RULE), "--engine", "sumo-api", "--from", "2026-11-30T12:00:00Z",
                 "--to", "2026-11-30T13:00:00Z", "--endpoint", url])
    out, err = capsys.readouterr()
    assert code == 2 and "access refused (401" in err
    assert wrong not in out + err and state.access_key not in out + err


# --------------------------------------------------------------------------------------- run


@pytest.fixture
def lab(emulated_lab_file: Path) -> Path:
    """A lab.yaml whose one target is an in-process emulated host."""
    return emulated_lab_file


def _run(tmp_path: Path, lab_file: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = tmp_path / "out"
    code = main(["run", "--lab", str(lab_file), "--no-progress", "--tests", NETSTAT, "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite"), *extra])
    return code, json.loads((out / "results.json").read_text())


def test_run_judges_each_sumo_rule_in_the_tenant_over_the_tests_window(
    tenant: tuple[str, FakeSumo], lab: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    url, state = tenant
    now = datetime.now(UTC)
    state.messages = [row(now), row(now - timedelta(hours=3))]  # the second is long before the test
    code, data = _run(tmp_path, lab, "--sumo-tenant", "--sumo-endpoint", url)
    out, err = capfd.readouterr()
    (t,) = data["tests"]
    assert code == 0, t["reason"]
    by_rule = {v["rule"]: v for v in t["detection_verdicts"]}
    for rule in (RULE, TUNED):
        local, remote = by_rule[rule], by_rule[rule + "@sumo-api"]
        assert local["engine"] == "sumo-local" and remote["engine"] == "sumo-api"
        assert remote["outcome"] == "met" and remote["fires"] == local["fires"]
        assert remote["condition"] == local["condition"]
        assert len(remote["rows"]) == 1 and remote["rows"][0]["image_path"].endswith("cmd.exe")
    assert not any(v["rule"].endswith(".yml@sumo-api") for v in t["detection_verdicts"])  # Sigma stays local
    # one job per tenant rule, over [test start - slack, command end + telemetry budget)
    assert len(state.bodies) == 2 and all(j.deleted for j in state.jobs.values())
    started = datetime.fromisoformat(t["started"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(t["ended"].replace("Z", "+00:00"))
    for body in state.bodies:
        lo, hi = body["from"] / 1000, body["to"] / 1000
        assert started.timestamp() - 61 <= lo <= started.timestamp() - 59
        assert hi >= ended.timestamp() - 1 and hi - lo < 60 + 120
    assert data["lint"][RULE + "@sumo-api"] == data["lint"][RULE]
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"{RULE}@sumo-api" in html and "sumo-api" in html
    assert_secret_absent(state, out, err, folder=tmp_path / "out")
    assert state.access_key.encode() not in (tmp_path / "h.sqlite").read_bytes()


def test_run_a_failing_tenant_fails_its_verdicts_and_says_why(
    tenant: tuple[str, FakeSumo], lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, state = tenant
    wrong = state.access_key + "-wrong"
    monkeypatch.setenv("SUMO_ACCESS_KEY", wrong)
    code, data = _run(tmp_path, lab, "--sumo-tenant", "--sumo-endpoint", url)
    out, err = capfd.readouterr()
    assert code == 1
    (t,) = data["tests"]
    assert t["status"] == "failed" and t["failure"] == "rule_invalid"
    for v in t["detection_verdicts"]:
        if v["rule"].endswith("@sumo-api"):
            assert v["outcome"] == "missed" and v["engine"] == "sumo-api"
            assert "the tenant search failed" in v["reason"] and "access refused (401" in v["reason"]
        else:
            assert v["outcome"] == "met"  # the local engines are judged as always
    assert wrong not in out + err and wrong not in (tmp_path / "out" / "results.json").read_text()


def test_run_sumo_tenant_refuses_emulated_targets_and_needs_credentials(
    tenant: tuple[str, FakeSumo], lab: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, state = tenant
    assert main(["run", "--sumo-tenant", "--sumo-endpoint", url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "emulated events never reach a Sumo Logic tenant" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--lab", str(lab), "--sumo-endpoint", url, "--no-progress"]) == 2
    assert "--sumo-endpoint applies to --sumo-tenant only" in capsys.readouterr().err
    assert main(["run", "--lab", str(lab), "--sumo-tenant", "--no-progress"]) == 2
    assert "SUMO_API_ENDPOINT" in capsys.readouterr().err
    monkeypatch.delenv("SUMO_ACCESS_ID")
    assert main(["run", "--lab", str(lab), "--sumo-tenant", "--sumo-endpoint", url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no Sumo Logic credentials" in err and "SUMO_ACCESS_ID" in err and "Traceback" not in err
    assert state.requests == []
