"""``atomiclab run | evaluate | verify | history``: argument parsing and printing over the runner.

``run`` without ``--lab`` starts the EMULATED Windows host on 127.0.0.1 for the run (results are
labelled emulated); ``--emulate-setting KEY=VALUE`` (repeatable) changes its lab state, e.g.
``sysmon_network=false`` (no Sysmon EID 3), ``tools=nbtscan,git`` (nmap not installed),
``delivery_delay_s=2`` (late events), ``script_block_logging=false``. ``--arg [GUID:]NAME=VALUE``
overrides an input argument (over lab.yaml ``input_arguments``, over the YAML default), checked and
quoted per executor before anything runs. ``--sumo-tenant`` also judges every Sumo Logic rule in a
real tenant (Search Job API) over each test's time window, as a separate entry ``RULE@sumo-api``
(needs --lab: the emulated host's events never reach a tenant). Every run lints the published
upstream rules (detections/sumo/upstream/) and reports their findings, not judged unless --rule
adds them. A test that ran a step the emulated host does not model is inconclusive (neither passed
nor failed; ``--strict`` makes that a failing exit code). Exit codes: 0 every test passed (or was
skipped or inconclusive), 1 a test failed or errored (with --strict: or was inconclusive) / verify
found a difference, 2 usage or configuration error, 130 interrupted (reports for what finished are
written).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.argtypes import input_override, positive_float, positive_int
from harness.errors import ContentError, HarnessError
from harness.execution.modes import ExecMode

if TYPE_CHECKING:
    from rich.console import Console

    from harness.plan import (
        ArgOverride,
        PlannedTest,
    )
    from harness.reporting.base import ReportDirectory, Reporter
    from harness.reporting.history import History
    from harness.reporting.signing import ManifestSigner
    from harness.results import RunMode, RunResult
    from harness.telemetry.event import Event

if TYPE_CHECKING:
    from harness.emulated.sysmon_config import SysmonConfig
    from harness.runner import RunObserver

DEFAULT_ATOMICS = ("atomics/T1046", "atomics/benign")

RUN_DESCRIPTION = (
    "Run atomic tests on the lab targets (without --lab: an EMULATED Windows host started on 127.0.0.1, "
    "results labelled emulated), collect the telemetry each test caused, and judge the expected events "
    "and the detection rules. Input arguments come from the atomic's YAML defaults, overridden by the "
    "lab file's input_arguments, overridden by --arg. Reports go to --out (default reports/<run-id>/). "
    "A test that ran a step the emulated host does not model is inconclusive, naming the step. "
    "Exit 0 when every test passed or was skipped (or inconclusive, unless --strict), 1 when a test failed "
    "or errored (with --strict: or was inconclusive), 2 for usage or configuration errors, 130 when "
    "interrupted (reports cover what finished)."
)
EVALUATE_DESCRIPTION = (
    "Judge recorded telemetry (EVTX, XML, JSON, JSONL) against the expectations and detection rules, "
    "executing nothing. Events are attributed by run marker when the capture carries one, else the whole "
    "capture is each test's evidence. Reports are written as for run."
)
VERIFY_DESCRIPTION = (
    "Recompute the SHA-256 of every file of a report folder and compare with its manifest.json; names "
    "every file that changed, is missing or is not listed, every symlink, FIFO or device (never followed), "
    "checks the manifest's signature when given the key (--sign-key NAME, or --public-key PEM for "
    "Ed25519), and checks results.json against its schema. Exit 0 when everything matches, 1 otherwise."
)
HISTORY_DESCRIPTION = (
    "List the last runs recorded in the history database and show, per test, regressions (passed "
    "before, fails now), fixes (failed before, passes now) and flaky tests (outcome changing across "
    "the runs listed)."
)
HISTORY_FILE = "history.sqlite"


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run atomics on targets (default: the emulated host), judge telemetry and detections",
        description=RUN_DESCRIPTION,
    )
    run.add_argument("--lab", type=Path, help="lab.yaml with the targets (default: the EMULATED host)")
    run.add_argument("--tests", nargs="+", default=[], metavar="SELECTOR",
                     help="tests to run: T1046 (all its tests), T1046-3 (its 3rd), T1046-1,2, a GUID or a name "
                     "(default: all)")
    run.add_argument(
        "--atomics",
        nargs="+",
        type=Path,
        default=None,
        metavar="PATH",
        help="technique files or folders, an atomics/ folder or an Atomic Red Team checkout "
        f"(default: $ATOMICLAB_ATOMICS, else the project's {' and '.join(DEFAULT_ATOMICS)})",
    )
    run.add_argument(
        "--arg",
        action="append",
        type=input_override,
        default=[],
        metavar="[GUID:]NAME=VALUE",
        help="override an input argument of every selected test declaring NAME, or of test GUID only "
        "(repeatable; wins over lab.yaml input_arguments)",
    )
    _common(run)
    run.add_argument(
        "--rules",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="a folder of Sigma rules and/or .sumo files (e.g. a SigmaHQ checkout's rules/windows): each test is "
        "also judged against the rules tagged with its ATT&CK technique, reported as a coverage matrix and a "
        "Navigator layer (repeatable)",
    )
    run.add_argument("--get-prereqs", action="store_true", help="fetch unmet prerequisites, then check again")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--check-prereqs", action="store_true",
                      help="only check each test's prerequisites and report them; nothing else runs "
                      "(Invoke-AtomicTest -CheckPrereqs)")
    mode.add_argument("--cleanup", action="store_true",
                      help="only run each test's cleanup command (Invoke-AtomicTest -Cleanup)")
    mode.add_argument("--no-cleanup", action="store_true", help="do not run the cleanup command after a test")
    run.add_argument("--sync", action="store_true",
                     help="first copy the payloads the selected tests reference (src/, bin/, ExternalPayloads) to "
                     "each target's atomics folder, only what changed (see atomiclab sync)")
    run.add_argument("--prompt", action="store_true",
                     help="ask for each input argument of each selected test (Enter keeps the value shown; "
                     "--arg still wins), like Invoke-AtomicTest -PromptForInputArgs")
    run.add_argument(
        "--timeout", type=positive_float, default=None, metavar="S", help="deadline of each remote command"
    )
    run.add_argument(
        "--emulate-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="emulated host setting, e.g. sysmon_network=false, tools=nbtscan,git (repeatable)",
    )
    run.add_argument(
        "--sysmon-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="Sysmon XML configuration the emulated host applies (default: the lab's, lab/cache/sysmonconfig.xml "
        "or its built-in stand-in): would this config have caught the test?",
    )
    run.add_argument("--max-hosts", type=positive_int, default=8, help="hosts run in parallel (default 8)")
    run.add_argument(
        "--revert-each",
        action="store_true",
        help="restore each lab machine's baseline snapshot before every test, re-sync its clock (needs --lab)",
    )
    run.add_argument(
        "--sumo-tenant",
        action="store_true",
        help="also judge each .sumo rule in the Sumo Logic tenant over each test's window, as RULE@sumo-api "
        "(needs --lab with real targets; SUMO_ACCESS_ID/SUMO_ACCESS_KEY or the keyring)",
    )
    run.add_argument(
        "--sumo-endpoint",
        metavar="URL-OR-DEPLOYMENT",
        default=None,
        help="Sumo Logic API endpoint for --sumo-tenant, e.g. us2 or a URL (default $SUMO_API_ENDPOINT)",
    )
    run.set_defaults(handler=_run)

    ev = subparsers.add_parser(
        "evaluate",
        help="judge recorded telemetry against the expectations, executing nothing",
        description=EVALUATE_DESCRIPTION,
    )
    ev.add_argument("--telemetry", nargs="+", type=Path, required=True, metavar="FILE")
    ev.add_argument(
        "--tests",
        nargs="+",
        default=[],
        metavar="GUID-OR-NAME",
        help="tests to judge (default: every test that has expectations)",
    )
    ev.add_argument("--atomics", nargs="+", type=Path, default=None, metavar="PATH")
    _common(ev)
    ev.set_defaults(handler=_evaluate)

    ve = subparsers.add_parser(
        "verify", help="check a report folder against its manifest.json", description=VERIFY_DESCRIPTION
    )
    ve.add_argument("dir", type=Path, metavar="DIR")
    ve.add_argument(
        "--sign-key", metavar="NAME", default=None,
        help="check manifest.json's signature with the key in $NAME or keyring atomiclab/NAME",
    )
    ve.add_argument(
        "--public-key", type=Path, metavar="PEM", default=None,
        help="check an Ed25519 signature with this public key file",
    )
    ve.set_defaults(handler=_verify)

    hi = subparsers.add_parser(
        "history", help="list runs; per test regressions, fixes and flaky tests", description=HISTORY_DESCRIPTION
    )
    hi.add_argument("--last", type=positive_int, default=10, metavar="N", help="runs to analyse (default 10)")
    hi.add_argument("--history", type=Path, default=None, help="history database (default reports/history.sqlite)")
    hi.set_defaults(handler=_history)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rule",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="also judge this rule against the same expectations (repeatable)",
    )
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/<run-id>/)")
    p.add_argument("--history", type=Path, default=None, help="history database (default reports/history.sqlite)")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars")
    p.add_argument(
        "--sign-key", metavar="NAME", default=None,
        help="sign manifest.json with the key in $NAME or keyring atomiclab/NAME (an Ed25519 PEM "
        "private key, else an HMAC-SHA256 secret); never the key itself on the command line",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="an inconclusive test (e.g. a step the emulated host does not model) fails the exit code",
    )


# ------------------------------------------------------------------------------------- helpers


def new_run_id(now: datetime | None = None) -> str:
    import secrets
    t = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{t:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _atomics_arg(args: argparse.Namespace, lab: Any = None) -> list[Path] | None:
    """``--atomics``, else lab.yaml ``atomics:``, else ``$ATOMICLAB_ATOMICS``, else None (the project's
    DEFAULT_ATOMICS)."""
    from harness.content.discovery import default_atomics

    given: list[Path] | None = args.atomics
    if given:
        return list(given)
    if lab is not None and lab.atomics:
        return list(lab.atomics)
    return default_atomics()


def _root(atomics: Sequence[Path] | None = None) -> Path:
    """Where expectations/ and detections/ are read (harness.content.project.run_root)."""
    from harness.content.project import run_root

    return run_root(atomics)


def _reports_dir() -> Path:
    """Reports default to ./reports of the working directory (also with a regular install)."""
    return Path("reports")


def _planned(
    root: Path, atomics: Sequence[Path] | None, selectors: Sequence[str], *, only_expected: bool = False
) -> tuple[list[PlannedTest], list[Path], list[Path]]:
    from harness.content.atomics import discover_atomics, iter_yaml_files
    from harness.content.expectations import discover_expectations
    from harness.plan import PlannedTest, select_tests

    paths = list(atomics) if atomics else [root / p for p in DEFAULT_ATOMICS if (root / p).exists()]
    if not paths:
        raise ContentError(
            "no atomics to run: no --atomics given, ATOMICLAB_ATOMICS is not set and no atomiclab project "
            f"is found from {Path.cwd()}",
            hint="pass --atomics PATH (a technique file or folder, an atomics/ folder or an Atomic Red Team "
            "checkout) or export ATOMICLAB_ATOMICS",
        )
    files = discover_atomics(paths)
    exp_files = discover_expectations(root)
    by_guid = {guid: t for f in exp_files for guid, t in f.tests.items()}
    tests = select_tests(files, selectors)
    if only_expected and not selectors:
        tests = [t for t in tests if t.guid in by_guid]
    if not tests:
        raise ContentError("no atomic tests selected", hint="check --tests and --atomics")
    planned = [PlannedTest(t, by_guid.get(t.guid)) for t in tests]
    return planned, iter_yaml_files(paths), [Path(f.source) for f in exp_files]


def prompt_arguments(
    planned: Sequence[PlannedTest],
    lab: Any,
    given: Sequence[ArgOverride],
    ask: Callable[[str], str] = input,
    interactive: bool | None = None,
) -> list[ArgOverride]:
    """``--prompt``: one question per input argument of each selected test not already set by ``--arg``
    (Invoke-AtomicRedTeam's Invoke-PromptForInputArgs: "Enter a value for NAME, or press enter to
    accept the default"). Answers become ``--arg GUID:NAME=VALUE`` placed before the given ones."""
    from harness.plan import ArgOverride
    if not (sys.stdin.isatty() if interactive is None else interactive):
        raise ContentError("--prompt needs an interactive terminal", hint="pass the values with --arg NAME=VALUE")
    answers: list[ArgOverride] = []
    for pt in planned:
        test = pt.test
        for name, arg in test.input_arguments.items():
            if any(o.name == name and o.guid in (None, test.guid) for o in given):
                continue
            shown = dict(lab.get("*", {})).get(name, arg.default)
            shown = dict(lab.get(test.guid, {})).get(name, shown)
            from harness.textsafe import for_terminal

            value = ask(for_terminal(f"{test.name} [{test.guid}]\nEnter a value for {name}, or press enter to "
                                     f"accept the default.\n{' '.join(arg.description.split())} [{shown}]: ",
                                     multiline=True))
            if value.strip():
                answers.append(ArgOverride(name=name, value=value, guid=test.guid))
    return [*answers, *given]


def _reporters(out: Path, history: History, *, coverage: bool = False) -> list[Reporter]:
    from harness.reporting.art_logs import ArtCsvReporter, AttireReporter
    from harness.reporting.html import HtmlReporter
    from harness.reporting.junit import JUnitReporter
    from harness.reporting.navigator import NavigatorReporter
    from harness.reporting.results_json import ResultsJsonReporter

    reporters: list[Reporter] = [
        ResultsJsonReporter(),
        JUnitReporter(),
        NavigatorReporter(),
        HtmlReporter(out, history=lambda: history.runs(30)),
        ArtCsvReporter(),  # Invoke-AtomicRedTeam's execution log and ATTiRe (VECTR) beside our own
        AttireReporter(out),
    ]
    if coverage:  # run --rules: the layer scored by detection coverage
        from harness.reporting.coverage_layer import CoverageLayerReporter

        reporters.append(CoverageLayerReporter())
    return reporters


def _initial(
    run_id: str,
    mode: RunMode,
    root: Path,
    *,
    atomics: Sequence[Path],
    expectations: Sequence[Path],
    rules: Sequence[Path],
    lab: Path | None,
    extra: Sequence[Path] = (),
) -> RunResult:
    from harness import __version__
    from harness.plan import content_provenance, git_commit
    from harness.results import RunResult
    files, sources = content_provenance(root, atomics=atomics, expectations=expectations, rules=rules, lab=lab)
    return RunResult(
        run_id=run_id,
        mode=mode,
        started=datetime.now(UTC),
        harness_version=__version__,
        operator=_operator(),
        command=tuple(["atomiclab", *sys.argv[1:]]),
        content=files,
        content_commit=git_commit(root),
        content_sources=sources,
    )


def _start_reports(
    args: argparse.Namespace,
    root: Path,
    history: History,
    mode: RunMode,
    *,
    atomics: Sequence[Path],
    expectations: Sequence[Path],
    rules: Sequence[Path],
    lab: Path | None,
    signer: ManifestSigner | None = None,
    sysmon: SysmonConfig | None = None,
) -> tuple[Path, ReportDirectory, RunResult]:
    """A new run id: its report folder (``--out`` or reports/<run-id>/), the sink writing it, the
    run's initial record."""
    from harness.reporting.base import ReportDirectory
    run_id = new_run_id()
    out = args.out or _reports_dir() / run_id
    sink = ReportDirectory(out, _reporters(out, history, coverage=bool(getattr(args, "rules", None))), signer=signer)
    initial = _initial(run_id, mode, root, atomics=atomics, expectations=expectations, rules=rules, lab=lab)
    if sysmon is not None:
        # The report names the Sysmon config the emulated host applied, with its SHA-256.
        from harness.results import ContentFile

        entry = ContentFile(path=sysmon.source, kind="sysmon_config", sha256=sysmon.sha256)
        initial = dataclasses.replace(initial, content=(*initial.content, entry))
    return out, sink, initial


def _observed(console: Console, no_progress: bool, go: Callable[[RunObserver], RunResult]) -> RunResult:
    """``go`` observed by live progress bars on ``console`` (none with ``--no-progress``)."""
    from harness.reporting.console import ConsoleLines, ConsoleProgress

    if no_progress or not console.is_terminal:  # a log: one line per test, no bars
        return go(ConsoleLines(console))
    progress = ConsoleProgress(console)
    with progress:
        return go(progress)


def _operator() -> str:
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def _console() -> Console:
    # Logs (CI, pipes): lines are never wrapped (soft_wrap), so a path or a reason stays one
    # greppable line; tables there are printed as plain aligned text (reporting.console).
    from rich.console import Console
    tty = sys.stdout.isatty()
    return Console(stderr=False, highlight=False, width=None if tty else 200, soft_wrap=not tty)


def _signer(args: argparse.Namespace) -> ManifestSigner | None:
    """The manifest signer of ``--sign-key NAME``, loaded before anything runs (a missing or weak
    key is a usage error, not a run without signatures)."""
    from harness.reporting.signing import load_signer

    return load_signer(args.sign_key) if args.sign_key else None


def _history_db(args: argparse.Namespace, root: Path) -> History:
    """The run's history database, checked before anything runs (a bad --history is a usage error)."""
    from harness.reporting.history import History
    history = History(args.history or _reports_dir() / HISTORY_FILE)
    history.check(create=True)
    return history


def _finish(console: Console, run: RunResult, out: Path, history: History) -> None:
    from harness.reporting.console import print_summary
    from harness.results import rule_file

    history.record(run, out)
    print_summary(console, run)
    for rule in run.lint_not_judged:
        n = len(run.lint.get(rule, ()))
        where = f", listed in report.html (or `atomiclab lint {rule_file(rule)}`)" if n else ""
        console.print(f"published rule {rule} (not judged): {n} lint finding(s){where}", markup=False)
    console.print(f"reports: {out}")


# ------------------------------------------------------------------------------------- commands


def _run(args: argparse.Namespace) -> int:
    from harness.content.labconfig import load_lab_config
    from harness.execution.executors import new_run_marker
    from harness.plan import RunPlan, published_rules, resolve_arguments, rules_of
    from harness.results import RunMode
    from harness.runner import Runner, TargetFactory
    from harness.targets import (
        EmulatedTargetFactory,
        LabTargetFactory,
        attribute,
        execute,
        load_rule_set,
        parse_emulate_settings,
    )

    lab = load_lab_config(args.lab) if args.lab else None
    atomics_arg = _atomics_arg(args, lab)
    root = _root(atomics_arg)
    history = _history_db(args, root)
    signer = _signer(args)
    if lab is not None and args.emulate_setting:
        raise ContentError("--emulate-setting applies to the emulated host only; drop it or drop --lab")
    if lab is not None and args.sysmon_config:
        raise ContentError(
            "--sysmon-config applies to the emulated host only",
            hint="drop --lab to judge the tests against that config, or install it on the lab hosts",
        )
    sysmon = None
    if lab is None:
        from harness.emulated.sysmon_config import default_sysmon_config, load_sysmon_config

        sysmon = load_sysmon_config(args.sysmon_config) if args.sysmon_config else default_sysmon_config(root)
    if lab is None and args.revert_each:
        raise ContentError("--revert-each restores Vagrant lab snapshots: it needs --lab lab.yaml")
    if args.sumo_tenant or args.sumo_endpoint:
        _check_tenant(args, emulated_host=lab is None)
    planned, atomics, expectations = _planned(root, atomics_arg, args.tests)
    cli_args = list(args.arg)
    if args.prompt:
        cli_args = prompt_arguments(planned, lab.input_arguments if lab else {}, cli_args)
    arguments = resolve_arguments(
        planned,
        lab=lab.input_arguments if lab else None,
        lab_source=lab.source if lab else None,
        cli=cli_args,
    )
    rule_paths, extras = rules_of(planned, root, args.rule)
    published = published_rules(root)
    factory: TargetFactory
    payloads: list[Any] = []
    if args.sync:
        from harness.execution.sync import payloads_for

        payloads = payloads_for([pt.test for pt in planned])
    if lab is None:
        emulated = EmulatedTargetFactory(parse_emulate_settings(args.emulate_setting), sysmon_config=sysmon,
                                         payloads=payloads)
        targets: tuple[Any, ...] = (emulated.target(),)
        factory = emulated
    else:
        targets, factory = lab.targets, LabTargetFactory(lab, payloads=payloads)
    plan = RunPlan(
        targets=tuple(targets),
        tests=tuple(planned),
        rule_paths=rule_paths,
        extra_rules=extras,
        get_prereqs=args.get_prereqs,
        command_timeout_s=args.timeout or (lab.timeouts.command_s if lab else 300.0),
        default_budget_s=lab.timeouts.telemetry_s if lab else 30.0,
        arguments=arguments,
        channels=lab.channels if lab else {},
        mode=ExecMode.CHECK_PREREQS if args.check_prereqs else ExecMode.CLEANUP if args.cleanup else ExecMode.RUN,
        cleanup=not args.no_cleanup,
    )
    rules = load_rule_set(
        rule_paths,
        plan.channels,
        lint_only=published,
        sumo_tenant=args.sumo_tenant,
        sumo_endpoint=args.sumo_endpoint,
    )
    library = None
    if args.rules:  # indexed before any report exists: a bad --rules is a usage error
        from harness.targets import load_rule_library

        library = load_rule_library(args.rules, plan.channels)
    out, sink, initial = _start_reports(
        args,
        root,
        history,
        RunMode.RUN,
        atomics=atomics,
        expectations=expectations,
        rules=[*rule_paths.values(), *published.values()],
        lab=args.lab,
        signer=signer,
        sysmon=sysmon,
    )
    console = _console()
    if library is not None:
        initial = dataclasses.replace(initial, coverage_sources=tuple(str(p) for p in args.rules))
        techniques = {pt.test.technique for pt in planned}
        tagged = {r.key for t in techniques for r in library.for_technique(t)}
        console.print(
            f"--rules: {len(library.rules)} rule(s) indexed, {len(tagged)} tagged with the "
            f"{len(techniques)} technique(s) of this run",
            markup=False,
        )
    console.print(
        f"atomiclab run {initial.run_id}: {len(planned)} test(s) x {len(targets)} target(s)"
        + (" [EMULATED host]" if lab is None else "")
        + f" -> {out}"
    )
    if sysmon is not None:
        console.print(f"emulated Sysmon config: {sysmon.source} SHA-256 {sysmon.sha256}")
    reset = _snapshot_reset(args.lab) if args.revert_each else None

    def go(observer: RunObserver) -> RunResult:
        runner = Runner(
            plan,
            targets=factory,
            execute=execute,
            attribute=attribute,
            rules=rules,
            sink=sink,
            observer=observer,
            new_marker=new_run_marker,
            max_hosts=args.max_hosts,
            reset=reset,
            coverage=library,
        )
        return runner.run(initial)

    # The run is in the history from its start: one killed by SIGKILL stays listed with no end.
    history.record(initial, out)
    with _sigterm_as_interrupt():
        try:
            run = _observed(console, args.no_progress, go)
        except KeyboardInterrupt:
            from harness.reporting.results_json import load_results

            partial = load_results(out)
            _finish(console, partial, out, history)
            console.print("interrupted: cleanup of the running test was done; reports cover the finished tests")
            return 130
        _finish(console, run, out, history)
    return run.exit_code_for(strict=args.strict)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI cancel, ``kill``, ``timeout``) stops the run like Ctrl-C: the running test
    finishes its cleanup, the emulated host is stopped (its password file and TLS key removed),
    the reports and the history record the run as interrupted. Further SIGTERMs while that happens
    are ignored, so the cleanup itself is never cut short."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    fired: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        # Once interrupted the process is on its way out: a later SIGTERM must not kill it mid-exit.
        signal.signal(signal.SIGTERM, signal.SIG_IGN if fired else previous)


