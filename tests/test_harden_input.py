"""Issue 16, hostile telemetry input: never a traceback, never a silent loss, bounded memory.

Each test reproduces one finding of the red-team pass (it failed before the fix): leading blank
space past the 4 KB format peek read as an empty file, a lone ``\\ud800`` escape crashing every
command that printed or stored the event, an out-of-range numeric ``@timestamp`` crashing the
reader, and a small gzip inflating to one huge line held whole in memory.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import TelemetryError
from harness.telemetry.readers import ReadStats, read_events
from harness.telemetry.readers.common import ReadLimits, parse_epoch_or_time

EVENT = {
    "format": "atomiclab.event/1", "channel": "Security", "provider": "Microsoft-Windows-Security-Auditing",
    "event_id": 4688, "time": "2024-01-01T00:00:00Z", "computer": "ws1",
    "fields": {"NewProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami"},
}  # fmt: skip
LINE = json.dumps(EVENT)


@pytest.mark.parametrize("blank", [" " * 5000, "\n" * 9000, "\r\n\t " * 3000, "\ufeff" + " " * 70000])
def test_leading_blank_space_past_the_peek_window_is_not_an_empty_file(tmp_path: Path, blank: str) -> None:
    f = tmp_path / "ws.jsonl"
    f.write_text(blank + LINE + "\n" + LINE + "\n", encoding="utf-8")
    assert len(list(read_events(f))) == 2
    x = tmp_path / "ws.xml"
    x.write_text(blank + "<Events></Events>", encoding="utf-8")
    assert list(read_events(x)) == []  # XML, read as XML (and empty), not "format not recognized"
    g = tmp_path / "ws.jsonl.gz"
    g.write_bytes(gzip.compress((blank + LINE + "\n").encode()))
    assert len(list(read_events(g))) == 1


def test_detect_finds_the_event_behind_5kb_of_blank_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ws.jsonl"
    f.write_text(" " * 5000 + "\n" + LINE + "\n", encoding="utf-8")
    rule = tmp_path / "r.sumo"
    rule.write_text('_sourceCategory=* | where CommandLine matches "*whoami*"\n')
    assert main(["detect", "--rule", str(rule), str(f)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["CommandLine"] for r in rows] == ["cmd /c whoami"]


def _surrogate_file(tmp_path: Path) -> Path:
    f = tmp_path / "sur.jsonl"
    bad = LINE.replace("whoami", "who\\ud800ami").replace('"ws1"', '"w\\udfffs"')
    f.write_text(bad + "\n" + LINE + "\n", encoding="utf-8")
    return f


def test_a_lone_surrogate_in_json_becomes_a_replacement_character(tmp_path: Path) -> None:
    events = list(read_events(_surrogate_file(tmp_path)))
    assert events[0].fields["CommandLine"] == "cmd /c who\ufffdami" and events[0].computer == "w\ufffds"
    events[0].to_json().encode("utf-8")  # encodable: storable and printable


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_events_prints_a_lone_surrogate_event(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    assert main(["events", "--format", fmt, str(_surrogate_file(tmp_path))]) == 0
    assert "who\ufffdami" in capsys.readouterr().out


def test_detect_and_evaluate_survive_a_lone_surrogate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = tmp_path / "r.sumo"
    rule.write_text('_sourceCategory=* | where CommandLine matches "*who*"\n')
    for fmt in ("table", "jsonl"):
        assert main(["detect", "--rule", str(rule), "--format", fmt, str(_surrogate_file(tmp_path))]) == 0
    out = tmp_path / "out"
    code = main(["evaluate", "--telemetry", str(_surrogate_file(tmp_path)), "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite"), "--no-progress"])
    assert code in (0, 1)
    assert (out / "evidence" / "events.jsonl").read_text(encoding="utf-8").count("\ufffd") >= 2


@pytest.mark.parametrize("value", [1e300, -1e20, 10**400, float("nan"), float("inf"), -(10**30)])
def test_out_of_range_numeric_timestamps_are_a_skipped_record(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_epoch_or_time(value)
    f = tmp_path / "ts.jsonl"
    bad = json.dumps({"EventID": 1, "Channel": "Security", "@timestamp": 0}).replace("0}", f"{value}}}")
    good = json.dumps({"EventID": 1, "Channel": "Security", "@timestamp": 1700000000})
    f.write_text(bad.replace("nan", "NaN").replace("inf", "Infinity") + "\n" + good + "\n")
    stats = ReadStats()
    assert len(list(read_events(f, stats=stats))) == 1
    assert stats.skipped_records == 1 and "out of range" in stats.problems[0]
    f.write_text(bad.replace("nan", "NaN").replace("inf", "Infinity") + "\n")
    with pytest.raises(TelemetryError, match=r"ts\.jsonl:1: .*out of range"):
        list(read_events(f))


def test_a_json_line_past_the_limit_is_skipped_and_counted_not_held(tmp_path: Path) -> None:
    limits = ReadLimits(max_record_chars=1000)
    f = tmp_path / "long.jsonl"
    f.write_text(LINE + "\n" + '{"a": "' + "A" * 5000 + '"}\n' + LINE + "\n")
    stats = ReadStats()
    assert len(list(read_events(f, stats=stats, limits=limits))) == 2
    assert stats.skipped_records == 1 and stats.problems == [f"{f}:2: line longer than 1000 characters"]
    f.write_text('{"a": "' + "A" * 5000 + '"}\n')  # nothing readable: an error naming the file
    with pytest.raises(TelemetryError, match="larger than 1000 characters"):
        list(read_events(f, limits=limits))


def test_one_record_past_the_limit_in_a_json_array_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "arr.json"
    f.write_text("[\n" + LINE + ",\n" + '{"a": "' + "A" * 5000 + '"}\n]')
    with pytest.raises(TelemetryError, match=r"arr\.json:\d+: record #2: larger than 1000 characters"):
        list(read_events(f, limits=ReadLimits(max_record_chars=1000)))


def test_a_one_line_json_array_longer_than_the_limit_is_still_read(tmp_path: Path) -> None:
    f = tmp_path / "one-line.json"
    f.write_text("[" + ",".join([LINE] * 50) + "]")  # ~14 K characters on one line
    assert len(list(read_events(f, limits=ReadLimits(max_record_chars=1000)))) == 50


def test_decompressed_size_is_capped_for_gzip_and_zip(tmp_path: Path) -> None:
    limits = ReadLimits(max_decompressed_bytes=100_000)
    g = tmp_path / "bomb.jsonl.gz"
    g.write_bytes(gzip.compress((LINE + "\n").encode() * 1000))  # ~300 KB inflated
    with pytest.raises(TelemetryError, match=r"bomb\.jsonl\.gz: decompresses to more than 100000 bytes"):
        list(read_events(g, limits=limits))
    z = tmp_path / "bomb.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jsonl", (LINE + "\n") * 1000)
    z.write_bytes(buf.getvalue())
    with pytest.raises(TelemetryError, match=r"bomb\.zip!a\.jsonl"):
        list(read_events(z, limits=limits))
    assert len(list(read_events(g))) == 1000  # the default cap reads it


def test_a_small_gzip_of_a_200mb_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    g = tmp_path / "line.jsonl.gz"
    with gzip.open(g, "wb", compresslevel=9) as out:
        out.write((LINE + "\n").encode())
        chunk = b"A" * (1 << 20)
        out.write(b'{"a": "')
        for _ in range(200):
            out.write(chunk)
        out.write(b'"}\n' + (LINE + "\n").encode())
    assert g.stat().st_size < 400_000
    stats = ReadStats()
    tracemalloc.start()
    try:
        events = list(read_events(g, stats=stats))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(events) == 2 and stats.skipped_records == 1
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"


def test_data_after_a_json_array_is_not_silently_dropped(tmp_path: Path) -> None:
    """Found by the fuzz suite: ``[]`` then an event read as an empty file."""
    f = tmp_path / "arr.json"
    f.write_text("[]\n" + LINE + "\n")
    with pytest.raises(TelemetryError, match=r"arr\.json:2: after record #0: data after the end of the JSON array"):
        list(read_events(f))
    f.write_text("[" + LINE + "]\n" + LINE + "\n")  # after a good record: counted, the first kept
    stats = ReadStats()
    assert len(list(read_events(f, stats=stats))) == 1 and stats.skipped_records == 1


def test_a_json_file_concatenated_from_bom_files_reads_every_line(tmp_path: Path) -> None:
    """Found by the fuzz suite: a UTF-8 BOM at the start of a later line (``cat a.json b.json``)."""
    f = tmp_path / "cat.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + LINE.encode() + b"\n\xef\xbb\xbf" + LINE.encode() + b"\n")
    assert len(list(read_events(f))) == 2


def test_an_error_quoting_file_content_stays_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the fuzz suite: a record key with a newline made the error two lines."""
    f = tmp_path / "keys.jsonl"
    f.write_text(json.dumps({"a\nb\x1b[2J": 1}) + "\n")
    assert main(["events", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "a\\x0ab" in err


def test_malformed_xml_error_is_one_line(tmp_path: Path) -> None:
    """Found by the fuzz suite: lxml's 'Char 0x0 out of allowed range' message spans two lines."""
    f = tmp_path / "nul.xml"
    f.write_bytes(b'<Events><Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
                  b"<EventID>1</EventID><Channel>a\x00b</Channel></System></Event></Events>")
    with pytest.raises(TelemetryError) as info:
        list(read_events(f))
    assert "\n" not in str(info.value) and "malformed event XML" in str(info.value)


@pytest.mark.parametrize("method", [99, "encrypted"])
def test_an_unreadable_zip_member_is_a_telemetry_error(tmp_path: Path, method: object) -> None:
    """Found by the fuzz suite: an unknown compression method (or an encrypted member) raised
    NotImplementedError/RuntimeError out of zipfile."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a\nb.jsonl", LINE + "\n")
    data = bytearray(buf.getvalue())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # local and central headers
        at = data.index(header)
        if method == "encrypted":
            flag_at = at + (6 if header == b"PK\x03\x04" else 8)
            data[flag_at] |= 1
        else:
            method_at = at + (8 if header == b"PK\x03\x04" else 10)
            data[method_at] = int(str(method))
    z = tmp_path / "odd.zip"
    z.write_bytes(bytes(data))
    with pytest.raises(TelemetryError, match="unreadable zip member") as info:
        list(read_events(z))
    assert "\n" not in str(info.value)
