"""Issue 16: ``pytest --atomiclab --html`` must not run a script from an atomic's name.

pytest-html 4 writes the test id (which holds the atomic name) into its page unescaped and inserts
it with ``innerHTML``; atomiclab's plugin escapes that cell (and its own extras are data URLs).
"""

from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace

import pytest

from harness.pytest_plugin import pytest_html_results_table_row

pytest_plugins = ["pytester"]

EVIL = "<img src=x onerror=alert(1)>"
ATOMIC = f"""attack_technique: T1033
display_name: System Owner/User Discovery
atomic_tests:
- name: "whoami {EVIL}"
  auto_generated_guid: 4f1d7b2e-1c53-4d84-8d64-6d7e7f3b2a10
  description: benign
  supported_platforms: [windows]
  executor:
    name: command_prompt
    command: whoami
"""


def test_the_test_id_cell_is_escaped_and_an_escaped_one_left_alone() -> None:
    report = SimpleNamespace(nodeid=f"a.yaml::T[emulated]::whoami {EVIL}", when="call")
    cells = [f'<td class="col-testId">{report.nodeid}</td>', '<td class="col-duration">1 ms</td>']
    pytest_html_results_table_row(report, cells)
    assert cells[0] == f'<td class="col-testId">{html.escape(report.nodeid)}</td>' and EVIL not in cells[0]
    assert cells[1] == '<td class="col-duration">1 ms</td>'
    pytest_html_results_table_row(report, cells)  # already escaped: unchanged (never double-escaped)
    assert cells[0] == f'<td class="col-testId">{html.escape(report.nodeid)}</td>'


@pytest.mark.network
@pytest.mark.slow
def test_pytest_html_page_holds_no_markup_from_an_atomic_name(pytester: pytest.Pytester) -> None:
    atomics = pytester.path / "T1033.yaml"
    atomics.write_text(ATOMIC)
    page = pytester.path / "report.html"
    result = pytester.runpytest_subprocess(
        "--atomiclab", str(atomics), f"--html={page}", "--self-contained-html",
        "--atomiclab-out", str(pytester.path / "out"), "--atomiclab-history", str(pytester.path / "h.sqlite"),
        "-p", "no:cacheprovider",
    )
    assert result.ret in (0, 1), result.stdout.str()
    text = page.read_text(encoding="utf-8")
    # The page's data (a JSON blob in an attribute) holds the table cells and logs the page inserts
    # with innerHTML: the atomic name must be in them as escaped text only.
    blob = json.loads(html.unescape(re.search(r'data-jsonblob="([^"]*)"', text).group(1)))  # type: ignore[union-attr]
    inserted = [cell for runs in blob["tests"].values() for r in runs for cell in [*r["resultsTableRow"], r["log"]]]
    assert any(html.escape(EVIL) in cell for cell in inserted)
    assert not any(EVIL in cell for cell in inserted)