def _check_tenant(args: argparse.Namespace, *, emulated_host: bool) -> None:
    """``--sumo-tenant`` needs a lab, an endpoint and credentials: one-line usage errors.

    The emulated host the run starts itself (no ``--lab``) ships its events nowhere, so a tenant
    could never see them. Lab targets are taken as the lab declares them: whatever ships their
    logs to the tenant is the lab's business (a lab.yaml may also point at an emulated host whose
    events a test tenant serves)."""
    from harness.detect.sumo_api import ACCESS_ID_VAR, ACCESS_KEY_VAR, ENDPOINT_VAR, SumoCredentials, resolve_endpoint
    from harness.errors import CredentialError

    if not args.sumo_tenant:
        raise ContentError("--sumo-endpoint applies to --sumo-tenant only")
    if emulated_host:
        raise ContentError(
            "--sumo-tenant cannot judge the EMULATED host: emulated events never reach a Sumo Logic tenant",
            hint="use --lab with targets that ship their logs to the tenant",
        )
    endpoint = args.sumo_endpoint if args.sumo_endpoint is not None else os.environ.get(ENDPOINT_VAR, "")
    resolve_endpoint(endpoint)  # DetectionError naming --sumo-endpoint/$SUMO_API_ENDPOINT when missing
    try:
        SumoCredentials.from_environment()
    except CredentialError as exc:
        raise ContentError(
            f"--sumo-tenant: no Sumo Logic credentials: {exc.message}",
            hint=f"export {ACCESS_ID_VAR} and {ACCESS_KEY_VAR}, or store them with `keyring set atomiclab NAME`",
        ) from None


