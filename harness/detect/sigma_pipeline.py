"""How Sigma's generic log sources meet atomiclab's Windows events.

Two halves, both data:

* ``LOGSOURCES`` says which channel/EventID pairs a Sigma log source (``category``/``service`` +
  ``product: windows``) stands for; ``build_pipeline`` turns it into a pySigma ``ProcessingPipeline``
  that ANDs ``Channel``/``EventID`` conditions onto every rule, so a rule only sees its own events.
* ``event_record`` turns an ``Event`` into the flat record the SQLite table holds. For Security
  4688 it adds the Sysmon EID 1 view (``Image``, ``ParentImage``, ``User``, decimal ``ProcessId`` and
  ``ParentProcessId``, ``IntegrityLevel``) so that one ``process_creation`` rule covers both sources.
  That mapping is done on the event side because it needs value transforms (hex -> decimal,
  ``DOMAIN\\user`` composition) that a pySigma field-name mapping cannot express, and because a
  name mapping (``Image -> NewProcessName``) would make filters on Sysmon-only fields read wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import AddConditionTransformation

from harness.telemetry.channels import integrity_level, parse_pid
from harness.telemetry.event import (
    POWERSHELL_OPERATIONAL,
    SECURITY,
    SYSMON,
    SYSTEM,
    WINDOWS_POWERSHELL,
    Event,
)

TASK_SCHEDULER = "Microsoft-Windows-TaskScheduler/Operational"
WMI_ACTIVITY = "Microsoft-Windows-WMI-Activity/Operational"
WINDOWS_DEFENDER = "Microsoft-Windows-Windows Defender/Operational"

#: Header columns every record carries, before the event's own fields.
CHANNEL = "Channel"
EVENT_ID = "EventID"
HEADER_COLUMNS = (CHANNEL, EVENT_ID, "Provider_Name", "Computer", "TimeCreated", "EventRecordID")


@dataclass(frozen=True, slots=True)
class LogSourceMapping:
    """One Sigma log source and the events it means. ``event_ids`` empty = every event of the
    channels (service-level sources such as ``service: security``)."""

    channels: tuple[str, ...]
    event_ids: tuple[int, ...] = ()
    category: str | None = None
    service: str | None = None
    product: str = "windows"

    @property
    def name(self) -> str:
        kind = f"category={self.category}" if self.category else f"service={self.service}"
        return f"product={self.product} {kind}"


#: The log sources this engine implements. Anything else is rejected with UnsupportedRuleError,
#: because silently running a rule over events it was not written for produces false answers.
LOGSOURCES: tuple[LogSourceMapping, ...] = (
    # Sysmon EventIDs are 1..29 and 255, Security ones are >= 1100, so the Channel x EventID product
    # the AND of two IN-lists gives (Sysmon 4688, Security 1) cannot occur in real data.
    LogSourceMapping((SYSMON, SECURITY), (1, 4688), category="process_creation"),
    LogSourceMapping((SYSMON,), (3,), category="network_connection"),
    LogSourceMapping((SYSMON,), (5,), category="process_termination"),
    LogSourceMapping((SYSMON,), (6,), category="driver_load"),
    LogSourceMapping((SYSMON,), (7,), category="image_load"),
    LogSourceMapping((SYSMON,), (8,), category="create_remote_thread"),
    LogSourceMapping((SYSMON,), (10,), category="process_access"),
    LogSourceMapping((SYSMON,), (11,), category="file_event"),
    LogSourceMapping((SYSMON,), (12, 13, 14), category="registry_event"),
    LogSourceMapping((SYSMON,), (12,), category="registry_add"),
    LogSourceMapping((SYSMON,), (12,), category="registry_delete"),
    LogSourceMapping((SYSMON,), (13,), category="registry_set"),
    LogSourceMapping((SYSMON,), (14,), category="registry_rename"),
    LogSourceMapping((SYSMON,), (17, 18), category="pipe_created"),
    LogSourceMapping((SYSMON,), (22,), category="dns_query"),
    LogSourceMapping((SYSMON,), (23, 26), category="file_delete"),
    LogSourceMapping((POWERSHELL_OPERATIONAL,), (4104,), category="ps_script"),
    LogSourceMapping((POWERSHELL_OPERATIONAL,), (4103,), category="ps_module"),
    LogSourceMapping((WINDOWS_POWERSHELL,), (400,), category="ps_classic_start"),
    LogSourceMapping((SYSMON,), service="sysmon"),
    LogSourceMapping((SECURITY,), service="security"),
    LogSourceMapping((SYSTEM,), service="system"),
    LogSourceMapping((POWERSHELL_OPERATIONAL,), service="powershell"),
    LogSourceMapping((WINDOWS_POWERSHELL,), service="powershell-classic"),
    # Sigma's service -> channel table (SigmaHQ/sigma-specification,
    # specification/sigma-appendix-taxonomy.md, "Service": taskscheduler, wmi, windefend).
    LogSourceMapping((TASK_SCHEDULER,), service="taskscheduler"),
    LogSourceMapping((WMI_ACTIVITY,), service="wmi"),
    LogSourceMapping((WINDOWS_DEFENDER,), service="windefend"),
)


def find_logsource(
    category: str | None, product: str | None, service: str | None
) -> LogSourceMapping | None:
    """The mapping for a rule's log source, or None when this engine does not implement it."""
    if (product or "").lower() != "windows":
        return None
    cat = (category or "").lower() or None
    svc = (service or "").lower() or None
    for m in LOGSOURCES:
        if cat is not None and m.category == cat and m.service is None:
            return m
        if cat is None and svc is not None and m.service == svc:
            return m
    return None


