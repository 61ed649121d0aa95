"""How much of a set of atomics the emulated host models: building blocks used, and steps run.

Contract:
- ``windows_tests(atomics_root)`` loads every ``T*/T*.yaml`` under an Atomic Red Team ``atomics``
  folder and keeps the Windows tests with a ``powershell`` or ``command_prompt`` executor.
- ``steps_of(test)`` renders the test's steps with the default arguments exactly as the runner
  does (``arguments.substitute`` + ``executors.render_command_line``; ``PathToAtomicsFolder``
  becomes ``C:\\AtomicRedTeam\\atomics`` as Invoke-AtomicRedTeam does), tagged with their phase.
- ``count_blocks(executor, text)`` counts the building blocks a command text uses: programs,
  cmdlets, aliases, .NET types, registry and file operations. It is a lexical count (a real parser
  would stop at the first construct it does not know), meant to rank what to model next.
- ``run_step(step)`` runs one step in-process on a fresh ``EmulatedHost`` (its command line with a
  run marker, as the runner sends it) and returns what the host did not model: the host's own record
  (``EmulatedHost.not_modelled_under(marker)``), plus any stock command it wrongly called "not
  recognized" and internal errors (both would be model bugs; they count as unmodelled).
- ``measure(...)`` runs every test's prerequisites, command and cleanup in order on one fresh host
  per test (so files a prerequisite creates exist for the command) and aggregates the result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness.content.atomics import load_atomic_file
from harness.emulated.host import EmulatedHost
from harness.emulated.stock import StockCatalogue, load_stock
from harness.errors import ContentError
from harness.execution.arguments import substitute
from harness.execution.executors import new_run_marker, render_command_line
from harness.model import AtomicTest, ExecutorName

WINDOWS_EXECUTORS = (ExecutorName.POWERSHELL, ExecutorName.COMMAND_PROMPT)
ATOMICS_FOLDER = "C:\\AtomicRedTeam\\atomics"

PHASES = ("prereq", "get_prereq", "command", "cleanup")

_NOTE_RE = re.compile(r"atomiclab-emulated: '(.+?)' is not modelled")
_PS_LIMIT_RE = re.compile(r"([^\r\n]*?) (?:is|are) not modelled by the emulated PowerShell")
_INTERNAL_RE = re.compile(r"atomiclab-emulated: internal error: ([^\r\n]*)")
_NOT_RECOGNIZED_RE = re.compile(
    r"(?:^|\n)'([^'\r\n]+)' is not recognized as an internal or external command"
    r"|The term '([^'\r\n]+)' is not recognized as the name of a cmdlet"
)
_PARSER_RE = re.compile(r"ParserError: \(:\) \[\], ParentContainsErrorRecordException")


@dataclass(frozen=True, slots=True)
class Step:
    phase: str
    executor: ExecutorName
    text: str  # the command text with arguments substituted
    command_line: str  # as the runner sends it


@dataclass(frozen=True, slots=True)
class StepRun:
    """One step on the emulated host: exit code and what it did not model (normalised names)."""

    exit_code: int | None
    unmodelled: tuple[str, ...]
    timed_out: bool = False

    @property
    def fully_modelled(self) -> bool:
        return not self.unmodelled and not self.timed_out


@dataclass(slots=True)
class TestRun:
    technique: str
    name: str
    guid: str
    executor: str
    steps: dict[str, list[StepRun]] = field(default_factory=dict)
    error: str | None = None

    def phase_ok(self, phase: str) -> bool | None:
        runs = self.steps.get(phase)
        if not runs:
            return None
        return all(r.fully_modelled for r in runs)


# ------------------------------------------------------------------------------------- loading


def windows_tests(atomics_root: Path) -> tuple[list[AtomicTest], list[str]]:
    """The Windows powershell/command_prompt tests under ``atomics_root`` and one line per bad file."""
    tests: list[AtomicTest] = []
    problems: list[str] = []
    for path in sorted(atomics_root.glob("T*/T*.yaml")):
        try:
            f = load_atomic_file(path)
        except ContentError as exc:
            problems.append(str(exc).splitlines()[0])
            continue
        for t in f.tests:
            if "windows" in t.platforms and t.executor.name in WINDOWS_EXECUTORS:
                tests.append(t)
    return tests, problems


def _atomics_path(text: str) -> str:
    # Invoke-AtomicRedTeam replaces "$PathToAtomicsFolder" and "PathToAtomicsFolder" with the folder.
    return text.replace("$PathToAtomicsFolder", ATOMICS_FOLDER).replace("PathToAtomicsFolder", ATOMICS_FOLDER)


def steps_of(test: AtomicTest) -> list[Step]:
    """The test's steps with default arguments: each prereq check and get, the command, the cleanup."""
    out: list[Step] = []
    dep_exec = test.dependency_executor_name or test.executor.name

    def add(phase: str, executor: ExecutorName, template: str | None) -> None:
        if not template or not template.strip() or executor not in WINDOWS_EXECUTORS:
            return
        text = _atomics_path(substitute(template, test, executor, {}))
        out.append(Step(phase, executor, text, render_command_line(executor, text)))

    for dep in test.dependencies:
        add("prereq", dep_exec, dep.prereq_command)
        add("get_prereq", dep_exec, dep.get_prereq_command)
    add("command", test.executor.name, test.executor.command)
    add("cleanup", test.executor.name, test.executor.cleanup_command)
    return out


