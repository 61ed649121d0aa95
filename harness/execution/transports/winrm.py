"""WinRM transport on pypsrp: one WinRS shell per transport, reused across a test's commands.

Contract
--------
* Configuration is one frozen :class:`WinRMConfig`. HTTPS with certificate validation is the
  default (``ca_bundle``: the lab's CA bundle, or the host's exported certificate itself, which is
  then the only trusted certificate - pinning). There is no switch to turn validation off.
* Auth: negotiate, ntlm, kerberos, credssp, certificate, basic. Basic (and certificate) only over
  HTTPS: Basic over plain HTTP is refused before any packet is sent. Over HTTP the
  negotiate/ntlm/kerberos/credssp exchanges use WinRM message encryption (pypsrp ``auto``), as
  Windows requires with ``AllowUnencrypted=false``.
* The password comes from ``password_env`` through ``harness.credentials.get_secret`` (environment
  or keyring); it is never logged, never put in a command line, error, result or report.
* ``run(command_line, timeout=...)``: WinRS Command, then Receive long-polls whose WS-Man
  OperationTimeout never reaches past the overall deadline. The operation-timeout fault
  (2150858793) just means "no output yet" and is retried transparently. At the deadline the
  command gets WinRS Signal ``Terminate``: WinRS ends the command's process, and the job object
  winrshost.exe runs each command in takes its children with it - the client has no PID to run
  ``taskkill /T /F`` against. The result is ``timed_out=True`` with the output received so far.
  After a normal completion the command is released with Signal ``Terminate`` as winrs.exe does.
* Command line: with ``CommandMode.LAUNCHER`` (default, for lab and emulated hosts alike) the
  WinRS command is the launcher (:func:`harness.execution.executors.windows_launcher`), which
  starts the executor's exact command line via ``ProcessStartInfo`` and kills its process tree on
  the host at the deadline. WinRS runs every command through ``cmd.exe /C``, which would re-parse
  ``&`` and strip quotes of the rendered line; the launcher's line has nothing cmd changes.
  ``CommandMode.DIRECT`` sends the line itself as the WinRS command (for probing cmd's parsing).
* Errors are mapped at this edge: AuthError (HTTP 401, SPNEGO failure), ConnectError (refused,
  dropped, TLS validation, timeouts), ProtocolError (HTTP 500, WS-Man faults, bad XML). Each names
  the host and what to check. After a transport error the shell is abandoned; the next ``run``
  opens a new one.
"""

from __future__ import annotations

import base64
import enum
import logging
import math
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import requests
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.shell import CommandState, SignalCode, WinRS
from pypsrp.wsman import NAMESPACES, WSMan

from harness.credentials import SecretLookup, get_secret
from harness.errors import AuthError, ConnectError, ProtocolError, TransportError
from harness.execution.executors import windows_launcher
from harness.model import CommandResult, utcnow

log = logging.getLogger(__name__)

#: WS-Man fault code for "the operation timed out" on a long-poll Receive (retry it).
OPERATION_TIMEOUT_FAULT = 2150858793
_LAUNCHER_TIMEOUT_EXIT = 124
#: UTF-8 console code page, so output decodes without guessing the host's OEM code page.
_UTF8_CODEPAGE = 65001


class WinRMAuth(enum.StrEnum):
    NEGOTIATE = "negotiate"
    NTLM = "ntlm"
    KERBEROS = "kerberos"
    CREDSSP = "credssp"
    CERTIFICATE = "certificate"
    BASIC = "basic"


class WinRMScheme(enum.StrEnum):
    HTTPS = "https"
    HTTP = "http"


class CommandMode(enum.StrEnum):
    """How the executor's command line becomes a WinRS command (see the module docstring)."""

    DIRECT = "direct"
    LAUNCHER = "launcher"


