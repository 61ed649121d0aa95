"""Outcomes as data: what a run found, per target and atomic test, with every verdict's evidence.

Nothing here does I/O or judges anything (``harness.verdicts`` judges, ``harness.reporting`` writes).
Every type round-trips through plain JSON-able dicts (``to_dict`` / ``from_dict``); that dict form is
what ``results.json`` holds and what ``harness/reporting/schemas/results.schema.json`` documents.

Vocabulary:

* a *test result* ends ``passed``, ``failed``, ``inconclusive``, ``skipped`` or ``error``; a failed,
  inconclusive or errored test names its primary ``FailureKind`` and a one-line ``reason``;
* ``inconclusive`` means the evidence can neither pass nor fail the test: the emulated host ran a
  step outside its model (``not_modelled``, each step a ``ModelGap``), or nothing was asserted;
* each expected event gets an ``EventVerdict`` (the matching events as ``EvidenceRef`` lines of
  ``evidence/events.jsonl``, or a miss and why);
* each detection expectation gets a ``DetectionVerdict`` (the rule's rows, or a miss and why);
* a rule firing on benign activity that the expectations declare as a known false positive is a
  ``Finding``; it never fails the test.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

#: Version of the results.json layout; bump when keys change incompatibly.
RESULTS_FORMAT = "atomiclab.results/1"

#: Where the per-test normalized events live inside a report directory.
EVENTS_FILE = "evidence/events.jsonl"


class TestStatus(enum.StrEnum):
    """Final state of one target x atomic test."""

    __test__ = False  # not a pytest test class despite the name

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # neither proven nor disproven (an unmodelled emulated step)
    SKIPPED = "skipped"
    ERROR = "error"


class FailureKind(enum.StrEnum):
    """Why a test did not pass. One test names one primary kind; each verdict names its own."""

    EXECUTION_FAILED = "execution_failed"  # non-zero exit, tool missing, command timed out
    TELEMETRY_MISSING = "telemetry_missing"  # an expected event did not appear (channel + event id)
    TELEMETRY_UNEXPECTED = "telemetry_unexpected"  # more events than an expectation's max_count
    DETECTION_MISSED = "detection_missed"  # a rule that must fire returned no matching rows
    FALSE_POSITIVE = "false_positive"  # a rule that must stay silent fired (undeclared)
    RULE_INVALID = "rule_invalid"  # the rule cannot be run at all (syntax, unsupported feature)
    TOO_SLOW = "too_slow"  # every expectation was met, but only after the time budget
    LAB_MISCONFIGURED = "lab_misconfigured"  # a missing event needs a lab feature preflight says is off
    HARNESS_ERROR = "harness_error"  # transport or harness failure; nothing was judged
    SKIPPED_PLATFORM = "skipped_platform"
    SKIPPED_PREREQ = "skipped_prereq"
    SKIPPED_MANUAL = "skipped_manual"
    SKIPPED_ELEVATION = "skipped_elevation"  # elevation_required; the target account is not elevated
    SKIPPED_MODE = "skipped_mode"  # --check-prereqs / --cleanup: the test's command was not meant to run
    INTERRUPTED = "interrupted"
    NOT_MODELLED = "not_modelled"  # inconclusive: the emulated host ran a step outside its model
    TELEMETRY_NOT_COLLECTED = "telemetry_not_collected"  # inconclusive: the platform gives no telemetry
    NOT_ASSERTED = "not_asserted"  # inconclusive: the test had nothing to assert (no expectation at all)


#: When several verdicts fail, the test's primary kind is the first of these that occurs: a broken
#: execution explains missing telemetry, and a lab gap explains a missing event better than a rule.
FAILURE_PRECEDENCE: tuple[FailureKind, ...] = (
    FailureKind.HARNESS_ERROR,
    FailureKind.EXECUTION_FAILED,
    FailureKind.LAB_MISCONFIGURED,
    FailureKind.TELEMETRY_MISSING,
    FailureKind.TELEMETRY_UNEXPECTED,
    FailureKind.RULE_INVALID,
    FailureKind.DETECTION_MISSED,
    FailureKind.FALSE_POSITIVE,
    FailureKind.TOO_SLOW,
)


class Outcome(enum.StrEnum):
    """Outcome of one expectation."""

    MET = "met"
    MISSED = "missed"
    KNOWN_FALSE_POSITIVE = "known_false_positive"  # fired where it must not, declared as known
    NOT_JUDGED = "not_judged"  # the test never produced telemetry to judge (skipped, error)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt(v: Any) -> datetime | None:
    if v is None:
        return None
    t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _req_dt(v: Any) -> datetime:
    t = _dt(v)
    if t is None:
        raise ValueError("timestamp missing")
    return t


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """One event of the evidence: its 1-based line in ``file`` plus enough to recognise it."""

    line: int
    channel: str
    event_id: int
    record_id: int | None = None
    time: datetime | None = None
    file: str = EVENTS_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "channel": self.channel,
            "event_id": self.event_id,
            "record_id": self.record_id,
            "time": _iso(self.time),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvidenceRef:
        return cls(
            line=int(d["line"]),
            channel=str(d["channel"]),
            event_id=int(d["event_id"]),
            record_id=None if d.get("record_id") is None else int(d["record_id"]),
            time=_dt(d.get("time")),
            file=str(d.get("file") or EVENTS_FILE),
        )


@dataclass(frozen=True, slots=True)
class EventVerdict:
    """Verdict on one expected (or forbidden, ``max_count == 0``) event."""

    expectation_id: str
    description: str
    channel: str
    event_id: int
    min_count: int
    max_count: int | None
    count: int
    outcome: Outcome
    reason: str
    failure: FailureKind | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    #: For a miss: the closest candidates (same channel and id) and why each did not match.
    near_misses: tuple[str, ...] = ()
    #: ``authored`` (an expectations file) or ``baseline`` (harness.baseline: no file covers the test).
    origin: str = "authored"

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.MET, Outcome.KNOWN_FALSE_POSITIVE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.expectation_id,
            "description": self.description,
            "channel": self.channel,
            "event_id": self.event_id,
            "min_count": self.min_count,
            "max_count": self.max_count,
            "count": self.count,
            "outcome": self.outcome.value,
            "failure": None if self.failure is None else self.failure.value,
            "reason": self.reason,
            "evidence": [e.to_dict() for e in self.evidence],
            "near_misses": list(self.near_misses),
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EventVerdict:
        return cls(
            expectation_id=str(d["id"]),
            description=str(d.get("description") or ""),
            channel=str(d["channel"]),
            event_id=int(d["event_id"]),
            min_count=int(d["min_count"]),
            max_count=None if d.get("max_count") is None else int(d["max_count"]),
            count=int(d["count"]),
            outcome=Outcome(d["outcome"]),
            reason=str(d.get("reason") or ""),
            failure=None if d.get("failure") is None else FailureKind(d["failure"]),
            evidence=tuple(EvidenceRef.from_dict(e) for e in d.get("evidence") or ()),
            near_misses=tuple(str(s) for s in d.get("near_misses") or ()),
            origin=str(d.get("origin") or "authored"),
        )


@dataclass(frozen=True, slots=True)
class DetectionVerdict:
    """Verdict on one rule for one test: must it fire (``fires``) and did it, with its rows."""

    rule: str  # path relative to the content root (or as given with --rule)
    rule_id: str
    engine: str
    fires: bool
    condition: str  # the expectation's ``where`` rendered for humans ("" when none)
    outcome: Outcome
    reason: str
    failure: FailureKind | None = None
    rows: tuple[Mapping[str, Any], ...] = ()
    #: Row index -> evidence of the events that produced it (where the engine can tell).
    row_evidence: Mapping[int, tuple[EvidenceRef, ...]] = field(default_factory=dict)
    events_in: int = 0
    known_false_positive: str | None = None
    extra: bool = False  # added with --rule rather than named by the expectations

    def __post_init__(self) -> None:  # the rule's file as the rule key names it (see RunResult)
        object.__setattr__(self, "reason", _relative_to_root(self.reason, self.rule))

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.MET, Outcome.KNOWN_FALSE_POSITIVE)

    @property
    def fired(self) -> bool:
        return bool(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "rule_id": self.rule_id,
            "engine": self.engine,
            "fires": self.fires,
            "condition": self.condition,
            "outcome": self.outcome.value,
            "failure": None if self.failure is None else self.failure.value,
            "reason": self.reason,
            "fired": self.fired,
            "rows": [{str(k): _jsonable(v) for k, v in r.items()} for r in self.rows],
            "row_evidence": {str(i): [e.to_dict() for e in refs] for i, refs in self.row_evidence.items()},
            "events_in": self.events_in,
            "known_false_positive": self.known_false_positive,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DetectionVerdict:
        return cls(
            rule=str(d["rule"]),
            rule_id=str(d.get("rule_id") or d["rule"]),
            engine=str(d.get("engine") or ""),
            fires=bool(d["fires"]),
            condition=str(d.get("condition") or ""),
            outcome=Outcome(d["outcome"]),
            reason=str(d.get("reason") or ""),
            failure=None if d.get("failure") is None else FailureKind(d["failure"]),
            rows=tuple(dict(r) for r in d.get("rows") or ()),
            row_evidence={
                int(k): tuple(EvidenceRef.from_dict(e) for e in v) for k, v in (d.get("row_evidence") or {}).items()
            },
            events_in=int(d.get("events_in") or 0),
            known_false_positive=d.get("known_false_positive"),
            extra=bool(d.get("extra")),
        )


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, datetime):
        return _iso(v)
    return str(v)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth reporting that does not fail the test (a declared known false positive)."""

    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        return cls(rule=str(d["rule"]), message=str(d["message"]))