def _snapshot_reset(lab_file: Path) -> Any:
    """Vagrant runs where the Vagrantfile is: the lab file's folder, else the content root."""
    from harness.lab.revert import SnapshotReset
    from harness.lab.vagrant import Vagrant

    folder = lab_file.resolve().parent
    return SnapshotReset(Vagrant(folder if (folder / "Vagrantfile").is_file() else _root()))


def _evaluate(args: argparse.Namespace) -> int:
    from harness.execution.executors import find_run_marker
    from harness.plan import published_rules, rules_of
    from harness.results import RunMode, TargetInfo
    from harness.runner import evaluate_capture, find_markers
    from harness.targets import attribute, load_rule_set
    from harness.telemetry.readers import ReadStats, read_events

    atomics_arg = _atomics_arg(args)
    root = _root(atomics_arg)
    history = _history_db(args, root)
    signer = _signer(args)
    planned, atomics, expectations = _planned(root, atomics_arg, args.tests, only_expected=True)
    rule_paths, extras = rules_of(planned, root, args.rule)
    events: list[Event] = []
    for f in args.telemetry:
        stats = ReadStats()
        events.extend(read_events(f, stats=stats))
        if stats.damaged:  # judged on what was readable; say what was not
            print(f"atomiclab: warning: {stats.damage_line(str(f))}", file=sys.stderr)
    events.sort(key=lambda e: (e.time, e.record_id or 0))
    published = published_rules(root)
    rules = load_rule_set(rule_paths, lint_only=published)
    out, sink, initial = _start_reports(
        args,
        root,
        history,
        RunMode.EVALUATE,
        atomics=atomics,
        expectations=expectations,
        rules=[*rule_paths.values(), *published.values()],
        lab=None,
        signer=signer,
    )
    from harness.plan import sha256_file
    from harness.results import ContentFile

    # The capture is evidence too: its hashes let an auditor tie the verdicts to the exact files.
    captures = tuple(ContentFile(str(f), "telemetry", sha256_file(f)) for f in args.telemetry)
    initial = dataclasses.replace(initial, content=initial.content + captures)
    name = args.telemetry[0].name if len(args.telemetry) == 1 else f"{len(args.telemetry)} files"
    computers = sorted({e.computer for e in events if e.computer})
    capture = TargetInfo(name=name, transport="file", address=", ".join(computers[:5]), emulated=False)
    markers = find_markers(events, find_run_marker)
    console = _console()
    console.print(
        f"atomiclab evaluate {initial.run_id}: {len(events)} event(s), {len(planned)} test(s), "
        + (f"{len(markers)} run marker(s)" if markers else "no run marker: the whole capture is judged")
    )

    def go(observer: RunObserver) -> RunResult:
        return evaluate_capture(
            initial,
            planned,
            events,
            capture=capture,
            rules=rules,
            sink=sink,
            attribute=attribute,
            markers=markers,
            extra_rules=extras,
            observer=observer,
        )

    try:
        run = _observed(console, args.no_progress, go)
    except KeyboardInterrupt:
        return 130
    _finish(console, run, out, history)
    return run.exit_code_for(strict=args.strict)


