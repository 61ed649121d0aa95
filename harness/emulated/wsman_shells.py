"""The WinRS (Windows Remote Shell) service of the emulated host, independent of HTTP.

:class:`WinRSService` turns parsed WS-Man requests (Create, Command, Receive, Send, Signal, Delete,
Get) into calls on the host model and into reply envelopes, as ``winrshost.exe`` behind the WinRM
service does:

- Create opens a shell (``WINRS_CODEPAGE`` and ``WINRS_CONSOLEMODE_STDIN`` options honoured; the
  reply carries the ShellId selector and the ``rsp:Shell`` description).
- Command starts a process whose command line is the ``rsp:Command`` text, then each
  ``rsp:Arguments`` text, joined by single spaces, exactly as WinRS builds it; no quoting is added.
- Receive long-polls: it returns as soon as output or completion is available, and when the
  OperationTimeout passes with neither it answers the ``w:TimedOut`` fault (2150858793), which
  clients retry. Output is split so that no reply exceeds the request's MaxEnvelopeSize; the rest
  stays buffered for the next Receive. ``CommandState .../Done`` with ``ExitCode`` is sent only once
  every byte has been delivered.
- Signal ``Terminate``/``ctrl_c`` ends a running process; on a finished command it just releases it
  (pypsrp sends ctrl_c after every command).
- Delete closes the shell and every command in it.

The host model is reached through the :class:`WinRSHost` protocol (``harness.emulated.host`` provides
it); nothing here invents output.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lxml import etree

from harness.emulated.wsman_soap import (
    COMMAND_STATE_DONE,
    COMMAND_STATE_RUNNING,
    CONFIG_URI,
    SHELL_CMD_URI,
    SHELL_URI,
    Action,
    FaultKind,
    Request,
    Signal,
    WsmanFault,
    b64,
    qname,
    response_envelope,
    serialize,
    sub,
)

# -- the host model seam (implemented by harness.emulated.host) ---------------------------------


class OutputChunkLike(Protocol):
    @property
    def stdout(self) -> bytes: ...
    @property
    def stderr(self) -> bytes: ...
    @property
    def done(self) -> bool: ...
    @property
    def exit_code(self) -> int | None: ...


class RunningCommandLike(Protocol):
    def read(self, timeout: float) -> OutputChunkLike: ...
    def write_stdin(self, data: bytes, *, eof: bool = False) -> None: ...
    def terminate(self) -> None: ...


class ShellSessionLike(Protocol):
    @property
    def shell_id(self) -> str: ...
    def start(self, command_line: str) -> RunningCommandLike: ...
    def close(self) -> None: ...


class WinRSHost(Protocol):
    """What the WinRS service needs from the emulated host (``harness.emulated.host.EmulatedHost``)."""

    def open_shell(self, user: str, *, codepage: int = 437) -> ShellSessionLike: ...


# -- service ----------------------------------------------------------------------------------

#: Bytes of XML around the stream payloads in the largest Receive reply we build, plus margin.
_RECEIVE_OVERHEAD = 2048
#: Poll slice so long polls notice a server stop promptly.
_POLL_SLICE_S = 0.25
_DEFAULT_OPERATION_TIMEOUT_S = 60.0


@dataclass
class _Command:
    command_id: str
    process: RunningCommandLike
    lock: threading.Lock = field(default_factory=threading.Lock)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    done: bool = False
    exit_code: int | None = None

    def absorb(self, chunk: OutputChunkLike) -> None:
        self.stdout += chunk.stdout
        self.stderr += chunk.stderr
        if chunk.done:
            self.done = True
            self.exit_code = chunk.exit_code


@dataclass
class _Shell:
    session: ShellSessionLike
    shell_id: str
    owner: str
    client_ip: str
    codepage: int
    console_mode_stdin: bool
    input_streams: str
    output_streams: str
    created: float
    commands: dict[str, _Command] = field(default_factory=dict)


def _option_bool(value: str, name: str) -> bool:
    v = value.strip().upper()
    if v in {"TRUE", "1"}:
        return True
    if v in {"FALSE", "0"}:
        return False
    raise WsmanFault(FaultKind.INVALID_PARAMETER, f"Option {name} must be TRUE or FALSE.")


def _xs_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


class WinRSService:
    """WinRS shells and commands of one emulated host; thread-safe.

    ``stopping`` is set by the server at shutdown so long polls end; ``machine`` names the host in
    faults. ``max_operation_timeout_s`` caps any client OperationTimeout.
    """

    def __init__(
        self,
        host: WinRSHost,
        *,
        stopping: threading.Event,
        max_operation_timeout_s: float = _DEFAULT_OPERATION_TIMEOUT_S,
        max_envelope_size_kb: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._stopping = stopping
        self._max_timeout = max_operation_timeout_s
        self._max_envelope_kb = max_envelope_size_kb
        self._clock = clock
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, req: Request, *, user: str, client_ip: str, force_timeout: bool = False) -> bytes:
        """Serve one request and return the reply envelope; raise :class:`WsmanFault` otherwise.

        ``force_timeout`` makes a Receive answer the operation-timeout fault at once (fault injection).
        """
        action = req.known_action()
        if action is Action.GET:
            return self._get(req)
        if req.resource_uri != SHELL_CMD_URI:
            raise WsmanFault(
                FaultKind.INVALID_PARAMETER,
                f"The resource URI {req.resource_uri[:200]!r} is not served; use {SHELL_CMD_URI}.",
            )
        if action is Action.CREATE:
            return self._create(req, user=user, client_ip=client_ip)
        shell = self._shell(req)
        if action is Action.DELETE:
            return self._delete(req, shell)
        if action is Action.COMMAND:
            return self._command(req, shell)
        if action is Action.RECEIVE:
            if force_timeout:
                raise WsmanFault(FaultKind.TIMED_OUT)
            return self._receive(req, shell)
        if action is Action.SEND:
            return self._send(req, shell)
        return self._signal(req, shell)

    def wait_for_output(self, req: Request, timeout: float) -> None:
        """Wait (without consuming) until the Receive's command has output or ends, or ``timeout``."""
        shell = self._shell(req)
        cmd = self._receive_target(req, shell)
        deadline = self._clock() + timeout
        with cmd.lock:
            self._fill(cmd, deadline)

    @property
    def shell_count(self) -> int:
        with self._lock:
            return len(self._shells)

    def close_all(self) -> None:
        """Terminate every command and close every shell (server shutdown)."""
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            self._close_shell(shell)

    # -- helpers ----------------------------------------------------------------------------

    def _shell(self, req: Request) -> _Shell:
        shell_id = req.selectors.get("ShellId", "")
        with self._lock:
            shell = self._shells.get(shell_id.upper())
        if shell is None:
            raise WsmanFault(FaultKind.SHELL_NOT_FOUND, shell_id[:80] or "(none)")
        return shell

    def _timeout(self, req: Request) -> float:
        requested = req.operation_timeout_s if req.operation_timeout_s is not None else self._max_timeout
        return max(0.0, min(requested, self._max_timeout))

    @staticmethod
    def _body(req: Request, local: str) -> etree._Element:
        if req.body is None or req.body.tag != qname("rsp", local):
            raise WsmanFault(FaultKind.SCHEMA_VALIDATION, f"The Body must hold one rsp:{local} element.")
        return req.body

    def _close_shell(self, shell: _Shell) -> None:
        for cmd in list(shell.commands.values()):
            if not cmd.done:
                cmd.process.terminate()
        shell.commands.clear()
        shell.session.close()

    # -- actions ----------------------------------------------------------------------------

    def _create(self, req: Request, *, user: str, client_ip: str) -> bytes:
        body = self._body(req, "Shell")
        codepage_text = req.options.get("WINRS_CODEPAGE", "437")
        try:
            codepage = int(codepage_text)
        except ValueError:
            raise WsmanFault(FaultKind.INVALID_PARAMETER, "WINRS_CODEPAGE must be a number.") from None
        console_mode = _option_bool(req.options.get("WINRS_CONSOLEMODE_STDIN", "TRUE"), "WINRS_CONSOLEMODE_STDIN")
        input_streams = (body.findtext(qname("rsp", "InputStreams")) or "stdin").strip()
        output_streams = (body.findtext(qname("rsp", "OutputStreams")) or "stdout stderr").strip()
        if set(output_streams.split()) - {"stdout", "stderr"} or set(input_streams.split()) - {"stdin"}:
            raise WsmanFault(FaultKind.INVALID_PARAMETER, "Only stdin, stdout and stderr streams exist.")
        try:
            session = self._host.open_shell(user, codepage=codepage)
        except ValueError as exc:
            raise WsmanFault(FaultKind.INVALID_PARAMETER, str(exc)) from None
        shell_id = str(session.shell_id or uuid.uuid4()).upper()
        shell = _Shell(
            session=session,
            shell_id=shell_id,
            owner=user,
            client_ip=client_ip,
            codepage=codepage,
            console_mode_stdin=console_mode,
            input_streams=input_streams,
            output_streams=output_streams,
            created=self._clock(),
        )
        with self._lock:
            self._shells[shell_id] = shell

        env, out = response_envelope(Action.CREATE.response, req.message_id)
        created = sub(out, "x", "ResourceCreated")
        sub(created, "a", "Address", "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous")
        params = sub(created, "a", "ReferenceParameters")
        sub(params, "w", "ResourceURI", SHELL_CMD_URI)
        selectors = sub(params, "w", "SelectorSet")
        sub(selectors, "w", "Selector", shell_id, Name="ShellId")
        self._describe(out, shell)
        return serialize(env)

    def _describe(self, parent: etree._Element, shell: _Shell) -> None:
        desc = sub(parent, "rsp", "Shell")
        sub(desc, "rsp", "ShellId", shell.shell_id)
        sub(desc, "rsp", "ResourceUri", SHELL_CMD_URI)
        sub(desc, "rsp", "Owner", shell.owner)
        sub(desc, "rsp", "ClientIP", shell.client_ip)
        sub(desc, "rsp", "IdleTimeOut", "PT7200.000S")
        sub(desc, "rsp", "InputStreams", shell.input_streams)
        sub(desc, "rsp", "OutputStreams", shell.output_streams)
        sub(desc, "rsp", "ShellRunTime", _xs_duration(self._clock() - shell.created))
        sub(desc, "rsp", "ShellInactivity", "PT0.000S")

    def _get(self, req: Request) -> bytes:
        env, out = response_envelope(f"{Action.GET.value}Response", req.message_id)
        if req.resource_uri == CONFIG_URI:
            cfg = sub(out, "cfg", "Config")
            cfg_ns = "http://schemas.microsoft.com/wbem/wsman/1/config"
            for name, value in (
                ("MaxEnvelopeSizekb", str(self._max_envelope_kb)),
                ("MaxTimeoutms", str(int(self._max_timeout * 1000))),
            ):
                etree.SubElement(cfg, f"{{{cfg_ns}}}{name}").text = value
            return serialize(env)
        if req.resource_uri in (SHELL_URI, SHELL_CMD_URI):
            self._describe(out, self._shell(req))
            return serialize(env)
        raise WsmanFault(FaultKind.INVALID_PARAMETER, f"Get is not served for {req.resource_uri[:200]!r}.")

    def _delete(self, req: Request, shell: _Shell) -> bytes:
        with self._lock:
            self._shells.pop(shell.shell_id, None)
        self._close_shell(shell)
        env, _ = response_envelope(Action.DELETE.response, req.message_id)
        return serialize(env)

    def _command(self, req: Request, shell: _Shell) -> bytes:
        body = self._body(req, "CommandLine")
        executable = body.findtext(qname("rsp", "Command"))
        if executable is None or not executable.strip():
            raise WsmanFault(FaultKind.INVALID_PARAMETER, "rsp:Command is empty.")
        # WinRS joins the command and each Arguments element with single spaces, adding no quotes.
        arguments = [a.text or "" for a in body.findall(qname("rsp", "Arguments"))]
        command_line = " ".join([executable.strip(), *arguments]) if arguments else executable.strip()
        command_id = (body.get("CommandId") or str(uuid.uuid4())).upper()
        if command_id in shell.commands:
            raise WsmanFault(FaultKind.INVALID_PARAMETER, f"CommandId {command_id} is already in use.")
        process = shell.session.start(command_line)
        shell.commands[command_id] = _Command(command_id=command_id, process=process)
        env, out = response_envelope(Action.COMMAND.response, req.message_id)
        resp = sub(out, "rsp", "CommandResponse")
        sub(resp, "rsp", "CommandId", command_id)
        return serialize(env)

    def _command_for(self, shell: _Shell, command_id: str | None) -> _Command:
        cmd = shell.commands.get((command_id or "").upper())
        if cmd is None:
            raise WsmanFault(FaultKind.COMMAND_NOT_FOUND, (command_id or "(none)")[:80])
        return cmd

    def _receive_target(self, req: Request, shell: _Shell) -> _Command:
        body = self._body(req, "Receive")
        desired = body.find(qname("rsp", "DesiredStream"))
        if desired is None:
            raise WsmanFault(FaultKind.SCHEMA_VALIDATION, "rsp:Receive needs an rsp:DesiredStream.")
        return self._command_for(shell, desired.get("CommandId"))

    def _fill(self, cmd: _Command, deadline: float) -> None:
        """Read from the process until output or completion is buffered, or ``deadline`` passes."""
        # Collect whatever is ready right now, then wait only if there is nothing to hand out.
        if not cmd.done:
            cmd.absorb(cmd.process.read(0.0))
        while not (cmd.stdout or cmd.stderr or cmd.done):
            remaining = deadline - self._clock()
            if remaining <= 0 or self._stopping.is_set():
                return
            cmd.absorb(cmd.process.read(min(remaining, _POLL_SLICE_S)))

    def _receive(self, req: Request, shell: _Shell) -> bytes:
        cmd = self._receive_target(req, shell)
        timeout = self._timeout(req)
        deadline = self._clock() + timeout
        # A second Receive for the same command waits its turn, bounded by its own timeout.
        if not cmd.lock.acquire(timeout=timeout):
            raise WsmanFault(FaultKind.TIMED_OUT)
        try:
            self._fill(cmd, deadline)
            if not (cmd.stdout or cmd.stderr or cmd.done):
                raise WsmanFault(FaultKind.TIMED_OUT)
            # Base64 grows 4/3; keep the reply under the client's MaxEnvelopeSize.
            budget = max(0, (req.max_envelope_size - _RECEIVE_OVERHEAD) // 4 * 3)
            if budget < 3:
                raise WsmanFault(FaultKind.ENCODING_LIMIT, "No room for output in the envelope.")
            out_bytes = bytes(cmd.stdout[:budget])
            del cmd.stdout[: len(out_bytes)]
            err_bytes = bytes(cmd.stderr[: budget - len(out_bytes)])
            del cmd.stderr[: len(err_bytes)]
            finished = cmd.done and not cmd.stdout and not cmd.stderr

            env, body = response_envelope(Action.RECEIVE.response, req.message_id)
            resp = sub(body, "rsp", "ReceiveResponse")
            cid = cmd.command_id
            if out_bytes:
                sub(resp, "rsp", "Stream", b64(out_bytes), Name="stdout", CommandId=cid)
            if err_bytes:
                sub(resp, "rsp", "Stream", b64(err_bytes), Name="stderr", CommandId=cid)
            if finished:
                sub(resp, "rsp", "Stream", None, Name="stdout", CommandId=cid, End="true")
                sub(resp, "rsp", "Stream", None, Name="stderr", CommandId=cid, End="true")
                state = sub(resp, "rsp", "CommandState", None, CommandId=cid, State=COMMAND_STATE_DONE)
                sub(state, "rsp", "ExitCode", str(cmd.exit_code if cmd.exit_code is not None else 0))
            else:
                sub(resp, "rsp", "CommandState", None, CommandId=cid, State=COMMAND_STATE_RUNNING)
            return serialize(env)
        finally:
            cmd.lock.release()

    def _send(self, req: Request, shell: _Shell) -> bytes:
        body = self._body(req, "Send")
        for stream in body.findall(qname("rsp", "Stream")):
            if stream.get("Name") != "stdin":
                raise WsmanFault(FaultKind.INVALID_PARAMETER, "Input can only be sent to stdin.")
            cmd = self._command_for(shell, stream.get("CommandId"))
            try:
                data = base64.b64decode((stream.text or "").strip(), validate=True)
            except binascii.Error:
                raise WsmanFault(FaultKind.INVALID_PARAMETER, "The stdin stream is not base64.") from None
            eof = (stream.get("End") or "").strip().lower() == "true"
            if not cmd.done:
                cmd.process.write_stdin(data, eof=eof)
        env, out = response_envelope(Action.SEND.response, req.message_id)
        sub(out, "rsp", "SendResponse")
        return serialize(env)

    def _signal(self, req: Request, shell: _Shell) -> bytes:
        body = self._body(req, "Signal")
        code = (body.findtext(qname("rsp", "Code")) or "").strip()
        try:
            signal = Signal(code)
        except ValueError:
            raise WsmanFault(FaultKind.INVALID_PARAMETER, f"Unknown signal code {code[:120]!r}.") from None
        cmd = self._command_for(shell, body.get("CommandId"))
        if signal in (Signal.TERMINATE, Signal.CTRL_C, Signal.CTRL_BREAK):
            # Not under cmd.lock: a long-polling Receive holds it, and terminate must be prompt.
            if not cmd.done:
                cmd.process.terminate()
            shell.commands.pop(cmd.command_id, None)
        env, out = response_envelope(Action.SIGNAL.response, req.message_id)
        sub(out, "rsp", "SignalResponse")
        return serialize(env)


__all__ = [
    "OutputChunkLike",
    "RunningCommandLike",
    "ShellSessionLike",
    "WinRSHost",
    "WinRSService",
]
