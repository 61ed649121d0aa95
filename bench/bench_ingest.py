"""Ingest benchmark: ``python bench/bench_ingest.py [--events N] [--evtx FILE]``.

Prints, in one run on the same file:
 (a) events/s of the raw ``evtx`` parser iterating JSON records (nothing decoded),
 (b) events/s of EVTX -> normalized Event (``read_events``), and the ratio b/a (target >= 0.5);
     EVTX EventData is decoded on first use of ``Event.fields``, so (b'') also reads every event's fields;
 events/s of event XML -> Event (``parse_event_xml``; target >= 50k/s on one core);
 peak RSS while streaming an N-event XML file (default 1M) built in a temp dir by repeating real
 events, next to the peak for N/10 events: equal peaks mean memory is flat.
Needs ../shared/telemetry/public (the real recordings); prints ratios, asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evtx  # noqa: E402

from harness.telemetry.readers import parse_event_xml, read_events  # noqa: E402

PUBLIC = ROOT / ".." / "shared" / "telemetry" / "public"
DEFAULT_EVTX = (
    PUBLIC
    / "atomic-evtx/attacks_by_category_unfiltered/discovery/Remote System Discovery - ping sweep"
    / "T1018-4_Microsoft-Windows-Sysmon_Operational.evtx"
)
BUDGET_SECONDS = 8.0


def rates(runs: dict[str, Callable[[], int]], budget_s: float = BUDGET_SECONDS) -> dict[str, float]:
    """Events/s per labelled run, best of interleaved rounds.

    Each ``run()`` processes the same input once and returns its event count. Rounds alternate the
    runs so that load from other processes hits all of them alike, and the best round of each is
    kept (the least disturbed one), which makes the ratios stable on a shared machine.
    """
    for run in runs.values():
        run()  # warm-up (imports, page cache)
    best = dict.fromkeys(runs, float("inf"))
    counts = dict.fromkeys(runs, 0)
    started = time.perf_counter()
    rounds = 0
    while rounds < 3 or (time.perf_counter() - started < budget_s and rounds < 200):
        for label, run in runs.items():
            t0 = time.perf_counter()
            counts[label] = run()
            best[label] = min(best[label], time.perf_counter() - t0)
        rounds += 1
    result = {label: counts[label] / best[label] for label in runs}
    for label, per_s in result.items():
        print(f"  {label:<52} {per_s:>12,.0f} events/s")
    print(f"  (best of {rounds} interleaved rounds)")
    return result


def raw_evtx(path: Path) -> int:
    n = 0
    for _record in evtx.PyEvtxParser(str(path)).records_json():
        n += 1
    return n


def wevtutil_xml(path: Path) -> str:
    """The file's events as ``wevtutil qe /f:xml`` prints them (compact, single-quoted attributes)."""
    from lxml import etree

    parser = etree.XMLParser(remove_blank_text=True)
    parts = []
    for record in evtx.PyEvtxParser(str(path)).records():
        element = etree.fromstring(record["data"].encode("utf-8"), parser)
        text = etree.tostring(element, encoding="unicode")
        # wevtutil quotes attributes with '; lxml escapes " inside values, so tags hold no literal "
        parts.append(re.sub(r"<[^>]+>", lambda m: m.group(0).replace('"', "'"), text))
    return "".join(parts)


def cpu_reference() -> float:
    """Seconds for a fixed pure-Python loop, to put the events/s figures in context."""
    t0 = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


_CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from harness.telemetry.readers import read_events
n = 0
for _ in read_events(Path({path!r}), keep_raw=True):
    n += 1
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def stream_peak_rss(path: Path) -> tuple[int, int]:
    """(events, peak RSS KiB) of a fresh interpreter streaming ``path``."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), path=str(path))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the streaming input")
    parser.add_argument("--evtx", type=Path, default=DEFAULT_EVTX)
    args = parser.parse_args(argv)
    if not args.evtx.is_file():
        print(f"bench_ingest: {args.evtx} not found (needs ../shared/telemetry/public)", file=sys.stderr)
        return 2

    print(f"EVTX file: {args.evtx.name} ({args.evtx.stat().st_size:,} bytes)")
    evtx_rates = rates(
        {
            "(a) raw evtx records_json() iteration": lambda: raw_evtx(args.evtx),
            "(b) read_events -> Event (keep_raw=False)": lambda: sum(1 for _ in read_events(args.evtx, keep_raw=False)),
            "(b') read_events -> Event (keep_raw=True)": lambda: sum(1 for _ in read_events(args.evtx)),
            # EVTX fields are decoded on first use: this row pays for that in every event.
            "(b'') as (b), then every event's fields read": lambda: sum(
                1 for e in read_events(args.evtx, keep_raw=False) if e.fields.get("") is None
            ),
        }
    )
    a, b, b_raw, b_fields = evtx_rates.values()
    print(f"  ratio b/a = {b / a:.2f}   b'/a = {b_raw / a:.2f}   b''/a = {b_fields / a:.2f}   (target for b/a >= 0.50)")
    # Where (b)'s time goes, per record: decoding the parser's JSON alone (in C) is the floor.
    from harness.telemetry.readers.evtxfile import _fast_from_rs_json, json_loads

    texts = [r["data"] for r in evtx.PyEvtxParser(str(args.evtx)).records_json()]
    decoded = [json_loads(t) for t in texts]
    stage = rates(
        {
            f"    JSON decode only ({getattr(json_loads, '__module__', '?')})": lambda: len(
                [json_loads(t) for t in texts]
            ),
            "    mapping decoded JSON -> Event only": lambda: len(
                [_fast_from_rs_json(d, "bench", None) for d in decoded]
            ),
        },
        budget_s=3.0,
    )
    per_record = "  ".join(f"{1e6 / v:.2f} us" for v in (a, *stage.values()))
    print(f"  per record: raw parse / decode / map = {per_record}")

    xml = wevtutil_xml(args.evtx)
    count = sum(1 for _ in parse_event_xml(xml, keep_raw=False))
    print(f"XML: {count} events, {len(xml) / count:,.0f} chars/event (wevtutil /f:xml shape)")
    x, _x_raw = rates(
        {
            "XML -> Event (keep_raw=False)": lambda: sum(1 for _ in parse_event_xml(xml, keep_raw=False)),
            "XML -> Event (keep_raw=True)": lambda: sum(1 for _ in parse_event_xml(xml)),
        }
    ).values()
    print(f"  XML target 50,000 events/s: {'met' if x >= 50_000 else 'NOT met'} ({x / 50_000:.2f}x)")
    spin = cpu_reference()
    print(f"CPU reference: pure-Python loop of 10M additions took {spin:.2f}s (a typical 2020s core: ~0.3s)")

    with tempfile.TemporaryDirectory(prefix="atomiclab-bench-") as tmp:
        repeats = max(1, args.events // count)
        small_repeats = max(1, repeats // 10)
        big = Path(tmp) / "events.xml"
        small = Path(tmp) / "events-small.xml"
        started = time.perf_counter()
        block = xml.encode("utf-8")
        with big.open("wb") as fh:
            fh.write(b"<Events>")
            for _ in range(repeats):
                fh.write(block)
            fh.write(b"</Events>")
        with small.open("wb") as fh:
            for _ in range(small_repeats):
                fh.write(block)
        print(
            f"streaming input: {repeats * count:,} events, {big.stat().st_size / 1e9:.2f} GB "
            f"(written in {time.perf_counter() - started:.1f}s)"
        )
        n_small, rss_small = stream_peak_rss(small)
        started = time.perf_counter()
        n_big, rss_big = stream_peak_rss(big)
        elapsed = time.perf_counter() - started
        print(f"  peak RSS streaming {n_small:>9,} events: {rss_small / 1024:8.1f} MiB")
        print(
            f"  peak RSS streaming {n_big:>9,} events: {rss_big / 1024:8.1f} MiB "
            f"({n_big / elapsed:,.0f} events/s incl. interpreter start, keep_raw=True)"
        )
        print(f"  RSS growth for 10x the events: {(rss_big - rss_small) / 1024:+.1f} MiB")
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"(bench process peak RSS {self_rss / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
