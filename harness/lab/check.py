"""``atomiclab lab check``: run the preflight on every target of a lab (or on the emulated host).

Opening targets goes through the same factories the runner uses (``harness.targets``), so the check
sees each host exactly as a run will: same transport, same credentials, same tool paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.content.labconfig import TargetConfig, load_lab_config
from harness.errors import HarnessError
from harness.lab.preflight import Check, PreflightReport, run_preflight
from harness.runner import TargetFactory


@dataclass(frozen=True, slots=True)
class HostCheck:
    """The preflight of one target, or why it could not be asked (``error``)."""

    target: str
    emulated: bool
    report: PreflightReport | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok


def _posix_report(target: TargetConfig, opened: Any) -> PreflightReport:
    """A Linux/macOS target: reachable (it was opened), and whether its telemetry is collected
    (Sysmon for Linux, see harness.telemetry.sysmon_linux). The Windows checks do not apply."""
    note = getattr(opened, "telemetry_note", None)
    return PreflightReport(
        host=target.name,
        emulated=False,
        features={},
        facts={"platform": target.platform},
        checks=(
            Check("connection", f"{target.transport} {target.address}:{target.port}", True, "connected"),
            Check("telemetry", "command -v sysmon && command -v journalctl", note is None,
                  "Sysmon for Linux events read from journald" if note is None
                  else f"{note}: install Sysmon for Linux to collect it"),
        ),
    )


def check_targets(factory: TargetFactory, targets: Sequence[TargetConfig]) -> list[HostCheck]:
    """Open each target, run the preflight, close it. Connection failures are data, not exceptions."""
    out: list[HostCheck] = []
    for target in targets:
        try:
            opened = factory.open(target)
        except HarnessError as exc:
            out.append(HostCheck(target.name, target.emulated, None, str(exc)))
            continue
        try:
            # The factory's own preflight knows the target's tool paths (the emulated host's too).
            report: object
            if target.platform != "windows":
                report = _posix_report(target, opened)
            else:
                report = opened.preflight() if opened.preflight is not None else run_preflight(
                    opened.transport, tools=target.tools, emulated=opened.emulated
                )
            if not isinstance(report, PreflightReport):
                raise TypeError(f"preflight of {target.name} returned {type(report).__name__}")
            out.append(HostCheck(target.name, opened.emulated, report))
        except HarnessError as exc:
            out.append(HostCheck(target.name, opened.emulated, None, str(exc)))
        finally:
            opened.close()
    return out


def check_lab(lab_file: Path | None, emulate_settings: Sequence[str] = ()) -> list[HostCheck]:
    """The preflight of every target in ``lab_file``, or of one emulated host when it is None."""
    from harness.targets import EmulatedTargetFactory, LabTargetFactory, parse_emulate_settings

    if lab_file is None:
        emulated = EmulatedTargetFactory(parse_emulate_settings(emulate_settings))
        return check_targets(emulated, [emulated.target()])
    lab = load_lab_config(lab_file)
    return check_targets(LabTargetFactory(lab), lab.targets)
