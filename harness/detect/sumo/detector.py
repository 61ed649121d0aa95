"""``SumoDetector``: one Sumo Logic Log Search rule evaluated locally (harness.detect.base.Detector)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.detect.base import DetectionResult, Engine, TimeWindow
from harness.detect.sumo.messages import MessageConfig
from harness.detect.sumo.parser import parse_query
from harness.errors import DetectionError
from harness.telemetry.event import Event

#: Largest accepted rule file. Real detection rules are a few KiB; a bigger file is not a rule, and
#: the lexer/parser time grows with it.
MAX_RULE_BYTES = 4 << 20


def read_rule_text(path: Path, *, what: str = "rule") -> str:
    """The text of a rule file (UTF-8, BOM allowed); a DetectionError naming the file when it is
    missing, not a regular file (a FIFO or device would block or never end), larger than
    MAX_RULE_BYTES, or not UTF-8. ``what`` names the file in the "cannot read" message."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError as exc:
        raise DetectionError(f"{path}: is a directory, not a rule file", hint="name a .sumo or .yml file") from exc
    except OSError as exc:
        raise DetectionError(f"{path}: cannot read {what}: {exc.strerror or exc}", hint="check the path") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise DetectionError(f"{path}: is a directory, not a rule file", hint="name a .sumo or .yml file")
        if not stat.S_ISREG(st.st_mode):
            raise DetectionError(f"{path}: not a regular file (a FIFO, socket or device)",
                                 hint="save the rule to a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        try:
            raw = fh.read(MAX_RULE_BYTES + 1)
        except OSError as exc:
            raise DetectionError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_RULE_BYTES:
        raise DetectionError(f"{path}: rule file is larger than {MAX_RULE_BYTES >> 20} MiB",
                             hint="a detection rule is a few KiB; check the path")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DetectionError(f"{path}:{line}: not UTF-8 text (byte {exc.start})",
                             hint="save the rule as UTF-8") from exc


class SumoDetector:
    """A Sumo query compiled once, evaluated over any number of event streams.

    ``rule`` is a ``Path`` to a ``.sumo`` file (rule id = file stem) or the query text itself
    (rule id ``rule_id`` or "inline"). Raises RuleSyntaxError (file:line:col) or
    UnsupportedRuleError at construction, never during evaluation.
    """

    def __init__(self, rule: Path | str, config: MessageConfig | None = None, *,
                 rule_id: str | None = None) -> None:
        from harness.detect.sumo.compiler import CompiledQuery  # not needed to lint or read a rule

        if isinstance(rule, Path):
            text = read_rule_text(rule)
            self._rule_id = rule_id or rule.stem
            self.path: Path | None = rule
        else:
            text = rule
            self._rule_id = rule_id or "inline"
            self.path = None
        self.text = text
        self.query = parse_query(text, self.path)
        self.compiled = CompiledQuery(self.query, config)

    @property
    def rule_id(self) -> str:
        return self._rule_id

    @property
    def engine(self) -> Engine:
        return Engine.SUMO_LOCAL

    @property
    def output_fields(self) -> tuple[str, ...] | None:
        """The query's declared output columns (``fields`` / aggregation), or None for 'all fields'."""
        cols = self.compiled.columns
        return None if cols is None else tuple(name for name, _ in cols)

    def prefilter(self) -> Callable[[str, int], bool] | None:
        """The compiled query's ``prefilter`` (see ``CompiledQuery.prefilter``)."""
        return self.compiled.prefilter()

    def evaluate(self, events: Iterable[Event], window: TimeWindow | None = None) -> DetectionResult:
        started = time.perf_counter()
        rows, sources, n = self.compiled.run(events, window)
        return DetectionResult(
            rule_id=self.rule_id,
            engine=Engine.SUMO_LOCAL,
            rows=tuple(rows),
            events_in=n,
            elapsed_s=time.perf_counter() - started,
            source_events=sources,
        )
