"""Judging one test: its expected events and detections against the evidence, as data.

``judge`` is a pure function: given the test's expectations, the events attributed to it, what each
rule returned (or why it could not run) and what the lab preflight reported, it returns one
``Judgement`` with a verdict per expectation. It does no I/O and never raises for a failed test.

Rules of judgement (issue 7):

* an expected event is met when the number of attributed events with its channel, event id and
  field conditions lies in ``[min_count, max_count]``; a shortfall is ``telemetry_missing`` unless
  the expectation ``requires`` a lab feature the preflight reports off, then ``lab_misconfigured``;
  more than ``max_count`` (``max_count: 0`` is a forbidden event) is ``telemetry_unexpected``;
  every expectation met only by events that arrived after the time budget is ``too_slow``;
* a detection with ``fires: true`` is met when the rule returned a row matching ``where``;
  ``fires: false`` is met when it returned none; a row that should not be there is a
  ``false_positive`` unless the expectation declares it a known false positive (then a finding);
* a rule that cannot run (syntax error, unsupported feature) fails every verdict that names it with
  ``rule_invalid`` and the reason, because it can neither fire nor be shown to stay silent;
* a command that timed out or never ran fails the test (``execution_failed``); a non-zero exit code
  fails it when it explains something (an expectation failed, or none is authored: the baseline
  only shows the command started), and is only noted when every authored expectation was met
  (tools such as git exit non-zero while their command line, which is what the detection reads,
  was still logged);
* rules added with ``--rule`` are judged against the same expectations as the rules of their engine
  (by file suffix) that the test names;
* a test whose process tree ran a step the emulated host does not model (``not_modelled``) cannot
  pass or fail on that evidence: it is ``inconclusive`` with kind ``not_modelled`` naming the steps,
  and the reason says what the verdict would otherwise have been; only a rule that cannot run
  (``rule_invalid``) still fails it, since that holds whatever the host did;
* a test with nothing to assert (no expectation authored, no baseline: ``harness.baseline``) is
  never passed: it is ``inconclusive`` with kind ``not_asserted``;
* a rule also run in a Sumo Logic tenant (``run --sumo-tenant``) is a separate entry
  (``RULE@sumo-api``, engine ``sumo-api``) judged against the very expectations of ``RULE``; when
  the tenant call fails, each of those verdicts fails and says why.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any, Protocol

from harness.detect.base import DetectionResult
from harness.results import (
    DetectionVerdict,
    EventVerdict,
    EvidenceRef,
    FailureKind,
    Finding,
    ModelGap,
    Outcome,
    TestStatus,
    describe_gaps,
    primary_failure,
)
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, WINDOWS_POWERSHELL, Event

#: Evidence references kept per verdict; the count is always exact, the list is for humans.
MAX_EVIDENCE = 50
#: Candidate events explained for a miss.
MAX_NEAR_MISSES = 3
#: Engine name of rule entries judged through a Sumo Logic tenant (``harness.detect.base.Engine``).
REMOTE_ENGINE = "sumo-api"


class ConditionsLike(Protocol):
    """``harness.matching.Conditions`` as the judge uses it."""

    def matches(self, fields: Mapping[str, str]) -> bool: ...

    def explain(self, fields: Mapping[str, str]) -> list[str]: ...

    def describe(self) -> str: ...


class EventExpectationLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def event_id(self) -> int: ...
    @property
    def where(self) -> ConditionsLike: ...
    @property
    def min_count(self) -> int: ...
    @property
    def max_count(self) -> int | None: ...
    @property
    def requires(self) -> Sequence[Any]: ...
    @property
    def origin(self) -> str: ...


class DetectionExpectationLike(Protocol):
    @property
    def rule(self) -> str: ...
    @property
    def fires(self) -> bool: ...
    @property
    def where(self) -> ConditionsLike: ...
    @property
    def known_false_positive(self) -> str | None: ...


class TestExpectationsLike(Protocol):
    """``harness.content.expectations.TestExpectations`` as the judge uses it."""

    @property
    def guid(self) -> str: ...
    @property
    def time_budget_s(self) -> float: ...
    @property
    def events(self) -> Sequence[EventExpectationLike]: ...
    @property
    def detections(self) -> Sequence[DetectionExpectationLike]: ...


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one rule did over a test's events: a result, or the reason it could not run."""

    rule: str
    result: DetectionResult | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DetectionCheck:
    """One detection expectation bound to the rule it is judged with (named or ``--rule`` extra)."""

    rule: str
    fires: bool
    where: ConditionsLike | None
    known_false_positive: str | None
    extra: bool = False
    #: The engine the verdict is reported under even when the rule could not run ("" = from the result).
    engine: str = ""


