"""The T1046 rule files: upstream verbatim (and refused), corrected and tuned on atomics and benign runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from harness.detect.sumo.detector import SumoDetector
from harness.errors import RuleSyntaxError
from harness.telemetry.event import SECURITY, SYSMON, Event

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / ".." / "shared" / "seed" / "000_3acc6c7c3b4764c9.txt"
RULES = ROOT / "detections" / "sumo"
UPSTREAM = RULES / "upstream" / "t1046_network_service_discovery.sumo"
CORRECTED = RULES / "t1046_network_service_discovery.sumo"
TUNED = RULES / "t1046_network_service_discovery_tuned.sumo"
PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
CMD = r"C:\Windows\System32\cmd.exe"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def proc(image: str, cmdline: str, n: int = 0, parent: str = r"C:\Windows\System32\wsmprovhost.exe",
         user: str = r"LAB\analyst") -> Event:
    return Event(channel=SYSMON, provider="Microsoft-Windows-Sysmon", event_id=1, time=T0 + timedelta(seconds=n),
                 computer="WIN10", fields={"Image": image, "CommandLine": cmdline, "User": user,
                                           "ParentImage": parent})


def atomic_processes() -> dict[str, list[Event]]:
    """Each T1046 atomic as Invoke-AtomicRedTeam launches it (defaults substituted), plus the child."""
    doc = yaml.safe_load((ROOT / "atomics" / "T1046" / "T1046.yaml").read_text(encoding="utf-8"))
    out: dict[str, list[Event]] = {}
    for test in doc["atomic_tests"]:
        command = test["executor"]["command"].strip()
        for name, arg in test.get("input_arguments", {}).items():
            command = command.replace("#{" + name + "}", str(arg["default"]))
        if test["executor"]["name"] == "powershell":
            shell = proc(PS, f'"powershell.exe" & {{{command}}}')
        else:
            shell = proc(CMD, f'"cmd.exe" /c {command}')
        events = [shell]
        args = test.get("input_arguments", {})
        if "nmap_path" in args:
            events.append(proc(args["nmap_path"]["default"], f'"{args["nmap_path"]["default"]}" -sV -p '
                               f'{args["ports"]["default"]} -oN out.txt 127.0.0.1', 1, PS))
        if "nbtscan_path" in args:
            exe = args["nbtscan_path"]["default"]
            events.append(proc(exe, f"{exe} {args['range']['default']}", 1, CMD))
        out[test["name"]] = events
    return out


BENIGN = {
    "one Test-NetConnection to one port": [proc(PS, '"powershell.exe" & {Test-NetConnection -ComputerName '
                                                    'google.com -Port 443}')],
    "netstat -an from cmd": [proc(CMD, '"cmd.exe" /c netstat -an'),
                             proc(r"C:\Windows\System32\NETSTAT.EXE", "netstat  -an", 1, CMD)],
    "arp -a from cmd": [proc(CMD, '"cmd.exe" /c arp -a'), proc(r"C:\Windows\System32\ARP.EXE", "arp  -a", 1, CMD)],
    "route print from cmd": [proc(CMD, '"cmd.exe" /c route print'),
                             proc(r"C:\Windows\System32\ROUTE.EXE", "route  print", 1, CMD)],
    "git log --stat": [proc(r"C:\Program Files\Git\cmd\git.exe", "git log --stat", parent=CMD)],
    "svchost netsvcs": [proc(r"C:\Windows\System32\svchost.exe",
                             r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
                             parent=r"C:\Windows\System32\services.exe", user=r"NT AUTHORITY\SYSTEM")],
}


def test_upstream_file_is_the_cards_query_byte_for_byte() -> None:
    if not SEED.exists():
        pytest.skip(f"detection card not available at {SEED}")
    card = SEED.read_text(encoding="utf-8")
    start = card.index("\nsql\n") + len("\nsql\n")
    end = card.index("high severity high confidence")
    assert UPSTREAM.read_bytes() == card[start:end].encode("utf-8")


def test_upstream_query_does_not_parse_because_of_eval() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        SumoDetector(UPSTREAM)
    assert (info.value.line, info.value.column) == (6, 3)
    assert "'eval' is not a Sumo Logic operator" in str(info.value)


@pytest.mark.parametrize("rule", [CORRECTED, TUNED], ids=["corrected", "tuned"])
def test_rules_fire_on_every_t1046_atomic(rule: Path) -> None:
    det = SumoDetector(rule)
    expected = {
        "Nmap service scan of the local host": "KnownScanningTool",
        "PowerShell TCP port scan through a .NET TcpClient Connect loop": "NativeToolScanning",
        "PowerShell host sweep with Test-NetConnection": "NativeToolScanning",
        "NetBIOS discovery with nbtscan": "KnownScanningTool",
        "Listening services with netstat piped to findstr": "NativeToolScanning",
    }
    atomics = atomic_processes()
    assert set(atomics) == set(expected)
    for name, events in atomics.items():
        result = det.evaluate(events)
        types = {r["detection_type"] for r in result.rows}
        assert expected[name] in types, f"{rule.name} silent on {name!r}: {result.rows}"
        row = next(r for r in result.rows if r["detection_type"] == expected[name])
        assert int(str(row["suspicion_score"])) >= 1
        assert row["_sourceHost"] == "WIN10" and row["user"] == r"LAB\analyst"


def test_tcpclient_loop_row_keeps_the_multiline_command_line() -> None:
    events = atomic_processes()["PowerShell TCP port scan through a .NET TcpClient Connect loop"]
    assert "\n" in str(events[0].fields["CommandLine"])
    (row,) = SumoDetector(TUNED).evaluate(events).rows
    assert row["cmdline"] == events[0].fields["CommandLine"]
    assert (row["native_scan"], row["suspicion_score"], row["image_path"]) == (1, 1, PS)


@pytest.mark.parametrize("case", sorted(BENIGN))
def test_tuned_rule_is_silent_on_benign_look_alikes(case: str) -> None:
    assert SumoDetector(TUNED).evaluate(BENIGN[case]).rows == ()


def test_corrected_rule_keeps_the_published_false_positives() -> None:
    det = SumoDetector(CORRECTED)
    fired = {case for case, events in BENIGN.items() if det.evaluate(events).rows}
    assert fired == set(BENIGN)  # every benign look-alike fires the published logic
    (svchost,) = det.evaluate(BENIGN["svchost netsvcs"]).rows
    assert (svchost["detection_type"], svchost["port_range"]) == ("PortScanPattern", 1)


def test_tuned_rule_fires_on_an_authorized_scanner_launching_nmap_declared_fp() -> None:
    events = [proc(r"C:\Program Files\Tenable\Nessus\nmap.exe", "nmap.exe -sS -p 1-1024 10.0.0.0/24",
                   parent=r"C:\Program Files\Tenable\Nessus\nessusd.exe", user=r"NT AUTHORITY\SYSTEM")]
    (row,) = SumoDetector(TUNED).evaluate(events).rows
    assert row["detection_type"] == "KnownScanningTool" and row["suspicion_score"] == 3


def test_security_4688_fields_feed_the_same_outputs_and_machine_accounts_are_dropped() -> None:
    def p4688(user: str) -> Event:
        return Event(channel=SECURITY, provider="Microsoft-Windows-Security-Auditing", event_id=4688, time=T0,
                     computer="WIN10", fields={"NewProcessName": r"C:\Tools\nmap.exe", "SubjectUserName": user,
                                               "CommandLine": "nmap -sV 10.0.0.1", "ParentProcessName": CMD})

    for rule in (CORRECTED, TUNED):
        (row,) = SumoDetector(rule).evaluate([p4688("alice"), p4688("WIN10$")]).rows
        assert (row["user"], row["image_path"], row["parent_image"]) == ("alice", r"C:\Tools\nmap.exe", CMD)
        assert row["detection_type"] == "KnownScanningTool"
