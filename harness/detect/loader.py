"""``load_detector``: the one place that turns a rule file into a ``Detector``, by suffix."""

from __future__ import annotations

import importlib
from pathlib import Path

from harness.detect.base import Detector
from harness.detect.sumo.messages import MessageConfig
from harness.errors import DetectionError


def load_detector(path: Path, *, sumo_config: MessageConfig | None = None) -> Detector:
    """``.sumo`` -> local Sumo engine; ``.yml``/``.yaml`` -> Sigma engine; anything else is an error.

    Rule errors surface here (RuleSyntaxError with file:line:col, UnsupportedRuleError), before any
    event is read.
    """
    suffix = path.suffix.lower()
    if suffix == ".sumo":
        from harness.detect.sumo.detector import SumoDetector

        return SumoDetector(path, sumo_config)
    if suffix in (".yml", ".yaml"):
        try:  # imported lazily: pySigma is heavy and only Sigma rules need it
            sigma = importlib.import_module("harness.detect.sigma")
        except ModuleNotFoundError as exc:
            raise DetectionError(f"{path}: the Sigma engine is not available ({exc.name})") from exc
        detector: Detector = sigma.SigmaDetector.from_file(path)
        return detector
    raise DetectionError(f"{path}: unknown rule type {path.suffix or '(no suffix)'!r}",
                         hint="use .sumo for Sumo Logic queries or .yml for Sigma rules")
