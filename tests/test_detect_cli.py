"""``atomiclab lint`` and ``atomiclab detect`` through the CLI dispatcher."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.telemetry.event import SYSMON, Event

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "detections" / "sumo"
UPSTREAM = RULES / "upstream" / "t1046_network_service_discovery.sumo"
CORRECTED = RULES / "t1046_network_service_discovery.sumo"
TUNED = RULES / "t1046_network_service_discovery_tuned.sumo"


def events_file(tmp_path: Path) -> Path:
    t = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    events = [
        Event(SYSMON, "Microsoft-Windows-Sysmon", 1, t, "WIN10",
              {"Image": r"C:\Tools\nmap.exe", "CommandLine": "nmap -sV -p 80 127.0.0.1", "User": r"LAB\a",
               "ParentImage": r"C:\Windows\System32\cmd.exe"}),
        Event(SYSMON, "Microsoft-Windows-Sysmon", 1, t, "WIN10",
              {"Image": r"C:\Windows\System32\whoami.exe", "CommandLine": "whoami", "User": r"LAB\a"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")
    return path


def test_lint_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["lint", str(CORRECTED), str(TUNED)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["lint", str(UPSTREAM)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{UPSTREAM}:6:3: error SUMO001: 'eval' is not a Sumo Logic operator (Splunk syntax) "
                        "and 'x = y' is a comparison in Sumo: the query fails with a parse error; write "
                        "'<expression> as x'")
    assert len(lines) == 32
    assert main(["lint", str(tmp_path / "missing.sumo"), str(CORRECTED)]) == 2
    err = capsys.readouterr().err
    assert "missing.sumo: cannot read rule" in err and "Traceback" not in err


def test_detect_prints_one_json_object_per_row_with_the_rules_field_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["detect", "--rule", str(TUNED), str(events_file(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    row = json.loads(out[0])
    assert list(row) == ["_messageTime", "_sourceHost", "user", "image_path", "cmdline", "parent_image",
                         "known_scanner", "native_scan", "port_range", "service_version", "suspicion_score",
                         "detection_type"]
    assert (row["image_path"], row["detection_type"], row["suspicion_score"]) == (
        r"C:\Tools\nmap.exe", "KnownScanningTool", 3)


def test_detect_table_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["detect", "--rule", str(CORRECTED), "--format", "table", str(events_file(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["_messageTime", "_sourceHost", "user"]
    assert "KnownScanningTool" in out[2]


def test_detect_with_an_invalid_rule_prints_its_lint_style_error_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["detect", "--rule", str(UPSTREAM), str(events_file(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{UPSTREAM}:6:3: 'eval' is not a Sumo Logic operator")
    assert "\n" not in err
