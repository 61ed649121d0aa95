"""Issue 16: hostile telemetry as a test suite. Byte mutations of the real recordings in
../shared/telemetry/public (EVTX, JSON, the event XML those EVTX render, gzip and zip containers)
and hypothesis-built JSON records and event XML are read, printed and serialized as every command
does. Invariants per input:

* only HarnessError subclasses may escape (no traceback, no UnicodeEncodeError, no RecursionError);
* no stall: a generous per-input alarm (a hang detector, not a speed assertion) fails the test;
* bounded memory: the traced peak stays under a fixed cap plus a small multiple of the input;
* no silent loss: an input that is not blank either gives events, or counts damage, or raises.

The recordings are referenced by relative path and the byte-mutation tests skip when absent (CI
has them beside the checkout). ``ATOMICLAB_FUZZ_SCALE=N`` multiplies the mutation counts (CI: 1).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import signal
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli.events_cmd import write_table
from harness.errors import HarnessError
from harness.telemetry.readers import ReadStats, read_events
from harness.textsafe import for_json_line

PUBLIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "telemetry" / "public"
SCALE = max(1, int(os.environ.get("ATOMICLAB_FUZZ_SCALE", "1")))
STALL_S = 30  # a hang detector: real inputs of this size read in well under a second
MEMORY_CAP = 64 << 20

AE = "atomic-evtx/attacks_by_category_unfiltered"
SEEDS = {
    "evtx": [
        f"{AE}/command-and-control/Testing usage of uncommonly used port with PowerShell/T1571-1_Windows PowerShell.evtx",
        f"{AE}/discovery/Port-Scanning -24 Subnet with PowerShell/T1046-10_Microsoft-Windows-Sysmon_Operational.evtx",
    ],
    "json": [
        f"{AE}/command-and-control/Testing usage of uncommonly used port with PowerShell/json/T1571-1_System.json",
        "sigma-regression-data/regression_data/rules/windows/process_creation/proc_creation_win_findstr_recon_pipe_output/"
        "ccb5742c-c248-4982-8c5c-5571b9275ad3.json",
    ],
}
#: Inserted at random places: what hostile exporters and attackers put into telemetry.
TOKENS = [b"\\ud800", b"\\udfff\\ud800", b"\x1b[2J\x1b]0;x\x07", b"\xc2\x9b", b"1e999", b"-1e400", b"9" * 400,
          b"[" * 3000, b"{" * 3000, b"<" * 500, b"<!DOCTYPE x [<!ENTITY a SYSTEM 'file:///etc/passwd'>]>", b"&a;",
          b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b" " * 9000, b"\n" * 5000, b"NaN", b"Infinity", b'"', b"\\"]


class _Stall(BaseException):
    """Raised by the alarm: not an Exception, so no reader can swallow it."""


@contextmanager
def _guard(label: str, size: int) -> Iterator[None]:
    def alarm(_signum: int, _frame: object) -> None:
        raise _Stall(f"{label}: no result within {STALL_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, STALL_S)
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    cap = MEMORY_CAP + 40 * size
    assert peak < cap, f"{label}: traced peak {peak >> 20} MiB over the {cap >> 20} MiB cap"


def _blank(data: bytes) -> bool:
    return not data.replace(b"\xef\xbb\xbf", b"").strip()


def consume(path: Path, label: str) -> str:
    """Read ``path`` as `events`/`detect`/`evaluate` do (read, print, serialize); the outcome:
    ``events``, ``damaged`` (nothing readable, damage counted), ``error`` (HarnessError), ``empty``."""
    data = path.read_bytes()
    stats = ReadStats()
    try:
        with _guard(label, len(data)):
            try:
                n = 0
                for event in read_events(path, stats=stats):
                    n += 1
                    out = io.StringIO()
                    write_table(event, out)
                    out.getvalue().encode("utf-8")
                    for_json_line(event.to_json()).encode("utf-8")
                    json.dumps(event.to_dict(), ensure_ascii=False).encode("utf-8", "backslashreplace")
            except HarnessError as exc:
                assert "\n" not in str(exc), f"{label}: a multi-line error: {exc!s:.300}"
                return "error"
    except _Stall as exc:
        pytest.fail(str(exc))
    if n:
        return "events"
    if stats.damaged:
        return "damaged"
    assert _blank(data) or (b"<Event" not in data and b"{" not in data and b"ElfChnk" not in data), (
        f"{label}: silent loss: {len(data)} bytes read as no event, no damage, no error"
    )
    return "empty"


def _seed(kind: str, index: int) -> bytes:
    path = PUBLIC / SEEDS[kind][index]
    if not path.is_file():
        pytest.skip(f"public recording not found at {path} (it lives beside the project, not in it)")
    return path.read_bytes()


def _xml_seed() -> bytes:
    """Event XML as wevtutil prints it, of real events: the first 25 of a Sysmon recording."""
    from xml.sax.saxutils import escape, quoteattr

    path = PUBLIC / SEEDS["evtx"][1]
    if not path.is_file():
        pytest.skip(f"public recording not found at {path}")
    parts = ["<Events>"]
    for n, e in enumerate(read_events(path, keep_raw=False)):
        if n == 25:
            break
        data = "".join(f"<Data Name={quoteattr(k)}>{escape(v)}</Data>" for k, v in e.fields.items())
        parts.append(
            '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
            f"<Provider Name={quoteattr(e.provider)}/><EventID>{e.event_id}</EventID>"
            f"<TimeCreated SystemTime=\"{e.time.isoformat().replace('+00:00', 'Z')}\"/>"
            f"<EventRecordID>{e.record_id}</EventRecordID><Channel>{escape(e.channel)}</Channel>"
            f"<Computer>{escape(e.computer)}</Computer></System><EventData>{data}</EventData></Event>"
        )
    parts.append("</Events>\n")
    return "\n".join(parts).encode("utf-8")


def mutate(data: bytes, rng: random.Random, *, header: int = 0) -> bytes:
    """One to three random edits; with ``header``, half of them land in the first ``header`` bytes
    (EVTX file and chunk headers, where parsers decide what to trust)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not buf:
            buf += rng.choice(TOKENS)
            continue
        end = min(len(buf), header) if header and rng.random() < 0.5 else len(buf)
        at = rng.randrange(end)
        op = rng.randrange(6)
        if op == 0:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(end)
                buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            n = rng.randint(1, 64)
            buf[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
        elif op == 2:
            del buf[at:at + rng.randint(1, 512)]
        elif op == 3:
            n = rng.randint(1, 2048)
            buf[at:at] = buf[at:at + n] * rng.randint(2, 5)
        elif op == 4:
            del buf[at:]
        else:
            buf[at:at] = rng.choice(TOKENS)
    return bytes(buf)


def _run_mutations(tmp_path: Path, kind: str, data: bytes, count: int, seed: int, *, header: int = 0,
                   wrap: str = "") -> dict[str, int]:
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for i in range(count):
        mutated = mutate(data, rng, header=header)
        if wrap == "gzip":
            mutated = gzip.compress(mutated) if rng.random() < 0.5 else mutate(gzip.compress(data), rng)
        elif wrap == "zip":
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("a.json", mutated)
            mutated = archive.getvalue() if rng.random() < 0.5 else mutate(archive.getvalue(), rng)
        path = tmp_path / f"{kind}-{seed}-{i}.bin"
        path.write_bytes(mutated)
        outcome = consume(path, f"{kind} seed {seed} mutation {i} ({path.name})")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        path.unlink()
    return outcomes


@pytest.mark.parametrize("index", [0, 1])
def test_mutated_evtx(tmp_path: Path, index: int) -> None:
    data = _seed("evtx", index)
    original = tmp_path / "original.evtx"
    original.write_bytes(data)
    assert consume(original, "original") == "events"
    count = (40 if index == 0 else 12) * SCALE
    outcomes = _run_mutations(tmp_path, "evtx", data, count, 100 + index, header=4096 + 512)
    assert sum(outcomes.values()) == count


@pytest.mark.parametrize("index", [0, 1])
def test_mutated_json(tmp_path: Path, index: int) -> None:
    data = _seed("json", index)
    outcomes = _run_mutations(tmp_path, "json", data, 60 * SCALE, 200 + index)
    assert sum(outcomes.values()) == 60 * SCALE


def test_mutated_event_xml(tmp_path: Path) -> None:
    data = _xml_seed()
    original = tmp_path / "original.xml"
    original.write_bytes(data)
    assert consume(original, "original xml") == "events"
    outcomes = _run_mutations(tmp_path, "xml", data, 60 * SCALE, 300)
    assert sum(outcomes.values()) == 60 * SCALE


@pytest.mark.parametrize("wrap", ["gzip", "zip"])
def test_mutated_containers(tmp_path: Path, wrap: str) -> None:
    data = _seed("json", 0)
    outcomes = _run_mutations(tmp_path, wrap, data, 30 * SCALE, 400 + len(wrap), wrap=wrap)
    assert sum(outcomes.values()) == 30 * SCALE


@pytest.mark.parametrize("transform", ["blank-prefix", "bom", "crlf", "gzip", "zip", "blank-lines"])
def test_harmless_transforms_lose_no_event(tmp_path: Path, transform: str) -> None:
    """The same events whatever the wrapping: a transform that changes no event must change no count."""
    data = _seed("json", 0)
    plain = tmp_path / "plain.json"
    plain.write_bytes(data)
    expected = len(list(read_events(plain)))
    assert expected > 0
    if transform == "blank-prefix":
        changed = b" \r\n\t" * 5000 + data
    elif transform == "bom":
        changed = b"\xef\xbb\xbf" + data
    elif transform == "crlf":
        changed = data.replace(b"\n", b"\r\n")
    elif transform == "gzip":
        changed = gzip.compress(data)
    elif transform == "blank-lines":
        changed = b"\n\n\n" + data + b"\n\n"
    else:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("x.json", data)
        changed = archive.getvalue()
    path = tmp_path / "changed.bin"
    path.write_bytes(changed)
    assert len(list(read_events(path))) == expected


# -- structure-aware: hypothesis ------------------------------------------------------------------

HOSTILE_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x1b", "\x9b", "\u202e", "\x00", "\ud800", "\udfff", "\ufffe", "\n", "\r", "<", "&", "]"]),
    ),
    max_size=60,
)
SCALARS = st.one_of(
    st.none(), st.booleans(), HOSTILE_TEXT, st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner,
                                                                                                 max_size=4),
                           max_leaves=8)
