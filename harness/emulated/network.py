"""The emulated host's network model: listening sockets, what a connection attempt does, and timing.

Contract:
- ``stock_listeners(...)`` is the listening-socket table of a stock Windows Server 2022 lab host
  (``netstat -ano`` on such a host): 135 RpcSs svchost, 445/139/5985/5986/47001 System (139 and
  NetBIOS UDP 137/138 only on the host's own address), 3389 TCP+UDP TermService svchost, 22 sshd
  when the lab's OpenSSH step installed it (lab/provision/configure-openssh.ps1), plus UDP 123
  (w32time), 5353/5355 (Dnscache). ``HostSettings.sshd`` / ``extra_tcp_ports`` change it per lab state.
- ``outcome(protocol, local, listener)``: TCP to a listening socket is *established*; TCP to a local
  address where nothing listens is *refused* (RST), to any other address *unanswered*; UDP is
  *sent* either way (connectionless).
- Sysmon 3 follows that outcome (``EmulatedHost.connect``): one event with ``Initiated=true`` per
  established TCP connection and per UDP flow; refused and unanswered TCP attempts log nothing;
  an established loopback/local connection also logs the accepting side: the listening process,
  ``Initiated=false``, with its own endpoint as Source and the client's as Destination.
- ``TimingModel`` draws the delays from a seeded RNG: a refused connect blocks the caller about
  2 s (Winsock retries the SYN after each RST, Microsoft KB 175523 "Winsock TCP Connection
  Performance to Unused Ports"; measured ~2 s on current Windows, D. Stenberg, "slow TCP connect on
  Windows", 2024), and each Sysmon 3 event reaches the log 1.6-5.7 s after its UtcTime (SystemTime
  minus UtcTime of the Sysmon 3 events in shared/telemetry/public: UserHunter 1.8-2.1 s, powercat
  1.7 s; issue 14 records the 1.6-5.7 s range). ``NetworkTiming.instant()`` is for tests.
- ``PORT_NAMES``: Sysmon's ``*PortName`` values, from the Windows ``services`` file as the recordings
  show them (``445`` -> ``microsoft-ds``, ``389`` -> ``ldap``); ``-`` for ports it does not name.
"""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass

#: The wildcard address listeners bind to (a value in tables, not a socket we bind).
ANY_ADDR = "0.0.0.0"  # noqa: S104

#: Well-known port names as in %SystemRoot%\System32\drivers\etc\services (Sysmon's *PortName).
PORT_NAMES: dict[tuple[str, int], str] = {
    ("tcp", 21): "ftp", ("tcp", 22): "ssh", ("tcp", 23): "telnet", ("tcp", 25): "smtp", ("udp", 53): "domain",
    ("tcp", 53): "domain", ("tcp", 80): "http", ("tcp", 88): "kerberos", ("udp", 123): "ntp",
    ("tcp", 135): "epmap", ("udp", 137): "netbios-ns", ("udp", 138): "netbios-dgm", ("tcp", 139): "netbios-ssn",
    ("tcp", 389): "ldap", ("tcp", 443): "https", ("tcp", 445): "microsoft-ds", ("tcp", 636): "ldaps",
    ("tcp", 1433): "ms-sql-s", ("tcp", 3389): "ms-wbt-server", ("udp", 3389): "ms-wbt-server",
}  # fmt: skip


def port_name(protocol: str, port: int) -> str:
    return PORT_NAMES.get((protocol.lower(), port), "-")


class Outcome(enum.Enum):
    ESTABLISHED = "established"
    REFUSED = "refused"
    UNANSWERED = "unanswered"
    SENT = "sent"  # UDP: connectionless


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """A stock listening socket: protocol, bound address ("host" = the host's IPv4), port, owner."""

    protocol: str
    address: str
    port: int
    owner: str  # "system" | "rpcss" | "termservice" | "sshd" | "w32time" | "dnscache"


def stock_listeners(*, sshd: bool, extra_tcp_ports: frozenset[int] = frozenset()) -> list[ListenerSpec]:
    """The listening sockets of a stock Windows Server 2022 lab host (see the module docstring)."""
    specs = [
        ListenerSpec("TCP", ANY_ADDR, 135, "rpcss"),
        ListenerSpec("TCP", ANY_ADDR, 445, "system"),
        ListenerSpec("TCP", "host", 139, "system"),
        ListenerSpec("TCP", ANY_ADDR, 3389, "termservice"),
        ListenerSpec("TCP", ANY_ADDR, 5985, "system"),
        ListenerSpec("TCP", ANY_ADDR, 5986, "system"),
        ListenerSpec("TCP", ANY_ADDR, 47001, "system"),
        ListenerSpec("UDP", ANY_ADDR, 123, "w32time"),
        ListenerSpec("UDP", "host", 137, "system"),
        ListenerSpec("UDP", "host", 138, "system"),
        ListenerSpec("UDP", ANY_ADDR, 3389, "termservice"),
        ListenerSpec("UDP", ANY_ADDR, 5353, "dnscache"),
        ListenerSpec("UDP", ANY_ADDR, 5355, "dnscache"),
    ]
    if sshd:
        specs.append(ListenerSpec("TCP", ANY_ADDR, 22, "sshd"))
    specs += [ListenerSpec("TCP", ANY_ADDR, p, "system") for p in sorted(extra_tcp_ports)]
    return specs


def outcome(protocol: str, *, local: bool, listening: bool) -> Outcome:
    """What one connection attempt does (see the module docstring)."""
    if protocol.lower() == "udp":
        return Outcome.SENT
    if listening:
        return Outcome.ESTABLISHED
    return Outcome.REFUSED if local else Outcome.UNANSWERED


@dataclass(frozen=True, slots=True)
class NetworkTiming:
    """Delay ranges (seconds, uniform) and the seed of the timing model."""

    refused_connect_s: tuple[float, float] = (1.9, 2.2)
    sysmon3_delivery_s: tuple[float, float] = (1.6, 5.7)
    seed: int = 14

    @classmethod
    def instant(cls) -> NetworkTiming:
        """No delays (unit tests that do not test timing)."""
        return cls((0.0, 0.0), (0.0, 0.0))


class TimingModel:
    """Draws the network delays from a seeded RNG (thread-safe)."""

    def __init__(self, timing: NetworkTiming) -> None:
        self.timing = timing
        self._rng = random.Random(timing.seed)
        self._lock = threading.Lock()

    def _draw(self, bounds: tuple[float, float]) -> float:
        lo, hi = bounds
        if hi <= 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(lo, hi)

    def refused_connect(self) -> float:
        return self._draw(self.timing.refused_connect_s)

    def sysmon3_delay(self) -> float:
        return self._draw(self.timing.sysmon3_delivery_s)


__all__ = [
    "ANY_ADDR",
    "ListenerSpec",
    "NetworkTiming",
    "Outcome",
    "TimingModel",
    "outcome",
    "port_name",
    "stock_listeners",
]