@dataclass(frozen=True, slots=True)
class Judgement:
    status: TestStatus
    failure: FailureKind | None
    reason: str
    event_verdicts: tuple[EventVerdict, ...]
    detection_verdicts: tuple[DetectionVerdict, ...]
    findings: tuple[Finding, ...]


def feature_name(feature: object) -> str:
    """``LabFeature.SYSMON_NETWORK`` (or its value) -> ``"sysmon_network"``."""
    value = feature.value if isinstance(feature, enum.Enum) else feature
    return str(value)


def channel_label(channel: str, event_id: int) -> str:
    """Short human name used in reasons: ``Sysmon EID 3``, ``Security EID 4688``."""
    short = {
        SYSMON: "Sysmon",
        SECURITY: "Security",
        POWERSHELL_OPERATIONAL: "PowerShell",
        WINDOWS_POWERSHELL: "Windows PowerShell",
    }.get(channel, channel)
    return f"{short} EID {event_id}"


def condition_text(where: ConditionsLike | None) -> str:
    """A condition rendered for reports; ``""`` for none or an empty condition set."""
    if where is None:
        return ""
    text = where.describe()
    return "" if text == "(any)" else text


def detection_checks(
    expectations: TestExpectationsLike | None,
    extra_rules: Sequence[str] = (),
    remote_rules: Mapping[str, str] | None = None,
) -> list[DetectionCheck]:
    """The detection expectations of a test, plus each ``--rule`` extra judged the same way.

    An extra rule copies the expectations of the named rules with the same file suffix (same
    engine: ``.sumo`` or ``.yml``); when none share it, it copies all of them. Duplicate copies
    (same fires/where/known-FP) collapse into one. ``remote_rules`` maps a tenant entry
    (``RULE@sumo-api``) to ``RULE``: the entry copies every check of ``RULE`` (named or extra).
    """
    named = [
        DetectionCheck(d.rule, d.fires, d.where, d.known_false_positive)
        for d in (expectations.detections if expectations is not None else ())
    ]
    out = list(named)
    named_rules = {c.rule for c in named}
    for extra in extra_rules:
        if extra in named_rules:
            continue
        suffix = PurePath(extra).suffix.lower()
        same = [c for c in named if PurePath(c.rule).suffix.lower() == suffix] or named
        seen: set[tuple[bool, str, str | None]] = set()
        for c in same:
            key = (c.fires, condition_text(c.where), c.known_false_positive)
            if key in seen:
                continue
            seen.add(key)
            out.append(DetectionCheck(extra, c.fires, c.where, c.known_false_positive, extra=True))
    for remote, base in (remote_rules or {}).items():
        out.extend(replace(c, rule=remote, engine=REMOTE_ENGINE) for c in list(out) if c.rule == base)
    return out


def _ref(events: Sequence[Event], i: int, first_line: int) -> EvidenceRef:
    e = events[i]
    return EvidenceRef(line=first_line + i, channel=e.channel, event_id=e.event_id, record_id=e.record_id, time=e.time)


