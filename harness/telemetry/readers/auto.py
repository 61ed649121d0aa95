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
import lzma
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from harness.errors import TelemetryError
from harness.telemetry.event import JSONL_FORMAT, Event
from harness.telemetry.readers.common import DEFAULT_LIMITS, ReadLimits, ReadStats
from harness.telemetry.readers.jsonshapes import event_from_record
from harness.textsafe import for_terminal

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_JSON_BLOCK = 1 << 20
#: Refuse to inflate a container member beyond this (a zip bomb is hostile input too).
MAX_MEMBER_BYTES = DEFAULT_LIMITS.max_decompressed_bytes
#: A ``\\uD800``-``\\uDFFF`` escape in JSON text: the record may decode to a lone surrogate.
#: The EVTX file signature (as ``evtxfile.EVTX_MAGIC``; the evtx and lxml modules are imported only
#: when a file of their format is read).
EVTX_MAGIC = b"ElfFile\x00"

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: What separates JSON records: whitespace and byte-order marks (``cat`` of exported files, each
#: starting with one, puts a BOM at the start of a later line).
_BLANK = "\ufeff \t\r\n"


#: ``wanted(channel, event_id)``: False when the consumer will certainly drop such an event.
EventFilter = Callable[[str, int], bool]
#: Stands for an event ``wanted`` refused: same position in the stream, never built in full.
SKIPPED = Event(channel="", provider="", event_id=-1, time=datetime(1970, 1, 1, tzinfo=UTC), computer="")


def read_events(
    path: Path,
    *,
    keep_raw: bool = True,
    stats: ReadStats | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
    wanted: EventFilter | None = None,
) -> Iterator[Event]:
    """Stream the events of one file of any supported format.

    ``wanted`` (e.g. a compiled query's ``prefilter``) lets normalized JSONL (atomiclab.event/1)
    lines whose channel and event id it refuses be yielded as the shared ``SKIPPED`` placeholder
    instead of a decoded Event: positions and counts stay those of the file, only the work goes.
    Every other line and format is read in full as without it.

    Raises TelemetryError naming the file and the reason when it cannot be opened, its format is not
    recognized, it is damaged beyond use, or a compressed stream inflates beyond ``limits``.
    Recoverable damage (EVTX chunks, single bad records, a JSON line longer than ``limits``
    allows) is skipped and counted in ``stats`` (pass a ReadStats to see it).
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
        from harness.telemetry.readers.evtxfile import read_evtx

        return read_evtx(path, origin=origin, keep_raw=keep_raw, stats=stats)
    return _read_opened(handle, origin=origin, keep_raw=keep_raw, stats=stats, path=path, limits=limits, wanted=wanted)


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
    handle: IO[bytes],
    *,
    origin: str,
    keep_raw: bool,
    stats: ReadStats,
    path: Path | None,
    limits: ReadLimits,
    wanted: EventFilter | None = None,
) -> Iterator[Event]:
    with handle:
        yield from _dispatch(
            handle, origin=origin, keep_raw=keep_raw, stats=stats, path=path, limits=limits, wanted=wanted
        )


def _peek(stream: Any, n: int) -> bytes:
    return bytes(stream.peek(n)[:n])


class _LimitExceeded(TelemetryError):
    """A resource cap was hit: the rest of the input cannot be read, whatever was read before."""


class _Capped(io.RawIOBase):
    """A decompressing stream that raises TelemetryError once it has given more than ``cap`` bytes."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile, cap: int, origin: str) -> None:
        super().__init__()
        self.inner = inner
        self.cap = cap
        self.origin = origin
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(min(len(buffer), self.cap + 1 - self.given) or 1)
        self.given += len(data)
        if self.given > self.cap:
            raise _LimitExceeded(
                f"decompresses to more than {self.cap} bytes", source=self.origin,
                hint="a compression bomb, or a capture to split into smaller files",
            )
        buffer[: len(data)] = data
        return len(data)


def _capped(inner: IO[bytes] | gzip.GzipFile, limits: ReadLimits, origin: str) -> io.BufferedReader:
    return io.BufferedReader(_Capped(inner, limits.max_decompressed_bytes, origin))


def _dispatch(
    raw_stream: IO[bytes],
    *,
    origin: str,
    keep_raw: bool,
    stats: ReadStats,
    path: Path | None,
    limits: ReadLimits,
    wanted: EventFilter | None = None,
) -> Iterator[Event]:
    stream: Any = raw_stream if isinstance(raw_stream, io.BufferedReader) else io.BufferedReader(raw_stream)  # type: ignore[type-var]
    head = _peek(stream, 8)
    if head.startswith(EVTX_MAGIC):
        if path is not None:
            from harness.telemetry.readers.evtxfile import read_evtx

            yield from read_evtx(path, origin=origin, keep_raw=keep_raw, stats=stats)
        else:
            yield from _evtx_member(stream, origin=origin, keep_raw=keep_raw, stats=stats)
        return
    if head.startswith(_GZIP_MAGIC):
        inner = _capped(gzip.GzipFile(fileobj=stream, mode="rb"), limits, origin)
        try:
            yield from _dispatch(
                inner, origin=origin, keep_raw=keep_raw, stats=stats, path=None, limits=limits, wanted=wanted
            )
        except (OSError, EOFError, zlib.error) as exc:
            raise TelemetryError(f"damaged gzip data: {exc}", source=origin) from exc
        return
    if head.startswith(_ZIP_MAGIC):
        yield from _zip_members(stream, origin=origin, keep_raw=keep_raw, stats=stats, limits=limits)
        return
    yield from _text(stream, origin=origin, keep_raw=keep_raw, stats=stats, limits=limits, wanted=wanted)


def _zip_members(
    stream: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats, limits: ReadLimits
) -> Iterator[Event]:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise TelemetryError(f"damaged zip archive: {exc}", source=origin) from exc
    with archive:
        for info in archive.infolist():
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            member_origin = f"{origin}!{for_terminal(info.filename)}"
            if info.file_size > limits.max_decompressed_bytes:
                raise TelemetryError(f"member larger than {limits.max_decompressed_bytes} bytes", source=member_origin)
            try:
                with archive.open(info) as member:
                    yield from _dispatch(_capped(member, limits, member_origin), origin=member_origin,
                                         keep_raw=keep_raw, stats=stats, path=None, limits=limits)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError, lzma.LZMAError) as exc:
                raise TelemetryError(f"damaged zip member: {exc}", source=member_origin) from exc
            except (NotImplementedError, RuntimeError) as exc:  # a compression method or encryption zipfile lacks
                raise TelemetryError(f"unreadable zip member: {exc}", source=member_origin,
                                     hint="store it deflated and without a password") from exc


