"""``atomiclab lint RULE...`` and ``atomiclab detect --rule RULE FILE...``: printing only.

lint: one ``FILE:LINE:COL: severity CODE: message`` line per finding; exit 1 with findings (notes
alone do not count), 0 without, 2 when a rule file cannot be read. detect: result rows as JSON lines
(the rule's output field names) or a table; an invalid rule prints its lint-style error line and
exits 2.

``detect --engine sumo-api --from ISO --to ISO [--endpoint URL-or-deployment]`` runs a ``.sumo``
rule in a real Sumo Logic tenant over that window (Search Job API; access id/key from
``SUMO_ACCESS_ID``/``SUMO_ACCESS_KEY`` or the keyring, endpoint from ``--endpoint`` or
``SUMO_API_ENDPOINT``) and prints the rows the same way; no FILE is needed then. Missing
credentials or endpoint, and any failure of the tenant call, are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.detect.base import DetectionResult, Detector, Engine, TimeWindow
from harness.errors import ContentError, DetectionError, HarnessError, TelemetryError

if TYPE_CHECKING:
    from harness.telemetry.event import Event


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lint",
        help="check detection rules for what the real engine would reject or read differently",
        description="Lint .sumo (Sumo Logic Log Search) and .yml (Sigma) rules. One line per finding: "
        "FILE:LINE:COL: severity CODE: message. Exit 0 clean, 1 findings, 2 unreadable rule.",
    )
    p.add_argument("rules", nargs="+", type=Path, metavar="RULE", help="rule files")
    p.set_defaults(handler=run_lint)

    p = sub.add_parser(
        "detect",
        help="run one detection rule over telemetry files",
        description="Evaluate a .sumo or .yml rule over event files (EVTX, XML, JSON, JSONL) and print "
        "the result rows; with --engine sumo-api, run a .sumo rule in a Sumo Logic tenant over "
        "--from/--to instead (credentials SUMO_ACCESS_ID/SUMO_ACCESS_KEY or the keyring). "
        "Exit 0 (whether or not the rule fired), 2 for an invalid rule or input, or a failed tenant call.",
    )
    p.add_argument("--rule", required=True, type=Path, help="the rule file (.sumo or .yml)")
    p.add_argument("--format", choices=("jsonl", "table"), default="jsonl", help="output format")
    p.add_argument(
        "--engine",
        choices=(ENGINE_LOCAL, str(Engine.SUMO_API)),
        default=ENGINE_LOCAL,
        help="local: evaluate over FILEs here (default); sumo-api: search the Sumo Logic tenant",
    )
    p.add_argument("--from", dest="start", metavar="ISO", help="window start, ISO 8601 (UTC unless an offset is given)")
    p.add_argument("--to", dest="end", metavar="ISO", help="window end (exclusive), ISO 8601")
    p.add_argument(
        "--endpoint",
        metavar="URL-OR-DEPLOYMENT",
        help="Sumo Logic API endpoint, e.g. us2 or https://api.us2.sumologic.com (default $SUMO_API_ENDPOINT)",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="telemetry files (local engine)")
    p.set_defaults(handler=run_detect)


ENGINE_LOCAL = "local"


def run_lint(args: argparse.Namespace) -> int:
    from harness.detect.lint import Severity, lint_rule
    worst = 0
    for rule in args.rules:
        try:
            findings = lint_rule(rule)
        except HarnessError as exc:
            print(f"atomiclab: error: {exc}", file=sys.stderr)
            worst = 2
            continue
        for f in findings:
            print(f)
        if any(f.severity is not Severity.NOTE for f in findings) and worst == 0:
            worst = 1
    return worst


def _read(path: Path, wanted: Callable[[str, int], bool] | None = None) -> Iterator[Event]:
    """Events of one file through the project's readers (JSONL only while they are unavailable)."""
    from harness.telemetry.event import Event
    try:
        readers = importlib.import_module("harness.telemetry.readers")
        read_events = readers.read_events
    except (ModuleNotFoundError, ImportError, AttributeError):
        read_events = None
    if read_events is not None:
        stats = readers.ReadStats()
        yield from read_events(path, stats=stats, wanted=wanted) if wanted is not None else read_events(
            path, stats=stats
        )
        if stats.damaged:  # the rule saw what was readable; say what was not
            print(f"atomiclab: warning: {stats.damage_line(str(path))}", file=sys.stderr)
        return
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield Event.from_json(line)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise TelemetryError(f"line {n}: not an atomiclab JSONL event ({exc})",
                                             source=path) from exc
    except OSError as exc:
        raise TelemetryError(f"cannot read: {exc.strerror or exc}", source=path) from exc


def _events(files: list[Path], wanted: Callable[[str, int], bool] | None = None) -> Iterator[Event]:
    for path in files:
        yield from _read(path, wanted)


def _prefilter(detector: Detector, window: TimeWindow | None) -> Callable[[str, int], bool] | None:
    """The rule's own channel/event-id filter, handed to the readers so lines the rule drops first
    are never decoded in full: only without a window (the window is applied before the filter and
    would count a skipped line differently) and only when the rule drops the readers' placeholder."""
    prefilter = getattr(detector, "prefilter", None)
    if window is not None or prefilter is None:
        return None
    wanted: Callable[[str, int], bool] | None = prefilter()
    if wanted is None:
        return None
    from harness.telemetry.readers.auto import SKIPPED

    return None if wanted(SKIPPED.channel, SKIPPED.event_id) else wanted


