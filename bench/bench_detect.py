"""Detection throughput: the local Sumo engine vs pySigma-sqlite vs a hand-written Python function.

Builds about 1M events from the real public recordings (shared/telemetry/public: every file the
project's readers accept), repeated with varied host, time, record id and process ids, then runs the
same logic (the corrected T1046 Sumo rule) three ways and prints events/s and ratios:

* local Sumo engine: detections/sumo/t1046_network_service_discovery.sumo through SumoDetector;
* Sigma: the same logic as a Sigma rule through harness.detect.sigma (pySigma + SQLite backend),
  including loading the events into an in-memory SQLite database (how Zircolite works);
* hand-written: a plain Python function with the same logic and output rows (the floor).

    python bench/bench_detect.py [--events 1000000] [--sigma-events N]

Targets (issue 4): Sumo >= 5x pySigma-sqlite, and within 1.5x of the hand-written function.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from harness.detect.sumo.detector import SumoDetector
from harness.errors import HarnessError
from harness.telemetry.event import SECURITY, SYSMON, Event
from harness.telemetry.readers import read_events

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / ".." / "shared" / "telemetry" / "public"
RULE = ROOT / "detections" / "sumo" / "t1046_network_service_discovery.sumo"

SIGMA_SAME_LOGIC = r"""
title: T1046 corrected Sumo logic, as Sigma (benchmark only)
id: 7c0d2f0e-5b8e-4f55-9d61-1f3f3c2b9a10
status: test
logsource:
    category: process_creation
    product: windows
detection:
    scanner:
        Image|re: '(?i)(nmap\.exe|masscan\.exe|zmap\.exe|netscan\.exe|tcping\.exe|superscan\.exe|nbtscan\.exe|angryipscan\.exe|winegddrop\.exe|rustscan|netdiscover|unicornscan)'
    shell:
        Image|re: '(?i)(powershell\.exe|pwsh\.exe|cmd\.exe)'
    native:
        CommandLine|re: '(?i)(test-netconnection|tnc\s|net\.sockets|1\.\.254|1\.\.65535|netstat\s+-a|arp\s+-a|net\s+view|net\s+use\\\\|route\s+print)'
    port_range:
        CommandLine|re: '(?i)(-p\s+|--top-ports|--ports|/p:|--rate)'
    service_version:
        CommandLine|re: '(?i)(-sv|-ss|-st|-su|-sn|--script|--open|-pn)'
    machine_account:
        User|endswith: '$'
    condition: (scanner or (shell and native) or port_range or service_version) and not machine_account
level: high
"""

# ---- the hand-written floor: same logic and rows as the corrected Sumo rule ---------------------------
_SCANNER = re.compile(r"(nmap\.exe|masscan\.exe|zmap\.exe|netscan\.exe|tcping\.exe|superscan\.exe|nbtscan\.exe"
                      r"|angryipscan\.exe|winegddrop\.exe|rustscan|netdiscover|unicornscan)")
_SHELL = re.compile(r"(powershell\.exe|pwsh\.exe|cmd\.exe)")
_NATIVE = re.compile(r"(test-netconnection|tnc\s|net\.sockets|1\.\.254|1\.\.65535|netstat\s+-a|arp\s+-a"
                     r"|net\s+view|net\s+use\\\\|route\s+print)")
_PORTS = re.compile(r"(-p\s+|--top-ports|--ports|/p:|--rate)")
_FLAGS = re.compile(r"(-sv|-ss|-st|-su|-sn|--script|--open|-pn)")
_SCOPE = {SYSMON.lower(), SECURITY.lower()}


def handwritten(events: Iterable[Event]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for ev in events:
        if ev.channel.lower() not in _SCOPE or ev.event_id not in (1, 4688):
            continue
        f = ev.fields
        cmd = f.get("CommandLine")
        image = f.get("Image")
        if image is None:
            image = f.get("NewProcessName")
        cmd_l = cmd.lower() if cmd is not None else None
        image_l = image.lower() if image is not None else None
        known = 1 if image_l is not None and _SCANNER.search(image_l) else 0
        native = 1 if image_l is not None and cmd_l is not None and _SHELL.search(image_l) and _NATIVE.search(
            cmd_l) else 0
        ports = 1 if cmd_l is not None and _PORTS.search(cmd_l) else 0
        flags = 1 if cmd_l is not None and _FLAGS.search(cmd_l) else 0
        score = known + native + ports + flags
        if score <= 0:
            continue
        user = f.get("User")
        if user is None:
            user = f.get("SubjectUserName")
        if user is not None and user.endswith("$"):
            continue
        parent = f.get("ParentImage")
        if parent is None:
            parent = f.get("ParentProcessName")
        rows.append({
            "_messageTime": int(ev.time.timestamp() * 1000), "_sourceHost": ev.computer, "user": user,
            "image_path": image, "cmdline": cmd, "parent_image": parent, "known_scanner": known,
            "native_scan": native, "port_range": ports, "service_version": flags, "suspicion_score": score,
            "detection_type": "KnownScanningTool" if known else "NativeToolScanning" if native
            else "PortScanPattern",
        })
    rows.sort(key=lambda r: r["_messageTime"], reverse=True)  # type: ignore[arg-type,return-value]
    return rows


# ---- corpus ---------------------------------------------------------------------------------------------
def recorded_events() -> list[Event]:
    """Every event the project's readers get from the public recordings (damaged files skipped)."""
    events: list[Event] = []
    for path in sorted(PUBLIC.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".evtx", ".json", ".xml", ".jsonl", ".gz", ".zip"):
            continue
        try:
            events.extend(read_events(path, keep_raw=False))
        except (HarnessError, OSError, ValueError):
            continue
    return events


