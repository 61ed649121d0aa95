"""In-process emulated Windows hosts for tests: a WinRM transport to one, or a lab.yaml naming one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.network import NetworkTiming
from harness.emulated.wsman import PASSWORD_ENV, EmulatedHostServer
from harness.execution.transports.winrm import WinRMAuth, WinRMConfig, WinRMTransport


@contextlib.contextmanager
def winrm_host(settings: HostSettings | None = None) -> Iterator[tuple[EmulatedHost, WinRMTransport]]:
    """An emulated host behind its WS-Man listener, and the harness's WinRM transport to it."""
    # No network delays unless asked for: these tests read the log right after each command.
    host = EmulatedHost(settings or HostSettings(network_timing=NetworkTiming.instant()))
    with EmulatedHostServer(host) as srv:
        secret = srv.password
        transport = WinRMTransport(
            WinRMConfig(host="127.0.0.1", port=srv.port, username=srv.username, password_env="ATOMICLAB_EMU_PW",
                        auth=WinRMAuth.NTLM, ca_bundle=srv.ca_cert_path, operation_timeout_s=5),
            secrets=lambda _name: secret,
        )
        try:
            yield host, transport
        finally:
            transport.close()


@contextlib.contextmanager
def emulated_lab(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    name: str = "win-server",
    extra: str = "",
    host: EmulatedHost | None = None,
) -> Iterator[tuple[Path, EmulatedHostServer]]:
    """``tmp_path/lab.yaml`` whose one WinRM target ``name`` is an in-process emulated host (its
    password only in ``PASSWORD_ENV``); ``extra`` is appended to the target's YAML lines."""
    with EmulatedHostServer(host or EmulatedHost()) as srv:
        monkeypatch.setenv(PASSWORD_ENV, srv.password)
        lab_file = tmp_path / "lab.yaml"
        lab_file.write_text(
            "targets:\n"
            f"  - name: {name}\n    transport: winrm\n    address: 127.0.0.1\n"
            f"    port: {srv.port}\n    auth: ntlm\n    username: {srv.username}\n"
            f"    password_env: {PASSWORD_ENV}\n    ca_cert: '{srv.ca_cert_path}'\n    emulated: true\n"
            + extra
        )
        yield lab_file, srv
