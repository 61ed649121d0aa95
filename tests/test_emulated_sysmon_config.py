"""The emulated host applies a real Sysmon XML configuration (harness/emulated/sysmon_config.py).

Semantics under test, as Microsoft documents them (Learn "Sysmon configuration files", Sysinternals
blog "Sysmon - The rules about rules" and "Sysmon 10.4 rule enhancements"): include logs only
matches, exclude logs all but matches, exclude wins over include, an empty include logs nothing,
RuleGroup/Rule groupRelation, the conditions, HashAlgorithms, RuleName from the rule's name.
The sysmon-modular checkout is read from $ATOMICLAB_SYSMON_MODULAR (skipped when absent).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.emulated.host import EmulatedHost, HostSettings
from harness.emulated.sysmon_config import (
    SysmonConfigError,
    default_sysmon_config,
    load_sysmon_config,
    parse_sysmon_config,
)
from harness.telemetry.event import SYSMON

FIXTURES = Path(__file__).parent / "fixtures" / "sysmon"
ROOT = Path(__file__).resolve().parent.parent
NMAP_GUID = "c9c5c712-9e58-4613-85f6-139cddfa1f30"


def _data(xml: str) -> dict[str, str]:
    return dict(re.findall(r"<Data Name='(\w+)'>([^<]*)<", xml))


def _sysmon(host: EmulatedHost, event_id: int) -> list[dict[str, str]]:
    return [_data(x) for x in host.eventlog.query(SYSMON, xpath=f"*[System[EventID={event_id}]]")]


def test_include_exclude_rule_names_and_hashes() -> None:
    cfg = load_sysmon_config(FIXTURES / "small.xml")
    assert cfg.sha256 == hashlib.sha256((FIXTURES / "small.xml").read_bytes()).hexdigest()
    nmap = {"Image": r"C:\Program Files (x86)\Nmap\nmap.exe", "CommandLine": "nmap -sV 127.0.0.1"}
    assert cfg.decide(1, nmap) == (True, "technique_id=T1046")  # condition "image": the file name alone
    assert cfg.decide(1, {"Image": r"C:\x\powershell.exe", "CommandLine": "tnc; Test-NetConnection"}) == (True, "procs")
    netstat = {"Image": r"C:\Windows\System32\cmd.exe", "CommandLine": "cmd /c netstat -ano | findstr LISTENING"}
    assert cfg.decide(1, netstat) == (True, "cmd netstat")
    assert cfg.decide(1, {**netstat, "CommandLine": "cmd /c netstat -ano"}) == (False, "-")  # Rule is "and"
    # exclude wins over include: the launcher line mentions TcpClient but is excluded
    launcher = {"Image": r"C:\x\powershell.exe", "CommandLine": "p -NoProfile -NonInteractive -EncodedCommand TcpClient"}
    assert cfg.decide(1, launcher) == (False, "-")
    assert cfg.decide(5, {"Image": "x"}) == (True, "-")  # empty exclude: everything
    assert cfg.decide(3, {"DestinationPort": "445"})[0] and not cfg.decide(3, {"DestinationPort": "80"})[0]
    assert not cfg.decide(11, {"TargetFilename": r"C:\Windows\Temp\a.txt"})[0]
    assert not cfg.decide(11, {"TargetFilename": r"C:\Users\u\a.ps1"})[0]  # not end with .txt
    assert cfg.decide(11, {"TargetFilename": r"C:\Users\u\a.txt"})[0]
    # HashAlgorithms md5,sha256, in Sysmon's order (SHA1, MD5, SHA256, IMPHASH as in the recordings)
    h = cfg.hashes(b"abc")
    assert h == f"MD5={hashlib.md5(b'abc').hexdigest().upper()},SHA256={hashlib.sha256(b'abc').hexdigest().upper()}"


def test_host_logs_what_its_config_says() -> None:
    host = EmulatedHost(HostSettings(sysmon_config=load_sysmon_config(FIXTURES / "small.xml")))
    res = host.execute('"cmd.exe" /c netstat -ano | findstr LISTENING & rem atomiclab_run_' + "a" * 32)
    assert res.exit_code == 0
    created = _sysmon(host, 1)
    lines = [e["CommandLine"] for e in created]
    # Only the include rules' matches: the cmd pipe; not the launcher (excluded), not netstat alone.
    assert len(created) == 1 and "netstat -ano | findstr" in lines[0] and created[0]["RuleName"] == "cmd netstat"
    assert created[0]["Hashes"].startswith("MD5=") and ",SHA256=" in created[0]["Hashes"]
    assert _sysmon(host, 5)  # ProcessTerminate: empty exclude logs every exit


def test_default_is_the_lab_config_shape() -> None:
    """Without lab/cache/sysmonconfig.xml the built-in stand-in: no Sysmon 5, all four hashes, no conhost."""
    cfg = default_sysmon_config(None)
    assert cfg.source.startswith("built-in lab_default.xml")
    host = EmulatedHost()
    host.execute("whoami")
    assert _sysmon(host, 1) and not _sysmon(host, 5)
    hashes = _sysmon(host, 1)[0]["Hashes"]
    assert re.fullmatch(r"SHA1=[0-9A-F]{40},MD5=[0-9A-F]{32},SHA256=[0-9A-F]{64},IMPHASH=[0-9A-F]{32}", hashes)
    assert not cfg.decide(1, {"Image": r"C:\Windows\System32\conhost.exe"})[0]


def test_lab_cache_config_is_the_default_when_present(tmp_path: Path) -> None:
    (tmp_path / "lab" / "cache").mkdir(parents=True)
    data = (FIXTURES / "small.xml").read_bytes()
    (tmp_path / "lab" / "cache" / "sysmonconfig.xml").write_bytes(data)
    lock = tmp_path / "lab" / "cache" / "cache.lock"
    lock.write_text("sysmonconfig.xml  -  https://example.invalid/x.xml\n")
    assert default_sysmon_config(tmp_path).sha256 == hashlib.sha256(data).hexdigest()
    lock.write_text(f"sysmonconfig.xml  {'0' * 64}  https://example.invalid/x.xml\n")
    with pytest.raises(SysmonConfigError, match="does not match its pin"):
        default_sysmon_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (b"<Sysmon schemaversion='4.90'><EventFiltering><ProcessCreat onmatch='include'/></EventFiltering></Sysmon>",
         "<ProcessCreat>"),
        (b"<Sysmon schemaversion='4.90'><EventFiltering><ProcessCreate onmatch='include'>"
         b"<Image condition='starts with'>x</Image></ProcessCreate></EventFiltering></Sysmon>", "starts with"),
        (b"<Sysmon schemaversion='4.90'><EventFiltering><NetworkConnect onmatch='include'>"
         b"<DestPort>80</DestPort></NetworkConnect></EventFiltering></Sysmon>", "<DestPort>"),
        (b"<Sysmon schemaversion='4.90'><EventFiltering><FileCreate onmatch='maybe'/></EventFiltering></Sysmon>",
         "onmatch"),
        (b"<Sysmon schemaversion='4.90'><HashAlgorithms>sha512</HashAlgorithms></Sysmon>", "SHA512"),
        (b"<Sysmon schemaversion='4.90'><Bogus/></Sysmon>", "<Bogus>"),
        (b"<Sysmon schemaversion='4.90'><EventFiltering><RuleGroup groupRelation='xor'>"
         b"<ProcessCreate onmatch='include'/></RuleGroup></EventFiltering></Sysmon>", "xor"),
        (b"<Sysmon><EventFiltering/>", "not well-formed"),
    ],
)
def test_unreadable_element_is_an_error_naming_it(text: bytes, names: str) -> None:
    with pytest.raises(SysmonConfigError) as info:
        parse_sysmon_config(text, source="bad.xml")
    msg = str(info.value)
    assert names in msg and "bad.xml" in msg and "\n" not in msg


def test_every_sysmon_modular_config_is_read_completely() -> None:
    checkout = os.environ.get("ATOMICLAB_SYSMON_MODULAR")
    base = Path(checkout) if checkout else None
    configs = sorted(base.glob("sysmonconfig*.xml")) if base is not None and base.is_dir() else []
    if base is None or not configs:
        pytest.skip(f"no sysmon-modular checkout (set ATOMICLAB_SYSMON_MODULAR to one; now {checkout!r})")
    for path in configs:
        cfg = load_sysmon_config(path)
        assert cfg.filters, path
    excludes_only = load_sysmon_config(base / "sysmonconfig-excludes-only.xml")
    # The lab's variant: no process terminations, conhost excluded, every tool's start logged.
    assert not excludes_only.decide(5, {"Image": r"C:\Windows\System32\cmd.exe"})[0]
    assert not excludes_only.decide(1, {"Image": r"C:\Windows\System32\conhost.exe"})[0]
    assert excludes_only.decide(1, {"Image": r"C:\Program Files (x86)\Nmap\nmap.exe", "CommandLine": "nmap"})[0]
    assert excludes_only.hash_algorithms == ("*",)


SHORT_EXPECTATION = f"""atomics: atomics/T1046/T1046.yaml
tests:
  {NMAP_GUID}:
    name: Nmap service scan of the local host
    time_budget: 2   # short: the event never comes under this config, the test need not wait long
    events:
      - id: sysmon1-nmap
        description: Sysmon 1 for nmap.exe
        channel: Microsoft-Windows-Sysmon/Operational
        event_id: 1
        where: {{Image|endswith: '\\nmap.exe'}}
        requires: [sysmon]
