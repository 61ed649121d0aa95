"""Windows event XML -> Event, safely and in streaming fashion.

Accepts what ``wevtutil qe /f:xml`` prints (several ``<Event>`` roots with no wrapper), the same with
``/e:Events`` (one wrapper element), ``/f:RenderedXml`` (``<RenderingInfo>`` is ignored, the raw text
keeps it), Get-WinEvent ``.ToXml()`` output, and EVTX records rendered as XML (with ``<?xml?>``
declarations in front of each record).

Safety contract (remote event logs are hostile input):
 * any ``<!DOCTYPE`` / ``<!ENTITY`` is rejected before parsing, so no entity can be declared: no
   billion-laughs expansion, no external entity, no DTD fetch (the parser is also built with
   ``resolve_entities=False, no_network=True, load_dtd=False``);
 * ``huge_tree=False`` keeps libxml2's own bounds (text node size, depth);
 * each event is capped at MAX_EVENT_CHARS characters of field data;
 * the tree is pruned after every event, so memory stays flat however long the stream is.
Malformed XML raises TelemetryError naming the origin and line; a well-formed ``<Event>`` that lacks
what every Windows event has (EventID, TimeCreated) is skipped and counted in ReadStats.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO

from lxml import etree

from harness.errors import TelemetryError
from harness.telemetry.event import Event
from harness.telemetry.readers.common import (
    MAX_EVENT_CHARS,
    ReadStats,
    canonical_channel,
    make_event,
    optional_int,
    parse_time,
)

EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
_NS = "{" + EVENT_NS + "}"

_WRAP_OPEN = b"<atomiclab-events>"
_WRAP_CLOSE = b"</atomiclab-events>"
_FEED_SIZE = 1 << 18

# System children, by qualified and unqualified tag, mapped to a small code for a fast dispatch.
_PROVIDER, _EVENTID, _VERSION, _TIME, _RECORD, _EXEC, _CHANNEL, _COMPUTER, _SECURITY = range(9)
_SYSTEM_CODES: Mapping[str, int] = {
    tag: code
    for name, code in (
        ("Provider", _PROVIDER),
        ("EventID", _EVENTID),
        ("Version", _VERSION),
        ("TimeCreated", _TIME),
        ("EventRecordID", _RECORD),
        ("Execution", _EXEC),
        ("Channel", _CHANNEL),
        ("Computer", _COMPUTER),
        ("Security", _SECURITY),
    )
    for tag in (_NS + name, name)
}

_SYSTEM_TAGS = frozenset((_NS + "System", "System"))
_EVENTDATA_TAGS = frozenset((_NS + "EventData", "EventData"))
_USERDATA_TAGS = frozenset((_NS + "UserData", "UserData"))
_ERRORDATA_TAGS = frozenset((_NS + "ProcessingErrorData", "ProcessingErrorData"))
_DATA_TAGS = frozenset((_NS + "Data", "Data"))
_BINARY_TAGS = frozenset((_NS + "Binary", "Binary"))
_EVENT_TAGS = (_NS + "Event", "Event")


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _flatten(elem: etree._Element, fields: dict[str, str]) -> int:
    """UserData / ProcessingErrorData children as ``name -> text`` (leaves of nested elements)."""
    size = 0
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if len(child):
            size += _flatten(child, fields)
        else:
            value = child.text or ""
            fields[_local(tag)] = value
            size += len(value)
    return size


def event_from_element(ev: etree._Element, *, origin: str | None, keep_raw: bool) -> Event:
    """One ``<Event>`` element as an Event. Raises ValueError when it is not a usable event."""
    channel = provider = computer = ""
    event_id_text: str | None = None
    time_text: str | None = None
    version = 0
    record_id = pid = tid = None
    user_sid: str | None = None
    fields: dict[str, str] = {}
    size = 0
    for part in ev:
        ptag = part.tag
        if ptag in _SYSTEM_TAGS:
            for el in part:
                code = _SYSTEM_CODES.get(el.tag)  # type: ignore[call-overload]
                if code is None:
                    continue
                if code == _PROVIDER:
                    provider = el.get("Name") or el.get("EventSourceName") or ""
                elif code == _EVENTID:
                    event_id_text = el.text
                elif code == _TIME:
                    time_text = el.get("SystemTime")
                elif code == _RECORD:
                    record_id = optional_int(el.text)
                elif code == _EXEC:
                    pid = optional_int(el.get("ProcessID"))
                    tid = optional_int(el.get("ThreadID"))
                elif code == _CHANNEL:
                    channel = el.text or ""
                elif code == _COMPUTER:
                    computer = el.text or ""
                elif code == _SECURITY:
                    user_sid = el.get("UserID")
                elif code == _VERSION:
                    version = optional_int(el.text) or 0
        elif ptag in _EVENTDATA_TAGS:
            position = 0
            for d in part:
                dtag = d.tag
                if dtag in _DATA_TAGS:
                    position += 1
                    value = d.text or ""
                    # Unnamed <Data> (classic logs such as "Windows PowerShell") get positional names,
                    # the same convention Winlogbeat uses.
                    fields[d.get("Name") or f"param{position}"] = value
                    size += len(value)
                elif dtag in _BINARY_TAGS and d.text:
                    fields["Binary"] = d.text
                    size += len(d.text)
        elif ptag in _USERDATA_TAGS:
            for child in part:
                if isinstance(child.tag, str):
                    size += _flatten(child, fields)
                    break
        elif ptag in _ERRORDATA_TAGS:
            size += _flatten(part, fields)
    if size > MAX_EVENT_CHARS:
        raise ValueError(f"event larger than {MAX_EVENT_CHARS} characters of data")
    if event_id_text is None:
        raise ValueError("event has no System/EventID")
    if time_text is None:
        raise ValueError("event has no System/TimeCreated/@SystemTime")
    return Event(
        channel=canonical_channel(channel),
        provider=provider,
        event_id=int(event_id_text),
        time=parse_time(time_text),
        computer=computer,
        fields=fields,
        version=version,
        record_id=record_id,
        user_sid=user_sid,
        pid=pid,
        tid=tid,
        raw=etree.tostring(ev, encoding="unicode", with_tail=False) if keep_raw else None,
        origin=origin,
    )


# ---------------------------------------------------------------------------------------------------
# Fast path. libxml2 plus one Python proxy per element costs ~50 us per event; event XML written by
# Windows (and by the evtx renderer) follows one fixed schema (System is an xs:sequence), so most
# events are read with a few anchored regular expressions instead. The regexes accept only a strict,
# well-formed subset (double-quoted attributes, no CDATA/comments/PIs, predefined entities and
# character references only); whatever they do not accept goes to lxml, which is authoritative.
# ---------------------------------------------------------------------------------------------------

# Characters XML forbids are excluded from every value class, so text holding them goes to lxml,
# which rejects it exactly as it would have without the fast path. wevtutil and .ToXml() quote
# attributes with ', the evtx renderer and lxml with ": both are accepted.
_BAD = "\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff"
_V = "[^<" + _BAD + "]"
_QV = '(?:"[^"<' + _BAD + "]*\"|'[^'<" + _BAD + "]*')"
_NAME = "[A-Za-z_:][A-Za-z0-9_:.-]*"  # an XML name, ASCII only (others go to lxml)
_A = r"(?:\s+" + _NAME + r"\s*=\s*" + _QV + ")*"  # attributes


def _xml_re(pattern: str) -> re.Pattern[str]:
    r"""Compile a fast-path pattern with ``\s`` meaning XML whitespace only (space, tab, CR, LF).

    Python's ``\s`` also takes U+001C..U+001F, U+0085, U+00A0 and other Unicode spaces: XML forbids
    the first as characters and none of them may stand between a tag's name and its attributes, so
    text holding them must go to lxml (which rejects it or reads it as text).
    """
    return re.compile(pattern.replace(r"\s", "[ \t\r\n]"))


def _qattr(name: str, group: str, value: str = _V) -> str:
    body = value.replace("[^<", '[^<"', 1)
    body1 = value.replace("[^<", "[^<'", 1)
    return rf"\s+{name}=(?:\"(?P<{group}>{body}*)\"|'(?P<{group}_>{body1}*)')"


_SYSTEM_RE = _xml_re(
    r"\s*<Provider(?:" + _qattr("Name", "pn") + r")?(?P<prov>" + _A + r")\s*(?:/>|>\s*</Provider>)"
    r"\s*<EventID(?:\s+Qualifiers=" + _QV + r")?\s*>\s*(?P<eid>\d+)\s*</EventID>"
    r"(?:\s*<Version>\s*(?P<ver>\d*)\s*</Version>|\s*<Version\s*/>)?"
    r"(?:\s*<Level>" + _V + r"*</Level>|\s*<Level\s*/>)?"
    r"(?:\s*<Task>" + _V + r"*</Task>|\s*<Task\s*/>)?"
    r"(?:\s*<Opcode>" + _V + r"*</Opcode>|\s*<Opcode\s*/>)?"
    r"(?:\s*<Keywords>" + _V + r"*</Keywords>|\s*<Keywords\s*/>)?"
    r"\s*<TimeCreated" + _qattr("SystemTime", "time", "[^<&]") + r"\s*(?:/>|>\s*</TimeCreated>)"
    r"(?:\s*<EventRecordID>\s*(?P<rid>\d*)\s*</EventRecordID>|\s*<EventRecordID\s*/>)?"
    r"(?:\s*<Correlation" + _A + r"\s*(?:/>|>\s*</Correlation>))?"
    r"(?:\s*<Execution(?:"
    + _qattr("ProcessID", "pid", "[0-9]")
    + ")?(?:"
    + _qattr("ThreadID", "tid", "[0-9]")
    + r")?(?P<exe>"
    + _A
    + r")\s*(?:/>|>\s*</Execution>))?"
    r"(?:\s*<Channel>(?P<chan>" + _V + r"*)</Channel>|\s*<Channel\s*/>)?"
    r"\s*<Computer>(?P<comp>" + _V + r"*)</Computer>"
    r"(?:\s*<Container>" + _V + r"*</Container>)?"
    r"(?:\s*<Security(?:" + _qattr("UserID", "sid") + r")?(?P<sec>" + _A + r")\s*(?:/>|>\s*</Security>))?\s*"
)
# One named <Data> item (whitespace before it included), per quote style. A Name holding a tab or
# line end is left to the general path: XML turns those into spaces in attribute values.
_NAMED_ITEM = {
    q: _xml_re(r"\s*<Data Name=" + q + "([^" + q + "<\t\n\r" + _BAD + "]*)" + q + ">(" + _V + r"*)</Data>")
    for q in "'\""
}
_EVENT_OPENS = (
    '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event">',
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'>",
)
_QN = '(?:"[^"<\t\n\r' + _BAD + "]*\"|'[^'<\t\n\r" + _BAD + "]*')"  # a quoted Data Name, see _NAMED_ITEM
_DATA_FULL_RE = _xml_re(
    r"(?:\s*<Data(?:\s+Name=" + _QN + r")?\s*(?:/>|>" + _V + r"*</Data>)"
    r"|\s*<Binary\s*(?:/>|>" + _V + r"*</Binary>))*\s*"
)
_DATA_ITEM_RE = re.compile(r"<(Data|Binary)(\s+Name=(?:\"([^\"<]*)\"|'([^'<]*)'))?\s*(?:/>|>([^<]*)</(?:Data|Binary)>)")
_ATTR_RE = _xml_re(r"(" + _NAME + r")\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
_GAP_RE = _xml_re(r"\s*(?:<(/?)Events(?:\s+" + _NAME + r"\s*=\s*\"[^\"<]*\")*\s*(/?)>\s*)?")
_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));|&")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


class _NotFast(Exception):
    """The fast path cannot read this text exactly; lxml will."""


def _entity(m: re.Match[str]) -> str:
    name, dec, hexa = m.groups()
    if name:
        return _PREDEFINED[name]
    if dec is None and hexa is None:
        raise _NotFast("bare '&'")
    code = int(dec) if dec is not None else int(hexa, 16)
    if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF:
        return chr(code)
    raise _NotFast("invalid character reference")


def _text(value: str) -> str:
    """Element text as an XML parser reports it (line ends normalized, references replaced)."""
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in value:
        value = _ENTITY_RE.sub(_entity, value)
    return value


def _attrs(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out = {}
    for name, dq, sq in _ATTR_RE.findall(text):
        value = dq or sq
        if "&" in value or "\t" in value or "\n" in value or "\r" in value:
            value = _text(value.replace("\r\n", " ").replace("\t", " ").replace("\n", " ").replace("\r", " "))
        out[name] = value
    return out


def _fast_event(text: str, *, origin: str | None, keep_raw: bool) -> Event:
    """One event's XML text through the fast path; raises _NotFast when lxml must decide."""
    if not text.startswith(_EVENT_OPENS) or "]]>" in text:
        raise _NotFast("not the common event shape")
    i = text.find("<System>")
    j = text.find("</System>", i)
    if i < 0 or j < 0 or text[69:i].strip() or not text.endswith("</Event>"):
        raise _NotFast("not the common event shape")
    s = _SYSTEM_RE.fullmatch(text, i + 8, j)
    if s is None:
        raise _NotFast("not the common System shape")
    rest = text[j + 9 : -8].strip()  # after </System>, before </Event>
    data = ""
    if rest:
        if rest.startswith("<EventData>") and rest.endswith("</EventData>"):
            data = rest[11:-12]
        elif not (rest.startswith("<EventData") and rest.endswith("/>") and "<" not in rest[1:]):
            raise _NotFast("not the common EventData shape")
    fields: dict[str, str]
    escaped = False
    if not data:
        fields = {}
    else:
        if len(data) > MAX_EVENT_CHARS:
            raise ValueError(f"event larger than {MAX_EVENT_CHARS} characters of data")
        quote = "'" if "<Data Name='" in data else '"'
        escaped = "&" in data or "\r" in data
        # The common case: only named <Data>, one quote style. split() gives [gap, name, value,
        # gap, name, value, ..., rest]; every item's leading whitespace is in the pattern, so the
        # data is exactly those items when every gap is empty and the rest is whitespace. One scan
        # both checks and extracts, and dict() builds the fields in C (a repeated Name keeps its
        # last value at its first position, as assigning in document order does).
        parts = _NAMED_ITEM[quote].split(data)
        if len(parts) > 1 and not any(parts[0:-1:3]) and not parts[-1].strip(" \t\r\n"):
            fields = dict(zip(parts[1::3], parts[2::3], strict=True))
            if escaped:
                fields = {_text(k): _text(v) for k, v in fields.items()}
        elif "<" in data:
            if _DATA_FULL_RE.fullmatch(data) is None:
                raise _NotFast("not the common EventData shape")
            fields = {}
            position = 0
            for tag, has_name, dq, sq, value in _DATA_ITEM_RE.findall(data):
                value = _text(value)
                if tag == "Data":
                    position += 1
                    name = dq or sq
                    fields[_text(name) if has_name and name else f"param{position}"] = value
                elif value:
                    fields["Binary"] = value
        elif data.strip():
            raise _NotFast("text directly in EventData")
        else:
            fields = {}
    pn, pn_, _prov_attrs, eid, ver, time_dq, time_sq, rid, pid_dq, pid_sq, tid_dq, tid_sq, _exe, chan, comp = s.group(
        "pn", "pn_", "prov", "eid", "ver", "time", "time_", "rid", "pid", "pid_", "tid", "tid_", "exe", "chan", "comp"
    )
    provider = pn or pn_
    if provider is None:
        provider = _attrs(_prov_attrs).get("Name", "")
    elif "&" in provider:
        provider = _text(provider)
    pid_text = pid_dq or pid_sq
    tid_text = tid_dq or tid_sq
    sid = s.group("sid") or s.group("sid_")
    if escaped or (comp and "&" in comp):
        chan = _text(chan) if chan else chan
        comp = _text(comp) if comp else comp
    return make_event(
        canonical_channel(chan) if chan else "",
        provider,
        int(eid),
        parse_time(time_dq or time_sq),
        comp or "",
        fields,
        int(ver) if ver else 0,
        int(rid) if rid else None,
        sid,
        int(pid_text) if pid_text else None,
        int(tid_text) if tid_text else None,
        text if keep_raw else None,
        origin,
    )


