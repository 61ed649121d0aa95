"""SSH transport on paramiko: one connection per target, one exec channel per command.

Contract
--------
* Host keys: the lab's own ``known_hosts`` file and paramiko's ``RejectPolicy`` - an unknown host or
  a changed key is refused (never ``AutoAddPolicy``); the user's ``~/.ssh/known_hosts`` is not read,
  so a lab cannot silently trust a key learnt elsewhere. A mismatch raises ConnectError naming the
  host and the known_hosts file.
* Auth: a private key file (its passphrase, if any, from ``key_passphrase_env``) or a password from
  ``password_env``. Secrets come only from ``harness.credentials.get_secret`` (environment or
  keyring) and are never logged or put in a command line. Agent and ``~/.ssh`` key discovery are
  off: what authenticates is exactly what the lab config says.
* ``run(command_line, timeout=...)`` waits at most ``timeout`` seconds overall, then kills the
  remote process tree and returns ``timed_out=True`` with the output read so far:

  - POSIX targets (sh, bash): sshd starts every session child with ``setsid()``, so the child is
    a process-group leader. The transport sends ``printf 'atomiclab_pgid=%s\\n' $$ >&2; exec
    <command_line>``: the first stderr line names the group (the line is removed from the result)
    and ``exec`` keeps the test's own process exactly ``command_line``. At the deadline a second
    channel runs ``kill -KILL -- -<pgid>``, which reaches every descendant that did not leave the
    group, then the channel is closed.
  - Windows OpenSSH (default shell cmd or PowerShell): both would re-parse ``"powershell.exe" &
    {...}``, so the line is started through :func:`harness.execution.executors.windows_launcher`
    (``ProcessStartInfo``, the way Invoke-AtomicRedTeam starts it), which also enforces the deadline
    on the host with ``taskkill /T /F``. The client closes the channel if the host overruns too.
* Library errors are mapped at this edge: ConnectError (unreachable, TLS/host key), AuthError,
  ProtocolError; every message names the host and what to check.
"""

from __future__ import annotations

import enum
import logging
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.credentials import SecretLookup, get_secret
from harness.errors import AuthError, ConnectError, HarnessError, ProtocolError
from harness.execution.executors import windows_launcher
from harness.model import CommandResult, utcnow

log = logging.getLogger(__name__)

_PGID_RE = re.compile(rb"^atomiclab_pgid=(\d+)\n")
#: Exit code of the Windows launcher when it killed the process tree at the deadline.
_LAUNCHER_TIMEOUT_EXIT = 124


class SSHAuth(enum.StrEnum):
    KEY = "key"
    PASSWORD = "password"  # noqa: S105 - the auth method name, not a secret


class RemoteShell(enum.StrEnum):
    """The target's default shell for exec requests (what sshd hands the command line to)."""

    POSIX = "posix"  # Linux / macOS: $SHELL -c
    CMD = "cmd"  # Windows OpenSSH default
    POWERSHELL = "powershell"  # Windows OpenSSH with DefaultShell set to powershell.exe


@dataclass(frozen=True, slots=True)
class SSHConfig:
    """How to reach one SSH target. ``known_hosts`` is the lab's file (RejectPolicy against it)."""

    host: str
    username: str
    known_hosts: Path
    port: int = 22
    auth: SSHAuth = SSHAuth.KEY
    key_file: Path | None = None
    key_passphrase_env: str | None = None
    password_env: str | None = None
    remote_shell: RemoteShell = RemoteShell.POSIX
    connect_timeout: float = 15.0
    #: Extra seconds the client waits for a Windows launcher's own deadline kill to report back.
    kill_grace_s: float = 5.0


