"""Event XML reader: every wevtutil / Get-WinEvent shape, the fast path against lxml, hostile XML."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from harness.errors import TelemetryError
from harness.telemetry.readers import ReadStats, parse_event_xml, winxml
from harness.telemetry.readers.winxml import event_from_element

NS = "http://schemas.microsoft.com/win/2004/08/events/event"

# What `wevtutil qe Microsoft-Windows-Sysmon/Operational /c:1 /f:xml` prints (single quotes, no
# whitespace between elements); values from the real atomic-evtx T1046-10 recording.
SYSMON_1 = (
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
    "<Provider Name='Microsoft-Windows-Sysmon' Guid='{5770385f-c22a-43e0-bf4c-06f5698ffbd9}'/>"
    "<EventID>1</EventID><Version>5</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode>"
    "<Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime='2024-10-22T14:46:22.9720404Z'/>"
    "<EventRecordID>17960</EventRecordID><Correlation/><Execution ProcessID='3108' ThreadID='3984'/>"
    "<Channel>Microsoft-Windows-Sysmon/Operational</Channel><Computer>Server002</Computer>"
    "<Security UserID='S-1-5-18'/></System><EventData><Data Name='RuleName'>-</Data>"
    "<Data Name='UtcTime'>2024-10-22 14:46:22.970</Data>"
    "<Data Name='ProcessGuid'>{dbf410b3-babe-6717-c200-000000003900}</Data>"
    "<Data Name='ProcessId'>4108</Data>"
    "<Data Name='Image'>C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe</Data>"
    "<Data Name='CommandLine'>\"powershell.exe\" &amp; {$tcp = New-Object Net.Sockets.TcpClient}</Data>"
    "<Data Name='ParentProcessGuid'>{dbf410b3-bab9-6717-af00-000000003900}</Data>"
    "<Data Name='ParentProcessId'>3020</Data>"
    "<Data Name='ParentImage'>C:\\Windows\\System32\\wsmprovhost.exe</Data>"
    "<Data Name='ParentUser'></Data></EventData></Event>"
)
WINPS_600 = (
    '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event">\r\n  <System>\r\n'
    '    <Provider Name="PowerShell" />\r\n    <EventID Qualifiers="0">600</EventID>\r\n'
    "    <Version>0</Version>\r\n    <Level>4</Level>\r\n    <Task>6</Task>\r\n    <Opcode>0</Opcode>\r\n"
    "    <Keywords>0x80000000000000</Keywords>\r\n"
    '    <TimeCreated SystemTime="2024-10-22T14:46:23.6996110Z" />\r\n'
    "    <EventRecordID>1043</EventRecordID>\r\n    <Correlation />\r\n"
    '    <Execution ProcessID="0" ThreadID="0" />\r\n    <Channel>Windows PowerShell</Channel>\r\n'
    "    <Computer>Server002</Computer>\r\n    <Security />\r\n  </System>\r\n  <EventData>\r\n"
    "    <Data>Registry</Data>\r\n    <Data>Started</Data>\r\n"
    "    <Data>\tProviderName=Registry\r\n\tHostApplication=powershell.exe &amp; {1..254}\r\n"
    "\tEngineVersion=</Data>\r\n  </EventData>\r\n</Event>"
)
SECURITY_1102 = (
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
    "<Provider Name='Microsoft-Windows-Eventlog' Guid='{fc65ddd8-d6ef-4962-83d5-6e5cfe9ce148}'/>"
    "<EventID>1102</EventID><Version>1</Version><Level>4</Level><Task>104</Task><Opcode>0</Opcode>"
    "<Keywords>0x4020000000000000</Keywords><TimeCreated SystemTime='2024-10-22T14:46:22.3752866Z'/>"
    "<EventRecordID>30348</EventRecordID><Correlation/><Execution ProcessID='1156' ThreadID='1224'/>"
    "<Channel>Security</Channel><Computer>Server002</Computer><Security/></System><UserData>"
    "<LogFileCleared xmlns='http://manifests.microsoft.com/win/2004/08/windows/eventlog'>"
    "<SubjectUserSid>S-1-5-21-1006</SubjectUserSid><SubjectUserName>admin_test</SubjectUserName>"
    "</LogFileCleared></UserData></Event>"
)
RENDERED = SYSMON_1.replace(
    "</EventData></Event>",
    "</EventData><RenderingInfo Culture='en-US'><Message>Process Create:&#13;&#10;RuleName: -</Message>"
    "<Level>Information</Level><Keywords><Keyword/></Keywords></RenderingInfo></Event>",
)


def _lxml_reference(text: str) -> list:
    root = etree.fromstring(f"<r>{text}</r>".encode())
    return [event_from_element(e, origin="<xml>", keep_raw=False) for e in root.iter(f"{{{NS}}}Event")]


def test_wevtutil_single_event_fields_and_system() -> None:
    [event] = list(parse_event_xml(SYSMON_1))
    assert winxml._fast_event(SYSMON_1, origin="<xml>", keep_raw=True) == event
    assert event.channel == "Microsoft-Windows-Sysmon/Operational"
    assert event.provider == "Microsoft-Windows-Sysmon"
    assert (event.event_id, event.version, event.record_id) == (1, 5, 17960)
    assert event.time == datetime(2024, 10, 22, 14, 46, 22, 972040, tzinfo=UTC)
    assert (event.computer, event.user_sid, event.pid, event.tid) == ("Server002", "S-1-5-18", 3108, 3984)
    assert event.fields["CommandLine"] == '"powershell.exe" & {$tcp = New-Object Net.Sockets.TcpClient}'
    assert event.fields["ParentUser"] == ""
    assert list(event.fields)[:3] == ["RuleName", "UtcTime", "ProcessGuid"]
    assert event.raw == SYSMON_1


def test_several_roots_without_wrapper_and_with_events_wrapper_agree() -> None:
    bare = list(parse_event_xml(SYSMON_1 + "\r\n" + SECURITY_1102 + "\r\n" + WINPS_600))
    wrapped = list(parse_event_xml("<Events>" + SYSMON_1 + SECURITY_1102 + WINPS_600 + "</Events>"))
    assert [e.event_id for e in bare] == [1, 1102, 600]
    assert bare == wrapped
    assert bare == _lxml_reference(SYSMON_1 + SECURITY_1102 + WINPS_600)


def test_unnamed_data_get_positional_names_and_line_ends_normalized() -> None:
    [event] = list(parse_event_xml(WINPS_600))
    assert list(event.fields) == ["param1", "param2", "param3"]
    assert event.fields["param3"].startswith("\tProviderName=Registry\n\tHostApplication=powershell.exe & {")
    assert event.pid == 0


def test_userdata_flattened() -> None:
    [event] = list(parse_event_xml(SECURITY_1102))
    assert dict(event.fields) == {"SubjectUserSid": "S-1-5-21-1006", "SubjectUserName": "admin_test"}


def test_rendered_xml_ignores_rendering_info_but_keeps_it_raw() -> None:
    [event] = list(parse_event_xml(RENDERED))
    [plain] = list(parse_event_xml(SYSMON_1))
    assert event == plain
    assert event.raw is not None and "RenderingInfo" in event.raw


def test_get_winevent_toxml_and_utf16_bytes() -> None:
    pretty = etree.tostring(etree.fromstring(SYSMON_1.encode()), pretty_print=True, encoding="unicode")
    data = ('<?xml version="1.0" encoding="utf-16"?>\r\n' + pretty).encode("utf-16")
    [event] = list(parse_event_xml(data, origin="host:Sysmon"))
    [plain] = list(parse_event_xml(SYSMON_1, keep_raw=False))
    assert event == plain
    assert event.origin == "host:Sysmon"


def test_evtx_rendered_records_with_declarations() -> None:
    record = '<?xml version="1.0" encoding="utf-8"?>\n' + SYSMON_1.replace("'", '"')
    events = list(parse_event_xml(record + "\n" + record))
    assert len(events) == 2 and events[0].fields["ProcessId"] == "4108"


def test_comments_cdata_and_namespace_prefixes_go_through_lxml() -> None:
    cdata = SYSMON_1.replace("<Data Name='RuleName'>-</Data>", "<Data Name='RuleName'><![CDATA[a<b]]></Data>")
    [event] = list(parse_event_xml("<!-- exported -->" + cdata))
    assert event.fields["RuleName"] == "a<b"
    prefixed = re.sub(r"<(/?)(\w+)", r"<\1e:\2", SYSMON_1).replace("xmlns=", "xmlns:e=")
    [event] = list(parse_event_xml(prefixed, keep_raw=False))
    [plain] = list(parse_event_xml(SYSMON_1, keep_raw=False))
    assert event == plain


def test_malformed_xml_names_origin_and_line() -> None:
    broken = SYSMON_1 + "\n" + SYSMON_1.replace("</EventData>", "</EventDat>")
    with pytest.raises(TelemetryError) as info:
        list(parse_event_xml(broken, origin="dc01:Security"))
    assert "dc01:Security" in str(info.value) and "line 2" in str(info.value)


def test_truncated_stream_is_an_error() -> None:
    with pytest.raises(TelemetryError):
        list(parse_event_xml("<Events>" + SYSMON_1 + SYSMON_1[:200]))


def test_event_without_time_is_skipped_and_counted() -> None:
    stats = ReadStats()
    no_time = SYSMON_1.replace("<TimeCreated SystemTime='2024-10-22T14:46:22.9720404Z'/>", "")
    events = list(parse_event_xml(no_time + SYSMON_1, stats=stats))
    assert len(events) == 1 and stats.skipped_records == 1 and "TimeCreated" in stats.problems[0]


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]><Events>" + SYSMON_1.replace("<Data Name='RuleName'>-</Data>", "<Data Name='RuleName'>&lol9;</Data>")
    + "</Events>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + SYSMON_1.replace("<Data Name='RuleName'>-</Data>", "<Data Name='RuleName'>&xxe;</Data>")
)
XXE_REMOTE = '<!DOCTYPE e SYSTEM "http://127.0.0.1:9/evil.dtd">' + SYSMON_1


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE, XXE_REMOTE], ids=["billion-laughs", "xxe-file", "dtd-net"])
def test_hostile_xml_rejected_quickly(payload: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TelemetryError, match="DOCTYPE"):
        list(parse_event_xml(payload, origin="evil"))
    elapsed = time.perf_counter() - started
    print(f"rejected in {elapsed * 1000:.2f} ms")  # informational; no timed assertion


def test_undeclared_entity_rejected() -> None:
    with pytest.raises(TelemetryError):
        list(parse_event_xml(SYSMON_1.replace(">-</Data>", ">&nope;</Data>", 1)))


def test_oversized_event_is_not_accepted() -> None:
    from harness.telemetry.readers import common

    big = SYSMON_1.replace(">-</Data>", ">" + "A" * (common.MAX_EVENT_CHARS + 10) + "</Data>", 1)
    stats = ReadStats()
    assert list(parse_event_xml(big, stats=stats)) == []
    assert stats.skipped_records == 1 and "larger" in stats.problems[0]


_xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff"), max_size=40
).filter(lambda s: all(c in "\t\n\r" or ord(c) >= 0x20 for c in s))


@settings(max_examples=150, deadline=None)
@given(values=st.lists(_xml_text, min_size=0, max_size=6), quote=st.sampled_from(["'", '"']))
def test_fast_path_equals_lxml(values: list[str], quote: str) -> None:
    """Whatever the field text (entities, CR/LF, quotes, non-ASCII), the fast path and lxml agree."""
    event = etree.fromstring(SYSMON_1.encode())
    data = event.find(f"{{{NS}}}EventData")
    assert data is not None
    for child in list(data):
        data.remove(child)
    for i, value in enumerate(values):
        item = etree.SubElement(data, f"{{{NS}}}Data", Name=f"F{i}")
        item.text = value
    text = etree.tostring(event, encoding="unicode")
    if quote == "'":
        text = re.sub(r'Name="(F\d+)"', r"Name='\1'", text)
    if "\r" in "".join(values):
        text = text.replace("&#13;", "\r")  # as Windows writes it: a literal CR, normalized by parsers
    got = list(parse_event_xml(text, keep_raw=False))
    assert got == _lxml_reference(text)
    # and the fast path itself (not a silent fallback) read it
    assert [winxml._fast_event(text, origin="<xml>", keep_raw=False)] == got


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("</Data><Data", "</Data>\x1c<Data"),  # a character XML forbids, where whitespace may stand
        ("<EventID>", "<EventID\xa0>"),  # Unicode space inside a tag
        ("<EventID>", "<EventID\x1d>"),
        ("</Data><Data", "</Data>\xa0<Data"),  # Unicode space as text between items: lxml ignores it
        ("Name='RuleName'", "Name='Rule\tName'"),  # XML turns a tab in an attribute into a space
        ("Name='RuleName'", "Name='Rule\nName'"),
        ("Guid=", "x\u00b2='1' Guid="),  # a character no XML name may hold
        ("<Data Name='UtcTime'>", "<!-- </Event> --><Data Name='UtcTime'>"),  # splitting needs lxml
        ("<Data Name='UtcTime'>", "<?pi </Event>?><Data Name='UtcTime'>"),
    ],
)
def test_fast_path_never_accepts_what_lxml_reads_otherwise(old: str, new: str) -> None:
    """Python's ``\\s`` and ``\\w`` are wider than XML's whitespace and names: text the fast path's
    patterns would have taken that way must be read (or rejected) exactly as lxml does."""
    text = SYSMON_1.replace(old, new, 1)
    assert text != SYSMON_1
    try:
        expected: list[object] = _lxml_reference(text)
    except (etree.XMLSyntaxError, TelemetryError):
        expected = ["malformed"]
    try:
        got: list[object] = list(parse_event_xml(text, keep_raw=False))
    except TelemetryError:
        got = ["malformed"]
    assert got == expected


def test_markup_scan_equals_plain_search() -> None:
    """``_has_markup`` (the cheap scan for ``<!``/``<?``) answers as ``in`` does, past its hop limit too."""
    texts = ["", "<", "!", "<!", "a<!", "!<!", "?" * 40 + "<?", "!" * 40, "a!b!c" * 20 + "<!x", "<" + "!" * 3]
    for text in texts:
        for mark in "!?":
            assert winxml._has_markup(text, mark) == (("<" + mark) in text), (text, mark)
