"""HTTP authentication and WinRM message encryption for the emulated host, server side.

NTLM (bare, or wrapped in SPNEGO as ``Negotiate``) is accepted with pyspnego's acceptor. pyspnego's
NTLM acceptor looks credentials up in the flat file named by the ``NTLM_USER_FILE`` environment
variable (lines ``DOMAIN:USER:PASSWORD``); :class:`NtlmUserFile` writes such a file (mode 0600) with
the per-start account, and every acceptor step runs with the variable pointing at it under one
process-wide lock, so several emulated hosts in one process do not see each other's accounts.

One :class:`ConnectionAuth` lives per TCP connection, as on Windows: once the handshake completes,
later requests on the same connection carry no ``Authorization`` header and are still
authenticated. Over HTTPS the acceptor checks the ``tls-server-end-point`` channel binding
(pypsrp sends it by default). Over plain HTTP the same context seals and unseals every message in
the ``multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted"`` framing
([MS-WSMV] 2.2.9.1) that pypsrp and Windows use.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spnego
import spnego.exceptions
from spnego.channel_bindings import GssChannelBindings

#: pyspnego reads this variable at acceptor construction and at the final step.
_USER_FILE_VAR = "NTLM_USER_FILE"
#: The environment is process state; this lock keeps one acceptor's view of it consistent.
_ENV_LOCK = threading.Lock()

SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
_BOUNDARY = "Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{SPNEGO_ENCRYPTED}";boundary="{_BOUNDARY}"'


class AuthScheme(enum.StrEnum):
    """HTTP authentication schemes the listener may offer."""

    NEGOTIATE = "Negotiate"
    NTLM = "NTLM"
    BASIC = "Basic"


class StepOutcome(enum.Enum):
    CONTINUE = "continue"  # send 401 with the server token, the client answers on the same connection
    COMPLETE = "complete"  # authenticated; serve the request body that came with the last token
    REJECTED = "rejected"  # bad credentials or token: 401 with fresh challenges


@dataclass(frozen=True)
class StepResult:
    outcome: StepOutcome
    scheme: AuthScheme | None = None
    out_token: bytes | None = None
    reason: str = ""


class MessageFramingError(Exception):
    """An encrypted body that cannot be unframed or unsealed (the server answers 400)."""


@dataclass(frozen=True)
class Credentials:
    """The account the emulated host accepts. The password never appears in ``repr``."""

    username: str
    password: str = field(repr=False)


class NtlmUserFile:
    """The ``DOMAIN:USER:PASSWORD`` file pyspnego's NTLM acceptor reads, written with mode 0600.

    The account is listed for the domains a client may name a local account with: none, ``.``,
    the host name and the lab domain.
    """

    def __init__(self, path: Path, credentials: Credentials, *, domains: tuple[str, ...]) -> None:
        if any(":" in part or "\n" in part for part in (credentials.username, credentials.password)):
            raise ValueError("NTLM user file entries cannot contain ':' or newlines")
        self.path = path
        lines = [f"{d}:{credentials.username}:{credentials.password}" for d in dict.fromkeys(("", ".", *domains))]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


#: pyspnego reads the NTLM compatibility level from this variable when a context is created; 5 makes
#: the acceptor refuse LM and NTLMv1 responses ("Send NTLMv2 response only. Refuse LM & NTLM", the
#: LAN Manager authentication level policy; pyspnego ``_ntlm.py``: acceptor ``_nt_v1 = level < 5``).
_LM_COMPAT_VAR = "LM_COMPAT_LEVEL"
NTLMV2_ONLY_LEVEL = "5"


@contextmanager
def _user_file_env(path: Path) -> Iterator[None]:
    """pyspnego's acceptor settings (process environment, hence the lock): our user file, and
    NTLMv2 only."""
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in (_USER_FILE_VAR, _LM_COMPAT_VAR)}
        os.environ[_USER_FILE_VAR] = str(path)
        os.environ[_LM_COMPAT_VAR] = NTLMV2_ONLY_LEVEL
        try:
            yield
        finally:
            for name, previous in saved.items():
                if previous is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = previous


def tls_channel_bindings(cert_der: bytes) -> bytes:
    """RFC 5929 ``tls-server-end-point`` application data for a SHA-256-signed certificate."""
    return b"tls-server-end-point:" + hashlib.sha256(cert_der).digest()


_AUTH_HEADER = re.compile(r"^\s*(Negotiate|NTLM|Basic)\s+([A-Za-z0-9+/=]+)\s*$", re.IGNORECASE)


@dataclass
class ConnectionAuth:
    """Authentication state of one TCP connection (not shared between threads)."""

    user_file: NtlmUserFile
    credentials: Credentials
    channel_bindings: bytes | None = None
    allow_basic: bool = False
    user: str | None = None
    _context: Any = None
    _scheme: AuthScheme | None = None

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    @property
    def can_seal(self) -> bool:
        """True when a Negotiate/NTLM context exists that can encrypt messages."""
        return self._context is not None and self.user is not None

    def reset(self) -> None:
        self.user = None
        self._context = None
        self._scheme = None

    def step(self, authorization: str) -> StepResult:
        """Advance authentication with one ``Authorization`` header value."""
        m = _AUTH_HEADER.match(authorization)
        if not m:
            self.reset()
            return StepResult(StepOutcome.REJECTED, reason="unsupported Authorization header")
        scheme = AuthScheme(next(s for s in AuthScheme if s.value.lower() == m.group(1).lower()))
        try:
            token = base64.b64decode(m.group(2), validate=True)
        except ValueError:
            self.reset()
            return StepResult(StepOutcome.REJECTED, reason="Authorization token is not base64")
        if scheme is AuthScheme.BASIC:
            return self._basic(token)
        return self._sspi(scheme, token)

    def _basic(self, token: bytes) -> StepResult:
        self.reset()
        if not self.allow_basic:
            return StepResult(StepOutcome.REJECTED, reason="Basic authentication is disabled")
        user, sep, password = token.decode("utf-8", "replace").partition(":")
        name = user.rsplit("\\", 1)[-1]
        ok = bool(sep) and hmac.compare_digest(name.lower().encode(), self.credentials.username.lower().encode())
        ok = hmac.compare_digest(password.encode(), self.credentials.password.encode()) and ok
        if not ok:
            return StepResult(StepOutcome.REJECTED, reason="bad Basic credentials")
        self.user = self.credentials.username
        return StepResult(StepOutcome.COMPLETE, AuthScheme.BASIC)

    def _sspi(self, scheme: AuthScheme, token: bytes) -> StepResult:
        # A new handshake starts whenever the client sends a NEGOTIATE message (or SPNEGO init).
        starting = self._context is None or self.user is not None or scheme is not self._scheme
        try:
            with _user_file_env(self.user_file.path):
                if starting:
                    self.user = None
                    cbt = GssChannelBindings(application_data=self.channel_bindings) if self.channel_bindings else None
                    self._context = spnego.server(
                        hostname="localhost",
                        service="HTTP",
                        channel_bindings=cbt,
                        protocol="negotiate",
                    )
                    self._scheme = scheme
                out = self._context.step(token)
        except (spnego.exceptions.SpnegoError, ValueError, struct.error) as exc:
            self.reset()
            return StepResult(StepOutcome.REJECTED, scheme, reason=f"authentication failed: {type(exc).__name__}")
        if not self._context.complete:
            return StepResult(StepOutcome.CONTINUE, scheme, out_token=out)
        self.user = str(self._context.client_principal or self.credentials.username)
        return StepResult(StepOutcome.COMPLETE, scheme, out_token=out)

    # -- message encryption ---------------------------------------------------------------------

    def unseal(self, body: bytes, content_type: str) -> bytes:
        """Unframe and decrypt a ``multipart/encrypted`` request body."""
        if not self.can_seal:
            raise MessageFramingError("encrypted message on a connection without a security context")
        if SPNEGO_ENCRYPTED.lower() not in content_type.lower():
            raise MessageFramingError("unsupported encryption protocol (expected HTTP-SPNEGO-session-encrypted)")
        m = re.search(r'boundary="?([^";]+)"?', content_type)
        if not m:
            raise MessageFramingError("multipart/encrypted without a boundary")
        boundary = re.escape(m.group(1).encode("latin-1"))
        parts = [p for p in re.split(rb"--\s*" + boundary + rb"\r\n", body) if p]
        if not parts or len(parts) % 2:
            raise MessageFramingError("malformed multipart/encrypted body")
        out = bytearray()
        for head, payload in zip(parts[::2], parts[1::2]):
            length = re.search(rb"Length=(\d+)", head)
            if not length:
                raise MessageFramingError("encrypted part without OriginalContent Length")
            payload = re.sub(rb"--\s*" + boundary + rb"--\r\n$", b"", payload)
            prefix = b"\tContent-Type: application/octet-stream\r\n"
            if not payload.startswith(prefix):
                raise MessageFramingError("encrypted part without application/octet-stream header")
            payload = payload[len(prefix) :]
            if len(payload) < 4:
                raise MessageFramingError("truncated encrypted part")
            (hlen,) = struct.unpack("<I", payload[:4])
            if hlen > len(payload) - 4:
                raise MessageFramingError("encrypted part header length out of range")
            try:
                plain = self._context.unwrap_winrm(payload[4 : 4 + hlen], payload[4 + hlen :])
            except spnego.exceptions.SpnegoError as exc:
                raise MessageFramingError(f"cannot decrypt message: {type(exc).__name__}") from None
            if len(plain) != int(length.group(1)):
                raise MessageFramingError("decrypted length does not match OriginalContent Length")
            out += plain
        return bytes(out)

    def seal(self, message: bytes) -> bytes:
        """Encrypt and frame a response body (pair with :data:`ENCRYPTED_CONTENT_TYPE`)."""
        result = self._context.wrap_winrm(message)
        length = len(message) + int(result.padding_length)
        framed = (
            f"--{_BOUNDARY}\r\n"
            f"\tContent-Type: {SPNEGO_ENCRYPTED}\r\n"
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={length}\r\n"
            f"--{_BOUNDARY}\r\n"
            "\tContent-Type: application/octet-stream\r\n"
        ).encode("ascii")
        header, data = bytes(result.header), bytes(result.data)
        return framed + struct.pack("<I", len(header)) + header + data + f"--{_BOUNDARY}--\r\n".encode()


__all__ = [
    "ENCRYPTED_CONTENT_TYPE",
    "SPNEGO_ENCRYPTED",
    "AuthScheme",
    "ConnectionAuth",
    "Credentials",
    "MessageFramingError",
    "NtlmUserFile",
    "StepOutcome",
    "StepResult",
    "tls_channel_bindings",
]
