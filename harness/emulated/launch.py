"""Starting and killing processes asynchronously on the emulated host: the parts of .NET's
``System.Diagnostics.Process`` and of ``taskkill.exe`` that the harness's launcher uses.

Contract:
- ``KillSwitch`` is the cancel event of a process group (a WinRS command, or a process started
  with ``Process.Start``). ``trip(code)`` sets it and every switch started below it; each process
  of the group then ends with ``code`` as its exit status (Sysmon 5 / 4689 ``Status``).
- ``start_process(ctx, psi)`` is ``[System.Diagnostics.Process]::Start($psi)``: it resolves the
  image, builds the command line as .NET Framework does (``"FileName" Arguments``) and runs the
  child in its own thread with its own ``KillSwitch``; the returned ``DotNetProcess`` has ``Id``,
  ``HasExited``, ``ExitCode``, ``WaitForExit([ms])``, ``Kill()`` and ``StandardOutput`` /
  ``StandardError`` readers (``ReadToEnd()``, ``ReadToEndAsync().Result``).
- ``run_taskkill`` models ``taskkill.exe /F [/T] /PID n``: forced termination (exit status 1) of
  the process and, with ``/T``, its descendants; other forms print the "not modelled" note.
- The .NET objects implement ``DotNetObject`` (``get``/``set``/``call`` by case-insensitive name);
  the emulated PowerShell dispatches members of such objects here and turns ``DotNetError`` into
  PowerShell's "Exception calling ..." error.

Sources: .NET Framework ``Process.StartWithCreateProcess`` / ``BuildCommandLine`` (referencesource
``System/services/monitoring/system/diagnosticts/Process.cs``: the file name is quoted unless it
already is, then a space and ``Arguments``); CreateProcess's search order when no application name
is given (Microsoft Learn, CreateProcessW, ``lpCommandLine``); taskkill's messages and ``/T``
semantics (Microsoft Learn, "taskkill"); TerminateProcess is called with exit code 1 by ``/F``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.emulated.processes import STATUS_CONTROL_C_EXIT, Process
from harness.emulated.tools import BufferSink, Ctx, ProgramProfile, Terminated, not_modelled_note

if TYPE_CHECKING:
    from harness.emulated.host import EmulatedHost

#: Exit status taskkill /F gives the processes it ends (TerminateProcess(h, 1)).
TASKKILL_EXIT_STATUS = 1
_POLL_S = 0.05


class KillSwitch(threading.Event):
    """The cancel event of one process group; ``trip`` also trips the groups started below it."""

    def __init__(self) -> None:
        super().__init__()
        self.exit_code = STATUS_CONTROL_C_EXIT
        self._children: list[KillSwitch] = []
        self._guard = threading.Lock()

    def adopt(self, child: KillSwitch) -> None:
        with self._guard:
            self._children.append(child)
            tripped = self.is_set()
        if tripped:
            child.trip(self.exit_code)

    def trip(self, code: int = STATUS_CONTROL_C_EXIT) -> None:
        with self._guard:
            if not self.is_set():
                self.exit_code = code
            children = list(self._children)
        self.set()
        for c in children:
            c.trip(code)


def exit_status_of(cancel: threading.Event) -> int:
    """The exit status a process of the group ``cancel`` ends with when it is killed."""
    return cancel.exit_code if isinstance(cancel, KillSwitch) else STATUS_CONTROL_C_EXIT


class DotNetError(Exception):
    """A .NET exception thrown by a modelled member (message as .NET words it)."""


class DotNetObject:
    """A modelled .NET object: properties and methods by case-insensitive name."""

    type_name = "System.Object"
    _settable: tuple[str, ...] = ()

    def _attr(self, name: str) -> str | None:
        low = name.lower()
        for a in dir(self):
            if a.lower() == low and not a.startswith("_"):
                return a
        return None

    def get(self, name: str) -> Any:
        attr = self._attr(name)
        if attr is None:
            return None
        value = getattr(self, attr)
        return None if callable(value) else value

    def set(self, name: str, value: Any) -> bool:
        attr = self._attr(name)
        if attr is None or attr not in self._settable:
            return False
        setattr(self, attr, value)
        return True

    def call(self, name: str, args: list[Any]) -> tuple[bool, Any]:
        attr = self._attr(name)
        fn = getattr(self, attr) if attr else None
        if not callable(fn):
            return False, None
        return True, fn(*args)


class ProcessStartInfo(DotNetObject):
    type_name = "System.Diagnostics.ProcessStartInfo"
    _settable = (
        "FileName", "Arguments", "UseShellExecute", "RedirectStandardOutput", "RedirectStandardError",
        "RedirectStandardInput", "WorkingDirectory", "CreateNoWindow",
    )  # fmt: skip

    def __init__(self) -> None:
        self.FileName: Any = ""
        self.Arguments: Any = ""
        self.UseShellExecute: Any = True  # .NET Framework's default
        self.RedirectStandardOutput: Any = False
        self.RedirectStandardError: Any = False
        self.RedirectStandardInput: Any = False
        self.WorkingDirectory: Any = ""
        self.CreateNoWindow: Any = False


def build_command_line(file_name: str, arguments: str) -> str:
    """.NET Framework's ``Process.BuildCommandLine``: quote the file name unless it already is."""
    name = file_name.strip()
    quoted = name.startswith('"') and name.endswith('"') and len(name) > 1
    line = name if quoted else f'"{name}"'
    return f"{line} {arguments}" if arguments else line


