"""Attribution: which events a test run caused, by process lineage from the run's root process.

The root is the process-creation event (Sysmon 1 or Security 4688) whose command line carries the
run marker the executor appends (or that an explicit predicate / pid selects). From it, the process
tree is grown in time order:
 * Sysmon: a process whose ParentProcessGuid is a tree process's ProcessGuid joins the tree;
 * Security 4688 (no GUIDs): a process whose parent pid is the pid of a tree process joins the tree
   only if that tree process was the *latest* process created with that pid before the child and
   had not exited (PIDs are reused by Windows, so time order decides);
 * a Sysmon 1 and a 4688 for the same process (same pid and image within ``grace``) are one process.
Events of the test are then: creations/terminations of tree processes; Sysmon events whose
ProcessGuid (SourceProcessGuid for access events) is a tree process; PowerShell events whose
Execution ProcessID is a tree pid within that process's lifetime (4104 has no ProcessGuid); classic
"Windows PowerShell" events (Execution ProcessID is 0 there) whose HostApplication is a tree
PowerShell's command line, and every classic event with the same HostId.
The harness's own activity never counts: its host processes (``wsmprovhost.exe``, ``winrshost.exe``)
can never enter the tree, and its queries (wevtutil, hostname, whoami) are their siblings, not
descendants of the root.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from harness.detect.base import TimeWindow
from harness.telemetry.channels import (
    ProcessRef,
    actor_guid,
    basename,
    classic_powershell_of,
    command_line_key,
    exit_of,
    process_of,
)
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SYSMON, WINDOWS_POWERSHELL, Event

#: Images of the processes through which the harness runs commands (WinRM PSRP / WinRS hosts).
HARNESS_HOST_IMAGES = frozenset({"wsmprovhost.exe", "winrshost.exe"})
_POWERSHELL_IMAGES = frozenset({"powershell.exe", "pwsh.exe", "powershell_ise.exe"})

RootPredicate = Callable[[ProcessRef], bool]


@dataclass(frozen=True, slots=True)
class Attribution:
    """The events a test run caused.

    ``root`` is the earliest root process (None when no root was found: then nothing is attributed),
    ``processes`` the tree in start order (root included), ``events`` the attributed events in time
    order, ``excluded_count`` how many of the input events were not attributed.
    """

    root: ProcessRef | None
    processes: tuple[ProcessRef, ...]
    events: tuple[Event, ...]
    excluded_count: int

    @property
    def found(self) -> bool:
        return self.root is not None


@dataclass(slots=True)
class _Node:
    ref: ProcessRef
    in_tree: bool
    guid: str | None
    end: datetime | None = None
    events: list[Event] = field(default_factory=list)


def same_host(a: str, b: str) -> bool:
    """Host names compared case-insensitively on their first label (``Server002`` equals
    ``server002.lab.local``), since exporters differ on FQDN vs short name."""
    return _host_key(a) == _host_key(b)


def marker_predicate(marker: str) -> RootPredicate:
    """Root predicate: the command line contains the run marker."""
    return lambda ref: marker in ref.command_line


def attribute(
    events: Sequence[Event],
    *,
    marker: str | None = None,
    root: RootPredicate | None = None,
    root_pids: Collection[int] | None = None,
    window: TimeWindow | None = None,
    computer: str | None = None,
    host_images: Collection[str] = HARNESS_HOST_IMAGES,
    grace: timedelta = timedelta(seconds=2),
) -> Attribution:
    """Attribute ``events`` to the test run rooted at the process selected by ``marker`` (its command
    line contains it), ``root`` (a predicate over ProcessRef) or ``root_pids``; any one of them
    selects a root. Only events on ``computer`` (when given) and inside ``window`` (when given) are
    considered. Raises ValueError when no root selector is given.
    """
    if marker is None and root is None and not root_pids:
        raise ValueError("attribute() needs marker, root or root_pids to find the root process")
    hosts = {h.lower() for h in host_images}
    considered = [
        e
        for e in events
        if (computer is None or same_host(e.computer, computer)) and (window is None or window.contains(e.time))
    ]

    def is_root(ref: ProcessRef) -> bool:
        if basename(ref.image) in hosts:
            return False
        if marker is not None and marker in ref.command_line:
            return True
        if root is not None and root(ref):
            return True
        return bool(root_pids) and ref.pid is not None and ref.pid in root_pids  # type: ignore[operator]

    tree, by_guid = _grow_tree(considered, is_root, hosts, grace)
    if not tree:
        return Attribution(root=None, processes=(), events=(), excluded_count=len(events))
    result = [e for node in tree for e in node.events]
    result += _related_events(considered, tree, by_guid, grace)
    result.sort(key=lambda ev: ev.time)
    processes = tuple(node.ref for node in sorted(tree, key=lambda n: n.ref.time))
    roots = [node.ref for node in tree if is_root(node.ref)]
    return Attribution(
        root=min(roots, key=lambda r: r.time) if roots else processes[0],
        processes=processes,
        events=tuple(result),
        excluded_count=len(events) - len(result),
    )


def _host_key(computer: str) -> str:
    """The host part lineage keys pids by: the first label, lower case."""
    return computer.split(".", 1)[0].lower()


def _grow_tree(
    considered: Sequence[Event], is_root: RootPredicate, hosts: Collection[str], grace: timedelta
) -> tuple[list[_Node], dict[str, _Node]]:
    """The process tree (in creation order) and its nodes by ProcessGuid, from one time-ordered pass
    over process creations and terminations: a process joins when it is a root or its parent is
    in the tree and alive. Each node keeps its own creation/termination events."""
    lifecycle: list[tuple[datetime, int, Event]] = []
    for index, e in enumerate(considered):
        ref = process_of(e)
        if ref is not None:
            lifecycle.append((ref.time, index, e))
        elif exit_of(e) is not None:
            lifecycle.append((e.time, index, e))
    lifecycle.sort(key=lambda item: (item[0], item[1]))

    tree: list[_Node] = []
    by_guid: dict[str, _Node] = {}
    seen_guids: set[str] = set()
    latest_by_pid: dict[tuple[str, int], _Node] = {}

    for when, _index, e in lifecycle:
        host = _host_key(e.computer)
        ref = process_of(e)
        if ref is None:
            ended = exit_of(e)
            assert ended is not None
            node = by_guid.get(ended.guid) if ended.guid else None
            if node is None and ended.pid is not None and (ended.guid is None or ended.guid not in seen_guids):
                candidate = latest_by_pid.get((host, ended.pid))
                if candidate is not None and candidate.end is None:
                    node = candidate
            if node is not None:
                node.end = when
                if node.in_tree:
                    node.events.append(e)
            continue

        if ref.guid:
            seen_guids.add(ref.guid)
        previous = latest_by_pid.get((host, ref.pid)) if ref.pid is not None else None
        if (
            previous is not None
            and previous.ref.source != ref.source
            and abs((previous.ref.time - ref.time).total_seconds()) <= grace.total_seconds()
            and basename(previous.ref.image) == basename(ref.image)
        ):
            # The same process reported by both Sysmon and Security.
            if previous.guid is None and ref.guid:
                previous.guid = ref.guid
                if previous.in_tree:
                    by_guid[ref.guid] = previous
            if previous.in_tree:
                previous.events.append(e)
            continue

        parent: _Node | None = None
        if ref.parent_guid and ref.parent_guid in by_guid:
            parent = by_guid[ref.parent_guid]
        elif ref.parent_pid is not None and (ref.parent_guid is None or ref.parent_guid not in seen_guids):
            candidate = latest_by_pid.get((host, ref.parent_pid))
            if candidate is not None and candidate.in_tree and (candidate.end is None or candidate.end >= when):
                parent = candidate
        in_tree = basename(ref.image) not in hosts and (parent is not None or is_root(ref))
        node = _Node(ref=ref, in_tree=in_tree, guid=ref.guid)
        if ref.pid is not None:
            latest_by_pid[(host, ref.pid)] = node
        if in_tree:
            node.events.append(e)
            tree.append(node)
            if ref.guid:
                by_guid[ref.guid] = node
    return tree, by_guid


def _related_events(
    considered: Sequence[Event], tree: Sequence[_Node], by_guid: Mapping[str, _Node], grace: timedelta
) -> list[Event]:
    """The other events of the tree's processes, in ``considered`` order: Sysmon events by the
    actor's ProcessGuid, PowerShell events by pid while the process lived, classic PowerShell
    events by HostApplication (then by the HostId of a matched one)."""
    attributed = {id(e) for node in tree for e in node.events}
    tree_pids: dict[tuple[str, int], list[_Node]] = {}
    for node in tree:
        if node.ref.pid is not None:
            tree_pids.setdefault((_host_key(node.ref.computer), node.ref.pid), []).append(node)
    powershell_keys = {
        (_host_key(node.ref.computer), command_line_key(node.ref.command_line)): node
        for node in tree
        if basename(node.ref.image) in _POWERSHELL_IMAGES
    }

    def alive(node: _Node, t: datetime) -> bool:
        return node.ref.time - grace <= t and (node.end is None or t <= node.end + grace)

    result: list[Event] = []
    classic_pending: list[Event] = []
    host_ids: set[tuple[str, str]] = set()
    for e in considered:
        if id(e) in attributed:
            continue
        host = _host_key(e.computer)
        take = False
        if e.channel == SYSMON:
            guid = actor_guid(e)
            take = guid is not None and guid in by_guid and e.event_id not in (1, 5)
        elif e.channel == POWERSHELL_OPERATIONAL and e.pid:
            take = any(alive(node, e.time) for node in tree_pids.get((host, e.pid), ()))
        elif e.channel == WINDOWS_POWERSHELL:
            if e.pid and any(alive(node, e.time) for node in tree_pids.get((host, e.pid), ())):
                take = True
            else:
                info = classic_powershell_of(e)
                if info is not None:
                    node_match = powershell_keys.get((host, command_line_key(info.host_application)))
                    if node_match is not None and alive(node_match, e.time):
                        take = True
                        if info.host_id:
                            host_ids.add((host, info.host_id))
                    else:
                        classic_pending.append(e)
        if take:
            attributed.add(id(e))
            result.append(e)
    for e in classic_pending:
        info = classic_powershell_of(e)
        if info is not None and (_host_key(e.computer), info.host_id) in host_ids:
            result.append(e)
    return result
