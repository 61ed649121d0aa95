"""Frozen data shared by every part of the harness: the atomic content model and command results.

Closed sets are Enums; timestamps are UTC-aware ``datetime`` objects. Loading and validating these
from YAML lives in ``harness.content``; nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, UTC-aware (the only clock helper the harness uses)."""
    return datetime.now(UTC)


class ExecutorName(enum.StrEnum):
    """Atomic Red Team executor names."""

    POWERSHELL = "powershell"
    COMMAND_PROMPT = "command_prompt"
    SH = "sh"
    BASH = "bash"
    MANUAL = "manual"


class ArgType(enum.StrEnum):
    """Atomic Red Team input argument types (the YAML accepts any case)."""

    URL = "url"
    STRING = "string"
    PATH = "path"
    INTEGER = "integer"
    FLOAT = "float"


class Platform(enum.StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"
    MACOS = "macos"
    OFFICE_365 = "office-365"
    AZURE_AD = "azure-ad"
    GOOGLE_WORKSPACE = "google-workspace"
    SAAS = "saas"
    IAAS = "iaas"
    CONTAINERS = "containers"
    IAAS_GCP = "iaas:gcp"
    IAAS_AZURE = "iaas:azure"
    IAAS_AWS = "iaas:aws"
    ESXI = "esxi"


@dataclass(frozen=True, slots=True)
class InputArgument:
    name: str
    description: str
    type: ArgType
    default: str


@dataclass(frozen=True, slots=True)
class Dependency:
    description: str
    prereq_command: str
    get_prereq_command: str


@dataclass(frozen=True, slots=True)
class Executor:
    name: ExecutorName
    command: str | None
    cleanup_command: str | None = None
    elevation_required: bool = False
    steps: str | None = None  # manual executors carry steps instead of a command


@dataclass(frozen=True, slots=True)
class AtomicTest:
    """One atomic test. ``technique`` and ``source`` come from the file that holds it."""

    technique: str
    name: str
    guid: str
    description: str
    platforms: tuple[str, ...]
    executor: Executor
    input_arguments: Mapping[str, InputArgument] = field(default_factory=dict)
    dependency_executor_name: ExecutorName | None = None
    dependencies: tuple[Dependency, ...] = ()
    source: str = ""  # path of the atomics file
    line: int | None = None  # line of the test in that file


@dataclass(frozen=True, slots=True)
class AtomicFile:
    technique: str
    display_name: str
    tests: tuple[AtomicTest, ...]
    source: str = ""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one remote command did. ``exit_code`` is None when it never finished."""

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    started: datetime
    ended: datetime
    timed_out: bool = False

    @property
    def duration_s(self) -> float:
        return (self.ended - self.started).total_seconds()


class ExecutionStatus(enum.StrEnum):
    """How executing one atomic ended (``harness.execution.lifecycle`` and the runner share it)."""

    EXECUTED = "executed"
    SKIPPED_MANUAL = "skipped_manual"
    SKIPPED_PREREQ = "skipped_prereq"
    SKIPPED_PLATFORM = "skipped_platform"
    SKIPPED_ELEVATION = "skipped_elevation"  # elevation_required and the target account is not elevated
    PREREQS_MET = "prereqs_met"  # --check-prereqs: every prerequisite met, nothing else ran
    CLEANED_UP = "cleaned_up"  # --cleanup: only the cleanup command ran
    ERROR = "error"
