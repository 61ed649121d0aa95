"""The emulated Windows host: one Sysmon-instrumented Windows Server the WS-Man server exposes.

Contract (the interface ``harness/emulated/wsman.py`` codes against):
- ``EmulatedHost(settings)`` builds the host: hostname/domain, accounts (the harness user created
  at ``open_shell``, SYSTEM), a file system with ``%TEMP%``, System32 binaries and the lab tools the
  settings install, environment, listening ports with owning PIDs, running services (WinRM svchost,
  Sysmon64), the event logs and a UTC wall clock.
- ``open_shell(user)`` logs the user on anew (a fresh LogonId/LogonGuid per shell, as WinRM does)
  and creates ``WinrsHost.exe -Embedding`` under ``svchost.exe -k DcomLaunch -p`` (Sysmon 1 / 4688);
  ``ShellSession.start(command_line)`` runs ``C:\\Windows\\system32\\cmd.exe /C <command line>`` in a
  worker thread as that WinrsHost's child, so cmd's parsing applies as on a real host;
  ``RunningCommand.read`` streams its output encoded in the shell codepage; ``terminate`` ends the
  process tree promptly (exit 0xC000013A). ``execute`` runs a line through the harness's launcher
  (powershell.exe -EncodedCommand, Process.Start, taskkill /T /F at the deadline: launch.py).
- Behaviour models: what Sysmon logs follows the host's Sysmon XML config (sysmon_config.py; default
  the lab's); the network follows network.py (listening sockets of a stock Server 2022 lab host,
  Sysmon 3 only for established TCP with both ends of a local connection, UDP sends, a seeded ~2 s
  refused connect and 1.6-5.7 s Sysmon 3 delivery); PowerShell logging follows ps_logging.py (4104
  levels and splitting from PowerShell's source, classic 400/403/600 for every engine start).
- Every process, connection, file and script block is logged per ``HostSettings`` in real-schema XML,
  readable with ``wevtutil qe`` over the shell or ``host.eventlog.query`` in tests.
- Every step outside the model (program, cmdlet, language feature) is recorded with its process
  through ``note_not_modelled``; ``not_modelled_under(marker)`` returns those of the process trees
  rooted at a command line carrying ``marker`` (the harness judges such a test inconclusive).
- Everything the host reports is emulated (``EmulatedHost.emulated`` is True); the WS-Man server labels
  its responses accordingly.
"""

from __future__ import annotations

import ntpath
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from harness.emulated.cmd_shell import run_cmd
from harness.emulated.eventlog import EventLog, ImageInfo, LoggingPolicy, TelemetryWriter
from harness.emulated.filesystem import FileSystem, FsError, normalize
from harness.emulated.launch import KillSwitch, StartedProgram, child_ctx, exit_status_of, run_taskkill
from harness.emulated.network import NetworkTiming, TimingModel, stock_listeners
from harness.emulated.network import Outcome as NetOutcome
from harness.emulated.network import outcome as net_outcome
from harness.emulated.powershell import run_powershell
from harness.emulated.processes import (
    STATUS_CONTROL_C_EXIT,
    Account,
    Process,
    ProcessTable,
    logon_guid,
)
from harness.emulated.programs import PROGRAM_BEHAVIOURS
from harness.emulated.registry import Registry, Value, canonical
from harness.emulated.sysmon_config import SysmonConfig, default_sysmon_config
from harness.emulated.tools import (
    ANY_ADDR,
    TOOL_BEHAVIOURS,
    Behaviour,
    BufferSink,
    Ctx,
    Env,
    Listener,
    ProgramProfile,
    Sink,
    Terminated,
    load_profiles,
    split_command_line,
)
from harness.errors import EmulationError
from harness.execution.executors import windows_launcher
from harness.model import CommandResult, utcnow
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, SYSTEM, WINDOWS_POWERSHELL

PATHEXT = (".COM", ".EXE", ".BAT", ".CMD", ".VBS", ".VBE", ".JS", ".JSE", ".WSF", ".WSH", ".MSC")
SYSTEM32 = "C:\\Windows\\System32"
WINRM_SVCHOST_CMD = "C:\\Windows\\system32\\svchost.exe -k NetworkService -p -s WinRM"
#: WinRS creates its shell host through COM (``-Embedding``), so the DCOM launcher's svchost is its
#: parent; the recordings show that group's command line as ``svchost.exe -k DcomLaunch -p ...``
#: (atomic-evtx T1046-3 Sysmon 1: ``C:\Windows\system32\svchost.exe -k DcomLaunch -p -s DeviceInstall``).
DCOMLAUNCH_SVCHOST_CMD = "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p"
WINRSHOST_CMD = "C:\\Windows\\system32\\WinrsHost.exe -Embedding"
#: WinRS runs every command through the command processor: ``%ComSpec% /C <command>``
#: (Microsoft Learn, "winrs": commands run in cmd.exe; the command line is what Sysmon 1 shows).
WINRS_COMSPEC_PREFIX = "C:\\Windows\\system32\\cmd.exe /C "
#: The launcher exits with this code when it killed the command at its deadline.
LAUNCHER_TIMEOUT_EXIT = 124
LAUNCHER_KILL_GRACE_S = 5.0
SYSMON_CONFIG_PATH = "C:\\Windows\\sysmon-config.xml"
MS_PRODUCT = "Microsoft® Windows® Operating System"
MS_COMPANY = "Microsoft Corporation"


