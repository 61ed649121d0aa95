"""Input-argument overrides: ``atomiclab run --arg [GUID:]NAME=VALUE`` and ``--atomiclab-arg``.

Precedence YAML default < lab.yaml input_arguments < --arg; values go through the checked, quoted
path (a bad one is a one-line usage error naming argument and test, before anything runs); the
effective overrides are in results.json and report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.content.atomics import discover_atomics
from harness.errors import ContentError
from harness.plan import ArgOverride, PlannedTest, parse_arg_override, resolve_arguments
from harness.reporting.results_json import schema_problems

REPO = Path(__file__).resolve().parents[1]
NMAP = "c9c5c712-9e58-4613-85f6-139cddfa1f30"  # powershell: nmap_path, ports, target, output_file
TCP = "d52adf0b-75fa-483b-8560-5d90969c8e59"  # powershell: target, ports
SWEEP = "828eed2c-1f5c-4467-83a2-6813b09575d5"  # powershell: network_prefix, last_host (integer), port
NBTSCAN = "b6435a56-d12d-4ead-9f3d-66459e6d8817"  # command_prompt: nbtscan_path, range

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def planned() -> list[PlannedTest]:
    files = discover_atomics([REPO / "atomics" / "T1046"])
    return [PlannedTest(t) for f in files for t in f.tests]


def _cli(*texts: str) -> list[ArgOverride]:
    return [parse_arg_override(t) for t in texts]


def test_parse_forms() -> None:
    assert parse_arg_override("ports=22,80") == ArgOverride("ports", "22,80")
    assert parse_arg_override(f"{NMAP.upper()}:ports=a=b") == ArgOverride("ports", "a=b", NMAP)
    assert parse_arg_override("target=") == ArgOverride("target", "")
    for bad in ("ports", "=x", "not-a-guid:ports=1", "a b=1"):
        with pytest.raises(ValueError):
            parse_arg_override(bad)


def test_precedence_yaml_lab_cli(planned: list[PlannedTest]) -> None:
    lab = {"*": {"target": "10.0.0.1", "ports": "1"}, NMAP: {"ports": "2", "target": "10.0.0.2"}}
    # no override at all: nothing recorded, the YAML defaults apply
    assert resolve_arguments(planned) == {}
    only_lab = resolve_arguments(planned, lab=lab)
    assert only_lab[NMAP] == {"target": "10.0.0.2", "ports": "2"}  # the test's own lab entry beats "*"
    assert only_lab[TCP] == {"target": "10.0.0.1", "ports": "1"}
    assert SWEEP not in only_lab  # "*" applies only where the name is declared
    both = resolve_arguments(planned, lab=lab, cli=_cli(f"{NMAP}:ports=4", "ports=3", "ports=5"))
    assert both[NMAP] == {"target": "10.0.0.2", "ports": "4"}  # scoped --arg beats unscoped, whatever the order
    assert both[TCP] == {"target": "10.0.0.1", "ports": "5"}  # the later unscoped --arg wins
    assert SWEEP not in both


def test_unknown_names_and_tests_are_errors(planned: list[PlannedTest]) -> None:
    with pytest.raises(ContentError, match="no selected test declares an input argument 'nope'"):
        resolve_arguments(planned, cli=_cli("nope=1"))
    with pytest.raises(ContentError, match="declares no input argument 'last_host'"):
        resolve_arguments(planned, cli=_cli(f"{NMAP}:last_host=3"))
    with pytest.raises(ContentError, match="no selected test has GUID"):
        resolve_arguments(planned[:1], cli=_cli(f"{TCP}:ports=1"))
    with pytest.raises(ContentError, match=r"lab\.yaml.*declares no input argument 'bogus'"):
        resolve_arguments(planned, lab={NMAP: {"bogus": "x"}}, lab_source="lab.yaml")


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        ("last_host=5;calc", "expected an integer"),  # wrong type (integer)
        ("target=a\nb", "control characters"),  # a newline in any executor
        ("range=1.2.3.4&calc", "not allowed in a cmd argument"),  # cmd allow-list (nbtscan)
        ("nmap_path= ", "expected a non-empty path"),
    ],
)
def test_bad_values_name_argument_and_test(planned: list[PlannedTest], arg: str, needle: str) -> None:
    with pytest.raises(ContentError) as info:
        resolve_arguments(planned, cli=_cli(arg))
    text = str(info.value)
    name = arg.split("=")[0]
    assert needle in text and f"--arg {name}=" in text and "refused for test '" in text and "\n" not in text.strip()


def test_powershell_quoting_keeps_an_injection_literal(planned: list[PlannedTest]) -> None:
    from harness.execution.arguments import substitute

    (nmap,) = [p.test for p in planned if p.test.guid == NMAP]
    args = resolve_arguments(planned, cli=_cli(f"{NMAP}:ports=22'; calc; '"))[NMAP]
    line = substitute(nmap.executor.command or "", nmap, nmap.executor.name, args)
    assert "-p '22''; calc; '''" in line


def test_cli_bad_value_is_exit_2_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["run", "--no-progress", "--tests", SWEEP, "--arg", "last_host=5;calc", "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "last_host" in err and SWEEP in err and "integer" in err
    assert not out.exists()  # no report folder for a run that never started
    assert main(["run", "--no-progress", "--tests", SWEEP, "--arg", "ports=1", "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")]) == 2
    assert "no selected test declares an input argument 'ports'" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:  # malformed --arg: argparse usage error
        main(["run", "--arg", "ports"])
    assert exc.value.code == 2


def test_lab_value_checked_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "targets:\n  - name: w\n    transport: winrm\n    address: 127.0.0.1\n    username: u\n    password_env: X_PW\n"
        f"input_arguments:\n  '{SWEEP}': {{last_host: 'x'}}\n"
    )
    out = tmp_path / "out"
    code = main(["run", "--no-progress", "--lab", str(lab), "--tests", SWEEP, "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and "lab.yaml" in err and "last_host" in err and "integer" in err
    assert not out.exists()


@pytest.mark.network
def test_emulated_run_with_port_list_override(tmp_path: Path) -> None:
    # The expectations name the five default ports, so the same ports in a new order still pass.
    out = tmp_path / "report"
    code = main(["run", "--no-progress", "--tests", NMAP, "--arg", "ports=3389,445,135,80,22", "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    data = json.loads((out / "results.json").read_text())
    assert schema_problems(data) == []
    (t,) = data["tests"]
    assert code == 0 and t["status"] == "passed", t["reason"]
    assert t["arguments"] == {"ports": "3389,445,135,80,22"}
    command = next(s for s in t["steps"] if s["role"] == "command")
    assert "-p '3389,445,135,80,22'" in command["command"]
    assert "-p '3389,445,135,80,22'" in (out / command["transcript"]).read_text()
    events = [json.loads(line) for line in (out / "evidence" / "events.jsonl").read_text().splitlines()]
    nmap = [e for e in events if e["event_id"] == 1 and e["fields"]["Image"].endswith("nmap.exe")]
    assert nmap and all(" -p 3389,445,135,80,22 " in e["fields"]["CommandLine"] for e in nmap)
    ports = [int(e["fields"]["DestinationPort"]) for e in events if e["event_id"] == 3]
    # Polling stops once every expectation is met (issue 15) and Sysmon writes each EID 3 1.6-5.7 s
    # after the connect (emulated timing model): the evidence holds the connections logged by then,
    # all to overridden ports (the probe order is the command line's, asserted above).
    assert ports and set(ports) <= {3389, 445, 135, 80, 22}
    page = (out / "report.html").read_text()
    assert "input arguments overridden" in page and "<code>ports=3389,445,135,80,22</code>" in page


def test_plugin_arg_option(pytester: pytest.Pytester) -> None:
    t1046 = str(REPO / "atomics" / "T1046")
    result = pytester.runpytest_inprocess("--atomiclab-arg", "ports=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = pytester.path / "out"
    hist = pytester.path / "h.sqlite"
    common = ("--atomiclab", t1046, "--collect-only", "-q", "--atomiclab-out", str(out), "--atomiclab-history",
              str(hist))
    result = pytester.runpytest_inprocess(*common, "--atomiclab-arg", "ports=22;calc", "-k", "nbtscan or TcpClient")
    assert result.ret == pytest.ExitCode.OK  # the TcpClient test is powershell: ';' is quoted, fine
    result = pytester.runpytest_inprocess(*common, "--atomiclab-arg", "range=1&calc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--arg range=*refused for test 'NetBIOS discovery with nbtscan'*not allowed*"])
    result = pytester.runpytest_inprocess(*common, "--atomiclab-arg", "ports=1", "-k", "nbtscan")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # after -k no collected test declares it
    result.stderr.fnmatch_lines(["*no selected test declares an input argument 'ports'*"])
    result = pytester.runpytest_inprocess(*common, "--atomiclab-arg", "bad")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not out.exists()