def _has_markup(text: str, mark: str) -> bool:
    """Whether ``"<" + mark`` occurs in ``text`` (mark "!" or "?": declarations, comments, CDATA,
    processing instructions).

    Same answer as ``"<" + mark in text``, faster: that search stops at every '<' (one per tag),
    while event text holds '!' and '?' rarely, and finding a single character runs at memchr speed.
    After a few occurrences without a '<' in front, the plain search reads the rest, so no text
    costs more than that search plus those few steps.
    """
    i = text.find(mark)
    for _ in range(16):
        if i < 0:
            return False
        if i > 0 and text[i - 1] == "<":
            return True
        i = text.find(mark, i + 1)
    return i >= 0 and text.find("<" + mark, max(i - 1, 0)) >= 0


def _check_declarations(chunk: str, origin: str) -> None:
    if _has_markup(chunk, "!") and ("<!DOCTYPE" in chunk or "<!ENTITY" in chunk):
        raise TelemetryError(
            "XML with a DOCTYPE/ENTITY declaration rejected (entity expansion and external entities "
            "are never allowed in event XML)",
            source=origin,
        )


def _new_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("end",),
        tag=_EVENT_TAGS,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _syntax_error(exc: etree.XMLSyntaxError, origin: str, line_offset: int = 0) -> TelemetryError:
    line = (exc.lineno or 0) + line_offset
    # lxml's message may span lines (", line 1, column N" on its own line): an error is one line.
    return TelemetryError(f"malformed event XML at line {line or '?'}: {' '.join(str(exc.msg).split())}",
                          source=origin)