def judge_event(
    exp: EventExpectationLike,
    events: Sequence[Event],
    *,
    first_line: int,
    on_time: int,
    features: Mapping[str, bool] | None,
    sysmon_config: str | None = None,
) -> EventVerdict:
    """Verdict on one expected event. ``events[:on_time]`` arrived within the time budget.
    ``sysmon_config`` names the host's Sysmon config (file and hash): a missing Sysmon event's reason
    names it, since the config decides what Sysmon logs."""
    candidates = [i for i, e in enumerate(events) if e.channel == exp.channel and e.event_id == exp.event_id]
    matched = [i for i in candidates if exp.where.matches(e_fields(events[i]))]
    n = len(matched)
    n_on_time = sum(1 for i in matched if i < on_time)
    label = channel_label(exp.channel, exp.event_id)
    hi = exp.max_count
    evidence = tuple(_ref(events, i, first_line) for i in matched[:MAX_EVIDENCE])
    base = EventVerdict(
        expectation_id=exp.id,
        description=exp.description,
        channel=exp.channel,
        event_id=exp.event_id,
        min_count=exp.min_count,
        max_count=hi,
        count=n,
        evidence=evidence,
        outcome=Outcome.MET,
        reason="",
        origin=exp.origin,
    )
    if hi is not None and n > hi:
        what = "forbidden event appeared" if hi == 0 else f"more events than allowed (max {hi})"
        return replace(
            base,
            outcome=Outcome.MISSED,
            failure=FailureKind.TELEMETRY_UNEXPECTED,
            reason=f"{label} ({exp.description}): {what}: {n} matching",
        )
    if n >= exp.min_count:
        if n_on_time < exp.min_count:
            return replace(
                base,
                outcome=Outcome.MISSED,
                failure=FailureKind.TOO_SLOW,
                reason=f"{label} ({exp.description}): only {n_on_time} of {exp.min_count} within the time "
                f"budget ({n} after it)",
            )
        return replace(
            base,
            outcome=Outcome.MET,
            reason=f"{label}: {n} matching event(s)",
        )
    near = []
    for i in candidates[:MAX_NEAR_MISSES]:
        why = "; ".join(exp.where.explain(e_fields(events[i]))) or "matched"
        near.append(f"record {events[i].record_id}: {why}")
    missing = f"missing {label} ({exp.description}): {n} of at least {exp.min_count} in {exp.channel}"
    if sysmon_config and exp.channel == SYSMON:
        missing += f" (Sysmon config {sysmon_config})"
    off = [feature_name(f) for f in exp.requires if features is not None and not features.get(feature_name(f), True)]
    if off:
        return replace(
            base,
            outcome=Outcome.MISSED,
            failure=FailureKind.LAB_MISCONFIGURED,
            reason=f"lab misconfigured: {', '.join(off)} off (preflight); {missing}",
            near_misses=tuple(near),
        )
    return replace(
        base,
        outcome=Outcome.MISSED,
        failure=FailureKind.TELEMETRY_MISSING,
        reason=missing,
        near_misses=tuple(near),
    )


def e_fields(e: Event) -> Mapping[str, str]:
    return e.fields


def _row_fields(row: Mapping[str, object]) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in row.items()}


