"""Concrete collaborators of the runner: opening targets, executing atomics, collecting telemetry.

``harness.runner`` only knows its seams (``TargetFactory``, ``ExecuteFn``, ``AttributeFn``,
``TelemetrySource``); this module binds them to the real parts:

* ``EmulatedTargetFactory`` starts the emulated Windows host (``harness.emulated``) on 127.0.0.1 for
  the run, reaches it through the same WinRM transport a lab host uses, and stops it afterwards;
* ``LabTargetFactory`` opens the targets of a ``lab.yaml`` over WinRM or SSH with credentials read
  from the named environment variables (or the keyring), never from the file;
* ``execute`` adapts ``harness.execution.lifecycle.execute_atomic``; ``attribute`` adapts
  ``harness.telemetry.lineage.attribute``; ``load_rule_set`` loads and lints every judged rule.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.content.labconfig import LabConfig, TargetConfig
from harness.detect.base import TimeWindow
from harness.errors import ContentError, EmulationError
from harness.execution.modes import ExecutionSettings
from harness.execution.transport import Transport
from harness.model import AtomicTest, CommandResult, ExecutionStatus, utcnow
from harness.results import ModelGap
from harness.runner import (
    AttributedEvents,
    ExecutionOutcome,
    OpenTarget,
    RuleSet,
    TestInterrupted,
    load_rules,
)
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, Event

#: Channels collected after every test.
CHANNELS: tuple[str, ...] = (SYSMON, SECURITY, POWERSHELL_OPERATIONAL)
#: Name of the emulated target in results and reports.
EMULATED_TARGET = "emulated"


# ------------------------------------------------------------------------------------- execute


def execute(
    transport: Transport,
    test: AtomicTest,
    *,
    args: Mapping[str, str],
    marker: str,
    get_prereqs: bool,
    timeout: float,
    settings: ExecutionSettings | None = None,
) -> ExecutionOutcome:
    """``execute_atomic`` as the runner's ``ExecuteFn`` (prerequisites, command, cleanup).

    Ctrl-C on the executing thread: ``execute_atomic`` runs the cleanup and re-raises; the commands
    that ran are then raised as ``TestInterrupted`` with their results, so the test is recorded
    with its command and cleanup transcripts instead of vanishing.
    """
    from harness.execution.lifecycle import execute_atomic

    recording = _RecordingTransport(transport)
    started = utcnow()
    try:
        rec = execute_atomic(
            recording, test, args=args, marker=marker, get_prereqs=get_prereqs, timeout=timeout, settings=settings
        )
    except KeyboardInterrupt as exc:
        if isinstance(exc, TestInterrupted):
            raise
        raise TestInterrupted(recording.outcome(marker, started)) from exc
    steps: list[tuple[str, CommandResult]] = []
    for p in rec.prereqs:
        steps.append(("prereq", p.check))
        if p.get is not None:
            steps.append(("get_prereq", p.get))
        if p.recheck is not None:
            steps.append(("prereq_recheck", p.recheck))
    if rec.result is not None:
        steps.append(("command", rec.result))
    if rec.cleanup is not None:
        steps.append(("cleanup", rec.cleanup))
    return ExecutionOutcome(
        status=rec.status,
        reason=rec.reason or rec.error or "",
        steps=tuple(steps),
        cleanup_error=rec.cleanup_error,
        started=rec.started,
        ended=rec.ended,
    )


class _RecordingTransport:
    """Passes commands through and keeps each one's result (None when Ctrl-C stopped it)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.calls: list[tuple[str, datetime, CommandResult | None]] = []

    @property
    def host(self) -> str:
        return self._inner.host

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        index, began = len(self.calls), utcnow()
        self.calls.append((command_line, began, None))
        result = self._inner.run(command_line, timeout=timeout)
        self.calls[index] = (command_line, began, result)
        return result

    def put_file(self, local: Path, remote: str) -> None:
        self._inner.put_file(local, remote)

    def close(self) -> None:
        self._inner.close()

    def outcome(self, marker: str, started: datetime) -> ExecutionOutcome:
        """The interrupted execution's steps: prerequisites, the command (it carries ``marker``), cleanup."""
        steps: list[tuple[str, CommandResult]] = []
        role = "prereq"
        cleanup_error: str | None = None
        for line, began, result in self.calls:
            if marker in line:
                role = "command"
            elif role == "command":
                role = "cleanup"
            if result is None:
                result = CommandResult(line, None, "", "interrupted (Ctrl-C) before it finished", began, utcnow())
            elif role == "cleanup" and (result.exit_code != 0 or result.timed_out):
                cleanup_error = f"cleanup exited with {result.exit_code}"
            steps.append((role, result))
        return ExecutionOutcome(
            status=ExecutionStatus.ERROR,
            reason="interrupted",
            steps=tuple(steps),
            cleanup_error=cleanup_error,
            started=started,
            ended=utcnow(),
        )


