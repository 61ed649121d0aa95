"""Broken content: every problem is reported as FILE:LINE: YAML-PATH: message, at the right line.

Each case writes a small content root (atomics/, expectations/, detections/) into tmp_path and runs
``validate_paths`` over it; the expected line is the line of the offending node in the text below.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.content.atomics import load_atomic_file
from harness.content.expectations import load_expectations
from harness.content.validate import validate_paths
from harness.errors import ContentError, HarnessError

GOOD_ATOMICS = """\
attack_technique: T9999
display_name: Example technique
atomic_tests:
- name: Example test
  auto_generated_guid: 11111111-2222-4333-8444-555555555555
  description: Writes a file.
  supported_platforms:
  - windows
  input_arguments:
    out:
      description: Output file
      type: path
      default: C:\\Temp\\x.txt
  executor:
    name: command_prompt
    command: |
      echo hello > #{out}
    cleanup_command: del "#{out}"
"""

GOOD_EXPECTATIONS = """\
atomics: atomics/T9999/T9999.yaml
tests:
  11111111-2222-4333-8444-555555555555:
    name: Example test
    time_budget: 30
    events:
      - id: sysmon1-cmd
        channel: Microsoft-Windows-Sysmon/Operational
        event_id: 1
        where: {Image|endswith: '\\cmd.exe', CommandLine|contains: 'echo hello'}
        requires: [sysmon]
    detections:
      - rule: detections/sigma/example.yml
        fires: true
