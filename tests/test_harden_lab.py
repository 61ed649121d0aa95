"""Issue 16, the lab: HTTPS-only downloads, WinRM reachable from the harness only, Basic and
unencrypted WinRM off after provisioning, the password file present only while the account step
runs. Tested without a VM, as tests/test_lab_*.py do: the Vagrantfile under the recording DSL
stand-in (ruby), the provisioning scripts as text, fetch-cache.sh with a fake curl.

Reproductions (they failed before the fix): fetch-cache.sh fetched nbtscan over http://; the 5986
rule allowed any address; the one-shot password file existed during the whole `vagrant up`;
nothing turned Vagrant's WinRM HTTP/Basic settings off.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from test_lab_vagrantfile import machines, record

ROOT = Path(__file__).resolve().parents[1]
PROVISION = ROOT / "lab" / "provision"
needs_ruby = pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed (.ci/run installs it)")


def _fetch(tmp_path: Path, lock: str) -> subprocess.CompletedProcess[str]:
    lab = tmp_path / "lab"
    (lab / "cache").mkdir(parents=True)
    shutil.copy(ROOT / "lab" / "fetch-cache.sh", lab / "fetch-cache.sh")
    (lab / "cache" / "cache.lock").write_text(lock)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    curl = bindir / "curl"
    curl.write_text('#!/bin/sh\necho "$@" >> "$CURL_LOG"\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && { echo payload > "$2"; }; '
                    'shift; done\n')
    curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin", "CURL_LOG": str(tmp_path / "curl.log")}
    return subprocess.run(["bash", str(lab / "fetch-cache.sh"), "--pin"], capture_output=True, text=True, env=env)


def test_fetch_cache_refuses_plain_http(tmp_path: Path) -> None:
    out = _fetch(tmp_path, "nbtscan.exe  -  http://www.unixwiz.net/tools/nbtscan-1.0.35.exe\n")
    assert out.returncode != 0
    assert "not an https:// URL" in out.stderr and "nbtscan.exe" in out.stderr
    assert not (tmp_path / "curl.log").exists()  # nothing was fetched


def test_fetch_cache_fetches_https_only_even_through_redirects(tmp_path: Path) -> None:
    out = _fetch(tmp_path, "tool.exe  -  https://example.org/tool.exe\n")
    assert out.returncode == 0, out.stderr
    args = (tmp_path / "curl.log").read_text()
    assert "--proto =https " in args and "--proto-redir =https " in args and "http," not in args


def test_cache_lock_has_no_plain_http_source() -> None:
    for line in (ROOT / "lab" / "cache" / "cache.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert line.split()[2].startswith("https://"), line


@needs_ruby
def test_winrm_is_open_to_the_harness_addresses_only() -> None:
    for env, expected in (({}, "192.168.56.1"), ({"ATOMICLAB_HARNESS_ADDRESSES": "10.1.2.3,10.1.2.4"}, "10.1.2.3,10.1.2.4"),
                          ({"ATOMICLAB_SERVER_IP": "10.9.8.7", "ATOMICLAB_CLIENT_IP": "10.9.8.8"}, "10.9.8.1")):
        for p in machines(record(env))["win-server"]["block"]["vm"]["provision"]:
            assert p["kwargs"]["env"]["ATOMICLAB_HARNESS_ADDRESSES"] == expected
    text = (PROVISION / "configure-winrm-https.ps1").read_text()
    rule = re.search(r"New-NetFirewallRule -Name 'atomiclab-winrm-https'.*?\| Out-Null", text, re.S)
    assert rule and "-RemoteAddress $harness" in rule.group(0)
    assert "Set-NetFirewallRule -Name 'atomiclab-winrm-https' -RemoteAddress $harness" in text  # an older rule too
    assert "throw 'ATOMICLAB_HARNESS_ADDRESSES is empty" in text


@needs_ruby
def test_account_and_lockdown_steps_run_only_when_named() -> None:
    vm = machines(record())["win-server"]["block"]
    steps = {p["args"][0]: p["kwargs"]["run"] for p in vm["vm"]["provision"]}
    assert steps.pop("harness-account") == "never" and steps.pop("winrm-lockdown") == "never"
    assert set(steps.values()) == {"once"}
    assert vm["winrm"]["transport"] == "negotiate" and vm["winrm"]["basic_auth_only"] is False


def test_lockdown_turns_basic_and_unencrypted_winrm_off() -> None:
    text = (PROVISION / "lockdown-winrm.ps1").read_text()
    assert "foreach ($side in 'Service', 'Client')" in text
    assert 'Set-Item -Path "WSMan:\\localhost\\$side\\Auth\\Basic" -Value $false' in text
    assert 'Set-Item -Path "WSMan:\\localhost\\$side\\AllowUnencrypted" -Value $false' in text
    assert "Get-NetFirewallRule -Name 'WINRM-HTTP-In-TCP*'" in text and "-RemoteAddress $harness" in text
    assert "throw \"WinRM lockdown did not apply" in text  # checked, not assumed