# ------------------------------------------------------------------------------------ telemetry


def attribute(events: Sequence[Event], *, marker: str, window: TimeWindow) -> AttributedEvents:
    """The events of the test run rooted at the process whose command line carries ``marker``."""
    from harness.telemetry.lineage import attribute as lineage_attribute

    a = lineage_attribute(events, marker=marker, window=window)
    return AttributedEvents(tuple(a.events), a.root is not None, int(a.excluded_count))


def telemetry_source(transport: Transport, channels: Sequence[str] = CHANNELS) -> Any:
    """``WevtutilSource``: bookmarks each channel's newest record id and reads events after it."""
    collect = importlib.import_module("harness.telemetry.collect")
    return collect.WevtutilSource(transport, channels)


# ---------------------------------------------------------------------------------------- rules


def load_rule_set(
    rule_paths: Mapping[str, Path],
    channels: Mapping[str, str] | None = None,
    *,
    lint_only: Mapping[str, Path] | None = None,
    sumo_tenant: bool = False,
    sumo_endpoint: str | None = None,
) -> RuleSet:
    """Load and lint every rule; the lab's channel map feeds the local Sumo engine's categories.

    ``lint_only`` rules (the published upstream queries) are linted, not judged. With
    ``sumo_tenant`` every ``.sumo`` rule is also loaded as a ``SumoApiDetector`` under
    ``RULE@sumo-api`` (endpoint ``sumo_endpoint`` or ``$SUMO_API_ENDPOINT``), with the lint
    findings of ``RULE``, judged against the expectations of ``RULE``.
    """
    from harness.detect.lint import lint_rule
    from harness.detect.loader import load_detector
    from harness.detect.sumo.messages import MessageConfig
    from harness.plan import tenant_rules

    config = MessageConfig()
    if channels:
        config = dataclasses.replace(config, categories={**config.categories, **channels})
    rules = load_rules(
        rule_paths, load=lambda p: load_detector(p, sumo_config=config), lint=lint_rule, lint_only=lint_only
    )
    if not sumo_tenant:
        return rules
    from harness.detect.sumo_api import SumoApiDetector

    remote = tenant_rules(rule_paths)
    tenant = load_rules(
        {name: rule_paths[base] for name, base in remote.items()},
        load=lambda p: SumoApiDetector.from_file(p, endpoint=sumo_endpoint),
    )
    return dataclasses.replace(
        rules,
        detectors={**rules.detectors, **tenant.detectors},
        errors={**rules.errors, **tenant.errors},
        lint={**rules.lint, **{name: rules.lint.get(base, ()) for name, base in remote.items()}},
        remote=remote,
    )


def load_rule_library(roots: Sequence[Path], channels: Mapping[str, str] | None = None) -> Any:
    """``run --rules``: the ``RuleLibrary`` of ``roots`` over the collected channels, compiled lazily
    with the same engines (and Sumo category map) as the judged rules."""
    from harness.coverage import RuleLibrary
    from harness.detect.loader import load_detector
    from harness.detect.sumo.messages import MessageConfig

    config = MessageConfig()
    if channels:
        config = dataclasses.replace(config, categories={**config.categories, **channels})
    return RuleLibrary.from_paths(roots, collected=CHANNELS, load=lambda p: load_detector(p, sumo_config=config))


# --------------------------------------------------------------------------------------- targets


def _preflight(transport: Transport, tools: Mapping[str, str], emulated: bool) -> Callable[[], Any]:
    def run() -> Any:
        from harness.lab.preflight import run_preflight

        return run_preflight(transport, tools=tools, emulated=emulated)

    return run


#: Numeric host settings are delays in seconds or counts: none means anything beyond a day.
MAX_EMULATE_NUMBER = 86400


