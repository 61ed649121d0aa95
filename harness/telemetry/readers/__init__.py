"""Telemetry readers: XML, EVTX, JSON shapes, normalized JSONL, with format auto-detection.

Public API: ``read_events(path, *, keep_raw=True, stats=None)`` for files of any supported format,
``parse_event_xml(text, *, origin=None, keep_raw=True, stats=None)`` for event XML text (what
wevtutil and Get-WinEvent print), ``ReadStats`` to learn about skipped/damaged input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.telemetry.readers.auto import read_events
from harness.telemetry.readers.common import ReadStats
from harness.telemetry.readers.jsonshapes import event_from_record

if TYPE_CHECKING:
    from harness.telemetry.readers.winxml import parse_event_xml


def __getattr__(name: str) -> Any:
    # lxml is loaded when XML is read, not for JSONL/EVTX (memory and start-up of `atomiclab detect`)
    if name == "parse_event_xml":
        from harness.telemetry.readers.winxml import parse_event_xml

        return parse_event_xml
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ReadStats", "event_from_record", "parse_event_xml", "read_events"]
