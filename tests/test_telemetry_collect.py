"""WevtutilSource over a fake Transport serving canned wevtutil output built from real events."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.errors import TelemetryError
from harness.model import CommandResult, utcnow
from harness.telemetry.collect import ChannelStatus, TelemetrySource, WevtutilSource
from harness.telemetry.event import Event
from harness.telemetry.readers import read_events

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
T1046_10 = PUBLIC / "atomic-evtx/attacks_by_category_unfiltered/discovery/Port-Scanning -24 Subnet with PowerShell"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
NOT_FOUND = "Failed to read events. The specified channel could not be found.\r\n"


def _xml(event: Event) -> str:
    """The event as wevtutil /f:xml prints it (the raw XML evtx rendered, compacted, single quotes)."""
    from lxml import etree

    assert event.raw is not None
    element = etree.fromstring(event.raw.encode(), etree.XMLParser(remove_blank_text=True))
    text = etree.tostring(element, encoding="unicode")
    # quote attributes with ' inside tags only (lxml escapes " in values, so tags hold no literal ")
    return re.sub(r"<[^>]+>", lambda m: m.group(0).replace('"', "'"), text)


def _xml_events(path: Path) -> list[tuple[int, str]]:
    import evtx

    from harness.telemetry.readers import parse_event_xml

    out = []
    for record in evtx.PyEvtxParser(str(path)).records():
        [event] = list(parse_event_xml(record["data"]))
        out.append((event.record_id or 0, _xml(event)))
    return out


@dataclass
class FakeWindowsHost:
    """Answers wevtutil qe like a Windows host does, from per-channel event XML lists."""

    logs: dict[str, list[tuple[int, str]]]
    host: str = "win10-lab"
    commands: list[str] = field(default_factory=list)

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        self.commands.append(command_line)
        m = re.fullmatch(r'wevtutil qe "([^"]+)" (.*)', command_line)
        assert m, command_line
        channel, args = m.groups()
        started = utcnow()
        if channel not in self.logs:
            return CommandResult(command_line, 15007, "", NOT_FOUND, started, utcnow())
        records = self.logs[channel]
        if "/rd:true" in args:
            chosen = sorted(records, reverse=True)[: int(re.search(r"/c:(\d+)", args).group(1))]  # type: ignore[union-attr]
            body = "".join(x for _, x in chosen)
        else:
            after = int(re.search(r"EventRecordID>(\d+)", args).group(1))  # type: ignore[union-attr]
            count = int(re.search(r"/c:(\d+)", args).group(1))  # type: ignore[union-attr]
            chosen = [r for r in sorted(records) if r[0] > after][:count]
            body = "<Events>" + "".join(x for _, x in chosen) + "</Events>" if chosen else ""
        return CommandResult(command_line, 0, body + ("\r\n" if body else ""), "", started, utcnow())

    def put_file(self, local: Path, remote: str) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def sysmon_log() -> list[tuple[int, str]]:
    path = T1046_10 / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx"
    if not path.is_file():
        pytest.skip(f"recording {path} absent")
    return _xml_events(path)


def test_bookmark_then_collect_pages_until_short(sysmon_log: list[tuple[int, str]]) -> None:
    before, after = sysmon_log[:30], sysmon_log[30:]
    host = FakeWindowsHost({SYSMON: list(before), "Windows PowerShell": []})
    source = WevtutilSource(host, [SYSMON, "Windows PowerShell", "Microsoft-Windows-PowerShell/Operational"], page_size=10)
    assert isinstance(source, TelemetrySource)
    mark = source.bookmark()
    assert mark.record_ids[SYSMON] == max(r for r, _ in before)
    assert mark.status == {SYSMON: ChannelStatus.OK, "Windows PowerShell": ChannelStatus.EMPTY,
                           "Microsoft-Windows-PowerShell/Operational": ChannelStatus.MISSING}  # fmt: skip
    assert mark.missing == ("Microsoft-Windows-PowerShell/Operational",)
    assert host.commands[0] == f'wevtutil qe "{SYSMON}" /c:1 /rd:true /f:xml'

    host.logs[SYSMON].extend(after)  # the test ran
    host.commands.clear()
    collected = source.collect(mark)
    expected = [r for r, _ in after]
    assert [e.record_id for e in collected.events] == expected
    assert collected.counts[SYSMON] == len(after) and collected.status[SYSMON] is ChannelStatus.OK
    assert collected.status["Microsoft-Windows-PowerShell/Operational"] is ChannelStatus.MISSING
    sysmon_cmds = [c for c in host.commands if SYSMON in c]
    assert len(sysmon_cmds) == len(after) // 10 + 1
    assert sysmon_cmds[0] == (
        f'wevtutil qe "{SYSMON}" /q:"*[System[EventRecordID>{mark.record_ids[SYSMON]}]]" /f:xml /e:Events /c:10'
    )
    assert all(e.origin == f"win10-lab:{SYSMON}" for e in collected.events)
    assert source.events_after(mark) == list(collected.events)


def test_collected_events_equal_the_evtx_events(sysmon_log: list[tuple[int, str]]) -> None:
    host = FakeWindowsHost({SYSMON: []})
    source = WevtutilSource(host, [SYSMON], page_size=500)
    mark = source.bookmark()
    assert mark.record_ids[SYSMON] == 0 and mark.status[SYSMON] is ChannelStatus.EMPTY
    host.logs[SYSMON] = sysmon_log
    got = source.events_after(mark)
    from_file = list(read_events(T1046_10 / "T1046-10_Microsoft-Windows-Sysmon_Operational.evtx"))
    assert got == from_file  # same normalized events from live XML and from the EVTX file


def test_hostile_output_is_a_telemetry_error_naming_the_host() -> None:
    evil = '<!DOCTYPE x [<!ENTITY a "aaaa">]><Events><Event/></Events>'

    class Evil(FakeWindowsHost):
        def run(self, command_line: str, *, timeout: float) -> CommandResult:
            return CommandResult(command_line, 0, evil, "", utcnow(), utcnow())

    with pytest.raises(TelemetryError, match=r"win10-lab:Security.*DOCTYPE"):
        WevtutilSource(Evil({}), ["Security"]).bookmark()


def test_other_wevtutil_failures_and_timeouts_raise() -> None:
    class Denied(FakeWindowsHost):
        def run(self, command_line: str, *, timeout: float) -> CommandResult:
            return CommandResult(command_line, 5, "", "Failed to read events. Access is denied.", utcnow(), utcnow())

    with pytest.raises(TelemetryError, match="Access is denied"):
        WevtutilSource(Denied({}), ["Security"]).bookmark()

    class Slow(FakeWindowsHost):
        def run(self, command_line: str, *, timeout: float) -> CommandResult:
            return CommandResult(command_line, None, "", "", utcnow(), utcnow(), timed_out=True)

    with pytest.raises(TelemetryError, match="timed out"):
        WevtutilSource(Slow({}), ["Security"], timeout=5).bookmark()


def test_unsafe_channel_names_refused() -> None:
    with pytest.raises(ValueError):
        WevtutilSource(FakeWindowsHost({}), ['Security" & calc & "'])
