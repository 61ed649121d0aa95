"""The runner: plan -> (per host, in sequence) preflight, execute, collect, attribute, judge -> results.

For each target the runner opens the target once, asks the preflight once and bookmarks its
telemetry once (again after a revert), then for each planned test: checks the platform, executes
the atomic (prerequisites, command with its run marker, cleanup: all inside ``ExecuteFn``), then
polls the telemetry, each poll reading only what is new since the last one (the bookmark advances
over every read, across tests), until every positive expectation is met or the test's time budget
passes; tests with must-stay-silent checks also wait a settle window after the last new event. It
keeps the events attributed to the run marker, evaluates every rule over them and judges
(``harness.verdicts.judge``). Each finished result is handed to the ``ReportSink`` at once (which
appends it and renders whole reports at most every few seconds) and to the ``RunObserver``.

Hosts run in parallel on a bounded thread pool; tests on one host run in sequence (they share the
host's logs and state). The lock shared by the hosts guards only the in-memory run record: reports
are written outside it, so no host waits for another's report writing. Every collaborator is passed
in: the runner never knows whether a target is a real lab host or the emulated one, nor how reports
look.

Ctrl-C: the first interrupt stops scheduling; a test whose command is running finishes it and its
cleanup (cleanup is never skipped), the results so far are published with ``interrupted: true``,
and ``KeyboardInterrupt`` propagates to the CLI (exit 130).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from harness.baseline import BaselineExpectations, baseline_expectations
from harness.content.labconfig import TargetConfig
from harness.detect.base import Detector, Engine, TimeWindow
from harness.errors import DetectionError, HarnessError
from harness.errortext import first_error
from harness.execution.arguments import substitute
from harness.execution.modes import ExecutionSettings
from harness.execution.transport import Transport
from harness.model import AtomicTest, CommandResult, ExecutionStatus, utcnow
from harness.plan import PlannedTest, RunPlan
from harness.results import (
    CoverageCell,
    FailureKind,
    LintRecord,
    ModelGap,
    RunResult,
    StepRecord,
    TargetInfo,
    TestResult,
    TestStatus,
)
from harness.telemetry.event import Event
from harness.verdicts import RuleOutcome, detection_checks, feature_name, judge

log = logging.getLogger(__name__)

#: Telemetry polling: first wait, growth factor and cap (adaptive; no fixed sleeps). Each poll
#: reads only new events, so polling often costs one short remote command, not a re-read.
POLL_FIRST_S = 0.02
POLL_FACTOR = 1.5
POLL_MAX_S = 0.25
#: A test whose status is decided (see ``Runner._collect``) is collected until none of its events
#: arrived for this long, or twice the host's usual lag if longer.
QUIET_MIN_S = 0.2
#: A host's telemetry tends to take as long as it took for the previous tests: after the first
#: look, the next one is at this share of that time (then back-off resumes from POLL_FIRST_S).
LAG_SHARE = 0.75
#: Must-stay-silent checks: no new event of the test for this long (at least; longer when the
#: expected events themselves took longer to arrive) before silence counts.
SETTLE_MIN_S = 0.5
#: After the budget, one more look this long later tells "too slow" from "missing".
GRACE_FRACTION = 0.25
GRACE_MAX_S = 3.0
#: Hosts run at most this many at once unless the caller says otherwise.
DEFAULT_MAX_HOSTS = 8
#: Events up to this long before the command started still count (host clock skew).
WINDOW_SLACK_S = 60.0


# ---------------------------------------------------------------------------------------- seams


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """What executing one atomic did (the runner's view of the execution lifecycle's record).

    ``steps`` are the remote commands in order with their role (prereq, get_prereq, command,
    cleanup). ``reason`` explains a skip or an error; ``cleanup_error`` is reported beside the
    test's own result and never replaces it. ``not_modelled`` are the steps of the command's process
    tree an emulated host ran outside its model (filled from ``OpenTarget.model_gaps``).
    """

    status: ExecutionStatus
    reason: str = ""
    steps: tuple[tuple[str, CommandResult], ...] = ()
    cleanup_error: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    not_modelled: tuple[ModelGap, ...] = ()

    @property
    def command(self) -> CommandResult | None:
        for role, res in self.steps:
            if role == "command":
                return res
        return None


class TestInterrupted(KeyboardInterrupt):
    """Ctrl-C while a test ran on the interrupted thread, after its cleanup finished.

    ``outcome`` is what the execution did up to the interrupt (raised by ``ExecuteFn``);
    ``result`` is the test's INTERRUPTED result built from it (raised by ``Runner.run_test``), so
    whoever records results keeps the test and the transcripts of its command and cleanup.
    """

    __test__ = False

    def __init__(self, outcome: ExecutionOutcome | None = None, result: TestResult | None = None) -> None:
        super().__init__("interrupted")
        self.outcome = outcome
        self.result = result


class ExecuteFn(Protocol):
    """Runs one atomic test on a transport: prerequisites, command (with ``marker``), cleanup."""

    def __call__(
        self,
        transport: Transport,
        test: AtomicTest,
        *,
        args: Mapping[str, str],
        marker: str,
        get_prereqs: bool,
        timeout: float,
        settings: ExecutionSettings | None = None,
    ) -> ExecutionOutcome: ...


class TelemetrySource(Protocol):
    """Events of one host after a bookmark (e.g. ``wevtutil qe`` over the host's transport)."""

    def bookmark(self) -> Any: ...

    def events_after(self, bookmark: Any) -> Iterable[Event]: ...

    def advanced(self, bookmark: Any, events: Sequence[Event]) -> Any:
        """``bookmark`` moved past ``events`` (what ``events_after(bookmark)`` returned)."""
        ...


@dataclass(frozen=True, slots=True)
class AttributedEvents:
    """The events that belong to one test run, in time order."""

    events: tuple[Event, ...]
    root_found: bool
    excluded: int = 0


class AttributeFn(Protocol):
    def __call__(self, events: Sequence[Event], *, marker: str, window: TimeWindow) -> AttributedEvents: ...


class PreflightLike(Protocol):
    """``harness.lab.preflight.PreflightReport`` as the runner uses it."""

    @property
    def features(self) -> Mapping[Any, bool]: ...
    @property
    def facts(self) -> Mapping[str, str]: ...
    @property
    def problems(self) -> list[str]: ...


@dataclass
class OpenTarget:
    """A connected target: its transport, how to read its telemetry, and how to release it.

    ``make_source`` builds the telemetry source over a given transport: the runner passes its
    round-trip-counting wrapper, so telemetry queries count as harness overhead too.
    ``model_gaps`` (an emulated host only) returns the steps of the process tree rooted at the
    command carrying a run marker that the host ran outside its model.
    """

    config: TargetConfig
    transport: Transport
    make_source: Callable[[Transport], TelemetrySource]
    emulated: bool = False
    preflight: Callable[[], PreflightLike] | None = None
    close: Callable[[], None] = field(default=lambda: None)
    model_gaps: Callable[[str], Sequence[ModelGap]] | None = None
    #: Why this target's telemetry is not collected (a Linux target without Sysmon for Linux), or
    #: None. Its executed tests are judged on their exit code alone and end INCONCLUSIVE at best.
    telemetry_note: str | None = None


class TargetFactory(Protocol):
    def open(self, target: TargetConfig) -> OpenTarget:
        """Connect to ``target``. Raises TransportError/CredentialError when it cannot."""
        ...


class TargetReset(Protocol):
    """Returns a target to its baseline before each test (``atomiclab run --revert-each``).

    ``reset`` restores the machine (e.g. a Vagrant snapshot); the runner then reconnects (a revert
    kills every shell) and runs the preflight again, and ``after_reconnect`` re-syncs what a revert
    leaves stale (the guest clock). Record ids jump back too: the runner bookmarks after the reset.
    """

    def reset(self, target: TargetConfig) -> None: ...

    def after_reconnect(self, transport: Transport) -> None: ...


class ReportSink(Protocol):
    """Where results and evidence go as the run proceeds (see ``harness.reporting.base``)."""

    def add_events(self, result_key: str, guid: str, events: Sequence[Event]) -> int:
        """Append a test's events to the evidence; returns the 1-based line of the first one."""
        ...

    def add_transcript(self, target: str, guid: str, role: str, result: CommandResult) -> str:
        """Write one command's transcript; returns its path relative to the report directory."""
        ...

    def add_result(self, run: RunResult, result: TestResult) -> None:
        """Record a finished test (``run`` already includes it): append it to the result stream at
        once; whole reports may be rendered now or later. Called outside the run's lock, from any
        host's thread; must not make one host wait for another's rendering."""
        ...

    def publish(self, run: RunResult) -> None:
        """(Re)write every report for ``run`` atomically (the start and the end of a run)."""
        ...


class RunObserver(Protocol):
    """Progress callbacks (the console). Called from worker threads; must be thread-safe."""

    def host_started(self, target: str, total: int) -> None: ...
    def test_started(self, target: str, test: AtomicTest) -> None: ...
    def test_finished(self, result: TestResult) -> None: ...
    def host_finished(self, target: str) -> None: ...


class CoverageJudge(Protocol):
    """``run --rules``: the rules tagged with a technique, judged over one test's events
    (``harness.coverage.RuleLibrary``). Never changes the test's status."""

    def judge(self, technique: str, events: Sequence[Event]) -> tuple[CoverageCell, ...]: ...


class NullObserver:
    """An observer that shows nothing."""

    def host_started(self, target: str, total: int) -> None:
        return None

    def test_started(self, target: str, test: AtomicTest) -> None:
        return None

    def test_finished(self, result: TestResult) -> None:
        return None

    def host_finished(self, target: str) -> None:
        return None


# ---------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RuleSet:
    """The rules a run judges: loaded detectors, why the others cannot run, and lint findings.

    ``not_judged`` are rules only linted (the published upstream queries): their findings are in
    ``lint`` so every report states the published query's defects, but no verdict names them.
    ``remote`` maps a tenant entry (``RULE@sumo-api``) to the rule whose expectations it copies.
    """

    detectors: Mapping[str, Detector] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    lint: Mapping[str, tuple[LintRecord, ...]] = field(default_factory=dict)
    not_judged: tuple[str, ...] = ()
    remote: Mapping[str, str] = field(default_factory=dict)

    def local(self) -> RuleSet:
        """The same rules without the tenant entries (for re-evaluation that must not search again)."""
        return replace(
            self,
            detectors={n: d for n, d in self.detectors.items() if d.engine is not Engine.SUMO_API},
            errors={n: e for n, e in self.errors.items() if n not in self.remote},
        )

    def evaluate(
        self,
        events: Sequence[Event],
        window: TimeWindow | None = None,
        *,
        remote_window: TimeWindow | None = None,
    ) -> dict[str, RuleOutcome]:
        """Every rule over ``events``; a rule failing at run time becomes an outcome with the error.

        Tenant rules (engine ``sumo-api``) search the tenant over ``remote_window`` (else
        ``window``); whatever goes wrong there becomes the outcome's error, never an exception.
        """
        out: dict[str, RuleOutcome] = {name: RuleOutcome(name, error=err) for name, err in self.errors.items()}
        for name, det in self.detectors.items():
            remote = det.engine is Engine.SUMO_API
            span = (remote_window or window) if remote else window
            try:
                out[name] = RuleOutcome(name, result=det.evaluate(events, span))
            except DetectionError as exc:
                out[name] = RuleOutcome(name, error=str(exc))
            except Exception as exc:  # a tenant's answer is foreign data: its surprises fail the verdict
                if not remote:
                    raise
                why = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
                out[name] = RuleOutcome(name, error=why)
        return out


def load_rules(
    rule_paths: Mapping[str, Path],
    *,
    load: Callable[[Path], Detector],
    lint: Callable[[Path], Sequence[Any]] | None = None,
    lint_only: Mapping[str, Path] | None = None,
) -> RuleSet:
    """Load (and lint) every rule. A rule that fails to load is kept with its error, so every
    verdict naming it fails and says why instead of the run stopping. ``lint_only`` rules are
    linted, not loaded (``RuleSet.not_judged``)."""
    detectors: dict[str, Detector] = {}
    errors: dict[str, str] = {}
    lints: dict[str, tuple[LintRecord, ...]] = {}
    only = {k: v for k, v in (lint_only or {}).items() if k not in rule_paths}
    for name, path in [*rule_paths.items(), *only.items()]:
        if name not in only:
            try:
                detectors[name] = load(path)
            except HarnessError as exc:
                errors[name] = str(exc)
        if lint is not None:
            try:
                found = lint(path)
            except HarnessError as exc:
                errors.setdefault(name, str(exc))
                found = []
            lints[name] = tuple(
                LintRecord(
                    file=str(f.file),
                    line=int(f.line),
                    column=int(f.column),
                    severity=str(f.severity),
                    code=str(f.code),
                    message=str(f.message),
                )
                for f in found
            )
    return RuleSet(detectors, errors, lints, tuple(only) if lint is not None else ())


# ---------------------------------------------------------------------------------------- runner


class CountingTransport:
    """Wraps a Transport and counts its round trips (commands run), for results and the bench."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.count = 0

    @property
    def host(self) -> str:
        return self._inner.host

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.count += 1
        return self._inner.run(command_line, timeout=timeout)

    def put_file(self, local: Path, remote: str) -> None:
        self.count += 1
        self._inner.put_file(local, remote)

    def close(self) -> None:
        self._inner.close()


@dataclass
class HostContext:
    """A connected target with its preflight facts, ready to run tests in sequence."""

    opened: OpenTarget
    transport: CountingTransport
    source: TelemetrySource
    info: TargetInfo
    features: Mapping[str, bool] | None
    cursor: Any = None  # the telemetry bookmark: taken once, advanced over every read
    lag_s: float | None = None  # how long this host's telemetry took to be complete lately (EWMA)
    closed: bool = False

    def close(self) -> None:
        """Release the target once; a failing close is logged, never raised (it runs on every path)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.opened.close()
        except Exception as exc:  # cleanup must not kill the host's thread or hide results
            log.warning("closing target %s failed: %s", self.info.name, describe_error(exc))


def describe_error(exc: BaseException) -> str:
    """A HarnessError's own message; anything else (a bug, an unmapped library error) named as such."""
    if isinstance(exc, HarnessError):
        return str(exc)
    return f"internal error ({type(exc).__name__}: {exc}); a harness bug or an unmapped library error"


@dataclass
class _Shared:
    """The run result being built, guarded by a lock (hosts finish tests concurrently)."""

    run: RunResult
    lock: threading.Lock = field(default_factory=threading.Lock)


class Runner:
    """Runs a ``RunPlan``. One instance per run; ``run()`` returns the finished ``RunResult``."""

    def __init__(
        self,
        plan: RunPlan,
        *,
        targets: TargetFactory,
        execute: ExecuteFn,
        attribute: AttributeFn,
        rules: RuleSet,
        sink: ReportSink,
        observer: RunObserver | None = None,
        new_marker: Callable[[], str],
        max_hosts: int = DEFAULT_MAX_HOSTS,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        reset: TargetReset | None = None,
        coverage: CoverageJudge | None = None,
    ) -> None:
        self.plan = plan
        self.targets = targets
        self.execute = execute
        self.attribute = attribute
        self.rules = rules
        self.sink = sink
        self.observer: RunObserver = observer or NullObserver()
        self.new_marker = new_marker
        self.max_hosts = max(1, max_hosts)
        self.clock = clock
        self.monotonic = monotonic
        self.reset = reset
        self.coverage = coverage
        self.stop = threading.Event()

    # -- whole run

    def run(self, initial: RunResult) -> RunResult:
        """Run every target (in parallel, bounded) and return the run, finished or interrupted."""
        shared = _Shared(
            replace(
                initial,
                lint=dict(self.rules.lint),
                rule_errors=dict(self.rules.errors),
                lint_not_judged=self.rules.not_judged,
            )
        )
        self._publish(shared)
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_hosts, max(1, len(self.plan.targets))), thread_name_prefix="atomiclab-host"
        )
        futures: list[Future[None]] = [pool.submit(self._host, t, shared) for t in self.plan.targets]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # a bug in the runner itself surfaces, after the hosts stopped
            wait(futures)
        except KeyboardInterrupt:
            self.stop.set()
            # Let running tests finish their command and cleanup; nothing new is started.
            wait(futures)
            pool.shutdown(wait=True)
            with shared.lock:
                shared.run = shared.run.finished(interrupted=True, ended=self.clock())
            self._publish(shared)
            raise
        finally:
            self.stop.set()
            pool.shutdown(wait=True)
        for f in futures:
            f.result()
        with shared.lock:
            shared.run = shared.run.finished(interrupted=False, ended=self.clock())
        self._publish(shared)
        return shared.run

    def _publish(self, shared: _Shared) -> None:
        with shared.lock:
            run = shared.run
        self.sink.publish(run)

    def _record(self, shared: _Shared, result: TestResult) -> None:
        # The lock guards the in-memory record only: writing reports happens outside it.
        with shared.lock:
            shared.run = shared.run.with_test(result)
            run = shared.run
        self.sink.add_result(run, result)
        self.observer.test_finished(result)

    # -- one host

    def _host(self, target: TargetConfig, shared: _Shared) -> None:
        self.observer.host_started(target.name, len(self.plan.tests))
        try:
            try:
                host = self.connect(target)
            except Exception as exc:  # one unusable host never stops the others
                if not isinstance(exc, HarnessError):
                    log.debug("opening target %s failed", target.name, exc_info=True)
                self._host_failed(target, shared, f"target unusable: {describe_error(exc)}")
                return
            try:
                with shared.lock:  # reported with the host's first result (or the final render)
                    shared.run = shared.run.with_target(host.info)
                for pt in self.plan.tests:
                    if self.stop.is_set():
                        return
                    self.observer.test_started(target.name, pt.test)
                    if self.reset is not None:
                        try:
                            host = self._reset(target, host)
                        except Exception as exc:  # recorded as the test's error
                            # The machine's state is unknown now: nothing more runs on it.
                            now = self.clock()
                            reason = f"revert to baseline failed: {describe_error(exc)}"
                            self._record(
                                shared,
                                _result(pt, target.name, TestStatus.ERROR, FailureKind.HARNESS_ERROR, reason, now, now),
                            )
                            return
                    try:
                        result = self.run_test(host, pt)
                    except TestInterrupted as exc:  # only when execution runs on the interrupted thread
                        if exc.result is not None:
                            self._record(shared, exc.result)
                        raise
                    self._record(shared, result)
            finally:
                host.close()
        finally:
            self.observer.host_finished(target.name)

    def _reset(self, target: TargetConfig, host: HostContext) -> HostContext:
        """Close ``host``, restore its baseline, reconnect (with a fresh preflight) and re-sync."""
        assert self.reset is not None
        host.close()
        self.reset.reset(target)
        fresh = self.connect(target)
        self.reset.after_reconnect(fresh.transport)
        return fresh

    def _host_failed(self, target: TargetConfig, shared: _Shared, reason: str) -> None:
        info = TargetInfo(
            name=target.name,
            transport=target.transport,
            address=target.address,
            emulated=target.emulated,
            platform=target.platform,
            problems=(reason,),
        )
        with shared.lock:
            shared.run = shared.run.with_target(info)
        for pt in self.plan.tests:
            if self.stop.is_set():
                return
            now = self.clock()
            self._record(
                shared, _result(pt, target.name, TestStatus.ERROR, FailureKind.HARNESS_ERROR, reason, now, now)
            )

    def connect(self, target: TargetConfig) -> HostContext:
        """Open ``target`` and run its preflight once. Raises HarnessError (the target is closed)."""
        opened = self.targets.open(target)
        try:
            return self._prepare(opened)
        except BaseException:
            try:
                opened.close()
            except Exception as exc:  # the original failure is what matters
                log.warning("closing target %s failed: %s", target.name, describe_error(exc))
            raise

    def _prepare(self, opened: OpenTarget) -> HostContext:
        cfg = opened.config
        info = TargetInfo(
            name=cfg.name, transport=cfg.transport, address=cfg.address, emulated=opened.emulated, platform=cfg.platform
        )
        features: Mapping[str, bool] | None = None
        if opened.preflight is not None:
            report = opened.preflight()
            features = {feature_name(k): bool(v) for k, v in report.features.items()}
            facts = dict(report.facts)
            info = replace(
                info,
                os_build=facts.get("os_build") or None,
                sysmon_version=facts.get("sysmon_version") or None,
                sysmon_config_hash=facts.get("sysmon_config_hash") or None,
                audit={k: v for k, v in facts.items() if k not in ("os_build", "sysmon_version", "sysmon_config_hash")},
                features=features,
                problems=tuple(report.problems),
            )
        counting = CountingTransport(opened.transport)
        source = opened.make_source(counting)
        # One bookmark per connection: every test reads on from where the previous read ended.
        return HostContext(opened, counting, source, info, features, cursor=source.bookmark())

    def run_test(self, host: HostContext, pt: PlannedTest) -> TestResult:
        """Run one planned test on a connected host; a harness failure becomes an ERROR result."""
        before = host.transport.count
        try:
            result = self._one(host, pt)
        except TestInterrupted as exc:
            if exc.result is None and exc.outcome is not None:
                interrupted = self._interrupted(host, pt, exc.outcome)
                exc.result = replace(
                    interrupted,
                    round_trips=host.transport.count - before,
                    arguments=self.plan.arguments_for(pt.test.guid),
                )
            raise
        except Exception as exc:  # any failure is this test's ERROR, never the run's end
            if not isinstance(exc, HarnessError):
                log.debug("test %s on %s failed", pt.test.guid, host.info.name, exc_info=True)
            now = self.clock()
            reason = describe_error(exc)
            result = _result(pt, host.info.name, TestStatus.ERROR, FailureKind.HARNESS_ERROR, reason, now, now)
        return replace(
            result, round_trips=host.transport.count - before, arguments=self.plan.arguments_for(pt.test.guid)
        )

    def _interrupted(self, host: HostContext, pt: PlannedTest, outcome: ExecutionOutcome) -> TestResult:
        """The INTERRUPTED result of a test whose execution Ctrl-C stopped (its cleanup done)."""
        started = outcome.started or self.clock()
        base = _result(pt, host.info.name, TestStatus.ERROR, FailureKind.INTERRUPTED, "", started, self.clock())
        steps = self._steps(host.opened.config.name, pt.test.guid, outcome)
        roles = {s.role for s in steps}
        done = "cleanup done" if "cleanup" in roles else "no cleanup ran" if pt.test.executor.cleanup_command else ""
        reason = "interrupted (Ctrl-C) while executing" + (f" ({done})" if done else "")
        if outcome.cleanup_error:
            reason += f"; cleanup failed: {outcome.cleanup_error}"
        return replace(base, steps=steps, reason=reason)

    def _steps(self, target: str, guid: str, outcome: ExecutionOutcome) -> tuple[StepRecord, ...]:
        """Each step with its own transcript: a repeated role (one prereq per dependency) is numbered."""
        seen: dict[str, int] = {}
        records: list[StepRecord] = []
        for role, res in outcome.steps:
            seen[role] = seen.get(role, 0) + 1
            name = role if seen[role] == 1 else f"{role}-{seen[role]}"
            records.append(
                StepRecord(
                    role=role,
                    command=res.command,
                    exit_code=res.exit_code,
                    started=res.started,
                    ended=res.ended,
                    timed_out=res.timed_out,
                    transcript=self.sink.add_transcript(target, guid, name, res),
                )
            )
        return tuple(records)

    # -- one test

    def _one(self, host: HostContext, pt: PlannedTest) -> TestResult:
        cfg, test, transport = host.opened.config, pt.test, host.transport
        started = self.clock()
        if cfg.platform not in test.platforms:
            return _result(
                pt,
                cfg.name,
                TestStatus.SKIPPED,
                FailureKind.SKIPPED_PLATFORM,
                f"test supports {', '.join(test.platforms)}; target {cfg.name} is {cfg.platform}",
                started,
                self.clock(),
            )
        marker = self.new_marker()
        bookmark = host.cursor
        outcome = self.execute(
            transport,
            test,
            args=self.plan.arguments_for(test.guid),
            marker=marker,
            get_prereqs=self.plan.get_prereqs,
            timeout=self.plan.command_timeout_s,
            settings=self.plan.settings_for(cfg),
        )
        if host.opened.model_gaps is not None and not outcome.not_modelled:
            outcome = replace(outcome, not_modelled=tuple(host.opened.model_gaps(marker)))
        steps = self._steps(cfg.name, test.guid, outcome)
        base = _result(pt, cfg.name, TestStatus.ERROR, None, "", started, started)
        base = replace(base, steps=steps, marker=marker, not_modelled=outcome.not_modelled)
        if outcome.status is not ExecutionStatus.EXECUTED:
            status, kind = _SKIPS.get(outcome.status, (TestStatus.ERROR, FailureKind.HARNESS_ERROR))
            return replace(
                base, status=status, failure=kind, reason=outcome.reason or str(outcome.status), ended=self.clock()
            )
        if host.opened.telemetry_note is not None:
            return _not_collected(base, outcome, host.opened.telemetry_note, self.clock())
        try:
            return self._judge_executed(host, pt, base, outcome, bookmark, marker, started)
        except Exception as exc:  # the command ran: keep its steps and transcripts
            if not isinstance(exc, HarnessError):
                log.debug("judging %s on %s failed", test.guid, cfg.name, exc_info=True)
            reason = f"after the command ran: {describe_error(exc)}"
            if outcome.cleanup_error:
                reason += f"; cleanup failed: {outcome.cleanup_error}"
            return replace(
                base, status=TestStatus.ERROR, failure=FailureKind.HARNESS_ERROR, reason=reason, ended=self.clock()
            )

    def _judge_executed(
        self,
        host: HostContext,
        pt: PlannedTest,
        base: TestResult,
        outcome: ExecutionOutcome,
        bookmark: Any,
        marker: str,
        started: datetime,
    ) -> TestResult:
        """Collect, attribute and judge the telemetry of a test whose command ran."""
        test, features = pt.test, host.features
        command = outcome.command
        cmd_start = command.started if command is not None else started
        cmd_end = command.ended if command is not None else self.clock()
        execution_failure = _execution_failure(command)
        exit_note = _exit_note(command)
        budget = pt.budget_s(self.plan.default_budget_s)
        if pt.expectations is None:  # every test asserts telemetry: the baseline (issue 11)
            pt = replace(pt, expectations=self._baseline(pt, marker, features, budget))
        # Generous slack for clock skew: the run marker, not the window, is what selects the events.
        window = TimeWindow(start=cmd_start - timedelta(seconds=WINDOW_SLACK_S), end=None)
        exp = pt.expectations
        authored = 0 if exp is None else sum(1 for e in exp.events if e.origin != "baseline") + len(exp.detections)
        # The status cannot depend on more telemetry: the command failed, or an unmodelled step makes
        # it inconclusive, or a non-zero exit with nothing authored fails it (``verdicts.judge``).
        decided = (
            execution_failure is not None
            or bool(outcome.not_modelled)
            or (exit_note is not None and authored == 0 and not self.plan.extra_rules)
        )
        collected, attributed, on_time, wait_s, interrupted = self._collect(
            host,
            bookmark,
            pt,
            marker,
            window,
            budget_s=budget,
            since_command_end=cmd_end,
            features=features,
            decided=decided,
        )
        if interrupted:
            return replace(
                base,
                status=TestStatus.ERROR,
                failure=FailureKind.INTERRUPTED,
                reason="interrupted while collecting telemetry (cleanup done)",
                events_collected=collected,
                ended=self.clock(),
            )
        first_line = self.sink.add_events(base.key, test.guid, attributed.events)
        # A tenant searches its own data: over the test's window, up to the end of its budget.
        tenant_window = TimeWindow(window.start, cmd_end + timedelta(seconds=budget))
        rule_outcomes = self.rules.evaluate(attributed.events, None, remote_window=tenant_window)
        on_time_outcomes = None
        if on_time < len(attributed.events):
            # what the local rules returned over the events that arrived in time (too slow vs fired)
            on_time_outcomes = self.rules.local().evaluate(attributed.events[:on_time], None)
        verdict = judge(
            pt.expectations,
            attributed.events,
            rule_outcomes,
            first_line=first_line,
            on_time=on_time,
            features=features,
            extra_rules=self.plan.extra_rules,
            remote_rules=self.rules.remote,
            execution_failure=execution_failure,
            exit_note=exit_note,
            on_time_outcomes=on_time_outcomes,
            not_modelled=outcome.not_modelled,
            sysmon_config=_sysmon_config_label(host.info),
        )
        status, failure, reason = _unattributed(verdict.status, verdict.failure, verdict.reason, attributed, verdict)
        if outcome.cleanup_error:
            reason += f"; cleanup failed: {outcome.cleanup_error}"
        return replace(
            base,
            status=status,
            failure=failure,
            reason=reason,
            event_verdicts=verdict.event_verdicts,
            detection_verdicts=verdict.detection_verdicts,
            findings=verdict.findings,
            events_collected=collected,
            events_attributed=len(attributed.events),
            telemetry_wait_s=wait_s,
            coverage=self.coverage.judge(test.technique, attributed.events) if self.coverage is not None else (),
            ended=self.clock(),
        )

    def _baseline(
        self, pt: PlannedTest, marker: str, features: Mapping[str, bool] | None, budget: float
    ) -> BaselineExpectations | None:
        """The baseline expectations of a test no expectations file covers (None: none applies)."""
        test = pt.test
        command: str | None = None
        if test.executor.command:
            try:
                args = self.plan.arguments_for(test.guid)
                command = substitute(test.executor.command, test, test.executor.name, args)
            except HarnessError:  # it ran, so this cannot fail; the root is expected regardless
                command = None
        return baseline_expectations(
            test.guid, test.executor.name, command, marker=marker, features=features, time_budget_s=budget
        )

    def _collect(
        self,
        host: HostContext,
        bookmark: Any,
        pt: PlannedTest,
        marker: str,
        window: TimeWindow,
        *,
        budget_s: float,
        since_command_end: datetime,
        features: Mapping[str, bool] | None = None,
        decided: bool = False,
    ) -> tuple[int, AttributedEvents, int, float | None, bool]:
        """Poll until every positive expectation is met or the budget passes.

        ``decided``: the test's status no longer depends on its telemetry (see ``_judge_executed``):
        nothing is awaited, the events are collected until none of the test's arrived for a quiet
        window (``QUIET_MIN_S``, or twice the host's usual lag) and judged as they are.

        Positive expectations are the expected events and the rules that must fire (local rules,
        evaluated over what arrived so far). A test with negative expectations (a ``max_count``, a
        rule that must stay silent) also waits until no new event of the test arrived for the
        settle window (``SETTLE_MIN_S``, or as long as the expected events took if longer), so a
        false positive on a child process logged a moment later is not missed. Each poll reads
        only what is new; ``host.cursor`` ends past everything read.

        Returns (events collected, attributed events ordered on-time first, how many arrived in
        time, seconds from command end until everything was met or None, interrupted).
        """
        source = host.source
        start = self.monotonic()
        lag = max(0.0, (self.clock() - since_command_end).total_seconds())
        deadline = start + max(0.0, budget_s - lag)
        delay = POLL_FIRST_S
        collected: list[Event] = []
        cursor = bookmark

        def poll() -> bool:
            """Read what is new; True when something was."""
            nonlocal cursor
            new = list(source.events_after(cursor))
            if new:
                collected.extend(new)
                cursor = source.advanced(cursor, new)
            host.cursor = cursor
            return bool(new)

        attributed = AttributedEvents((), False)
        settle = _has_negative(pt)
        met_after: float | None = None  # seconds from command end until the positive ones were met
        last_new = start
        met = False
        judged = False
        while True:
            if poll() or not judged:  # nothing new: the same events, the same answer
                judged = True
                before = len(attributed.events)
                attributed = self.attribute(collected, marker=marker, window=window)
                now = self.monotonic()
                if len(attributed.events) != before:
                    last_new = now
                met = _satisfied(pt, attributed, features) and self._rules_fired(pt, attributed)
                if met and met_after is None:
                    met_after = lag + now - start
                    host.lag_s = met_after if host.lag_s is None else (host.lag_s + met_after) / 2
            now = self.monotonic()
            if decided and not met and now - last_new >= max(QUIET_MIN_S, 2 * (host.lag_s or 0.0)):
                return len(collected), attributed, len(attributed.events), None, False
            if met and met_after is not None:
                quiet = now - last_new
                window_s = max(SETTLE_MIN_S, met_after)
                if not settle or quiet >= window_s:
                    return len(collected), attributed, len(attributed.events), met_after, False
                delay = min(delay, max(0.0, window_s - quiet))
            if now >= deadline:
                break
            wait_s = delay
            since_end = lag + now - start
            if not met and host.lag_s is not None and since_end + delay < LAG_SHARE * host.lag_s:
                wait_s = LAG_SHARE * host.lag_s - since_end  # nothing to see before then, most likely
                delay = POLL_FIRST_S
            else:
                delay = min(max(delay, POLL_FIRST_S) * POLL_FACTOR, POLL_MAX_S)
            if self.stop.wait(min(wait_s, deadline - now)):
                return len(collected), attributed, len(attributed.events), None, True
        # One late look: events that only arrive after the budget make the test "too slow", not "missing".
        on_time_keys = {_key(e) for e in attributed.events}
        if self.stop.wait(min(GRACE_MAX_S, budget_s * GRACE_FRACTION)):
            return len(collected), attributed, len(attributed.events), None, True
        poll()
        late = self.attribute(collected, marker=marker, window=window)
        first = [e for e in late.events if _key(e) in on_time_keys]
        rest = [e for e in late.events if _key(e) not in on_time_keys]
        ordered = AttributedEvents((*first, *rest), late.root_found, late.excluded)
        return len(collected), ordered, len(first), None, False

    def _rules_fired(self, pt: PlannedTest, attributed: AttributedEvents) -> bool:
        """True when every named local rule that must fire has a matching row over ``attributed``.

        A rule that cannot run (or fails here) cannot be waited for: the final evaluation reports it.
        Tenant rules are searched once, after collection, never polled.
        """
        if pt.expectations is None:
            return True
        # Only the rules the expectations name: a ``--rule`` extra (e.g. the published query) that
        # never fires must not make every test wait out its budget.
        wanted = [c for c in detection_checks(pt.expectations) if c.fires]
        for check in wanted:
            det = self.rules.detectors.get(check.rule)
            if det is None or det.engine is Engine.SUMO_API:
                continue
            try:
                rows = det.evaluate(attributed.events, None).rows
            except Exception:  # judged (and reported) after collection
                log.debug("rule %s failed while polling", check.rule, exc_info=True)
                continue
            if not any(check.where is None or check.where.matches(_row_fields(r)) for r in rows):
                return False
        return True


