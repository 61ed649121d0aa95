"""One atomic on one target: prerequisites -> command -> cleanup, each under a deadline.

Contract of :func:`execute_atomic`:

* ``manual`` executors -> ``SKIPPED_MANUAL``; a target platform not in ``supported_platforms`` ->
  ``SKIPPED_PLATFORM``. Nothing runs.
* Prerequisites run in ``dependency_executor_name`` (default: the test's executor), in order: the
  check; when it fails and ``get_prereqs`` is set, the get command and the check again. The first
  unmet one -> ``SKIPPED_PREREQ`` whose reason names its description (placeholders filled in).
  Every prerequisite command's CommandResult is kept in the record.
* The command runs with the run ``marker`` in its command line (see ``executors``). A deadline
  overrun is *not* an error: the result says ``timed_out`` and the verdict layer judges it.
* Cleanup runs after every executed test (``cleanup=True``): after success, failure, deadline,
  a transport error, and KeyboardInterrupt (re-raised after cleanup). Its CommandResult and any
  cleanup error are stored beside the command's result and never replace it.
* A transport failure in the command -> ``ERROR`` with the one-line message; content problems in
  the test (unknown override, bad type) raise ContentError before anything runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from harness.errors import TransportError
from harness.execution.arguments import check_overrides, describe, substitute
from harness.execution.executors import is_executable, is_windows_executor, render_command_line
from harness.execution.modes import ExecMode, ExecutionSettings, default_atomics_folder
from harness.execution.transport import Transport
from harness.model import AtomicTest, CommandResult, ExecutionStatus, ExecutorName, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PrereqCheck:
    """One dependency: its check, and with ``get_prereqs`` the get command and the second check."""

    description: str
    check: CommandResult
    get: CommandResult | None = None
    recheck: CommandResult | None = None

    @property
    def met(self) -> bool:
        final = self.recheck if self.recheck is not None else self.check
        return final.exit_code == 0 and not final.timed_out


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """What happened when one atomic ran on one target (frozen data; no exceptions for outcomes)."""

    test_guid: str
    test_name: str
    host: str
    marker: str
    status: ExecutionStatus
    started: datetime
    ended: datetime
    reason: str | None = None
    prereqs: tuple[PrereqCheck, ...] = ()
    command_line: str | None = None
    result: CommandResult | None = None
    error: str | None = None
    cleanup_command_line: str | None = None
    cleanup: CommandResult | None = None
    cleanup_error: str | None = None


def _platform_supported(test: AtomicTest, platform: str | None) -> bool:
    return platform is None or platform.lower() in {p.lower() for p in test.platforms}


def _line(
    executor: ExecutorName,
    template: str,
    test: AtomicTest,
    args: Mapping[str, str],
    marker: str | None,
    atomics_folder: str | None = None,
) -> str:
    text = substitute(template, test, executor, args, atomics_folder=atomics_folder)
    return render_command_line(executor, text, marker=marker)


def atomics_folder_for(test: AtomicTest, platform: str | None, settings: ExecutionSettings) -> str:
    """The target-side atomics folder replacing ``PathToAtomicsFolder``: the configured one, else the
    default of the target's platform (or of the executor's when the platform is unknown)."""
    if settings.atomics_folder:
        return settings.atomics_folder
    if platform is None:
        platform = "windows" if is_windows_executor(test.executor.name) else "linux"
    return default_atomics_folder(platform)


#: ``whoami /groups`` lists the High Mandatory Level SID only in an elevated token (Microsoft docs,
#: "Well-known SIDs": S-1-16-12288); ``id -u`` is 0 for root. Invoke-AtomicRedTeam asks the same
#: question (Private/Get-TargetInfo.ps1: IsInRole(Administrator) on Windows, ``id -u`` elsewhere).
_ELEVATION_PROBES = {
    True: (ExecutorName.COMMAND_PROMPT, 'whoami /groups | find "S-1-16-12288"'),
    False: (ExecutorName.SH, "id -u"),
}


def probe_elevation(transport: Transport, windows: bool, timeout: float) -> bool | None:
    """Whether the target account is elevated: True, False, or None when the answer is unclear."""
    executor, text = _ELEVATION_PROBES[windows]
    try:
        result = transport.run(render_command_line(executor, text, marker=None), timeout=min(timeout, 60.0))
    except TransportError:
        return None
    if result.timed_out:
        return None
    if windows:
        if result.exit_code == 0 and "S-1-16-12288" in result.stdout:
            return True
        return False if result.exit_code == 1 and not result.stderr.strip() else None
    out = result.stdout.strip()
    return (out == "0") if result.exit_code == 0 and out.isdigit() else None


@dataclass(frozen=True, slots=True)
class RenderedTest:
    """Every text of one test as it would run (Invoke-AtomicTest -ShowDetails): arguments resolved,
    ``PathToAtomicsFolder`` replaced, wrapped in the executor's command line (no run marker)."""

    arguments: tuple[tuple[str, str, str], ...]  # (name, type, value as substituted)
    command: str | None
    cleanup: str | None
    prereqs: tuple[tuple[str, str, str | None], ...]  # (description, check line, get line)
    atomics_folder: str