class SSHTransport:
    """Transport over SSH (see the module docstring for the contract)."""

    def __init__(self, config: SSHConfig, *, secrets: SecretLookup | None = None) -> None:
        self._config = config
        self._secrets = secrets if secrets is not None else get_secret
        self._client: paramiko.SSHClient | None = None

    @property
    def host(self) -> str:
        return self._config.host

    # --- connection -------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    def _load_key(self) -> paramiko.PKey:
        cfg = self._config
        if cfg.key_file is None:
            raise AuthError(
                "auth is 'key' but no key_file is configured", host=self._where(), hint="set key_file in the lab config"
            )
        passphrase = self._secrets(cfg.key_passphrase_env) if cfg.key_passphrase_env else None
        try:
            # paramiko hands the passphrase to cryptography, which wants bytes (its stub says str).
            secret = passphrase.encode("utf-8") if passphrase is not None else None
            return paramiko.PKey.from_path(cfg.key_file, secret)  # type: ignore[arg-type]
        except (paramiko.PasswordRequiredException, TypeError) as exc:
            if passphrase is not None and isinstance(exc, TypeError):
                raise AuthError(
                    f"cannot load key {cfg.key_file}: {type(exc).__name__}",
                    host=self._where(),
                    hint="check the key format and its passphrase",
                ) from None
            # cryptography raises TypeError("Key is password-protected ...") for a missing passphrase.
            raise AuthError(
                f"key {cfg.key_file} is encrypted",
                host=self._where(),
                hint="set key_passphrase_env to the variable holding its passphrase",
            ) from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            # The message may quote key material decoding problems but never the passphrase.
            raise AuthError(
                f"cannot load key {cfg.key_file}: {type(exc).__name__}",
                host=self._where(),
                hint="check the path, the key format and its passphrase",
            ) from None

    def _connect(self) -> paramiko.SSHClient:
        if self._client is not None:
            return self._client
        cfg = self._config
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(cfg.known_hosts))
        except OSError as exc:
            raise ConnectError(
                f"cannot read known_hosts file {cfg.known_hosts}: {exc.strerror}",
                host=self._where(),
                hint="point known_hosts at the lab's file",
            ) from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        pkey = self._load_key() if cfg.auth is SSHAuth.KEY else None
        password = None
        if cfg.auth is SSHAuth.PASSWORD:
            if not cfg.password_env:
                raise AuthError(
                    "auth is 'password' but no password_env is configured",
                    host=self._where(),
                    hint="name the environment variable / keyring entry holding it",
                )
            password = self._secrets(cfg.password_env)
        try:
            client.connect(
                cfg.host,
                port=cfg.port,
                username=cfg.username,
                pkey=pkey,
                password=password,
                timeout=cfg.connect_timeout,
                banner_timeout=cfg.connect_timeout,
                auth_timeout=cfg.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise ConnectError(
                f"host key does not match the entry in {cfg.known_hosts}",
                host=self._where(),
                hint="the host was rebuilt or this is not the lab host: verify its fingerprint, then "
                "update that known_hosts entry",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthError(
                f"authentication as {cfg.username!r} with {cfg.auth.value} refused",
                host=self._where(),
                hint="check the username, the key/password and authorized_keys",
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            if "known_hosts" in str(exc):
                raise ConnectError(
                    f"host key is not in {cfg.known_hosts}",
                    host=self._where(),
                    hint=f"verify the fingerprint, then add it: ssh-keyscan -p {cfg.port} {cfg.host} >> "
                    f"{cfg.known_hosts}",
                ) from None
            raise ProtocolError(
                f"SSH negotiation failed: {exc}", host=self._where(), hint="check that the port speaks SSH"
            ) from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise ConnectError(
                f"cannot connect: {exc}", host=self._where(), hint="check that sshd runs and the port is reachable"
            ) from exc
        self._client = client
        return client

    def _open_channel(self) -> paramiko.Channel:
        client = self._connect()
        transport = client.get_transport()
        try:
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("connection closed")
            return transport.open_session(timeout=self._config.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectError(
                f"connection lost: {exc}",
                host=self._where(),
                hint="the host closed the SSH connection; check sshd and the network",
            ) from exc

    # --- commands ---------------------------------------------------------------------------------

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        """Run ``command_line`` with an overall deadline (see the module docstring)."""
        posix = self._config.remote_shell is RemoteShell.POSIX
        if posix:
            wire = f"printf 'atomiclab_pgid=%s\\n' $$ >&2; exec {command_line}"
            client_deadline = timeout
        else:
            wire = windows_launcher(command_line, deadline_s=timeout)
            client_deadline = timeout + self._config.kill_grace_s
        started = utcnow()
        t0 = time.monotonic()
        channel = self._open_channel()
        stdout, stderr = bytearray(), bytearray()
        pgid: int | None = None
        timed_out = False
        try:
            channel.exec_command(wire)
            while True:
                if channel.recv_ready():
                    stdout += channel.recv(65536)
                    continue
                if channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                    if pgid is None and posix:
                        m = _PGID_RE.match(stderr)
                        if m:
                            pgid = int(m.group(1))
                            del stderr[: m.end()]
                    continue
                if channel.exit_status_ready() and channel.eof_received:
                    break
                remaining = client_deadline - (time.monotonic() - t0)
                if remaining <= 0:
                    timed_out = True
                    break
                select.select([channel], [], [], min(remaining, 0.5))
            if timed_out:
                if posix and pgid is not None:
                    self._kill_group(pgid)
                exit_code: int | None = None
            else:
                exit_code = channel.recv_exit_status()
                if not posix and exit_code == _LAUNCHER_TIMEOUT_EXIT and time.monotonic() - t0 >= timeout:
                    timed_out, exit_code = True, None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectError(
                f"connection lost during a command: {exc}",
                host=self._where(),
                hint="the host or network dropped the SSH session",
            ) from exc
        finally:
            channel.close()
        if posix and pgid is None:
            m = _PGID_RE.match(stderr)
            if m:
                del stderr[: m.end()]
        return CommandResult(
            command=command_line,
            exit_code=exit_code,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            started=started,
            ended=utcnow(),
            timed_out=timed_out,
        )

    def _kill_group(self, pgid: int) -> None:
        """Kill the remote process group ``pgid`` over a second channel (best effort, logged)."""
        try:
            channel = self._open_channel()
            try:
                channel.exec_command(f"kill -KILL -- -{int(pgid)} 2>/dev/null; true")
                channel.settimeout(self._config.connect_timeout)
                channel.recv_exit_status()
            finally:
                channel.close()
        except (HarnessError, paramiko.SSHException, OSError) as exc:
            log.warning("%s: could not kill process group %d after the deadline: %s", self.host, pgid, exc)

    def put_file(self, local: Path, remote: str) -> None:
        """Copy ``local`` to ``remote`` over SFTP."""
        client = self._connect()
        try:
            with client.open_sftp() as sftp:
                sftp.put(str(local), remote)
        except FileNotFoundError as exc:
            raise ProtocolError(
                f"cannot copy {local} to {remote}: {exc.strerror or exc}",
                host=self._where(),
                hint="check that the local file and the remote directory exist",
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ProtocolError(
                f"SFTP copy of {local} to {remote} failed: {exc}",
                host=self._where(),
                hint="check that the SFTP subsystem is enabled and the path writable",
            ) from exc

    def close(self) -> None:
        """Close the SSH connection. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


__all__ = ["RemoteShell", "SSHAuth", "SSHConfig", "SSHTransport", "SecretLookup"]
