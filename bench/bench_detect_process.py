"""Whole-process detect: ``atomiclab detect`` vs a minimal hand-written script over the same file.

Builds N normalized events (JSONL, ``Event.to_json``) from the public recordings (as bench_detect
does: the recorded events over and over, each copy on another host, later, with other process ids),
then runs, as separate processes, side by side, best of ``--rounds`` interleaved rounds:

* hand-written (json): a minimal script that reads the JSONL with the standard ``json`` module,
  applies the corrected T1046 logic and prints the rows as JSON lines (what a user would write);
* hand-written (orjson): the same with ``orjson.loads`` (the floor with the fastest decoder);
* ``atomiclab detect --rule detections/sumo/t1046_network_service_discovery.sumo --format jsonl FILE``.

Prints wall time, CPU time and peak RSS of each, the ratios to the hand-written scripts, and whether
the rows are identical. With ``--evtx`` the same for an EVTX file (the hand-written script then reads
it with the ``evtx`` package's JSON records).

    python bench/bench_detect_process.py [--events 200000] [--rounds 3] [--evtx FILE]

No assertions: this prints numbers and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RULE = ROOT / "detections" / "sumo" / "t1046_network_service_discovery.sumo"

HANDWRITTEN = r'''
import re, sys
from datetime import datetime
LOADS = __import__(sys.argv[1]).loads
SCANNER = re.compile(r"(nmap\.exe|masscan\.exe|zmap\.exe|netscan\.exe|tcping\.exe|superscan\.exe|nbtscan\.exe"
                     r"|angryipscan\.exe|winegddrop\.exe|rustscan|netdiscover|unicornscan)")
SHELL = re.compile(r"(powershell\.exe|pwsh\.exe|cmd\.exe)")
NATIVE = re.compile(r"(test-netconnection|tnc\s|net\.sockets|1\.\.254|1\.\.65535|netstat\s+-a|arp\s+-a"
                    r"|net\s+view|net\s+use\\\\|route\s+print)")
PORTS = re.compile(r"(-p\s+|--top-ports|--ports|/p:|--rate)")
FLAGS = re.compile(r"(-sv|-ss|-st|-su|-sn|--script|--open|-pn)")
SCOPE = {"microsoft-windows-sysmon/operational", "security"}
rows = []
with open(sys.argv[2], "rb") as fh:
    for line in fh:
        ev = LOADS(line)
        if ev["channel"].lower() not in SCOPE or ev["event_id"] not in (1, 4688):
            continue
        f = ev["fields"]
        cmd = f.get("CommandLine")
        image = f.get("Image")
        if image is None:
            image = f.get("NewProcessName")
        cmd_l = cmd.lower() if cmd is not None else None
        image_l = image.lower() if image is not None else None
        known = 1 if image_l is not None and SCANNER.search(image_l) else 0
        native = 1 if image_l is not None and cmd_l is not None and SHELL.search(image_l) and NATIVE.search(cmd_l) else 0
        ports = 1 if cmd_l is not None and PORTS.search(cmd_l) else 0
        flags = 1 if cmd_l is not None and FLAGS.search(cmd_l) else 0
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
        t = datetime.fromisoformat(ev["time"].replace("Z", "+00:00"))
        rows.append({"_messageTime": int(t.timestamp() * 1000), "_sourceHost": ev["computer"], "user": user,
                     "image_path": image, "cmdline": cmd, "parent_image": parent, "known_scanner": known,
                     "native_scan": native, "port_range": ports, "service_version": flags, "suspicion_score": score,
                     "detection_type": "KnownScanningTool" if known else "NativeToolScanning" if native
                     else "PortScanPattern"})
rows.sort(key=lambda r: r["_messageTime"], reverse=True)
import json
out = sys.stdout
for r in rows:
    out.write(json.dumps(r, ensure_ascii=False) + "\n")
'''


_BUILD = """
import sys
sys.path.insert(0, {bench!r})
from bench_detect import build_corpus, recorded_events
corpus = build_corpus(recorded_events(), {n})
with open({path!r}, "w", encoding="utf-8") as fh:
    for ev in corpus:
        fh.write(ev.to_json() + "\\n")
print(len(corpus))
"""


def build_jsonl(n: int, path: Path) -> int:
    """Written by a child process: this one stays small, so the measured children (forked from it)
    do not inherit a large peak RSS (Linux counts the pre-exec image in ru_maxrss)."""
    code = _BUILD.format(bench=str(BENCH), n=n, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(out.stdout.split()[-1])


def run(argv: list[str]) -> tuple[float, float, int, bytes]:
    """(wall s, CPU s, peak RSS KiB, stdout) of one process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        data = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, data


def rows_of(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "events.jsonl"
        script = Path(tmp) / "handwritten.py"
        script.write_text(HANDWRITTEN, encoding="utf-8")
        n = build_jsonl(args.events, data)
        print(f"{n:,} normalized events, {data.stat().st_size / 1e6:.0f} MB of JSONL")
        commands = {
            "hand-written (json)": [sys.executable, str(script), "json", str(data)],
            "hand-written (orjson)": [sys.executable, str(script), "orjson", str(data)],
            "atomiclab detect": [sys.executable, "-m", "harness", "detect", "--rule", str(RULE), "--format", "jsonl",
                                 str(data)],
        }
        best: dict[str, tuple[float, float, int]] = {}
        outputs: dict[str, bytes] = {}
        for _ in range(args.rounds):
            for label, argv in commands.items():
                wall, cpu, rss, out = run(argv)
                prev = best.get(label)
                best[label] = (wall, cpu, rss) if prev is None else (min(prev[0], wall), min(prev[1], cpu),
                                                                    min(prev[2], rss))
                outputs[label] = out
    ref = rows_of(outputs["hand-written (json)"])
    print(f"{'':24}{'wall s':>9}{'cpu s':>8}{'peak MB':>9}{'rows':>7}  same rows")
    for label, (wall, cpu, rss) in best.items():
        rows = rows_of(outputs[label])
        print(f"{label:24}{wall:>9.2f}{cpu:>8.2f}{rss / 1024:>9.0f}{len(rows):>7}  {rows == ref}")
    d, j, o = best["atomiclab detect"], best["hand-written (json)"], best["hand-written (orjson)"]
    print(f"\natomiclab detect / hand-written (json):   wall {d[0] / j[0]:.2f}x  CPU {d[1] / j[1]:.2f}x  "
          f"memory {d[2] / j[2]:.2f}x   (goal <= 1.2x time, <= 2x memory)")
    print(f"atomiclab detect / hand-written (orjson): wall {d[0] / o[0]:.2f}x  CPU {d[1] / o[1]:.2f}x  "
          f"memory {d[2] / o[2]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
