"""``read_events(path)``: any supported event file, format detected from its content.

Detection is by content, never by file name: EVTX magic ``ElfFile``; gzip and zip containers (their
members are detected in turn and streamed); otherwise text, where the first significant character
decides: ``<`` event XML, ``[`` a JSON array, ``{`` JSON lines / one or several JSON objects. Every
JSON record is then mapped by shape (see ``jsonshapes``). Errors name the file (and member, line).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.errors import TelemetryError
from harness.telemetry.event import Event
from harness.telemetry.readers.common import ReadStats
from harness.telemetry.readers.evtxfile import EVTX_MAGIC, read_evtx
from harness.telemetry.readers.jsonshapes import event_from_record
from harness.telemetry.readers.winxml import read_xml_stream

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_JSON_BLOCK = 1 << 20
#: Refuse to inflate a container member beyond this (a zip bomb is hostile input too).
MAX_MEMBER_BYTES = 4 << 30


def read_events(path: Path, *, keep_raw: bool = True, stats: ReadStats | None = None) -> Iterator[Event]:
    """Stream the events of one file of any supported format.

    Raises TelemetryError naming the file and the reason when it cannot be opened, its format is not
    recognized, or it is damaged beyond use. Recoverable damage (EVTX chunks, single bad records) is
    skipped and counted in ``stats`` (pass a ReadStats to see it).
    """
    stats = stats if stats is not None else ReadStats()
    path = Path(path)
    origin = str(path)
    handle = _open_regular(path, origin)
    stats.files += 1
    try:
        head = handle.peek(8)[:8]
    except OSError:
        head = b""
    if head.startswith(EVTX_MAGIC):
        # The parser opens the path itself; handing out its generator directly (rather than
        # through the dispatch generators) saves two generator hops per event.
        handle.close()
        return read_evtx(path, origin=origin, keep_raw=keep_raw, stats=stats)
    return _read_opened(handle, origin=origin, keep_raw=keep_raw, stats=stats, path=path)


def _open_regular(path: Path, origin: str) -> io.BufferedReader:
    """Open ``path`` for reading if it is a regular file (a FIFO or device would block or never end).

    The file is opened non-blocking and checked on the open descriptor, so opening a FIFO cannot
    hang and the file checked is the file read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError as exc:
        raise TelemetryError("is a directory, not an event file", source=origin) from exc
    except OSError as exc:
        raise TelemetryError(f"cannot open: {exc.strerror or exc}", source=origin) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TelemetryError("is a directory, not an event file", source=origin)
        if not stat.S_ISREG(st.st_mode):
            raise TelemetryError("not a regular file (a FIFO, socket or device)", source=origin,
                                 hint="copy the events into a file first")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _read_opened(
    handle: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats, path: Path | None
) -> Iterator[Event]:
    with handle:
        yield from _dispatch(handle, origin=origin, keep_raw=keep_raw, stats=stats, path=path)


def _peek(stream: Any, n: int) -> bytes:
    return bytes(stream.peek(n)[:n])


def _dispatch(
    raw_stream: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats, path: Path | None
) -> Iterator[Event]:
    stream: Any = raw_stream if isinstance(raw_stream, io.BufferedReader) else io.BufferedReader(raw_stream)  # type: ignore[type-var]
    head = _peek(stream, 8)
    if head.startswith(EVTX_MAGIC):
        if path is not None:
            yield from read_evtx(path, origin=origin, keep_raw=keep_raw, stats=stats)
        else:
            yield from _evtx_member(stream, origin=origin, keep_raw=keep_raw, stats=stats)
        return
    if head.startswith(_GZIP_MAGIC):
        inner = io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"))  # type: ignore[arg-type]
        try:
            yield from _dispatch(inner, origin=origin, keep_raw=keep_raw, stats=stats, path=None)
        except (OSError, EOFError, zlib.error) as exc:
            raise TelemetryError(f"damaged gzip data: {exc}", source=origin) from exc
        return
    if head.startswith(_ZIP_MAGIC):
        yield from _zip_members(stream, origin=origin, keep_raw=keep_raw, stats=stats)
        return
    yield from _text(stream, origin=origin, keep_raw=keep_raw, stats=stats)