def render_test(
    test: AtomicTest, args: Mapping[str, str], *, platform: str | None = None,
    settings: ExecutionSettings | None = None,
) -> RenderedTest:
    """``test`` rendered for a target of ``platform`` (see RenderedTest). ContentError for bad overrides."""
    settings = settings or ExecutionSettings()
    check_overrides(test, args)
    folder = atomics_folder_for(test, platform, settings)
    executor = test.executor.name
    runnable = is_executable(executor)
    dep_executor = test.dependency_executor_name or executor
    values = tuple(
        (name, arg.type.value, describe("#{" + name + "}", test, args, atomics_folder=folder))
        for name, arg in test.input_arguments.items()
    )
    command = (
        _line(executor, test.executor.command, test, args, None, folder)
        if runnable and test.executor.command else None
    )
    cleanup = (
        _line(executor, test.executor.cleanup_command, test, args, None, folder)
        if runnable and test.executor.cleanup_command and test.executor.cleanup_command.strip() else None
    )
    prereqs = tuple(
        (
            describe(dep.description, test, args, atomics_folder=folder),
            _line(dep_executor, dep.prereq_command, test, args, None, folder),
            _line(dep_executor, dep.get_prereq_command, test, args, None, folder)
            if dep.get_prereq_command.strip() else None,
        )
        for dep in test.dependencies
        if is_executable(dep_executor)
    )
    return RenderedTest(values, command, cleanup, prereqs, folder)


def execute_atomic(
    transport: Transport,
    test: AtomicTest,
    *,
    args: Mapping[str, str],
    marker: str,
    get_prereqs: bool,
    timeout: float,
    cleanup: bool = True,
    platform: str | None = None,
    settings: ExecutionSettings | None = None,
) -> ExecutionRecord:
    """Run ``test`` on ``transport`` (see the module docstring). ``args`` are untrusted overrides;
    ``timeout`` is the deadline of each remote command; ``platform`` is the target's platform
    (``windows``, ``linux``, ``macos``) when known; ``settings`` the mode, cleanup, atomics folder
    and elevation of this target (``harness.execution.modes``)."""
    settings = settings or ExecutionSettings(cleanup=cleanup)
    cleanup = cleanup and settings.cleanup
    started = utcnow()
    base = ExecutionRecord(test.guid, test.name, transport.host, marker, ExecutionStatus.ERROR, started, started)
    executor = test.executor.name
    if not is_executable(executor) or not test.executor.command:
        return replace(
            base,
            status=ExecutionStatus.SKIPPED_MANUAL,
            ended=utcnow(),
            reason="manual test: follow its steps by hand",
        )
    if not _platform_supported(test, platform):
        return replace(
            base,
            status=ExecutionStatus.SKIPPED_PLATFORM,
            ended=utcnow(),
            reason=f"target platform {platform} is not one of {', '.join(test.platforms)}",
        )
    check_overrides(test, args)
    folder = atomics_folder_for(test, platform, settings)
    # Render everything up front: a content problem must stop the test before anything runs.
    command_line = _line(executor, test.executor.command, test, args, marker, folder)
    has_cleanup = bool(test.executor.cleanup_command and test.executor.cleanup_command.strip())
    cleanup_line = (
        _line(executor, test.executor.cleanup_command or "", test, args, None, folder)
        if (cleanup or settings.mode is ExecMode.CLEANUP) and has_cleanup
        else None
    )
    if settings.mode is ExecMode.CLEANUP:
        return _cleanup_only(transport, test, base, cleanup_line, timeout)
    if test.executor.elevation_required and settings.mode is ExecMode.RUN:
        elevated = settings.elevated
        if elevated is None:
            elevated = probe_elevation(transport, is_windows_executor(executor), timeout)
        if elevated is False:
            return replace(
                base,
                status=ExecutionStatus.SKIPPED_ELEVATION,
                ended=utcnow(),
                reason="elevation_required: the target account is not elevated (administrator/root); "
                "run as an elevated account",
                command_line=command_line,
            )
    prereqs: list[PrereqCheck] = []
    try:
        unmet = _check_prereqs(
            transport,
            test,
            args,
            prereqs,
            get_prereqs=get_prereqs and settings.mode is not ExecMode.CHECK_PREREQS,
            timeout=timeout,
            atomics_folder=folder,
        )
    except TransportError as exc:
        return replace(
            base,
            status=ExecutionStatus.ERROR,
            ended=utcnow(),
            error=f"prerequisite check failed: {exc}",
            prereqs=tuple(prereqs),
            command_line=command_line,
        )
    if unmet is not None:
        hint = "" if get_prereqs else " (run with --get-prereqs to fetch it)"
        return replace(
            base,
            status=ExecutionStatus.SKIPPED_PREREQ,
            ended=utcnow(),
            reason=f"prerequisite not met: {unmet.description}{hint}",
            prereqs=tuple(prereqs),
            command_line=command_line,
        )

    if settings.mode is ExecMode.CHECK_PREREQS:
        met = f"{len(prereqs)} prerequisite(s) met" if prereqs else "no prerequisites declared"
        return replace(
            base,
            status=ExecutionStatus.PREREQS_MET,
            ended=utcnow(),
            reason=f"{met}; --check-prereqs: nothing else ran",
            prereqs=tuple(prereqs),
            command_line=command_line,
        )

    result: CommandResult | None = None
    error: str | None = None
    cleanup_result: CommandResult | None = None
    cleanup_error: str | None = None
    try:
        result = transport.run(command_line, timeout=timeout)
    except TransportError as exc:
        error = str(exc)
    finally:
        # Runs on success, failure, deadline, transport error and KeyboardInterrupt alike.
        if cleanup_line is not None:
            cleanup_result, cleanup_error = _run_cleanup(transport, test, cleanup_line, timeout)
    return replace(
        base,
        status=ExecutionStatus.ERROR if error else ExecutionStatus.EXECUTED,
        ended=utcnow(),
        prereqs=tuple(prereqs),
        command_line=command_line,
        result=result,
        error=error,
        cleanup_command_line=cleanup_line,
        cleanup=cleanup_result,
        cleanup_error=cleanup_error,
    )