def parse_emulate_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> HostSettings overrides, typed by the field's default.

    Booleans take true/false/yes/no/on/off/1/0; ``tools`` is a comma list (``tools=nmap,git``);
    numbers parse as float/int, finite, from 0 to MAX_EMULATE_NUMBER. Unknown keys and bad values are a
    ContentError naming them.
    """
    from harness.emulated.host import HostSettings

    defaults = HostSettings()
    # The Sysmon config is a file, given with --sysmon-config, not a KEY=VALUE setting.
        # (and the network timing is a model object, not a scalar).
    skip = ("sysmon_config", "network_timing")
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults) if f.name not in skip}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ContentError(
                f"--emulate-setting {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        current = fields[key]
        v = value.strip()
        try:
            if isinstance(current, bool):
                low = v.lower()
                if low not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                    raise ValueError(v)
                out[key] = low in ("true", "yes", "on", "1")
            elif isinstance(current, frozenset):
                out[key] = frozenset(t.strip() for t in v.split(",") if t.strip())
            elif isinstance(current, int | float):
                number = int(v) if isinstance(current, int) else float(v)
                if not math.isfinite(number) or not 0 <= number <= MAX_EMULATE_NUMBER:
                    raise ContentError(
                        f"--emulate-setting {key}={v!r}: must be a number from 0 to {MAX_EMULATE_NUMBER}",
                        hint=f"e.g. {key}=2",
                    )
                out[key] = number
            else:
                out[key] = v
        except ValueError:
            raise ContentError(
                f"--emulate-setting {key}={v!r}: not a valid {type(current).__name__}",
                hint="booleans: true/false; tools: a comma list such as nmap,git",
            ) from None
    return out


class EmulatedTargetFactory:
    """Starts one emulated Windows host per opened target and reaches it over WinRM/HTTPS + NTLM.

    ``settings`` are HostSettings overrides (``--emulate-setting``). The host, its server and its
    generated credentials live only while the target is open.
    """

    def __init__(
        self, settings: Mapping[str, Any] | None = None, *, sysmon_config: Any = None, payloads: Sequence[Any] = ()
    ) -> None:
        self.settings = dict(settings or {})
        #: ``run --sync``: payload files (harness.execution.sync.Payload) written into each host's file
        #: system below C:\AtomicRedTeam\atomics before any test runs.
        self.payloads = tuple(payloads)
        if sysmon_config is not None:  # a harness.emulated.sysmon_config.SysmonConfig (--sysmon-config)
            self.settings["sysmon_config"] = sysmon_config
        self.servers: list[Any] = []  # the started servers, for round-trip statistics (bench)

    @staticmethod
    def target(name: str = EMULATED_TARGET) -> TargetConfig:
        return TargetConfig(
            name=name, transport="winrm", address="127.0.0.1", port=0, platform="windows", auth="ntlm", emulated=True
        )

    def open(self, target: TargetConfig) -> OpenTarget:
        from harness.emulated.host import EmulatedHost, HostSettings
        from harness.emulated.wsman import EmulatedHostServer

        try:
            host = EmulatedHost(dataclasses.replace(HostSettings(), **self.settings))
        except TypeError as exc:
            raise EmulationError(f"bad emulated host setting: {exc}") from exc
        if self.payloads:
            from harness.execution.modes import WINDOWS_ATOMICS_FOLDER
            from harness.execution.sync import FileSystemSink, sync_payloads

            sync_payloads(self.payloads, FileSystemSink(host.fs), target.atomics_folder or WINDOWS_ATOMICS_FOLDER,
                          windows=True, target=target.name)
        server = EmulatedHostServer(host).start()
        self.servers.append(server)
        try:
            transport = _winrm_to_emulated(server, target.name)
        except BaseException:
            server.stop()
            raise

        def close() -> None:
            try:
                transport.close()
            finally:
                server.stop()

        tools = _emulated_tools(host)
        return OpenTarget(
            config=dataclasses.replace(target, port=int(server.port)),
            transport=transport,
            make_source=telemetry_source,
            emulated=True,
            preflight=_preflight(transport, tools, True),
            close=close,
            model_gaps=lambda marker: _model_gaps(host, marker),
        )


def _model_gaps(host: Any, marker: str) -> tuple[ModelGap, ...]:
    """What the in-process emulated host recorded as outside its model under ``marker``'s tree.

    Read from the host model itself (not scraped from stderr, which the atomic may redirect).
    """
    return tuple(ModelGap(what=s.what, process=s.process, pid=s.pid) for s in host.not_modelled_under(marker))


def _emulated_tools(host: Any) -> dict[str, str]:
    paths = {
        "nmap": r"C:\Program Files (x86)\Nmap\nmap.exe",
        "nbtscan": r"C:\AtomicRedTeam\ExternalPayloads\nbtscan.exe",
    }
    # All of them, installed or not: preflight must report a missing tool as a lab problem.
    return paths


def _winrm_to_emulated(server: Any, name: str) -> Transport:
    """A WinRM transport to a running emulated server with its per-start credentials.

    The password goes through an in-memory secret lookup, never the environment or a command line.
    """
    from harness.emulated.wsman import PASSWORD_ENV
    from harness.execution.transports.winrm import (
        CommandMode,
        WinRMAuth,
        WinRMConfig,
        WinRMScheme,
        WinRMTransport,
    )

    password = server.password
    config = WinRMConfig(
        host="127.0.0.1",
        port=int(server.port),
        scheme=WinRMScheme.HTTPS,
        auth=WinRMAuth.NTLM,
        username=server.username,
        password_env=PASSWORD_ENV,
        ca_bundle=Path(server.ca_cert_path),
        command_mode=CommandMode.LAUNCHER,  # the lab's execution path (see _transport below)
    )
    return WinRMTransport(config, secrets=lambda _env: password)


def sync_target(target: TargetConfig, transport: Transport, payloads: Sequence[Any]) -> Any:
    """Copy ``payloads`` to ``target``'s atomics folder over ``transport`` (harness.execution.sync)."""
    from harness.execution.modes import default_atomics_folder
    from harness.execution.sync import TransportSink, sync_payloads

    windows = target.platform == "windows"
    folder = target.atomics_folder or default_atomics_folder(target.platform)
    return sync_payloads(payloads, TransportSink(transport, windows=windows), folder, windows=windows,
                         target=target.name)