def _zip_members(stream: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats) -> Iterator[Event]:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TelemetryError(f"damaged zip archive: {exc}", source=origin) from exc
    with archive:
        for info in archive.infolist():
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            member_origin = f"{origin}!{info.filename}"
            if info.file_size > MAX_MEMBER_BYTES:
                raise TelemetryError(f"member larger than {MAX_MEMBER_BYTES} bytes", source=member_origin)
            try:
                with archive.open(info) as member:
                    yield from _dispatch(member, origin=member_origin, keep_raw=keep_raw, stats=stats, path=None)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise TelemetryError(f"damaged zip member: {exc}", source=member_origin) from exc


def _evtx_member(stream: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats) -> Iterator[Event]:
    """EVTX inside a container: the parser needs a seekable file, so spool it to a temp file."""
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(stream, spool, 1 << 20)
        size = spool.tell()
        spool.seek(0)
        yield from read_evtx(spool, origin=origin, keep_raw=keep_raw, stats=stats, size_hint=size)


def _text(stream: Any, *, origin: str, keep_raw: bool, stats: ReadStats) -> Iterator[Event]:
    head = _peek(stream, 4096)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) > 1 and head[1:2] == b"\x00"):
        first = head.decode("utf-16", errors="ignore").lstrip("\ufeff \t\r\n")[:1]
    else:
        first = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")[:1]
    if first == "<":
        yield from read_xml_stream(stream, origin=origin, keep_raw=keep_raw, stats=stats)
    elif first in ("{", "["):
        yield from _json(stream, origin=origin, keep_raw=keep_raw, stats=stats)
    elif first == "" and not head.strip(b"\xef\xbb\xbf \t\r\n"):
        return  # an empty file (or only a BOM) holds no events
    else:
        raise TelemetryError("format not recognized (expected EVTX, event XML, JSON/JSONL, gzip or zip)", source=origin)


# -- JSON -----------------------------------------------------------------------------------------


def _at(origin: str, where: str) -> str:
    """``FILE:LINE`` for a JSON line, ``FILE: record #N`` otherwise."""
    return f"{origin}:{where[5:]}" if where.startswith("line ") else f"{origin}: {where}"


def _record_problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"not an event: missing field {exc}"
    return f"not an event: {' '.join(str(exc).split()) or exc.__class__.__name__}"