#: Cells are cut to this width, except the last column's (the widest one is moved there).
CELL_WIDTH = 60
#: Sumo Logic time fields (epoch milliseconds), shown as UTC times in the table.
TIME_FIELDS = ("_messageTime", "_receiptTime")


def _cell(v: object, width: int | None = CELL_WIDTH) -> str:
    text = "" if v is None else str(v)
    text = text.replace("\r", "").replace("\n", "⏎")
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _time_cell(v: object) -> object:
    """Epoch milliseconds as ``2024-10-22 14:46:22.972Z`` (anything else unchanged)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    try:
        t = datetime.fromtimestamp(v / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return v
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def table_lines(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Aligned text: one header, a rule, one line per row. The column with the longest values
    (typically the command line) is printed last and in full, so the useful text is never cut;
    the others are cut at CELL_WIDTH. Epoch-millisecond time fields are shown as UTC times."""
    from harness.textsafe import for_terminal
    cols = list(rows[0].keys())
    values = [{c: (_time_cell(r.get(c)) if c in TIME_FIELDS else r.get(c)) for c in cols} for r in rows]
    longest = max(cols, key=lambda c: max(len(_cell(v[c], None)) for v in values))
    if max(len(_cell(v[longest], None)) for v in values) > CELL_WIDTH:
        cols = [c for c in cols if c != longest] + [longest]
    # Cells are event text: terminal controls are shown escaped, never sent to the terminal.
    table = [[for_terminal(_cell(v[c], None if i == len(cols) - 1 else CELL_WIDTH)) for i, c in enumerate(cols)]
             for v in values]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    cols = [for_terminal(c) for c in cols]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table]
    return out


def _print_table(result: DetectionResult, label: str) -> None:
    if not result.rows:
        print(f"{label}: no results ({result.events_in} events)")
        return
    for line in table_lines(list(result.rows)):
        print(line)
    print(f"{label}: {len(result.rows)} row(s) from {result.events_in} events", file=sys.stderr)


def _instant(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 time; naive means UTC. ContentError (exit 2) naming the flag when malformed."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ContentError(f"{flag} {text!r} is not an ISO 8601 time",
                           hint="e.g. 2026-11-30T12:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _window(args: argparse.Namespace) -> TimeWindow | None:
    start, end = _instant(args.start, "--from"), _instant(args.end, "--to")
    if start is not None and end is not None and end <= start:
        raise ContentError(f"--to {args.end} is not after --from {args.start}")
    return None if start is None and end is None else TimeWindow(start, end)


def _tenant_detector(args: argparse.Namespace, window: TimeWindow | None) -> Detector:
    """The rule as a SumoApiDetector, with endpoint, window and credentials checked up front."""
    from harness.detect.sumo_api import ACCESS_ID_VAR, ACCESS_KEY_VAR, SumoApiDetector, SumoCredentials

    if args.rule.suffix.lower() != ".sumo":
        raise ContentError(f"{args.rule}: --engine sumo-api runs Sumo Logic (.sumo) rules only")
    if not args.files and (window is None or window.start is None or window.end is None):
        raise ContentError("--engine sumo-api needs --from and --to (the window searched in the tenant)")
    detector = SumoApiDetector.from_file(args.rule, endpoint=args.endpoint)
    try:
        SumoCredentials.from_environment()  # fail before any request, naming what to set
    except HarnessError as exc:
        raise DetectionError(
            f"no Sumo Logic credentials: {exc.message}",
            hint=f"export {ACCESS_ID_VAR} and {ACCESS_KEY_VAR}, or store them with `keyring set atomiclab NAME`",
        ) from None
    return detector


def run_detect(args: argparse.Namespace) -> int:
    from harness.detect.loader import load_detector
    from harness.textsafe import for_json_line
    window = _window(args)
    if args.engine == ENGINE_LOCAL:
        if not args.files:
            raise ContentError("detect needs telemetry FILEs with the local engine",
                               hint="or use --engine sumo-api --from ISO --to ISO")
        if args.endpoint:
            raise ContentError("--endpoint applies to --engine sumo-api only")
        try:
            detector = load_detector(args.rule)
        except DetectionError as exc:  # the lint-style line FILE:LINE:COL: message
            text = str(exc)
            at_position = text[len(str(args.rule)) + 1 :][:1].isdigit() and text.startswith(f"{args.rule}:")
            # a problem in the rule's text: the engine stops at the first, lint lists them all
            print(f"{text} (every problem: atomiclab lint {args.rule})" if at_position else text, file=sys.stderr)
            return 2
    else:
        detector = _tenant_detector(args, window)
    wanted = _prefilter(detector, window) if args.engine == ENGINE_LOCAL else None
    result = detector.evaluate(_events(args.files, wanted), window)
    if args.format == "table":
        label = result.rule_id if result.rule_id == args.rule.stem else f"{args.rule} ({result.rule_id})"
        _print_table(result, label)
    else:
        for row in result.rows:
            print(for_json_line(json.dumps(row, ensure_ascii=False, default=str)))
    return 0
