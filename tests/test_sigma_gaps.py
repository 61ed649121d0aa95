"""Sigma gaps of issue 13 item 7: Task Scheduler, WMI-Activity and Defender channels, field names with
spaces, case-insensitive matching for every script, not only ASCII."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harness.detect.sigma import SigmaDetector
from harness.detect.sigma_pipeline import TASK_SCHEDULER, WINDOWS_DEFENDER, WMI_ACTIVITY
from harness.errors import UnsupportedRuleError
from harness.telemetry.event import SYSMON, Event

T0 = datetime(2024, 10, 22, 14, 46, 21, tzinfo=UTC)


def ev(channel: str, eid: int, **fields: str) -> Event:
    return Event(channel, "p", eid, T0, "WIN10", fields)


def rule(logsource: str, detection: str) -> SigmaDetector:
    text = f"title: t\nlogsource: {{product: windows, {logsource}}}\ndetection:\n{detection}\n  condition: sel\n"
    return SigmaDetector.from_text(text, source="t.yml")


@pytest.mark.parametrize(("service", "channel"), [
    # SigmaHQ/sigma-specification, specification/sigma-appendix-taxonomy.md, table "Service"
    ("taskscheduler", TASK_SCHEDULER), ("wmi", WMI_ACTIVITY), ("windefend", WINDOWS_DEFENDER)])
def test_service_log_sources_map_to_their_channels(service: str, channel: str) -> None:
    det = rule(f"service: {service}", "  sel:\n    EventID: 141")
    rows = det.evaluate([ev(channel, 141, X="in"), ev(SYSMON, 141, X="other channel")]).rows
    assert [r["X"] for r in rows] == ["in"]


def test_defender_field_names_with_spaces_match_sigmas_names_without() -> None:
    det = rule("service: windefend", "  sel:\n    ThreatName|endswith: EICAR_Test_File\n    SourceName: Real-Time Protection")
    hit = ev(WINDOWS_DEFENDER, 1119, **{"Threat Name": "Virus:DOS/EICAR_Test_File", "Source Name": "Real-Time Protection"})
    miss = ev(WINDOWS_DEFENDER, 1119, **{"Threat Name": "Trojan:Win32/X", "Source Name": "Real-Time Protection"})
    assert [r["Threat Name"] for r in det.evaluate([hit, miss]).rows] == ["Virus:DOS/EICAR_Test_File"]


@pytest.mark.parametrize(("detection", "value"), [
    ("User: 'ADMINISTRATÖR'", "administratör"),
    ("User|contains: 'администратор'", r"WIN10\АДМИНИСТРАТОР"),
    ("User|startswith: 'ÉQUIPE'", "équipe-admins"),
    ("User|endswith: 'ΔΙΑΧΕΙΡΙΣΤΗΣ'", "local\\διαχειριστησ".replace("σ", "ς")[:-1] + "ς"),
])
def test_case_insensitive_matching_for_non_ascii_letters(detection: str, value: str) -> None:
    det = rule("category: process_creation", f"  sel:\n    {detection}")
    assert len(det.evaluate([ev(SYSMON, 1, User=value)]).rows) == 1


def test_cased_modifier_stays_case_sensitive_and_missing_fields_stay_null() -> None:
    det = rule("category: process_creation", "  sel:\n    User|contains|cased: 'Ö'")
    assert len(det.evaluate([ev(SYSMON, 1, User="ö"), ev(SYSMON, 1, User="Ö")]).rows) == 1
    negated = SigmaDetector.from_text(
        "title: t\nlogsource: {product: windows, category: process_creation}\ndetection:\n"
        "  sel:\n    Image|contains: x\n  condition: not sel\n", source="n.yml")
    # LIKE on a missing field stays NULL and the backend's COALESCE(..., 0) makes 'not sel' true there
    assert len(negated.evaluate([ev(SYSMON, 1, User="a"), ev(SYSMON, 1, Image="C:\\x.exe")]).rows) == 1


def test_unmapped_services_are_still_refused() -> None:
    with pytest.raises(UnsupportedRuleError):
        rule("service: bits-client", "  sel:\n    EventID: 1")
