"""Telemetry readers: XML, EVTX, JSON shapes, normalized JSONL, with format auto-detection.

Public API: ``read_events(path, *, keep_raw=True, stats=None)`` for files of any supported format,
``parse_event_xml(text, *, origin=None, keep_raw=True, stats=None)`` for event XML text (what
wevtutil and Get-WinEvent print), ``ReadStats`` to learn about skipped/damaged input.
"""

from harness.telemetry.readers.auto import read_events
from harness.telemetry.readers.common import ReadStats
from harness.telemetry.readers.jsonshapes import event_from_record
from harness.telemetry.readers.winxml import parse_event_xml

__all__ = ["ReadStats", "event_from_record", "parse_event_xml", "read_events"]
