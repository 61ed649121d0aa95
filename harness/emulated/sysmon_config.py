"""A Sysmon XML configuration as data: parsed completely, applied to every Sysmon event the emulated
host writes.

Contract:
- ``load_sysmon_config(path)`` / ``parse_sysmon_config(text, source=...)`` read a real Sysmon config
  (``<Sysmon schemaversion=...>`` with ``HashAlgorithms`` and ``EventFiltering``). Anything the
  emulator cannot read completely - an unknown element, event type, field, condition, onmatch or
  groupRelation value, a malformed file - raises ``SysmonConfigError`` naming the file, the line
  and the element; nothing is silently ignored.
- ``SysmonConfig.decide(event_id, data)`` -> ``(logged, rule_name)`` for one event's EventData:
  * filters with ``onmatch="include"`` log only matching events; ``onmatch="exclude"`` log every
    event but matching ones; when both exist for an event type, exclude matches take precedence;
    an empty ``<X onmatch="include"/>`` therefore logs nothing of that type, an empty exclude
    everything;
  * an event type the config does not mention at all is logged only if Sysmon logs it without
    rules (process create, process terminate: Sysmon's defaults) - network connections, file
    creates and the other types need a filter;
  * inside a ``RuleGroup`` the filter's items (bare field conditions and ``<Rule>`` elements) are
    combined with the group's ``groupRelation`` (``and`` when absent); a ``<Rule>`` combines its
    conditions with its own ``groupRelation`` (``and`` when absent). Filters outside a RuleGroup
    use Sysmon's classic rule: conditions on one field are OR-ed, different fields AND-ed;
  * conditions compare case-insensitively: ``is``, ``is not``, ``is any``, ``contains``,
    ``contains any``, ``contains all``, ``excludes``, ``excludes any``, ``excludes all``,
    ``begin with``, ``not begin with``, ``end with``, ``not end with``, ``less than``,
    ``more than``, ``image`` (the full path or just the file name); ``any``/``all`` lists are
    ``;``-separated;
  * ``rule_name`` is the ``name`` of the matching include rule (or of its group) as Sysmon writes
    it into ``RuleName``, else ``-``.
- ``SysmonConfig.hashes(data)`` renders ``Hashes`` for the configured ``HashAlgorithms`` in the order
  Sysmon writes them (``SHA1=..,MD5=..,SHA256=..,IMPHASH=..``; ``*`` is all four).
- ``default_sysmon_config(project_root)`` is the config the lab installs: ``lab/cache/sysmonconfig.xml``
  when the lab cache holds it (checked against its pin in ``lab/cache/cache.lock`` when pinned); else
  the built-in ``lab_default.xml``, written by this project to reproduce the pinned sysmon-modular
  "excludes-only" config's event-type behaviour (which types it logs, ``HashAlgorithms *``; the
  third-party rule lists are not copied). Its ``source`` says which one was used.

Sources: Microsoft Learn, "Sysmon configuration files" and the Sysinternals Sysmon page (onmatch,
exclude precedence, empty include = log nothing, conditions list, HashAlgorithms); Sysinternals blog
"Sysmon - The rules about rules" (same field OR, different fields AND, RuleGroup groupRelation) and
"Sysmon 10.4 rule enhancements" (``<Rule>``, ``contains any``/``contains all``, ``;`` lists). The
``Hashes`` order is as in the public recordings (eqllib, OTRF: ``SHA1=..,MD5=..,SHA256=..,IMPHASH=..``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from lxml import etree

from harness.errors import ContentError

#: Event types by configuration element name -> Sysmon event ids (RegistryEvent covers 12-14 ...).
EVENT_TYPES: dict[str, tuple[int, ...]] = {
    "ProcessCreate": (1,), "FileCreateTime": (2,), "NetworkConnect": (3,), "ProcessTerminate": (5,),
    "DriverLoad": (6,), "ImageLoad": (7,), "CreateRemoteThread": (8,), "RawAccessRead": (9,),
    "ProcessAccess": (10,), "FileCreate": (11,), "RegistryEvent": (12, 13, 14), "FileCreateStreamHash": (15,),
    "PipeEvent": (17, 18), "WmiEvent": (19, 20, 21), "DnsQuery": (22,), "FileDelete": (23,),
    "ClipboardChange": (24,), "ProcessTampering": (25,), "FileDeleteDetected": (26,),
    "FileBlockExecutable": (27,), "FileBlockShredding": (28,), "FileExecutableDetected": (29,),
}  # fmt: skip
EVENT_NAME_OF: dict[int, str] = {eid: name for name, ids in EVENT_TYPES.items() for eid in ids}

#: Filterable fields of the event types the emulated host writes (the EventData names of those
#: events, as in harness/emulated/eventlog.py); fields of other types are accepted unchecked.
MODELLED_FIELDS: dict[str, frozenset[str]] = {
    "ProcessCreate": frozenset({
        "RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "FileVersion", "Description", "Product",
        "Company", "OriginalFileName", "CommandLine", "CurrentDirectory", "User", "LogonGuid", "LogonId",
        "TerminalSessionId", "IntegrityLevel", "Hashes", "ParentProcessGuid", "ParentProcessId", "ParentImage",
        "ParentCommandLine", "ParentUser",
    }),
    "NetworkConnect": frozenset({
        "RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "User", "Protocol", "Initiated",
        "SourceIsIpv6", "SourceIp", "SourceHostname", "SourcePort", "SourcePortName", "DestinationIsIpv6",
        "DestinationIp", "DestinationHostname", "DestinationPort", "DestinationPortName",
    }),
    "ProcessTerminate": frozenset({"RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "User"}),
    "FileCreate": frozenset({
        "RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetFilename", "CreationUtcTime", "User",
    }),
}  # fmt: skip

#: Logged when the config has no filter for the type (Sysmon's defaults without rules).
DEFAULT_LOGGED = frozenset({"ProcessCreate", "ProcessTerminate"})

HASH_ORDER = ("SHA1", "MD5", "SHA256", "IMPHASH")

TOP_LEVEL = frozenset({
    "HashAlgorithms", "EventFiltering", "CheckRevocation", "DnsLookup", "ArchiveDirectory", "CopyOnDeletePE",
    "CopyOnDeleteSIDs", "CopyOnDeleteExtensions", "CopyOnDeleteProcesses", "DriverName", "FieldSizes",
    "CaptureClipboard",
})  # fmt: skip


def _split(v: str) -> list[str]:
    return [p for p in v.split(";") if p]


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _image_match(value: str, want: str) -> bool:
    return value == want or value.rsplit("\\", 1)[-1] == want


#: condition name -> predicate(field value lower-cased, rule value lower-cased)
CONDITIONS: dict[str, Callable[[str, str], bool]] = {
    "is": lambda v, w: v == w,
    "is not": lambda v, w: v != w,
    "is any": lambda v, w: v in _split(w),
    "contains": lambda v, w: w in v,
    "contains any": lambda v, w: any(p in v for p in _split(w)),
    "contains all": lambda v, w: all(p in v for p in _split(w)),
    "excludes": lambda v, w: w not in v,
    "excludes any": lambda v, w: any(p not in v for p in _split(w)),
    "excludes all": lambda v, w: all(p not in v for p in _split(w)),
    "begin with": lambda v, w: v.startswith(w),
    "not begin with": lambda v, w: not v.startswith(w),
    "end with": lambda v, w: v.endswith(w),
    "not end with": lambda v, w: not v.endswith(w),
    "less than": lambda v, w: (a := _num(v)) is not None and (b := _num(w)) is not None and a < b,
    "more than": lambda v, w: (a := _num(v)) is not None and (b := _num(w)) is not None and a > b,
    "image": _image_match,
}


class SysmonConfigError(ContentError):
    """The Sysmon configuration cannot be read completely (names file, line, element)."""


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: str
    name: str | None = None

    def matches(self, data: Mapping[str, str]) -> bool:
        return CONDITIONS[self.op](data.get(self.field, "").lower(), self.value.lower())


@dataclass(frozen=True, slots=True)
class Rule:
    """A ``<Rule>`` (relation over its conditions) or one bare condition (a rule of one)."""

    conditions: tuple[Condition, ...]
    relation: str = "and"
    name: str | None = None

    def matches(self, data: Mapping[str, str]) -> bool:
        hits = (c.matches(data) for c in self.conditions)
        return all(hits) if self.relation == "and" else any(hits)

    @property
    def rule_name(self) -> str | None:
        return self.name or next((c.name for c in self.conditions if c.name), None)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """One ``<ProcessCreate onmatch=...>`` element (in a RuleGroup or not)."""

    event: str
    onmatch: str
    rules: tuple[Rule, ...]
    relation: str | None  # the RuleGroup's groupRelation; None: classic per-field combination
    group_name: str | None = None

    def match(self, data: Mapping[str, str]) -> Rule | None:
        """The rule that made the filter match (None: no match)."""
        if not self.rules:
            return None
        if self.relation == "or":
            return next((r for r in self.rules if r.matches(data)), None)
        if self.relation == "and":
            return self.rules[0] if all(r.matches(data) for r in self.rules) else None
        # Classic: bare conditions on one field OR-ed, fields AND-ed; <Rule>s each must match.
        by_field: dict[str, list[Rule]] = {}
        for r in self.rules:
            key = r.conditions[0].field if len(r.conditions) == 1 and r.name is None else f"rule#{id(r)}"
            by_field.setdefault(key, []).append(r)
        hit: Rule | None = None
        for rules in by_field.values():
            found = next((r for r in rules if r.matches(data)), None)
            if found is None:
                return None
            hit = hit or found
        return hit


@dataclass(frozen=True)
class SysmonConfig:
    """A parsed Sysmon configuration (see the module docstring)."""

    source: str
    sha256: str
    schema_version: str
    hash_algorithms: tuple[str, ...]
    filters: Mapping[str, tuple[EventFilter, ...]] = field(default_factory=dict)
    data: bytes = field(default=b"", repr=False)  # the file's bytes (the host stores them as is)

    def without(self, event: str) -> SysmonConfig:
        """This config with ``event`` logging nothing (an empty include), for degraded lab states."""
        filters = dict(self.filters)
        filters[event] = (EventFilter(event, "include", (), "or"),)
        return replace(self, filters=filters)

    def dump_rules(self) -> str:
        """The rule part of ``sysmon -c``: one `` - Type onmatch: x`` line per filter, its rules
        indented below it (an empty include has no rule lines)."""
        lines = []
        for event, filters in self.filters.items():
            for f in filters:
                combine = "And" if f.relation == "and" else "Or"
                lines.append(f" - {event:<34} onmatch: {f.onmatch}   combine rules using '{combine}'")
                for r in f.rules:
                    for c in r.conditions:
                        lines.append(f"\t{c.field:<30} filter: {c.op:<12} value: '{c.value}'")
        return "\n".join(lines) + "\n"

    @property
    def hashing_algorithms(self) -> str:
        """``HashingAlgorithms`` as ``sysmon -c`` prints it."""
        algos = HASH_ORDER if "*" in self.hash_algorithms else [a for a in HASH_ORDER if a in self.hash_algorithms]
        return ",".join(algos)

    def logs_type(self, event_id: int) -> bool:
        """Whether events of this id can be logged at all (some filter could let one through)."""
        name = EVENT_NAME_OF.get(event_id, "")
        filters = self.filters.get(name)
        if not filters:
            return name in DEFAULT_LOGGED
        return any(f.onmatch == "exclude" or f.rules for f in filters)

    def decide(self, event_id: int, data: Mapping[str, str]) -> tuple[bool, str]:
        """(logged, RuleName) for one event of ``event_id`` with EventData ``data``."""
        name = EVENT_NAME_OF.get(event_id, "")
        filters = self.filters.get(name)
        if not filters:
            return name in DEFAULT_LOGGED, "-"
        includes = [f for f in filters if f.onmatch == "include"]
        excludes = [f for f in filters if f.onmatch == "exclude"]
        if any(f.match(data) is not None for f in excludes):
            return False, "-"
        if not includes:
            return True, "-"
        for f in includes:
            rule = f.match(data)
            if rule is not None:
                return True, rule.rule_name or f.group_name or "-"
        return False, "-"

    def hashes(self, data: bytes) -> str:
        """``Hashes`` for the configured algorithms. IMPHASH is the MD5 of the import table; the
        emulated images have none, so it is the MD5 of the image's name bytes (labelled emulated)."""
        algos = set(HASH_ORDER) if "*" in self.hash_algorithms else set(self.hash_algorithms)
        parts = []
        for a in HASH_ORDER:
            if a not in algos:
                continue
            if a == "IMPHASH":
                digest = hashlib.md5(b"imports:" + data[:64], usedforsecurity=False).hexdigest()
            else:
                digest = hashlib.new(a.lower(), data).hexdigest()
            parts.append(f"{a}={digest.upper()}")
        return ",".join(parts)

    def describe(self) -> str:
        return f"{self.source} (SHA-256 {self.sha256})"


