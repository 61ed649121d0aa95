"""EVTX files -> Event, streaming, through the ``evtx`` package (pyevtx-rs).

Route: ``records_json()`` in the parser's default layout, decoded by orjson (or ``json``) and
mapped by a direct mapper (the XML route would cost a second, slower parse per record). Damaged input never crashes
the read: the record iterator raises ``RuntimeError`` per unreadable chunk or record and then
continues with the next one, so each failure is counted in ReadStats (``damaged_chunks`` for a
chunk, ``skipped_records`` for a record) and reading goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import evtx

from harness.errors import TelemetryError
from harness.telemetry.event import Event
from harness.telemetry.readers.common import ReadStats, canonical_channel, make_event, parse_time, scalar_text
from harness.telemetry.readers.jsonshapes import from_evtx_json


def _json_loader() -> Callable[[str], Any]:
    """orjson when installed (decodes ~2.5x faster; optional), else the stdlib decoder: both give
    the same Python values for the JSON evtx-rs writes."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - depends on the environment
        return json.loads
    return orjson.loads


json_loads = _json_loader()

EVTX_MAGIC = b"ElfFile\x00"
_CHUNK_SIZE = 65536


_NO_ATTRIBUTES: dict[str, Any] = {}


def _fast_from_rs_json(record: Mapping[str, Any], origin: str, raw: str | None) -> Event:
    """The evtx-rs default JSON shape (``#attributes`` children), read with direct key access;
    anything less common (UserData, unnamed Data, EventID with Qualifiers, EventData attributes)
    goes through the general mapper."""
    event = record["Event"]
    system = event["System"]
    data = event.get("EventData")
    event_id = system["EventID"]
    if (
        data.__class__ is not dict
        or event_id.__class__ is not int
        or "Data" in data
        or "#attributes" in data
        or "UserData" in event
    ):
        return from_evtx_json(record, origin=origin, raw=raw)
    fields = {k: v if v.__class__ is str else scalar_text(v) for k, v in data.items()}
    if "Binary" in fields and not fields["Binary"]:
        del fields["Binary"]
    execution = system.get("Execution")
    execution = execution["#attributes"] if execution else _NO_ATTRIBUTES
    security = system.get("Security")
    record_id = system.get("EventRecordID")
    return make_event(
        canonical_channel(system.get("Channel") or ""),
        system["Provider"]["#attributes"].get("Name") or "",
        event_id,
        parse_time(system["TimeCreated"]["#attributes"]["SystemTime"]),
        system.get("Computer") or "",
        fields,
        system.get("Version") or 0,
        None if record_id is None else int(record_id),
        security["#attributes"].get("UserID") if security else None,
        execution.get("ProcessID"),
        execution.get("ThreadID"),
        raw,
        origin,
    )


def read_evtx(
    source: Path | IO[bytes],
    *,
    origin: str,
    keep_raw: bool = True,
    stats: ReadStats | None = None,
    size_hint: int | None = None,
) -> Iterator[Event]:
    """Events of one EVTX file (a path, or a seekable binary file object).

    Raises TelemetryError when the file header is unusable; damaged chunks and records are
    skipped and counted in ``stats``.
    """
    stats = stats if stats is not None else ReadStats()
    try:
        # Default JSON layout: rendering attributes as "#attributes" children costs the parser half
        # the time of separate_json_attributes=True.
        parser = evtx.PyEvtxParser(str(source) if isinstance(source, Path) else source, indent=False)
        records = parser.records_json()
    except (RuntimeError, OSError, ValueError) as exc:
        raise TelemetryError(f"not a readable EVTX file: {exc}", source=origin) from exc
    if size_hint is None and isinstance(source, Path):
        size_hint = source.stat().st_size
    # The iterator resumes after an error; bound the number of errors so a pathological file can
    # never loop forever (at most one error per chunk plus one per record slot is plausible).
    max_errors = (size_hint or 0) // _CHUNK_SIZE * 2 + 64
    errors = 0
    loads = json_loads
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except RuntimeError as exc:
            errors += 1
            message = str(exc)
            if "chunk" in message.lower() and "record" not in message.lower():
                stats.damaged_chunks += 1
            else:
                stats.skipped_records += 1
            stats.problem(origin, message.splitlines()[0][:200])
            if errors > max_errors:
                stats.problem(origin, "too many errors; rest of file skipped")
                return
            continue
        if record is None:
            continue
        text = record["data"]
        try:
            event = _fast_from_rs_json(loads(text), origin, text if keep_raw else None)
        except (KeyError, ValueError, TypeError) as exc:
            stats.skipped_records += 1
            stats.problem(origin, f"record {record.get('event_record_id')}: {exc!r}")
            continue
        stats.events += 1
        yield event