def _posix_target(target: TargetConfig, transport: Transport) -> OpenTarget:
    """A Linux/macOS target: Sysmon for Linux from journald when installed, else no telemetry and a
    note saying so (never an error before the tests execute)."""
    from harness.telemetry.sysmon_linux import NotCollectedSource, SysmonLinuxSource, sysmon_linux_present

    try:
        present = sysmon_linux_present(transport)
    except BaseException:
        transport.close()
        raise
    if present:
        return OpenTarget(config=target, transport=transport, make_source=SysmonLinuxSource, close=transport.close)
    note = f"not collected on this platform ({target.platform}: no Sysmon for Linux on {target.name})"
    return OpenTarget(
        config=target,
        transport=transport,
        make_source=lambda _t: NotCollectedSource(note),
        close=transport.close,
        telemetry_note=note,
    )


class LabTargetFactory:
    """Opens the targets of a lab.yaml over WinRM or SSH."""

    def __init__(self, lab: LabConfig, *, payloads: Sequence[Any] = ()) -> None:
        self.lab = lab
        #: ``run --sync``: payload files (harness.execution.sync.Payload) copied to each target first.
        self.payloads = tuple(payloads)

    def connect(self, target: TargetConfig) -> Transport:
        """A transport to ``target`` (``atomiclab sync`` uses it without opening a run)."""
        return self._transport(target)

    def open(self, target: TargetConfig) -> OpenTarget:
        transport = self._transport(target)
        if self.payloads:
            try:
                sync_target(target, transport, self.payloads)
            except BaseException:
                transport.close()
                raise
        if target.platform != "windows":
            return _posix_target(target, transport)
        return OpenTarget(
            config=target,
            transport=transport,
            make_source=telemetry_source,
            emulated=target.emulated,
            preflight=_preflight(transport, target.tools, target.emulated),
            close=transport.close,
        )

    def _transport(self, t: TargetConfig) -> Transport:
        if t.transport == "ssh":
            from harness.execution.transports.ssh import RemoteShell, SSHAuth, SSHConfig, SSHTransport

            if t.known_hosts is None:
                raise ContentError(
                    f"target {t.name}: ssh needs known_hosts (host keys are always checked)",
                    file=self.lab.source or None,
                    hint="add known_hosts: <file> to the target",
                )
            ssh = SSHTransport(
                SSHConfig(
                    host=t.address,
                    username=t.username or "",
                    known_hosts=t.known_hosts,
                    port=t.port,
                    auth=SSHAuth(t.auth),
                    key_file=t.key_file,
                    key_passphrase_env=t.key_passphrase_env,
                    password_env=t.password_env,
                    remote_shell=RemoteShell.CMD if t.platform == "windows" else RemoteShell.POSIX,
                    connect_timeout=self.lab.timeouts.connect_s,
                )
            )
            return ssh
        from harness.execution.transports.winrm import (
            CommandMode,
            WinRMAuth,
            WinRMConfig,
            WinRMScheme,
            WinRMTransport,
        )

        # LAUNCHER for lab and emulated targets alike (one execution path): WinRS re-parses the
        # command line through cmd.exe /C; the launcher starts it exactly as rendered and kills the
        # process tree at the deadline, so emulated evidence carries the lab's process chain.
        return WinRMTransport(
            WinRMConfig(
                host=t.address,
                port=t.port,
                scheme=WinRMScheme(t.scheme),
                auth=WinRMAuth(t.auth),
                username=t.username,
                password_env=t.password_env,
                ca_bundle=t.ca_cert,
                certificate_pem=t.cert_pem,
                certificate_key_pem=t.cert_key_pem,
                connect_timeout=self.lab.timeouts.connect_s,
                command_mode=CommandMode.LAUNCHER,
            )
        )