@dataclass(frozen=True, slots=True)
class ModelGap:
    """One step the emulated host ran outside its model: what it was and the process it ran in."""

    what: str  # program, cmdlet or language feature, as the emulated host names it
    process: str = ""  # image name of the process it happened in
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "process": self.process, "pid": self.pid}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelGap:
        return cls(
            what=str(d["what"]),
            process=str(d.get("process") or ""),
            pid=None if d.get("pid") is None else int(d["pid"]),
        )


def describe_gaps(gaps: Sequence[ModelGap], limit: int = 5) -> str:
    """``'iex' (powershell.exe), 'wmic.exe' (wmic.exe) and 2 more``: each distinct step once."""
    seen: list[str] = []
    for g in gaps:
        text = f"'{g.what}'" + (f" ({g.process})" if g.process else "")
        if text not in seen:
            seen.append(text)
    shown = ", ".join(seen[:limit])
    return shown + (f" and {len(seen) - limit} more" if len(seen) > limit else "")


class CoverageOutcome(enum.StrEnum):
    """One rule's outcome over one test in the ``--rules`` coverage matrix (``harness.coverage``)."""

    FIRED = "fired"
    SILENT = "silent"
    RULE_INVALID = "rule_invalid"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class CoverageCell:
    """One rule's outcome over one test's events."""

    rule: str
    title: str
    engine: str
    outcome: CoverageOutcome
    rows: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "title": self.title,
            "engine": self.engine,
            "outcome": self.outcome.value,
            "rows": self.rows,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CoverageCell:
        return cls(
            rule=str(d["rule"]),
            title=str(d.get("title") or ""),
            engine=str(d.get("engine") or ""),
            outcome=CoverageOutcome(d["outcome"]),
            rows=int(d.get("rows") or 0),
            reason=str(d.get("reason") or ""),
        )


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One remote command the test ran (prerequisite, attack command or cleanup), for evidence."""

    role: str  # prereq | get_prereq | command | cleanup
    command: str
    exit_code: int | None
    started: datetime | None = None
    ended: datetime | None = None
    timed_out: bool = False
    transcript: str | None = None  # path of the transcript file relative to the report dir
    error: str | None = None  # transport/harness error text when the step itself failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "command": self.command,
            "exit_code": self.exit_code,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "timed_out": self.timed_out,
            "transcript": self.transcript,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        return cls(
            role=str(d["role"]),
            command=str(d["command"]),
            exit_code=None if d.get("exit_code") is None else int(d["exit_code"]),
            started=_dt(d.get("started")),
            ended=_dt(d.get("ended")),
            timed_out=bool(d.get("timed_out")),
            transcript=d.get("transcript"),
            error=d.get("error"),
        )


@dataclass(frozen=True, slots=True)
class TestResult:
    """Everything known about one target x atomic test."""

    __test__ = False

    guid: str
    name: str
    technique: str
    target: str
    status: TestStatus
    reason: str
    started: datetime
    ended: datetime
    failure: FailureKind | None = None
    executor: str = ""
    marker: str | None = None
    steps: tuple[StepRecord, ...] = ()
    event_verdicts: tuple[EventVerdict, ...] = ()
    detection_verdicts: tuple[DetectionVerdict, ...] = ()
    findings: tuple[Finding, ...] = ()
    events_collected: int = 0  # events after the bookmark (before attribution)
    events_attributed: int = 0  # events judged (the test's own)
    telemetry_wait_s: float | None = None  # from command end until every expectation was met
    round_trips: int = 0  # transport commands this test cost (harness overhead measure)
    benign: bool = False
    source: str = ""  # atomics file
    #: Effective input-argument overrides (lab.yaml, then --arg): name -> value. Not secrets.
    arguments: Mapping[str, str] = field(default_factory=dict)
    #: Steps of the test's process tree the emulated host ran outside its model (inconclusive).
    not_modelled: tuple[ModelGap, ...] = ()
    #: ``run --rules``: every library rule tagged with the test's technique, and what it did.
    coverage: tuple[CoverageCell, ...] = ()

    def __post_init__(self) -> None:  # the rules' files as the rule keys name them (see RunResult)
        # a reason is one line whatever a step printed (issue 11: stray newlines broke reports)
        reason = self.reason
        if "\n" in reason or "\r" in reason:
            reason = " ".join(part.strip() for part in reason.splitlines() if part.strip())
        for rule in {v.rule for v in self.detection_verdicts}:
            reason = _relative_to_root(reason, rule)
        object.__setattr__(self, "reason", reason)

    @property
    def key(self) -> str:
        """Unique id of this result inside one run."""
        return f"{self.target}::{self.guid}"

    def missed_reasons(self) -> list[str]:
        """The reason of every expectation that was not met, events first."""
        return [v.reason for v in self.event_verdicts if not v.ok] + [
            v.reason for v in self.detection_verdicts if not v.ok
        ]

    @property
    def executed(self) -> bool:
        return any(s.role == "command" and s.exit_code is not None for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "guid": self.guid,
            "name": self.name,
            "technique": self.technique,
            "target": self.target,
            "status": self.status.value,
            "failure": None if self.failure is None else self.failure.value,
            "reason": self.reason,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "executor": self.executor,
            "marker": self.marker,
            "benign": self.benign,
            "source": self.source,
            "arguments": dict(self.arguments),
            "steps": [s.to_dict() for s in self.steps],
            "events_collected": self.events_collected,
            "events_attributed": self.events_attributed,
            "telemetry_wait_s": self.telemetry_wait_s,
            "round_trips": self.round_trips,
            "event_verdicts": [v.to_dict() for v in self.event_verdicts],
            "detection_verdicts": [v.to_dict() for v in self.detection_verdicts],
            "findings": [f.to_dict() for f in self.findings],
            "not_modelled": [g.to_dict() for g in self.not_modelled],
            "coverage": [c.to_dict() for c in self.coverage],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TestResult:
        return cls(
            guid=str(d["guid"]),
            name=str(d["name"]),
            technique=str(d["technique"]),
            target=str(d["target"]),
            status=TestStatus(d["status"]),
            failure=None if d.get("failure") is None else FailureKind(d["failure"]),
            reason=str(d.get("reason") or ""),
            started=_req_dt(d["started"]),
            ended=_req_dt(d["ended"]),
            executor=str(d.get("executor") or ""),
            marker=d.get("marker"),
            benign=bool(d.get("benign")),
            source=str(d.get("source") or ""),
            arguments={str(k): str(v) for k, v in (d.get("arguments") or {}).items()},
            steps=tuple(StepRecord.from_dict(s) for s in d.get("steps") or ()),
            events_collected=int(d.get("events_collected") or 0),
            events_attributed=int(d.get("events_attributed") or 0),
            telemetry_wait_s=d.get("telemetry_wait_s"),
            round_trips=int(d.get("round_trips") or 0),
            event_verdicts=tuple(EventVerdict.from_dict(v) for v in d.get("event_verdicts") or ()),
            detection_verdicts=tuple(DetectionVerdict.from_dict(v) for v in d.get("detection_verdicts") or ()),
            findings=tuple(Finding.from_dict(f) for f in d.get("findings") or ()),
            not_modelled=tuple(ModelGap.from_dict(g) for g in d.get("not_modelled") or ()),
            coverage=tuple(CoverageCell.from_dict(c) for c in d.get("coverage") or ()),
        )


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """A target as the run saw it; host facts are as the preflight reported them."""

    name: str
    transport: str  # winrm | ssh | file (evaluate)
    address: str
    emulated: bool
    platform: str = "windows"
    os_build: str | None = None
    sysmon_version: str | None = None
    sysmon_config_hash: str | None = None
    audit: Mapping[str, Any] = field(default_factory=dict)
    features: Mapping[str, bool] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "address": self.address,
            "emulated": self.emulated,
            "platform": self.platform,
            "os_build": self.os_build,
            "sysmon_version": self.sysmon_version,
            "sysmon_config_hash": self.sysmon_config_hash,
            "audit": {str(k): _jsonable(v) for k, v in self.audit.items()},
            "features": {str(k): bool(v) for k, v in self.features.items()},
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetInfo:
        return cls(
            name=str(d["name"]),
            transport=str(d["transport"]),
            address=str(d.get("address") or ""),
            emulated=bool(d["emulated"]),
            platform=str(d.get("platform") or "windows"),
            os_build=d.get("os_build"),
            sysmon_version=d.get("sysmon_version"),
            sysmon_config_hash=d.get("sysmon_config_hash"),
            audit=dict(d.get("audit") or {}),
            features={str(k): bool(v) for k, v in (d.get("features") or {}).items()},
            problems=tuple(str(p) for p in d.get("problems") or ()),
        )


@dataclass(frozen=True, slots=True)
class LintRecord:
    """One lint finding of a rule the run judged (``harness.detect.lint.LintFinding`` as data)."""

    file: str
    line: int
    column: int
    severity: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LintRecord:
        return cls(
            file=str(d["file"]),
            line=int(d["line"]),
            column=int(d["column"]),
            severity=str(d["severity"]),
            code=str(d["code"]),
            message=str(d["message"]),
        )


@dataclass(frozen=True, slots=True)
class ContentFile:
    """A content file the run used, with its SHA-256 (auditors check these) and the repository it
    came from (``ContentSource.path``; None outside git)."""

    path: str
    kind: str  # atomic | expectation | rule | lab | telemetry | sysmon_config (the emulated host's)
    sha256: str
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "kind": self.kind, "sha256": self.sha256}
        return out | ({"source": self.source} if self.source is not None else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContentFile:
        source = d.get("source")
        return cls(path=str(d["path"]), kind=str(d["kind"]), sha256=str(d["sha256"]),
                   source=None if source is None else str(source))


@dataclass(frozen=True, slots=True)
class ContentSource:
    """A git repository content came from (a user's Atomic Red Team checkout, this project):
    its path, the commit checked out, and whether tracked files differed from it (dirty)."""

    path: str
    commit: str | None
    dirty: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "commit": self.commit, "dirty": self.dirty}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContentSource:
        commit = d.get("commit")
        return cls(path=str(d["path"]), commit=None if commit is None else str(commit), dirty=bool(d.get("dirty")))


class RunMode(enum.StrEnum):
    RUN = "run"
    EVALUATE = "evaluate"
    PYTEST = "pytest"


def rule_file(rule: str) -> str:
    """The file part of a rule key (``detections/x.sumo@sumo-api`` -> ``detections/x.sumo``)."""
    folder, _, name = rule.replace("\\", "/").rpartition("/")
    name = name.split("@", 1)[0]
    return f"{folder}/{name}" if folder else name


def _relative_to_root(text: str, rule: str) -> str:
    """``text`` with every absolute path of ``rule``'s file (``/.../detections/x.sumo``, also after
    a space, e.g. in ``cannot run: /.../x.sumo:6:3: ...``) shortened to the rule's relative path."""
    base = rule_file(rule)
    if not base or ("/" + base) not in text.replace("\\", "/"):
        return text
    out, rest = [], text
    while True:
        flat = rest.replace("\\", "/")
        at = flat.find("/" + base)
        if at < 0:
            break
        end = at + 1 + len(base)
        begin = max(flat.rfind(" ", 0, at), flat.rfind("\t", 0, at), flat.rfind("\n", 0, at)) + 1
        token = flat[begin : at + 1]
        absolute = token.startswith("/") or (len(token) > 2 and token[1] == ":")
        if absolute and flat[end : end + 1] in ("", ":", " ", ",", ")"):
            out.append(rest[:begin] + base)
        else:
            out.append(rest[:end])
        rest = rest[end:]
    return "".join(out) + rest


