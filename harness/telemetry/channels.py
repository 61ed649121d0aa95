"""Channel semantics: what Sysmon, Security and PowerShell events mean, as small typed views.

Pure functions over ``Event``; nothing here does I/O. Facts (shared/docs/windows-telemetry.md):
 * Sysmon 1 (process create), 3 (network connect), 5 (process terminated), 11 (file create),
   22 (DNS query) carry ProcessGuid (braces in XML, none in some JSON exports: normalized here to
   upper case without braces) and a decimal ProcessId.
 * Security 4688 carries NewProcessId/ProcessId as hex strings (``0xc9c``), TokenElevationType as
   ``%%1936/%%1937/%%1938``; the old schema (version 0/1) has no ParentProcessName.
 * PowerShell/Operational 4104 splits long scripts across events: join by ScriptBlockId in
   MessageNumber order.
 * Classic "Windows PowerShell" 400/403/600/800 carry ``Key=Value`` lines (HostApplication is the
   full command line, possibly spanning several lines) in one unnamed Data element.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, WINDOWS_POWERSHELL, Event
from harness.telemetry.readers.common import optional_int, parse_time


class EventKind(enum.StrEnum):
    """What an event is about, for the event types the harness reasons about."""

    PROCESS_CREATE = "process_create"
    PROCESS_TERMINATE = "process_terminate"
    NETWORK_CONNECT = "network_connect"
    FILE_CREATE = "file_create"
    DNS_QUERY = "dns_query"
    SCRIPT_BLOCK = "script_block"
    POWERSHELL_PIPELINE = "powershell_pipeline"  # PS-Op 4103 module logging
    CLASSIC_POWERSHELL = "classic_powershell"
    OTHER = "other"


_SYSMON_KINDS = {
    1: EventKind.PROCESS_CREATE,
    3: EventKind.NETWORK_CONNECT,
    5: EventKind.PROCESS_TERMINATE,
    11: EventKind.FILE_CREATE,
    22: EventKind.DNS_QUERY,
}


def kind_of(event: Event) -> EventKind:
    """The EventKind of an event (OTHER for anything not modelled)."""
    if event.channel == SYSMON:
        return _SYSMON_KINDS.get(event.event_id, EventKind.OTHER)
    if event.channel == SECURITY:
        if event.event_id == 4688:
            return EventKind.PROCESS_CREATE
        if event.event_id == 4689:
            return EventKind.PROCESS_TERMINATE
        return EventKind.OTHER
    if event.channel == POWERSHELL_OPERATIONAL:
        if event.event_id == 4104:
            return EventKind.SCRIPT_BLOCK
        if event.event_id == 4103:
            return EventKind.POWERSHELL_PIPELINE
        return EventKind.OTHER
    if event.channel == WINDOWS_POWERSHELL and event.event_id in (400, 403, 600, 800):
        return EventKind.CLASSIC_POWERSHELL
    return EventKind.OTHER


class TokenElevation(enum.StrEnum):
    """Security 4688 TokenElevationType."""

    DEFAULT = "default"  # %%1936: UAC off, or a built-in/service account
    FULL = "full"  # %%1937: elevated (run as administrator)
    LIMITED = "limited"  # %%1938: filtered admin token (not elevated)


_ELEVATION = {
    "%%1936": TokenElevation.DEFAULT,
    "%%1937": TokenElevation.FULL,
    "%%1938": TokenElevation.LIMITED,
    # Rendered message forms, as some exporters write them.
    "tokenelevationtypedefault (1)": TokenElevation.DEFAULT,
    "tokenelevationtypefull (2)": TokenElevation.FULL,
    "tokenelevationtypelimited (3)": TokenElevation.LIMITED,
}


def elevation_type(value: str | None) -> TokenElevation | None:
    """``%%1936/%%1937/%%1938`` (or their rendered names) as a TokenElevation; None if unknown."""
    if not value:
        return None
    return _ELEVATION.get(value.strip().lower())


def parse_pid(value: str | int | None) -> int | None:
    """A process id from a Sysmon decimal (``4548``) or a Security hex string (``0xc9c``)."""
    return optional_int(value)


#: Security 4688 ``MandatoryLabel`` SIDs -> the IntegrityLevel names Sysmon writes.
INTEGRITY_LEVELS = {
    "S-1-16-0": "Untrusted",
    "S-1-16-4096": "Low",
    "S-1-16-8192": "Medium",
    "S-1-16-8448": "MediumPlus",
    "S-1-16-12288": "High",
    "S-1-16-16384": "System",
}


def integrity_level(label: str | None) -> str | None:
    """Sysmon's IntegrityLevel name for a 4688 ``MandatoryLabel`` SID; None if absent or unknown."""
    return INTEGRITY_LEVELS.get(label.upper()) if label else None


