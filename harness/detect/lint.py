"""``lint_rule``: what real engines would reject in a rule, or read differently than its author did.

Findings are data (``LintFinding``), each with file, line and column. ``.sumo`` files go to the Sumo
lint (harness.detect.sumo.lint); Sigma ``.yml``/``.yaml`` files go to
``harness.detect.sigma.lint_sigma`` when that engine provides one (else no findings). An unreadable
file or an unknown rule type is a ``DetectionError`` (the CLI exits 2), not a finding.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass
from pathlib import Path


class Severity(enum.StrEnum):
    ERROR = "error"  # the engine rejects it, or it can never behave as written
    WARNING = "warning"  # valid, but the outcome depends on a reading the author may not intend
    NOTE = "note"  # valid and as intended; said for information (a note alone leaves the rule clean)


@dataclass(frozen=True, slots=True)
class LintFinding:
    file: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity.value} {self.code}: {self.message}"


def lint_rule(path: Path) -> list[LintFinding]:
    """Lint one rule file, dispatching on its suffix. Findings are sorted by position."""
    from harness.detect.sumo.detector import read_rule_text
    from harness.errors import DetectionError

    suffix = path.suffix.lower()
    if suffix == ".sumo":
        from harness.detect.sumo.lint import lint_sumo

        return lint_sumo(read_rule_text(path), path)
    if suffix in (".yml", ".yaml"):
        read_rule_text(path)  # unreadable -> DetectionError, like any other rule
        try:
            sigma = importlib.import_module("harness.detect.sigma")
        except ModuleNotFoundError:
            return []
        lint_sigma = getattr(sigma, "lint_sigma", None)
        if lint_sigma is None:
            return []
        return [_as_finding(path, f) for f in lint_sigma(path)]
    raise DetectionError(f"{path}: unknown rule type {path.suffix or '(no suffix)'!r}",
                         hint="use .sumo for Sumo Logic queries or .yml for Sigma rules")


def _as_finding(path: Path, found: object) -> LintFinding:
    """Accept a LintFinding or the Sigma engine's one-line problem text (``FILE[:LINE[:COL]]: msg``)."""
    if isinstance(found, LintFinding):
        return found
    text = str(found)
    line = column = 1
    prefix = f"{path}:"
    if text.startswith(prefix):
        rest = text[len(prefix):]
        head, _, tail = rest.partition(":")
        if head.strip().isdigit():
            line, rest = int(head), tail
            head, _, tail = rest.partition(":")
            if head.strip().isdigit():
                column, rest = int(head), tail
        text = rest.strip()
    return LintFinding(str(path), line, column, Severity.ERROR, "SIGMA000", text)