@dataclass(frozen=True, slots=True)
class WinRMConfig:
    """How to reach one WinRM target."""

    host: str
    username: str | None = None
    password_env: str | None = None
    port: int | None = None  # default 5986 for https, 5985 for http
    scheme: WinRMScheme = WinRMScheme.HTTPS
    auth: WinRMAuth = WinRMAuth.NEGOTIATE
    ca_bundle: Path | None = None  # CA bundle or the host's own certificate (PEM); None: system store
    certificate_pem: Path | None = None  # client certificate for auth=certificate
    certificate_key_pem: Path | None = None
    connect_timeout: float = 15.0
    operation_timeout_s: int = 20  # WS-Man OperationTimeout of one Receive long-poll
    max_envelope_size: int = 153600
    path: str = "wsman"
    command_mode: CommandMode = CommandMode.LAUNCHER
    kill_grace_s: float = 5.0  # LAUNCHER mode: time allowed for the host's own deadline kill

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (5986 if self.scheme is WinRMScheme.HTTPS else 5985)


class WinRMTransport:
    """Transport over WinRM/WinRS (see the module docstring for the contract)."""

    def __init__(self, config: WinRMConfig, *, secrets: SecretLookup | None = None) -> None:
        self._config = config
        self._secrets = secrets if secrets is not None else get_secret
        self._wsman: WSMan | None = None
        self._shell: WinRS | None = None
        self._check_config()

    @property
    def host(self) -> str:
        return self._config.host

    def _where(self) -> str:
        return f"{self._config.host}:{self._config.effective_port}"

    def _check_config(self) -> None:
        cfg = self._config
        if cfg.scheme is WinRMScheme.HTTP and cfg.auth in (WinRMAuth.BASIC, WinRMAuth.CERTIFICATE):
            raise ConnectError(
                f"{cfg.auth.value} authentication over plain HTTP is refused: it would expose the credentials",
                host=self._where(),
                hint="use scheme https, or ntlm/negotiate/kerberos/credssp (message-encrypted over http)",
            )
        if cfg.auth is WinRMAuth.CERTIFICATE and (cfg.certificate_pem is None or cfg.certificate_key_pem is None):
            raise ConnectError(
                "certificate authentication needs certificate_pem and certificate_key_pem",
                host=self._where(),
                hint="set both in the lab config",
            )
        if cfg.auth is not WinRMAuth.CERTIFICATE and not cfg.username and cfg.auth is not WinRMAuth.KERBEROS:
            raise ConnectError(
                f"{cfg.auth.value} authentication needs a username", host=self._where(), hint="set username"
            )

    # --- session ----------------------------------------------------------------------------------

    def _open(self) -> WinRS:
        if self._shell is not None:
            return self._shell
        cfg = self._config
        password = self._secrets(cfg.password_env) if cfg.password_env else None
        kwargs: dict[str, str] = {}
        if cfg.auth is WinRMAuth.CERTIFICATE:
            kwargs = {
                "certificate_pem": str(cfg.certificate_pem),
                "certificate_key_pem": str(cfg.certificate_key_pem),
            }
        try:
            wsman = WSMan(
                cfg.host,
                port=cfg.effective_port,
                username=cfg.username,
                password=password,
                ssl=cfg.scheme is WinRMScheme.HTTPS,
                path=cfg.path,
                auth=cfg.auth.value,
                # pypsrp passes this to requests' ``verify``: a path (CA bundle / pinned cert) or True.
                cert_validation=str(cfg.ca_bundle) if cfg.ca_bundle is not None else True,  # type: ignore[arg-type]
                connection_timeout=math.ceil(cfg.connect_timeout),
                read_timeout=math.ceil(cfg.connect_timeout) + cfg.operation_timeout_s,
                operation_timeout=cfg.operation_timeout_s,
                max_envelope_size=cfg.max_envelope_size,
                encryption="auto",
                no_proxy=True,  # a lab host is never reached through the user's web proxy
                **kwargs,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise ConnectError(
                f"invalid WinRM settings: {exc}", host=self._where(), hint="fix the lab config"
            ) from None
        shell = WinRS(wsman, codepage=_UTF8_CODEPAGE, no_profile=None)
        try:
            shell.open()
        except Exception as exc:
            wsman.close()
            raise self._map_error(exc, "opening the WinRS shell") from exc
        self._wsman, self._shell = wsman, shell
        return shell

    def _abandon(self) -> None:
        """Forget a shell whose connection state is unknown (after a transport error)."""
        wsman, self._wsman, self._shell = self._wsman, None, None
        if wsman is not None:
            wsman.close()

    def _map_error(self, exc: BaseException, doing: str) -> TransportError:
        """Translate a pypsrp/requests/spnego error into the HarnessError tree (never echoing secrets)."""
        where = self._where()
        cfg = self._config
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, AuthenticationError):
            return AuthError(
                f"{doing}: the host refused the credentials of {cfg.username!r} ({cfg.auth.value})",
                host=where,
                hint=f"check the username, the secret in {cfg.password_env or 'the configured variable'} "
                "and that the listener allows this auth method",
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return ConnectError(
                f"{doing}: TLS certificate verification failed",
                host=where,
                hint="point ca_bundle at the lab's CA or the host's exported WinRM certificate",
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return ConnectError(
                f"{doing}: no answer in time ({type(exc).__name__})",
                host=where,
                hint="check that the host is up and the WinRM listener answers",
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return ConnectError(
                f"{doing}: the connection failed or was dropped ({_root_cause(exc)})",
                host=where,
                hint=f"check that WinRM listens on {cfg.scheme.value}://{where}/{cfg.path} and the network",
            )
        if isinstance(exc, WSManFaultError):
            return ProtocolError(
                f"{doing}: WS-Management fault {exc.code}: {exc.reason}",
                host=where,
                hint="see the host's WinRM event log (Microsoft-Windows-WinRM/Operational)",
            )
        if isinstance(exc, WinRMTransportError):
            return ProtocolError(
                f"{doing}: HTTP {exc.code} from the WinRM service",
                host=where,
                hint="check the WinRM service and its event log",
            )
        if isinstance(exc, ET.ParseError):
            return ProtocolError(f"{doing}: the reply is not XML", host=where, hint="is this a WinRM endpoint?")
        if isinstance(exc, ImportError):
            return ConnectError(
                f"{doing}: {cfg.auth.value} support is not installed ({exc.name or exc})",
                host=where,
                hint="install the optional package for this auth method (requests-credssp, gssapi/krb5)",
            )
        if isinstance(exc, WinRMError | requests.exceptions.RequestException):
            return ProtocolError(f"{doing}: {type(exc).__name__}: {exc}", host=where, hint="check the WinRM service")
        if type(exc).__module__.startswith("spnego"):
            return AuthError(
                f"{doing}: authentication failed ({type(exc).__name__})",
                host=where,
                hint="check the credentials, the auth method and (kerberos) the ticket/realm",
            )
        return ProtocolError(f"{doing}: unexpected {type(exc).__name__}", host=where, hint="check the WinRM service")

    # --- commands ---------------------------------------------------------------------------------

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        """Run ``command_line`` in the shared WinRS shell with an overall deadline."""
        cfg = self._config
        launcher = cfg.command_mode is CommandMode.LAUNCHER
        wire = windows_launcher(command_line, deadline_s=timeout) if launcher else command_line
        deadline_s = timeout + (cfg.kill_grace_s if launcher else 0.0)
        started = utcnow()
        t0 = time.monotonic()
        shell = self._open()
        stdout, stderr = bytearray(), bytearray()
        exit_code: int | None = None
        timed_out = False
        try:
            reply = shell.command(wire, None)
            id_el = reply.find("rsp:CommandResponse/rsp:CommandId", namespaces=NAMESPACES)
            if id_el is None or not id_el.text:
                raise ProtocolError("the Command reply has no CommandId", host=self._where(), hint="not a WinRS host?")
            command_id = id_el.text
            while True:
                remaining = deadline_s - (time.monotonic() - t0)
                if remaining <= 0:
                    timed_out = True
                    break
                # Never let one long-poll outlive the deadline (whole seconds: the WS-Man duration).
                poll = max(1, min(cfg.operation_timeout_s, math.floor(remaining)))
                try:
                    state, rc, buffers = shell.receive("stdout stderr", command_id, timeout=poll)
                except WSManFaultError as fault:
                    if fault.code == OPERATION_TIMEOUT_FAULT:
                        continue  # no output within the poll: normal for long commands
                    raise
                stdout += buffers.get("stdout", b"")
                stderr += buffers.get("stderr", b"")
                if state == CommandState.DONE:
                    exit_code = rc
                    break
            self._release(shell, command_id, terminating=timed_out)
        except Exception as exc:
            self._abandon()
            raise self._map_error(exc, "running a command") from exc
        if launcher and exit_code == _LAUNCHER_TIMEOUT_EXIT and time.monotonic() - t0 >= timeout:
            timed_out, exit_code = True, None
        return CommandResult(
            command=command_line,
            exit_code=None if timed_out else exit_code,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            started=started,
            ended=utcnow(),
            timed_out=timed_out,
        )

    def _release(self, shell: WinRS, command_id: str, *, terminating: bool) -> None:
        """Signal Terminate: ends a running command (deadline) or releases a finished one."""
        try:
            shell.signal(SignalCode.TERMINATE, command_id)
        except WSManFaultError as fault:
            # A command that already ended may be gone; that is not a failure of the test.
            if terminating:
                raise
            log.debug("%s: releasing command %s: fault %s", self.host, command_id, fault.code)

    def put_file(self, local: Path, remote: str) -> None:
        """Copy ``local`` to ``remote``: base64 over the command's stdin to a PowerShell writer."""
        try:
            data = local.read_bytes()
        except OSError as exc:
            raise ProtocolError(
                f"cannot read {local}: {exc.strerror}", host=self._where(), hint="check the local path"
            ) from exc
        literal = "'" + remote.replace("'", "''") + "'"
        script = f"$b = [Convert]::FromBase64String([Console]::In.ReadToEnd()); [IO.File]::WriteAllBytes({literal}, $b)"
        encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
        shell = self._open()
        payload = base64.b64encode(data)
        chunk = max(1024, self._config.max_envelope_size // 2)
        try:
            reply = shell.command(f"powershell.exe -NoProfile -NonInteractive -EncodedCommand {encoded}", None)
            id_el = reply.find("rsp:CommandResponse/rsp:CommandId", namespaces=NAMESPACES)
            command_id = id_el.text if id_el is not None and id_el.text else ""
            for start in range(0, max(len(payload), 1), chunk):
                part = payload[start : start + chunk]
                shell.send("stdin", part, command_id=command_id, end=start + chunk >= len(payload))
            while True:
                try:
                    state, rc, buffers = shell.receive("stdout stderr", command_id)
                except WSManFaultError as fault:
                    if fault.code == OPERATION_TIMEOUT_FAULT:
                        continue
                    raise
                if state == CommandState.DONE:
                    break
            self._release(shell, command_id, terminating=False)
        except Exception as exc:
            self._abandon()
            raise self._map_error(exc, f"copying {local.name} to {remote}") from exc
        if rc != 0:
            err = buffers.get("stderr", b"").decode("utf-8", "replace").strip().splitlines()
            raise ProtocolError(
                f"copying {local.name} to {remote} failed with exit code {rc}" + (f": {err[0]}" if err else ""),
                host=self._where(),
                hint="check that the remote directory exists and is writable",
            )

    def close(self) -> None:
        """Delete the WinRS shell and close the HTTP session. Idempotent; errors are logged only."""
        shell, wsman = self._shell, self._wsman
        self._shell = self._wsman = None
        try:
            if shell is not None:
                shell.close()
        except Exception as exc:  # closing must not mask the outcome that led here
            log.warning("%s: deleting the WinRS shell failed: %s", self.host, self._map_error(exc, "closing"))
        finally:
            if wsman is not None:
                wsman.close()


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's class name (e.g. ConnectionResetError) - short and secret-free."""
    seen = exc
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else seen
    return type(inner).__name__


__all__ = ["CommandMode", "SecretLookup", "WinRMAuth", "WinRMConfig", "WinRMScheme", "WinRMTransport"]
