"""Baseline expectations: what every executed Windows atomic must leave in the telemetry.

A test without an expectations file still asserts telemetry (issue 11 item 3): the executor's root
process creation carrying the run marker in its command line, and a process creation for each
program the atomic's command starts. Channels follow the lab: Sysmon EID 1 when Sysmon is on (or
unknown), Security 4688 when process auditing is on (both when both are; neither known to be on:
Sysmon EID 1, so the verdict names the lab gap). Field names are those of the events: Sysmon 1
``Image``/``CommandLine``, 4688 ``NewProcessName``/``CommandLine`` (docs/windows-telemetry.md).

"The programs the command starts" is read from the command text the way its shell runs it, and
deliberately conservatively: in cmd, the first word of each ``&``/``&&``/``||``/``|``/newline
separated command that is not a cmd built-in (``start X`` starts X); in PowerShell, a word ending in
``.exe``/``.com`` in command position, ``& "path"``, ``Start-Process X``, and bare words that are not
cmdlets, aliases or keywords. Names made of variables (``%x%``, ``$x``) are left out: their value
is not known here. Every expectation produced carries ``origin = "baseline"`` so reports can tell
them from the authored ones.
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.emulated.ps_stock import ALIASES, KEYWORDS
from harness.matching import Conditions
from harness.model import ExecutorName
from harness.telemetry.event import SECURITY, SYSMON
from harness.verdicts import DetectionExpectationLike

#: Program expectations per test at most (a long script is still judged on its first programs).
MAX_PROGRAMS = 12
BASELINE = "baseline"

#: The executor's own process, as Invoke-AtomicRedTeam starts it (harness.execution.executors).
EXECUTOR_IMAGES: Mapping[ExecutorName, str] = {
    ExecutorName.POWERSHELL: "powershell.exe",
    ExecutorName.COMMAND_PROMPT: "cmd.exe",
}

#: cmd.exe internal commands (``help`` on Windows Server 2022): they start no process.
CMD_BUILTINS = frozenset(
    [
    "assoc", "break", "call", "cd", "chdir", "cls", "color", "copy", "date", "del", "dir", "echo", "endlocal",
    "erase", "exit", "for", "ftype", "goto", "if", "md", "mkdir", "mklink", "move", "path", "pause", "popd",
    "prompt", "pushd", "rd", "rem", "ren", "rename", "rmdir", "set", "setlocal", "shift", "start", "time",
    "title", "type", "ver", "verify", "vol",
    ]
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BaselineEvent:
    """One baseline expected event (``harness.verdicts.EventExpectationLike``)."""

    id: str
    description: str
    channel: str
    event_id: int
    where: Conditions
    min_count: int = 1
    max_count: int | None = None
    requires: tuple[str, ...] = ()
    origin: str = BASELINE


@dataclass(frozen=True, slots=True)
class BaselineExpectations:
    """The baseline of one test (``harness.verdicts.TestExpectationsLike``): events only, no rules."""

    guid: str
    time_budget_s: float
    events: tuple[BaselineEvent, ...]
    detections: tuple[DetectionExpectationLike, ...] = ()

    __test__ = False


def _split_cmd(text: str) -> list[str]:
    """cmd command separators outside double quotes: newline, ``&``, ``&&``, ``||``, ``|``."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        if c == "&" and i > 0 and text[i - 1] in "<>":  # 2>&1: a redirection, not a separator
            buf.append(c)
            continue
        if not quoted and c in "\r\n&|":
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(c)
    parts.append("".join(buf))
    return [p.strip().lstrip("@").strip() for p in parts if p.strip()]


def _first_word(segment: str) -> tuple[str, str]:
    """The first (possibly double-quoted) word of ``segment`` and the rest."""
    if segment.startswith('"'):
        end = segment.find('"', 1)
        end = len(segment) if end < 0 else end
        return segment[1:end], segment[end + 1 :].strip()
    m = re.match(r"[^\s]+", segment)
    word = m.group(0) if m else ""
    return word, segment[len(word) :].strip()


def _cmd_programs(text: str) -> list[str]:
    out = []
    for seg in _split_cmd(text):
        seg = re.sub(r"^\(+", "", seg).strip()
        word, rest = _first_word(seg)
        low = word.lower()
        if low == "start":  # start ["title"] [/flags] program
            while rest:
                w, rest2 = _first_word(rest)
                quoted_title = rest.startswith('"') and not rest.startswith('"/')
                if w.startswith("/") or (quoted_title and not ntpath.splitext(w)[1]):
                    rest = rest2
                    continue
                word = w
                break
            else:
                continue
            low = word.lower()
        elif low in CMD_BUILTINS or low.startswith(("rem", "::", ":")) or low.endswith(":"):
            continue
        out.append(word)
    return out


