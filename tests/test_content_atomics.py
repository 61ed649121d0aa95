"""Loading atomics: upstream Atomic Red Team files unmodified, the shipped T1046 and benign content."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.content.atomics import (
    PLACEHOLDER,
    check_atomic_file,
    discover_atomics,
    find_test,
    lint_atomic_file,
    load_atomic_file,
)
from harness.content.project import content_root
from harness.content.validate import validate_paths
from harness.errors import ContentError
from harness.model import ArgType, ExecutorName

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO / "tests" / "fixtures" / "content" / "upstream"


def test_all_upstream_style_fixtures_load_and_validate_clean() -> None:
    files = discover_atomics([UPSTREAM])
    assert {f.technique for f in files} == {"T1003.001", "T1046", "T1082"}
    assert sum(len(f.tests) for f in files) == 10
    executors = {t.executor.name for f in files for t in f.tests}
    assert executors == {ExecutorName.SH, ExecutorName.BASH, ExecutorName.MANUAL, ExecutorName.POWERSHELL,
                         ExecutorName.COMMAND_PROMPT}
    report = validate_paths([UPSTREAM], rule_loader=False)
    assert report.problems == ()
    assert report.tests == 10


def test_manual_executor_keeps_steps_and_no_command() -> None:
    f = load_atomic_file(UPSTREAM / "T1082" / "T1082.yaml")
    manual = f.tests[3]
    assert manual.executor.name is ExecutorName.MANUAL
    assert manual.executor.command is None
    assert manual.executor.steps is not None
    assert "#{settings_page}" in manual.executor.steps
    assert manual.executor.steps.count("\n") == 3  # multi-line, blank line kept
    assert manual.line == 50


def test_upstream_details_types_defaults_and_optional_keys() -> None:
    f = load_atomic_file(UPSTREAM / "T1046" / "T1046.yaml")
    scan, nmap, win, winpwn, rds = f.tests
    # multi-line bash command kept verbatim, argument type in any case
    assert scan.executor.command is not None
    assert scan.executor.command.splitlines()[0] == "for port in {1..65535}"
    assert scan.input_arguments["host"].type is ArgType.STRING
    assert scan.executor.elevation_required is False  # key left out
    assert scan.dependencies == () and scan.dependency_executor_name is None
    # integer and float defaults keep their text exactly as written
    assert nmap.input_arguments["port"].type is ArgType.INTEGER
    assert nmap.input_arguments["port"].default == "80"
    assert nmap.input_arguments["timeout"].type is ArgType.FLOAT
    assert nmap.input_arguments["timeout"].default == "1.50"
    assert nmap.dependency_executor_name is ExecutorName.SH
    assert len(nmap.dependencies) == 2
    assert nmap.executor.elevation_required is True
    assert win.input_arguments["nmap_url"].type is ArgType.URL
    assert win.executor.command == "nmap #{host_to_scan}"  # |- strips the final newline
    assert winpwn.input_arguments == {}
    assert rds.input_arguments["empty_default"].default == ""
    assert rds.input_arguments["no_default"].default == ""
    assert rds.executor.cleanup_command is None


def test_dotted_technique_folded_text_and_escapes() -> None:
    f = load_atomic_file(UPSTREAM / "T1003.001" / "T1003.001.yaml")
    (t,) = f.tests
    assert f.technique == "T1003.001" and t.technique == "T1003.001"
    assert f.display_name == "OS Credential Dumping: LSASS Memory"
    assert t.input_arguments["output_file"].default == "C:\\Windows\\Temp\\lsass_dump.dmp"
    assert t.input_arguments["procdump_exe"].type is ArgType.PATH  # written PATH
    assert t.description.startswith("The memory of lsass.exe is often dumped")
    assert t.line == 6
    assert t.source == str(UPSTREAM / "T1003.001" / "T1003.001.yaml")


def test_shipped_t1046_atomics() -> None:
    f = load_atomic_file(REPO / "atomics" / "T1046" / "T1046.yaml")
    assert f.technique == "T1046"
    assert [t.guid for t in f.tests] == [
        "c9c5c712-9e58-4613-85f6-139cddfa1f30",
        "d52adf0b-75fa-483b-8560-5d90969c8e59",
        "828eed2c-1f5c-4467-83a2-6813b09575d5",
        "b6435a56-d12d-4ead-9f3d-66459e6d8817",
        "d7b2043f-3075-47e3-87ca-8ca224d06bec",
    ]
    nmap = f.tests[0]
    assert nmap.executor.command == '& "#{nmap_path}" -sV -p #{ports} -oN "#{output_file}" #{target}\n'
    assert nmap.dependencies[0].description == "nmap.exe must exist at #{nmap_path}"
    assert all(t.platforms == ("windows",) for t in f.tests)


def test_shipped_benign_atomics() -> None:
    f = load_atomic_file(REPO / "atomics" / "benign" / "benign.yaml")
    assert f.technique == "benign"
    by_name = {t.name: t for t in f.tests}
    assert len(by_name) == 5
    health = f.tests[0]
    assert health.executor.name is ExecutorName.POWERSHELL
    assert health.executor.command == "Test-NetConnection -ComputerName #{service_host} -Port #{port}\n"
    assert (health.input_arguments["service_host"].default, health.input_arguments["port"].default) == (
        "127.0.0.1", "443")
    helpdesk = f.tests[1]
    assert helpdesk.executor.name is ExecutorName.COMMAND_PROMPT
    assert helpdesk.executor.command == "netstat -an\narp -a\nroute print\n"
    scanner = f.tests[2]
    assert scanner.input_arguments["nmap_path"].default == r"C:\Program Files (x86)\Nmap\nmap.exe"
    assert "-sT -Pn --open -p 445,3389 127.0.0.1 -oX" in (scanner.executor.command or "")
    assert scanner.executor.cleanup_command and "Remove-Item" in scanner.executor.cleanup_command
    git = f.tests[3]
    assert git.executor.command == '"#{git_path}" log --stat -n 1\n'
    assert git.input_arguments["git_path"].default == r"C:\Program Files\Git\cmd\git.exe"
    svchost = f.tests[4]
    assert svchost.executor.command == "C:\\Windows\\System32\\svchost.exe -k netsvcs -p -s #{service_name}\n"
    assert svchost.input_arguments["service_name"].default == "Schedule"


def test_shipped_atomics_lint_clean() -> None:
    for path in (REPO / "atomics").rglob("*.yaml"):
        checked = check_atomic_file(path)
        assert checked.problems == ()
        assert lint_atomic_file(checked) == []


def test_find_test_by_guid_and_name() -> None:
    files = discover_atomics([REPO / "atomics"])
    assert find_test(files, "C9C5C712-9E58-4613-85F6-139CDDFA1F30").name == "Nmap service scan of the local host"
    assert find_test(files, "nbtscan".join(["NetBIOS discovery with ", ""])).guid.startswith("b6435a56")
    assert find_test(files, "netbios DISCOVERY with nbtscan").guid.startswith("b6435a56")
    with pytest.raises(ContentError, match="no atomic test"):
        find_test(files, "nope")


def test_find_test_ambiguous_name(tmp_path: Path) -> None:
    src = (UPSTREAM / "T1082" / "T1082.yaml").read_text(encoding="utf-8")
    twin = src.replace("66703791-c902-4560-8770-42b8a91f7667", "66703791-c902-4560-8770-42b8a91f7668")
    for g in ("cccb070c-df86-4216-a5bc-9fb60c74e27c", "31dad7ad-2286-4c02-ae92-274418c85fec",
              "5c0e9a1d-3f06-4a5b-9a0e-21b5b1b8d6b1"):
        twin = twin.replace(g, g[:-1] + ("0" if g[-1] != "0" else "1"))
    (tmp_path / "twin.yaml").write_text(twin, encoding="utf-8")
    files = discover_atomics([UPSTREAM / "T1082", tmp_path])
    with pytest.raises(ContentError, match="ambiguous"):
        find_test(files, "System Information Discovery")


def test_discover_refuses_duplicate_guids(tmp_path: Path) -> None:
    (tmp_path / "copy.yml").write_bytes((UPSTREAM / "T1082" / "T1082.yaml").read_bytes())
    with pytest.raises(ContentError, match="duplicate GUID"):
        discover_atomics([UPSTREAM / "T1082", tmp_path])


def test_placeholder_pattern() -> None:
    assert PLACEHOLDER.findall('& "#{a}" #{b_c}-#{d.e} #{} {x} #x') == ["a", "b_c", "d.e", ""]


def test_content_root_walks_up_and_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert content_root(REPO / "atomics" / "T1046") == REPO
    (tmp_path / "proj" / "atomics").mkdir(parents=True)
    (tmp_path / "proj" / "expectations").mkdir()
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    assert content_root(deep) == tmp_path / "proj"
    monkeypatch.chdir(deep)
    assert content_root() == tmp_path / "proj"
    # Outside any project: the checkout holding the harness package (this repository).
    assert content_root(tmp_path) == REPO


def test_content_root_error_when_nothing_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness

    fake_pkg = tmp_path / "site" / "harness"
    fake_pkg.mkdir(parents=True)
    monkeypatch.setattr(harness, "__file__", str(fake_pkg / "__init__.py"))
    with pytest.raises(ContentError, match="no atomiclab content found"):
        content_root(tmp_path)
