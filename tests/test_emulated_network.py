"""The emulated host's network model (harness/emulated/network.py) against documented behaviour and
the public recordings: Sysmon 3 only for established TCP, both ends of a local connection (the
accepting side with Initiated=false and its own endpoint as Source, as the powercat recording shows),
UDP sends, the stock listening ports, port names as the recordings show them, and the seeded delays
(a refused connect ~2 s, Microsoft KB 175523; Sysmon 3 written 1.6-5.7 s after UtcTime)."""

from __future__ import annotations

import re
import time
from datetime import datetime

from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming, TimingModel, stock_listeners
from harness.telemetry.event import SYSMON

MARK = " #atomiclab_run_" + "d" * 32


def _sysmon3(host: EmulatedHost) -> list[dict[str, str]]:
    out = []
    for x in host.eventlog.query(SYSMON, xpath="*[System[EventID=3]]"):
        d = dict(re.findall(r"<Data Name='(\w+)'>([^<]*)<", x))
        d["_SystemTime"] = re.search(r"SystemTime='([^']+)'", x).group(1)  # type: ignore[union-attr]
        d["_rid"] = re.search(r"<EventRecordID>(\d+)<", x).group(1)  # type: ignore[union-attr]
        out.append(d)
    return out


def _instant_host(**kw: object) -> tuple[EmulatedHost, list[float]]:
    slept: list[float] = []
    host = EmulatedHost(
        HostSettings(network_timing=NetworkTiming(refused_connect_s=(2.0, 2.0), sysmon3_delivery_s=(0.0, 0.0)), **kw),  # type: ignore[arg-type]
        sleep=slept.append,
    )
    return host, slept


def _tcp(host: EmulatedHost, port: int) -> str:
    script = (f"$t = New-Object Net.Sockets.TcpClient; try {{ $t.Connect(\\\"\"127.0.0.1\\\"\", {port}); 'open' }} "
              "catch { 'closed' }")
    res = host.execute('"powershell.exe" & {' + script + "}" + MARK)
    assert res.exit_code == 0, res.stderr
    return res.stdout.strip()


def test_established_loopback_logs_both_ends_and_refused_logs_nothing() -> None:
    host, slept = _instant_host()
    assert _tcp(host, 445) == "open"
    client, server = sorted(_sysmon3(host), key=lambda d: d["Initiated"], reverse=True)
    assert client["Initiated"] == "true" and client["Image"].endswith("\\powershell.exe")
    assert (client["SourceIp"], client["DestinationIp"], client["DestinationPort"]) == ("127.0.0.1", "127.0.0.1", "445")
    assert client["DestinationPortName"] == "microsoft-ds" and client["SourcePortName"] == "-"
    # The accepting side (System owns 445): its own endpoint is the Source, the client the Destination.
    assert server["Initiated"] == "false" and server["Image"] == "System" and server["User"] == "NT AUTHORITY\\SYSTEM"
    assert (server["SourcePort"], server["DestinationPort"]) == ("445", client["SourcePort"])
    assert server["SourcePortName"] == "microsoft-ds"
    assert slept == []
    before = len(_sysmon3(host))
    assert _tcp(host, 80) == "closed"
    assert len(_sysmon3(host)) == before  # refused: no Sysmon 3
    assert slept == [2.0]  # ...and the caller waited out Winsock's SYN retries


def test_stock_listeners_and_lab_state() -> None:
    specs = {(s.protocol, s.port): s for s in stock_listeners(sshd=True)}
    assert specs[("TCP", 135)].owner == "rpcss" and specs[("TCP", 445)].owner == "system"
    assert specs[("TCP", 22)].owner == "sshd" and specs[("TCP", 139)].address == "host"
    assert ("TCP", 80) not in specs and ("TCP", 22) not in {(s.protocol, s.port) for s in stock_listeners(sshd=False)}
    host, _ = _instant_host(sshd=False)
    assert _tcp(host, 22) == "closed" and _sysmon3(host) == []
    lab, _ = _instant_host()
    assert _tcp(lab, 22) == "open"
    assert {d["Image"] for d in _sysmon3(lab) if d["Initiated"] == "false"} == {"C:\\Windows\\System32\\OpenSSH\\sshd.exe"}


def test_udp_is_logged_as_sysmon_logs_it() -> None:
    host, slept = _instant_host()
    res = host.execute('"cmd.exe" /c "C:\\AtomicRedTeam\\ExternalPayloads\\nbtscan.exe" 127.0.0.1-2 & rem' + MARK[2:])
    assert res.exit_code == 0, res.stderr
    udp = _sysmon3(host)
    assert [(d["Protocol"], d["Initiated"], d["DestinationPort"], d["DestinationPortName"]) for d in udp] == [
        ("udp", "true", "137", "netbios-ns")
    ] * 2
    assert slept == []  # a datagram is sent, never refused


def test_sysmon3_is_written_after_its_utctime_in_write_order() -> None:
    host = EmulatedHost(HostSettings(network_timing=NetworkTiming(refused_connect_s=(0, 0), sysmon3_delivery_s=(0.4, 0.4))))
    assert _tcp(host, 135) == "open"
    assert _sysmon3(host) == []  # not yet written
    creates = host.eventlog.last_record_id(SYSMON)
    time.sleep(0.5)
    events = _sysmon3(host)
    assert len(events) == 2
    for d in events:
        written = datetime.fromisoformat(d["_SystemTime"].replace("Z", "+00:00")[:26] + "+00:00")
        utc = datetime.fromisoformat(d["UtcTime"] + "+00:00")
        assert 0.35 <= (written - utc).total_seconds() <= 0.5
        assert int(d["_rid"]) > creates  # record ids in write order: a bookmark never skips them


def test_timing_model_is_seeded_and_in_range() -> None:
    a, b = TimingModel(NetworkTiming(seed=7)), TimingModel(NetworkTiming(seed=7))
    draws = [a.sysmon3_delay() for _ in range(50)]
    assert draws == [b.sysmon3_delay() for _ in range(50)]
    assert all(1.6 <= d <= 5.7 for d in draws)
    assert all(1.9 <= a.refused_connect() <= 2.2 for _ in range(20))
    assert TimingModel(NetworkTiming.instant()).refused_connect() == 0.0