def _verifier(args: argparse.Namespace) -> Any:
    from harness.errors import ReportError
    from harness.reporting.signing import Verifier, load_signer

    if args.sign_key and args.public_key:
        raise ContentError("give --sign-key or --public-key, not both")
    if args.sign_key:
        return Verifier(signer=load_signer(args.sign_key))
    if args.public_key:
        try:
            pem = args.public_key.read_bytes()
        except OSError as exc:
            raise ReportError(f"{args.public_key}: cannot read: {exc.strerror or exc}") from exc
        return Verifier.from_public_pem(pem, str(args.public_key))
    return Verifier()


def _verify(args: argparse.Namespace) -> int:
    from harness.reporting.evidence import verify_manifest
    from harness.reporting.results_json import FILENAME, load_results
    from harness.reporting.signing import SignatureStatus
    from harness.textsafe import for_terminal

    report = verify_manifest(args.dir, _verifier(args))
    for rel in report.changed:
        print(for_terminal(f"CHANGED  {rel}"))
    for rel in report.missing:
        print(for_terminal(f"MISSING  {rel}"))
    for rel in report.unlisted:
        print(for_terminal(f"UNLISTED {rel}"))
    for rel, kind in report.special:
        print(for_terminal(f"SPECIAL  {rel} ({kind}: never written by a run, not followed)"))
    signature_line = {
        SignatureStatus.VALID: "SIGNATURE valid",
        SignatureStatus.INVALID: "SIGNATURE INVALID: manifest.json was changed after signing, or another key "
        "signed it",
        SignatureStatus.UNSIGNED: "SIGNATURE MISSING: manifest.json is not signed",
        SignatureStatus.NOT_CHECKED: "signature not checked (pass --sign-key NAME or --public-key PEM)",
    }.get(report.signature)
    if signature_line:
        print(signature_line)
    if (args.dir / FILENAME).is_file() and FILENAME not in report.changed:
        try:
            load_results(args.dir)
        except HarnessError as exc:
            print(f"INVALID  {exc}")
            return 1
    if report.ok:
        print(f"OK: {report.checked} file(s) match manifest.json")
        return 0
    print(f"{len(report.changed)} changed, {len(report.missing)} missing, {len(report.unlisted)} not in the manifest, "
          f"{len(report.special)} link(s) or special file(s)"
          + ("" if report.signature_ok else ", signature not valid"))
    return 1


