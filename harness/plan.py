"""The run plan: which atomic tests run on which targets, judged with which rules.

A ``RunPlan`` is plain data built before anything runs, so a bad selection or a missing rule is a
``ContentError`` up front rather than a surprise mid-run. Content hashes (SHA-256 of every atomic,
expectation, rule and lab file, and the content's git commit) are computed here too, because the
plan is what knows which files the run depends on.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.content.labconfig import TargetConfig
from harness.errors import ContentError
from harness.execution.arguments import substitute
from harness.execution.modes import ExecMode, ExecutionSettings, default_atomics_folder
from harness.model import AtomicFile, AtomicTest
from harness.results import ContentFile, ContentSource
from harness.verdicts import TestExpectationsLike, detection_checks

#: Default telemetry budget when a test has no expectations (seconds after the command started).
DEFAULT_BUDGET_S = 30.0
#: The published (upstream) rules, linted in every run so their defects are stated plainly.
PUBLISHED_RULES_DIR = "detections/sumo/upstream"
#: Suffix of a rule's entry judged through the Sumo Logic tenant (``run --sumo-tenant``).
TENANT_SUFFIX = "@sumo-api"


@dataclass(frozen=True, slots=True)
class PlannedTest:
    """One atomic test with its expectations (None when the expectations do not cover it)."""

    test: AtomicTest
    expectations: TestExpectationsLike | None = None

    @property
    def benign(self) -> bool:
        """Benign look-alikes live under an ``atomics/benign`` folder."""
        return "benign" in Path(self.test.source).parts

    def budget_s(self, default: float = DEFAULT_BUDGET_S) -> float:
        return float(self.expectations.time_budget_s) if self.expectations is not None else default


@dataclass(frozen=True, slots=True)
class RunPlan:
    """targets x tests, and the rules to judge.

    ``rule_paths`` maps every rule name used in verdicts (as the expectations spell it: a path
    relative to the content root; or as given with ``--rule``) to the file. ``extra_rules`` are the
    ``--rule`` ones, judged against the same expectations as the named rules of their engine.
    """

    targets: tuple[TargetConfig, ...]
    tests: tuple[PlannedTest, ...]
    rule_paths: Mapping[str, Path] = field(default_factory=dict)
    extra_rules: tuple[str, ...] = ()
    get_prereqs: bool = False
    command_timeout_s: float = 300.0
    default_budget_s: float = DEFAULT_BUDGET_S
    #: Input argument overrides: GUID (or ``"*"``) -> name -> value; ``resolve_arguments`` builds the
    #: checked per-test form (one entry per test GUID, no ``"*"``).
    arguments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    #: Invoke-AtomicRedTeam's mode (--check-prereqs, --cleanup) and --no-cleanup, for every target.
    mode: ExecMode = ExecMode.RUN
    cleanup: bool = True

    def settings_for(self, target: TargetConfig) -> ExecutionSettings:
        """The execution settings of ``target``: mode, cleanup, its atomics folder (lab.yaml
        ``atomics_folder``, else the platform's default)."""
        return ExecutionSettings(
            mode=self.mode,
            cleanup=self.cleanup,
            atomics_folder=target.atomics_folder or default_atomics_folder(target.platform),
        )

    def arguments_for(self, guid: str) -> dict[str, str]:
        out = dict(self.arguments.get("*", {}))
        out.update(self.arguments.get(guid, {}))
        return out

    @property
    def size(self) -> int:
        return len(self.targets) * len(self.tests)


@dataclass(frozen=True, slots=True)
class ArgOverride:
    """One ``--arg [GUID:]NAME=VALUE``: ``guid`` None applies to every selected test declaring NAME."""

    name: str
    value: str
    guid: str | None = None

    @property
    def flag(self) -> str:
        return f"--arg {self.guid + ':' if self.guid else ''}{self.name}={self.value!r}"


def parse_arg_override(text: str) -> ArgOverride:
    """``NAME=VALUE`` or ``GUID:NAME=VALUE`` -> ArgOverride; ValueError says what is wrong."""
    left, sep, value = text.partition("=")
    guid, colon, name = left.rpartition(":")
    name = name.strip()
    guid = guid.strip().lower()
    if not sep or not _ARG_NAME_RE.fullmatch(name) or (colon and not _GUID_RE.fullmatch(guid)):
        raise ValueError(f"{text!r}: expected NAME=VALUE or GUID:NAME=VALUE")
    return ArgOverride(name=name, value=value, guid=guid if colon else None)


def resolve_arguments(
    tests: Sequence[PlannedTest],
    *,
    lab: Mapping[str, Mapping[str, str]] | None = None,
    lab_source: str | None = None,
    cli: Sequence[ArgOverride] = (),
) -> dict[str, dict[str, str]]:
    """The checked input-argument overrides of every selected test: GUID -> name -> value.

    Precedence: YAML defaults < lab.yaml ``input_arguments`` (``"*"``, then the test's GUID) < CLI
    ``--arg NAME=VALUE`` < ``--arg GUID:NAME=VALUE`` (later ``--arg`` wins over an earlier one).
    A ``"*"`` / unscoped override applies to the tests that declare NAME; a scoped one must name a
    selected test and one of its arguments. Every value is checked the way execution will use it
    (declared type, then quoted into the command, cleanup and prerequisites), so a bad value is one
    ContentError naming the argument and the test before anything runs.
    """
    by_guid = {pt.test.guid.lower(): pt.test for pt in tests}
    lab = lab or {}
    for override in cli:
        if override.guid is not None:
            test = by_guid.get(override.guid)
            if test is None:
                raise ContentError(f"{override.flag}: no selected test has GUID {override.guid}")
            if override.name not in test.input_arguments:
                known = ", ".join(sorted(test.input_arguments)) or "none"
                raise ContentError(
                    f"{override.flag}: test {test.name!r} [{test.guid}] declares no input argument {override.name!r}",
                    hint=f"declared: {known}",
                )
        elif not any(override.name in t.input_arguments for t in by_guid.values()):
            raise ContentError(f"{override.flag}: no selected test declares an input argument {override.name!r}")
    out: dict[str, dict[str, str]] = {}
    for pt in tests:
        test = pt.test
        chosen: dict[str, tuple[str, str]] = {}  # name -> (value, where it came from)
        for name, value in lab.get("*", {}).items():
            if name in test.input_arguments:
                chosen[name] = (value, f"lab input_arguments.'*'.{name}")
        for name, value in lab.get(test.guid, {}).items():
            if name not in test.input_arguments:
                known = ", ".join(sorted(test.input_arguments)) or "none"
                raise ContentError(
                    f"input_arguments.{test.guid}.{name}: test {test.name!r} declares no input argument {name!r}",
                    file=lab_source,
                    hint=f"declared: {known}",
                )
            chosen[name] = (value, f"lab input_arguments.{test.guid}.{name}")
        for o in sorted(cli, key=lambda o: o.guid is not None):  # stable: unscoped first, then scoped
            if o.guid in (None, test.guid.lower()) and o.name in test.input_arguments:
                chosen[o.name] = (o.value, o.flag)
        if not chosen:
            continue
        for name, (value, origin) in chosen.items():
            _check_value(test, name, value, origin, lab_source if origin.startswith("lab ") else None)
        out[test.guid] = {name: value for name, (value, _) in chosen.items()}
    return out


def _check_value(test: AtomicTest, name: str, value: str, origin: str, file: str | None) -> None:
    """Render every template of ``test`` with just this override: a refusal names argument and test."""
    executor = test.executor.name
    templates = [(executor, test.executor.command), (executor, test.executor.cleanup_command)]
    dep_executor = test.dependency_executor_name or executor
    for dep in test.dependencies:
        templates += [(dep_executor, dep.prereq_command), (dep_executor, dep.get_prereq_command)]
    try:
        for ex, template in templates:
            if template and template.strip():
                substitute(template, test, ex, {name: value})
    except ContentError as exc:
        raise ContentError(
            f"{origin}: refused for test {test.name!r} [{test.guid}]: {exc.message}", file=file, hint=exc.hint
        ) from None


_ARG_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


#: ``T1046``, ``T1046.001``, ``T1046-3`` or ``T1046-1,3`` as Invoke-AtomicTest takes them (its
#: ``AtomicTechnique`` parameter splits ``-`` and ``,`` into test numbers, Public/Invoke-AtomicTest.ps1).
_TECHNIQUE_RE = re.compile(r"(T\d{4}(?:\.\d{3})?)(?:-(\d+(?:,\d+)*))?", re.IGNORECASE)


def select_tests(files: Sequence[AtomicFile], selectors: Sequence[str] = ()) -> list[AtomicTest]:
    """The tests named by technique id (``T1046``: all its tests), technique id and test number
    (``T1046-3``, 1-based as Invoke-AtomicRedTeam numbers them; ``T1046-1,3``), GUID or name, in the
    order given; or every test of ``files``."""
    if not selectors:
        return [t for f in files for t in f.tests]
    from harness.content.atomics import find_test  # content loader: only needed when selecting

    out: list[AtomicTest] = []
    for s in selectors:
        for t in _by_technique(files, s.strip()) or [find_test(files, s)]:
            if t not in out:
                out.append(t)
    return out


def _by_technique(files: Sequence[AtomicFile], selector: str) -> list[AtomicTest] | None:
    """The tests a ``T1046[-N[,M]]`` selector names, or None when it is not one."""
    m = _TECHNIQUE_RE.fullmatch(selector)
    if m is None:
        return None
    technique = m.group(1).upper()
    tests = [t for f in files if f.technique.upper() == technique for t in f.tests]
    if not tests:
        known = ", ".join(sorted({f.technique for f in files})[:10])
        raise ContentError(f"no technique {technique} in the atomics given", hint=f"techniques: {known}")
    if m.group(2) is None:
        return tests
    chosen: list[AtomicTest] = []
    for number in (int(n) for n in m.group(2).split(",")):
        if not 1 <= number <= len(tests):
            raise ContentError(f"{technique} has tests 1-{len(tests)}, not {number}",
                               hint=f"`atomiclab show {technique}` lists them")
        chosen.append(tests[number - 1])
    return chosen


def number_in_technique(files: Sequence[AtomicFile], test: AtomicTest) -> int | None:
    """The 1-based number of ``test`` within its technique (``T1046-3``), as Invoke-AtomicRedTeam shows it."""
    tests = [t for f in files if f.technique.upper() == test.technique.upper() for t in f.tests]
    return tests.index(test) + 1 if test in tests else None


def rules_of(
    tests: Sequence[PlannedTest], root: Path, extra: Sequence[Path] = ()
) -> tuple[dict[str, Path], tuple[str, ...]]:
    """Every rule the expectations name (resolved under ``root``) plus the extras, by verdict name."""
    paths: dict[str, Path] = {}
    for pt in tests:
        for check in detection_checks(pt.expectations):
            p = root / check.rule
            if not p.is_file():
                raise ContentError(
                    f"expectations of {pt.test.guid} name rule {check.rule!r}, which does not exist",
                    file=str(p),
                    hint="fix the rule path in the expectations file",
                )
            paths.setdefault(check.rule, p)
    names: list[str] = []
    for e in extra:
        if not e.is_file():
            raise ContentError("rule file not found", file=str(e), hint="check the --rule path")
        name = _display(e, root)
        paths.setdefault(name, e)
        names.append(name)
    return paths, tuple(names)


def published_rules(root: Path) -> dict[str, Path]:
    """The published upstream rules under ``root`` (``detections/sumo/upstream/*.sumo``), by the
    name a verdict would give them (path relative to ``root``)."""
    folder = root / PUBLISHED_RULES_DIR
    if not folder.is_dir():
        return {}
    return {_display(p, root): p for p in sorted(folder.glob("*.sumo")) if p.is_file()}


def tenant_rules(rule_paths: Mapping[str, Path]) -> dict[str, str]:
    """``RULE@sumo-api`` -> ``RULE`` for every judged Sumo Logic (``.sumo``) rule."""
    return {
        name + TENANT_SUFFIX: name
        for name, path in rule_paths.items()
        if path.suffix.lower() == ".sumo" and not name.endswith(TENANT_SUFFIX)
    }


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def content_files(
    root: Path,
    *,
    atomics: Sequence[Path] = (),
    expectations: Sequence[Path] = (),
    rules: Sequence[Path] = (),
    lab: Path | None = None,
) -> tuple[ContentFile, ...]:
    """SHA-256 of every content file the run used, paths relative to ``root`` where possible, each
    tagged with the git repository it came from (``content_provenance`` gives the repositories)."""
    return content_provenance(root, atomics=atomics, expectations=expectations, rules=rules, lab=lab)[0]


def content_provenance(
    root: Path,
    *,
    atomics: Sequence[Path] = (),
    expectations: Sequence[Path] = (),
    rules: Sequence[Path] = (),
    lab: Path | None = None,
) -> tuple[tuple[ContentFile, ...], tuple[ContentSource, ...]]:
    """``content_files`` and the git repositories (path, commit, dirty) those files came from."""
    out: list[ContentFile] = []
    disk: dict[str, Path] = {}
    seen: set[Path] = set()
    groups: list[tuple[str, Sequence[Path]]] = [
        ("atomic", atomics),
        ("expectation", expectations),
        ("rule", rules),
        ("lab", [lab] if lab else []),
    ]
    for kind, paths in groups:
        for p in paths:
            rp = p.resolve()
            if rp in seen or not rp.is_file():
                continue
            seen.add(rp)
            shown = _display(p, root)
            disk[shown] = rp
            out.append(ContentFile(path=shown, kind=kind, sha256=sha256_file(rp)))
    return with_provenance(out, disk, root)


def _git_top(folder: Path, cache: dict[Path, Path | None]) -> Path | None:
    """The git work tree holding ``folder`` (a ``.git`` folder or file above it), or None."""
    seen: list[Path] = []
    top: Path | None = None
    for candidate in (folder, *folder.parents):
        if candidate in cache:
            top = cache[candidate]
            break
        seen.append(candidate)
        if (candidate / ".git").exists():
            top = candidate
            break
    for s in seen:
        cache[s] = top
    return top


def _git(top: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def with_provenance(files: Sequence[ContentFile], paths: Mapping[str, Path], root: Path | None = None) -> tuple[
        tuple[ContentFile, ...], tuple[ContentSource, ...]]:
    """``files`` each tagged with the git repository it lies in, and those repositories' commits and
    dirty flags (``git status --porcelain --untracked-files=no`` not empty). ``paths``: each file's
    path on disk by its ``ContentFile.path``. One git call pair per repository, not per file. A
    repository at or below ``root`` is named relative to it (``.``), like the files; one elsewhere (a
    user's Atomic Red Team checkout) by its absolute path."""
    tops: dict[Path, Path | None] = {}
    sources: dict[Path, ContentSource] = {}
    out: list[ContentFile] = []
    for f in files:
        disk = paths.get(f.path)
        top = _git_top(disk.resolve().parent, tops) if disk is not None else None
        if top is None:
            out.append(f)
            continue
        if top not in sources:
            head = _git(top, "rev-parse", "HEAD")
            status = _git(top, "status", "--porcelain", "--untracked-files=no")
            shown = _display(top, root) if root is not None else str(top)
            sources[top] = ContentSource(shown, head.strip() if head else None, bool(status and status.strip()))
        out.append(replace(f, source=sources[top].path))
    return tuple(out), tuple(sources.values())


def git_commit(root: Path) -> str | None:
    """The content's git commit (with ``+dirty`` when the tree has changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("+dirty" if dirty.stdout.strip() else "")