def normalize_guid(value: str | None) -> str | None:
    """A GUID as upper case without braces; None for absent/empty/all-zero GUIDs (Sysmon writes
    ``{00000000-0000-0000-0000-000000000000}`` when the parent is unknown)."""
    if not value:
        return None
    guid = value.strip().strip("{}").upper()
    if not guid or guid.strip("0-") == "":
        return None
    return guid


def _domain_user(domain: str | None, user: str | None) -> str | None:
    if not user or user == "-":
        return None
    return f"{domain}\\{user}" if domain and domain != "-" else user


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """One process start, the same whatever event reported it (Sysmon 1 or Security 4688).

    ``guid``/``parent_guid`` exist only for Sysmon; ``parent_image`` is None for the old 4688 schema.
    ``time`` is the process start time (Sysmon UtcTime, else the event time), UTC-aware.
    """

    pid: int | None
    image: str
    command_line: str
    time: datetime
    computer: str
    guid: str | None = None
    parent_pid: int | None = None
    parent_guid: str | None = None
    parent_image: str | None = None
    user: str | None = None
    elevation: TokenElevation | None = None
    integrity: str | None = None
    source: str = ""  # "sysmon" or "security"

    @property
    def image_name(self) -> str:
        """The image file name, lower case (``powershell.exe``)."""
        return basename(self.image)


def basename(path: str | None) -> str:
    """The file name of a Windows path, lower case."""
    if not path:
        return ""
    return path.replace("/", "\\").rsplit("\\", 1)[-1].lower()


def process_of(event: Event) -> ProcessRef | None:
    """The process a process-creation event (Sysmon 1, Security 4688) reports; None otherwise."""
    f = event.fields
    if event.channel == SYSMON and event.event_id == 1:
        start = event.time
        utc = f.get("UtcTime")
        if utc:
            try:
                start = parse_time(utc)
            except ValueError:
                start = event.time
        return ProcessRef(
            pid=parse_pid(f.get("ProcessId")),
            image=f.get("Image", ""),
            command_line=f.get("CommandLine", ""),
            time=start,
            computer=event.computer,
            guid=normalize_guid(f.get("ProcessGuid")),
            parent_pid=parse_pid(f.get("ParentProcessId")),
            parent_guid=normalize_guid(f.get("ParentProcessGuid")),
            parent_image=f.get("ParentImage") or None,
            user=f.get("User") or None,
            integrity=f.get("IntegrityLevel") or None,
            source="sysmon",
        )
    if event.channel == SECURITY and event.event_id == 4688:
        # Version 2 names the account the new process runs as (Target*); older versions only the
        # creator (Subject*), which is then also the new process's account.
        user = _domain_user(f.get("TargetDomainName"), f.get("TargetUserName")) or _domain_user(
            f.get("SubjectDomainName"), f.get("SubjectUserName")
        )
        label = f.get("MandatoryLabel")
        return ProcessRef(
            pid=parse_pid(f.get("NewProcessId")),
            image=f.get("NewProcessName", ""),
            command_line=f.get("CommandLine", ""),
            time=event.time,
            computer=event.computer,
            parent_pid=parse_pid(f.get("ProcessId")),
            parent_image=f.get("ParentProcessName") or None,
            user=user,
            elevation=elevation_type(f.get("TokenElevationType")),
            integrity=(integrity_level(label) or label) if label else None,
            source="security",
        )
    return None


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """A process termination (Sysmon 5 or Security 4689)."""

    pid: int | None
    image: str
    time: datetime
    computer: str
    guid: str | None = None