# ------------------------------------------------------------------------------ static counting

_PS_COMMAND_POS = re.compile(r"(?:^|[;|{}(\n]|&&|\|\||\bthen\b)[ \t]*(?:&[ \t]*)?([A-Za-z_%?][\w.\-\\:]*)", re.M)
_PS_VERB_NOUN = re.compile(r"(?<![\w$\-.\\/])([A-Z][a-z]+-[A-Z][A-Za-z0-9]+)(?![\w.\-\\])", re.I)
_PS_TYPE = re.compile(r"\[((?:System\.)?[A-Za-z][\w.]*(?:\+\w+)?)(?:\[\])?\]\s*(?=::|\$|\(|'|\"|\w|@)", re.I)
_PS_NEW_OBJECT = re.compile(r"New-Object\s+(?:-TypeName\s+|-ComObject\s+)?['\"]?([A-Za-z][\w.]*)", re.I)
_PS_REG_PATH = re.compile(r"\b(HKLM|HKCU|HKCR|HKU|Registry)::?\\?", re.I)
_PS_REG_CMDLETS = (
    "set-itemproperty", "new-itemproperty", "get-itemproperty", "remove-itemproperty", "new-item",
    "remove-item", "get-childitem", "test-path", "get-item", "get-itempropertyvalue",
)  # fmt: skip
_PS_FILE_CMDLETS = (
    "new-item", "copy-item", "move-item", "remove-item", "set-content", "add-content", "out-file",
    "get-content", "rename-item", "expand-archive", "compress-archive", "get-childitem",
)  # fmt: skip
_CMD_SPLIT = re.compile(r"&&|\|\||[&|()]")
_CMD_FILE_BUILTINS = ("copy", "xcopy", "move", "del", "erase", "mkdir", "md", "rmdir", "rd", "type", "ren", "rename")


def _program_name(word: str) -> str:
    base = word.strip("\"'").replace("/", "\\").rsplit("\\", 1)[-1].lower()
    return base


def count_blocks(executor: ExecutorName, text: str, stock: StockCatalogue) -> Counter[tuple[str, str]]:
    """(kind, name) -> uses in ``text``; kinds: program, cmdlet, alias, dotnet, registry, file."""
    c: Counter[tuple[str, str]] = Counter()
    if executor is ExecutorName.COMMAND_PROMPT:
        _count_cmd(text, stock, c)
    else:
        _count_ps(text, stock, c)
    return c


def _count_cmd(text: str, stock: StockCatalogue, c: Counter[tuple[str, str]]) -> None:
    for line in text.splitlines():
        for seg in _CMD_SPLIT.split(line):
            seg = seg.strip().lstrip("@")
            if not seg:
                continue
            words = seg.split()
            first = _program_name(words[0])
            skip = ("if", "for", "else", "not", "exist", "echo.")
            if not first or first in skip or first.startswith(("%", ">", "<")):
                continue
            c[("program", stock.canonical_program(first))] += 1
            low = [w.lower() for w in words]
            if first in ("reg", "reg.exe") and len(words) > 1:
                c[("registry", f"reg {low[1]}")] += 1
            if first in _CMD_FILE_BUILTINS:
                c[("file", f"cmd {first}")] += 1
            if ">" in seg:
                c[("file", "cmd redirect >")] += 1
            if first in ("powershell", "powershell.exe"):
                _count_ps(" ".join(words[1:]), stock, c)


