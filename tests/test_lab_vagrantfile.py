"""The Vagrantfile, evaluated under a recording stand-in for the Vagrant DSL (ruby), and `ruby -c`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDER = ROOT / "tests" / "lab" / "vagrant_dsl_recorder.rb"

pytestmark = pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed (.ci/run installs it)")


def record(env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        ["ruby", str(RECORDER), str(ROOT / "Vagrantfile")],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    return json.loads(out.stdout)["2"]


def machines(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["args"][0]: d for d in cfg["vm"]["define"]}


def test_ruby_syntax_is_valid() -> None:
    out = subprocess.run(["ruby", "-c", str(ROOT / "Vagrantfile")], capture_output=True, text=True)
    assert out.returncode == 0 and "Syntax OK" in out.stdout


def test_default_lab_is_one_windows_server_2022_host() -> None:
    ms = machines(record())
    assert list(ms) == ["win-server"]
    vm = ms["win-server"]["block"]["vm"]
    assert vm["box"] == "gusztavvargadr/windows-server-2022-standard"
    assert vm["communicator"] == "winrm" and vm["guest"] == "windows"
    assert vm["network"] == [{"args": ["private_network"], "kwargs": {"ip": "192.168.56.10"}}]
    assert ms["win-server"]["kwargs"] == {"primary": True}


def test_providers_and_resources_come_from_the_environment() -> None:
    vm = machines(record({"ATOMICLAB_CPUS": "4", "ATOMICLAB_MEMORY": "8192"}))["win-server"]["block"]["vm"]
    providers = {p["args"][0]: p["block"] for p in vm["provider"]}
    assert set(providers) == {"virtualbox", "libvirt", "hyperv"}
    for block in providers.values():
        assert block["cpus"] == 4 and block["memory"] == 8192


def test_optional_client_and_addresses_are_configurable() -> None:
    ms = machines(record({"ATOMICLAB_CLIENT": "1", "ATOMICLAB_SERVER_IP": "10.0.0.5", "ATOMICLAB_CLIENT_IP": "10.0.0.6"}))
    assert set(ms) == {"win-server", "win-client"}
    assert ms["win-client"]["kwargs"] == {"autostart": False}
    assert ms["win-client"]["block"]["vm"]["network"][0]["kwargs"] == {"ip": "10.0.0.6"}
    assert ms["win-server"]["block"]["vm"]["network"][0]["kwargs"] == {"ip": "10.0.0.5"}


def test_provisioning_steps_in_order_and_scripts_exist() -> None:
    vm = machines(record())["win-server"]["block"]["vm"]
    steps = [(p["args"][0], p["kwargs"]["path"]) for p in vm["provision"]]
    assert [s for s, _ in steps] == [
        "sysmon", "audit-policy", "scriptblock-logging", "winrm-https", "openssh", "tools", "harness-account",
        "winrm-lockdown",  # issue 16: Basic/unencrypted WinRM off after provisioning
    ]
    for _, script in steps:
        assert (ROOT / script).is_file(), script
    for p in vm["provision"]:
        assert p["kwargs"]["type"] == "shell" and p["kwargs"]["privileged"] is True


def test_the_harness_password_is_never_in_the_vagrantfile() -> None:
    recorded = record({"ATOMICLAB_HARNESS_PASSWORD": "canary-Pw-93"})
    # Vagrant renders provisioner env as script text that 4104 logging would record: only the path
    # of the one-shot password file goes there, never the password itself.
    for p in machines(recorded)["win-server"]["block"]["vm"]["provision"]:
        assert p["kwargs"]["env"]["ATOMICLAB_HARNESS_PASSWORD_FILE"].endswith("\\.harness-password")
        assert "ATOMICLAB_HARNESS_PASSWORD" not in p["kwargs"]["env"]
    assert "canary-Pw-93" not in str(recorded) + (ROOT / "Vagrantfile").read_text()


def test_provisioning_scripts_never_download() -> None:
    for script in (ROOT / "lab" / "provision").glob("*.ps1"):
        text = script.read_text().lower()
        for needle in ("invoke-webrequest", "downloadstring", "downloadfile", "start-bitstransfer", "curl ", "wget "):
            assert needle not in text, f"{script.name} downloads ({needle}); provisioning must use lab/cache"


def test_cache_lock_lists_every_cached_file_with_a_pinned_source() -> None:
    import re

    entries = {}
    for line in (ROOT / "lab" / "cache" / "cache.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sha, url = line.split()
            assert sha == "-" or re.fullmatch(r"[0-9a-f]{64}", sha), line
            entries[name] = url
    used = set()
    for script in (ROOT / "lab" / "provision").glob("*.ps1"):
        used |= set(re.findall(r"Get-CachedFile '([^']+)'", script.read_text()))
    assert used == set(entries), "every file provisioning installs has a lock entry, and only those"
    # the Sysmon configuration is a fixed commit of sysmon-modular, not a moving branch
    assert re.search(r"/sysmon-modular/[0-9a-f]{40}/sysmonconfig-excludes-only\.xml$", entries["sysmonconfig.xml"])
    assert re.search(r"nmap-\d+\.\d+-setup\.exe$", entries["nmap-setup.exe"])