def _check_prereqs(
    transport: Transport,
    test: AtomicTest,
    args: Mapping[str, str],
    checked: list[PrereqCheck],
    *,
    get_prereqs: bool,
    timeout: float,
    atomics_folder: str | None = None,
) -> PrereqCheck | None:
    """Check the test's dependencies in order (fetching unmet ones with ``get_prereqs``), appending
    each to ``checked`` as it completes; the first unmet one stops the checks and is returned.
    TransportError propagates (``checked`` then holds the dependencies checked before it)."""
    executor = test.dependency_executor_name or test.executor.name
    for dep in test.dependencies:
        description = describe(dep.description, test, args, atomics_folder=atomics_folder).strip()
        check_line = _line(executor, dep.prereq_command, test, args, None, atomics_folder)
        check = transport.run(check_line, timeout=timeout)
        item = PrereqCheck(description, check)
        if not item.met and get_prereqs and dep.get_prereq_command.strip():
            get_line = _line(executor, dep.get_prereq_command, test, args, None, atomics_folder)
            got = transport.run(get_line, timeout=timeout)
            item = PrereqCheck(description, check, got, transport.run(check_line, timeout=timeout))
        checked.append(item)
        if not item.met:
            return item
    return None


def _cleanup_only(
    transport: Transport, test: AtomicTest, base: ExecutionRecord, cleanup_line: str | None, timeout: float
) -> ExecutionRecord:
    """``--cleanup``: the cleanup command alone (Invoke-AtomicTest -Cleanup)."""
    if cleanup_line is None:
        return replace(base, status=ExecutionStatus.CLEANED_UP, ended=utcnow(),
                       reason="--cleanup: the test declares no cleanup command")
    result, error = _run_cleanup(transport, test, cleanup_line, timeout)
    return replace(
        base,
        status=ExecutionStatus.ERROR if error else ExecutionStatus.CLEANED_UP,
        ended=utcnow(),
        reason=f"--cleanup: {error}" if error else "--cleanup: only the cleanup command ran",
        error=f"--cleanup: {error}" if error else None,
        cleanup_command_line=cleanup_line,
        cleanup=result,
        cleanup_error=error,
    )


def _run_cleanup(
    transport: Transport, test: AtomicTest, cleanup_line: str, timeout: float
) -> tuple[CommandResult | None, str | None]:
    """Run the cleanup command: its result and the error to report beside the test's own outcome.
    No exception escapes (a cleanup problem must never hide the test's result) but KeyboardInterrupt."""
    try:
        result = transport.run(cleanup_line, timeout=timeout)
    except TransportError as exc:
        return None, f"cleanup failed: {exc}"
    except Exception as exc:
        log.exception("%s: cleanup of %s raised", transport.host, test.name)
        return None, f"cleanup failed: {type(exc).__name__}: {exc}"
    if result.timed_out:
        return result, f"cleanup overran its {timeout:g}s deadline and was terminated"
    if result.exit_code != 0:
        return result, f"cleanup exited with {result.exit_code}"
    return result, None


__all__ = ["ExecutionRecord", "ExecutionStatus", "PrereqCheck", "RenderedTest", "execute_atomic", "render_test"]