def _json(stream: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats) -> Iterator[Event]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    recognized = seen = 0
    first_keys: list[str] = []
    # The first line/record that gave no event, as (location, reason): named when nothing was read.
    first: list[tuple[str, str]] = []
    shape_only = True  # every record that gave no event was merely of an unknown shape
    try:
        for record, raw, where in _json_records(text, origin, stats, first):
            seen += 1
            try:
                event = event_from_record(record, origin=origin, raw=raw if keep_raw else None)
            except (KeyError, ValueError, TypeError) as exc:
                reason = _record_problem(exc)
                shape_only = False
                if not first:
                    first.append((_at(origin, where), reason))
                stats.skipped_records += 1
                stats.problem(_at(origin, where), reason)
                continue
            if event is None:
                if not first_keys and isinstance(record, dict):
                    first_keys = list(record)[:8]
                stats.skipped_records += 1
                stats.problem(_at(origin, where), "not a known event shape")
                if seen >= 100 and recognized == 0:
                    break
                continue
            recognized += 1
            stats.events += 1
            yield event
    except UnicodeDecodeError as exc:
        raise TelemetryError(f"not UTF-8 text: {exc.reason}", source=origin) from exc
    except TelemetryError as exc:
        if not recognized:
            raise
        # Damage after good records (a cut-off array, a stray object): keep what was read, count it.
        stats.skipped_records += 1
        stats.problem(origin, exc.message.removeprefix(f"{origin}: "))
        return
    if recognized:
        return
    if first and not (shape_only and first_keys):
        where, reason = first[0]
        raise TelemetryError(reason, source=where, hint="no line of the file is a readable event")
    if seen:
        raise TelemetryError(
            f"JSON records of no known event shape (first record keys: {', '.join(first_keys) or '-'})",
            source=origin,
            hint="expected evtx JSON, Winlogbeat, NXLog/OTRF flat, eqllib or atomiclab JSONL",
        )


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _json_records(
    text: io.TextIOWrapper, origin: str, stats: ReadStats, bad: list[tuple[str, str]]
) -> Iterator[tuple[Any, str, str]]:
    """(record, raw text, location) for JSON lines, a JSON array, or concatenated JSON objects.

    JSON lines: a line that is not JSON is skipped, counted in ``stats`` (``FILE:LINE: reason``) and
    the first such (location, reason) kept in ``bad`` (if empty); the lines around it are read as usual. A file is JSON
    lines when its first line is a JSON object, or starts with ``{`` but does not decode while the
    next line is a JSON object on its own (pretty-printed JSON never has one on its second line).
    """
    first_line = text.readline()
    line_no = 1
    while first_line and not first_line.strip():
        first_line = text.readline()
        line_no += 1
    if not first_line:
        return
    stripped = first_line.strip()
    if stripped.startswith("{"):
        record = _json_object(stripped)
        pending: list[tuple[str, int]] = []
        first_error: Exception = ValueError("not a JSON object")
        if record is None:
            try:
                json.loads(stripped)
            except (json.JSONDecodeError, RecursionError) as exc:
                first_error = exc
            second = text.readline()
            second_no = line_no + 1
            while second and not second.strip():
                second = text.readline()
                second_no += 1
            if second and _json_object(second.strip()) is not None:
                pending.append((second, second_no))
            else:
                yield from _json_stream(first_line + second, text, origin, line_no)
                return
        # JSON lines: one object per line.
        loads = json.loads

        def skip(line_no: int, exc: Exception) -> None:
            reason = f"not JSON ({getattr(exc, 'msg', None) or exc.__class__.__name__})"
            if not bad:
                bad.append((f"{origin}:{line_no}", reason))
            stats.skipped_records += 1
            stats.problem(f"{origin}:{line_no}", reason)

        if record is not None:
            yield record, stripped, f"line {line_no}"
        else:
            skip(line_no, first_error)
        lines: Iterator[tuple[str, int]] = iter(pending)
        for line, no in lines:
            yield loads(line.strip()), line.strip(), f"line {no}"
            line_no = no
        for line in text:
            line_no += 1
            s = line.strip()
            if not s:
                continue
            try:
                value = loads(s)
            except (json.JSONDecodeError, RecursionError) as exc:
                skip(line_no, exc)
                continue
            yield value, s, f"line {line_no}"
        return
    yield from _json_stream(first_line, text, origin, line_no)


def _json_stream(
    start: str, text: io.TextIOWrapper, origin: str, start_line: int = 1
) -> Iterator[tuple[Any, str, str]]:
    """A JSON array, or objects one after another, decoded incrementally (flat memory)."""
    decoder = json.JSONDecoder()
    buf = start
    pos = 0
    line_base = start_line  # the line number of buf[0]
    eof = False
    in_array: bool | None = None
    index = 0

    def fill() -> bool:
        nonlocal buf, pos, eof, line_base
        block = text.read(_JSON_BLOCK)
        if not block:
            eof = True
            return False
        line_base += buf.count("\n", 0, pos)
        buf = buf[pos:] + block
        pos = 0
        return True

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or eof or not fill():
                return

    skip_ws()
    if pos < len(buf) and buf[pos] == "[":
        in_array = True
        pos += 1
    else:
        in_array = False
    while True:
        skip_ws()
        if pos >= len(buf):
            if in_array:
                raise TelemetryError("truncated JSON array (no closing ']')", source=origin)
            return
        if in_array and buf[pos] == "]":
            return
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if eof or not fill():
                    line = line_base + buf.count("\n", 0, exc.pos)
                    message = f"record #{index + 1}: not JSON ({exc.msg})"
                    raise TelemetryError(message, source=f"{origin}:{line}") from exc
            except RecursionError as exc:
                raise TelemetryError(f"record #{index + 1}: nested too deeply", source=origin) from exc
        index += 1
        yield value, buf[pos:end], f"record #{index}"
        pos = end
        if in_array:
            skip_ws()
            if pos < len(buf) and buf[pos] == ",":
                pos += 1
            elif pos < len(buf) and buf[pos] == "]":
                return
            else:
                raise TelemetryError(f"after record #{index}: expected ',' or ']'", source=origin)


__all__ = ["read_events"]