def _lxml_event(text: str, *, origin: str, keep_raw: bool, line: int) -> Event:
    """One event's text through lxml (the authoritative, slower path)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True
    )
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, origin, line - 1) from exc
    if not isinstance(root.tag, str) or root.tag not in _EVENT_TAGS:
        raise TelemetryError(f"line {line}: expected an <Event> element", source=origin)
    return event_from_element(root, origin=origin, keep_raw=keep_raw)


class _XmlStream:
    """Splits decoded XML text chunks into events; fast path per event, lxml when needed."""

    def __init__(self, origin: str, keep_raw: bool, stats: ReadStats) -> None:
        self.origin = origin
        self.keep_raw = keep_raw
        self.stats = stats
        self.pending = ""
        self.depth = 0  # open <Events> wrappers
        self.line = 1  # line number at the start of ``pending``
        self.index = 0
        self.slow: etree.XMLPullParser | None = None

    def _emit(self, text: str, line: int) -> Event | None:
        """One event's text as an Event, or None when it is skipped (counted in stats)."""
        self.index += 1
        try:
            try:
                event = _fast_event(text, origin=self.origin, keep_raw=self.keep_raw)
            except _NotFast:
                event = _lxml_event(text, origin=self.origin, keep_raw=self.keep_raw, line=line)
        except (ValueError, TypeError) as exc:
            self.stats.skipped_records += 1
            self.stats.problem(self.origin, f"event #{self.index} (line {line}): {exc}")
            return None
        self.stats.events += 1
        return event

    def _gap(self, gap: str) -> bool:
        """Account for wrapper tags between events; False if the gap is not just those."""
        pos = 0
        while pos < len(gap):
            m = _GAP_RE.match(gap, pos)
            if m is None or m.end() == pos:
                return False
            closing, empty = m.group(1), m.group(2)
            if m.group(0).strip():
                if closing:
                    self.depth -= 1
                elif not empty:
                    self.depth += 1
                if self.depth < 0:
                    return False
            pos = m.end()
        return True

    def feed(self, chunk: str, final: bool = False) -> Iterator[Event]:
        _check_declarations(chunk, self.origin)
        if self.slow is not None:
            yield from self._feed_slow(chunk, final)
            return
        text = self.pending + chunk
        if _has_markup(text, "!") or _has_markup(text, "?"):  # comments, CDATA, PIs: lxml splits those
            yield from self._switch_to_slow(text, final)
            return
        pos = 0
        line = self.line
        find = text.find
        while True:
            start = find("<Event", pos)
            while start >= 0 and text[start + 6 : start + 7] not in (" ", ">", "/", "\n", "\r", "\t"):
                start = find("<Event", start + 6)
            if start < 0:
                break
            end = find("</Event>", start)
            if end < 0 or (start + 6 == len(text)):
                break
            end += 8
            gap = text[pos:start]
            if not self._gap(gap):
                yield from self._switch_to_slow(text[pos:], final, line)
                return
            line += gap.count("\n")
            event_text = text[start:end]
            event = self._emit(event_text, line)
            if event is not None:
                yield event
            line += event_text.count("\n")
            pos = end
        rest = text[pos:]
        if final:
            if not self._gap(rest) or self.depth != 0:
                yield from self._switch_to_slow(rest, final, line)
            return
        if len(rest) > MAX_EVENT_CHARS * 2:
            raise TelemetryError(f"line {line}: event larger than {MAX_EVENT_CHARS} characters", source=self.origin)
        self.pending = rest
        self.line = line

    # -- lxml for the rest of the stream --------------------------------------------------------
    def _switch_to_slow(self, text: str, final: bool, line: int | None = None) -> Iterator[Event]:
        self.slow = _new_parser()
        self.slow_line_offset = (line or self.line) - 1
        # Re-open the wrappers already consumed by the fast path so lxml sees a consistent tree.
        self.slow.feed(_WRAP_OPEN + b"<Events>" * max(self.depth, 0))
        self.pending = ""
        yield from self._feed_slow(text, final)

    def _feed_slow(self, chunk: str, final: bool) -> Iterator[Event]:
        parser = self.slow
        assert parser is not None
        try:
            data = chunk.encode("utf-8")
            for start in range(0, len(data), _FEED_SIZE):
                parser.feed(data[start : start + _FEED_SIZE])
                yield from self._drain_slow(parser)
            if final:
                parser.feed(b"</Events>" * max(self.depth, 0) + _WRAP_CLOSE)
                parser.close()
                yield from self._drain_slow(parser)
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(exc, self.origin, self.slow_line_offset) from exc

    def _drain_slow(self, parser: etree.XMLPullParser) -> Iterator[Event]:
        for _action, item in parser.read_events():
            if not isinstance(item, etree._Element):
                continue
            ev = item
            self.index += 1
            try:
                event = event_from_element(ev, origin=self.origin, keep_raw=self.keep_raw)
            except (ValueError, TypeError) as exc:
                self.stats.skipped_records += 1
                self.stats.problem(self.origin, f"event #{self.index}: {exc}")
            else:
                self.stats.events += 1
                yield event
            # Prune what has been read so memory stays flat on long streams.
            ev.clear()
            parent = ev.getparent()
            if parent is not None:
                while ev.getprevious() is not None:
                    del parent[0]


