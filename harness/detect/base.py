"""The Detector seam: run one rule over normalized events and return its result rows."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from harness.telemetry.event import Event


class Engine(enum.StrEnum):
    SUMO_LOCAL = "sumo-local"
    SIGMA = "sigma"
    SUMO_API = "sumo-api"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Half-open UTC interval [start, end). Either side may be open (None)."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, t: datetime) -> bool:
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """What one rule returned. ``rows`` hold the rule's output fields, in the rule's order.

    ``source_events`` maps row index -> indexes (into the evaluated event sequence) of the events
    that produced that row, where the engine can tell (non-aggregate rows); reports use it to show
    which events made a rule fire.
    """

    rule_id: str
    engine: Engine
    rows: tuple[Mapping[str, object], ...]
    events_in: int
    elapsed_s: float
    source_events: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return bool(self.rows)


@runtime_checkable
class Detector(Protocol):
    """One loaded rule, ready to evaluate."""

    @property
    def rule_id(self) -> str: ...

    @property
    def engine(self) -> Engine: ...

    def evaluate(self, events: Iterable[Event], window: TimeWindow | None = None) -> DetectionResult:
        """Evaluate the rule over ``events`` (only those inside ``window`` when given)."""
        ...
