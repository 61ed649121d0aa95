"""EVTX files -> Event, streaming, through the ``evtx`` package (pyevtx-rs).

Route: ``records_json()`` in the parser's default layout (the XML route would cost a second,
slower parse per record). Decoding a record's whole JSON costs more than the parser itself, so the
common evtx-rs shape is read in two steps: the System values are taken straight from the text by
one anchored pattern (strings without escapes, plain integers: exactly the values a JSON decoder
would give), and EventData becomes a ``LazyFields`` mapping that decodes it with orjson on first
use. Any record the pattern does not match (escaped System strings, UserData, string-typed numbers,
other attribute layouts) is decoded whole and mapped as before. Damaged input never crashes the
read: the record iterator raises ``RuntimeError`` per unreadable chunk or record and then continues
with the next one, so each failure is counted in ReadStats (``damaged_chunks`` for a chunk,
``skipped_records`` for a record) and reading goes on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, ItemsView, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import evtx
import orjson

from harness.errors import TelemetryError
from harness.telemetry.event import Event
from harness.telemetry.readers.common import (
    EVENT_TWIN,
    ReadStats,
    canonical_channel,
    make_event,
    parse_time,
    scalar_text,
)
from harness.telemetry.readers.jsonshapes import _event_data, from_evtx_json

#: The JSON decoder for evtx-rs records (orjson: ~2.5x the stdlib's speed, same values).
json_loads: Callable[[str | bytes], Any] = orjson.loads

EVTX_MAGIC = b"ElfFile\x00"
_CHUNK_SIZE = 65536


_NO_ATTRIBUTES: dict[str, Any] = {}
_fromisoformat = datetime.fromisoformat


def _fast_from_rs_json(record: Mapping[str, Any], origin: str, raw: str | None) -> Event:
    """The evtx-rs default JSON shape (``#attributes`` children), read with direct key access;
    anything less common (UserData, unnamed Data, EventID with Qualifiers, EventData attributes)
    goes through the general mapper."""
    event = record["Event"]
    system = event["System"]
    data = event.get("EventData")
    event_id = system["EventID"]
    if (
        data.__class__ is not dict
        or event_id.__class__ is not int
        or "Data" in data
        or "#attributes" in data
        or "UserData" in event
    ):
        return from_evtx_json(record, origin=origin, raw=raw)
    fields = {k: v if v.__class__ is str else scalar_text(v) for k, v in data.items()}
    if "Binary" in fields and not fields["Binary"]:
        del fields["Binary"]
    execution = system.get("Execution")
    execution = execution["#attributes"] if execution else _NO_ATTRIBUTES
    security = system.get("Security")
    record_id = system.get("EventRecordID")
    return make_event(
        canonical_channel(system.get("Channel") or ""),
        system["Provider"]["#attributes"].get("Name") or "",
        event_id,
        parse_time(system["TimeCreated"]["#attributes"]["SystemTime"]),
        system.get("Computer") or "",
        fields,
        system.get("Version") or 0,
        None if record_id is None else int(record_id),
        security["#attributes"].get("UserID") if security else None,
        execution.get("ProcessID"),
        execution.get("ThreadID"),
        raw,
        origin,
    )


# -- the common evtx-rs shape, read without decoding the record -----------------------------------

_S = r'"([^"\\\x00-\x1f]+)"'  # a JSON string with no escapes: its text is its value
_N = r"(0|[1-9][0-9]*)"  # a JSON non-negative integer
#: Every evtx-rs record starts so; the rest of System is matched from its end.
_RS_PREFIX = (
    '{"Event":{"#attributes":{"xmlns":"http://schemas.microsoft.com/win/2004/08/events/event"},'
    '"System":{"Provider":{"#attributes":{"Name":'
)
_RS_START = len(_RS_PREFIX)
_RS_EVENTDATA = '},"EventData":'  # System's end

# System after the prefix is read in three segments, cut at fixed literals. Each literal is found
# with str.find and is unambiguous: a string value matched here holds no '"' (the patterns exclude
# it), and every cut literal starts or ends with a '"' that belongs to the structure.
#   head: provider .. Keywords          -> (provider, event id, version)       [_RS_HEAD]
#   time: the SystemTime string, then EventRecordID                          [_RS_RECORD]
#   tail: Correlation .. '},"EventData":' -> (channel, computer, sid, pid, tid) [_RS_TAIL]
# Head and tail repeat across a log's records (one provider, host and writer process), so the
# reader memoizes their values per file keyed by their exact text; only the time and record id,
# which differ in every record, are read per record. Joined, the three patterns accept exactly the
# text the single System pattern used before accepted.
_RS_HEAD = re.compile(
    _S + r'(?:,"Guid":"[^"\\]*")?(?:,"EventSourceName":"[^"\\]*")?\}\},'
    r'"EventID":(?:' + _N + r'|\{"#attributes":\{"Qualifiers":[0-9]+\},"#text":' + _N + r"\}),"
    r'"Version":' + _N + r',"Level":[0-9]+,"Task":[0-9]+,"Opcode":[0-9]+,"Keywords":"[^"\\]*"'
)
_RS_TIME = ',"TimeCreated":{"#attributes":{"SystemTime":"'
_RS_TIME_LEN = len(_RS_TIME)
_RS_RECORD = re.compile(r'"\}\},"EventRecordID":' + _N + ",")
_RS_TAIL = re.compile(
    r'"Correlation":(?:null|\{"#attributes":\{"ActivityID":"[^"\\]*"(?:,"RelatedActivityID":"[^"\\]*")?\}\}),'
    r'"Execution":\{"#attributes":\{"ProcessID":' + _N + r',"ThreadID":' + _N + r"\}\},"
    r'"Channel":' + _S + r',"Computer":' + _S + r","
    r'"Security":(?:null|\{"#attributes":\{"UserID":' + _S + r'\}\})\},"EventData":'
)
#: Most distinct head/tail segments memoized per file (a log has a handful; beyond this bound,
#: e.g. in a crafted file, segments are still read, just not remembered).
_RS_MEMO_MAX = 512

_RsHead = tuple[str, int, int]  # provider, event id, version
_RsTail = tuple[str, str, "str | None", int, int]  # canonical channel, computer, user SID, pid, tid


def _rs_head(text: str, start: int, end: int) -> _RsHead | None:
    m = _RS_HEAD.fullmatch(text, start, end)
    if m is None:
        return None
    provider, eid, eid_q, version = m.groups()
    return provider, int(eid if eid_q is None else eid_q), int(version)


def _rs_tail(text: str, start: int, end: int) -> _RsTail | None:
    m = _RS_TAIL.fullmatch(text, start, end)
    if m is None:
        return None
    pid, tid, channel, computer, user_sid = m.groups()
    return canonical_channel(channel), computer, user_sid, int(pid), int(tid)


_RsSystem = tuple[_RsHead, datetime, int, _RsTail]


def _rs_system(
    text: str, heads: dict[str, _RsHead] | None = None, tails: dict[str, _RsTail] | None = None
) -> _RsSystem | None:
    """The System values of a record in the common evtx-rs shape (head values, time, record id,
    tail values), or None when the record must be decoded whole. ``heads``/``tails`` memoize
    segment values (see above). ``_read_evtx`` inlines this function step for step."""
    if not text.startswith(_RS_PREFIX):
        return None
    i = text.find(_RS_TIME, _RS_START)
    if i < 0:
        return None
    key = text[_RS_START:i]
    head = heads.get(key) if heads is not None else None
    if head is None:
        head = _rs_head(text, _RS_START, i)
        if head is None:
            return None
        if heads is not None and len(heads) < _RS_MEMO_MAX:
            heads[key] = head
    i += _RS_TIME_LEN
    j = text.find('"', i)
    t = _rs_time(text[i:j]) if j > 0 else None
    if t is None:
        return None
    m = _RS_RECORD.match(text, j)
    if m is None:
        return None
    k = m.end()
    end = text.find(_RS_EVENTDATA, k) + len(_RS_EVENTDATA)
    if end < len(_RS_EVENTDATA):
        return None
    key = text[k:end]
    tail = tails.get(key) if tails is not None else None
    if tail is None:
        tail = _rs_tail(text, k, end)
        if tail is None:
            return None
        if tails is not None and len(tails) < _RS_MEMO_MAX:
            tails[key] = tail
    return head, t, int(m.group(1)), tail


def _rs_time(system_time: str) -> datetime | None:
    """SystemTime as evtx-rs writes it (``2024-10-21T09:26:14.809394Z``), else None (the record is
    decoded whole, and parse_time reads the other shapes there). fromisoformat takes only digits and
    separators where it reads them, and the 'T' check pins the one place where 3.11 would take any
    character: so the text holds no '"', '\\' or control character, as a JSON string read literally
    must not."""
    try:
        t = _fromisoformat(system_time)
    except ValueError:
        return None
    return t if t.tzinfo is UTC and system_time[10:11] == "T" else None


def _rs_match(text: str) -> _RsSystem | None:
    """The System values of a record in the common evtx-rs shape (read without decoding it), or None."""
    return _rs_system(text)


_RS_QUALIFIED = '"EventID":{"#attributes":{"Qualifiers":'


def _rs_fields(text: str) -> dict[str, str]:
    """EventData of a record ``_rs_match`` matched, mapped exactly as the whole-record path
    (``_fast_from_rs_json``) maps it.

    System's end is the first ``},"EventData":`` (``,"`` cannot occur inside a JSON string, and the
    matched System holds no such key); EventData is then Event's last member, unless the slice up to
    the closing ``}}`` fails to decode (another member follows), when the record is decoded whole.
    """
    end = text.find(_RS_EVENTDATA, _RS_START)
    data: Any = None
    sliced = False
    if end > 0 and text.endswith("}}"):
        try:
            data = json_loads(text[end + len(_RS_EVENTDATA) : -2])
            sliced = True
        except orjson.JSONDecodeError:
            pass
    if not sliced:
        return dict(_fast_from_rs_json(json_loads(text), "", None).fields)
    fields: dict[str, str]
    qualified = text.find(_RS_QUALIFIED, _RS_START, end) > 0
    if not qualified and data.__class__ is dict and "Data" not in data and "#attributes" not in data:
        fields = {k: v if v.__class__ is str else scalar_text(v) for k, v in data.items()}
        if "Binary" in fields and not fields["Binary"]:
            del fields["Binary"]
    else:  # EventID with Qualifiers went through the general mapper (from_evtx_json)
        fields = {}
        _event_data(data, fields)
    return fields


class _FieldsBase:
    """Shared by LazyFields before and after it has decoded its EventData (see LazyFields)."""

    __slots__ = ("_d", "_src", "get", "items")
    _src: str | None
    _d: dict[str, str]
    get: Callable[..., Any]
    items: Callable[[], ItemsView[str, str]]

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, key: str) -> str:
        return self._d[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def keys(self) -> Any:
        return self._d.keys()

    def values(self) -> Any:
        return self._d.values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _FieldsBase):
            return self._d == other._d
        if isinstance(other, dict):
            return self._d == other
        if isinstance(other, Mapping):
            return self._d == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._d)

    def __reduce__(self) -> tuple[type[dict[str, str]], tuple[dict[str, str]]]:
        return dict, (dict(self._d),)  # pickles and copies as a plain dict


class _LoadedFields(_FieldsBase):
    __slots__ = ()


class LazyFields(_FieldsBase):
    """``Event.fields`` of an EVTX record: a read-only ``Mapping[str, str]`` (equal to the dict the
    whole-record path builds, same order) that decodes the record's EventData on first use.

    Until then it holds the record's JSON text. ``get`` and ``items`` are the decoded dict's own
    methods once loaded; it pickles/copies as a plain dict. It is not a ``dict``: code that needs
    one (``orjson.dumps``, ``isinstance(x, dict)``) should use ``dict(event.fields)``.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Only reached while the slots are unset, i.e. before the first use.
        if name in ("_d", "get", "items"):
            self._load()
            return getattr(self, name)
        raise AttributeError(name)

    def _load(self) -> None:
        src = self._src
        assert src is not None
        d = _rs_fields(src)
        self._d = d
        self.get = d.get
        self.items = d.items
        self._src = None
        self.__class__ = _LoadedFields  # type: ignore[assignment]