def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    if data[:3] == codecs.BOM_UTF8:
        data = data[3:]
    elif len(data) >= 2 and data[0:1] == b"<" and data[1:2] == b"\x00":
        return data.decode("utf-16-le")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8/UTF-16 text (byte {exc.start})") from exc


_DECL_STR_RE = re.compile(r"<\?xml\s[^>]*\?>")


def _events_from_text_chunks(
    chunks: Iterable[str], *, origin: str, keep_raw: bool, stats: ReadStats
) -> Iterator[Event]:
    stream = _XmlStream(origin, keep_raw, stats)
    previous: str | None = None
    for chunk in chunks:
        if previous is not None:
            yield from stream.feed(previous)
        previous = _DECL_STR_RE.sub("", chunk) if _has_markup(chunk, "?") else chunk
    yield from stream.feed(previous or "", final=True)


def parse_event_xml(
    text: str | bytes,
    *,
    origin: str | None = None,
    keep_raw: bool = True,
    stats: ReadStats | None = None,
) -> Iterator[Event]:
    """Events from Windows event XML text (wevtutil with or without ``/e:``, RenderedXml,
    Get-WinEvent ``.ToXml()``; bytes may be UTF-8 or UTF-16 with BOM).

    Lazily yields events in document order. Raises TelemetryError (naming ``origin`` and the line) for
    malformed XML and for any DTD/entity declaration.
    """
    where = origin or "<xml>"
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = _decode(bytes(text))
        except ValueError as exc:
            raise TelemetryError(str(exc), source=where) from exc
    return _events_from_text_chunks([text], origin=where, keep_raw=keep_raw, stats=stats or ReadStats())