_SKIPS: dict[ExecutionStatus, tuple[TestStatus, FailureKind]] = {
    ExecutionStatus.SKIPPED_MANUAL: (TestStatus.SKIPPED, FailureKind.SKIPPED_MANUAL),
    ExecutionStatus.SKIPPED_PREREQ: (TestStatus.SKIPPED, FailureKind.SKIPPED_PREREQ),
    ExecutionStatus.SKIPPED_PLATFORM: (TestStatus.SKIPPED, FailureKind.SKIPPED_PLATFORM),
    ExecutionStatus.SKIPPED_ELEVATION: (TestStatus.SKIPPED, FailureKind.SKIPPED_ELEVATION),
    ExecutionStatus.PREREQS_MET: (TestStatus.SKIPPED, FailureKind.SKIPPED_MODE),
    ExecutionStatus.CLEANED_UP: (TestStatus.SKIPPED, FailureKind.SKIPPED_MODE),
    ExecutionStatus.ERROR: (TestStatus.ERROR, FailureKind.HARNESS_ERROR),
}


def _key(e: Event) -> tuple[str, int, int | None, datetime]:
    return (e.channel, e.event_id, e.record_id, e.time)


def _sysmon_config_label(info: TargetInfo) -> str | None:
    """``<config file> SHA256=<hash>`` from the host's preflight, or None when unknown."""
    source = str(info.audit.get("sysmon_config_file") or "")
    if not source and not info.sysmon_config_hash:
        return None
    return f"{source or '?'} SHA256={info.sysmon_config_hash or '?'}"


