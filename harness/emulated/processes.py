"""Process table of the emulated Windows host: PIDs, Sysmon ProcessGuids, accounts and lineage.

Contract: every process the emulated host runs is a ``Process`` created by ``ProcessTable.spawn``;
PIDs are multiples of 4 (as Windows hands them out) and unique among live processes; ProcessGuids
are built the way Sysmon builds them: ``{mmmmmmmm-tttt-tttt-cccc-cccc0000bbbb}`` (lower case, as
Sysmon's XML and the atomic-evtx exports show them, e.g. ``dbf410b3-b572-6717-0301-000000003900``) with a machine part,
the process start time in Unix seconds (low word first) and a per-boot counter (little-endian).
Nothing here writes events; the host tells the telemetry writer about spawns and exits.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime

#: NTSTATUS STATUS_CONTROL_C_EXIT: the exit code of a process ended by a console break / termination.
STATUS_CONTROL_C_EXIT = 0xC000013A


@dataclass(frozen=True, slots=True)
class Account:
    """A Windows security principal as the event logs show it."""

    name: str
    domain: str
    sid: str
    logon_id: int
    logon_guid: str
    profile_dir: str
    integrity: str = "High"  # Sysmon IntegrityLevel of processes this account starts
    is_system: bool = False

    @property
    def qualified(self) -> str:
        """``DOMAIN\\name`` as Sysmon's User field shows it."""
        return f"{self.domain}\\{self.name}"

    @property
    def mandatory_label(self) -> str:
        """Security 4688 MandatoryLabel SID for the integrity level."""
        return {
            "Low": "S-1-16-4096",
            "Medium": "S-1-16-8192",
            "High": "S-1-16-12288",
            "System": "S-1-16-16384",
        }.get(self.integrity, "S-1-16-8192")


def machine_part(hostname: str) -> str:
    """First GUID group Sysmon derives from the machine (stable per emulated host name)."""
    return hashlib.sha256(hostname.upper().encode("utf-8")).hexdigest()[:8]


def sysmon_guid(machine: str, start_unix: int, counter: int, boot_tag: int) -> str:
    """A ProcessGuid/LogonGuid in Sysmon's layout, with braces as the XML shows it."""
    t = start_unix & 0xFFFFFFFF
    c = counter & 0xFFFFFFFF
    return (
        f"{{{machine}-{t & 0xFFFF:04x}-{(t >> 16) & 0xFFFF:04x}-"
        f"{c & 0xFF:02x}{(c >> 8) & 0xFF:02x}-{(c >> 16) & 0xFF:02x}{(c >> 24) & 0xFF:02x}"
        f"0000{boot_tag & 0xFFFF:04x}}}"
    )


def logon_guid(machine: str, logon_unix: int, logon_id: int) -> str:
    """Sysmon LogonGuid: machine part, logon time, then the LogonId little-endian."""
    t = logon_unix & 0xFFFFFFFF
    lid = logon_id.to_bytes(8, "little").hex()
    return f"{{{machine}-{t & 0xFFFF:04x}-{(t >> 16) & 0xFFFF:04x}-{lid[:4]}-{lid[4:]}}}"


@dataclass(slots=True, eq=False)
class Process:
    """One process. Mutable only in its exit fields (set once by ``ProcessTable.exit``)."""

    pid: int
    guid: str
    image: str
    command_line: str
    cwd: str
    account: Account
    parent: Process | None
    started: datetime
    exit_code: int | None = None
    ended: datetime | None = None
    children: list[Process] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.image.rsplit("\\", 1)[-1]

    @property
    def alive(self) -> bool:
        return self.ended is None


class ProcessTable:
    """Allocates PIDs and GUIDs and keeps the live process tree. Thread-safe."""

    def __init__(self, hostname: str, *, rng: random.Random, boot_unix: int) -> None:
        self._machine = machine_part(hostname)
        self._rng = rng
        self._boot_tag = rng.randrange(0x1000, 0x4000) & 0xFF00
        self._counter = rng.randrange(0x40, 0x200)
        self._boot_unix = boot_unix
        self._lock = threading.Lock()
        self._live: dict[int, Process] = {}
        self._all: list[Process] = []

    @property
    def machine(self) -> str:
        return self._machine

    def _new_pid(self, fixed: int | None) -> int:
        if fixed is not None:
            return fixed
        while True:
            pid = self._rng.randrange(256, 16384) * 4
            if pid not in self._live:
                return pid

    def spawn(
        self,
        *,
        image: str,
        command_line: str,
        cwd: str,
        account: Account,
        parent: Process | None,
        started: datetime,
        pid: int | None = None,
    ) -> Process:
        """Create and register a live process (the caller logs its creation)."""
        with self._lock:
            self._counter += 1
            start_unix = int(started.timestamp())
            proc = Process(
                pid=self._new_pid(pid),
                guid=sysmon_guid(self._machine, start_unix, self._counter, self._boot_tag),
                image=image,
                command_line=command_line,
                cwd=cwd,
                account=account,
                parent=parent,
                started=started,
            )
            self._live[proc.pid] = proc
            self._all.append(proc)
            if parent is not None:
                parent.children.append(proc)
            return proc

    def exit(self, proc: Process, code: int, ended: datetime) -> bool:
        """Mark ``proc`` exited; False when it had already exited (callers log only once)."""
        with self._lock:
            if proc.ended is not None:
                return False
            proc.exit_code = code
            proc.ended = ended
            if self._live.get(proc.pid) is proc:
                del self._live[proc.pid]
            return True

    def get(self, pid: int) -> Process | None:
        with self._lock:
            return self._live.get(pid)

    def live(self) -> list[Process]:
        with self._lock:
            return list(self._live.values())

    def history(self) -> list[Process]:
        """Every process ever spawned, in creation order."""
        with self._lock:
            return list(self._all)

    def live_descendants(self, proc: Process) -> list[Process]:
        """Live descendants of ``proc``, deepest first (the order a tree kill ends them)."""
        out: list[Process] = []

        def walk(p: Process) -> None:
            for c in list(p.children):
                walk(c)
                if c.alive:
                    out.append(c)

        with self._lock:
            walk(proc)
        return out
