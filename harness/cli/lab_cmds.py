"""``atomiclab lab up | status | snapshot | revert | down | check``: the Vagrant Windows lab."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from harness.errors import ContentError
from harness.lab.vagrant import BASELINE, Provider, Vagrant, check_snapshot_name

#: Vagrant machine -> environment variable with its private address, and the Vagrantfile's default.
_ADDRESSES = {
    "win-server": ("ATOMICLAB_SERVER_IP", "192.168.56.10"),
    "win-client": ("ATOMICLAB_CLIENT_IP", "192.168.56.11"),
}


def register(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the Vagrant Windows lab: up, status, check, snapshot, revert, down")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = lab_sub.add_parser("up", help="create and provision the lab, save the baseline snapshot, write lab.yaml")
    up.add_argument("--provider", choices=[p.value for p in Provider], help="vagrant provider (default: vagrant's)")
    up.add_argument("--lab-file", type=Path, default=Path("lab.yaml"), help="where to write the lab file")
    up.set_defaults(handler=_up)

    status = lab_sub.add_parser("status", help="state of each lab machine")
    status.set_defaults(handler=_status)

    snap = lab_sub.add_parser("snapshot", help="save the baseline snapshot of every running machine")
    snap.add_argument("--name", default=BASELINE)
    snap.set_defaults(handler=_snapshot)

    revert = lab_sub.add_parser("revert", help="restore every running machine to the baseline snapshot")
    revert.add_argument("--name", default=BASELINE)
    revert.set_defaults(handler=_revert)

    down = lab_sub.add_parser("down", help="halt the lab (--destroy removes the machines)")
    down.add_argument("--destroy", action="store_true")
    down.set_defaults(handler=_down)

    check = lab_sub.add_parser("check", help="preflight: is each host's telemetry configured as the tests assume")
    check.add_argument("--lab", type=Path, help="lab.yaml (default: the emulated host)")
    check.add_argument("--emulate-setting", action="append", default=[], metavar="KEY=VALUE",
                       help="emulated host setting, e.g. sysmon_network=false (without --lab)")
    check.set_defaults(handler=_check)


#: Provisioning steps of the Vagrantfile that only ``lab up`` runs, by name, after ``vagrant up``.
ACCOUNT_STEP = "harness-account"
LOCKDOWN_STEP = "winrm-lockdown"


def _vagrant() -> Vagrant:
    return Vagrant(Path.cwd())


def _running(v: Vagrant) -> list[str]:
    return [m.name for m in v.status() if m.state == "running"]


def _up(args: argparse.Namespace) -> int:
    from harness.credentials import get_secret
    from harness.lab.labfile import PASSWORD_ENV, LabHost, check_lab_file_path, harness_password_drop, write_lab_file
    check_lab_file_path(args.lab_file)
    v = _vagrant()
    # The provisioning creates the harness account with this password (CredentialError if unset).
    password = get_secret(PASSWORD_ENV)
    v.up(provider=Provider(args.provider) if args.provider else None)
    # The one-shot password file exists in the synced folder only while the account step runs
    # (the Vagrantfile marks that step run: "never"), not for the whole boot and provisioning.
    with harness_password_drop(Path.cwd() / "lab" / "out", password):
        v.provision(only=[ACCOUNT_STEP])
    # Last: Basic auth and unencrypted WinRM off, WinRM HTTP narrowed to the harness's addresses.
    v.provision(only=[LOCKDOWN_STEP])
    hosts = []
    for name in _running(v):
        v.snapshot_save(name, BASELINE)
        env_var, default = _ADDRESSES.get(name, ("", ""))
        address = os.environ.get(env_var, default) if env_var else name
        hosts.append(LabHost(machine=name, computer_name=name.upper(), address=address))
    path = write_lab_file(args.lab_file, hosts, out_dir=Path.cwd() / "lab" / "out")
    print(f"lab up: {len(hosts)} host(s) provisioned, baseline snapshot saved, lab file {path}")
    print("export ATOMICLAB_HARNESS_PASSWORD (the harness account's password) before `atomiclab run --lab`")
    return 0


def _status(args: argparse.Namespace) -> int:
    for m in _vagrant().status():
        print(f"{m.name:<16} {m.state:<12} {m.provider}")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    check_snapshot_name(args.name)
    v = _vagrant()
    for name in _running(v):
        v.snapshot_save(name, args.name)
        print(f"{name}: snapshot {args.name!r} saved")
    return 0


def _revert(args: argparse.Namespace) -> int:
    check_snapshot_name(args.name)
    v = _vagrant()
    for name in _running(v):
        v.snapshot_restore(name, args.name)
        print(f"{name}: restored {args.name!r} (guest clock re-synced by the next run's preflight)")
    return 0


def _down(args: argparse.Namespace) -> int:
    v = _vagrant()
    if args.destroy:
        v.destroy()
    else:
        v.halt()
    return 0


def _check(args: argparse.Namespace) -> int:
    from harness.lab.check import check_lab

    if args.lab is not None and args.emulate_setting:
        raise ContentError("--emulate-setting applies to the emulated host only (drop --lab)")
    checks = check_lab(args.lab, args.emulate_setting)
    for hc in checks:
        label = f"{hc.target} (EMULATED)" if hc.emulated else hc.target
        if hc.report is None:
            print(f"{label}: cannot run preflight: {hc.error}")
            continue
        facts = hc.report.facts
        print(f"{label}: {'OK' if hc.ok else 'MISCONFIGURED'}  Windows {facts.get('os_build') or '?'}, "
              f"Sysmon {facts.get('sysmon_version') or 'absent'} "
              f"config {(facts.get('sysmon_config_hash') or '-')[:12]}")
        for c in hc.report.checks:
            print(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    return 0 if checks and all(hc.ok for hc in checks) else 1