def _relative_record(rule: str, record: LintRecord) -> LintRecord:
    file = _relative_to_root(record.file, rule)
    return record if file == record.file else replace(record, file=file)


def _relative_message(rule: str, message: str) -> str:
    return _relative_to_root(message, rule)


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run: who ran what where and when, and every test result so far.

    ``ended`` is None while the run is in progress (results.json is rewritten after every test, so
    a killed run leaves a valid file with ``complete: false``).
    """

    run_id: str
    mode: RunMode
    started: datetime
    harness_version: str
    operator: str
    command: tuple[str, ...] = ()
    ended: datetime | None = None
    complete: bool = False
    interrupted: bool = False
    targets: tuple[TargetInfo, ...] = ()
    tests: tuple[TestResult, ...] = ()
    content: tuple[ContentFile, ...] = ()
    content_commit: str | None = None
    #: The repositories the content files came from (provenance; see ContentSource).
    content_sources: tuple[ContentSource, ...] = ()
    lint: Mapping[str, tuple[LintRecord, ...]] = field(default_factory=dict)
    rule_errors: Mapping[str, str] = field(default_factory=dict)  # rule -> why it cannot run
    #: Rules linted but not judged (the published upstream queries): findings in ``lint``, no verdicts.
    lint_not_judged: tuple[str, ...] = ()
    #: ``run --rules``: the rule folders/files of the coverage matrix (each test's ``coverage``).
    coverage_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Findings and errors name the rule's file as the rule key does (relative to the content
        # root), not by the absolute path of the machine that ran: reports stay portable and short.
        lint = {rule: tuple(_relative_record(rule, f) for f in fs) for rule, fs in self.lint.items()}
        object.__setattr__(self, "lint", lint)
        errors = {rule: _relative_message(rule, msg) for rule, msg in self.rule_errors.items()}
        object.__setattr__(self, "rule_errors", errors)

    @property
    def emulated(self) -> bool:
        return any(t.emulated for t in self.targets)

    def counts(self) -> dict[TestStatus, int]:
        out = {s: 0 for s in TestStatus}
        for t in self.tests:
            out[t.status] += 1
        return out

    @property
    def exit_code(self) -> int:
        """0 when nothing failed or errored (skips and inconclusive tests are not failures), else 1."""
        return self.exit_code_for(strict=False)

    def exit_code_for(self, *, strict: bool) -> int:
        """``exit_code``; with ``strict`` an inconclusive test fails the run too (``--strict``)."""
        bad = {TestStatus.FAILED, TestStatus.ERROR} | ({TestStatus.INCONCLUSIVE} if strict else set())
        return 1 if any(t.status in bad for t in self.tests) else 0

    def with_test(self, result: TestResult) -> RunResult:
        """A copy with ``result`` added (replacing an earlier result with the same key)."""
        kept = tuple(t for t in self.tests if t.key != result.key)
        return replace(self, tests=(*kept, result))

    def with_target(self, target: TargetInfo) -> RunResult:
        kept = tuple(t for t in self.targets if t.name != target.name)
        return replace(self, targets=(*kept, target))

    def finished(self, *, interrupted: bool = False, ended: datetime | None = None) -> RunResult:
        return replace(
            self,
            ended=ended or datetime.now(UTC),
            complete=not interrupted,
            interrupted=interrupted,
        )

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "format": RESULTS_FORMAT,
            "run_id": self.run_id,
            "mode": self.mode.value,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "complete": self.complete,
            "interrupted": self.interrupted,
            "harness_version": self.harness_version,
            "operator": self.operator,
            "command": list(self.command),
            "emulated": self.emulated,
            "summary": {s.value: counts[s] for s in TestStatus} | {"total": len(self.tests)},
            "targets": [t.to_dict() for t in self.targets],
            "content": {
                "commit": self.content_commit,
                "files": [c.to_dict() for c in self.content],
                "sources": [s.to_dict() for s in self.content_sources],
            },
            "lint": {rule: [f.to_dict() for f in fs] for rule, fs in self.lint.items()},
            "lint_not_judged": list(self.lint_not_judged),
            "rule_errors": dict(self.rule_errors),
            "coverage_sources": list(self.coverage_sources),
            "tests": [t.to_dict() for t in self.tests],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        content = d.get("content") or {}
        return cls(
            run_id=str(d["run_id"]),
            mode=RunMode(d.get("mode") or "run"),
            started=_req_dt(d["started"]),
            ended=_dt(d.get("ended")),
            complete=bool(d.get("complete")),
            interrupted=bool(d.get("interrupted")),
            harness_version=str(d.get("harness_version") or ""),
            operator=str(d.get("operator") or ""),
            command=tuple(str(c) for c in d.get("command") or ()),
            targets=tuple(TargetInfo.from_dict(t) for t in d.get("targets") or ()),
            tests=tuple(TestResult.from_dict(t) for t in d.get("tests") or ()),
            content=tuple(ContentFile.from_dict(c) for c in content.get("files") or ()),
            content_commit=content.get("commit"),
            content_sources=tuple(ContentSource.from_dict(s) for s in content.get("sources") or ()),
            lint={str(rule): tuple(LintRecord.from_dict(f) for f in fs) for rule, fs in (d.get("lint") or {}).items()},
            rule_errors={str(k): str(v) for k, v in (d.get("rule_errors") or {}).items()},
            lint_not_judged=tuple(str(r) for r in d.get("lint_not_judged") or ()),
            coverage_sources=tuple(str(s) for s in d.get("coverage_sources") or ()),
        )


def primary_failure(kinds: Sequence[FailureKind]) -> FailureKind | None:
    """The failure kind that best explains a test, by ``FAILURE_PRECEDENCE``."""
    for k in FAILURE_PRECEDENCE:
        if k in kinds:
            return k
    return kinds[0] if kinds else None