def _count_ps(text: str, stock: StockCatalogue, c: Counter[tuple[str, str]]) -> None:
    seen_cmdlets: list[str] = []
    for m in _PS_VERB_NOUN.finditer(text):
        name = m.group(1)
        if name.split("-")[0].lower() in stock.verbs:
            canon = stock.canonical_cmdlet(name)
            c[("cmdlet", canon)] += 1
            seen_cmdlets.append(canon.lower())
    for m in _PS_COMMAND_POS.finditer(text):
        word = m.group(1)
        low = word.lower()
        if low in stock.ps_aliases:
            c[("alias", low)] += 1
            seen_cmdlets.append(stock.ps_aliases[low].lower())
        elif "-" not in word and low not in stock.ps_keywords:
            prog = _program_name(word)
            if prog.endswith(".exe") or stock.is_program(prog):
                c[("program", stock.canonical_program(prog))] += 1
                if prog.removesuffix(".exe") == "reg":
                    sub = text[m.end() :].split(None, 1)
                    if sub:
                        c[("registry", f"reg {sub[0].lower()}")] += 1
    for m in _PS_TYPE.finditer(text):
        c[("dotnet", m.group(1).lower().removeprefix("system."))] += 1
    for m in _PS_NEW_OBJECT.finditer(text):
        c[("dotnet", m.group(1).lower().removeprefix("system."))] += 1
    reg = bool(_PS_REG_PATH.search(text))
    for name in seen_cmdlets:
        if reg and name in _PS_REG_CMDLETS:
            c[("registry", name)] += 1
        elif name in _PS_FILE_CMDLETS:
            c[("file", name)] += 1
    if re.search(r"(?<![<>-])>>?\s*[\"'$\w]", text):
        c[("file", "ps redirect >")] += 1


# ------------------------------------------------------------------------------ running steps


def unmodelled_in(stderr: str, stock: StockCatalogue | None = None) -> list[str]:
    """The normalised names of what the stderr of a step says the emulated host does not model.

    Also a stock command the host called "not recognized" (an invented failure: a real Windows
    Server 2022 has it) and a PowerShell parse error of the emulated parser count as unmodelled."""
    stock = stock or load_stock()
    found: list[str] = []
    for m in _NOT_RECOGNIZED_RE.finditer(stderr):
        name = m.group(1) or m.group(2)
        if stock.is_program(name) or stock.is_cmdlet(name) or stock.alias_target(name) is not None:
            found.append("not recognized: " + name.lower())
    if _PARSER_RE.search(stderr):
        found.append("powershell: parse error")
    for m in _NOTE_RE.finditer(stderr):
        found.append(normalise_block(m.group(1)))
    for m in _PS_LIMIT_RE.finditer(stderr):
        found.append("powershell: " + _ps_limit_name(m.group(1)))
    for m in _INTERNAL_RE.finditer(stderr):
        found.append("internal error: " + m.group(1)[:60])
    return found


def _ps_limit_name(text: str) -> str:
    t = text.strip()
    m = re.search(r"\[([^\]]+)\]::(\w+)", t)
    if m:
        return f"[{m.group(1).lower().removeprefix('system.')}]::{m.group(2)}"
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", t)[:70]


def normalise_block(what: str) -> str:
    """A note's subject as a block name: the program or cmdlet, with a sub-command when it has one."""
    words = what.split()
    if not words:
        return what
    if "(" in what or what.startswith("PowerShell syntax"):
        return what if "(" in what else "PowerShell syntax"
    head = _program_name(words[0]).removesuffix(".exe")
    if "-" in head:
        head = load_stock().canonical_cmdlet(words[0])
    if len(words) > 1:
        sub = words[1].lower()
        if re.fullmatch(r"/?[a-z][a-z0-9_-]*:?", sub) and not sub.startswith("-") and len(sub) <= 20:
            return f"{head} {sub.rstrip(':')}"
        if sub.startswith("-") and head.lower() in ("powershell", "select-object", "new-object"):
            return f"{head} {sub}"
        if head.lower() == "new-object":
            return f"{head} {words[1]}"
    return head if "." not in what or head else what


