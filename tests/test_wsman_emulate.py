"""`atomiclab emulate` and the listener in front of the real host model (harness.emulated.host)."""

from __future__ import annotations

import argparse
import io
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from pypsrp.client import Client
from pypsrp.shell import Process, SignalCode, WinRS
from pypsrp.wsman import WSMan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_host import FakeHost

from harness.cli import build_parser, main
from harness.cli.emulate_cmd import _settings_overrides, serve
from harness.content.labconfig import load_lab_config
from harness.emulated.wsman import PASSWORD_ENV, EmulatedHostServer, ServerConfig
from harness.errors import EmulationError


def _real_host() -> Any:
    try:
        from harness.emulated.host import EmulatedHost
    except ImportError as exc:  # the host model is built in parallel; its absence is not our failure
        pytest.skip(f"harness.emulated.host is not importable yet: {exc}")
    return EmulatedHost()


def test_serve_prints_guidance_writes_private_files_and_never_the_password(tmp_path: Path) -> None:
    out = io.StringIO()
    stop = threading.Event()
    seen: dict[str, Any] = {}

    def on_ready(server: EmulatedHostServer) -> None:
        password_file = tmp_path / "password"
        seen["password_ok"] = password_file.read_text() == server.password
        seen["mode"] = stat.S_IMODE(password_file.stat().st_mode)
        seen["password"] = server.password
        lab = load_lab_config(tmp_path / "lab.yaml")
        seen["target"] = lab.targets[0]
        seen["port"] = server.port
        client = Client(
            "127.0.0.1",
            port=server.port,
            username=server.username,
            password=password_file.read_text(),
            cert_validation=str(server.ca_cert_path),
        )
        seen["run"] = client.execute_cmd("cmd.exe /c echo manual")
        stop.set()

    code = serve(FakeHost(), config=ServerConfig(), state_dir=tmp_path, out=out, stop=stop, on_ready=on_ready)
    text = out.getvalue()
    assert code == 0
    assert seen["password_ok"] and seen["mode"] == 0o600
    assert seen["password"] not in text
    assert "EMULATED" in text and PASSWORD_ENV in text and f"export {PASSWORD_ENV}=" in text
    target = seen["target"]
    assert (target.transport, target.address, target.port, target.emulated) == (
        "winrm",
        "127.0.0.1",
        seen["port"],
        True,
    )
    assert target.password_env == PASSWORD_ENV and target.ca_cert is not None
    assert seen["run"] == ("manual\r\n", "", 0)
    assert not (tmp_path / "password").exists() and not (tmp_path / "lab.yaml").exists()


def test_emulate_is_registered_with_its_options() -> None:
    args = build_parser().parse_args(
        ["emulate", "--port", "0", "--no-sysmon-network", "--no-tool", "nmap", "--no-tool", "nbtscan", "--http"]
    )
    assert args.command == "emulate" and args.no_tool == ["nmap", "nbtscan"] and args.http
    overrides = _settings_overrides(args, frozenset({"nmap", "nbtscan", "git"}))
    assert overrides["tools"] == frozenset({"git"})
    assert overrides["sysmon_network"] is False and overrides["sysmon_installed"] is True


def test_unknown_tool_is_one_clear_error() -> None:
    args = argparse.Namespace(
        no_tool=["nmapp"],
        no_sysmon=False,
        no_sysmon_network=False,
        no_sysmon_file=False,
        no_process_auditing=False,
        no_command_line_auditing=False,
        no_script_block_logging=False,
        delivery_delay=0.0,
    )
    with pytest.raises(EmulationError, match="nmapp"):
        _settings_overrides(args, frozenset({"nmap"}))


def test_bad_port_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port 70000" in err[0]


def test_pypsrp_against_the_real_host_model() -> None:
    """pypsrp's own WinRS client, unchanged, against the real host model (no harness client code)."""
    host = _real_host()
    with EmulatedHostServer(host) as server:
        client = Client(
            "127.0.0.1",
            port=server.port,
            username=server.username,
            password=server.password,
            cert_validation=str(server.ca_cert_path),
        )
        out, err, rc = client.execute_cmd("cmd.exe /c echo hi")
        assert (out, rc) == ("hi\r\n", 0), err
        with (
            WSMan(
                "127.0.0.1",
                port=server.port,
                username=server.username,
                password=server.password,
                cert_validation=str(server.ca_cert_path),
                auth="ntlm",
                operation_timeout=2,
            ) as ws,
            WinRS(ws) as shell,
        ):
            # WinRS runs the command through cmd.exe /C, so the pipeline is quoted to reach PowerShell
            # (unquoted, cmd would pipe powershell's output into a program named ForEach-Object).
            ps = Process(shell, "powershell.exe", ["-Command", '"1..3 | ForEach-Object { $_ }"'])
            ps.invoke()
            assert (ps.stdout, ps.rc) == (b"1\r\n2\r\n3\r\n", 0), ps.stderr
            # A long-running tool is ended by Signal Terminate; the command is then gone.
            ping = Process(shell, "ping", ["-n", "30", "127.0.0.1"])
            ping.begin_invoke()
            ping.poll_invoke()
            ping.signal(SignalCode.TERMINATE)
            events = Process(shell, "wevtutil", ["qe", "Microsoft-Windows-Sysmon/Operational", "/c:1", "/f:xml"])
            events.invoke()
            assert events.rc == 0 and events.stdout.startswith(b"<Event xmlns="), events.stderr


def test_emulate_flags_reach_the_host_settings() -> None:
    _real_host()
    from harness.cli.emulate_cmd import _build_host

    args = build_parser().parse_args(["emulate", "--no-sysmon-network", "--no-tool", "nmap", "--delivery-delay", "0.5"])
    host = _build_host(args)
    assert host.settings.sysmon_network is False and host.settings.sysmon_installed is True
    assert "nmap" not in host.settings.tools and "nbtscan" in host.settings.tools
    assert host.settings.delivery_delay_s == 0.5


def test_atomiclab_emulate_runs_until_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess

    _real_host()
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "emulate", "--state-dir", str(tmp_path)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        password = (tmp_path / "password").read_text()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert "EMULATED" in text and "https://127.0.0.1:" in text and password not in text
    assert not (tmp_path / "password").exists()
