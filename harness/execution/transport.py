"""The Transport seam: how the harness runs a command on a target.

Like httpx's transport, it is one method plus close(); the runner receives a Transport and never
knows whether the other end is a real Windows host over WinRM, a Linux box over SSH, or the
emulated host. Implementations map their library's errors to ``harness.errors.TransportError``
subclasses naming the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from harness.model import CommandResult


@runtime_checkable
class Transport(Protocol):
    """Runs commands on one target."""

    @property
    def host(self) -> str:
        """The target's name as the user configured it (used in every error and report)."""
        ...

    def run(self, command_line: str, *, timeout: float) -> CommandResult:
        """Run ``command_line`` (a full Windows command line such as ``"powershell.exe" & {...}``, or
        a shell command line on POSIX) and wait for it, at most ``timeout`` seconds overall.

        At the deadline the remote process tree is terminated and the result has ``timed_out=True``
        (no exception). Raises ConnectError/AuthError/ProtocolError when the transport itself fails.
        """
        ...

    def put_file(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` on the target."""
        ...

    def close(self) -> None:
        """Release the shell/connection. Idempotent."""
        ...