def _line(el: object) -> str:
    line = getattr(el, "sourceline", None)
    return f":{line}" if line else ""


def parse_sysmon_config(data: bytes, *, source: str) -> SysmonConfig:
    """Parse a Sysmon XML configuration completely (see the module docstring)."""
    sha = hashlib.sha256(data).hexdigest()

    def fail(what: str, el: object | None = None, hint: str = "fix the Sysmon configuration") -> SysmonConfigError:
        line = getattr(el, "sourceline", None)
        return SysmonConfigError(f"Sysmon config: {what}", file=source, line=line, hint=hint)

    # No entities, no network, no DTD: a config is data from the user.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise SysmonConfigError(
            f"Sysmon config: not well-formed XML ({exc.msg})", file=source, line=exc.lineno,
            hint="fix the Sysmon configuration",
        ) from None  # fmt: skip
    if root.tag != "Sysmon":
        raise fail(f"root element <{root.tag}> is not <Sysmon>", root)
    schema = root.get("schemaversion") or ""
    if not schema:
        raise fail("<Sysmon> has no schemaversion attribute", root)
    algos: tuple[str, ...] = ("SHA1",)  # Sysmon's default without HashAlgorithms
    filters: dict[str, list[EventFilter]] = {}
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comments
        if tag not in TOP_LEVEL:
            raise fail(f"unknown element <{tag}> under <Sysmon>", child)
        if tag == "HashAlgorithms":
            names = [a.strip().upper() for a in (child.text or "").split(",") if a.strip()]
            for a in names:
                if a not in (*HASH_ORDER, "*"):
                    raise fail(
                        f"<HashAlgorithms> names an unknown algorithm {a!r}", child,
                        hint="use md5, sha1, sha256, imphash or *",
                    )  # fmt: skip
            algos = tuple(names) or algos
        elif tag == "EventFiltering":
            for item in child:
                if not isinstance(item.tag, str):
                    continue
                if item.tag == "RuleGroup":
                    relation = (item.get("groupRelation") or "and").lower()
                    if relation not in ("and", "or"):
                        raise fail(f"<RuleGroup groupRelation={relation!r}> is neither 'and' nor 'or'", item)
                    members = [m for m in item if isinstance(m.tag, str)]
                    if len(members) != 1:
                        raise fail(f"<RuleGroup> holds {len(members)} event filters; Sysmon allows exactly one", item)
                    f = _event_filter(members[0], relation, item.get("name") or None, fail)
                else:
                    f = _event_filter(item, None, None, fail)
                filters.setdefault(f.event, []).append(f)
    return SysmonConfig(
        source=source, sha256=sha, schema_version=schema, hash_algorithms=algos,
        filters={k: tuple(v) for k, v in filters.items()}, data=data,
    )  # fmt: skip