def _satisfied(pt: PlannedTest, attributed: AttributedEvents, features: Mapping[str, bool] | None) -> bool:
    """True when the test's own process was seen and every positive event expectation is met.

    Negative expectations (``max_count`` limits, rules that must stay silent) cannot be "met early",
    so waiting only for the positive ones and the root process is what lets polling stop. An
    expectation needing a lab feature the preflight reports off cannot be met at all: waiting for
    it would only burn the time budget before the same "lab misconfigured" verdict.
    """
    if not attributed.root_found:
        return False
    if pt.expectations is None:
        return True
    for exp in pt.expectations.events:
        if exp.min_count <= 0:
            continue
        if features is not None and any(not features.get(feature_name(f), True) for f in exp.requires):
            continue
        n = sum(
            1
            for e in attributed.events
            if e.channel == exp.channel and e.event_id == exp.event_id and exp.where.matches(e.fields)
        )
        if n < exp.min_count:
            return False
    return True


def _has_negative(pt: PlannedTest) -> bool:
    """Whether the test has expectations that only the absence of (more) events can meet."""
    exp = pt.expectations
    if exp is None:
        return False
    return any(e.max_count is not None for e in exp.events) or any(not d.fires for d in exp.detections)


def _row_fields(row: Mapping[str, object]) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in row.items()}