def build_corpus(base: Sequence[Event], target: int) -> list[Event]:
    """``target`` events: the recorded ones over and over, each copy on another host, later, with other
    process ids (so field values differ from copy to copy, as in a real fleet)."""
    out: list[Event] = []
    copy = 0
    while len(out) < target:
        host = f"WKS-{copy % 97:03d}"
        shift = dataclasses.replace  # local alias: the loop below is hot
        for ev in base:
            if len(out) >= target:
                break
            fields = ev.fields
            if "ProcessId" in fields or "NewProcessId" in fields:
                fields = dict(fields)
                if "ProcessId" in fields:
                    fields["ProcessId"] = str(1000 + (copy * 7 + len(out)) % 60000)
                if "NewProcessId" in fields:
                    fields["NewProcessId"] = hex(1000 + (copy * 7 + len(out)) % 60000)
            out.append(shift(ev, computer=host, fields=fields, record_id=len(out),
                             time=ev.time + _DAY * copy))
        copy += 1
    return out


_DAY = __import__("datetime").timedelta(days=1)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="corpus size (default 1,000,000)")
    ap.add_argument("--sigma-events", type=int, default=None,
                    help="run the Sigma path on only the first N events (default: all)")
    args = ap.parse_args(argv)
    if not PUBLIC.exists():
        print(f"public recordings not found at {PUBLIC}", file=sys.stderr)
        return 2
    t, base = timed(recorded_events)
    assert isinstance(base, list)
    print(f"recorded events: {len(base):,} from {PUBLIC} ({t:.1f}s)")
    t, corpus = timed(lambda: build_corpus(base, args.events))
    assert isinstance(corpus, list)
    in_scope = sum(1 for e in corpus if e.event_id in (1, 4688) and e.channel.lower() in _SCOPE)
    print(f"corpus: {len(corpus):,} events ({in_scope:,} process creations), built in {t:.1f}s")

    sumo = SumoDetector(RULE)
    t_sumo, res = timed(lambda: sumo.evaluate(corpus))
    sumo_rows = res.rows  # type: ignore[attr-defined]
    t_hand, hand_rows = timed(lambda: handwritten(corpus))
    assert isinstance(hand_rows, list)
    same = [dict(r) for r in sumo_rows] == hand_rows
    n_sigma = min(args.sigma_events or len(corpus), len(corpus))
    sigma_line = "Sigma: harness.detect.sigma not available"
    eps_sigma = None
    try:
        from harness.detect.sigma import SigmaDetector

        sigma = SigmaDetector.from_text(SIGMA_SAME_LOGIC, source="bench-sigma.yml")
        t_sigma, sres = timed(lambda: sigma.evaluate(corpus[:n_sigma]))
        eps_sigma = n_sigma / t_sigma
        sumo_slice = sum(1 for r in sumo.evaluate(corpus[:n_sigma]).rows)
        sigma_line = (f"pySigma-sqlite   {eps_sigma:>12,.0f} events/s  ({n_sigma:,} events in {t_sigma:.2f}s, "
                      f"{len(sres.rows):,} rows; Sumo on the same slice: {sumo_slice:,} rows)")  # type: ignore[attr-defined]
    except ImportError as exc:
        sigma_line = f"Sigma: not run ({exc})"

    eps_sumo = len(corpus) / t_sumo
    eps_hand = len(corpus) / t_hand
    print(f"local Sumo       {eps_sumo:>12,.0f} events/s  ({t_sumo:.2f}s, {len(sumo_rows):,} rows)")
    print(f"hand-written     {eps_hand:>12,.0f} events/s  ({t_hand:.2f}s, {len(hand_rows):,} rows, "
          f"rows identical to Sumo: {same})")
    print(sigma_line)
    print(f"Sumo / hand-written time: {t_sumo / t_hand:.2f}x   (target <= 1.5x)")
    if eps_sigma is not None:
        print(f"Sumo / pySigma-sqlite speed: {eps_sumo / eps_sigma:.1f}x   (target >= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