TIMES = st.one_of(SCALARS, st.just("2024-10-22T14:46:21.9615373Z"), st.just(1700000000123))


@st.composite
def records(draw: st.DrawFn) -> object:
    """A record of one of the known shapes, every value possibly hostile."""
    shape = draw(st.sampled_from(["atomiclab", "winlogbeat", "flat", "evtx", "eqllib", "any"]))
    data = draw(st.dictionaries(HOSTILE_TEXT, JSON_VALUES, max_size=4))
    if shape == "atomiclab":
        return {"format": "atomiclab.event/1", "channel": draw(SCALARS), "event_id": draw(SCALARS),
                "time": draw(TIMES), "fields": draw(st.one_of(st.just(data), JSON_VALUES))}
    if shape == "winlogbeat":
        return {"@timestamp": draw(TIMES), "winlog": {"channel": draw(SCALARS), "event_id": draw(SCALARS),
                                                      "event_data": data}}
    if shape == "flat":
        return {"EventID": draw(SCALARS), "Channel": draw(SCALARS), "@timestamp": draw(TIMES), **data}
    if shape == "evtx":
        return {"Event": {"System": {"EventID": draw(SCALARS), "Channel": draw(SCALARS),
                                     "TimeCreated": {"#attributes": {"SystemTime": draw(TIMES)}}},
                          "EventData": draw(st.one_of(st.just(data), JSON_VALUES))}}
    if shape == "eqllib":
        return {"EventId": draw(SCALARS), "UtcTime": draw(TIMES), **data}
    return draw(JSON_VALUES)