def exit_of(event: Event) -> ProcessExit | None:
    """The process a termination event (Sysmon 5, Security 4689) reports; None otherwise."""
    f = event.fields
    if event.channel == SYSMON and event.event_id == 5:
        return ProcessExit(
            pid=parse_pid(f.get("ProcessId")),
            image=f.get("Image", ""),
            time=event.time,
            computer=event.computer,
            guid=normalize_guid(f.get("ProcessGuid")),
        )
    if event.channel == SECURITY and event.event_id == 4689:
        return ProcessExit(
            pid=parse_pid(f.get("ProcessId")), image=f.get("ProcessName", ""), time=event.time, computer=event.computer
        )
    return None


def actor_guid(event: Event) -> str | None:
    """The ProcessGuid of the process that caused a Sysmon event (SourceProcessGuid for 8/10)."""
    if event.channel != SYSMON:
        return None
    f = event.fields
    value = f.get("ProcessGuid") or f.get("SourceProcessGuid") or f.get("SourceProcessGUID")
    return normalize_guid(value)


class _SysmonActor(TypedDict):
    guid: str | None
    pid: int | None
    image: str
    time: datetime


def _sysmon_actor(event: Event, event_id: int) -> _SysmonActor | None:
    """The acting process and time of a Sysmon ``event_id`` event; None for any other event."""
    if event.channel != SYSMON or event.event_id != event_id:
        return None
    f = event.fields
    return _SysmonActor(
        guid=normalize_guid(f.get("ProcessGuid")),
        pid=parse_pid(f.get("ProcessId")),
        image=f.get("Image", ""),
        time=event.time,
    )


@dataclass(frozen=True, slots=True)
class NetworkConnection:
    """Sysmon 3."""

    guid: str | None
    pid: int | None
    image: str
    protocol: str
    initiated: bool
    source_ip: str
    source_port: int | None
    destination_ip: str
    destination_host: str
    destination_port: int | None
    time: datetime


def network_of(event: Event) -> NetworkConnection | None:
    actor = _sysmon_actor(event, 3)
    if actor is None:
        return None
    f = event.fields
    return NetworkConnection(
        **actor,
        protocol=f.get("Protocol", ""),
        initiated=f.get("Initiated", "").lower() == "true",
        source_ip=f.get("SourceIp", ""),
        source_port=optional_int(f.get("SourcePort")),
        destination_ip=f.get("DestinationIp", ""),
        destination_host=f.get("DestinationHostname", ""),
        destination_port=optional_int(f.get("DestinationPort")),
    )


@dataclass(frozen=True, slots=True)
class FileCreate:
    """Sysmon 11."""

    guid: str | None
    pid: int | None
    image: str
    target_filename: str
    time: datetime


def file_create_of(event: Event) -> FileCreate | None:
    actor = _sysmon_actor(event, 11)
    if actor is None:
        return None
    return FileCreate(**actor, target_filename=event.fields.get("TargetFilename", ""))


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """Sysmon 22."""

    guid: str | None
    pid: int | None
    image: str
    query_name: str
    status: str
    results: str
    time: datetime


def dns_query_of(event: Event) -> DnsQuery | None:
    actor = _sysmon_actor(event, 22)
    if actor is None:
        return None
    f = event.fields
    return DnsQuery(
        **actor,
        query_name=f.get("QueryName", ""),
        status=f.get("QueryStatus", ""),
        results=f.get("QueryResults", ""),
    )


# -- PowerShell ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptBlock:
    """One script block, its 4104 parts joined in MessageNumber order.

    ``complete`` is False when parts are missing (MessageTotal says more than were seen); the text
    then holds the parts that were seen, in order. ``pid`` is the Execution ProcessID of the events
    (4104 has no ProcessGuid).
    """

    script_block_id: str
    text: str
    parts: int
    total: int
    path: str
    pid: int | None
    computer: str
    first_time: datetime
    last_time: datetime
    events: tuple[Event, ...]

    @property
    def complete(self) -> bool:
        return self.parts >= self.total