@dataclass(frozen=True)
class HostSettings:
    """The lab state the host emulates (defaults: a fully instrumented lab box)."""

    hostname: str = "WIN-ATOMICLAB1"
    domain: str = "ATOMICLAB"
    os_build: str = "10.0.20348.2700"
    sysmon_installed: bool = True
    sysmon_version: str = "15.15"
    sysmon_network: bool = True  # Sysmon EID 3 logged
    sysmon_file: bool = True  # Sysmon EID 11 logged
    sysmon_registry: bool = True  # Sysmon EID 12/13 logged
    sshd: bool = True  # the lab's OpenSSH server listens on 22 (lab/provision/configure-openssh.ps1)
    #: Delays of the network model (refused connect, Sysmon 3 delivery); tests inject instant().
    network_timing: NetworkTiming = field(default_factory=NetworkTiming)
    process_auditing: bool = True  # Security 4688 / 4689
    command_line_auditing: bool = True  # 4688 CommandLine filled
    script_block_logging: bool = True  # PowerShell/Operational 4104
    tools: frozenset[str] = frozenset({"nmap", "nbtscan", "git"})
    delivery_delay_s: float = 0.0  # events become visible to queries only after this delay
    #: The Sysmon configuration the host runs (None: the lab's, see sysmon_config.default_sysmon_config).
    sysmon_config: SysmonConfig | None = None
    ipv4: str = "10.0.2.15"
    gateway: str = "10.0.2.2"
    mac: str = "00-15-5D-01-02-03"


@dataclass(frozen=True, slots=True)
class NotModelledStep:
    """One step a process ran outside the model (see ``EmulatedHost.note_not_modelled``)."""

    what: str
    process: str  # image name
    pid: int
    process_guid: str


#: Unmodelled steps kept per host (oldest dropped first): bounds memory over long runs.
MAX_NOT_MODELLED = 100_000


@dataclass(frozen=True)
class OutputChunk:
    """What one ``RunningCommand.read`` returns: bytes in the shell codepage."""

    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


def _encoding(codepage: int) -> str:
    return {65001: "utf-8", 437: "cp437", 850: "cp850", 1252: "cp1252"}.get(codepage, "cp437")


