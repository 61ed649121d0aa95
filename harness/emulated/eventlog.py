"""Event logs of the emulated host: real-schema XML, per-channel record ids, a wevtutil XPath subset.

Contract:
- ``EventLog.append`` stores one ``EventRecord`` in its channel with the next EventRecordID of that
  channel and renders it exactly as ``wevtutil qe /f:xml`` prints a real event (same System block,
  EventData names in the order real events of that EventID and version carry them).
- An event is visible to queries only ``delivery_delay_s`` after it was written (Sysmon and Security
  write with a delay on real hosts; the harness must poll).
- ``EventLog.query`` filters with the XPath forms ``wevtutil qe /q:`` accepts in practice
  (``*``, ``*[System[...]]`` with EventID / EventRecordID / Level / Task / Version comparisons,
  ``and`` / ``or`` / parentheses, ``Provider[@Name='x']``, ``TimeCreated[@SystemTime>='...']`` and
  ``TimeCreated[timediff(@SystemTime) <= ms]``); anything else raises ``QueryError`` the way wevtutil
  refuses an invalid query.
- ``TelemetryWriter`` turns host actions (process start/exit, connect, file create, script block)
  into records according to the lab state in ``HostSettings`` (Sysmon installed/filters, process
  and command-line auditing, script block logging).
"""

from __future__ import annotations

import bisect
import heapq
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from harness.emulated.network import port_name
from harness.emulated.ps_logging import PROVIDERS, engine_blob, provider_blob, split_script_block, suspicious_signature
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, WINDOWS_POWERSHELL

if TYPE_CHECKING:
    from harness.emulated.processes import Account, Process
    from harness.emulated.sysmon_config import SysmonConfig

EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"

SYSMON_PROVIDER = ("Microsoft-Windows-Sysmon", "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}")
SECURITY_PROVIDER = ("Microsoft-Windows-Security-Auditing", "{54849625-5478-4994-a5ba-3e3b0328c30d}")
POWERSHELL_PROVIDER = ("Microsoft-Windows-PowerShell", "{a0c1853b-5c40-4b15-8766-3cf1c58f985a}")