"""


def make_root(tmp_path: Path, atomics: str = GOOD_ATOMICS, expectations: str | None = GOOD_EXPECTATIONS,
              extra: dict[str, str | bytes] | None = None) -> Path:
    root = tmp_path / "content"
    (root / "atomics" / "T9999").mkdir(parents=True)
    (root / "expectations").mkdir()
    (root / "detections" / "sigma").mkdir(parents=True)
    (root / "atomics" / "T9999" / "T9999.yaml").write_text(atomics, encoding="utf-8")
    if expectations is not None:
        (root / "expectations" / "T9999.yaml").write_text(expectations, encoding="utf-8")
    (root / "detections" / "sigma" / "example.yml").write_text("title: x\n", encoding="utf-8")
    for name, content in (extra or {}).items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return root


def problems_of(root: Path) -> list[ContentError]:
    paths = [root / "atomics", root / "expectations", root / "detections"]
    return list(validate_paths(paths, root=root, rule_loader=False).problems)


def test_good_root_is_clean(tmp_path: Path) -> None:
    assert problems_of(make_root(tmp_path)) == []


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


ATOMICS_CASES = [
    # (case id, transformed atomics text, line, yaml path, message fragment)
    ("bad-yaml", _replace(GOOD_ATOMICS, "  - windows\n", "  - [windows\n"), 9, None, "invalid YAML"),
    ("wrong-type-platforms", _replace(GOOD_ATOMICS, "  supported_platforms:\n  - windows\n",
                                      "  supported_platforms: windows\n"),
     7, "atomic_tests[0].supported_platforms", "expected array, got string"),
    ("undeclared-placeholder", _replace(GOOD_ATOMICS, "      echo hello > #{out}\n",
                                        "      echo hello > #{out}\n      type #{outt}\n"),
     18, "atomic_tests[0].executor.command", "#{outt} is not a declared input argument"),
    ("unused-argument", _replace(GOOD_ATOMICS, "      default: C:\\Temp\\x.txt\n",
                                 "      default: C:\\Temp\\x.txt\n    unused:\n      description: never used\n"
                                 "      type: string\n      default: x\n"),
     14, "atomic_tests[0].input_arguments.unused", "'unused' is declared but never used"),
    ("unknown-executor", _replace(GOOD_ATOMICS, "    name: command_prompt\n", "    name: cmd\n"),
     15, "atomic_tests[0].executor.name", "unknown executor"),
    ("executor-without-command", _replace(GOOD_ATOMICS, "    command: |\n      echo hello > #{out}\n", ""),
     15, "atomic_tests[0].executor", "this executor needs a 'command'"),
    ("manual-without-steps", _replace(GOOD_ATOMICS, "    name: command_prompt\n", "    name: manual\n"),
     15, "atomic_tests[0].executor", "a manual executor needs 'steps'"),
    ("misspelled-key", _replace(GOOD_ATOMICS, "    cleanup_command: del \"#{out}\"\n",
                                "    cleanup_command: del \"#{out}\"\n    elevation_requried: true\n"),
     19, "atomic_tests[0].executor.elevation_requried", "unknown key 'elevation_requried'"),
    ("bad-argument-type", _replace(GOOD_ATOMICS, "      type: path\n", "      type: filename\n"),
     12, "atomic_tests[0].input_arguments.out.type", "argument type must be url, string, path"),
    ("bad-guid", _replace(GOOD_ATOMICS, "11111111-2222-4333-8444-555555555555", "not-a-guid"),
     5, "atomic_tests[0].auto_generated_guid", "must be a UUID"),
    ("duplicate-key", _replace(GOOD_ATOMICS, "  description: Writes a file.\n",
                               "  description: Writes a file.\n  description: again\n"),
     7, "atomic_tests[0].description", "duplicate key 'description' (first at line 6)"),
    ("missing-test-name", _replace(GOOD_ATOMICS, "- name: Example test\n  auto_generated_guid",
                                   "- auto_generated_guid"),
     4, "atomic_tests[0]", "missing required key 'name'"),
    ("placeholder-case", _replace(GOOD_ATOMICS, "    cleanup_command: del \"#{out}\"\n",
                                  "    cleanup_command: del \"#{OUT}\"\n"),
     18, "atomic_tests[0].executor.cleanup_command", "did you mean #{out}?"),
    ("placeholder-read-as-comment", _replace(GOOD_ATOMICS, "    cleanup_command: del \"#{out}\"\n",
                                             "    cleanup_command: del #{out}\n"),
     18, "atomic_tests[0].executor.cleanup_command", "#{out} is read as a YAML comment"),
]


@pytest.mark.parametrize(("text", "line", "path", "fragment"),
                         [pytest.param(*c[1:], id=c[0]) for c in ATOMICS_CASES])
def test_broken_atomics(tmp_path: Path, text: str, line: int, path: str | None, fragment: str) -> None:
    root = make_root(tmp_path, atomics=text, expectations=None)
    problems = problems_of(root)
    atomics_file = root / "atomics" / "T9999" / "T9999.yaml"
    hits = [p for p in problems if fragment in str(p)]
    assert hits, [str(p) for p in problems]
    p = hits[0]
    assert Path(str(p.file)) == atomics_file
    assert p.line == line
    if path is not None:
        assert p.path == path
    assert str(p).startswith(f"{atomics_file}:{line}: ")


EXP_CASES = [
    ("bad-modifier", _replace(GOOD_EXPECTATIONS, "Image|endswith", "Image|endwith"),
     10, "unknown modifier 'endwith'"),
    ("bad-regex", _replace(GOOD_EXPECTATIONS, "CommandLine|contains: 'echo hello'",
                           "CommandLine|re: 'echo (hello'"), 10, "bad regular expression"),
    ("unknown-guid", _replace(GOOD_EXPECTATIONS, "11111111-2222-4333-8444-555555555555",
                              "99999999-2222-4333-8444-555555555555"), 3, "unknown test GUID"),
    ("missing-rule", _replace(GOOD_EXPECTATIONS, "detections/sigma/example.yml", "detections/sigma/nope.yml"),
     13, "rule file detections/sigma/nope.yml does not exist"),
    ("name-mismatch", _replace(GOOD_EXPECTATIONS, "    name: Example test\n", "    name: Example tests\n"),
     4, "differs from the atomic's name 'Example test'"),
    ("unknown-lab-feature", _replace(GOOD_EXPECTATIONS, "requires: [sysmon]", "requires: [sysmon, etw]"),
     11, "unknown lab feature"),
    ("duplicate-event-id", _replace(GOOD_EXPECTATIONS, "    detections:\n",
                                    "      - id: sysmon1-cmd\n        channel: Security\n        event_id: 4688\n"
                                    "    detections:\n"), 12, "event id 'sysmon1-cmd' is used twice"),
    ("min-above-max", _replace(GOOD_EXPECTATIONS, "        requires: [sysmon]\n",
                               "        requires: [sysmon]\n        min: 3\n        max: 2\n"),
     13, "max (2) is below min (3)"),
    ("fp-on-firing-rule", _replace(GOOD_EXPECTATIONS, "        fires: true\n",
                                   "        fires: true\n        known_false_positive: because\n"),
     13, "known_false_positive only belongs to a detection with fires: false"),
    ("missing-atomics-file", _replace(GOOD_EXPECTATIONS, "atomics/T9999/T9999.yaml", "atomics/T1/T1.yaml"),
     1, "atomics file atomics/T1/T1.yaml does not exist"),
    ("bad-time-budget", _replace(GOOD_EXPECTATIONS, "time_budget: 30", "time_budget: -1"),
     5, "seconds from the test's start"),
    ("all-without-list", _replace(GOOD_EXPECTATIONS, "CommandLine|contains:", "CommandLine|contains|all:"),
     10, "|all needs a list of values"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in EXP_CASES])
def test_broken_expectations(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    root = make_root(tmp_path, expectations=text)
    problems = problems_of(root)
    exp_file = root / "expectations" / "T9999.yaml"
    hits = [p for p in problems if fragment in str(p)]
    assert hits, [str(p) for p in problems]
    assert Path(str(hits[0].file)) == exp_file
    assert hits[0].line == line
    assert str(hits[0]).startswith(f"{exp_file}:{line}: tests" if line > 1 else f"{exp_file}:{line}: ")


def test_duplicate_guid_across_files(tmp_path: Path) -> None:
    other = GOOD_ATOMICS.replace("T9999", "T9998").replace("Example test", "Other test")
    root = make_root(tmp_path, expectations=None, extra={"atomics/T9998/T9998.yaml": other})
    problems = problems_of(root)
    assert len(problems) == 1
    (p,) = problems
    assert "duplicate GUID 11111111-2222-4333-8444-555555555555" in p.message
    # T9998 sorts first, so the T9999 copy is the duplicate; the line is its auto_generated_guid line.
    assert Path(str(p.file)) == root / "atomics" / "T9999" / "T9999.yaml"
    assert p.line == 5
    assert p.path == "atomic_tests[0].auto_generated_guid"


def test_non_utf8_file(tmp_path: Path) -> None:
    bad = GOOD_ATOMICS.encode() .replace(b"Writes a file.", b"Writes a \xff file.")
    root = make_root(tmp_path, expectations=None)
    target = root / "atomics" / "T9999" / "T9999.yaml"
    target.write_bytes(bad)
    with pytest.raises(ContentError) as info:
        load_atomic_file(target)
    assert info.value.line == 6
    assert "not UTF-8" in str(info.value)


def test_empty_and_scalar_documents(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n", encoding="utf-8")
    with pytest.raises(ContentError, match="file is empty"):
        load_atomic_file(empty)
    with pytest.raises(ContentError, match="file is empty"):
        load_expectations(empty)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n", encoding="utf-8")
    with pytest.raises(ContentError, match=r"scalar.yaml:1: <root>: expected object"):
        load_atomic_file(scalar)


def test_loader_raises_first_problem_and_counts_the_rest(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        attack_technique: T9999
        display_name: 5
        atomic_tests:
        - name: x
          auto_generated_guid: nope
          description: d
          supported_platforms: [windows]
          executor: {name: powershell, command: whoami}
        """)
    path = tmp_path / "two.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ContentError) as info:
        load_atomic_file(path)
    err = info.value
    assert (err.line, err.path) == (2, "display_name")
    assert "1 more problem(s)" in str(err)


def test_alias_bomb_and_self_reference_are_content_errors(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb, encoding="utf-8")
    with pytest.raises(ContentError, match="alias bomb"):
        load_atomic_file(path)
    path.write_text("a: &x [1, *x]\n", encoding="utf-8")
    with pytest.raises(ContentError, match="refers to itself"):
        load_expectations(path)


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("attack_technique: !!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    with pytest.raises(HarnessError) as info:
        load_atomic_file(path)
    assert isinstance(info.value, ContentError)
    assert info.value.line == 1
