"""The emulated host's WinRM listener: WS-Management/WinRS over HTTPS (or HTTP) on 127.0.0.1.

:class:`EmulatedHostServer` is a small stdlib ``ThreadingHTTPServer`` serving ``POST /wsman``:

- **TLS**: at :meth:`~EmulatedHostServer.start` a fresh CA and server certificate are generated
  (:mod:`harness.emulated.tls`); clients validate against :attr:`~EmulatedHostServer.ca_cert_path`.
  The TLS handshake runs in the connection's thread, so a silent client cannot stall the listener.
- **Authentication**: NTLM and Negotiate(NTLM) via pyspnego (:mod:`harness.emulated.wsman_auth`),
  per TCP connection; a random password per start; Basic only over HTTPS and only when enabled.
  In plain-HTTP mode messages must be sealed with WinRM message encryption, as on Windows with
  ``AllowUnencrypted=false``.
  NTLMv2 only: LM and NTLMv1 responses are refused, as with LmCompatibilityLevel 5.
- **Bounds**: at most ``max_connections`` connections are served (more are closed on accept), a
  request must arrive whole within ``request_deadline_s`` of its first byte and within
  ``max_request_bytes``, an idle connection ends after ``idle_connection_timeout_s``.
- **WinRS**: :mod:`harness.emulated.wsman_shells` (Create, Command, Receive, Send, Signal, Delete).
- **Faults**: :class:`FaultConfig` injects dropped connections, HTTP 500 faults, slow Receives and
  operation timeouts; :meth:`~EmulatedHostServer.set_faults` swaps them while running.
- **Stats**: :attr:`~EmulatedHostServer.stats` counts HTTP round trips and WS-Man requests by action.

Every response carries ``X-Atomiclab-Emulated: true``. The password is held in memory and in a
0600 NTLM user file inside a private temporary directory removed at stop; it is never logged.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import logging
import re
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from harness.emulated.tls import TlsMaterial, generate_tls_material
from harness.emulated.wsman_auth import (
    ENCRYPTED_CONTENT_TYPE,
    AuthScheme,
    ConnectionAuth,
    Credentials,
    MessageFramingError,
    NtlmUserFile,
    StepOutcome,
    tls_channel_bindings,
)
from harness.emulated.wsman_shells import WinRSHost, WinRSService
from harness.emulated.wsman_soap import (
    SOAP_CONTENT_TYPE,
    Action,
    FaultKind,
    Request,
    WsmanFault,
    fault_envelope,
    parse_request,
    peek_message_id,
)
from harness.errors import EmulationError

log = logging.getLogger(__name__)

#: Environment variables :meth:`EmulatedHostServer.credentials_env` fills for the harness.
URL_ENV = "ATOMICLAB_EMULATED_URL"
USERNAME_ENV = "ATOMICLAB_EMULATED_USERNAME"
PASSWORD_ENV = "ATOMICLAB_EMULATED_PASSWORD"  # noqa: S105 - the variable NAME, not a secret
CA_ENV = "ATOMICLAB_EMULATED_CA"

EMULATED_HEADER = "X-Atomiclab-Emulated"
_SERVER_HEADER = "Microsoft-HTTPAPI/2.0 (atomiclab emulated)"


@dataclass(frozen=True)
class FaultConfig:
    """Faults to inject. Counting starts when the config is set (at start or via ``set_faults``).

    - ``drop_on_request``: the Nth WS-Man request (1-based) is read, not executed, and its TCP
      connection is reset without a reply.
    - ``drop_mid_receive``: the next Receive waits until its command has output (or its
      OperationTimeout passes), then the connection is reset; the output stays buffered.
    - ``http_500_actions``: every request with one of these actions is answered HTTP 500 with an
      ``w:InternalError`` WS-Man fault marked as injected, without being executed.
    - ``receive_delay_s``: every Receive sleeps this long before it is served.
    - ``timeout_next_receive``: the next Receive answers the operation-timeout fault at once.
    """

    drop_on_request: int | None = None
    drop_mid_receive: bool = False
    http_500_actions: frozenset[Action] = frozenset()
    receive_delay_s: float = 0.0
    timeout_next_receive: bool = False

    def __post_init__(self) -> None:
        if self.drop_on_request is not None and self.drop_on_request < 1:
            raise EmulationError("FaultConfig.drop_on_request counts from 1")
        if self.receive_delay_s < 0:
            raise EmulationError("FaultConfig.receive_delay_s cannot be negative")


@dataclass(frozen=True)
class ServerConfig:
    """How the listener runs. ``port=0`` picks a free port; ``use_tls=False`` is plain HTTP with
    mandatory message encryption (unless ``allow_unencrypted``, which real hosts default off)."""

    port: int = 0
    use_tls: bool = True
    username: str = "atomiclab"
    allow_basic: bool = False
    allow_unencrypted: bool = False
    max_operation_timeout_s: float = 60.0
    max_envelope_size_kb: int = 500
    idle_connection_timeout_s: float = 120.0
    handshake_timeout_s: float = 10.0
    #: Connections served at once; more are closed on accept (each one is a thread: a flood of
    #: unauthenticated clients must not exhaust the process).
    max_connections: int = 64
    #: From a request's first byte, its headers and body must have arrived within this (a client
    #: trickling bytes cannot hold a connection slot; the reply may take longer: Receive long-polls).
    request_deadline_s: float = 30.0
    work_dir: Path | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: True reproduces stdlib ``http.server``'s behaviour (Nagle on, headers and body written
    #: separately: a ~40 ms delayed-ACK stall per exchange); only the transport bench's baseline.
    nagle: bool = False

    def __post_init__(self) -> None:
        # A local Windows account name: at most 20 characters, none of the NTLM user file's ':'.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,19}", self.username):
            raise EmulationError(
                f"username {self.username[:40]!r} is not a valid local account name",
                hint="use 1-20 letters, digits, '.', '_' or '-'",
            )
        if not 0 <= self.port <= 65535:
            raise EmulationError(f"port {self.port} is out of range", hint="use 0 (any free port) to 65535")
        if self.max_connections < 1 or not self.request_deadline_s > 0:
            raise EmulationError("max_connections must be at least 1 and request_deadline_s positive")

    @property
    def max_request_bytes(self) -> int:
        # Room for an envelope of the advertised size plus encryption framing.
        return self.max_envelope_size_kb * 1024 + 65536


@dataclass(frozen=True)
class ServerStats:
    """A snapshot of request counts. ``requests`` is keyed by action short name (``Receive`` ...),
    with ``Invalid`` for envelopes that did not parse; ``http_requests`` counts every POST,
    authentication round trips included."""

    requests: Mapping[str, int]
    http_requests: int
    auth_rejections: int
    connections: int
    dropped_connections: int
    refused_connections: int = 0  # closed on accept: max_connections were being served
    timed_out_requests: int = 0  # closed: the request did not arrive within request_deadline_s

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def count(self, action: Action | str) -> int:
        key = action.short if isinstance(action, Action) else action
        return self.requests.get(key, 0)


class _Drop(Exception):
    """Reset the connection without replying (fault injection)."""


class _State:
    """Mutable counters and one-shot faults, guarded by one lock."""

    def __init__(self, faults: FaultConfig) -> None:
        self.lock = threading.Lock()
        self.faults = faults
        self.ops_since_faults = 0
        self.timeout_pending = faults.timeout_next_receive
        self.drop_receive_pending = faults.drop_mid_receive
        self.requests: Counter[str] = Counter()
        self.http_requests = 0
        self.auth_rejections = 0
        self.connections = 0
        self.dropped = 0
        self.refused = 0
        self.timed_out = 0

    def set_faults(self, faults: FaultConfig) -> None:
        with self.lock:
            self.faults = faults
            self.ops_since_faults = 0
            self.timeout_pending = faults.timeout_next_receive
            self.drop_receive_pending = faults.drop_mid_receive


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: EmulatedHostServer, address: tuple[str, int], ctx: ssl.SSLContext | None) -> None:
        self.app = app
        self.ssl_context = ctx
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(app.config.max_connections)
        self.deadlines: dict[socket.socket, float] = {}  # guarded by sockets_lock
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, at most ``max_connections``: one more is closed at once."""
        if not self.slots.acquire(blocking=False):
            with self.app._state.lock:
                self.app._state.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def service_actions(self) -> None:
        # Called by serve_forever every poll interval (0.2 s): the request-deadline watchdog.
        self.expire()

    def arm(self, sock: socket.socket) -> None:
        """The request now arriving on ``sock`` must be read within the request deadline."""
        with self.sockets_lock:
            self.deadlines[sock] = time.monotonic() + self.app.config.request_deadline_s

    def disarm(self, sock: socket.socket) -> None:
        with self.sockets_lock:
            self.deadlines.pop(sock, None)

    def expire(self) -> int:
        """Shut down the connections whose request is overdue; how many."""
        now = time.monotonic()
        with self.sockets_lock:
            late = [s for s, t in self.deadlines.items() if t <= now]
            for s in late:
                del self.deadlines[s]
        for s in late:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if late:
            with self.app._state.lock:
                self.app._state.timed_out += len(late)
        return len(late)

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        if self.ssl_context is not None:
            try:
                sock.settimeout(self.app.config.handshake_timeout_s)
                sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                sock.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                # A client that does not trust our CA aborts here; that is its correct behaviour.
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                with contextlib.suppress(OSError):
                    sock.close()
                return
        with self.sockets_lock:
            self.open_sockets.add(sock)
        try:
            _Handler(sock, client_address, self)
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def abort_connections(self) -> None:
        with self.sockets_lock:
            socks = list(self.open_sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's pending header lines (see ``_send``)
    server: _HTTPServer
    server_version = _SERVER_HEADER
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Idle keep-alive connections end after this, so a silent client cannot pin a thread.
        self.connection.settimeout(self.server.app.config.idle_connection_timeout_s)
        # Every reply is one write (see ``_send``); with Nagle on, a small reply written while the
        # client's delayed ACK of the previous one is pending would wait ~40 ms for it.
        if not self.server.app.config.nagle:
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auth = self.server.app._new_connection_auth()

    def handle_one_request(self) -> None:
        # Waiting for a request's first byte is idleness (idle_connection_timeout_s); from that byte
        # on, the request line, headers and body must all arrive within request_deadline_s.
        try:
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # makefile("rb", -1): a BufferedReader
                self.close_connection = True
                return
        except (OSError, ValueError):  # idle timeout, reset, or shut down by the watchdog
            self.close_connection = True
            return
        self.server.arm(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.disarm(self.connection)

    def version_string(self) -> str:
        return _SERVER_HEADER

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only; bodies and Authorization headers are never logged.
        log.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        self._reply(405, b"", extra={"Allow": "POST"})

    def do_POST(self) -> None:
        app = self.server.app
        state = app._state
        with state.lock:
            state.http_requests += 1
        body = self._read_body()
        self.server.disarm(self.connection)  # the request is in; serving it may long-poll
        if body is None:
            return
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self._reply(404, b"")
            return

        step_token: tuple[AuthScheme, bytes] | None = None
        authorization = self.headers.get("Authorization")
        if authorization:
            result = self.auth.step(authorization)
            if result.outcome is StepOutcome.REJECTED:
                with state.lock:
                    state.auth_rejections += 1
                log.debug("authentication rejected from %s: %s", self.client_address[0], result.reason)
                self._challenge()
                return
            if result.outcome is StepOutcome.CONTINUE:
                assert result.scheme is not None
                self._challenge((result.scheme, result.out_token or b""))
                return
            if result.out_token and result.scheme is not None:
                step_token = (result.scheme, result.out_token)
        elif not self.auth.authenticated:
            self._challenge()
            return

        extra: dict[str, str] = {}
        if step_token is not None:
            extra["WWW-Authenticate"] = f"{step_token[0].value} {base64.b64encode(step_token[1]).decode()}"
        if not body:
            # The empty POST pypsrp sends to set up message encryption.
            self._reply(200, b"", extra=extra)
            return

        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        if encrypted:
            try:
                plain = self.auth.unseal(body, content_type)
            except MessageFramingError as exc:
                self._reply(400, str(exc).encode(), content_type="text/plain; charset=utf-8", extra=extra)
                return
        elif not app.tls and not app.config.allow_unencrypted:
            fault = WsmanFault(FaultKind.ACCESS_DENIED, "Unencrypted traffic is disabled on this listener.")
            self._reply(401, fault_envelope(fault, peek_message_id(body), machine=app.machine), extra=extra)
            return
        else:
            plain = body

        user = self.auth.user or app.username
        try:
            status, reply = app._process(plain, user=user, client_ip=self.client_address[0])
        except _Drop:
            with state.lock:
                state.dropped += 1
            self._reset_connection()
            return
        if encrypted:
            self._reply(status, self.auth.seal(reply), content_type=ENCRYPTED_CONTENT_TYPE, extra=extra)
        else:
            self._reply(status, reply, extra=extra)

    # -- helpers ----------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            self._reply(411, b"Content-Length required", content_type="text/plain")
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > self.server.app.config.max_request_bytes:
            self.close_connection = True
            self._reply(413 if length > 0 else 400, b"bad Content-Length", content_type="text/plain")
            return None
        return self.rfile.read(length) if length else b""

    def _challenge(self, token: tuple[AuthScheme, bytes] | None = None) -> None:
        if token is not None:
            offers = [f"{token[0].value} {base64.b64encode(token[1]).decode()}".rstrip()]
        else:
            offers = [AuthScheme.NEGOTIATE.value, AuthScheme.NTLM.value]
            if self.server.app.basic_enabled:
                offers.append('Basic realm="WSMAN"')
        self.send_response(401)
        for offer in offers:
            self.send_header("WWW-Authenticate", offer)
        self.send_header(EMULATED_HEADER, "true")
        self.send_header("Content-Length", "0")
        self._send(b"")

    def _reply(
        self,
        status: int,
        payload: bytes,
        *,
        content_type: str = SOAP_CONTENT_TYPE,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(EMULATED_HEADER, "true")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self._send(payload)

    def _send(self, payload: bytes) -> None:
        """End the headers and write them with ``payload`` in one ``write`` (one TLS record, one
        TCP segment train): headers and body in two writes cost a delayed-ACK round trip each."""
        if self.server.app.config.nagle:
            self.end_headers()
            if payload:
                self.wfile.write(payload)
            return
        self._headers_buffer.append(b"\r\n")
        data = b"".join(self._headers_buffer) + payload
        self._headers_buffer = []
        self.wfile.write(data)

    def _reset_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            # SO_LINGER 0 makes close() send a RST: the client sees the connection dropped.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()


class EmulatedHostServer:
    """WinRM (WS-Man/WinRS) listener of one emulated host on 127.0.0.1.

    Use as a context manager or with :meth:`start`/:meth:`stop`. After start: :attr:`url`,
    :attr:`port`, :attr:`ca_cert_path` (``None`` in HTTP mode), :attr:`username`, :attr:`password`
    (random per start). Raises :class:`EmulationError` when it cannot bind or write its files.
    """

    def __init__(self, host: WinRSHost, *, config: ServerConfig | None = None) -> None:
        self.host = host
        self.config = config or ServerConfig()
        self._state = _State(self.config.faults)
        self._stopping = threading.Event()
        self._service: WinRSService | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self._tls: TlsMaterial | None = None
        self._user_file: NtlmUserFile | None = None
        self._credentials: Credentials | None = None
        settings = getattr(host, "settings", None)
        self.machine: str = str(getattr(settings, "hostname", "") or "localhost")
        self._domain: str = str(getattr(settings, "domain", "") or "")

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> EmulatedHostServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> EmulatedHostServer:
        """Generate credentials and TLS material, bind 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            raise EmulationError("the emulated WinRM listener is already running")
        self._stopping.clear()
        try:
            if self.config.work_dir is not None:
                self.config.work_dir.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix="atomiclab-winrm-", dir=self.config.work_dir))
        except OSError as exc:
            raise EmulationError(f"cannot create the emulated host's work directory: {exc}") from exc
        try:
            # token_urlsafe never yields ':' or newlines, which the NTLM user file cannot hold.
            self._credentials = Credentials(self.config.username, "Al-" + secrets.token_urlsafe(24))
            self._user_file = NtlmUserFile(
                self._tmp / "ntlm-users", self._credentials, domains=(self.machine, self._domain)
            )
            ctx = None
            if self.config.use_tls:
                self._tls = generate_tls_material(self._tmp / "tls")
                ctx = self._tls.server_context()
            self._service = WinRSService(
                self.host,
                stopping=self._stopping,
                max_operation_timeout_s=self.config.max_operation_timeout_s,
                max_envelope_size_kb=self.config.max_envelope_size_kb,
            )
            try:
                self._httpd = _HTTPServer(self, ("127.0.0.1", self.config.port), ctx)
            except OSError as exc:
                raise EmulationError(
                    f"cannot listen on 127.0.0.1:{self.config.port}: {exc.strerror or exc}",
                    hint="choose another --port or stop the process using it",
                ) from exc
        except BaseException:
            self._cleanup_files()
            raise
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="atomiclab-winrm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end long polls, close shells, drop connections and delete the temp files."""
        httpd, self._httpd = self._httpd, None
        self._stopping.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.abort_connections()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._service is not None:
            self._service.close_all()
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._user_file is not None:
            self._user_file.remove()
            self._user_file = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._tls = None

    # -- what clients need ------------------------------------------------------------------

    def _require_running(self) -> _HTTPServer:
        if self._httpd is None:
            raise EmulationError("the emulated WinRM listener is not running", hint="call start() first")
        return self._httpd

    @property
    def tls(self) -> bool:
        return self.config.use_tls

    @property
    def basic_enabled(self) -> bool:
        return self.config.allow_basic and self.config.use_tls

    @property
    def port(self) -> int:
        return int(self._require_running().server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/wsman"

    @property
    def ca_cert_path(self) -> Path | None:
        self._require_running()
        return self._tls.ca_cert_path if self._tls is not None else None

    @property
    def username(self) -> str:
        return self.config.username

    @property
    def password(self) -> str:
        self._require_running()
        assert self._credentials is not None
        return self._credentials.password

    def credentials_env(self) -> dict[str, str]:
        """Environment variables the harness reads to reach this host (the password included)."""
        env = {URL_ENV: self.url, USERNAME_ENV: self.username, PASSWORD_ENV: self.password}
        if self.ca_cert_path is not None:
            env[CA_ENV] = str(self.ca_cert_path)
        return env

    # -- faults and stats -------------------------------------------------------------------

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the injected faults; request counting for ``drop_on_request`` restarts."""
        self._state.set_faults(faults)

    @property
    def stats(self) -> ServerStats:
        s = self._state
        with s.lock:
            return ServerStats(
                requests=MappingProxyType(dict(s.requests)),
                http_requests=s.http_requests,
                auth_rejections=s.auth_rejections,
                connections=s.connections,
                dropped_connections=s.dropped,
                refused_connections=s.refused,
                timed_out_requests=s.timed_out,
            )

    def reset_stats(self) -> None:
        s = self._state
        with s.lock:
            s.requests.clear()
            s.http_requests = s.auth_rejections = s.connections = s.dropped = s.refused = s.timed_out = 0

    # -- request processing (called from connection threads) --------------------------------

    def _new_connection_auth(self) -> ConnectionAuth:
        with self._state.lock:
            self._state.connections += 1
        assert self._user_file is not None and self._credentials is not None
        return ConnectionAuth(
            user_file=self._user_file,
            credentials=self._credentials,
            channel_bindings=tls_channel_bindings(self._tls.cert_der) if self._tls is not None else None,
            allow_basic=self.basic_enabled,
        )

    def _process(self, data: bytes, *, user: str, client_ip: str) -> tuple[int, bytes]:
        """Run one SOAP request: (HTTP status, reply envelope). Raises ``_Drop`` to reset."""
        service = self._service
        assert service is not None
        try:
            req = parse_request(data)
        except WsmanFault as fault:
            with self._state.lock:
                self._state.requests["Invalid"] += 1
            return 500, fault_envelope(fault, peek_message_id(data), machine=self.machine)
        try:
            action = req.known_action()
        except WsmanFault as fault:
            with self._state.lock:
                self._state.requests["Unsupported"] += 1
            return 500, fault_envelope(fault, req.message_id, machine=self.machine)

        s = self._state
        with s.lock:
            s.requests[action.short] += 1
            s.ops_since_faults += 1
            faults = s.faults
            drop_now = faults.drop_on_request is not None and s.ops_since_faults == faults.drop_on_request
            force_timeout = drop_receive = False
            if action is Action.RECEIVE and not drop_now:
                force_timeout, s.timeout_pending = s.timeout_pending, False
                if not force_timeout:
                    drop_receive, s.drop_receive_pending = s.drop_receive_pending, False
        if drop_now:
            raise _Drop
        if action in faults.http_500_actions:
            injected = WsmanFault(FaultKind.INTERNAL_ERROR, f"atomiclab injected fault for {action.short}.")
            return 500, fault_envelope(injected, req.message_id, machine=self.machine)
        try:
            if action is Action.RECEIVE and faults.receive_delay_s > 0:
                self._stopping.wait(faults.receive_delay_s)
            if drop_receive:
                service.wait_for_output(req, self._effective_timeout(req))
                raise _Drop
            return 200, service.handle(req, user=user, client_ip=client_ip, force_timeout=force_timeout)
        except WsmanFault as fault:
            return 500, fault_envelope(fault, req.message_id, machine=self.machine)
        except _Drop:
            raise
        except Exception as exc:
            # A bug in the host model must reach the client as a fault, not as a dropped connection.
            log.exception("the emulated host failed serving %s", action.short)
            failure = WsmanFault(FaultKind.INTERNAL_ERROR, f"The emulated host failed: {type(exc).__name__}.")
            return 500, fault_envelope(failure, req.message_id, machine=self.machine)

    def _effective_timeout(self, req: Request) -> float:
        requested = req.operation_timeout_s if req.operation_timeout_s is not None else 60.0
        return max(0.0, min(requested, self.config.max_operation_timeout_s))


__all__ = [
    "CA_ENV",
    "EMULATED_HEADER",
    "PASSWORD_ENV",
    "URL_ENV",
    "USERNAME_ENV",
    "EmulatedHostServer",
    "FaultConfig",
    "ServerConfig",
    "ServerStats",
]
