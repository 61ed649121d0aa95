"""``atomiclab emulate``: run the EMULATED Windows host on 127.0.0.1 for manual use.

The command starts the emulated host's WinRM listener, writes a ``lab.yaml`` that targets it and a
password file readable only by the owner (0600) into a state directory, prints the URL, CA path,
username and the NAME of the environment variable the harness reads the password from, with the
``export`` line that fills it from the file, and serves until Ctrl-C. The password is never printed
and never put on a command line; both files are removed on exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from harness.errors import EmulationError

_KNOWN_TOOLS = ("nmap", "nbtscan", "git")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "emulate",
        help="run the EMULATED Windows host (WinRM on 127.0.0.1) until Ctrl-C",
        description="Start the emulated Windows host for manual use: WinRM/WinRS over HTTPS on "
        "127.0.0.1 with a generated CA and per-start credentials. Everything it reports is emulated.",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free port)")
    p.add_argument("--http", action="store_true", help="plain HTTP with WinRM message encryption instead of HTTPS")
    p.add_argument("--allow-basic", action="store_true", help="also accept Basic auth (HTTPS only)")
    p.add_argument("--username", default="atomiclab", help="account name (default: atomiclab)")
    p.add_argument("--no-sysmon", action="store_true", help="emulate a host without Sysmon")
    p.add_argument("--no-sysmon-network", action="store_true", help="Sysmon filters out EID 3")
    p.add_argument("--no-sysmon-file", action="store_true", help="Sysmon filters out EID 11")
    p.add_argument("--no-process-auditing", action="store_true", help="no Security 4688/4689")
    p.add_argument("--no-command-line-auditing", action="store_true", help="4688 without command lines")
    p.add_argument("--no-script-block-logging", action="store_true", help="no PowerShell 4104")
    p.add_argument(
        "--no-tool",
        action="append",
        default=[],
        metavar="NAME",
        help=f"tool not installed on the host (repeatable; known: {', '.join(_KNOWN_TOOLS)})",
    )
    p.add_argument("--delivery-delay", type=float, default=0.0, metavar="SECONDS", help="event delivery delay")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where lab.yaml and the 0600 password file go (default: a new temporary directory)",
    )
    p.set_defaults(handler=_handle)


def _settings_overrides(args: argparse.Namespace, default_tools: frozenset[str]) -> dict[str, Any]:
    unknown = sorted(set(args.no_tool) - set(default_tools))
    if unknown:
        raise EmulationError(
            f"--no-tool {', '.join(unknown)}: not a tool the emulated host installs",
            hint=f"choose from {', '.join(sorted(default_tools))}",
        )
    return {
        "sysmon_installed": not args.no_sysmon,
        "sysmon_network": not args.no_sysmon_network,
        "sysmon_file": not args.no_sysmon_file,
        "process_auditing": not args.no_process_auditing,
        "command_line_auditing": not args.no_command_line_auditing,
        "script_block_logging": not args.no_script_block_logging,
        "tools": frozenset(default_tools) - set(args.no_tool),
        "delivery_delay_s": args.delivery_delay,
    }


def _build_host(args: argparse.Namespace) -> Any:
    try:
        # Imported by name: the host model is a sibling package that may be absent in a partial install.
        host_module = importlib.import_module("harness.emulated.host")
        EmulatedHost, HostSettings = host_module.EmulatedHost, host_module.HostSettings
    except (ImportError, AttributeError) as exc:
        raise EmulationError("the emulated host model (harness.emulated.host) is not available", hint=str(exc)) from exc
    defaults = HostSettings()
    overrides = _settings_overrides(args, frozenset(getattr(defaults, "tools", _KNOWN_TOOLS)))
    fields = {f.name for f in dataclasses.fields(defaults)}
    missing = sorted(k for k in overrides if k not in fields)
    if missing:
        raise EmulationError(f"the host model does not support the settings {', '.join(missing)}")
    if not math.isfinite(args.delivery_delay) or args.delivery_delay < 0:
        raise EmulationError(f"--delivery-delay {args.delivery_delay}: must be a finite number of seconds >= 0")
    return EmulatedHost(dataclasses.replace(defaults, **overrides))


def _write_secret(path: Path, text: str) -> None:
    # O_EXCL: never through a file or symlink someone else put there (its mode would stay as it was).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _lab_yaml(server: Any) -> str:
    from harness.emulated.wsman import PASSWORD_ENV

    target: dict[str, Any] = {
        "name": "emulated",
        "transport": "winrm",
        "address": "127.0.0.1",
        "port": server.port,
        "scheme": "https" if server.tls else "http",
        "auth": "ntlm",
        "username": server.username,
        "password_env": PASSWORD_ENV,
    }
    if server.ca_cert_path is not None:
        target["ca_cert"] = str(server.ca_cert_path)
    target["emulated"] = True
    header = "# EMULATED host written by `atomiclab emulate`; valid while that command runs.\n"
    return header + yaml.safe_dump({"name": "atomiclab-emulated", "targets": [target]}, sort_keys=False)


def _prepare_state_dir(state_dir: Path) -> tuple[Path, Path]:
    """(lab file, password file) in ``state_dir``, created if needed. EmulationError when the folder
    cannot be used or already holds either file: they are removed on exit, so a user's own lab.yaml
    there would be lost."""
    lab_file = state_dir / "lab.yaml"
    password_file = state_dir / "password"
    if state_dir.exists() and not state_dir.is_dir():
        raise EmulationError(f"--state-dir {state_dir}: not a folder",
                             hint="choose a folder (it is created if missing)")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmulationError(f"--state-dir {state_dir}: cannot create it: {exc.strerror or exc}",
                             hint="choose a writable folder") from exc
    for f in (lab_file, password_file):
        if f.exists() or f.is_symlink():
            raise EmulationError(f"--state-dir {state_dir}: already holds {f.name}",
                                 hint="choose an empty folder; emulate writes and then deletes these files")
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise EmulationError(f"--state-dir {state_dir}: not writable", hint="choose a writable folder")
    return lab_file, password_file


def serve(
    host: Any,
    *,
    config: Any,
    state_dir: Path,
    out: TextIO,
    stop: threading.Event,
    on_ready: Callable[[Any], None] | None = None,
) -> int:
    """Run the listener until ``stop`` is set; print the connection guidance to ``out``.

    ``on_ready`` receives the running server (tests use it). Returns exit code 0.
    """
    from harness.emulated.wsman import EMULATED_HEADER, PASSWORD_ENV, EmulatedHostServer

    lab_file, password_file = _prepare_state_dir(state_dir)
    with EmulatedHostServer(host, config=config) as server:
        try:
            try:
                _write_secret(password_file, server.password)
                lab_file.write_text(_lab_yaml(server), encoding="utf-8")
            except OSError as exc:
                raise EmulationError(f"--state-dir {state_dir}: cannot write {exc.filename or 'a file'}: "
                                     f"{exc.strerror or exc}", hint="choose a writable folder") from exc
            print("atomiclab EMULATED Windows host (not a real Windows machine)", file=out)
            print(f"  url:        {server.url}", file=out)
            if server.ca_cert_path is not None:
                print(f"  CA:         {server.ca_cert_path}", file=out)
            print(f"  username:   {server.username}", file=out)
            print(f"  password:   in ${PASSWORD_ENV} (file {password_file}, mode 0600)", file=out)
            print(f"  lab file:   {lab_file}", file=out)
            print(f"  responses carry {EMULATED_HEADER}: true", file=out)
            print(f'  export {PASSWORD_ENV}="$(cat {password_file})"', file=out)
            print("Serving until Ctrl-C.", file=out, flush=True)
            if on_ready is not None:
                on_ready(server)
            while not stop.wait(0.5):
                pass
        finally:
            password_file.unlink(missing_ok=True)
            lab_file.unlink(missing_ok=True)
    print("atomiclab EMULATED host stopped.", file=out)
    return 0


def _handle(args: argparse.Namespace) -> int:
    from harness.emulated.wsman import ServerConfig

    if not 0 <= args.port <= 65535:
        raise EmulationError(f"--port {args.port}: must be between 0 and 65535")
    if args.http and args.allow_basic:
        raise EmulationError("--allow-basic needs HTTPS: Basic over plain HTTP sends the password in clear",
                             hint="drop --http or --allow-basic")
    host = _build_host(args)
    config = ServerConfig(port=args.port, use_tls=not args.http, allow_basic=args.allow_basic, username=args.username)
    owned_dir = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="atomiclab-emulate-")) if owned_dir else args.state_dir
    stop = threading.Event()
    # SIGTERM (kill, timeout, a service manager) stops the server like Ctrl-C, so the password file
    # and the state folder are removed instead of left behind.
    in_main = threading.current_thread() is threading.main_thread()  # signal.signal works only there
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set()) if in_main else None
    try:
        return serve(host, config=config, state_dir=state_dir, out=sys.stdout, stop=stop)
    except KeyboardInterrupt:
        print("atomiclab EMULATED host stopped.", file=sys.stdout)
        return 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if owned_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
