"""``SumoDetector``: one Sumo Logic Log Search rule evaluated locally (harness.detect.base.Detector)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from harness.detect.base import DetectionResult, Engine, TimeWindow
from harness.detect.sumo.compiler import CompiledQuery
from harness.detect.sumo.messages import MessageConfig
from harness.detect.sumo.parser import parse_query
from harness.errors import DetectionError
from harness.telemetry.event import Event


def read_rule_text(path: Path) -> str:
    """The text of a rule file; unreadable or non-UTF-8 files are a DetectionError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DetectionError(f"{path}: not UTF-8 text (byte {exc.start})", hint="save the rule as UTF-8") from exc
    except OSError as exc:
        raise DetectionError(f"{path}: cannot read rule: {exc.strerror or exc}") from exc


class SumoDetector:
    """A Sumo query compiled once, evaluated over any number of event streams.

    ``rule`` is a ``Path`` to a ``.sumo`` file (rule id = file stem) or the query text itself
    (rule id ``rule_id`` or "inline"). Raises RuleSyntaxError (file:line:col) or
    UnsupportedRuleError at construction, never during evaluation.
    """

    def __init__(self, rule: Path | str, config: MessageConfig | None = None, *,
                 rule_id: str | None = None) -> None:
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