def _unattributed(
    status: TestStatus, failure: FailureKind | None, reason: str, attributed: AttributedEvents, verdict: Any
) -> tuple[TestStatus, FailureKind | None, str]:
    """A test whose run marker's process never showed up cannot pass on the evidence of nothing.

    With expectations declared, a would-be pass becomes ``telemetry_missing``; a test without any
    (passing on execution alone) and a failed one keep their status, with the fact stated.
    """
    if attributed.root_found:
        return status, failure, reason
    note = "the run marker's process was not found in the telemetry"
    judged = len(verdict.event_verdicts) + len(verdict.detection_verdicts)
    if status is TestStatus.PASSED and judged:
        why = f"{note}: no event could be attributed to this test, so its expectations were judged on nothing"
        return TestStatus.FAILED, FailureKind.TELEMETRY_MISSING, f"{why}; {reason}"
    return status, failure, f"{reason}; {note}"


def _not_collected(base: TestResult, outcome: ExecutionOutcome, note: str, ended: datetime) -> TestResult:
    """An executed test on a target whose telemetry is not collected: FAILED when the command
    certainly failed or exited non-zero, else INCONCLUSIVE (nothing was observed to prove it)."""
    command = outcome.command
    failure = _execution_failure(command) or _exit_note(command)
    if failure is not None:
        return replace(base, status=TestStatus.FAILED, failure=FailureKind.EXECUTION_FAILED,
                       reason=f"{failure}; telemetry {note}", ended=ended)
    return replace(base, status=TestStatus.INCONCLUSIVE, failure=FailureKind.TELEMETRY_NOT_COLLECTED,
                   reason=f"command exited 0; telemetry {note}", ended=ended)