Mapping.register(_FieldsBase)


def _lazy_event(system: _RsSystem, text: str, origin: str, raw: str | None) -> Event:
    """The Event of a record ``_rs_system`` read, equal to the whole-record path's."""
    (provider, event_id, version), t, record_id, (channel, computer, user_sid, pid, tid) = system
    fields = object.__new__(LazyFields)
    fields._src = text
    return make_event(
        channel,
        provider,
        event_id,
        t,
        computer,
        cast(Mapping[str, str], fields),
        version,
        record_id,
        user_sid,
        pid,
        tid,
        raw,
        origin,
    )


def read_evtx(
    source: Path | IO[bytes],
    *,
    origin: str,
    keep_raw: bool = True,
    stats: ReadStats | None = None,
    size_hint: int | None = None,
) -> Iterator[Event]:
    """Events of one EVTX file (a path, or a seekable binary file object).

    Raises TelemetryError when the file header is unusable; damaged chunks and records are
    skipped and counted in ``stats``.
    """
    stats = stats if stats is not None else ReadStats()
    if size_hint is None and isinstance(source, Path):
        try:
            size_hint = source.stat().st_size
        except OSError:
            size_hint = None  # the parser's open names the reason
    tail = _partial_chunk_bytes(size_hint)
    if not tail and size_hint != _HEADER_SIZE:
        # The common case: the parser's generator itself, no extra generator hop per event.
        return _read_evtx(source, origin=origin, keep_raw=keep_raw, stats=stats, size_hint=size_hint)
    assert size_hint is not None
    return _read_truncated(source, origin=origin, keep_raw=keep_raw, stats=stats, size=size_hint, tail=tail)


