"""Preflight: ask a target whether it is configured for the telemetry the expectations assume.

A misconfigured lab makes every test look like a detection gap. Before tests run, the runner (and
``atomiclab lab check``) asks each host, over the same Transport the tests use, with the commands an
operator would type: is the Sysmon service running, which version and config hash, is network
logging on, is process creation audited with command lines, is script block logging on, can the
harness account read each channel, are the tools present. The answers become a ``PreflightReport``
(data): ``features`` says which :class:`LabFeature` are on, ``problems`` says in words what is wrong
and what to do. The runner turns a missing event whose ``requires`` names an off feature into
"lab misconfigured: ..." instead of a telemetry or detection failure.

Remote output is hostile: every answer is parsed with anchored patterns and bounded lengths; a
command that fails or times out means "not confirmed", never an exception (transport failures
themselves still raise TransportError, which the runner reports as an ERROR for the host).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.content.expectations import LabFeature
from harness.execution.transport import Transport
from harness.model import CommandResult
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON

#: Channels the harness reads; each must be readable by the harness account.
CHANNELS: tuple[str, ...] = (SYSMON, SECURITY, POWERSHELL_OPERATIONAL)

#: Per-command deadline for preflight queries (seconds).
QUERY_TIMEOUT = 60.0

_CMDLINE_KEY = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Policies\System\Audit"
_SCRIPTBLOCK_KEY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\PowerShell\ScriptBlockLogging"
_MAX_TEXT = 64 * 1024  # bound what we parse from any one answer


@dataclass(frozen=True, slots=True)
class Check:
    """One question asked of the host and what it answered."""

    name: str
    command: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class PreflightReport:
    """What a host said about its telemetry configuration."""

    host: str
    emulated: bool
    features: Mapping[LabFeature, bool]
    facts: Mapping[str, str]
    checks: tuple[Check, ...]
    tools: Mapping[str, bool] = field(default_factory=dict)
    channels_readable: Mapping[str, bool] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Human sentences for everything that is off, each saying what to do."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def missing(self, required: Sequence[LabFeature]) -> list[LabFeature]:
        """The features among ``required`` this host does not have."""
        return [f for f in required if not self.features.get(f, False)]

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "emulated": self.emulated,
            "features": {f.value: on for f, on in self.features.items()},
            "facts": dict(self.facts),
            "tools": dict(self.tools),
            "channels_readable": dict(self.channels_readable),
            "checks": [{"name": c.name, "command": c.command, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "problems": self.problems,
        }


def _text(result: CommandResult) -> str:
    return (result.stdout + "\n" + result.stderr)[:_MAX_TEXT]


def _succeeded(result: CommandResult) -> bool:
    return result.exit_code == 0 and not result.timed_out


@dataclass(frozen=True, slots=True)
class _Sysmon:
    running: bool
    service: str
    version: str
    config_hash: str
    network: bool
    file_create: bool
    config_file: str = ""


def _query_sysmon(run: Callable[[str], CommandResult]) -> tuple[_Sysmon, list[Check]]:
    checks: list[Check] = []
    service = ""
    running = False
    # Sysmon64 on 64-bit Windows; a 32-bit install registers as "Sysmon".
    for name in ("Sysmon64", "Sysmon"):
        cmd = f"sc.exe query {name}"
        out = run(cmd)
        state = re.search(r"^\s*STATE\s*:\s*\d+\s+(\w+)", _text(out), re.MULTILINE)
        if state:
            service = name
            running = state.group(1).upper() == "RUNNING"
            checks.append(
                Check(
                    "sysmon service",
                    cmd,
                    running,
                    f"{name} is {state.group(1)}"
                    + ("" if running else f" (start it: sc.exe start {name}, or re-run lab provisioning)"),
                )
            )
            break
    if not service:
        checks.append(
            Check(
                "sysmon service",
                "sc.exe query Sysmon64",
                False,
                "Sysmon is not installed (run lab/provision/install-sysmon.ps1 or `atomiclab lab up`)",
            )
        )
        return _Sysmon(False, "", "", "", False, False), checks

    exe = "C:\\Windows\\Sysmon64.exe" if service == "Sysmon64" else "C:\\Windows\\Sysmon.exe"
    cmd = f"{exe} -c"
    dump = _text(run(cmd))
    version = _match(r"System Monitor v([\d.]+)", dump)
    config_hash = _match(r"Config hash:\s*(?:SHA256=)?([0-9A-Fa-f]{64})", dump)
    config_file = _match(r"Config file:[ \t]*(\S[^\r\n]*)", dump).strip()
    network = _match(r"Network connection:\s*(\w+)", dump).lower() == "enabled"
    # FileCreate is filtered away only when its rule group is "include" with no rules at all;
    # the dump lists rule entries indented under the group line.
    file_create = not _include_group_is_empty(dump, "FileCreate")
    checks.append(
        Check(
            "sysmon config",
            cmd,
            bool(version and config_hash),
            f"Sysmon v{version or '?'} config SHA256={config_hash or '?'}"
            + ("" if version and config_hash else " (could not read the configuration: is the account admin?)"),
        )
    )
    checks.append(
        Check(
            "sysmon network logging",
            cmd,
            network,
            "EID 3 network connections are logged"
            if network
            else "Sysmon does not log network connections (EID 3): apply the pinned sysmon-modular config",
        )
    )
    checks.append(
        Check(
            "sysmon file logging",
            cmd,
            file_create,
            "EID 11 file creation is logged"
            if file_create
            else "Sysmon's FileCreate rules include nothing (EID 11 never logged): apply the pinned config",
        )
    )
    return _Sysmon(running, service, version, config_hash, network, file_create, config_file), checks


def _include_group_is_empty(dump: str, group: str) -> bool:
    """True when ``sysmon -c`` lists ``group`` as ``onmatch: include`` with no rule lines under it.

    Group lines start with `` - ``; their rules follow indented by a tab or several spaces."""
    lines = dump.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^\s*-\s*{group}\s+onmatch:\s*include\b", line):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            return not re.match(r"^(\t|\s{3,})\S", nxt)
    return False


def _match(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else ""


def _reg_dword(run: Callable[[str], CommandResult], key: str, value: str) -> tuple[str, bool]:
    cmd = f"reg.exe query {key} /v {value}"
    out = run(cmd)
    m = re.search(rf"^\s*{re.escape(value)}\s+REG_DWORD\s+0x([0-9a-fA-F]+)", _text(out), re.MULTILINE)
    return cmd, bool(m and int(m.group(1), 16) == 1)


Run = Callable[[str], CommandResult]


def _verdict(name: str, command: str, ok: bool, good: str, bad: str) -> Check:
    return Check(name, command, ok, good if ok else bad)


def _check_process_auditing(run: Run) -> tuple[Check, bool, str]:
    cmd = 'auditpol.exe /get /subcategory:"Process Creation"'
    line = _match(r"(?im)^\s*Process Creation\s+(.+?)\s*$", _text(run(cmd))) or "unknown"
    on = "success" in line.lower()
    hint = ' (auditpol /set /subcategory:"Process Creation" /success:enable)'
    return (
        _verdict("process creation auditing", cmd, on, f"Process Creation: {line}", f"Process Creation: {line}{hint}"),
        on,
        line,
    )


def _check_command_lines(run: Run) -> tuple[Check, bool]:
    cmd, on = _reg_dword(run, _CMDLINE_KEY, "ProcessCreationIncludeCmdLine_Enabled")
    return _verdict(
        "4688 command lines",
        cmd,
        on,
        "command lines are included in 4688",
        "4688 events carry no CommandLine (set ProcessCreationIncludeCmdLine_Enabled=1)",
    ), on


def _check_script_blocks(run: Run) -> tuple[Check, bool]:
    cmd, on = _reg_dword(run, _SCRIPTBLOCK_KEY, "EnableScriptBlockLogging")
    return _verdict(
        "script block logging",
        cmd,
        on,
        "PowerShell 4104 is logged",
        "PowerShell script block logging is off (set EnableScriptBlockLogging=1)",
    ), on


def _check_channel(run: Run, channel: str) -> Check:
    cmd = f'wevtutil.exe qe "{channel}" /c:1 /rd:true /f:xml'
    return _verdict(
        f"channel {channel}",
        cmd,
        _succeeded(run(cmd)),
        "readable",
        "not readable by the harness account (add it to Event Log Readers, or the log is missing)",
    )


def _check_tool(run: Run, name: str, path: str) -> Check:
    cmd = f'cmd.exe /c if exist "{path}" (echo present) else (echo absent)'
    ok = "present" in _text(run(cmd)).lower().split()
    return _verdict(
        f"tool {name}", cmd, ok, f"{path} present", f"{path} is missing (lab/provision/install-tools.ps1 installs it)"
    )


def run_preflight(
    transport: Transport,
    *,
    tools: Mapping[str, str] | None = None,
    channels: Sequence[str] = CHANNELS,
    emulated: bool = False,
    timeout: float = QUERY_TIMEOUT,
) -> PreflightReport:
    """Ask ``transport``'s host every preflight question and return the report.

    ``tools`` maps a tool name to the path the atomics expect it at (e.g. ``{"nmap": r"C:\\...\\nmap.exe"}``).
    Raises only TransportError (from the transport itself); every other failure is a failed check.
    """

    def run(cmd: str) -> CommandResult:
        return transport.run(cmd, timeout=timeout)

    os_build = _match(r"\[Version ([\d.]+)\]", _text(run("cmd.exe /c ver")))
    sysmon, checks = _query_sysmon(run)
    audit_check, auditing, audit_line = _check_process_auditing(run)
    cmdline_check, cmdline = _check_command_lines(run)
    scriptblock_check, scriptblock = _check_script_blocks(run)
    channel_checks = {channel: _check_channel(run, channel) for channel in channels}
    tool_checks = {name: _check_tool(run, name, path) for name, path in sorted((tools or {}).items())}
    checks += [audit_check, cmdline_check, scriptblock_check, *channel_checks.values(), *tool_checks.values()]

    readable = {channel: c.ok for channel, c in channel_checks.items()}
    sysmon_ok = sysmon.running and readable.get(SYSMON, True)
    security_ok = readable.get(SECURITY, True)
    features = {
        LabFeature.SYSMON: sysmon_ok,
        LabFeature.SYSMON_NETWORK: sysmon_ok and sysmon.network,
        LabFeature.SYSMON_FILE: sysmon_ok and sysmon.file_create,
        LabFeature.PROCESS_AUDITING: auditing and security_ok,
        LabFeature.PROCESS_COMMAND_LINE: auditing and cmdline and security_ok,
        LabFeature.SCRIPT_BLOCK_LOGGING: scriptblock and readable.get(POWERSHELL_OPERATIONAL, True),
    }
    facts = {
        "os_build": os_build,
        "sysmon_service": sysmon.service,
        "sysmon_version": sysmon.version,
        "sysmon_config_hash": sysmon.config_hash,
        "sysmon_config_file": sysmon.config_file,
        "process_creation_audit": audit_line,
        "process_command_line": "enabled" if cmdline else "disabled",
        "script_block_logging": "enabled" if scriptblock else "disabled",
    }
    return PreflightReport(
        host=transport.host,
        emulated=emulated,
        features=features,
        facts=facts,
        checks=tuple(checks),
        tools={name: c.ok for name, c in tool_checks.items()},
        channels_readable=readable,
    )
