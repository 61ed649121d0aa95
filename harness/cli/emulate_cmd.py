"""``atomiclab emulate``: run the EMULATED Windows host on 127.0.0.1 for manual use.

The command starts the emulated host's WinRM listener, writes a ``lab.yaml`` that targets it and a
password file readable only by the owner (0600) into a state directory, prints the URL, CA path,
username and the NAME of the environment variable the harness reads the password from, with the
``export`` line that fills it from the file, and serves until Ctrl-C. The password is never printed
and never put on a command line; both files are removed on exit.

``--fault KIND[=VALUE]`` (repeatable) injects the listener's faults (``FaultConfig``) for testing a
client against a misbehaving host: ``drop-on-request=N``, ``drop-mid-receive``,
``http-500=ACTION[,ACTION...]``, ``slow-receive=SECONDS``, ``timeout-next-receive``.
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
        "--fault",
        action="append",
        default=[],
        metavar="KIND[=VALUE]",
        help="inject a listener fault (repeatable): drop-on-request=N (reset the Nth WS-Man request's "
        "connection), drop-mid-receive (reset the next Receive once output is ready), "
        "http-500=ACTION[,ACTION...] (HTTP 500 for Create|Command|Receive|Send|Signal|Delete|Get), "
        "slow-receive=SECONDS (delay every Receive), timeout-next-receive (operation-timeout fault once)",
    )
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


_FAULT_KINDS = ("drop-on-request", "drop-mid-receive", "http-500", "slow-receive", "timeout-next-receive")
_FLAG_FAULTS = ("drop-mid-receive", "timeout-next-receive")


def parse_faults(specs: list[str]) -> Any:
    """The ``FaultConfig`` for ``--fault`` values; EmulationError (one line) for a bad one."""
    from harness.emulated.wsman import FaultConfig
    from harness.emulated.wsman_soap import Action

    by_name = {a.short.lower(): a for a in Action}
    drop_on: int | None = None
    delay = 0.0
    actions: set[Action] = set()
    flags: set[str] = set()
    for spec in specs:
        kind, has_value, value = (part.strip() for part in spec.partition("="))
        kind = kind.lower()
        where = f"--fault {spec}"
        if kind not in _FAULT_KINDS:
            raise EmulationError(f"{where}: unknown fault", hint=f"choose from {', '.join(_FAULT_KINDS)}")
        if kind in _FLAG_FAULTS:
            if has_value:
                raise EmulationError(f"{where}: {kind} takes no value", hint=f"write --fault {kind}")
            flags.add(kind)
            continue
        if not value:
            raise EmulationError(f"{where}: {kind} needs a value", hint=f"write --fault {kind}=VALUE")
        if kind == "drop-on-request":
            if not value.isdigit() or int(value) < 1:
                raise EmulationError(f"{where}: N must be a whole number >= 1 (the Nth WS-Man request)")
            drop_on = int(value)
        elif kind == "slow-receive":
            try:
                delay = float(value)
            except ValueError:
                delay = math.nan
            if not math.isfinite(delay) or delay < 0:
                raise EmulationError(f"{where}: must be a finite number of seconds >= 0")
        else:  # http-500
            for name in (n.strip().lower() for n in value.split(",")):
                if name not in by_name:
                    known = "|".join(a.short for a in Action)
                    raise EmulationError(f"{where}: unknown WS-Man action {name!r}", hint=f"choose from {known}")
                actions.add(by_name[name])
    return FaultConfig(
        drop_on_request=drop_on,
        drop_mid_receive="drop-mid-receive" in flags,
        http_500_actions=frozenset(actions),
        receive_delay_s=delay,
        timeout_next_receive="timeout-next-receive" in flags,
    )


def describe_faults(faults: Any) -> str:
    """The injected faults as ``--fault`` values (empty when none)."""
    parts: list[str] = []
    if faults.drop_on_request is not None:
        parts.append(f"drop-on-request={faults.drop_on_request}")
    if faults.drop_mid_receive:
        parts.append("drop-mid-receive")
    if faults.http_500_actions:
        parts.append("http-500=" + ",".join(sorted(a.short for a in faults.http_500_actions)))
    if faults.receive_delay_s:
        parts.append(f"slow-receive={faults.receive_delay_s:g}")
    if faults.timeout_next_receive:
        parts.append("timeout-next-receive")
    return " ".join(parts)


def server_config(args: argparse.Namespace) -> Any:
    """The listener's ``ServerConfig`` from the parsed flags (EmulationError for bad ones)."""
    from harness.emulated.wsman import ServerConfig

    if not 0 <= args.port <= 65535:
        raise EmulationError(f"--port {args.port}: must be between 0 and 65535")
    if args.http and args.allow_basic:
        raise EmulationError("--allow-basic needs HTTPS: Basic over plain HTTP sends the password in clear",
                             hint="drop --http or --allow-basic")
    return ServerConfig(port=args.port, use_tls=not args.http, allow_basic=args.allow_basic,
                        username=args.username, faults=parse_faults(list(getattr(args, "fault", []) or [])))


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
    import yaml

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
            faults = describe_faults(server.config.faults)
            if faults:
                print(f"  INJECTED FAULTS: {faults}", file=out)
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
    config = server_config(args)
    host = _build_host(args)
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