def _read_truncated(
    source: Path | IO[bytes], *, origin: str, keep_raw: bool, stats: ReadStats, size: int, tail: int
) -> Iterator[Event]:
    """A file that ends inside a chunk (a truncated copy), which the parser would silently drop whole.

    Presenting the file zero-padded to the chunk boundary lets the parser read every complete
    record; the first cut record fails (counted) and the zeros after it end the chunk.
    """
    stats.damaged_chunks += 1
    if not tail:
        stats.problem(origin, f"truncated: the file holds only its {_HEADER_SIZE}-byte header, no chunk of events")
        return
    missing = _CHUNK_SIZE - tail
    chunk_no = (size - _HEADER_SIZE) // _CHUNK_SIZE + 1
    stats.problem(
        origin, f"truncated: the file ends inside chunk {chunk_no} ({missing} bytes missing); later records are lost"
    )
    try:
        handle: IO[bytes] = source.open("rb") if isinstance(source, Path) else source
    except OSError as exc:
        raise TelemetryError(f"cannot open: {exc.strerror or exc}", source=origin) from exc
    try:
        padded = io.BufferedReader(_ZeroPadded(handle, size, size + missing), _CHUNK_SIZE)
        yield from _read_evtx(padded, origin=origin, keep_raw=keep_raw, stats=stats, size_hint=size + missing)
    finally:
        if isinstance(source, Path):
            handle.close()


