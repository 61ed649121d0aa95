"""Small fakes for runner/verdict tests: events, expectations, detectors, targets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.content.expectations import DetectionExpectation, EventExpectation, LabFeature, TestExpectations
from harness.content.labconfig import TargetConfig
from harness.detect.base import DetectionResult, Engine, TimeWindow
from harness.matching import Conditions
from harness.model import AtomicTest, CommandResult, ExecutionStatus, Executor, ExecutorName
from harness.runner import AttributedEvents, ExecutionOutcome, OpenTarget
from harness.telemetry.event import SECURITY, SYSMON, Event

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NMAP_GUID = "c9c5c712-9e58-4613-85f6-139cddfa1f30"
BENIGN_GUID = "00000000-0000-4000-8000-000000000001"
RULE = "detections/sumo/t1046_network_service_discovery.sumo"


def event(eid: int, channel: str = SYSMON, *, rid: int = 1, t: datetime = T0, **fields: str) -> Event:
    return Event(channel=channel, provider="p", event_id=eid, time=t, computer="WIN", fields=fields, record_id=rid,
                 raw=f"<Event><System><EventID>{eid}</EventID></System></Event>")


def nmap_events(marker: str = "atomiclab_run_" + "0" * 32) -> list[Event]:
    return [
        event(1, rid=10, Image=r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
              CommandLine=f'"powershell.exe" & {{& nmap.exe -sV}} # {marker}'),
        event(1, rid=11, Image=r"C:\Program Files (x86)\Nmap\nmap.exe", CommandLine="nmap.exe -sV -p 22,80 127.0.0.1"),
        event(3, rid=12, Image=r"C:\Program Files (x86)\Nmap\nmap.exe", DestinationPort="80"),
        event(4688, SECURITY, rid=99, NewProcessName=r"C:\Program Files (x86)\Nmap\nmap.exe"),
    ]


def nmap_expectations(budget: float = 5.0) -> TestExpectations:
    return TestExpectations(
        guid=NMAP_GUID,
        name="Nmap service scan of the local host",
        time_budget_s=budget,
        events=(
            EventExpectation("nmap-proc", "nmap process", SYSMON, 1,
                             Conditions.parse({"Image|endswith": "\\nmap.exe"}), requires=(LabFeature.SYSMON,)),
            EventExpectation("nmap-net", "nmap connections", SYSMON, 3,
                             Conditions.parse({"Image|endswith": "\\nmap.exe"}),
                             requires=(LabFeature.SYSMON, LabFeature.SYSMON_NETWORK)),
        ),
        detections=(DetectionExpectation(RULE, True, Conditions.parse({"detection_type": "KnownScanningTool"})),),
    )


def benign_expectations(known_fp: str | None = None) -> TestExpectations:
    return TestExpectations(
        guid=BENIGN_GUID, name="benign", time_budget_s=5.0,
        detections=(DetectionExpectation(RULE, False, Conditions(), known_false_positive=known_fp),),
    )


def atomic(guid: str = NMAP_GUID, name: str = "Nmap service scan of the local host", *,
           source: str = "atomics/T1046/T1046.yaml", platforms: tuple[str, ...] = ("windows",)) -> AtomicTest:
    return AtomicTest(technique="T1046", name=name, guid=guid, description="d", platforms=platforms,
                      executor=Executor(ExecutorName.POWERSHELL, "nmap.exe -sV", "Remove-Item x"), source=source)


@dataclass
class FakeDetector:
    """Fires one row per Sysmon 1 / 4688 event whose image ends with nmap.exe (KnownScanningTool)."""

    rule_id: str = RULE
    engine: Engine = Engine.SUMO_LOCAL
    calls: int = 0

    def evaluate(self, events: Iterable[Event], window: TimeWindow | None = None) -> DetectionResult:
        self.calls += 1
        evs = list(events)
        rows: list[Mapping[str, object]] = []
        src: dict[int, tuple[int, ...]] = {}
        for i, e in enumerate(evs):
            image = e.get("Image") or e.get("NewProcessName") or ""
            if e.event_id in (1, 4688) and image.lower().endswith("nmap.exe"):
                src[len(rows)] = (i,)
                rows.append({"image_path": image, "detection_type": "KnownScanningTool", "suspicion_score": 2})
        return DetectionResult(self.rule_id, self.engine, tuple(rows), len(evs), 0.0, src)


def marker_attribution(events: Sequence[Event], *, marker: str, window: TimeWindow) -> AttributedEvents:
    """Fake attribution: the root is the event carrying the marker; everything after it belongs."""
    for i, e in enumerate(events):
        if marker in (e.get("CommandLine") or ""):
            return AttributedEvents(tuple(events[i:]), True, i)
    return AttributedEvents((), False, len(events))


@dataclass
class FakeSource:
    """Telemetry that appears ``delay_polls`` polls after the command ran.

    A host's log: on each poll, whatever ``produce(marker)`` returns that is not logged yet is
    appended; a bookmark is a position in the log (as record ids are on a host)."""

    produce: Any  # callable(marker) -> list[Event]
    delay_polls: int = 0
    polls: int = 0
    marker: str | None = None
    log: list[Event] = field(default_factory=list)
    logged: list[Event] = field(default_factory=list)  # what the current execution put in the log

    def start(self, marker: str) -> None:
        """A command carrying ``marker`` ran: its events go to the log from the next poll on."""
        self.marker = marker
        self.logged = []

    def bookmark(self) -> int:
        return len(self.log)

    def events_after(self, bookmark: Any) -> list[Event]:
        self.polls += 1
        if self.marker is not None and self.polls > self.delay_polls:
            new = [e for e in self.produce(self.marker) if e not in self.logged]
            self.logged.extend(new)
            self.log.extend(new)
        return self.log[bookmark:]

    def advanced(self, bookmark: Any, events: Sequence[Event]) -> int:
        return int(bookmark) + len(events)


@dataclass
class FakeTransport:
    host: str = "fake"
    commands: list[str] = field(default_factory=list)

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.commands.append(command_line)
        return CommandResult(command_line, 0, "", "", T0, T0)

    def put_file(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


@dataclass
class FakeExecute:
    """Executes by telling the source the marker (as if the host logged the command)."""

    source: FakeSource
    status: ExecutionStatus = ExecutionStatus.EXECUTED
    exit_code: int = 0
    reason: str = ""
    calls: list[str] = field(default_factory=list)

    def __call__(self, transport: Any, test: AtomicTest, *, args: Mapping[str, str], marker: str,
                 get_prereqs: bool, timeout: float, settings: Any = None) -> ExecutionOutcome:
        self.calls.append(test.guid)
        transport.run(f"cmd {marker}", timeout=timeout)
        now = datetime.now(UTC)
        if self.status is not ExecutionStatus.EXECUTED:
            return ExecutionOutcome(self.status, reason=self.reason)
        self.source.start(marker)
        cmd = CommandResult(f"powershell {marker}", self.exit_code, "out", "err" if self.exit_code else "",
                            now - timedelta(milliseconds=5), now)
        cleanup = CommandResult("cleanup", 0, "", "", now, now)
        return ExecutionOutcome(ExecutionStatus.EXECUTED, steps=(("command", cmd), ("cleanup", cleanup)))


@dataclass
class FakeFactory:
    source: FakeSource
    features: Mapping[str, bool] = field(default_factory=lambda: {"sysmon": True, "sysmon_network": True})
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    fail: bool = False

    def open(self, target: TargetConfig) -> OpenTarget:
        from harness.errors import ConnectError

        if self.fail:
            raise ConnectError("connection refused", host=target.name)
        self.opened.append(target.name)
        features = self.features

        @dataclass
        class _Pre:
            features: Mapping[str, bool]
            facts: Mapping[str, str]
            problems: list[str]

        return OpenTarget(
            config=target, transport=FakeTransport(target.name), make_source=lambda _t: self.source, emulated=True,
            preflight=lambda: _Pre(features, {"os_build": "10.0.20348", "sysmon_version": "15.15"}, []),
            close=lambda: self.closed.append(target.name),
        )


def target(name: str = "emulated") -> TargetConfig:
    return TargetConfig(name=name, transport="winrm", address="127.0.0.1", port=5986, emulated=True)
