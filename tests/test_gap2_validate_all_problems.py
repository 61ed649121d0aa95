"""`atomiclab validate` reports every problem in one run: a schema error does not hide the
cross-reference problems (undeclared/unused #{arg}, duplicate GUIDs, unknown GUIDs, missing rules)
of the well-formed parts of the same file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.content.validate import validate_paths

GUID = "11111111-2222-4333-8444-555555555555"

BROKEN = f"""\
attack_technique: T9999
display_name: Example technique
atomic_tests:
- name: First test
  auto_generated_guid: {GUID}
  description: Writes a file.
  supported_platforms:
  - windows
  input_arguments:
    out:
      description: Output file
      type: path
      default: C:\\Temp\\x.txt
    unused_arg:
      description: Never used
      type: string
      default: x
  executor:
    name: bogus
    command: |
      echo hello > #{{out}}
      type #{{undeclared}}
- name: Second test
  auto_generated_guid: {GUID}
  description: Same GUID as the first.
  supported_platforms:
  - windows
  executor:
    name: command_prompt
    command: echo second
"""

#: (line, YAML path, message part) of every problem in BROKEN, in file order.
EXPECTED = [
    (14, "atomic_tests[0].input_arguments.unused_arg", "input argument 'unused_arg' is declared but never used"),
    (19, "atomic_tests[0].executor.name", "bogus"),
    (22, "atomic_tests[0].executor.command", "placeholder #{undeclared} is not a declared input argument"),
    (24, "atomic_tests[1].auto_generated_guid", f"duplicate GUID {GUID} (also 'First test' at "),
]


def write(tmp_path: Path, rel: str, text: str) -> Path:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_schema_error_and_cross_references_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "atomics/T9999/T9999.yaml", BROKEN)
    report = validate_paths([path], rule_loader=False)
    got = [(p.line, p.path, p.message) for p in report.problems]
    assert len(got) == len(EXPECTED), "\n".join(str(p) for p in report.problems)
    for (line, ypath, message), (want_line, want_path, want_part) in zip(got, EXPECTED, strict=True):
        assert (line, ypath) == (want_line, want_path) and want_part in message, (line, ypath, message)
    assert all(p.file == str(path) for p in report.problems)


def test_cli_prints_each_problem_as_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "atomics/T9999/T9999.yaml", BROKEN)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    for line, ypath, part in EXPECTED:
        hits = [row for row in text.splitlines() if row.startswith(f"{path}:{line}: {ypath}: ")]
        assert len(hits) == 1 and part in hits[0], (line, ypath, text)


def test_duplicate_guid_across_a_broken_and_a_good_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "atomics/A/A.yaml", BROKEN.replace("- name: Second test", "- name: Second test\n  bogus_key: 1"))
    good = write(tmp_path, "atomics/B/B.yaml", f"""\
        attack_technique: T9998
        display_name: Other
        atomic_tests:
        - name: Third test
          auto_generated_guid: {GUID.upper()}
          supported_platforms: [windows]
          executor: {{name: command_prompt, command: echo third}}
        """)
    report = validate_paths([tmp_path / "atomics"], rule_loader=False)
    dups = [p for p in report.problems if "duplicate GUID" in p.message]
    assert [(p.file, p.line) for p in dups] == [(str(bad), 25), (str(good), 5)]  # bogus_key pushed it down a line
    assert any("bogus_key" in p.message for p in report.problems)


def test_expectations_with_schema_error_still_cross_checked(tmp_path: Path) -> None:
    write(tmp_path, "atomics/T9999/T9999.yaml", BROKEN.replace("name: bogus", "name: command_prompt")
          .replace("type #{undeclared}", "type #{unused_arg}").replace(f"auto_generated_guid: {GUID}\n  description: Same",
                                                                    "auto_generated_guid: 22222222-2222-4333-8444-555555555555\n  description: Same"))
    exp = write(tmp_path, "expectations/T9999.yaml", """\
        atomics: atomics/T9999/T9999.yaml
        tests:
          99999999-2222-4333-8444-555555555555:
            name: Nobody
            time_budget: -5
            detections:
              - rule: detections/sigma/missing.yml
                fires: true
        """)
    report = validate_paths([tmp_path / "atomics", exp], root=tmp_path, rule_loader=False)
    rows = [(p.line, p.path, p.message) for p in report.problems if p.file == str(exp)]
    messages = " | ".join(m for _, _, m in rows)
    assert any(line == 5 and path == "tests.99999999-2222-4333-8444-555555555555.time_budget"
               for line, path, _ in rows), messages
    assert any(line == 3 and "unknown test GUID 99999999" in m for line, _, m in rows), messages
    assert any(line == 7 and "rule file detections/sigma/missing.yml does not exist" in m for line, _, m in rows), messages
    assert [p for p in report.problems if p.file != str(exp)] == []
