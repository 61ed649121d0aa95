"""lab.yaml: schema validation with FILE:LINE errors, defaults, secrets never stored or echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.content.labconfig import load_lab_config
from harness.errors import ContentError
from harness.targets import parse_emulate_settings

GOOD = """\
name: lab1
targets:
  - name: win2022
    transport: winrm
    address: 192.168.56.10
    username: atomiclab
    password_env: ATOMICLAB_WIN_PASSWORD
    ca_cert: certs/win.pem
    tools: {nmap: 'C:\\nmap.exe'}
  - name: linux1
    transport: ssh
    address: 192.168.56.20
    username: lab
    known_hosts: known_hosts
channels:
  Security: Windows/Security
timeouts: {command_s: 120, telemetry_s: 45}
input_arguments:
  '*': {target: 127.0.0.1}
  c9c5c712-9e58-4613-85f6-139cddfa1f30: {ports: '22,80', target: 10.0.0.1}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lab.yaml"
    p.write_text(text)
    return p


def test_good_lab_file_with_defaults(tmp_path):
    lab = load_lab_config(write(tmp_path, GOOD))
    win, lin = lab.targets
    assert (win.port, win.auth, win.scheme, win.platform) == (5986, "ntlm", "https", "windows")
    assert win.ca_cert == tmp_path / "certs" / "win.pem" and win.tools["nmap"] == "C:\\nmap.exe"
    assert (lin.port, lin.auth, lin.platform, lin.known_hosts) == (22, "key", "linux", tmp_path / "known_hosts")
    assert lab.timeouts.command_s == 120 and lab.timeouts.connect_s == 30
    assert lab.arguments_for("c9c5c712-9e58-4613-85f6-139cddfa1f30") == {"target": "10.0.0.1", "ports": "22,80"}
    assert lab.arguments_for("other") == {"target": "127.0.0.1"}
    assert lab.channels == {"Security": "Windows/Security"}


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("targets: []\n", 1, "non-empty list"),
        ("targets:\n  - name: w\n    transport: telnet\n    address: x\n", 3, "winrm or ssh"),
        ("targets:\n  - name: w\n    transport: winrm\n", 2, "address"),
        ("targets:\n  - name: w\n    transport: winrm\n    address: x\n    auth: key\n    username: u\n", 5,
         "not valid for winrm"),
        ("targets:\n  - name: w\n    transport: winrm\n    address: x\n    scheme: http\n    auth: basic\n"
         "    username: u\n", 6, "clear"),
        ("targets:\n  - name: w\n    transport: winrm\n    address: x\n    username: u\n  - name: w\n"
         "    transport: ssh\n    address: y\n", 6, "duplicate target name"),
        ("targets:\n  - name: w\n    transport: winrm\n    address: x\n    password_env: 'hunter 2'\n", 5,
         "NAME of an environment variable"),
        ("targets:\n  - name: w\n    transport: winrm\n    address: x\n    prot: 5\n", 5, "prot"),
        ("targets: [\n", 2, "invalid YAML"),
    ],
)
def test_bad_lab_files_name_file_and_line(tmp_path, text, line, needle):
    p = write(tmp_path, text)
    with pytest.raises(ContentError) as err:
        load_lab_config(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:{line}:"), msg
    assert needle in msg


def test_password_in_lab_file_is_refused_without_echoing_it(tmp_path):
    p = write(tmp_path, "targets:\n  - name: w\n    transport: winrm\n    address: x\n    username: u\n"
                        "    password: CanaryS3cret!\n")
    with pytest.raises(ContentError) as err:
        load_lab_config(p)
    assert "password_env" in str(err.value) and "CanaryS3cret" not in str(err.value)


def test_emulate_settings_parse_and_reject():
    s = parse_emulate_settings(["sysmon_network=false", "tools=nbtscan,git", "delivery_delay_s=1.5"])
    assert s == {"sysmon_network": False, "tools": frozenset({"nbtscan", "git"}), "delivery_delay_s": 1.5}
    with pytest.raises(ContentError, match="KEY=VALUE"):
        parse_emulate_settings(["warp=9"])
    with pytest.raises(ContentError, match="not a valid bool"):
        parse_emulate_settings(["sysmon_network=maybe"])
