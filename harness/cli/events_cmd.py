"""``atomiclab events FILE... [--channel C] [--event-id N] [--format table|jsonl] [--limit N]``.

Prints normalized events from any supported event file. Unreadable input raises TelemetryError,
which the dispatcher prints as one line naming the file and the reason (exit 2). Skipped damage
(EVTX chunks, bad records) is summarized on stderr after the events.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.cli.argtypes import non_negative_int

if TYPE_CHECKING:
    from harness.telemetry.event import Event
    from harness.telemetry.readers import ReadStats

#: Short names accepted by --channel, as detection engineers say them.
CHANNEL_ALIASES = {
    "sysmon": "Microsoft-Windows-Sysmon/Operational",
    "ps-op": "Microsoft-Windows-PowerShell/Operational",
    "powershell": "Microsoft-Windows-PowerShell/Operational",
    "winps": "Windows PowerShell",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events",
        help="print normalized events from EVTX, event XML, JSON/JSONL, gzip or zip files",
        description="Read event files of any supported format and print normalized events.",
    )
    parser.add_argument("files", metavar="FILE", nargs="+", type=Path)
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="C",
        help="only this channel (repeatable; aliases: " + ", ".join(sorted(CHANNEL_ALIASES)) + ")",
    )
    parser.add_argument(
        "--event-id", action="append", type=int, default=[], metavar="N", help="only this id (repeatable)"
    )
    parser.add_argument("--format", choices=("table", "jsonl"), default="table")
    parser.add_argument("--limit", type=non_negative_int, default=None, metavar="N", help="stop after N events")
    parser.add_argument("--no-raw", action="store_true", help="jsonl: omit the raw source text")
    parser.set_defaults(handler=run)


def _wanted_channels(names: Sequence[str]) -> set[str]:
    from harness.telemetry.readers.common import canonical_channel
    return {canonical_channel(CHANNEL_ALIASES.get(n.lower(), n)).lower() for n in names}


def select(
    files: Sequence[Path],
    *,
    channels: Sequence[str],
    event_ids: Sequence[int],
    keep_raw: bool,
    stats: ReadStats,
    on_file_done: Callable[[Path, ReadStats], None] | None = None,
    seen: dict[str, set[int]] | None = None,
) -> Iterator[Event]:
    """The events of ``files`` in file order, filtered by channel and event id.

    ``stats`` sums every file; ``on_file_done(path, file_stats)`` sees each file's own counts once
    that file has been read to its end (not for a file cut short by the caller). ``seen`` collects
    the channel -> event ids of every event read, filtered out or not.
    """
    from harness.telemetry.readers import ReadStats, read_events
    wanted = _wanted_channels(channels)
    ids = set(event_ids)
    for path in files:
        mine = ReadStats()
        for event in read_events(path, keep_raw=keep_raw, stats=mine):
            if seen is not None:
                seen.setdefault(event.channel, set()).add(event.event_id)
            if wanted and event.channel.lower() not in wanted:
                continue
            if ids and event.event_id not in ids:
                continue
            yield event
        _add(stats, mine)
        if on_file_done is not None:
            on_file_done(path, mine)


def _add(total: ReadStats, one: ReadStats) -> None:
    from harness.telemetry.readers.common import MAX_PROBLEMS
    total.events += one.events
    total.damaged_chunks += one.damaged_chunks
    total.skipped_records += one.skipped_records
    total.files += one.files
    total.problems.extend(one.problems[: max(0, MAX_PROBLEMS - len(total.problems))])


def summary(event: Event) -> str:
    """One line saying what the event is about."""
    from harness.telemetry.channels import classic_powershell_of, process_of
    ref = process_of(event)
    if ref is not None:
        return f"{ref.image} | {ref.command_line}"
    classic = classic_powershell_of(event)
    if classic is not None and classic.host_application:
        return f"HostApplication={classic.host_application}"
    if event.event_id == 4104 and event.get("ScriptBlockText") is not None:
        return f"ScriptBlock {event.get('MessageNumber')}/{event.get('MessageTotal')}: {event.get('ScriptBlockText')}"
    parts = [f"{k}={v}" for k, v in event.fields.items() if v and k not in ("RuleName", "UtcTime")]
    return " ".join(parts)


def _one_line(text: str, width: int | None = None) -> str:
    """``text`` on one line; cut to ``width`` with an ellipsis (None: never cut)."""
    flat = " ".join(text.split())
    return flat if width is None or len(flat) <= width else flat[: max(1, width - 1)] + "…"


#: Characters before the summary column: time, computer, channel, event id and the gaps.
_PREFIX = 24 + 2 + 20 + 2 + 40 + 2 + 5 + 2


def summary_width(out: TextIO) -> int | None:
    """Room for the summary on a terminal (one screen line per event); None when piped or logged:
    the whole command line then stays on its line, so grep finds what lies past the screen edge."""
    isatty = getattr(out, "isatty", None)
    if not (callable(isatty) and isatty()):
        return None
    return max(40, shutil.get_terminal_size().columns - _PREFIX)


def write_table(event: Event, out: TextIO, width: int | None = None) -> None:
    from harness.textsafe import for_terminal
    time = event.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # Event text is attacker-controlled: terminal controls are shown escaped, never interpreted.
    out.write(for_terminal(
        f"{time}  {event.computer[:20]:<20}  {event.channel[:40]:<40}  {event.event_id:>5}  "
        f"{_one_line(summary(event), width)}"
    ) + "\n")


def run(args: argparse.Namespace) -> int:
    from harness.telemetry.readers import ReadStats
    from harness.textsafe import for_json_line
    stats = ReadStats()
    keep_raw = args.format == "jsonl" and not args.no_raw
    out = sys.stdout
    unreadable: list[str] = []

    def file_done(path: Path, mine: ReadStats) -> None:
        if not mine.damaged:
            return
        out.flush()  # the warning follows the events it concerns
        if mine.events:
            print(f"atomiclab: warning: {mine.damage_line(str(path))}", file=sys.stderr)
        else:  # damaged and nothing readable: an input error, yet the other files are still read
            print(f"atomiclab: error: {mine.damage_line(str(path))}: nothing readable", file=sys.stderr)
            unreadable.append(str(path))

    if args.limit == 0:
        return 0
    seen: dict[str, set[int]] = {}
    events = select(
        args.files,
        channels=args.channel,
        event_ids=args.event_id,
        keep_raw=keep_raw,
        stats=stats,
        on_file_done=file_done,
        seen=seen,
    )
    width = summary_width(out)
    shown = 0
    for shown, event in enumerate(events, start=1):
        if args.format == "jsonl":
            out.write(for_json_line(event.to_json()) + "\n")
        else:
            write_table(event, out, width)
        if args.limit is not None and shown >= args.limit:
            break
    if shown == 0 and seen and (args.channel or args.event_id):
        print(f"atomiclab: no event matched the filters; the files hold {held(seen)}", file=sys.stderr)
    return 2 if unreadable else 0


def held(seen: dict[str, set[int]], most: int = 12) -> str:
    """``Security 1102/4616; Windows PowerShell 400/403/600``: what to filter on instead."""
    parts = []
    for channel in sorted(seen):
        ids = sorted(seen[channel])
        shown = "/".join(map(str, ids[:most])) + ("/..." if len(ids) > most else "")
        parts.append(f"{channel} {shown}")
    return "; ".join(parts)