#: Field names in document order, taken from real events of these EventID/Version pairs
#: (Sysmon 15 on Windows Server 2022 / 10; Security auditing 4688 v2, 4689 v0; PowerShell 4104 v1).
SYSMON1_V5_FIELDS = (
    "RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "FileVersion", "Description",
    "Product", "Company", "OriginalFileName", "CommandLine", "CurrentDirectory", "User",
    "LogonGuid", "LogonId", "TerminalSessionId", "IntegrityLevel", "Hashes", "ParentProcessGuid",
    "ParentProcessId", "ParentImage", "ParentCommandLine", "ParentUser",
)  # fmt: skip
SYSMON3_V5_FIELDS = (
    "RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "User", "Protocol", "Initiated",
    "SourceIsIpv6", "SourceIp", "SourceHostname", "SourcePort", "SourcePortName",
    "DestinationIsIpv6", "DestinationIp", "DestinationHostname", "DestinationPort",
    "DestinationPortName",
)  # fmt: skip
SYSMON5_V3_FIELDS = ("RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "User")
SYSMON11_V2_FIELDS = (
    "RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetFilename", "CreationUtcTime", "User",
)  # fmt: skip
#: Registry events 12 (CreateKey/DeleteKey/DeleteValue) and 13 (SetValue), version 2: the order of a
#: real recording (evtx-attack-samples PanacheSysmon_vs_AtomicRedTeam01.evtx), plus ``User`` last as
#: Sysmon 15 (schema 4.90) writes it for every registry event.
SYSMON12_V2_FIELDS = ("RuleName", "EventType", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetObject", "User")
SYSMON13_V2_FIELDS = (*SYSMON12_V2_FIELDS[:-1], "Details", "User")
SECURITY4688_V2_FIELDS = (
    "SubjectUserSid", "SubjectUserName", "SubjectDomainName", "SubjectLogonId", "NewProcessId",
    "NewProcessName", "TokenElevationType", "ProcessId", "CommandLine", "TargetUserSid",
    "TargetUserName", "TargetDomainName", "TargetLogonId", "ParentProcessName", "MandatoryLabel",
)  # fmt: skip
SECURITY4689_V0_FIELDS = (
    "SubjectUserSid", "SubjectUserName", "SubjectDomainName", "SubjectLogonId", "Status", "ProcessId",
    "ProcessName",
)  # fmt: skip
PS4104_V1_FIELDS = ("MessageNumber", "MessageTotal", "ScriptBlockText", "ScriptBlockId", "Path")

#: Channel configuration as ``wevtutil gl`` prints it (the log file name and type).
CHANNEL_INFO: dict[str, tuple[str, str, str]] = {
    SYSMON: ("Operational", "Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon%4Operational.evtx"),
    SECURITY: ("Admin", "", "Security.evtx"),
    POWERSHELL_OPERATIONAL: (
        "Operational", "Microsoft-Windows-PowerShell", "Microsoft-Windows-PowerShell%4Operational.evtx",
    ),
    "System": ("Admin", "", "System.evtx"),
    "Application": ("Admin", "", "Application.evtx"),
    "Windows PowerShell": ("Admin", "PowerShell", "Windows PowerShell.evtx"),
}  # fmt: skip


class QueryError(Exception):
    """The XPath query is outside what wevtutil accepts (message is wevtutil's text)."""


class ChannelNotFound(Exception):
    """The channel does not exist on this host (e.g. Sysmon not installed)."""


def system_time(ns: int) -> str:
    """``TimeCreated/@SystemTime`` as real hosts print it: 7 fractional digits, ``Z``."""
    secs, rem = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rem // 100:07d}Z"


def utc_time(ns: int) -> str:
    """Sysmon ``UtcTime``: ``yyyy-mm-dd hh:mm:ss.fff``."""
    secs, rem = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{base}.{rem // 1_000_000:03d}"


def ns_of(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000) * 1000


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event before the log assigns its record id."""

    channel: str
    provider: tuple[str, str]  # (Name, Guid with braces)
    event_id: int
    version: int
    level: int
    task: int
    opcode: int
    keywords: str
    time_ns: int
    process_id: int
    thread_id: int
    user_sid: str | None
    data: tuple[tuple[str, str], ...]
    activity_id: str | None = None
    qualifiers: int | None = None  # classic (non-manifest) providers: EventID Qualifiers, unnamed Data


@dataclass(frozen=True, slots=True)
class StoredEvent:
    record: EventRecord
    record_id: int
    visible_at: float  # time.monotonic() when queries may see it
    xml: str


def render_xml(rec: EventRecord, record_id: int, computer: str) -> str:
    """One event as ``wevtutil qe /f:xml`` prints it (single line, single-quoted attributes)."""

    def attr(v: str) -> str:
        return escape(v, {"'": "&apos;"})

    name, guid = rec.provider
    corr = f"<Correlation ActivityID='{attr(rec.activity_id)}'/>" if rec.activity_id else "<Correlation/>"
    sec = f"<Security UserID='{attr(rec.user_sid)}'/>" if rec.user_sid else "<Security/>"
    parts = [
        f"<Event xmlns='{EVENT_NS}'><System>",
        f"<Provider Name='{attr(name)}' Guid='{attr(guid)}'/>" if guid else f"<Provider Name='{attr(name)}'/>",
        (f"<EventID Qualifiers='{rec.qualifiers}'>" if rec.qualifiers is not None else "<EventID>")
        + f"{rec.event_id}</EventID><Version>{rec.version}</Version><Level>{rec.level}</Level>",
        f"<Task>{rec.task}</Task><Opcode>{rec.opcode}</Opcode><Keywords>{rec.keywords}</Keywords>",
        f"<TimeCreated SystemTime='{system_time(rec.time_ns)}'/>",
        f"<EventRecordID>{record_id}</EventRecordID>{corr}",
        f"<Execution ProcessID='{rec.process_id}' ThreadID='{rec.thread_id}'/>",
        f"<Channel>{escape(rec.channel)}</Channel><Computer>{escape(computer)}</Computer>{sec}",
        "</System><EventData>",
    ]
    for k, v in rec.data:
        parts.append(f"<Data Name='{attr(k)}'>{escape(v)}</Data>" if k else f"<Data>{escape(v)}</Data>")
    parts.append("</EventData></Event>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------- XPath subset

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<op><=|>=|!=|=|<|>)|(?P<punct>[\[\]()@*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*))"
)

Predicate = Callable[[StoredEvent], bool]

_SYSTEM_INT: dict[str, Callable[[StoredEvent], int]] = {
    "eventid": lambda e: e.record.event_id,
    "eventrecordid": lambda e: e.record_id,
    "level": lambda e: e.record.level,
    "task": lambda e: e.record.task,
    "version": lambda e: e.record.version,
    "opcode": lambda e: e.record.opcode,
}


def _cmp(op: str, a: int | str, b: int | str) -> bool:
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if (isinstance(a, int) and isinstance(b, int)) or (isinstance(a, str) and isinstance(b, str)):
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]  # type: ignore[operator]
    return False


class _XPathParser:
    def __init__(self, text: str, now_ns: Callable[[], int]) -> None:
        self.toks: list[tuple[str, str]] = []
        self.now_ns = now_ns
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise QueryError("The specified query is invalid.")
            pos = m.end()
            kind = m.lastgroup or ""
            self.toks.append((kind, m.group(kind)))
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        v = self.toks[self.i][1]
        return value is None or v.lower() == value.lower()

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (value is not None and self.toks[self.i][1].lower() != value.lower()):
            raise QueryError("The specified query is invalid.")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        # Top: "*" or "Event" optionally followed by [System[...]] / [System] filters.
        if self.peek("*") or self.peek("Event"):
            self.take()
        else:
            raise QueryError("The specified query is invalid.")
        preds: list[Predicate] = []
        while self.peek("["):
            self.take("[")
            preds.append(self.or_expr(top=True))
            self.take("]")
        if self.i != len(self.toks):
            raise QueryError("The specified query is invalid.")
        return lambda e: all(p(e) for p in preds)

    def or_expr(self, *, top: bool = False) -> Predicate:
        left = self.and_expr(top=top)
        while self.peek("or"):
            self.take()
            right = self.and_expr(top=top)
            left = (lambda a, b: lambda e: a(e) or b(e))(left, right)
        return left

    def and_expr(self, *, top: bool = False) -> Predicate:
        left = self.atom(top=top)
        while self.peek("and"):
            self.take()
            right = self.atom(top=top)
            left = (lambda a, b: lambda e: a(e) and b(e))(left, right)
        return left

    def atom(self, *, top: bool) -> Predicate:
        if self.peek("("):
            self.take("(")
            p = self.or_expr(top=top)
            self.take(")")
            return p
        kind, name = self.take()
        if kind != "name":
            raise QueryError("The specified query is invalid.")
        lname = name.lower()
        if top:
            if lname == "system":
                if not self.peek("["):
                    return lambda e: True
                self.take("[")
                p = self.or_expr()
                self.take("]")
                return p
            if lname == "eventdata":
                self.take("[")
                p = self.eventdata()
                self.take("]")
                return p
            raise QueryError("The specified query is invalid.")
        if lname in _SYSTEM_INT:
            get = _SYSTEM_INT[lname]
            if not self.peek() or self.toks[self.i][0] != "op":
                return lambda e: True
            op = self.take()[1]
            k, v = self.take()
            if k != "num":
                raise QueryError("The specified query is invalid.")
            n = int(v)
            return lambda e: _cmp(op, get(e), n)
        if lname == "provider":
            self.take("[")
            self.take("@")
            attr = self.take()[1].lower()
            op = self.take()[1]
            k, v = self.take()
            self.take("]")
            if attr != "name" or k != "str":
                raise QueryError("The specified query is invalid.")
            want = v[1:-1]
            return lambda e: _cmp(op, e.record.provider[0].lower(), want.lower())
        if lname == "timecreated":
            return self.time_created()
        raise QueryError("The specified query is invalid.")

    def time_created(self) -> Predicate:
        self.take("[")
        if self.peek("timediff"):
            self.take()
            self.take("(")
            self.take("@")
            self.take("SystemTime")
            self.take(")")
            op = self.take()[1]
            ms = int(self.take()[1])
            self.take("]")
            return lambda e: _cmp(op, (self.now_ns() - e.record.time_ns) // 1_000_000, ms)
        self.take("@")
        self.take("SystemTime")
        op = self.take()[1]
        k, v = self.take()
        self.take("]")
        if k != "str":
            raise QueryError("The specified query is invalid.")
        try:
            t = datetime.fromisoformat(v[1:-1].replace("Z", "+00:00"))
        except ValueError as exc:
            raise QueryError("The specified query is invalid.") from exc
        limit = ns_of(t if t.tzinfo else t.replace(tzinfo=UTC))
        return lambda e: _cmp(op, e.record.time_ns, limit)

    def eventdata(self) -> Predicate:
        # EventData[Data[@Name='X']='v'] (and/or of those)
        left = self._data_clause()
        while self.peek("and") or self.peek("or"):
            conj = self.take()[1].lower()
            right = self._data_clause()
            left = (
                (lambda a, b: lambda e: a(e) and b(e))(left, right)
                if conj == "and"
                else (lambda a, b: lambda e: a(e) or b(e))(left, right)
            )
        return left

    def _data_clause(self) -> Predicate:
        self.take("Data")
        self.take("[")
        self.take("@")
        self.take("Name")
        self.take("=")
        k, name = self.take()
        self.take("]")
        op = self.take()[1]
        k2, value = self.take()
        if k != "str" or k2 not in ("str", "num"):
            raise QueryError("The specified query is invalid.")
        field_name = name[1:-1]
        want = value[1:-1] if k2 == "str" else value
        return lambda e: any(n == field_name and _cmp(op, v, want) for n, v in e.record.data)


def compile_xpath(query: str, now_ns: Callable[[], int] = time.time_ns) -> Predicate:
    """Compile a wevtutil ``/q:`` XPath (the subset in the module docstring)."""
    return _XPathParser(query, now_ns).parse()


# ------------------------------------------------------------------------------------------ the log


def _record_id(e: StoredEvent) -> int:
    return e.record_id


class EventLog:
    """All channels of one host. Thread-safe; record ids increase per channel from 1."""

    def __init__(
        self,
        computer: str,
        *,
        channels: Iterable[str],
        delivery_delay_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        first_record_id: int = 1,
    ) -> None:
        self.computer = computer
        self.delivery_delay_s = delivery_delay_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._events: dict[str, list[StoredEvent]] = {c: [] for c in channels}
        self._next: dict[str, int] = dict.fromkeys(self._events, first_record_id)
        # Records whose writer delays them (Sysmon 3): (due, seq, record); they get their record id
        # when written, as on Windows, so record ids stay in write order and bookmarks lose nothing.
        self._pending: list[tuple[float, int, EventRecord]] = []
        self._seq = 0

    def channels(self) -> list[str]:
        return list(self._events)

    def resolve_channel(self, name: str) -> str:
        """The channel's canonical name (channel names are case-insensitive)."""
        for c in self._events:
            if c.lower() == name.lower():
                return c
        raise ChannelNotFound(name)

    def append(self, rec: EventRecord, *, delay_s: float = 0.0) -> None:
        """Write ``rec`` now, or ``delay_s`` from now (it gets its record id when written)."""
        with self._lock:
            if rec.channel not in self._events:
                raise ChannelNotFound(rec.channel)
            now = self._monotonic()
            self._flush(now)
            if delay_s > 0:
                self._seq += 1
                heapq.heappush(self._pending, (now + delay_s, self._seq, rec))
                return
            self._store(rec, now)

    def _flush(self, now: float) -> None:
        """Write the delayed records that are due (caller holds the lock)."""
        while self._pending and self._pending[0][0] <= now:
            due, _seq, rec = heapq.heappop(self._pending)
            self._store(rec, due)

    def _store(self, rec: EventRecord, written: float) -> None:
        rid = self._next[rec.channel]
        self._next[rec.channel] = rid + 1
        stored = StoredEvent(
            record=rec,
            record_id=rid,
            visible_at=written + self.delivery_delay_s,
            xml=render_xml(rec, rid, self.computer),
        )
        self._events[rec.channel].append(stored)

    def events(
        self,
        channel: str,
        *,
        predicate: Predicate | None = None,
        reverse: bool = False,
        count: int | None = None,
        after_record_id: int = 0,
    ) -> list[StoredEvent]:
        """Visible events of ``channel`` with EventRecordID > ``after_record_id`` matching
        ``predicate``, oldest first unless ``reverse``.

        A channel's records are stored in record-id order, so the ones after ``after_record_id`` are
        found by bisection and the newest by walking back: a query costs what it returns, not the
        size of the log (a long run's log grows with every test)."""
        ch = self.resolve_channel(channel)
        now = self._monotonic()
        with self._lock:
            self._flush(now)
            stored = self._events[ch]
            if reverse and count is not None and predicate is None and not after_record_id:
                newest: list[StoredEvent] = []
                for e in reversed(stored):
                    if len(newest) >= count:
                        break
                    if e.visible_at <= now:
                        newest.append(e)
                return newest
            start = bisect.bisect_right(stored, after_record_id, key=_record_id) if after_record_id else 0
            items = [e for e in stored[start:] if e.visible_at <= now]
        if predicate is not None:
            items = [e for e in items if predicate(e)]
        if reverse:
            items.reverse()
        return items[:count] if count is not None else items

    def query(
        self, channel: str, *, after_record_id: int = 0, xpath: str | None = None, reverse: bool = False
    ) -> list[str]:
        """XML of visible events with EventRecordID > ``after_record_id`` (tests and tools use it)."""
        pred = compile_xpath(xpath) if xpath else None
        out = self.events(channel, predicate=pred, reverse=reverse)
        return [e.xml for e in out if e.record_id > after_record_id]

    def record_count(self, channel: str) -> int:
        ch = self.resolve_channel(channel)
        with self._lock:
            self._flush(self._monotonic())
            return len(self._events[ch])

    def last_record_id(self, channel: str) -> int:
        ch = self.resolve_channel(channel)
        with self._lock:
            self._flush(self._monotonic())
            return self._next[ch] - 1


# ---------------------------------------------------------------------------------- telemetry writer


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Version resource of an image, as Sysmon 1 reports it."""

    file_version: str = "-"
    description: str = "-"
    product: str = "-"
    company: str = "-"
    original_file_name: str = "-"


@dataclass(frozen=True, slots=True)
class LoggingPolicy:
    """What the host's audit configuration logs (derived from HostSettings)."""

    sysmon: bool = True
    sysmon_network: bool = True
    sysmon_file: bool = True
    sysmon_registry: bool = True
    process_auditing: bool = True
    command_line_auditing: bool = True
    script_block_logging: bool = True
    #: The Sysmon configuration's rules: which Sysmon events are written and their RuleName.
    sysmon_rules: SysmonConfig | None = None


class TelemetryWriter:
    """Writes the events a real host would write for each action, per the logging policy."""

    def __init__(
        self,
        log: EventLog,
        *,
        policy: LoggingPolicy,
        hostname: str,
        domain: str,
        sysmon_pid: int,
        clock_ns: Callable[[], int] = time.time_ns,
        image_info: Callable[[str], ImageInfo],
        image_hash: Callable[[str], str],
        thread_id: Callable[[], int],
        rng: random.Random | None = None,
    ) -> None:
        self.log = log
        self.policy = policy
        self.hostname = hostname
        self.domain = domain
        self.sysmon_pid = sysmon_pid
        self._clock_ns = clock_ns
        self._image_info = image_info
        self._image_hash = image_hash
        self._thread_id = thread_id
        self._sysmon_tid = thread_id()
        self._rng = rng or random.Random()

    # -- helpers
    def _sysmon(
        self, event_id: int, version: int, data: Sequence[tuple[str, str]], at_ns: int, delay_s: float = 0.0
    ) -> None:
        """Write a Sysmon record the config lets through; it is written ``delay_s`` after ``at_ns``
        (SystemTime) and becomes visible to queries only then."""
        if not self.policy.sysmon:
            return
        rules = self.policy.sysmon_rules
        if rules is not None:
            # Sysmon applies its config before writing: an event its rules filter out never exists.
            logged, rule_name = rules.decide(event_id, dict(data))
            if not logged:
                return
            data = [("RuleName", rule_name) if k == "RuleName" else (k, v) for k, v in data]
        # Sysmon's service writes the record after the action (UtcTime precedes SystemTime).
        written = max(self._clock_ns(), at_ns) + int(delay_s * 1e9)
        self.log.append(
            EventRecord(
                channel=SYSMON, provider=SYSMON_PROVIDER, event_id=event_id, version=version, level=4,
                task=event_id, opcode=0, keywords="0x8000000000000000", time_ns=written,
                process_id=self.sysmon_pid, thread_id=self._sysmon_tid, user_sid="S-1-5-18", data=tuple(data),
            ),
            delay_s=delay_s,
        )  # fmt: skip

    def _subject(self, acct: Account) -> list[tuple[str, str]]:
        if acct.is_system:
            # The machine account is how Security names SYSTEM as a subject.
            return [
                ("SubjectUserSid", "S-1-5-18"), ("SubjectUserName", f"{self.hostname}$"),
                ("SubjectDomainName", self.domain), ("SubjectLogonId", "0x3e7"),
            ]  # fmt: skip
        return [
            ("SubjectUserSid", acct.sid), ("SubjectUserName", acct.name),
            ("SubjectDomainName", acct.domain), ("SubjectLogonId", hex(acct.logon_id)),
        ]  # fmt: skip

    def _security(self, event_id: int, version: int, task: int, data: Sequence[tuple[str, str]]) -> None:
        self.log.append(
            EventRecord(
                channel=SECURITY, provider=SECURITY_PROVIDER, event_id=event_id, version=version, level=0,
                task=task, opcode=0, keywords="0x8020000000000000", time_ns=self._clock_ns(),
                process_id=4, thread_id=self._thread_id(), user_sid=None, data=tuple(data),
            )
        )  # fmt: skip

    # -- actions
    def process_created(self, proc: Process) -> None:
        at = ns_of(proc.started)
        parent = proc.parent
        info = self._image_info(proc.image)
        acct = proc.account
        cwd = proc.cwd if proc.cwd.endswith("\\") else proc.cwd + "\\"  # Sysmon prints the trailing separator
        self._sysmon(
            1, 5,
            [
                ("RuleName", "-"), ("UtcTime", utc_time(at)), ("ProcessGuid", proc.guid),
                ("ProcessId", str(proc.pid)), ("Image", proc.image), ("FileVersion", info.file_version),
                ("Description", info.description), ("Product", info.product), ("Company", info.company),
                ("OriginalFileName", info.original_file_name), ("CommandLine", proc.command_line),
                ("CurrentDirectory", cwd), ("User", acct.qualified), ("LogonGuid", acct.logon_guid),
                ("LogonId", hex(acct.logon_id)), ("TerminalSessionId", "0"),
                ("IntegrityLevel", acct.integrity),
                ("Hashes", self._image_hash(proc.image)),
                ("ParentProcessGuid", parent.guid if parent else "-"),
                ("ParentProcessId", str(parent.pid) if parent else "-"),
                ("ParentImage", parent.image if parent else "-"),
                ("ParentCommandLine", parent.command_line if parent else "-"),
                ("ParentUser", parent.account.qualified if parent else "-"),
            ],
            at,
        )  # fmt: skip
        if self.policy.process_auditing:
            creator = parent.account if parent else acct
            self._security(
                4688, 2, 13312,
                [
                    *self._subject(creator),
                    ("NewProcessId", hex(proc.pid)), ("NewProcessName", proc.image),
                    # UAC is off on the lab boxes: every token is a full (default) token.
                    ("TokenElevationType", "%%1936"),
                    ("ProcessId", hex(parent.pid) if parent else "0x0"),
                    ("CommandLine", proc.command_line if self.policy.command_line_auditing else ""),
                    ("TargetUserSid", "S-1-0-0"), ("TargetUserName", "-"), ("TargetDomainName", "-"),
                    ("TargetLogonId", "0x0"), ("ParentProcessName", parent.image if parent else ""),
                    ("MandatoryLabel", acct.mandatory_label),
                ],
            )  # fmt: skip

    def process_terminated(self, proc: Process) -> None:
        at = ns_of(proc.ended) if proc.ended else self._clock_ns()
        self._sysmon(
            5, 3,
            [
                ("RuleName", "-"), ("UtcTime", utc_time(at)), ("ProcessGuid", proc.guid),
                ("ProcessId", str(proc.pid)), ("Image", proc.image), ("User", proc.account.qualified),
            ],
            at,
        )  # fmt: skip
        if self.policy.process_auditing:
            code = proc.exit_code if proc.exit_code is not None else 0
            self._security(
                4689, 0, 13313,
                [
                    *self._subject(proc.account), ("Status", hex(code & 0xFFFFFFFF)),
                    ("ProcessId", hex(proc.pid)), ("ProcessName", proc.image),
                ],
            )  # fmt: skip

    def network_connect(
        self,
        proc: Process,
        *,
        protocol: str,
        src_ip: str,
        src_port: int,
        dst_ip: str,
        dst_port: int,
        initiated: bool = True,
        delay_s: float = 0.0,
    ) -> None:
        """Sysmon 3 for one connection as seen from ``proc``; port names from the services file
        (``microsoft-ds``), ``-`` otherwise; written ``delay_s`` after its UtcTime."""
        if not self.policy.sysmon_network:
            return
        at = self._clock_ns()
        self._sysmon(
            3, 5,
            [
                ("RuleName", "-"), ("UtcTime", utc_time(at)), ("ProcessGuid", proc.guid),
                ("ProcessId", str(proc.pid)), ("Image", proc.image), ("User", proc.account.qualified),
                ("Protocol", protocol), ("Initiated", "true" if initiated else "false"),
                ("SourceIsIpv6", str(":" in src_ip).lower()), ("SourceIp", src_ip), ("SourceHostname", "-"),
                ("SourcePort", str(src_port)), ("SourcePortName", port_name(protocol, src_port)),
                ("DestinationIsIpv6", str(":" in dst_ip).lower()), ("DestinationIp", dst_ip),
                ("DestinationHostname", "-"), ("DestinationPort", str(dst_port)),
                ("DestinationPortName", port_name(protocol, dst_port)),
            ],
            at,
            delay_s,
        )  # fmt: skip

    def file_created(self, proc: Process, path: str, created: datetime) -> None:
        if not self.policy.sysmon_file:
            return
        at = self._clock_ns()
        self._sysmon(
            11, 2,
            [
                ("RuleName", "-"), ("UtcTime", utc_time(at)), ("ProcessGuid", proc.guid),
                ("ProcessId", str(proc.pid)), ("Image", proc.image), ("TargetFilename", path),
                ("CreationUtcTime", utc_time(ns_of(created))), ("User", proc.account.qualified),
            ],
            at,
        )  # fmt: skip

    def registry_event(self, proc: Process, event_type: str, target: str, details: str | None = None) -> None:
        """Sysmon 12 (``CreateKey``/``DeleteKey``/``DeleteValue``) or 13 (``SetValue``, with ``details``)."""
        if not self.policy.sysmon_registry:
            return
        at = self._clock_ns()
        data = [
            ("RuleName", "-"), ("EventType", event_type), ("UtcTime", utc_time(at)), ("ProcessGuid", proc.guid),
            ("ProcessId", str(proc.pid)), ("Image", proc.image), ("TargetObject", target),
        ]  # fmt: skip
        if details is not None:
            data.append(("Details", details))
        data.append(("User", proc.account.qualified))
        self._sysmon(13 if details is not None else 12, 2, data, at)

    def script_block(self, proc: Process, text: str) -> None:
        """4104 for one script block as PowerShell 5.1 writes it (harness/emulated/ps_logging.py):
        Level 3 with one of PowerShell's suspicious strings (logged even when script block logging
        is not configured), else Level 5 when it is; split into parts sharing one ScriptBlockId."""
        suspicious = suspicious_signature(text) is not None
        if not self.policy.script_block_logging and not suspicious:
            return
        parts = split_script_block(text, self._rng)
        block_id = str(uuid.uuid4())
        activity = "{" + str(uuid.uuid4()).upper() + "}"
        tid = self._thread_id()
        for n, part in enumerate(parts, 1):
            self.log.append(
                EventRecord(
                    channel=POWERSHELL_OPERATIONAL, provider=POWERSHELL_PROVIDER, event_id=4104, version=1,
                    level=3 if suspicious else 5, task=2, opcode=15, keywords="0x0", time_ns=self._clock_ns(),
                    process_id=proc.pid, thread_id=tid, user_sid=proc.account.sid, activity_id=activity,
                    data=(
                        ("MessageNumber", str(n)), ("MessageTotal", str(len(parts))),
                        ("ScriptBlockText", part),
                        ("ScriptBlockId", block_id), ("Path", ""),
                    ),
                )
            )  # fmt: skip

    def powershell_engine(self, *, starting: bool, host: dict[str, str]) -> None:
        """The classic "Windows PowerShell" log of one engine start (600 per provider, then 400) or
        stop (403), as every PowerShell start writes them whatever the logging policy (atomic-evtx
        T1571-1: Provider 'PowerShell', Execution ProcessID 0, three unnamed Data)."""
        events: list[tuple[int, int, tuple[str, str, str]]] = []
        if starting:
            for n, provider in enumerate(PROVIDERS):
                events.append(
                    (600, 6, (provider, "Started", provider_blob(provider=provider, sequence=2 * n + 1, host=host)))
                )
            events.append(
                (400, 4, ("Available", "None", engine_blob(new="Available", previous="None", sequence=13, host=host)))
            )
        else:
            events.append(
                (
                    403,
                    4,
                    ("Stopped", "Available", engine_blob(new="Stopped", previous="Available", sequence=15, host=host)),
                )
            )
        for event_id, task, data in events:
            self.log.append(
                EventRecord(
                    channel=WINDOWS_POWERSHELL, provider=("PowerShell", ""), event_id=event_id, version=0, level=4,
                    task=task, opcode=0, keywords="0x80000000000000", time_ns=self._clock_ns(), process_id=0,
                    thread_id=0, user_sid=None, data=tuple(("", v) for v in data), qualifiers=0,
                )
            )  # fmt: skip