class EmulatedHost:
    """One emulated Windows host. Thread-safe: several shells and commands may run at once."""

    emulated = True

    def __init__(
        self,
        settings: HostSettings | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or HostSettings()
        s = self.settings
        self.hostname = s.hostname
        self.domain = s.domain
        self._rng = rng or random.Random()
        self.timing = TimingModel(s.network_timing)
        self._sleep = sleep  # how a blocking network wait passes (tests pass a recorder)
        self._lock = threading.Lock()
        boot = self.now()
        self.fs = FileSystem()
        self.processes = ProcessTable(s.hostname, rng=self._rng, boot_unix=int(boot.timestamp()) - 3600)
        channels = [SYSMON] if s.sysmon_installed else []
        channels += [SECURITY, POWERSHELL_OPERATIONAL, SYSTEM, "Application", WINDOWS_POWERSHELL]
        self.eventlog = EventLog(
            s.hostname,
            channels=channels,
            delivery_delay_s=s.delivery_delay_s,
            first_record_id=self._rng.randrange(1000, 20000),
        )
        profiles = load_profiles()
        self._profiles: dict[str, ProgramProfile] = {}
        for p in profiles:
            old = self._profiles.get(p.image.lower())
            # the stock list (stock_server2022.yaml) never hides a model another profile gives the image
            if self._installed(p.requires) and (old is None or old.behaviour == "not_modelled"):
                self._profiles[p.image.lower()] = p
        self._behaviours: dict[str, Behaviour] = {
            **TOOL_BEHAVIOURS,
            **PROGRAM_BEHAVIOURS,
            "cmd": run_cmd,
            "powershell": run_powershell,
            "taskkill": run_taskkill,
        }
        self._switches: dict[int, tuple[Process, KillSwitch]] = {}
        self._ps_engines: dict[int, tuple[str, str]] = {}  # pid -> (HostId, RunspaceId)
        self._accounts: dict[str, Account] = {}
        self._not_modelled: list[tuple[Process, str]] = []
        self.system = Account(
            name="SYSTEM", domain="NT AUTHORITY", sid="S-1-5-18", logon_id=0x3E7,
            logon_guid=logon_guid(self.processes.machine, int(boot.timestamp()) - 3600, 0x3E7),
            profile_dir="C:\\Windows\\system32\\config\\systemprofile", integrity="System", is_system=True,
        )  # fmt: skip
        self.network_service = Account(
            name="NETWORK SERVICE", domain="NT AUTHORITY", sid="S-1-5-20", logon_id=0x3E4,
            logon_guid=logon_guid(self.processes.machine, int(boot.timestamp()) - 3600, 0x3E4),
            profile_dir="C:\\Windows\\ServiceProfiles\\NetworkService", integrity="System",
        )  # fmt: skip
        rules = s.sysmon_config or default_sysmon_config(None)
        self.sysmon_base_config = rules
        # The degraded-lab switches take a type out of the config as `sysmon -c` would then show it.
        if not s.sysmon_network:
            rules = rules.without("NetworkConnect")
        if not s.sysmon_file:
            rules = rules.without("FileCreate")
        if not s.sysmon_registry:
            rules = rules.without("RegistryEvent")
        self.sysmon_rules = rules
        self._build_filesystem()
        self._registry = self._build_registry()
        self._boot_processes(boot)
        self.telemetry = TelemetryWriter(
            self.eventlog,
            policy=LoggingPolicy(
                sysmon=s.sysmon_installed,
                sysmon_network=s.sysmon_network,
                sysmon_file=s.sysmon_file,
                sysmon_registry=s.sysmon_registry,
                process_auditing=s.process_auditing,
                command_line_auditing=s.command_line_auditing,
                script_block_logging=s.script_block_logging,
                sysmon_rules=self.sysmon_rules,
            ),
            hostname=s.hostname,
            domain=s.domain,
            sysmon_pid=self._sysmon_pid,
            image_info=self.image_info,
            image_hash=self.image_hash,
            thread_id=self._thread_id,
            rng=self._rng,
        )

    # ------------------------------------------------------------------------------ construction
    def _installed(self, requires: str | None) -> bool:
        if requires is None:
            return True
        if requires == "sysmon":
            return self.settings.sysmon_installed
        return requires in self.settings.tools

    def _thread_id(self) -> int:
        return self._rng.randrange(256, 4096) * 4

    def _build_filesystem(self) -> None:
        now = self.now()
        for d in (
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0", "C:\\Windows\\System32\\Wbem",
            "C:\\Windows\\Temp", "C:\\Program Files", "C:\\Program Files (x86)", "C:\\ProgramData",
            "C:\\Users\\Public", "C:\\AtomicRedTeam",
        ):  # fmt: skip
            self.fs.mkdir(d)
        for p in self._profiles.values():
            self.fs.mkdir(ntpath.dirname(p.image))
            body = f"MZ atomiclab-emulated image {p.image} {p.version.get('file_version', '')}".encode()
            self.fs.write(p.image, body, now=now)
        if self.settings.sysmon_installed:
            self.fs.write(SYSMON_CONFIG_PATH, self.sysmon_base_config.data, now=now)

    def _build_registry(self) -> Registry:
        s = self.settings
        reg = Registry()
        audit = "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\Audit"
        reg.set_value(
            "HKLM", audit, Value("ProcessCreationIncludeCmdLine_Enabled", "REG_DWORD", int(s.command_line_auditing))
        )
        sbl = "SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging"
        if s.script_block_logging:
            reg.set_value("HKLM", sbl, Value("EnableScriptBlockLogging", "REG_DWORD", 1))
        else:
            reg.delete_key("HKLM", sbl)  # the policy key exists only where the policy is set
        return reg

    def _boot_processes(self, boot: datetime) -> None:
        """Processes running since boot (no creation events: they predate the logs)."""
        t = self.processes
        self._system_proc = t.spawn(
            image="System", command_line="", cwd="C:\\Windows\\system32\\", account=self.system,
            parent=None, started=boot, pid=4,
        )  # fmt: skip
        services = t.spawn(
            image="C:\\Windows\\System32\\services.exe", command_line="C:\\Windows\\system32\\services.exe",
            cwd="C:\\Windows\\system32\\", account=self.system, parent=None, started=boot,
        )  # fmt: skip
        self._services = services
        # The Task Scheduler's service host (schtasks acts through it); WmiPrvSE starts on first use.
        self._schedule = t.spawn(
            image="C:\\Windows\\System32\\svchost.exe",
            command_line="C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
            cwd="C:\\Windows\\system32\\", account=self.system, parent=services, started=boot,
        )  # fmt: skip
        self._wmiprvse: Process | None = None
        self._rpcss = t.spawn(
            image="C:\\Windows\\System32\\svchost.exe",
            command_line="C:\\Windows\\system32\\svchost.exe -k RPCSS -p", cwd="C:\\Windows\\system32\\",
            account=self.network_service, parent=services, started=boot,
        )  # fmt: skip
        self._termsvc = t.spawn(
            image="C:\\Windows\\System32\\svchost.exe",
            command_line="C:\\Windows\\System32\\svchost.exe -k NetworkService -s TermService",
            cwd="C:\\Windows\\system32\\", account=self.network_service, parent=services, started=boot,
        )  # fmt: skip
        self._winrm = t.spawn(
            image="C:\\Windows\\System32\\svchost.exe", command_line=WINRM_SVCHOST_CMD,
            cwd="C:\\Windows\\system32\\", account=self.network_service, parent=services, started=boot,
        )  # fmt: skip
        self._dcomlaunch = t.spawn(
            image="C:\\Windows\\System32\\svchost.exe", command_line=DCOMLAUNCH_SVCHOST_CMD,
            cwd="C:\\Windows\\system32\\", account=self.system, parent=services, started=boot,
        )  # fmt: skip
        self._sysmon_pid = 0
        if self.settings.sysmon_installed:
            self._sysmon_pid = t.spawn(
                image="C:\\Windows\\Sysmon64.exe", command_line="C:\\Windows\\Sysmon64.exe",
                cwd="C:\\Windows\\system32\\", account=self.system, parent=services, started=boot,
            ).pid  # fmt: skip
        owners = {
            "system": self._system_proc, "rpcss": self._rpcss, "termservice": self._termsvc,
            "w32time": t.spawn(
                image="C:\\Windows\\System32\\svchost.exe",
                command_line="C:\\Windows\\system32\\svchost.exe -k LocalService -s W32Time",
                cwd="C:\\Windows\\system32\\", account=self.network_service, parent=services, started=boot,
            ),
            "dnscache": t.spawn(
                image="C:\\Windows\\System32\\svchost.exe",
                command_line="C:\\Windows\\system32\\svchost.exe -k NetworkService -p -s Dnscache",
                cwd="C:\\Windows\\system32\\", account=self.network_service, parent=services, started=boot,
            ),
        }  # fmt: skip
        if self.settings.sshd:
            # The lab's OpenSSH server (lab/provision/configure-openssh.ps1: Windows capability).
            owners["sshd"] = t.spawn(
                image="C:\\Windows\\System32\\OpenSSH\\sshd.exe",
                command_line="C:\\Windows\\System32\\OpenSSH\\sshd.exe",
                cwd="C:\\Windows\\system32\\", account=self.system, parent=services, started=boot,
            )  # fmt: skip
        self._listeners = [
            Listener(spec.protocol, self.settings.ipv4 if spec.address == "host" else spec.address, spec.port,
                     owners[spec.owner].pid)
            for spec in stock_listeners(sshd=self.settings.sshd)
        ]  # fmt: skip

    # ------------------------------------------------------------------------------- HostApi
    @property
    def ipv4(self) -> str:
        return self.settings.ipv4

    @property
    def mac(self) -> str:
        return self.settings.mac

    @property
    def gateway(self) -> str:
        return self.settings.gateway

    def now(self) -> datetime:
        """The host's clock: real UTC time."""
        return datetime.now(UTC)

    def listeners(self) -> list[Listener]:
        return list(self._listeners)

    def resolve_host(self, name: str) -> str | None:
        low = name.lower()
        if low in ("localhost", "."):
            return "127.0.0.1"
        if low in (self.hostname.lower(), f"{self.hostname}.{self.domain}".lower()):
            return self.ipv4
        return None

    def connect(self, proc: Process, protocol: str, dst_ip: str, dst_port: int) -> bool:
        """One connection attempt from ``proc``; True when something listens there.

        The network model (harness/emulated/network.py): Sysmon 3 only for an established TCP
        connection (and both ends of a local one) or a UDP send; a refused local connect logs
        nothing and blocks about 2 s as Winsock's SYN retries do; other addresses never answer."""
        proto = protocol.lower()
        local = dst_ip.startswith("127.") or dst_ip == self.ipv4
        src = "127.0.0.1" if dst_ip.startswith("127.") else self.ipv4
        listener = next(
            (
                lst for lst in self._listeners
                if lst.protocol.lower() == proto and lst.port == dst_port and lst.address in (ANY_ADDR, dst_ip)
            ),
            None,
        ) if local else None  # fmt: skip
        result = net_outcome(proto, local=local, listening=listener is not None)
        if result is NetOutcome.REFUSED:
            self._sleep(self.timing.refused_connect())
            return False
        if result is NetOutcome.UNANSWERED:
            return False
        src_port = self._rng.randrange(49152, 65535)
        self.telemetry.network_connect(
            proc, protocol=proto, src_ip=src, src_port=src_port, dst_ip=dst_ip, dst_port=dst_port,
            initiated=True, delay_s=self.timing.sysmon3_delay(),
        )  # fmt: skip
        if result is NetOutcome.ESTABLISHED and listener is not None:
            server = self.processes.get(listener.pid)
            if server is not None:
                # The accepting side: Sysmon reports its own endpoint as Source (powercat recording,
                # Initiated=false: SourcePort 4444 is the listener's port).
                self.telemetry.network_connect(
                    server, protocol=proto, src_ip=dst_ip, src_port=dst_port, dst_ip=src, dst_port=src_port,
                    initiated=False, delay_s=self.timing.sysmon3_delay(),
                )  # fmt: skip
        return listener is not None

    def write_file(self, proc: Process, path: str, data: bytes, *, append: bool = False) -> None:
        """Write a file as ``proc`` (Sysmon 11 on create or overwrite). Raises FsError.

        A network path (``\\\\host\\share\\...``, e.g. the ADMIN$ share every Windows Server has) is
        outside the model: recorded as not modelled, no effect, never "cannot find the path".
        """
        unc = path.replace("/", "\\")
        if unc.startswith("\\\\"):
            share = "\\".join(unc.split("\\")[:4])
            self.note_not_modelled(proc, f"file on a network share {share}")
            return
        full = normalize(path)
        created, entry = self.fs.write(full, data, now=self.now(), append=append)
        if created or not append:
            self.telemetry.file_created(proc, entry.path, entry.created)

    @property
    def registry(self) -> Registry:
        return self._registry

    def registry_value(self, key: str, name: str) -> tuple[str, str] | None:
        """(type, data as ``reg query`` prints it) of a value the registry model knows."""
        where = canonical(key)
        k = self._registry.key(*where) if where else None
        v = k.values.get(name.lower()) if k else None
        if v is None:
            return None
        data = hex(v.data) if isinstance(v.data, int) else v.data.hex().upper() if isinstance(v.data, bytes) else (
            "\\0".join(v.data) if isinstance(v.data, list) else v.data
        )
        return v.type, data

    def log_registry(self, proc: Process, event_type: str, key: str, value_name: str | None = None,
                     details: str | None = None) -> None:
        """Sysmon 12/13 for a registry change by ``proc``; HKCU appears as ``HKU\\<SID>`` as Sysmon shows it."""
        target = key
        if target.upper().startswith("HKCU"):
            target = f"HKU\\{proc.account.sid}" + target[4:]
        elif target.upper().startswith("HKCR"):
            target = "HKLM\\SOFTWARE\\Classes" + target[4:]
        if value_name is not None:
            target = f"{target}\\{value_name or '(Default)'}"
        self.telemetry.registry_event(proc, event_type, target, details)

    def service_state(self, name: str) -> str | None:
        running = {"winrm", "rpcss", "termservice", "eventlog", "schedule"}
        if self.settings.sysmon_installed:
            running |= {"sysmon64", "sysmondrv"}
        return "RUNNING" if name.lower() in running else None

    def sysmon_config(self) -> tuple[str, str]:
        """(the file Sysmon loaded its config from, its text): ``sysmon -c`` prints the former."""
        return self.sysmon_base_config.source, self.fs.read(SYSMON_CONFIG_PATH).decode("utf-8", "replace")

    def audit_setting(self, subcategory: str) -> str | None:
        if subcategory.lower() == "process creation":
            return "Success and Failure" if self.settings.process_auditing else "No Auditing"
        if subcategory.lower() == "process termination":
            return "Success" if self.settings.process_auditing else "No Auditing"
        return None

    def image_info(self, image: str) -> ImageInfo:
        p = self._profiles.get(image.lower())
        if p is None:
            return ImageInfo()
        v = p.version
        ms = image.lower().startswith("c:\\windows\\system32\\")
        return ImageInfo(
            file_version=v.get("file_version", "-"),
            description=v.get("description", "-"),
            product=v.get("product", MS_PRODUCT if ms else "-"),
            company=v.get("company", MS_COMPANY if ms else "-"),
            original_file_name=v.get("original_file_name", "-"),
        )

    def image_hash(self, image: str) -> str:
        """``Hashes`` as Sysmon computes it from the file's bytes, for the config's HashAlgorithms."""
        try:
            data = self.fs.read(image)
        except FsError:
            data = image.encode("utf-16-le")
        return self.sysmon_rules.hashes(data)

    def service_process(self, name: str) -> Process:
        """The process a service acts through: ``schedule`` (the Task Scheduler's svchost) or
        ``wmiprvse`` (WmiPrvSE.exe, started by the DCOM launcher on first use and logged then)."""
        if name == "schedule":
            return self._schedule
        if name == "services":
            return self._services
        with self._lock:
            if self._wmiprvse is None or not self._wmiprvse.alive:
                self._wmiprvse = self.processes.spawn(
                    image="C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
                    command_line="C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
                    cwd="C:\\Windows\\system32\\", account=self.network_service, parent=self._dcomlaunch,
                    started=self.now(),
                )  # fmt: skip
                created = self._wmiprvse
            else:
                created = None
        if created is not None:
            self.telemetry.process_created(created)
        return self._wmiprvse

    def log_engine_state(self, proc: Process, *, started: bool) -> None:
        """Classic 400/403/600 for ``proc``'s PowerShell engine: HostApplication is powershell.exe's
        argv joined by spaces (atomic-evtx T1571-1: ``powershell.exe & {Test-NetConnection ...}``
        for the Sysmon CommandLine ``"powershell.exe" & {...}``), one HostId/RunspaceId per process."""
        with self._lock:
            ids = self._ps_engines.get(proc.pid)
            if ids is None or started:
                ids = (str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                       str(uuid.UUID(int=self._rng.getrandbits(128), version=4)))  # fmt: skip
                self._ps_engines[proc.pid] = ids
        if started:
            self._script_policy_test(proc)
        version = self._ps_version()
        host = {
            "HostName": "ConsoleHost", "HostVersion": version, "HostId": ids[0],
            "HostApplication": " ".join(split_command_line(proc.command_line)), "EngineVersion": version,
            "RunspaceId": ids[1],
        }  # fmt: skip
        self.telemetry.powershell_engine(starting=started, host=host)

    def _script_policy_test(self, proc: Process) -> None:
        """PowerShell's AppLocker probe at engine start: it writes ``__PSScriptPolicyTest_<random>.ps1``
        and ``.psm1`` to the user's temp folder and deletes them (PowerShell/PowerShell
        ``security/wldpNativeMethods.cs`` GetAppLockerPolicy; ``Path.GetRandomFileName`` names: 8+3
        characters of [a-z0-5]). Sysmon 11 logs them when the config does (the lab's does for
        powershell.exe in a user's Temp)."""
        temp = (
            "C:\\Windows\\Temp" if proc.account.is_system else f"{proc.account.profile_dir}\\AppData\\Local\\Temp"
        )
        alphabet = "abcdefghijklmnopqrstuvwxyz012345"
        for ext in (".ps1", ".psm1"):
            with self._lock:
                name = "".join(self._rng.choice(alphabet) for _ in range(11))
            path = f"{temp}\\__PSScriptPolicyTest_{name[:8]}.{name[8:]}{ext}"
            try:
                self.write_file(proc, path, b"# PowerShell test file to determine AppLocker lockdown mode ")
            except FsError:
                continue  # PowerShell tolerates an unwritable temp folder
            self.fs.delete(path)

    def _ps_version(self) -> str:
        """PowerShell 5.1's version on this build: 5.1.<build>.<revision> of powershell.exe."""
        prof = self._profiles.get("c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe")
        file_version = (prof.version.get("file_version", "") if prof else "").split(" ")[0]
        parts = file_version.split(".")
        return f"5.1.{parts[2]}.{parts[3]}" if len(parts) == 4 else "5.1"

    def log_script_block(self, proc: Process, text: str) -> None:
        self.telemetry.script_block(proc, text)

    def note_not_modelled(self, proc: Process, what: str) -> None:
        """Record that ``proc`` ran ``what`` outside the model (the stderr note is the caller's)."""
        with self._lock:
            self._not_modelled.append((proc, what))
            if len(self._not_modelled) > MAX_NOT_MODELLED:
                del self._not_modelled[: len(self._not_modelled) - MAX_NOT_MODELLED]

    def not_modelled_under(self, marker: str) -> list[NotModelledStep]:
        """The unmodelled steps of every process tree whose root's command line carries ``marker``.

        Lineage is the process table's parent chain, as Sysmon's ParentProcessGuid links it.
        """
        if not marker:
            return []
        with self._lock:
            noted = list(self._not_modelled)
        out: list[NotModelledStep] = []
        for proc, what in noted:
            p: Process | None = proc
            while p is not None and marker not in p.command_line:
                p = p.parent
            if p is not None:
                out.append(NotModelledStep(what=what, process=proc.name, pid=proc.pid, process_guid=proc.guid))
        return out

    def resolve_program(self, name: str, cwd: str, env: Env) -> ProgramProfile | None:
        name = name.strip().strip('"')
        if not name:
            return None
        exts = [e.lower() for e in (env.get("PATHEXT") or ";".join(PATHEXT)).split(";") if e]
        has_ext = "." in ntpath.basename(name)
        if any(c in name for c in "\\/:"):
            bases = [normalize(name, cwd)]
        else:
            dirs = [cwd] + [d for d in (env.get("PATH") or "").split(";") if d]
            bases = [normalize(ntpath.join(d, name)) for d in dirs]
        for base in bases:
            candidates = [base] if has_ext else []
            candidates += [base + e for e in exts]
            for c in candidates:
                entry = self.fs.stat(c)
                if entry is not None:
                    prof = self._profiles.get(entry.path.lower())
                    return prof or ProgramProfile(image=entry.path, behaviour="not_modelled")
        return None

    def run_program(
        self,
        parent: Ctx,
        program: ProgramProfile,
        command_line: str,
        *,
        stdin: str = "",
        out: Sink | None = None,
        err: Sink | None = None,
        cwd: str | None = None,
        env: Env | None = None,
        account: Account | None = None,
    ) -> int:
        proc = self.processes.spawn(
            image=program.image, command_line=command_line, cwd=cwd or parent.cwd,
            account=account or parent.proc.account, parent=parent.proc, started=self.now(),
        )  # fmt: skip
        self.telemetry.process_created(proc)
        ctx = Ctx(
            host=self, proc=proc, env=(env or parent.env).copy(), cwd=proc.cwd, stdin=stdin,
            out=out or parent.out, err=err or parent.err, cancel=parent.cancel, codepage=parent.codepage,
        )  # fmt: skip
        return self._run(ctx, program)

    def _run(self, ctx: Ctx, program: ProgramProfile) -> int:
        behaviour = self._behaviours.get(program.behaviour, TOOL_BEHAVIOURS["not_modelled"])
        code: int | None = None
        try:
            ctx.check()
            code = behaviour(ctx, split_command_line(ctx.proc.command_line), program) & 0xFFFFFFFF
        finally:
            # Killed (Terminated unwinding): the status the killer gave (taskkill /F: 1, WinRS: 0xC000013A).
            self._finish(ctx.proc, exit_status_of(ctx.cancel) if code is None else code)
        return code

    def start_program(
        self, parent: Ctx, program: ProgramProfile, command_line: str, *, out: Sink, err: Sink, cwd: str | None = None
    ) -> StartedProgram:
        """Create a child of ``parent.proc`` (logged) and run it in its own thread with its own
        ``KillSwitch`` (adopted by the parent's, so killing the parent's group reaches it)."""
        proc = self.processes.spawn(
            image=program.image, command_line=command_line, cwd=cwd or parent.cwd,
            account=parent.proc.account, parent=parent.proc, started=self.now(),
        )  # fmt: skip
        self.telemetry.process_created(proc)
        switch = KillSwitch()
        if isinstance(parent.cancel, KillSwitch):
            parent.cancel.adopt(switch)
        started = StartedProgram(proc=proc, switch=switch, done=threading.Event())
        with self._lock:
            self._switches[proc.pid] = (proc, switch)
        ctx = child_ctx(parent, proc, switch, cwd=proc.cwd, out=out, err=err)

        def main() -> None:
            code = 1
            try:
                code = self._run(ctx, program)
            except Terminated:
                code = switch.exit_code
            except Exception as exc:  # a model bug must end the process, not hang its waiter
                err.write(f"atomiclab-emulated: internal error: {type(exc).__name__}: {exc}\r\n")
                self._finish(proc, 1)
            finally:
                started.exit_code = code & 0xFFFFFFFF
                with self._lock:
                    if self._switches.get(proc.pid, (None,))[0] is proc:
                        del self._switches[proc.pid]
                started.done.set()

        threading.Thread(target=main, name=f"emulated-proc-{proc.pid}", daemon=True).start()
        return started

    def kill_tree(self, pid: int, exit_status: int, *, tree: bool) -> list[Process] | None:
        """Terminate process ``pid`` (and with ``tree`` its descendants) with ``exit_status``;
        the killed processes, children first, or None when no such process is running.
        Only processes that run in their own thread (``start_program``) can be killed alone; a
        process run synchronously inside another is killed with that one's group."""
        target = self.processes.get(pid)
        if target is None:
            return None
        victims = [*self.processes.live_descendants(target), target] if tree else [target]
        with self._lock:
            switches = {pid: self._switches.get(p.pid) for p in victims for pid in [p.pid]}
        for p in victims:
            entry = switches.get(p.pid)
            if entry is not None and entry[0] is p:
                entry[1].trip(exit_status)
        deadline = time.monotonic() + 5.0
        while any(p.alive for p in victims) and time.monotonic() < deadline:
            time.sleep(0.01)
        return victims

    def _finish(self, proc: Process, code: int) -> None:
        if self.processes.exit(proc, code, self.now()):
            self.telemetry.process_terminated(proc)

    # ------------------------------------------------------------------------------- shells
    def account(self, user: str) -> Account:
        """The account for a WinRM logon name (``user``, ``DOMAIN\\user`` or ``user@domain``)."""
        name = user.split("\\")[-1].split("@")[0] or "atomiclab"
        with self._lock:
            acct = self._accounts.get(name.lower())
            if acct is None:
                rid = 1000 + len(self._accounts)
                logon_id = self._rng.randrange(0x100000, 0x7FFFFF)
                acct = Account(
                    name=name, domain=self.hostname.upper(),
                    sid=f"S-1-5-21-{self._rng.randrange(10**9, 4 * 10**9)}-{self._rng.randrange(10**9, 4 * 10**9)}-"
                    f"{self._rng.randrange(10**9, 4 * 10**9)}-{rid}",
                    logon_id=logon_id,
                    logon_guid=logon_guid(self.processes.machine, int(time.time()), logon_id),
                    profile_dir=f"C:\\Users\\{name}", integrity="High",
                )  # fmt: skip
                self._accounts[name.lower()] = acct
                for d in ("AppData\\Local\\Temp", "AppData\\Roaming", "Desktop", "Documents"):
                    self.fs.mkdir(f"{acct.profile_dir}\\{d}")
            return acct

    def environment(self, acct: Account) -> Env:
        """The environment a WinRS shell of ``acct`` starts with."""
        s = self.settings
        path = [
            "C:\\Windows\\system32", "C:\\Windows", "C:\\Windows\\System32\\Wbem",
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\", "C:\\Windows\\System32\\OpenSSH\\",
        ]  # fmt: skip
        for p in self._profiles.values():
            if p.on_path:
                path.append(ntpath.dirname(p.image))
        temp = f"{acct.profile_dir}\\AppData\\Local\\Temp"
        return Env(
            {
                "ALLUSERSPROFILE": "C:\\ProgramData", "APPDATA": f"{acct.profile_dir}\\AppData\\Roaming",
                "COMPUTERNAME": s.hostname, "ComSpec": "C:\\Windows\\system32\\cmd.exe",
                "LOCALAPPDATA": f"{acct.profile_dir}\\AppData\\Local", "NUMBER_OF_PROCESSORS": "2",
                "OS": "Windows_NT", "Path": ";".join(path), "PATHEXT": ";".join(PATHEXT),
                "PROCESSOR_ARCHITECTURE": "AMD64", "ProgramData": "C:\\ProgramData",
                "ProgramFiles": "C:\\Program Files", "ProgramFiles(x86)": "C:\\Program Files (x86)",
                "PROMPT": "$P$G", "PSModulePath": "C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\Modules\\",
                "PUBLIC": "C:\\Users\\Public", "SystemDrive": "C:", "SystemRoot": "C:\\Windows",
                "TEMP": temp, "TMP": temp, "USERDOMAIN": s.hostname.upper(), "USERNAME": acct.name,
                "USERPROFILE": acct.profile_dir, "windir": "C:\\Windows",
            }
        )  # fmt: skip

    def execute(
        self,
        command_line: str,
        *,
        user: str = "atomiclab",
        timeout_s: float = 60.0,
        codepage: int = 65001,
        launcher: bool = True,
    ) -> CommandResult:
        """Run one command line in a fresh shell as the harness does, and collect the result.

        For tests and in-process callers; the shell's winrshost.exe is created and closed around it.
        With ``launcher`` (default) the WinRS command is the harness's launcher
        (:func:`harness.execution.executors.windows_launcher`, deadline ``timeout_s``), which starts
        ``command_line`` with its exact text and kills its tree at the deadline; without it the line
        is the WinRS command itself (run by ``cmd.exe /C``, which re-parses it). On ``timeout_s``
        the result has ``timed_out=True``."""
        started = utcnow()
        shell = self.open_shell(user, codepage=codepage)
        out, err = bytearray(), bytearray()
        timed_out = False
        wire = windows_launcher(command_line, deadline_s=timeout_s) if launcher else command_line
        try:
            cmd = shell.start(wire)
            # The launcher's own deadline kill comes first; WinRS terminate is the backstop.
            deadline = time.monotonic() + timeout_s + (LAUNCHER_KILL_GRACE_S if launcher else 0.0)
            while True:
                left = deadline - time.monotonic()
                chunk = cmd.read(max(0.0, min(1.0, left)))
                out += chunk.stdout
                err += chunk.stderr
                if chunk.done:
                    code = chunk.exit_code
                    break
                if left <= 0:
                    cmd.terminate()
                    timed_out = True
                    code = None
                    tail = cmd.read(0.0)
                    out += tail.stdout
                    err += tail.stderr
                    break
        finally:
            shell.close()
        if launcher and code == LAUNCHER_TIMEOUT_EXIT:
            timed_out, code = True, None
        enc = _encoding(codepage)
        return CommandResult(
            command=command_line, exit_code=code, stdout=out.decode(enc, "replace"),
            stderr=err.decode(enc, "replace"), started=started, ended=utcnow(), timed_out=timed_out,
        )  # fmt: skip

    def new_logon(self, acct: Account) -> Account:
        """``acct`` with a fresh logon session (LogonId, LogonGuid): WinRM authenticates every shell
        as a new network logon, so each shell's processes carry their own LogonId/LogonGuid."""
        logon_id = self._rng.randrange(0x100000, 0x7FFFFF)
        return replace(
            acct, logon_id=logon_id, logon_guid=logon_guid(self.processes.machine, int(time.time()), logon_id)
        )

    def open_shell(self, user: str, *, codepage: int = 437) -> ShellSession:
        """A WinRS shell: a new logon of ``user`` and its ``WinrsHost.exe -Embedding`` (Sysmon 1 /
        4688), started by COM under the DcomLaunch svchost as on a real host."""
        acct = self.new_logon(self.account(user))
        proc = self.processes.spawn(
            image="C:\\Windows\\System32\\winrshost.exe", command_line=WINRSHOST_CMD,
            cwd="C:\\Windows\\system32\\", account=acct, parent=self._dcomlaunch, started=self.now(),
        )  # fmt: skip
        self.telemetry.process_created(proc)
        return ShellSession(self, proc, self.environment(acct), codepage)


class _StreamSink:
    """Output of a running command: encoded on write, handed out by ``RunningCommand.read``."""

    def __init__(self, cond: threading.Condition, buf: bytearray, encoding: str) -> None:
        self._cond = cond
        self._buf = buf
        self._encoding = encoding

    def write(self, text: str) -> None:
        data = text.encode(self._encoding, errors="replace")
        with self._cond:
            self._buf.extend(data)
            self._cond.notify_all()


@dataclass
class _Streams:
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdin: bytearray = field(default_factory=bytearray)


class RunningCommand:
    """One WinRS command running in its own worker thread."""

    def __init__(self, session: ShellSession, command_line: str) -> None:
        self._session = session
        self.command_line = command_line
        self._cond = threading.Condition()
        self._streams = _Streams()
        self._cancel = KillSwitch()
        self._done = False
        self._exit_code: int | None = None
        enc = _encoding(session.codepage)
        self._out = _StreamSink(self._cond, self._streams.stdout, enc)
        self._err = _StreamSink(self._cond, self._streams.stderr, enc)
        self._thread = threading.Thread(target=self._main, name=f"emulated-cmd-{id(self):x}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        host = self._session.host
        code: int = 1
        try:
            shell = self._session.proc
            env = self._session.env
            parent = Ctx(
                host=host, proc=shell, env=env, cwd=self._session.cwd, stdin="", out=self._out, err=self._err,
                cancel=self._cancel, codepage=self._session.codepage,
            )  # fmt: skip
            # WinRS hands the command to the command processor: cmd.exe /C <command>, so cmd's
            # parsing (quote stripping, &, |, %VAR%) applies exactly as on a real host.
            comspec = host.resolve_program("C:\\Windows\\system32\\cmd.exe", self._session.cwd, env)
            if comspec is None:
                raise EmulationError("the emulated host has no cmd.exe", hint="check profiles/system32.yaml")
            code = host.run_program(parent, comspec, WINRS_COMSPEC_PREFIX + self.command_line, stdin="")
        except Terminated:
            code = STATUS_CONTROL_C_EXIT
        except Exception as exc:  # a model bug must not hang the client: report it as the command's failure
            self._err.write(f"atomiclab-emulated: internal error: {type(exc).__name__}: {exc}\r\n")
            code = 1
        finally:
            with self._cond:
                self._exit_code = code
                self._done = True
                self._cond.notify_all()

    def read(self, timeout: float) -> OutputChunk:
        """Wait up to ``timeout`` s for output or completion; return what is buffered."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._done and not self._streams.stdout and not self._streams.stderr:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            out = bytes(self._streams.stdout)
            err = bytes(self._streams.stderr)
            self._streams.stdout.clear()
            self._streams.stderr.clear()
            return OutputChunk(stdout=out, stderr=err, done=self._done, exit_code=self._exit_code)

    def write_stdin(self, data: bytes, *, eof: bool = False) -> None:
        """Accept stdin bytes. The modelled programs take their input from pipes, not the console,
        so console input is kept but not consumed (as a Windows program that never reads stdin)."""
        with self._cond:
            self._streams.stdin.extend(data)

    def terminate(self) -> None:
        """End the process tree now (each process logs its exit with 0xC000013A)."""
        self._cancel.trip(STATUS_CONTROL_C_EXIT)
        self._thread.join(timeout=10.0)

    @property
    def done(self) -> bool:
        with self._cond:
            return self._done


class ShellSession:
    """A WinRS shell: one winrshost.exe and the commands started in it."""

    def __init__(self, host: EmulatedHost, proc: Process, env: Env, codepage: int) -> None:
        self.host = host
        self.proc = proc
        self.env = env
        self.codepage = codepage
        self.cwd = proc.account.profile_dir
        self.shell_id = proc.guid.strip("{}")
        self._commands: list[RunningCommand] = []
        self._closed = False

    def start(self, command_line: str) -> RunningCommand:
        """Run the WinRS command line (executable + " " + arguments, exactly) in a worker thread."""
        if self._closed:
            raise EmulationError(f"shell {self.shell_id} is closed", hint="open a new shell")
        cmd = RunningCommand(self, command_line)
        self._commands.append(cmd)
        return cmd

    def close(self) -> None:
        """Terminate running commands and end winrshost.exe (Sysmon 5 / 4689)."""
        if self._closed:
            return
        self._closed = True
        for c in self._commands:
            if not c.done:
                c.terminate()
        self.host._finish(self.proc, 0)


__all__ = [
    "BufferSink",
    "EmulatedHost",
    "HostSettings",
    "NotModelledStep",
    "OutputChunk",
    "RunningCommand",
    "ShellSession",
]