def _execution_failure(command: CommandResult | None) -> str | None:
    """Why the command certainly failed (never ran, overran its deadline), or None."""
    if command is None:
        return "the command did not run"
    if command.timed_out:
        return f"command timed out after {command.duration_s:.1f}s and was terminated"
    return None


def _exit_note(command: CommandResult | None) -> str | None:
    """A non-zero exit code with the first meaningful error line that explains it, or None."""
    if command is None or command.exit_code in (0, None):
        return None
    why = first_error(command.stderr, command.stdout)
    return f"exit code {command.exit_code}" + (f": {why}" if why else "")


def _result(
    pt: PlannedTest,
    target: str,
    status: TestStatus,
    failure: FailureKind | None,
    reason: str,
    started: datetime,
    ended: datetime,
) -> TestResult:
    t = pt.test
    return TestResult(
        guid=t.guid,
        name=t.name,
        technique=t.technique,
        target=target,
        status=status,
        failure=failure,
        reason=reason,
        started=started,
        ended=ended,
        executor=str(t.executor.name),
        benign=pt.benign,
        source=t.source,
    )


# ------------------------------------------------------------------------------------ evaluate


def find_markers(events: Sequence[Event], pattern: Callable[[str], str | None]) -> list[str]:
    """Run markers carried by process-creation command lines (Sysmon 1, Security 4688), in order."""
    out: list[str] = []
    for e in events:
        if e.event_id in (1, 4688):
            m = pattern(e.get("CommandLine") or "")
            if m is not None and m not in out:
                out.append(m)
    return out