def _history(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from harness.reporting.history import History
    from harness.textsafe import for_terminal
    if args.last < 1:
        raise ContentError("--last must be at least 1")
    path = args.history or _reports_dir() / HISTORY_FILE
    if not path.exists():
        print(f"no history yet at {path}: it is written by `atomiclab run`")
        return 0
    h = History(path)
    console = _console()
    runs = h.runs(args.last)
    header = ("Run", "Started", "Mode", "Emulated", "Passed", "Failed", "Error", "Skipped", "Complete")
    rows = [
        [
            for_terminal(r.run_id),  # the database is a file anyone may have written: shown escaped
            for_terminal(_started(r.started)),
            for_terminal(r.mode),
            "yes" if r.emulated else "no",
            str(r.passed),
            str(r.failed),
            str(r.error),
            str(r.skipped),
            "yes" if r.complete else ("interrupted" if r.ended else "no end (killed, or running)"),
        ]
        for r in runs
    ]
    if console.is_terminal:
        table = Table(title=f"last {len(runs)} run(s)")
        for col in header:
            table.add_column(col, no_wrap=col in ("Run", "Started"))  # a run id is copied, never cut
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # cells are text, never rich markup
        console.print(table)
    else:
        from harness.reporting.console import plain_table

        for line in [f"last {len(runs)} run(s)", *plain_table([h.upper() for h in header], rows)]:
            console.print(line, markup=False)
    trends = h.trends(args.last)
    sections = (
        ("Regressions (passed before, fail now)", [t for t in trends if t.regression]),
        ("Fixes (failed before, pass now)", [t for t in trends if t.fix]),
        ("Flaky (outcome changed twice or more)", [t for t in trends if t.flaky]),
    )
    for label, chosen in sections:
        console.print(f"{label}: {len(chosen) or 'none'}", markup=False)
        for t in chosen:  # markup off: '[guid]' is text, not a rich tag
            line = f"  {t.target}  {t.name} [{t.guid}]  {' '.join(t.statuses)}  {t.last_reason}"
            console.print(for_terminal(line), markup=False)
    return 0


def _started(iso: str) -> str:
    """A history timestamp to the second, UTC (``2026-11-30 03:38:35Z``)."""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return (t.astimezone(UTC) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%SZ")