def _mask_ps(text: str) -> str:
    """``text`` with comments and string contents blanked (separators inside them are not
    statements), except a quoted word right after the call operator ``&`` (a program path)."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#" and (i == 0 or text[i - 1] in " \t\n;{(") and not text.startswith("#{", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
            continue
        if c in "\"'":
            j = text.find(c, i + 1)
            j = n - 1 if j < 0 else j
            if not re.search(r"&\s*$", text[:i]):
                out[i + 1 : j] = "x" * (j - i - 1)
            i = j + 1
            continue
        i += 1
    return "".join(out)


def _ps_programs(text: str) -> list[str]:
    out = []
    original, text = text, _mask_ps(text)  # same length: offsets agree
    # statement starts: line starts, after ; | { ( and the call operator
    for m in re.finditer(r"(?:^|[;|{(\n]|&&|\|\|)\s*(&\s*)?(\"[^\"]+\"|'[^']+'|[^\s;|(){}\"']+)", text):
        call, raw = m.group(1), m.group(2)
        if raw[:1] in "\"'" and not call:  # a string in command position is a value, not a program
            continue
        word = raw.strip("\"'")
        low = word.lower()
        if not word or word[0] in "$[@-.0123456789+!" or "$" in word or "#{" in word:
            continue
        if low in ("start-process", "saps", "start"):
            rest = original[m.end() :].lstrip()
            fp = re.match(r"(?:-FilePath\s+)?(\"[^\"]+\"|'[^']+'|[^\s;|(){}\"']+)", rest, re.IGNORECASE)
            if fp and not fp.group(1).startswith(("-", "$")) and "$" not in fp.group(1):
                out.append(fp.group(1).strip("\"'"))
            continue
        ext = ntpath.splitext(word)[1].lower()
        bare = not ext and "-" not in word and low not in ALIASES and low not in KEYWORDS and word.isalnum()
        if call or ext in (".exe", ".com") or bare:
            out.append(word)
    return out


def programs_started(executor: ExecutorName, command: str) -> list[str]:
    """Image names (``net.exe``) the command starts directly, in order, each once."""
    if executor is ExecutorName.COMMAND_PROMPT:
        names = _cmd_programs(command)
    elif executor is ExecutorName.POWERSHELL:
        names = _ps_programs(command)
    else:
        return []
    out: list[str] = []
    for n in names:
        if "%" in n or "!" in n:
            continue
        base = ntpath.basename(n.replace("/", "\\"))
        if not base:
            continue
        if not ntpath.splitext(base)[1]:
            base += ".exe"
        if base.lower() not in (o.lower() for o in out):
            out.append(base)
    return out[:MAX_PROGRAMS]


def _channels(features: Mapping[str, bool] | None) -> list[tuple[str, int, str]]:
    """(channel, event id, image field) of the process-creation events the lab logs."""
    sysmon = features is None or features.get("sysmon", True)
    security = features is not None and features.get("process_auditing", False)
    out = []
    if sysmon or not security:
        out.append((SYSMON, 1, "Image"))
    if security:
        out.append((SECURITY, 4688, "NewProcessName"))
    return out


def baseline_expectations(
    guid: str,
    executor: ExecutorName,
    command: str | None,
    *,
    marker: str,
    features: Mapping[str, bool] | None,
    time_budget_s: float,
) -> BaselineExpectations | None:
    """The baseline of a Windows atomic run with ``marker`` (None for other executors or no marker).

    ``command`` is the atomic's command after input substitution (None: only the root is expected).
    """
    image = EXECUTOR_IMAGES.get(executor)
    if image is None or not marker:
        return None
    events: list[BaselineEvent] = []
    channels = _channels(features)
    for channel, eid, field in channels:
        label = "Sysmon" if channel == SYSMON else "Security"
        events.append(
            BaselineEvent(
                id=f"baseline-root-{eid}",
                description=f"{image} started with the atomic's command line ({label} {eid})",
                channel=channel,
                event_id=eid,
                where=Conditions.parse({f"{field}|endswith": f"\\{image}", "CommandLine|contains": marker}),
                requires=("sysmon",) if channel == SYSMON else ("process_auditing", "process_command_line"),
            )
        )
    channel, eid, field = channels[0]
    for n, program in enumerate(programs_started(executor, command or "")):
        events.append(
            BaselineEvent(
                id=f"baseline-program-{n + 1}",
                description=f"the command starts {program}",
                channel=channel,
                event_id=eid,
                where=Conditions.parse({f"{field}|endswith": f"\\{program}"}),
                requires=("sysmon",) if channel == SYSMON else ("process_auditing",),
            )
        )
    return BaselineExpectations(guid=guid, time_budget_s=time_budget_s, events=tuple(events))


def origins(verdicts: Sequence[object]) -> tuple[int, int]:
    """(authored, baseline) counts of event verdicts (anything without ``origin`` is authored)."""
    base = sum(1 for v in verdicts if getattr(v, "origin", "authored") == BASELINE)
    return len(verdicts) - base, base