def _event_filter(
    el: object, relation: str | None, group_name: str | None, fail: Callable[..., SysmonConfigError]
) -> EventFilter:
    tag = getattr(el, "tag", "")
    if tag not in EVENT_TYPES:
        raise fail(f"unknown event type element <{tag}> in <EventFiltering>", el)
    get = el.get  # type: ignore[attr-defined]
    onmatch = (get("onmatch") or "").lower()
    if onmatch not in ("include", "exclude"):
        raise fail(f'<{tag}> needs onmatch="include" or "exclude" (got {onmatch!r})', el)
    rules: list[Rule] = []
    for child in el:  # type: ignore[attr-defined]
        if not isinstance(child.tag, str):
            continue
        if child.tag == "Rule":
            rel = (child.get("groupRelation") or "and").lower()
            if rel not in ("and", "or"):
                raise fail(f"<{tag}><Rule groupRelation={rel!r}> is neither 'and' nor 'or'", child)
            conds = tuple(_condition(tag, c, fail) for c in child if isinstance(c.tag, str))
            if not conds:
                raise fail(f"<{tag}><Rule> has no conditions", child)
            rules.append(Rule(conds, rel, child.get("name") or None))
        else:
            rules.append(Rule((_condition(tag, child, fail),)))
    return EventFilter(tag, onmatch, tuple(rules), relation, group_name)