def build_pipeline() -> ProcessingPipeline:
    """The pySigma pipeline adding each implemented log source's Channel/EventID condition."""
    items: list[ProcessingItem] = []
    for m in LOGSOURCES:
        conditions: dict[str, int | str | list[str]] = {CHANNEL: list(m.channels)}
        if m.event_ids:
            # pySigma types the list as str but emits numbers as numbers (EventID=4688), which is
            # what the INTEGER column compares against.
            conditions[EVENT_ID] = list(m.event_ids)  # type: ignore[arg-type]
        cond = (
            LogsourceCondition(category=m.category, product=m.product)
            if m.service is None
            else LogsourceCondition(product=m.product, service=m.service)
        )
        items.append(
            ProcessingItem(
                identifier=f"atomiclab_{m.category or m.service}",
                transformation=AddConditionTransformation(conditions),
                rule_conditions=[cond],
            )
        )
    return ProcessingPipeline(name="atomiclab windows channels", priority=20, items=items)


def security_4688_view(fields: Mapping[str, str]) -> dict[str, str]:
    """The fields of a Security 4688 with the Sysmon EID 1 names added.

    ``ProcessId`` of a 4688 is the *creator* (hex); in the result it is the new process (decimal,
    from ``NewProcessId``) and the creator becomes ``ParentProcessId``, as Sysmon has them. Every
    other original field is kept under its own name, so Security-specific rules still work.
    """
    out = dict(fields)
    if "NewProcessName" in fields:
        out["Image"] = fields["NewProcessName"]
    if fields.get("ParentProcessName"):
        out["ParentImage"] = fields["ParentProcessName"]
    user = fields.get("SubjectUserName")
    if user:
        domain = fields.get("SubjectDomainName")
        # Sysmon writes DOMAIN\user; 4688 splits it. Compose unless the name already has a domain.
        out["User"] = f"{domain}\\{user}" if domain and domain != "-" and "\\" not in user else user
    # The same pid parsing lineage uses (4688 writes hex, ``0x1a2c``); Sysmon's columns are decimal.
    new_pid = parse_pid(fields.get("NewProcessId"))
    creator = parse_pid(fields.get("ProcessId"))
    if new_pid is not None:
        out["ProcessId"] = str(new_pid)
    elif "ProcessId" in out:
        del out["ProcessId"]  # a creator pid must not pose as the new process id
    if creator is not None:
        out["ParentProcessId"] = str(creator)
    integrity = integrity_level(fields.get("MandatoryLabel"))
    if integrity is not None:
        out["IntegrityLevel"] = integrity
    return out


def event_record(event: Event) -> dict[str, str | int]:
    """The flat record of one event: header columns, then its fields (4688: Sysmon view added).

    Header names win over same-named event fields (EventData never legitimately carries them).
    """
    rec: dict[str, str | int] = {
        CHANNEL: event.channel,
        EVENT_ID: event.event_id,
        "Provider_Name": event.provider,
        "Computer": event.computer,
        "TimeCreated": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if event.record_id is not None:
        rec["EventRecordID"] = event.record_id
    fields: Mapping[str, str] = event.fields
    if event.event_id == 4688 and event.channel.lower() == SECURITY.lower():
        fields = security_4688_view(fields)
    for name, value in fields.items():
        rec.setdefault(name, value)
    for name, value in fields.items():
        if " " in name:
            # Defender writes "Threat Name", "Source Name", "Process Name"; Sigma rules name Windows event
            # attributes without the spaces (SigmaHQ's windefend rules use ThreatName, SourceName, ...).
            rec.setdefault(name.replace(" ", ""), value)
    return rec


__all__ = [
    "CHANNEL",
    "EVENT_ID",
    "HEADER_COLUMNS",
    "LOGSOURCES",
    "LogSourceMapping",
    "build_pipeline",
    "event_record",
    "find_logsource",
    "security_4688_view",
]
