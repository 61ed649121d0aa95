"""``atomiclab run --revert-each``: restore each lab machine's baseline snapshot before every test.

Implements ``harness.runner.TargetReset`` over the Vagrant wrapper. After a restore the guest clock
is where the snapshot left it, so once the runner has reconnected we ask Windows Time to re-sync
(``w32tm /resync /force``); a failed re-sync is tolerated (the runner's telemetry window already
allows for clock skew) but a failed restore is an error, because the machine's state is unknown.
"""

from __future__ import annotations

from harness.content.labconfig import TargetConfig
from harness.errors import LabError
from harness.execution.transport import Transport
from harness.lab.vagrant import BASELINE, Vagrant

RESYNC_COMMAND = "w32tm.exe /resync /force"
RESYNC_TIMEOUT_S = 60.0


class SnapshotReset:
    """Restores ``target.vagrant_machine`` to ``snapshot`` through ``vagrant``."""

    def __init__(self, vagrant: Vagrant, *, snapshot: str = BASELINE) -> None:
        self.vagrant = vagrant
        self.snapshot = snapshot

    def reset(self, target: TargetConfig) -> None:
        if not target.vagrant_machine:
            raise LabError(
                f"target {target.name} names no vagrant_machine, so it cannot be reverted",
                hint="add vagrant_machine: <name> to the target in lab.yaml (atomiclab lab up writes it)",
            )
        self.vagrant.snapshot_restore(target.vagrant_machine, self.snapshot)

    def after_reconnect(self, transport: Transport) -> None:
        transport.run(RESYNC_COMMAND, timeout=RESYNC_TIMEOUT_S)