class TextTask(DotNetObject):
    """``Task<string>`` of ``ReadToEndAsync``: ``Result`` waits for the stream to end."""

    type_name = "System.Threading.Tasks.Task`1[[System.String]]"

    def __init__(self, reader: StreamReader) -> None:
        self._reader = reader

    @property
    def Result(self) -> str:
        return self._reader.ReadToEnd()

    @property
    def IsCompleted(self) -> bool:
        return self._reader._process.HasExited


class StreamReader(DotNetObject):
    """A redirected standard stream of a started process (the text is there once it exits)."""

    type_name = "System.IO.StreamReader"

    def __init__(self, process: DotNetProcess, buffer: BufferSink) -> None:
        self._process = process
        self._buffer = buffer

    def ReadToEnd(self) -> str:
        self._process._wait(None)
        return self._buffer.getvalue()

    def ReadToEndAsync(self) -> TextTask:
        return TextTask(self)


class DotNetProcess(DotNetObject):
    """``System.Diagnostics.Process`` of a child started by ``start_process``."""

    type_name = "System.Diagnostics.Process"

    def __init__(self, started: StartedProgram, owner: Ctx, out: BufferSink, err: BufferSink) -> None:
        self._started = started
        self._owner = owner
        self.StandardOutput = StreamReader(self, out)
        self.StandardError = StreamReader(self, err)

    @property
    def Id(self) -> int:
        return self._started.proc.pid

    @property
    def ProcessName(self) -> str:
        return self._started.proc.name.rsplit(".", 1)[0]

    @property
    def HasExited(self) -> bool:
        return self._started.done.is_set()

    @property
    def ExitCode(self) -> int:
        if not self.HasExited:
            raise DotNetError("Process must exit before requested information can be determined.")
        code = self._started.exit_code
        # .NET returns the exit status as a signed Int32.
        return code - (1 << 32) if code >= 1 << 31 else code

    def _wait(self, seconds: float | None) -> bool:
        """Wait for the child; a kill of the waiting process (WinRS terminate) reaches the child too."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._started.done.wait(_POLL_S):
            if self._owner.cancel.is_set():
                self._started.switch.trip(exit_status_of(self._owner.cancel))
                self._started.done.wait()
                raise Terminated
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def WaitForExit(self, ms: Any = None) -> bool | None:
        # WaitForExit() is void; only the WaitForExit(int) overload returns whether it exited.
        if ms is None:
            self._wait(None)
            return None
        return self._wait(None if int(ms) < 0 else int(ms) / 1000)

    def Kill(self) -> None:
        # Process.Kill is TerminateProcess(handle, -1) on .NET Framework: only this process.
        self._started.switch.trip(0xFFFFFFFF)


class ConsoleWriter(DotNetObject):
    """``[Console]::Out`` / ``[Console]::Error`` of the PowerShell process."""

    type_name = "System.IO.TextWriter"

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def Write(self, value: Any = "") -> None:
        self._write("" if value is None else str(value))

    def WriteLine(self, value: Any = "") -> None:
        self._write(("" if value is None else str(value)) + "\r\n")

    def Flush(self) -> None:
        return None


@dataclass
class StartedProgram:
    """A process running in its own thread (see ``EmulatedHost.start_program``)."""

    proc: Process
    switch: KillSwitch
    done: threading.Event
    exit_code: int = 0


def start_process(ctx: Ctx, psi: ProcessStartInfo, host: EmulatedHost) -> DotNetProcess:
    """``[System.Diagnostics.Process]::Start($psi)`` from the process of ``ctx``."""
    if psi.UseShellExecute and (psi.RedirectStandardOutput or psi.RedirectStandardError):
        raise DotNetError(
            "The Process object must have the UseShellExecute property set to false in order to redirect IO streams."
        )
    file_name = str(psi.FileName or "").strip()
    if not file_name:
        raise DotNetError("Cannot start process because a file name has not been provided.")
    cwd = str(psi.WorkingDirectory) if psi.WorkingDirectory else ctx.cwd
    program = host.resolve_program(file_name.strip('"'), cwd, ctx.env)
    if program is None:
        raise DotNetError("The system cannot find the file specified")
    out, err = BufferSink(), BufferSink()
    started = host.start_program(
        ctx, program, build_command_line(file_name, str(psi.Arguments or "")),
        out=out if psi.RedirectStandardOutput else ctx.out,
        err=err if psi.RedirectStandardError else ctx.err,
        cwd=cwd,
    )  # fmt: skip
    return DotNetProcess(started, ctx, out, err)


def run_taskkill(ctx: Ctx, argv: list[str], profile: ProgramProfile) -> int:
    """taskkill.exe ``/F [/T] /PID n``: forced termination of the process (and its tree)."""
    args = [a.lower() for a in argv[1:]]
    force, tree = "/f" in args, "/t" in args
    pids = [argv[1:][i + 1] for i, a in enumerate(args) if a == "/pid" and i + 1 < len(args)]
    if not force or not pids or "/im" in args or "/s" in args or "/fi" in args:
        ctx.err.write(not_modelled_note(ctx, "taskkill " + " ".join(argv[1:])))
        return 0
    host: Any = ctx.host
    code = 0
    for raw in pids:
        pid = int(raw) if raw.isdigit() else -1
        killed = host.kill_tree(pid, TASKKILL_EXIT_STATUS, tree=tree)
        if killed is None:
            ctx.err.write(f'ERROR: The process "{raw}" not found.\r\n')
            code = 128
            continue
        for p in killed:
            if tree and p.parent is not None:
                ctx.out.write(
                    f"SUCCESS: The process with PID {p.pid} (child process of PID {p.parent.pid}) "
                    "has been terminated.\r\n"
                )
            else:
                ctx.out.write(f"SUCCESS: The process with PID {p.pid} has been terminated.\r\n")
    return code


def child_ctx(parent: Ctx, proc: Process, switch: KillSwitch, **kw: Any) -> Ctx:
    """The Ctx of a process started asynchronously (own cancel switch, inherited environment)."""
    return replace(parent, proc=proc, env=parent.env.copy(), cancel=switch, stdin="", **kw)


__all__ = [
    "ConsoleWriter",
    "DotNetError",
    "DotNetObject",
    "DotNetProcess",
    "KillSwitch",
    "ProcessStartInfo",
    "StartedProgram",
    "build_command_line",
    "exit_status_of",
    "run_taskkill",
    "start_process",
]