def judge_detection(
    check: DetectionCheck,
    outcome: RuleOutcome | None,
    *,
    first_line: int,
    events: Sequence[Event],
    on_time: RuleOutcome | None = None,
) -> DetectionVerdict:
    """Verdict on one rule for one test.

    ``on_time`` is what the rule returned over the events that arrived within the time budget (None:
    every event did, or unknown): a rule that must fire and only fires on late events is ``too_slow``.
    """
    cond = condition_text(check.where)
    want = "fire" if check.fires else "stay silent"
    cond_txt = f" with {cond}" if cond else ""
    common = DetectionVerdict(
        rule=check.rule,
        rule_id=check.rule,
        engine=check.engine,
        fires=check.fires,
        condition=cond,
        known_false_positive=check.known_false_positive,
        extra=check.extra,
        outcome=Outcome.MISSED,
        reason="",
    )
    if outcome is None or outcome.result is None:
        why = outcome.error if outcome is not None and outcome.error else "rule was not evaluated"
        how = "the tenant search failed" if check.engine == REMOTE_ENGINE else "cannot run"
        return replace(
            common,
            outcome=Outcome.MISSED,
            failure=FailureKind.RULE_INVALID,
            reason=f"{check.rule} must {want} but {how}: {why}",
        )
    res = outcome.result
    rows = list(res.rows)
    idx = [i for i, r in enumerate(rows) if check.where is None or check.where.matches(_row_fields(r))]
    kept = tuple(rows[i] for i in idx)
    row_evidence = {
        j: tuple(_ref(events, k, first_line) for k in res.source_events.get(i, ()) if 0 <= k < len(events))
        for j, i in enumerate(idx)
    }
    shown = replace(
        common,
        rule_id=res.rule_id,
        engine=str(res.engine),
        rows=kept if kept else tuple(rows),
        row_evidence=row_evidence if kept else {},
        events_in=res.events_in,
    )
    if check.fires:
        if kept and on_time is not None and on_time.result is not None:
            in_time = [r for r in on_time.result.rows if check.where is None or check.where.matches(_row_fields(r))]
            if not in_time:
                return replace(
                    shown,
                    outcome=Outcome.MISSED,
                    failure=FailureKind.TOO_SLOW,
                    reason=f"{check.rule} fired{cond_txt} only on events that arrived after the time budget "
                    f"({len(kept)} row(s))",
                )
        if kept:
            return replace(
                shown,
                outcome=Outcome.MET,
                reason=f"{check.rule} fired{cond_txt}: {len(kept)} row(s)",
            )
        detail = f"{len(rows)} row(s), none{cond_txt}" if rows else f"no rows over {res.events_in} event(s)"
        return replace(
            shown,
            outcome=Outcome.MISSED,
            failure=FailureKind.DETECTION_MISSED,
            reason=f"detection missed: {check.rule} returned {detail}",
        )
    if not kept:
        return replace(
            shown,
            outcome=Outcome.MET,
            reason=f"{check.rule} stayed silent{cond_txt} over {res.events_in} event(s)",
        )
    if check.known_false_positive:
        return replace(
            shown,
            outcome=Outcome.KNOWN_FALSE_POSITIVE,
            reason=f"known false positive: {check.rule} fired ({len(kept)} row(s)): {check.known_false_positive}",
        )
    return replace(
        shown,
        outcome=Outcome.MISSED,
        failure=FailureKind.FALSE_POSITIVE,
        reason=f"false positive: {check.rule} fired on benign activity ({len(kept)} row(s))",
    )