def _evtx_member(stream: IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats) -> Iterator[Event]:
    """EVTX inside a container: the parser needs a seekable file, so spool it to a temp file."""
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(stream, spool, 1 << 20)
        size = spool.tell()
        spool.seek(0)
        from harness.telemetry.readers.evtxfile import read_evtx

        yield from read_evtx(spool, origin=origin, keep_raw=keep_raw, stats=stats, size_hint=size)


def _text(
    stream: Any, *, origin: str, keep_raw: bool, stats: ReadStats, limits: ReadLimits, wanted: EventFilter | None = None
) -> Iterator[Event]:
    head = _peek(stream, 4096)
    utf16 = head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) > 1 and head[1:2] == b"\x00")
    if not utf16:
        # Leading blank space longer than the peek window is consumed here: the format is decided by
        # the first significant character however far it is (a file is never read as empty for it).
        while head and not head.strip(b"\xef\xbb\xbf \t\r\n"):
            stream.read(len(head))
            head = _peek(stream, 4096)
    if utf16:
        first = head.decode("utf-16", errors="ignore").lstrip("\ufeff \t\r\n")[:1]
    else:
        first = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")[:1]
    if first == "<":
        from harness.telemetry.readers.winxml import read_xml_stream

        yield from read_xml_stream(stream, origin=origin, keep_raw=keep_raw, stats=stats)
    elif first in ("{", "["):
        yield from _json(stream, origin=origin, keep_raw=keep_raw, stats=stats, limits=limits, wanted=wanted)
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