def _stream_text(stream: IO[bytes], head: bytes, chunk_size: int, origin: str) -> Iterator[str]:
    """Decoded text chunks of an XML byte stream (UTF-8, or UTF-16 by BOM / NUL pattern), each
    ending just after a ``>`` so that no tag or declaration is split between two chunks."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif len(head) >= 2 and head[0:1] == b"<" and head[1:2] == b"\x00":
        encoding = "utf-16-le"
    else:
        encoding = "utf-8-sig"
    decoder = codecs.getincrementaldecoder(encoding)()
    pending = ""
    while True:
        block = stream.read(chunk_size)
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            raise TelemetryError(f"not {encoding} text: {exc.reason}", source=origin) from exc
        data = pending + text
        if block:
            cut = data.rfind(">") + 1
            data, pending = data[:cut], data[cut:]
        if data:
            yield data
        if not block:
            return


def read_xml_stream(
    stream: IO[bytes],
    *,
    origin: str,
    keep_raw: bool = True,
    stats: ReadStats | None = None,
    chunk_size: int = 1 << 20,
) -> Iterator[Event]:
    """Events from an event-XML byte stream (a file), read in chunks with flat memory."""
    peek = getattr(stream, "peek", None)
    head = peek(4)[:4] if peek is not None else b""
    return _events_from_text_chunks(
        _stream_text(stream, head, chunk_size, origin), origin=origin, keep_raw=keep_raw, stats=stats or ReadStats()
    )