def judge(
    expectations: TestExpectationsLike | None,
    events: Sequence[Event],
    rule_outcomes: Mapping[str, RuleOutcome],
    *,
    first_line: int = 1,
    on_time: int | None = None,
    features: Mapping[str, bool] | None = None,
    extra_rules: Sequence[str] = (),
    remote_rules: Mapping[str, str] | None = None,
    execution_failure: str | None = None,
    exit_note: str | None = None,
    on_time_outcomes: Mapping[str, RuleOutcome] | None = None,
    not_modelled: Sequence[ModelGap] = (),
    sysmon_config: str | None = None,
) -> Judgement:
    """Judge one executed test (or one recorded capture).

    ``events`` are the events attributed to the test, in the order they were written to the
    evidence file starting at line ``first_line``; ``events[:on_time]`` arrived within the time
    budget (default: all). ``features`` is the preflight's lab feature map (None: unknown, so no
    miss is blamed on the lab). ``execution_failure`` is the reason the command itself failed, if it
    did: the test then fails with ``execution_failed`` whatever the telemetry shows. ``exit_note``
    describes a non-zero exit code, which fails the test only when an expectation failed too or
    none is declared. ``remote_rules``: see ``detection_checks``. ``on_time_outcomes``: what the
    local rules returned over ``events[:on_time]`` (a rule firing only after the budget is too slow).
    ``not_modelled``: the steps the emulated host ran outside its model (see ``inconclusive``).
    """
    cutoff = len(events) if on_time is None else on_time
    ev = tuple(
        judge_event(e, events, first_line=first_line, on_time=cutoff, features=features, sysmon_config=sysmon_config)
        for e in (expectations.events if expectations is not None else ())
    )
    dv = tuple(
        judge_detection(
            c,
            rule_outcomes.get(c.rule),
            first_line=first_line,
            events=events,
            on_time=on_time_outcomes.get(c.rule) if on_time_outcomes is not None else None,
        )
        for c in detection_checks(expectations, extra_rules, remote_rules)
    )
    findings = tuple(Finding(rule=v.rule, message=v.reason) for v in dv if v.outcome is Outcome.KNOWN_FALSE_POSITIVE)
    failed: list[EventVerdict | DetectionVerdict] = [v for v in ev if not v.ok]
    failed += [v for v in dv if not v.ok]
    kinds = [v.failure for v in failed if v.failure is not None]
    n = len(ev) + len(dv)
    # Only authored expectations can show that a non-zero exit did not matter: the baseline only
    # says the command started, so with nothing authored the exit code is the verdict.
    authored = sum(1 for v in ev if v.origin != "baseline") + len(dv)
    if exit_note is not None and execution_failure is None and (kinds or authored == 0):
        execution_failure = exit_note
    if execution_failure is not None:
        kinds.insert(0, FailureKind.EXECUTION_FAILED)
    kind = primary_failure(kinds)
    if kind is None and n == 0:
        reason = "executed, but nothing was asserted: no expectations authored and no baseline applies"
        if exit_note is not None:
            reason += f"; note: {exit_note}"
        return Judgement(TestStatus.INCONCLUSIVE, FailureKind.NOT_ASSERTED, reason, ev, dv, findings)
    if kind is None:
        baseline = sum(1 for v in ev if v.origin == "baseline")
        reason = f"all {n} expectation(s) met"
        if baseline:
            authored = n - baseline
            reason += f" ({baseline} baseline" + (f", {authored} authored)" if authored else "; none authored)")
        if findings:
            reason += f"; {len(findings)} known false positive finding(s)"
        if exit_note is not None:
            reason += f"; note: {exit_note} (success not required: every expectation was met)"
        return inconclusive(Judgement(TestStatus.PASSED, None, reason, ev, dv, findings), not_modelled)
    reasons = _reasons(kind, failed, execution_failure)
    return inconclusive(Judgement(TestStatus.FAILED, kind, reasons, ev, dv, findings), not_modelled)


def inconclusive(j: Judgement, not_modelled: Sequence[ModelGap]) -> Judgement:
    """``j`` made inconclusive (``not_modelled``) when the emulated host ran steps outside its model.

    The would-be verdict stays in the reason ("would have passed: ..."), on one line. A failure no
    host behaviour can explain (a rule that cannot run) stands.
    """
    if not not_modelled or j.status not in (TestStatus.PASSED, TestStatus.FAILED):
        return j
    if j.failure is FailureKind.RULE_INVALID:
        return replace(j, reason=f"{j.reason}; also not modelled by the emulated host: {describe_gaps(not_modelled)}")
    would = "passed" if j.status is TestStatus.PASSED else f"failed ({j.failure})"
    reason = f"not modelled by the emulated host: {describe_gaps(not_modelled)}; would have {would}: {j.reason}"
    return replace(j, status=TestStatus.INCONCLUSIVE, failure=FailureKind.NOT_MODELLED, reason=reason)


def _reasons(
    kind: FailureKind, failed: Iterable[EventVerdict | DetectionVerdict], execution_failure: str | None
) -> str:
    """One line: the primary failure first, then the others, each once."""
    parts: list[str] = []
    if execution_failure is not None:
        parts.append(f"execution failed: {execution_failure}")
    ordered = sorted(failed, key=lambda v: 0 if v.failure is kind else 1)
    for v in ordered:
        if v.reason not in parts:
            parts.append(v.reason)
    return "; ".join(parts)