def evaluate_capture(
    initial: RunResult,
    tests: Sequence[PlannedTest],
    events: Sequence[Event],
    *,
    capture: TargetInfo,
    rules: RuleSet,
    sink: ReportSink,
    attribute: AttributeFn,
    markers: Sequence[str] = (),
    extra_rules: Sequence[str] = (),
    observer: RunObserver | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> RunResult:
    """The same judgement as a run, over recorded telemetry, executing nothing.

    Attribution: when the capture carries run markers, the events of each marker's process tree
    are judged (one result per test x marker); otherwise the whole capture is the test's evidence.
    No time budget applies (the capture's timing is history).
    """
    obs: RunObserver = observer or NullObserver()
    shared = _Shared(
        replace(
            initial,
            targets=(capture,),
            lint=dict(rules.lint),
            rule_errors=dict(rules.errors),
            lint_not_judged=rules.not_judged,
        )
    )
    obs.host_started(capture.name, len(tests))
    groups: list[tuple[str | None, AttributedEvents]] = []
    if markers:
        for m in markers:
            groups.append((m, attribute(events, marker=m, window=TimeWindow())))
    else:
        groups.append((None, AttributedEvents(tuple(events), True, 0)))
    cache: dict[int, tuple[int, dict[str, RuleOutcome]]] = {}
    try:
        for pt in tests:
            for n, (marker, group) in enumerate(groups):
                obs.test_started(capture.name, pt.test)
                started = clock()
                target = capture.name if len(groups) == 1 else f"{capture.name}#{n + 1}"
                base = replace(_result(pt, target, TestStatus.ERROR, None, "", started, started), marker=marker)
                if n not in cache:
                    # one evidence block per capture group, shared by every test judged on it ("*")
                    first = sink.add_events(f"{target}::capture", "*", group.events)
                    cache[n] = (first, rules.evaluate(group.events, None))
                first_line, outcomes = cache[n]
                expectations = pt.expectations
                if expectations is None and marker is not None:  # the root carrying the marker, at least
                    test = pt.test
                    expectations = baseline_expectations(
                        test.guid, test.executor.name, None, marker=marker, features=None, time_budget_s=0.0
                    )
                v = judge(
                    expectations,
                    group.events,
                    outcomes,
                    first_line=first_line,
                    extra_rules=extra_rules,
                    remote_rules=rules.remote,
                )
                status, failure, reason = _unattributed(v.status, v.failure, v.reason, group, v)
                result = replace(
                    base,
                    status=status,
                    failure=failure,
                    reason=reason,
                    event_verdicts=v.event_verdicts,
                    detection_verdicts=v.detection_verdicts,
                    findings=v.findings,
                    events_collected=len(events),
                    events_attributed=len(group.events),
                    ended=clock(),
                )
                with shared.lock:
                    shared.run = shared.run.with_test(result)
                    run = shared.run
                sink.add_result(run, result)
                obs.test_finished(result)
    except KeyboardInterrupt:
        with shared.lock:
            shared.run = shared.run.finished(interrupted=True, ended=clock())
            sink.publish(shared.run)
        raise
    finally:
        obs.host_finished(capture.name)
    with shared.lock:
        shared.run = shared.run.finished(ended=clock())
        sink.publish(shared.run)
    return shared.run