@settings(max_examples=60 * SCALE, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(records(), min_size=1, max_size=6), ascii_only=st.booleans(), as_array=st.booleans())
def test_hostile_json_records(tmp_path: Path, lines: list[object], ascii_only: bool, as_array: bool) -> None:
    dumped = [json.dumps(r, ensure_ascii=ascii_only) for r in lines]
    text = ("[" + ",".join(dumped) + "]") if as_array else "\n".join(dumped) + "\n"
    path = tmp_path / "h.jsonl"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    consume(path, f"hypothesis json {text[:200]!r}")


XML_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<&"), max_size=40)


@settings(max_examples=100 * SCALE, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(eid=st.one_of(st.integers(min_value=-5, max_value=10**12), XML_TEXT), channel=XML_TEXT,
       time=st.one_of(XML_TEXT, st.just("2024-10-22T14:46:21.9615373Z")),
       data=st.lists(st.tuples(XML_TEXT, XML_TEXT), max_size=5), junk=st.binary(max_size=20),
       junk_at=st.integers(min_value=0, max_value=400))
def test_hostile_event_xml(tmp_path: Path, eid: object, channel: str, time: str, data: list[tuple[str, str]],
                           junk: bytes, junk_at: int) -> None:
    items = "".join(f'<Data Name="{n.replace(chr(34), "")}">{v}</Data>' for n, v in data)
    xml = (f'<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><Provider Name="p"/>'
           f'<EventID>{eid}</EventID><TimeCreated SystemTime="{time.replace(chr(34), "")}"/>'
           f"<Channel>{channel}</Channel><Computer>c</Computer></System><EventData>{items}</EventData></Event>")
    raw = xml.encode("utf-8", "surrogatepass")
    raw = raw[:junk_at] + junk + raw[junk_at:]
    path = tmp_path / "h.xml"
    path.write_bytes(raw)
    consume(path, f"hypothesis xml {raw[:200]!r}")