#: The EVTX file header block: chunks of _CHUNK_SIZE bytes follow it.
_HEADER_SIZE = 4096


def _partial_chunk_bytes(size: int | None) -> int:
    """How many bytes of a last, incomplete chunk a file of ``size`` bytes holds (0: none)."""
    if size is None or size <= _HEADER_SIZE:
        return 0
    return (size - _HEADER_SIZE) % _CHUNK_SIZE


class _ZeroPadded(io.RawIOBase):
    """A read-only, seekable view of the first ``size`` bytes of ``inner`` followed by zeros up to ``total``."""

    def __init__(self, inner: IO[bytes], size: int, total: int) -> None:
        super().__init__()
        self._inner = inner
        self._size = size
        self._total = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self._total - self._pos))
        if want == 0:
            return 0
        got = 0
        if self._pos < self._size:
            self._inner.seek(self._pos)
            data = self._inner.read(min(want, self._size - self._pos))
            got = len(data)
            view[:got] = data
            if got < min(want, self._size - self._pos):  # the file shrank under us: pad the rest
                self._size = self._pos + got
        view[got:want] = bytes(want - got)
        self._pos += want
        return want


def _read_evtx(
    source: Path | IO[bytes],
    *,
    origin: str,
    keep_raw: bool,
    stats: ReadStats,
    size_hint: int | None,
) -> Iterator[Event]:
    try:
        # Default JSON layout: rendering attributes as "#attributes" children costs the parser half
        # the time of separate_json_attributes=True.
        parser = evtx.PyEvtxParser(str(source) if isinstance(source, Path) else source, indent=False)
        records = parser.records_json()
    except (RuntimeError, OSError, ValueError) as exc:
        raise TelemetryError(f"not a readable EVTX file: {' '.join(str(exc).split())}", source=origin) from exc
    # The iterator resumes after an error; bound the number of errors so a pathological file can
    # never loop forever (at most one error per chunk plus one per record slot is plausible).
    max_errors = (size_hint or 0) // _CHUNK_SIZE * 2 + 64
    errors = 0
    loads = json_loads
    prefix, start = _RS_PREFIX, _RS_START
    time_at, time_len = _RS_TIME, _RS_TIME_LEN
    record_match = _RS_RECORD.match
    system_end, system_end_len = _RS_EVENTDATA, len(_RS_EVENTDATA)
    heads: dict[str, _RsHead] = {}  # per file, bounded by _RS_MEMO_MAX (see _rs_system)
    tails: dict[str, _RsTail] = {}
    twin = EVENT_TWIN
    new = object.__new__
    fromisoformat = _fromisoformat
    in_parser = True
    while True:
        try:
            # A for loop is cheaper per record than next(); after an error the same iterator
            # resumes with the next chunk or record. ``in_parser`` tells the parser's errors from
            # anything raised into this generator while it is suspended at ``yield``.
            for record in records:
                in_parser = False
                if record is not None:
                    text = record["data"]
                    try:
                        # _rs_system and _lazy_event, inlined step for step: this loop is the EVTX
                        # hot path. Any step that fails leaves ``event`` None: the record is decoded whole.
                        event = None
                        if twin is not None and text.startswith(prefix) and (i := text.find(time_at, start)) > 0:
                            key = text[start:i]
                            head = heads.get(key)
                            if head is None and (head := _rs_head(text, start, i)) and len(heads) < _RS_MEMO_MAX:
                                heads[key] = head
                            i += time_len
                            j = text.find('"', i)
                            t = None
                            if head is not None and j > i + 10 and text[i + 10] == "T":  # see _rs_time
                                try:
                                    t = fromisoformat(text[i:j])
                                except ValueError:
                                    t = None  # another shape: parse_time reads it on the whole-record path
                            m = record_match(text, j) if t is not None and t.tzinfo is UTC else None
                            if m is not None:
                                k = m.end()
                                end = text.find(system_end, k) + system_end_len
                                tail = None
                                if end > system_end_len:
                                    key = text[k:end]
                                    tail = tails.get(key)
                                    if tail is None and (tail := _rs_tail(text, k, end)) and len(tails) < _RS_MEMO_MAX:
                                        tails[key] = tail
                                if tail is not None and head is not None:
                                    fields = new(LazyFields)
                                    fields._src = text
                                    event = new(twin)
                                    event.provider, event.event_id, event.version = head
                                    event.channel, event.computer, event.user_sid, event.pid, event.tid = tail
                                    event.time = t
                                    event.record_id = int(m.group(1))
                                    event.fields = fields
                                    event.raw = text if keep_raw else None
                                    event.origin = origin
                                    event.__class__ = Event
                        if event is None:
                            system = _rs_system(text) if twin is None else None
                            if system is not None:  # pragma: no cover - Event changed shape
                                event = _lazy_event(system, text, origin, text if keep_raw else None)
                            else:
                                event = _fast_from_rs_json(loads(text), origin, text if keep_raw else None)
                    except (KeyError, ValueError, TypeError) as exc:
                        stats.skipped_records += 1
                        stats.problem(origin, f"record {record.get('event_record_id')}: {exc!r}")
                    else:
                        stats.events += 1
                        yield event
                in_parser = True
            return
        except RuntimeError as exc:
            if not in_parser:
                raise
            errors += 1
            message = str(exc)
            if "chunk" in message.lower() and "record" not in message.lower():
                stats.damaged_chunks += 1
            else:
                stats.skipped_records += 1
            stats.problem(origin, message.splitlines()[0][:200])
            if errors > max_errors:
                stats.problem(origin, "too many errors; rest of file skipped")
                return