"""


def test_run_with_a_config_that_excludes_the_image_is_telemetry_missing_naming_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "atomics" / "T1046").mkdir(parents=True)
    (project / "expectations").mkdir()
    (project / "atomics" / "T1046" / "T1046.yaml").write_bytes((ROOT / "atomics" / "T1046" / "T1046.yaml").read_bytes())
    (project / "expectations" / "T1046.yaml").write_text(SHORT_EXPECTATION)
    out = tmp_path / "out"
    cfg = FIXTURES / "no_nmap.xml"
    code = main(["run", "--no-progress", "--out", str(out), "--history", str(tmp_path / "h.sqlite"),
                 "--atomics", str(project / "atomics"), "--tests", NMAP_GUID, "--sysmon-config", str(cfg)])
    data = json.loads((out / "results.json").read_text())
    assert code != 0
    (test,) = data["tests"]
    assert test["status"] == "failed" and test["failure"] == "telemetry_missing"
    sha = hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert str(cfg) in test["reason"] and sha.upper() in test["reason"].upper()
    # the report names the config and its SHA-256
    assert {"path": str(cfg), "kind": "sysmon_config", "sha256": sha} in data["content"]["files"]


def test_unreadable_config_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<Sysmon schemaversion='4.90'><EventFiltering><ProcessCreate onmatch='include'>"
                   "<Image condition='regex'>x</Image></ProcessCreate></EventFiltering></Sysmon>")
    code = main(["run", "--no-progress", "--out", str(tmp_path / "o"), "--history", str(tmp_path / "h.sqlite"),
                 "--tests", NMAP_GUID, "--sysmon-config", str(bad)])
    err = capsys.readouterr().err
    assert code != 0 and "bad.xml" in err and "regex" in err and "Traceback" not in err