def join_script_blocks(events: Iterable[Event]) -> list[ScriptBlock]:
    """Join PowerShell/Operational 4104 events into script blocks (other events are ignored).

    Parts are grouped by (computer, ScriptBlockId) and ordered by MessageNumber; a part seen twice
    (the same event collected twice) counts once. Blocks are returned in order of their first part's
    time.
    """
    groups: dict[tuple[str, str], dict[int, Event]] = {}
    for event in events:
        if event.event_id != 4104 or event.channel != POWERSHELL_OPERATIONAL:
            continue
        block_id = (event.get("ScriptBlockId") or "").strip("{}").lower()
        number = optional_int(event.get("MessageNumber")) or 1
        groups.setdefault((event.computer.lower(), block_id), {}).setdefault(number, event)
    blocks = []
    for (_computer, block_id), parts in groups.items():
        ordered = [parts[n] for n in sorted(parts)]
        first = ordered[0]
        total = max(optional_int(e.get("MessageTotal")) or 1 for e in ordered)
        path = next((e.get("Path") or "" for e in ordered if e.get("Path")), "")
        blocks.append(
            ScriptBlock(
                script_block_id=block_id,
                text="".join(e.get("ScriptBlockText") or "" for e in ordered),
                parts=len(ordered),
                total=total,
                path=path,
                pid=first.pid,
                computer=first.computer,
                first_time=min(e.time for e in ordered),
                last_time=max(e.time for e in ordered),
                events=tuple(ordered),
            )
        )
    blocks.sort(key=lambda b: b.first_time)
    return blocks


#: Keys of the classic PowerShell ``Key=Value`` blob (400/403/600/800), per the PowerShell
#: event templates. Only these start a new value, so a script line such as ``x=1`` inside a
#: multi-line HostApplication is not mistaken for a key.
CLASSIC_KEYS = (
    "NewEngineState", "PreviousEngineState", "NewProviderState", "ProviderName", "NewCommandState",
    "SequenceNumber", "HostName", "HostVersion", "HostId", "HostApplication", "EngineVersion",
    "RunspaceId", "PipelineId", "CommandName", "CommandType", "ScriptName", "CommandPath",
    "CommandLine", "DetailSequence", "DetailTotal", "UserId",
)  # fmt: skip
_CLASSIC_KEY_RE = re.compile(r"(?:^|\r?\n)[ \t]*(" + "|".join(CLASSIC_KEYS) + r")=")


@dataclass(frozen=True, slots=True)
class ClassicPowerShell:
    """What a classic "Windows PowerShell" 400/403/600/800 event says about its host process."""

    event_id: int
    host_application: str
    host_name: str
    host_id: str
    engine_version: str
    runspace_id: str
    command_line: str
    script_name: str
    values: Mapping[str, str]
    time: datetime


def parse_classic_blob(blob: str) -> dict[str, str]:
    """The ``Key=Value`` lines of a classic PowerShell event as a dict (values keep inner newlines,
    line ends normalized to ``\\n``, trailing line ends removed)."""
    values: dict[str, str] = {}
    matches = list(_CLASSIC_KEY_RE.finditer(blob))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(blob)
        value = blob[m.end() : end].replace("\r\n", "\n").rstrip("\r\n")
        values.setdefault(m.group(1), value)
    return values


def classic_powershell_of(event: Event) -> ClassicPowerShell | None:
    """The parsed HostApplication blob of a classic PowerShell 400/403/600/800 event."""
    if event.channel != WINDOWS_POWERSHELL or event.event_id not in (400, 403, 600, 800):
        return None
    blob = next((v for v in event.fields.values() if "HostApplication=" in v or "HostName=" in v), None)
    if blob is None:
        return None
    values = parse_classic_blob(blob)
    return ClassicPowerShell(
        event_id=event.event_id,
        host_application=values.get("HostApplication", ""),
        host_name=values.get("HostName", ""),
        host_id=values.get("HostId", ""),
        engine_version=values.get("EngineVersion", ""),
        runspace_id=values.get("RunspaceId", ""),
        command_line=values.get("CommandLine", ""),
        script_name=values.get("ScriptName", ""),
        values=values,
        time=event.time,
    )


_CMDLINE_NOISE = re.compile(r"[\s\"'\\]+")


def command_line_key(command_line: str) -> str:
    """A comparison key for command lines reported by different sources: Sysmon writes
    ``"powershell.exe" & {$a = \\""\\""}`` where the classic PowerShell log writes
    ``powershell.exe & {$a = ""}``; quotes, backslashes and whitespace are dropped, case folded."""
    return _CMDLINE_NOISE.sub("", command_line).lower()
