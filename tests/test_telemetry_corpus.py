"""Every EVTX, JSON, zip and gz file listed in shared/telemetry/public/SOURCES.md is read, and its
per-channel, per-EventID counts equal the ones SOURCES.md lists (computed there with the reference
parser). Channel aliases in that table (Sysmon, WinPS, PS-Op) are mapped to real channel names;
channel names are compared case-insensitively because readers canonicalize them (OTRF smbexec
writes both ``Security`` and ``security``)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from harness.telemetry.readers import ReadStats, read_events

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
SOURCES = PUBLIC / "SOURCES.md"

ALIASES = {
    "Sysmon": "Microsoft-Windows-Sysmon/Operational",
    "WinPS": "Windows PowerShell",
    "PS-Op": "Microsoft-Windows-PowerShell/Operational",
}
EVENT_FORMATS = ("EVTX", "JSON lines", "JSON objects", "JSON array .gz", "ZIP→JSON lines")


def _expected_files() -> list[tuple[str, str, Counter[tuple[str, int]]]]:
    """(relative path, format, Counter[(channel lower, event id)]) per event file in SOURCES.md."""
    if not SOURCES.is_file():
        return []
    rows = []
    section = ""
    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^### `([^`]+)/`", line)
        if m:
            section = m.group(1)
            continue
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 6 or not cells[1].startswith("`") or cells[3] not in EVENT_FORMATS:
            continue
        counts: Counter[tuple[str, int]] = Counter()
        if cells[4] != "(no events)":
            # "Sysmon:1=52, Security:4688=2, Microsoft-Windows-Kernel-IO/Operational:1=37"
            for item in re.findall(r"([^,]+?):(\d+)=(\d+)", cells[4]):
                channel = ALIASES.get(item[0].strip(), item[0].strip())
                counts[(channel.lower(), int(item[1]))] += int(item[2])
        rows.append((f"{section}/{cells[1].strip('`')}", cells[3], counts))
    return rows


FILES = _expected_files()


def test_sources_table_parsed() -> None:
    if not FILES:
        pytest.skip(f"shared telemetry not present at {PUBLIC} (SOURCES.md missing)")
    assert len(FILES) >= 200
    assert {fmt for _path, fmt, _c in FILES} == set(EVENT_FORMATS)


@pytest.mark.parametrize("rel,fmt,expected", FILES, ids=[f[0][-70:] for f in FILES])
def test_counts_match_sources(rel: str, fmt: str, expected: Counter[tuple[str, int]]) -> None:
    path = PUBLIC / rel
    if not path.is_file():
        pytest.skip(f"recording {rel} absent")
    stats = ReadStats()
    got: Counter[tuple[str, int]] = Counter()
    for event in read_events(path, keep_raw=False, stats=stats):
        got[(event.channel.lower(), event.event_id)] += 1
        assert event.time.tzinfo is not None
    assert got == expected
    assert stats.events == sum(expected.values())
    if "sysmon.evtx" not in rel:
        assert stats.damaged_chunks == 0 and stats.skipped_records == 0, stats.problems[:3]


def test_damaged_sysmon_evtx_yields_readable_records_and_reports_damage() -> None:
    path = PUBLIC / "evtx-rs-samples" / "samples" / "sysmon.evtx"
    if not path.is_file():
        pytest.skip(f"recording {path} absent")
    stats = ReadStats()
    events = list(read_events(path, stats=stats))
    assert len(events) == 358  # every record of the readable chunks
    assert stats.damaged_chunks >= 1
    assert any("chunk number 9" in p for p in stats.problems)
    assert sum(1 for e in events if e.event_id == 1) == 227