def run_step(step: Step, *, timeout_s: float = 20.0) -> StepRun:
    """Run ``step`` on a fresh emulated host (in-process) and report what it did not model."""
    return _run_on(EmulatedHost(), step, timeout_s)


def _run_on(host: EmulatedHost, step: Step, timeout_s: float) -> StepRun:
    marker = new_run_marker()
    res = host.execute(render_command_line(step.executor, step.text, marker=marker), timeout_s=timeout_s)
    found = [normalise_block(s.what) for s in host.not_modelled_under(marker)]
    found += [x for x in unmodelled_in(res.stderr) if x.startswith(("not recognized", "internal error"))]
    return StepRun(exit_code=res.exit_code, unmodelled=tuple(dict.fromkeys(found)), timed_out=res.timed_out)


def run_test(test: AtomicTest, *, timeout_s: float = 20.0) -> TestRun:
    """Every step of ``test`` in order on one fresh emulated host."""
    out = TestRun(test.technique, test.name, test.guid, test.executor.name.value)
    try:
        steps = steps_of(test)
    except ContentError as exc:
        out.error = str(exc).splitlines()[0]
        return out
    host = EmulatedHost()
    for step in steps:
        run = _run_on(host, step, timeout_s)
        out.steps.setdefault(step.phase, []).append(run)
    return out


@dataclass(slots=True)
class Measurement:
    tests: list[TestRun]
    blocks: dict[str, Counter[tuple[str, str]]]  # phase -> (kind, name) -> uses
    problems: list[str]

    def share(self, phase: str = "command") -> tuple[int, int]:
        """(tests whose ``phase`` ran with no unmodelled step, tests that have that phase)."""
        have = [t for t in self.tests if t.phase_ok(phase) is not None]
        return sum(1 for t in have if t.phase_ok(phase)), len(have)

    def unmodelled(self, phases: Iterable[str] = ("command",)) -> Counter[str]:
        """Block -> number of tests in which it was an unmodelled step (counted once per test)."""
        c: Counter[str] = Counter()
        wanted = set(phases)
        for t in self.tests:
            names: set[str] = set()
            for phase, runs in t.steps.items():
                if phase in wanted:
                    for r in runs:
                        names.update(r.unmodelled)
                        if r.timed_out:
                            names.add("(timed out)")
            c.update(names)
        return c

    def to_json(self, top: int = 40) -> dict[str, object]:
        shares = {p: dict(zip(("fully_modelled", "tests"), self.share(p), strict=True)) for p in PHASES}
        return {
            "tests": len(self.tests),
            "by_executor": dict(Counter(t.executor for t in self.tests)),
            "share": shares,
            "unmodelled_top": {p: self.unmodelled([p]).most_common(top) for p in PHASES},
            "blocks_top": {
                p: [[k, n, cnt] for (k, n), cnt in counter.most_common(top * 3)] for p, counter in self.blocks.items()
            },
            "problems": self.problems,
            "per_test": [
                {
                    "technique": t.technique, "name": t.name, "guid": t.guid, "executor": t.executor,
                    "error": t.error,
                    "steps": {
                        p: [{"exit_code": r.exit_code, "unmodelled": list(r.unmodelled), "timed_out": r.timed_out}
                            for r in runs]
                        for p, runs in t.steps.items()
                    },
                }
                for t in self.tests
            ],
        }  # fmt: skip


def measure(
    tests: Sequence[AtomicTest],
    *,
    problems: Sequence[str] = (),
    workers: int = 8,
    timeout_s: float = 20.0,
    progress: Callable[[int, int], None] | None = None,
) -> Measurement:
    """Count blocks (statically) and run every test (dynamically, ``workers`` threads; steps that
    sleep for real spend wall time, not CPU)."""
    stock = load_stock()
    blocks: dict[str, Counter[tuple[str, str]]] = {p: Counter() for p in PHASES}
    for t in tests:
        try:
            for s in steps_of(t):
                blocks[s.phase].update(count_blocks(s.executor, s.text, stock))
        except ContentError:
            continue
    runs: list[TestRun] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, r in enumerate(pool.map(lambda t: run_test(t, timeout_s=timeout_s), tests), 1):
            runs.append(r)
            if progress is not None:
                progress(i, len(tests))
    return Measurement(runs, blocks, list(problems))
