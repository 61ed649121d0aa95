"""pytest plugin (entry point ``pytest11``): atomic tests as pytest items.

``pytest --atomiclab [--atomiclab-lab lab.yaml] [PATHS]`` collects one item per target x atomic
test from the atomics YAML files under PATHS (default: the content root's ``atomics/``). Node ids
read ``atomics/T1046/T1046.yaml::T1046[emulated]::Nmap service scan of the local host``, so ``-k``
selects by technique, target or test name. Each item runs through the same runner as
``atomiclab run`` (preflight once per host, prerequisites, execution, cleanup, telemetry, verdicts)
and fails with the verdict's reason; an inconclusive test (a step the emulated host does not model)
is skipped with its reason, or fails with ``--atomiclab-strict``. The usual reports are written to ``--atomiclab-out``
(default ``reports/<run-id>/``; one sub-folder per xdist worker); with pytest-html each item gets its
verdicts and evidence as extras; with pytest-xdist ``--dist loadgroup`` keeps one host's tests on
one worker (items carry ``xdist_group(<target>)``).

Nothing heavy is imported unless ``--atomiclab`` is given: this module is loaded into every pytest
run of any project that has atomiclab installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.content.labconfig import LabConfig, TargetConfig
    from harness.model import AtomicTest
    from harness.plan import PlannedTest
    from harness.reporting.base import ReportDirectory
    from harness.reporting.history import History
    from harness.results import RunResult, TestResult
    from harness.runner import HostContext, Runner

_SESSION_KEY = pytest.StashKey["_AtomiclabSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("atomiclab", "atomiclab: atomic tests as pytest items")
    group.addoption(
        "--atomiclab",
        action="store_true",
        default=False,
        help="collect atomic tests from atomics YAML files and run them on the targets",
    )
    group.addoption(
        "--atomiclab-lab",
        metavar="FILE",
        default=None,
        help="lab.yaml with the targets (default: the EMULATED host on 127.0.0.1)",
    )
    group.addoption("--atomiclab-out", metavar="DIR", default=None, help="report folder (default: reports/<run-id>/)")
    group.addoption(
        "--atomiclab-history", metavar="FILE", default=None, help="history database (default: reports/history.sqlite)"
    )
    group.addoption(
        "--atomiclab-rule",
        metavar="FILE",
        action="append",
        default=[],
        help="also judge this rule against the same expectations (repeatable)",
    )
    group.addoption(
        "--atomiclab-strict",
        action="store_true",
        default=False,
        help="fail an inconclusive atomic test (e.g. a step the emulated host does not model) instead of skipping it",
    )
    group.addoption(
        "--atomiclab-get-prereqs",
        action="store_true",
        default=False,
        help="fetch unmet prerequisites, then check again",
    )
    group.addoption(
        "--atomiclab-check-prereqs",
        action="store_true",
        default=False,
        help="only check each test's prerequisites (Invoke-AtomicTest -CheckPrereqs); nothing else runs",
    )
    group.addoption(
        "--atomiclab-cleanup",
        action="store_true",
        default=False,
        help="only run each test's cleanup command (Invoke-AtomicTest -Cleanup)",
    )
    group.addoption("--atomiclab-no-cleanup", action="store_true", default=False,
                    help="do not run the cleanup command after a test")
    group.addoption("--atomiclab-sync", action="store_true", default=False,
                    help="first copy the collected tests' payloads (src/, bin/, ExternalPayloads) to each target")
    group.addoption(
        "--atomiclab-arg",
        metavar="[GUID:]NAME=VALUE",
        action="append",
        default=[],
        help="override an input argument of every collected test declaring NAME, or of test GUID only "
        "(repeatable; wins over lab.yaml input_arguments)",
    )
    group.addoption(
        "--atomiclab-emulate-setting",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="emulated host setting, e.g. sysmon_network=false (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    opts = (
        "atomiclab_lab",
        "atomiclab_out",
        "atomiclab_rule",
        "atomiclab_emulate_setting",
        "atomiclab_history",
        "atomiclab_arg",
    )
    if not config.getoption("atomiclab"):
        used = [o for o in opts if config.getoption(o)]
        flags = ("atomiclab_get_prereqs", "atomiclab_check_prereqs", "atomiclab_cleanup", "atomiclab_no_cleanup",
                 "atomiclab_sync")
        if used or any(config.getoption(f) for f in flags):
            raise pytest.UsageError("--atomiclab-* options need --atomiclab")
        return
    chosen = [f for f in ("check_prereqs", "cleanup", "no_cleanup") if config.getoption(f"atomiclab_{f}")]
    if len(chosen) > 1:
        raise pytest.UsageError("--atomiclab-check-prereqs, --atomiclab-cleanup and --atomiclab-no-cleanup exclude "
                                "each other")
    config.addinivalue_line("markers", "atomiclab(target, guid): an atomic test item of the atomiclab plugin")
    from harness.errors import HarnessError

    try:
        session = _AtomiclabSession(config)
    except HarnessError as exc:
        raise pytest.UsageError(f"atomiclab: {exc}") from None
    config.stash[_SESSION_KEY] = session
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        # No paths given: lab.yaml atomics:, $ATOMICLAB_ATOMICS, else the project's atomics (not testpaths).
        defaults = session.default_atomics
        config.args = [str(p) for p in defaults] if defaults else [str(session.root / "atomics")]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    session = parent.config.stash.get(_SESSION_KEY, None)
    if session is None or file_path.suffix.lower() not in (".yaml", ".yml"):
        return None
    try:
        head = file_path.read_text(encoding="utf-8-sig", errors="replace")[:65536]
    except OSError:
        return None
    if "atomic_tests" not in head:  # expectations, lab files and other YAML are not atomics
        return None
    from harness.content.discovery import is_payload_yaml

    if is_payload_yaml(file_path):  # upstream atomics/Indexes/*.yaml repeat every test; src/ is payload
        return None
    collector: pytest.Collector = AtomicsFile.from_parent(parent, path=file_path)
    return collector


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: the plan covers what will run
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(_SESSION_KEY, None)
    if state is None:
        return
    from harness.errors import HarnessError

    planned = [i.planned for i in items if isinstance(i, AtomicItem)]
    try:
        state.prepare(planned)
    except HarnessError as exc:
        raise pytest.UsageError(f"atomiclab: {exc}") from None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_SESSION_KEY, None)
    if state is not None:
        state.finish()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if isinstance(item, AtomicItem) and call.when == "call" and item.result is not None:
        _decorate(item, report)
    return report


def _decorate(item: AtomicItem, report: Any) -> None:
    """Status properties for --junitxml and, with pytest-html, the verdicts and result as extras."""
    assert item.result is not None
    report.user_properties.append(("atomiclab_status", item.result.status.value))
    if item.result.failure is not None:
        report.user_properties.append(("atomiclab_failure", item.result.failure.value))
    html = item.config.pluginmanager.getplugin("html")
    if html is None:
        return
    import json

    from pytest_html import extras  # type: ignore[import-untyped]  # only when pytest-html is active

    r = item.result
    lines = [f"{r.status.value.upper()}: {r.reason}", ""]
    lines += [f"[{v.outcome.value}] {v.reason}" for v in r.event_verdicts]
    lines += [f"[{v.outcome.value}] {v.reason}" for v in r.detection_verdicts]
    lines += [f"[finding] {f.message}" for f in r.findings]
    lines += ["", *(f"{s.role}: exit {s.exit_code}: {s.command}" for s in r.steps)]
    report.extras = [
        *getattr(report, "extras", []),
        extras.text("\n".join(lines), name="atomiclab verdicts"),
        extras.json(json.loads(json.dumps(r.to_dict())), name="atomiclab result"),
    ]


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report: Any, cells: list[str]) -> None:
    """Escape the test id pytest-html writes into its page as raw HTML.

    pytest-html 4 builds ``<td class="col-testId">{nodeid}</td>`` without escaping and its page
    inserts that with ``innerHTML``; an atomic's name is part of the node id, so a name such as
    ``<img src=x onerror=...>`` would run a script in the reader's browser. Only a cell that holds
    the raw id is rewritten (a pytest-html that escapes it itself is left alone).
    """
    import html

    test_id = report.nodeid + ("" if report.when == "call" else f"::{report.when}")
    raw = f'<td class="col-testId">{test_id}</td>'
    for i, cell in enumerate(cells):
        if cell == raw:
            cells[i] = f'<td class="col-testId">{html.escape(test_id)}</td>'


class AtomicsFile(pytest.File):
    """An atomics YAML file: one child collector per target."""

    def collect(self) -> Iterator[pytest.Collector]:
        from harness.content.atomics import load_atomic_file
        from harness.errors import HarnessError

        state: _AtomiclabSession = self.config.stash[_SESSION_KEY]
        try:
            atomics = load_atomic_file(self.path)
        except HarnessError as exc:
            raise self.CollectError(str(exc)) from None
        for target in state.targets:
            yield TargetTests.from_parent(
                self, name=f"{atomics.technique}[{target.name}]", target=target, tests=atomics.tests
            )


class TargetTests(pytest.Collector):
    """The tests of one atomics file on one target (kept together on one xdist worker)."""

    def __init__(self, *, target: TargetConfig, tests: tuple[AtomicTest, ...], **kw: Any) -> None:
        super().__init__(**kw)
        self.target = target
        self.tests = tests

    def collect(self) -> Iterator[pytest.Item]:
        state: _AtomiclabSession = self.config.stash[_SESSION_KEY]
        for t in self.tests:
            item = AtomicItem.from_parent(self, name=t.name, target=self.target, planned=state.planned(t))
            item.add_marker(pytest.mark.xdist_group(self.target.name))
            item.add_marker(pytest.mark.atomiclab(self.target.name, t.guid))
            yield item


class AtomicTestFailed(Exception):
    """Raised by an item whose atomic test failed or errored; carries the result."""

    def __init__(self, result: TestResult) -> None:
        super().__init__(result.reason)
        self.result = result


class AtomicItem(pytest.Item):
    def __init__(self, *, target: TargetConfig, planned: PlannedTest, **kw: Any) -> None:
        super().__init__(**kw)
        self.target = target
        self.planned = planned
        self.result: TestResult | None = None

    def runtest(self) -> None:
        from harness.results import TestStatus

        state: _AtomiclabSession = self.config.stash[_SESSION_KEY]
        self.result = state.run(self.target, self.planned)
        if self.result.status is TestStatus.SKIPPED:
            pytest.skip(self.result.reason)
        if self.result.status is TestStatus.INCONCLUSIVE and not self.config.getoption("atomiclab_strict"):
            pytest.skip(f"inconclusive: {self.result.reason}")
        if self.result.status is not TestStatus.PASSED:
            raise AtomicTestFailed(self.result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, AtomicTestFailed):
            r = excinfo.value.result
            kind = r.failure.value if r.failure is not None else r.status.value
            return "\n".join([f"{r.status.value} ({kind}): {r.reason}", *(f"  - {m}" for m in r.missed_reasons())])
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.planned.test.line, f"{self.planned.test.guid} on {self.target.name}"


class _AtomiclabSession:
    """Everything one pytest session needs: content, targets, runner, open hosts, reports."""

    def __init__(self, config: pytest.Config) -> None:
        from harness.content.expectations import discover_expectations
        from harness.content.labconfig import load_lab_config
        from harness.content.project import run_root
        from harness.targets import EmulatedTargetFactory, LabTargetFactory, parse_emulate_settings

        self.config = config
        from harness.content.discovery import default_atomics

        lab_opt = config.getoption("atomiclab_lab")
        self.lab_path = Path(lab_opt) if lab_opt else None
        self.lab: LabConfig | None = load_lab_config(self.lab_path) if self.lab_path else None
        given = [Path(a) for a in config.args if Path(a.split("::")[0]).exists()] if (
            config.args_source is pytest.Config.ArgsSource.ARGS) else []
        #: No paths given: lab.yaml ``atomics:``, else $ATOMICLAB_ATOMICS, else the project's atomics/.
        self.default_atomics = list(self.lab.atomics) if self.lab and self.lab.atomics else default_atomics()
        self.root = run_root(given or self.default_atomics)
        settings = config.getoption("atomiclab_emulate_setting")
        if self.lab is not None and settings:
            raise pytest.UsageError("--atomiclab-emulate-setting applies to the emulated host only")
        if self.lab is None:
            emulated = EmulatedTargetFactory(parse_emulate_settings(settings))
            self.targets: tuple[TargetConfig, ...] = (emulated.target(),)
            self.factory: Any = emulated
        else:
            self.targets, self.factory = self.lab.targets, LabTargetFactory(self.lab)
        self.expectations = {g: t for f in discover_expectations(self.root) for g, t in f.tests.items()}
        self.extra_rules = [Path(p) for p in config.getoption("atomiclab_rule")]
        for p in self.extra_rules:
            if not p.is_file():
                raise pytest.UsageError(f"atomiclab: --atomiclab-rule {p}: file not found")
        from harness.plan import parse_arg_override

        try:
            self.arg_overrides = [parse_arg_override(a) for a in config.getoption("atomiclab_arg")]
        except ValueError as exc:
            raise pytest.UsageError(f"atomiclab: --atomiclab-arg {exc}") from None
        self.lock = threading.Lock()
        self.interrupted = False
        self.hosts: dict[str, HostContext | str] = {}
        self.runner: Runner | None = None
        self.sink: ReportDirectory | None = None
        self.history: History | None = None
        self.run_result: RunResult | None = None
        self.out: Path | None = None

    def planned(self, test: AtomicTest) -> PlannedTest:
        from harness.plan import PlannedTest

        return PlannedTest(test, self.expectations.get(test.guid))

    def prepare(self, planned: list[PlannedTest]) -> None:
        """Build the plan, rules and report folder for the collected items (after -k/deselection)."""
        from harness import __version__
        from harness.cli.run_cmds import HISTORY_FILE, _operator, _reporters, new_run_id
        from harness.execution.executors import new_run_marker
        from harness.execution.modes import ExecMode
        from harness.plan import RunPlan, content_provenance, git_commit, published_rules, resolve_arguments, rules_of
        from harness.reporting.base import ReportDirectory
        from harness.reporting.history import History
        from harness.results import RunMode, RunResult
        from harness.runner import Runner
        from harness.targets import attribute, execute, load_rule_set

        if not planned:
            return
        lab = self.lab
        arguments = resolve_arguments(
            planned,
            lab=lab.input_arguments if lab else None,
            lab_source=lab.source if lab else None,
            cli=self.arg_overrides,
        )
        rule_paths, extras = rules_of(planned, self.root, self.extra_rules)
        published = {k: v for k, v in published_rules(self.root).items() if k not in rule_paths}
        if self.config.getoption("collectonly"):
            return  # inputs checked; nothing runs, so no report folder and no history
        plan = RunPlan(
            targets=self.targets,
            tests=tuple(planned),
            rule_paths=rule_paths,
            extra_rules=extras,
            get_prereqs=bool(self.config.getoption("atomiclab_get_prereqs")),
            command_timeout_s=lab.timeouts.command_s if lab else 300.0,
            default_budget_s=lab.timeouts.telemetry_s if lab else 30.0,
            arguments=arguments,
            channels=lab.channels if lab else {},
            mode=ExecMode.CHECK_PREREQS if self.config.getoption("atomiclab_check_prereqs")
            else ExecMode.CLEANUP if self.config.getoption("atomiclab_cleanup") else ExecMode.RUN,
            cleanup=not self.config.getoption("atomiclab_no_cleanup"),
        )
        if self.config.getoption("atomiclab_sync"):
            from harness.execution.sync import payloads_for

            self.factory.payloads = tuple(payloads_for([p.test for p in planned]))
        run_id = new_run_id()
        out_opt = self.config.getoption("atomiclab_out")
        out = Path(out_opt) if out_opt else Path("reports") / run_id  # ./reports of the working directory
        worker = getattr(self.config, "workerinput", {}).get("workerid")
        if worker:  # xdist: each worker writes its own folder
            out = out / worker
        hist_opt = self.config.getoption("atomiclab_history")
        self.history = History(Path(hist_opt) if hist_opt else Path("reports") / HISTORY_FILE)
        self.out = out
        self.sink = ReportDirectory(out, _reporters(out, self.history))
        self.runner = Runner(
            plan,
            targets=self.factory,
            execute=execute,
            attribute=attribute,
            # like `atomiclab run`: the published upstream queries are linted (not judged) every run
            rules=load_rule_set(rule_paths, plan.channels, lint_only=published),
            sink=self.sink,
            new_marker=new_run_marker,
        )
        atomics = sorted({Path(p.test.source) for p in planned})
        exp_sources = sorted({Path(str(getattr(p.expectations, "source", ""))) for p in planned if p.expectations})
        content, sources = content_provenance(
            self.root,
            atomics=atomics,
            expectations=[p for p in exp_sources if p.is_file()],
            rules=[*rule_paths.values(), *published.values()],
            lab=self.lab_path,
        )
        self.run_result = RunResult(
            run_id=run_id,
            mode=RunMode.PYTEST,
            started=datetime.now(UTC),
            harness_version=__version__,
            operator=_operator(),
            command=("pytest", *self.config.invocation_params.args),
            content=content,
            content_commit=git_commit(self.root),
            content_sources=sources,
            lint=dict(self.runner.rules.lint),
            rule_errors=dict(self.runner.rules.errors),
            lint_not_judged=self.runner.rules.not_judged,
        )

    def _host(self, target: TargetConfig) -> HostContext | str:
        from harness.runner import describe_error

        assert self.runner is not None and self.sink is not None and self.run_result is not None
        with self.lock:
            found = self.hosts.get(target.name)
            if found is not None:
                return found
            host: HostContext | str
            try:
                connected = self.runner.connect(target)
                host, info = connected, connected.info
            except Exception as exc:  # an unusable host errors its items, once
                host = f"target unusable: {describe_error(exc)}"
                from harness.results import TargetInfo

                info = TargetInfo(target.name, target.transport, target.address, target.emulated, problems=(host,))
            self.hosts[target.name] = host
            self.run_result = self.run_result.with_target(info)
            return host

    def run(self, target: TargetConfig, planned: PlannedTest) -> TestResult:
        from harness.results import FailureKind, TestStatus
        from harness.runner import _result

        assert self.runner is not None and self.sink is not None
        host = self._host(target)
        if isinstance(host, str):
            now = datetime.now(UTC)
            result = _result(planned, target.name, TestStatus.ERROR, FailureKind.HARNESS_ERROR, host, now, now)
        else:
            from harness.runner import TestInterrupted

            try:
                result = self.runner.run_test(host, planned)
            except TestInterrupted as exc:  # Ctrl-C: keep the test, its command and cleanup, then stop
                self.interrupted = True
                if exc.result is not None:
                    self._add(exc.result)
                raise
        self._add(result)
        return result

    def _add(self, result: TestResult) -> None:
        assert self.sink is not None
        with self.lock:
            assert self.run_result is not None
            self.run_result = self.run_result.with_test(result)
            run = self.run_result
        self.sink.add_result(run, result)

    def finish(self) -> None:
        for host in self.hosts.values():
            if not isinstance(host, str):
                host.close()
        self.hosts.clear()
        if self.run_result is None or self.sink is None or self.history is None or not self.run_result.tests:
            return  # nothing ran here (e.g. an xdist worker that got no group): no reports
        self.run_result = self.run_result.finished(interrupted=self.interrupted)
        self.sink.publish(self.run_result)
        self.history.record(self.run_result, self.out)
