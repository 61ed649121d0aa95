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
        if command_line.startswith("cmd.exe /c "):
            return self._cmd(command_line)
        return self._wevtutil(command_line)

    def _cmd(self, command_line: str) -> CommandResult:
        """``cmd.exe /c`` with ``&``-joined ``echo`` and ``wevtutil ... 2>&1 || echo`` segments (channel
        names and queries hold no ``&``)."""
        started, out = utcnow(), []
        for segment in command_line.removeprefix("cmd.exe /c ").split(" & "):
            if segment.startswith("echo "):
                out.append(segment.removeprefix("echo ") + "\r\n")
                continue
            query, _, fallback = segment.partition(" 2>&1 || ")
            result = self._wevtutil(query)
            out.append(result.stdout + result.stderr)
            if result.exit_code != 0:
                out.append(fallback.removeprefix("echo ") + "\r\n")
        return CommandResult(command_line, 0, "".join(out), "", started, utcnow())

    def _wevtutil(self, command_line: str) -> CommandResult:
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
    # one remote command for the three channels (issue 15: one query per poll for all channels)
    assert len(host.commands) == 1
    assert f'wevtutil qe "{SYSMON}" /c:1 /rd:true /f:xml 2>&1 || ' in host.commands[0]

    host.logs[SYSMON].extend(after)  # the test ran
    host.commands.clear()
    collected = source.collect(mark)
    expected = [r for r, _ in after]
    assert [e.record_id for e in collected.events] == expected
    assert collected.counts[SYSMON] == len(after) and collected.status[SYSMON] is ChannelStatus.OK
    assert collected.status["Microsoft-Windows-PowerShell/Operational"] is ChannelStatus.MISSING
    sysmon_cmds = [c for c in host.commands if SYSMON in c]
    assert len(sysmon_cmds) == len(after) // 10 + 1 == len(host.commands)  # the other channels end in round 1
    assert (
        f'wevtutil qe "{SYSMON}" /q:"*[System[EventRecordID>{mark.record_ids[SYSMON]}]]" /f:xml /e:Events /c:10'
    ) in sysmon_cmds[0]
    assert "Windows PowerShell" in host.commands[0] and "Windows PowerShell" not in host.commands[1]
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


def test_advanced_bookmark_reads_on_from_the_last_read(sysmon_log: list[tuple[int, str]]) -> None:
    host = FakeWindowsHost({SYSMON: list(sysmon_log[:5]), "Security": []})
    source = WevtutilSource(host, [SYSMON, "Security"])
    mark = source.bookmark()
    host.logs[SYSMON].extend(sysmon_log[5:8])
    first = source.events_after(mark)
    assert [e.record_id for e in first] == [r for r, _ in sysmon_log[5:8]]
    moved = source.advanced(mark, first)
    assert moved.record_ids[SYSMON] == sysmon_log[7][0] and moved.record_ids["Security"] == 0
    assert source.events_after(moved) == []  # nothing new: nothing read twice
    host.logs[SYSMON].extend(sysmon_log[8:9])
    assert [e.record_id for e in source.events_after(moved)] == [sysmon_log[8][0]]
    assert source.advanced(moved, []) is moved


def test_event_text_cannot_forge_a_section_and_a_cut_reply_is_an_error(sysmon_log: list[tuple[int, str]]) -> None:
    class Forging(FakeWindowsHost):
        """Event data that starts a line with what looks like a section marker."""

        def _wevtutil(self, command_line: str) -> CommandResult:
            result = super()._wevtutil(command_line)
            return CommandResult(command_line, result.exit_code, result.stdout + "\r\nATOMICLAB0000S1\r\n",
                                 result.stderr, result.started, result.ended)

    host = Forging({SYSMON: list(sysmon_log[:3]), "Security": []})
    source = WevtutilSource(host, [SYSMON, "Security"])
    mark = source.bookmark()
    assert mark.record_ids[SYSMON] == sysmon_log[2][0]

    class Cut(FakeWindowsHost):
        def _cmd(self, command_line: str) -> CommandResult:
            whole = super()._cmd(command_line)
            return CommandResult(command_line, None, whole.stdout[: len(whole.stdout) // 2], "", whole.started,
                                 whole.ended)

    with pytest.raises(TelemetryError, match="ended early"):
        WevtutilSource(Cut({SYSMON: list(sysmon_log[:3]), "Security": []}), [SYSMON, "Security"]).bookmark()


def test_one_failing_channel_in_a_batch_is_named() -> None:
    class Denied(FakeWindowsHost):
        def _wevtutil(self, command_line: str) -> CommandResult:
            if '"Security"' in command_line:
                return CommandResult(command_line, 5, "", "Failed to read events. Access is denied.\r\n", utcnow(),
                                     utcnow())
            return super()._wevtutil(command_line)

    with pytest.raises(TelemetryError, match=r"'Security'.*Access is denied"):
        WevtutilSource(Denied({SYSMON: []}), [SYSMON, "Security"]).bookmark()


def test_batched_query_runs_on_the_emulated_hosts_cmd() -> None:
    """The same command line through the emulated host's cmd.exe and wevtutil models."""
    from harness.emulated.host import EmulatedHost

    host = EmulatedHost()

    class Local:
        host = "emulated"

        def run(self, command_line: str, *, timeout: float) -> CommandResult:
            return host.execute(command_line, timeout_s=timeout)

        def put_file(self, local: Path, remote: str) -> None:  # pragma: no cover - not used
            raise NotImplementedError

        def close(self) -> None:
            pass

    source = WevtutilSource(Local(), [SYSMON, "Security", "No-Such/Channel"])
    mark = source.bookmark()
    assert mark.status["No-Such/Channel"] is ChannelStatus.MISSING and mark.record_ids[SYSMON] > 0
    host.execute("cmd.exe /c whoami")
    collected = source.collect(mark)
    images = [e.get("Image") or e.get("NewProcessName") or "" for e in collected.events]
    assert any(i.lower().endswith("whoami.exe") for i in images)
    assert {e.channel for e in collected.events} <= {SYSMON, "Security"}
    moved = source.advanced(mark, collected.events)
    assert all(e.record_id is not None and e.record_id > moved.record_ids[e.channel] for e in source.events_after(moved))


def test_emulated_log_answers_read_on_queries_by_bisection_as_the_xpath_does() -> None:
    """The emulated wevtutil answers ``EventRecordID>N`` (the harness's poll) without scanning the
    whole log; the answer is the XPath filter's, and so are the newest-first bookmark reads."""
    from harness.emulated.eventlog import compile_xpath
    from harness.emulated.host import EmulatedHost

    host = EmulatedHost()
    for _ in range(5):
        host.execute("cmd.exe /c whoami")
    log = host.eventlog
    last = log.last_record_id(SYSMON)
    for n in (0, 1, last // 2, last - 1, last, last + 10):
        by_xpath = log.events(SYSMON, predicate=compile_xpath(f"*[System[EventRecordID>{n}]]"))
        assert log.events(SYSMON, after_record_id=n) == by_xpath
    assert log.events(SYSMON, reverse=True, count=3) == list(reversed(log.events(SYSMON)))[:3]
    assert log.events(SYSMON, reverse=True, count=10**6) == list(reversed(log.events(SYSMON)))