def _scrub(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate (``"\\ud800"`` in JSON, legal there, unencodable
    as UTF-8 anywhere after) replaced by U+FFFD, keys included."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _json(
    stream: IO[bytes],
    *,
    origin: str,
    keep_raw: bool,
    stats: ReadStats,
    limits: ReadLimits,
    wanted: EventFilter | None = None,
) -> Iterator[Event]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    recognized = seen = 0
    first_keys: list[str] = []
    # The first line/record that gave no event, as (location, reason): named when nothing was read.
    first: list[tuple[str, str]] = []
    shape_only = True  # every record that gave no event was merely of an unknown shape
    try:
        for record, raw, where in _json_records(text, origin, stats, first, limits.max_record_chars, wanted):
            seen += 1
            if record is SKIPPED:
                recognized += 1
                stats.events += 1
                yield SKIPPED
                continue
            if "\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None:
                record = _scrub(record)
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
        if not recognized or isinstance(exc, _LimitExceeded):
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
            f"JSON records of no known event shape (first record keys: {for_terminal(', '.join(first_keys)) or '-'})",
            source=origin,
            hint="expected evtx JSON, Winlogbeat, NXLog/OTRF flat, eqllib or atomiclab JSONL",
        )


def _loads(text: str) -> Any:
    """``json.loads(text)``; an atomiclab JSONL event is decoded by orjson (several times faster).

    orjson refuses some texts ``json`` accepts (NaN/Infinity, lone surrogate escapes, nesting past
    its limit) and reads integers beyond 64 bits as floats, where ``json`` keeps them exact. So
    orjson's value is kept only for an atomiclab event (``format`` atomiclab.event/1, whose numbers
    are all integers) holding no float at its top level or in its fields; everything else, and every
    error, is ``json.loads``'s own (a property test pins ``_loads`` to ``json.loads``)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    if value.__class__ is dict and value.get("format") == JSONL_FORMAT:
        fields = value.get("fields")
        if not any(v.__class__ is float for v in value.values()) and (
            fields.__class__ is not dict or not any(v.__class__ is float for v in fields.values())
        ):
            return value
    return json.loads(text)


def _refused(line: str, wanted: EventFilter) -> Event | None:
    """``SKIPPED`` when ``line`` is an atomiclab event whose channel and event id ``wanted``
    refuses and which the full reader would read without a problem (every value of the type the
    format writes, a valid time), else None: the line is then read as usual, so counts, problems
    and positions are the same with or without ``wanted``."""
    if "\\u" in line:  # escapes (surrogates among them) are decoded and scrubbed by the full reader
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if value.__class__ is not dict or value.get("format") != JSONL_FORMAT:
        return None
    get = value.get
    channel, event_id, t = get("channel"), get("event_id"), get("time")
    if channel.__class__ is not str or event_id.__class__ is not int or t.__class__ is not str:
        return None
    # The format writes strings, integers, null and the fields object: anything else (a float, a
    # bool, a list) may convert differently or fail in the full reader, which then reads the line.
    if not _CLEAN_TYPES.issuperset(map(type, value.values())) or wanted(channel, event_id):
        return None
    for key in ("version", "record_id", "pid", "tid"):
        if get(key).__class__ not in _INT_OR_NONE:  # int("x"), int({...}) fail: the full reader decides
            return None
    fields = get("fields")
    if fields and fields.__class__ is not dict:  # not an object: the full reader reports it
        return None
    try:
        datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return None
    return SKIPPED


_CLEAN_TYPES = frozenset({str, int, dict, type(None)})
_INT_OR_NONE = (int, type(None))


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _skip_rest_of_line(text: io.TextIOWrapper, cap: int) -> None:
    while True:
        part = text.readline(cap)
        if not part or part.endswith("\n"):
            return


def _json_records(
    text: io.TextIOWrapper,
    origin: str,
    stats: ReadStats,
    bad: list[tuple[str, str]],
    cap: int,
    wanted: EventFilter | None = None,
) -> Iterator[tuple[Any, str, str]]:
    """(record, raw text, location) for JSON lines, a JSON array, or concatenated JSON objects.

    JSON lines: a line that is not JSON is skipped, counted in ``stats`` (``FILE:LINE: reason``) and
    the first such (location, reason) kept in ``bad`` (if empty); the lines around it are read as usual. A file is JSON
    lines when its first line is a JSON object, or starts with ``{`` but does not decode while the
    next line is a JSON object on its own (pretty-printed JSON never has one on its second line).
    A line longer than ``cap`` characters is never held whole: a first line that long is read as a
    stream of JSON values (a one-line array, say), a later one is skipped and counted.
    """
    first_line = text.readline(cap)
    line_no = 1
    while first_line and not first_line.strip(_BLANK) and first_line.endswith("\n"):
        first_line = text.readline(cap)
        line_no += 1
    if not first_line:
        return
    if not first_line.endswith("\n") and len(first_line) >= cap:
        yield from _json_stream(first_line, text, origin, line_no, cap)
        return
    stripped = first_line.strip(_BLANK)
    if stripped.startswith("{"):
        record = _json_object(stripped)
        pending: list[tuple[str, int]] = []
        first_error: Exception = ValueError("not a JSON object")
        if record is None:
            try:
                json.loads(stripped)
            except (json.JSONDecodeError, RecursionError) as exc:
                first_error = exc
            second = text.readline(cap)
            second_no = line_no + 1
            while second and not second.strip(_BLANK) and second.endswith("\n"):
                second = text.readline(cap)
                second_no += 1
            if second and second.endswith("\n") and _json_object(second.strip(_BLANK)) is not None:
                pending.append((second, second_no))
            else:
                yield from _json_stream(first_line + second, text, origin, line_no, cap)
                return
        # JSON lines: one object per line.
        loads = _loads

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
            yield loads(line.strip(_BLANK)), line.strip(_BLANK), f"line {no}"
            line_no = no
        readline = text.readline
        limit = cap + 1
        while True:
            line = readline(limit)
            if not line:
                return
            line_no += 1
            if len(line) == limit and line[-1] != "\n":
                _skip_rest_of_line(text, cap)
                reason = f"line longer than {cap} characters"
                if not bad:
                    bad.append((f"{origin}:{line_no}", reason))
                stats.skipped_records += 1
                stats.problem(f"{origin}:{line_no}", reason)
                continue
            s = line.strip(_BLANK)
            if not s:
                continue
            if wanted is not None and (refused := _refused(s, wanted)) is not None:
                yield refused, s, ""
                continue
            try:
                value = loads(s)
            except (json.JSONDecodeError, RecursionError) as exc:
                skip(line_no, exc)
                continue
            yield value, s, f"line {line_no}"
    yield from _json_stream(first_line, text, origin, line_no, cap)


def _too_large(index: int, cap: int, origin: str, line: int) -> TelemetryError:
    return _LimitExceeded(
        f"record #{index + 1}: larger than {cap} characters", source=f"{origin}:{line}",
        hint="not an event; split the capture or drop that record",
    )


def _json_stream(
    start: str, text: io.TextIOWrapper, origin: str, start_line: int = 1, cap: int = DEFAULT_LIMITS.max_record_chars
) -> Iterator[tuple[Any, str, str]]:
    """A JSON array, or objects one after another, decoded incrementally (flat memory: one record
    larger than ``cap`` characters is a TelemetryError)."""
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
            while pos < len(buf) and buf[pos] in _BLANK:
                pos += 1
            if pos < len(buf) or eof or not fill():
                return

    def trailing() -> None:
        """Nothing but blank space may follow the array: more records there would be lost unread."""
        skip_ws()
        if pos < len(buf):
            line = line_base + buf.count("\n", 0, pos)
            raise TelemetryError(f"after record #{index}: data after the end of the JSON array",
                                 source=f"{origin}:{line}", hint="one array per file, or JSON lines")

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
            pos += 1
            trailing()
            return
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                if end - pos > cap:
                    raise _too_large(index, cap, origin, line_base + buf.count("\n", 0, pos))
                break
            except json.JSONDecodeError as exc:
                if len(buf) - pos > cap:
                    raise _too_large(index, cap, origin, line_base + buf.count("\n", 0, pos)) from None
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
                pos += 1
                trailing()
                return
            else:
                raise TelemetryError(f"after record #{index}: expected ',' or ']'", source=origin)


__all__ = ["read_events"]
