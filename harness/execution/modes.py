"""How one atomic is run on one target: Invoke-AtomicRedTeam's modes and the target-side atomics folder.

Contract:

* ``ExecMode``: ``RUN`` (prerequisites, command, cleanup), ``CHECK_PREREQS`` (the prerequisite checks
  only, nothing else runs: Invoke-AtomicTest ``-CheckPrereqs``), ``CLEANUP`` (the cleanup command only:
  ``-Cleanup``). Fetching unmet prerequisites stays ``run --get-prereqs`` (fetch, check again, run).
* ``ExecutionSettings`` is frozen data the runner hands to the execute function for each target:
  the mode, whether cleanup runs after the command (``--no-cleanup`` turns it off), the target-side
  atomics folder that replaces ``PathToAtomicsFolder``, and whether the target account is elevated
  (None when unknown: the test then runs and the target decides).
* ``default_atomics_folder(platform)``: ``C:\\AtomicRedTeam\\atomics`` on Windows (Invoke-AtomicTest's
  default ``$env:HOMEDRIVE\\AtomicRedTeam\\atomics``, Public/Invoke-AtomicTest.ps1), and
  ``/tmp/AtomicRedTeam/atomics`` on Linux and macOS (Invoke-AtomicRedTeam copies payloads for remote
  sessions below ``/tmp/`` there, Private/Get-TargetInfo.ps1; ``/tmp`` is writable by any account, so
  ``atomiclab sync`` can place them without root). lab.yaml ``atomics_folder`` overrides it per target.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

WINDOWS_ATOMICS_FOLDER = "C:\\AtomicRedTeam\\atomics"
POSIX_ATOMICS_FOLDER = "/tmp/AtomicRedTeam/atomics"

#: An atomics folder is inserted unquoted wherever ``PathToAtomicsFolder`` stands (bare, inside
#: ``"..."`` or ``'...'`` of any executor), so it may hold no quote, expansion or separator character.
ATOMICS_FOLDER_ALLOWED = re.compile(r"[A-Za-z0-9 _.\-:\\/()~]+")


class ExecMode(enum.StrEnum):
    RUN = "run"
    CHECK_PREREQS = "check_prereqs"
    CLEANUP = "cleanup"


def default_atomics_folder(platform: str) -> str:
    """The target-side atomics folder Invoke-AtomicRedTeam would use on ``platform``."""
    return WINDOWS_ATOMICS_FOLDER if platform.lower() == "windows" else POSIX_ATOMICS_FOLDER


def atomics_folder_problem(folder: str) -> str | None:
    """Why ``folder`` cannot be a target-side atomics folder, or None."""
    if not ATOMICS_FOLDER_ALLOWED.fullmatch(folder):
        return "only letters, digits, space and _ . - : \\ / ( ) ~ are allowed (it is inserted unquoted)"
    return None


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """Per-target settings of one execution (see the module contract)."""

    mode: ExecMode = ExecMode.RUN
    cleanup: bool = True
    atomics_folder: str | None = None
    elevated: bool | None = None


__all__ = [
    "POSIX_ATOMICS_FOLDER",
    "WINDOWS_ATOMICS_FOLDER",
    "ExecMode",
    "ExecutionSettings",
    "atomics_folder_problem",
    "default_atomics_folder",
]