def _condition(event: str, el: object, fail: Callable[..., SysmonConfigError]) -> Condition:
    tag = getattr(el, "tag", "")
    known = MODELLED_FIELDS.get(event)
    if known is not None and tag not in known:
        raise fail(f"<{event}> has no field <{tag}>", el, hint=f"fields of {event}: {', '.join(sorted(known))}")
    if not tag[:1].isalpha() or any(c for c in tag if not (c.isalnum() or c == "_")):
        raise fail(f"<{event}><{tag}> is not a field name", el)
    op = (el.get("condition") or "is").lower()  # type: ignore[attr-defined]
    if op not in CONDITIONS:
        raise fail(f"<{event}><{tag} condition={op!r}> is not a Sysmon condition", el, hint=", ".join(CONDITIONS))
    return Condition(tag, op, (getattr(el, "text", None) or "").strip(), el.get("name") or None)  # type: ignore[attr-defined]


def load_sysmon_config(path: Path) -> SysmonConfig:
    """Read and parse a Sysmon config file (SysmonConfigError when unreadable or incomplete)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SysmonConfigError(
            f"cannot read Sysmon config {path}: {exc.strerror}", file=str(path), hint="check the path"
        ) from None
    return parse_sysmon_config(data, source=str(path))


BUILTIN_NAME = "lab_default.xml"


def default_sysmon_config(project_root: Path | None = None) -> SysmonConfig:
    """The config the lab installs (see the module docstring)."""
    if project_root is not None:
        cached = project_root / "lab" / "cache" / "sysmonconfig.xml"
        if cached.is_file():
            cfg = load_sysmon_config(cached)
            pin = _pinned_sha256(project_root / "lab" / "cache" / "cache.lock", "sysmonconfig.xml")
            if pin is not None and pin != cfg.sha256:
                raise SysmonConfigError(
                    f"{cached} does not match its pin in lab/cache/cache.lock (SHA-256 {cfg.sha256})",
                    file=str(cached),
                    hint="re-run lab/fetch-cache.sh, or review and re-pin the configuration",
                )
            return cfg
    data = resources.files("harness.emulated").joinpath("sysmon", BUILTIN_NAME).read_bytes()
    return parse_sysmon_config(data, source=f"built-in {BUILTIN_NAME} (lab/cache/sysmonconfig.xml absent)")


def _pinned_sha256(lock: Path, name: str) -> str | None:
    try:
        lines = lock.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name and not line.lstrip().startswith("#"):
            return parts[1].lower() if parts[1] != "-" else None
    return None


__all__ = [
    "SysmonConfig",
    "SysmonConfigError",
    "default_sysmon_config",
    "load_sysmon_config",
    "parse_sysmon_config",
]
