"""The pytest plugin, driven with pytester: options, collection ids, -k, junitxml, pytest-html, xdist."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
T1046 = REPO / "atomics" / "T1046"

pytest_plugins = ["pytester"]


def test_options_need_atomiclab(pytester):
    result = pytester.runpytest_inprocess("--atomiclab-lab", "x.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--atomiclab-* options need --atomiclab*"])


def test_bad_lab_file_is_a_usage_error(pytester):
    lab = pytester.path / "lab.yaml"
    lab.write_text("targets:\n  - name: w\n    transport: telnet\n    address: x\n")
    result = pytester.runpytest_inprocess("--atomiclab", "--atomiclab-lab", str(lab), str(T1046))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*lab.yaml:3*transport must be winrm or ssh*"])


def test_without_flag_atomics_are_not_collected(pytester):
    result = pytester.runpytest_inprocess(str(T1046), "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_collect_ids_and_k(pytester):
    out = pytester.path / "atomiclab-out"
    result = pytester.runpytest_inprocess(
        "--atomiclab", str(T1046), "--collect-only", "-q", "-k", "nbtscan or netstat",
        "--atomiclab-out", str(out), "--atomiclab-history", str(pytester.path / "h.sqlite"),
    )
    assert not out.exists() and not (pytester.path / "h.sqlite").exists()  # nothing ran: no report folder
    result.stdout.fnmatch_lines([
        "*T1046.yaml::T1046[[]emulated[]]::NetBIOS discovery with nbtscan",
        "*T1046.yaml::T1046[[]emulated[]]::Listening services with netstat piped to findstr",
        "*2/5 tests collected (3 deselected)*",
    ])


@pytest.mark.network
@pytest.mark.slow
def test_runs_t1046_with_junit_html_and_xdist(pytester):
    junit = pytester.path / "junit.xml"
    html = pytester.path / "report.html"
    out = pytester.path / "atomiclab-out"
    result = pytester.runpytest_subprocess(
        "--atomiclab", str(T1046), f"--junitxml={junit}", f"--html={html}", "--self-contained-html",
        "--atomiclab-out", str(out), "--atomiclab-history", str(pytester.path / "h.sqlite"),
        "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=5)
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 5 and all(c.find("failure") is None for c in cases)
    page = html.read_text()
    assert page.count("atomiclab verdicts") >= 5 and "atomiclab result" in page  # extras per item
    blob = re.search(r"atomiclab verdicts&#34;.*?base64,([A-Za-z0-9+/=]+)", page)
    assert blob and "Sysmon EID 3" in base64.b64decode(blob.group(1)).decode()
    # one host's tests stayed on one worker: a single worker folder holds all five results
    folders = [p for p in out.iterdir() if (p / "results.json").is_file()]
    assert len(folders) == 1
    data = json.loads((folders[0] / "results.json").read_text())
    assert data["mode"] == "pytest" and len(data["tests"]) == 5 and data["complete"]
    # as in `atomiclab run`, the published query is linted (not judged) and its defects are listed
    assert data["lint_not_judged"] == ["detections/sumo/upstream/t1046_network_service_discovery.sumo"]
    assert len(data["lint"][data["lint_not_judged"][0]]) >= 20
