"""A user's own Atomic Red Team checkout, as it is (issue 12): discovery from a technique file, a
technique folder, an atomics/ folder or a repository root; ATOMICLAB_ATOMICS; any working directory
with a regular (non-editable) install; reports in ./reports of the working directory.

The fixture ``tests/fixtures/art-upstream`` holds real upstream technique files laid out as upstream
(with an ``Indexes/`` file and ``src/`` payloads, one of them YAML). ``ATOMICLAB_ART_CHECKOUT`` may
name a full upstream checkout for the tests marked so; they skip when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.content.atomics import discover_atomics
from harness.content.discovery import ATOMICS_ENV, default_atomics, expand_atomics, is_payload_yaml
from harness.content.validate import validate_paths
from harness.errors import ContentError

REPO = Path(__file__).resolve().parents[1]
ART = REPO / "tests" / "fixtures" / "art-upstream"
ATOMICS = ART / "atomics"
TECHNIQUES = ["T1033", "T1046", "T1055.011", "T1547.001", "T1609"]
CHECKOUT_ENV = "ATOMICLAB_ART_CHECKOUT"


def _checkout() -> Path:
    raw = os.environ.get(CHECKOUT_ENV, "")
    if not raw or not (Path(raw) / "atomics").is_dir():
        pytest.skip(f"set {CHECKOUT_ENV} to an Atomic Red Team checkout to run this test")
    return Path(raw)


def _names(paths: list[Path]) -> list[str]:
    return [p.relative_to(ATOMICS).as_posix() for p in paths]


@pytest.mark.parametrize("given", [ART, ATOMICS], ids=["repository-root", "atomics-folder"])
def test_root_and_atomics_folder_stand_for_technique_files_only(given: Path) -> None:
    assert _names(expand_atomics([given])) == [f"{t}/{t}.yaml" for t in TECHNIQUES]


def test_technique_folder_and_file() -> None:
    assert _names(expand_atomics([ATOMICS / "T1609"])) == ["T1609/T1609.yaml"]
    assert _names(expand_atomics([ATOMICS / "T1046" / "T1046.yaml"])) == ["T1046/T1046.yaml"]


def test_payload_and_index_yaml_are_not_content() -> None:
    assert is_payload_yaml(ATOMICS / "Indexes" / "containers-index.yaml")
    assert is_payload_yaml(ATOMICS / "T1609" / "src" / "busybox.yaml")
    assert not is_payload_yaml(ATOMICS / "T1609" / "T1609.yaml")
    # A project folder named src/ above the checkout does not hide it.
    assert not is_payload_yaml(REPO / "atomics" / "T1046" / "T1046.yaml")


def test_project_atomics_folder_keeps_its_benign_technique_folder() -> None:
    names = [p.relative_to(REPO / "atomics").as_posix() for p in expand_atomics([REPO / "atomics"])]
    assert names == ["T1046/T1046.yaml", "benign/benign.yaml"]


def test_empty_folder_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "payload.yaml").write_text("a: 1\n")
    with pytest.raises(ContentError, match=r"holds no \.yaml or \.yml files of atomic tests"):
        expand_atomics([tmp_path])


def test_validate_upstream_layout_has_no_false_findings() -> None:
    report = validate_paths([ATOMICS])
    assert report.atomics_files == 5
    assert [str(p) for p in report.problems] == []


def test_validate_reports_unresolved_nested_placeholders(tmp_path: Path) -> None:
    folder = tmp_path / "T9" / "T9"
    folder.mkdir(parents=True)
    (folder / "T9.yaml").write_text(
        "attack_technique: T9999\ndisplay_name: n\natomic_tests:\n"
        "- name: t\n  auto_generated_guid: 0a0a0a0a-0000-4000-8000-000000000009\n  description: d\n"
        "  supported_platforms: [windows]\n"
        "  input_arguments:\n"
        "    file:\n      description: d\n      type: path\n      default: C:\\x_#{arch}_#{nope}.exe\n"
        "    arch:\n      description: d\n      type: string\n      default: x64\n"
        "  executor:\n    name: command_prompt\n    command: 'type #{file}'\n"
    )
    problems = [str(p) for p in validate_paths([folder]).problems]
    assert len(problems) == 1, problems
    assert "#{nope} in the default of 'file' names no input argument" in problems[0]
    assert ":12: atomic_tests[0].input_arguments.file.default" in problems[0]  # arch counts as used


def test_env_sets_the_default_atomics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ATOMICS_ENV, f"{ATOMICS / 'T1609'}{os.pathsep}{ATOMICS / 'T1046'}")
    assert default_atomics() == [ATOMICS / "T1609", ATOMICS / "T1046"]
    monkeypatch.chdir(tmp_path)
    assert main(["list", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"technique": "T1609"' in out and '"technique": "T1046"' in out
    assert default_atomics({ATOMICS_ENV: " "}) is None


def _regular_install(tmp_path: Path) -> dict[str, str]:
    """The harness package alone in a site folder (as a wheel installs it): no checkout around it."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "harness", site / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in (ATOMICS_ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from harness.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.network
def test_regular_install_from_any_directory(tmp_path: Path) -> None:
    env = _regular_install(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = _cli(env, work, "validate", str(ATOMICS))
    assert done.returncode == 0, done.stderr
    assert "ok: 5 atomics file(s)" in done.stderr
    done = _cli(env, work, "list", str(ART))
    assert done.returncode == 0, done.stderr
    assert "Port Scan NMap for Windows" in done.stdout
    # A run of a Windows PowerShell test of the checkout on the emulated host; reports in ./reports.
    done = _cli(env, work, "run", "--no-progress", "--atomics", str(ATOMICS / "T1046" / "T1046.yaml"),
                "--tests", "9e55750e-4cbf-4013-9627-e9a045b541bf")
    assert "no atomiclab content found" not in done.stderr
    assert done.returncode in (0, 1), done.stderr
    runs = [p for p in (work / "reports").iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "results.json").is_file()
    assert (work / "reports" / "history.sqlite").is_file()
    # Without atomics, env or project: one line saying what to pass.
    done = _cli(env, work, "run", "--no-progress")
    assert done.returncode == 2
    assert "ATOMICLAB_ATOMICS" in done.stderr and "Traceback" not in done.stderr
    # show and run --check-prereqs with the checkout named by ATOMICLAB_ATOMICS
    env_art = {**env, ATOMICS_ENV: str(ATOMICS)}
    done = _cli(env_art, work, "show", "T1055.011-1")
    assert done.returncode == 0, done.stderr
    assert "C:\\AtomicRedTeam\\atomics\\T1055.011\\bin\\T1055.011_x64.exe" in done.stdout
    done = _cli(env_art, work, "run", "--no-progress", "--tests", "T1055.011-1", "--check-prereqs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "T1055.011" in done.stdout
    # pytest --atomiclab from the same folder collects the checkout's technique files only
    done = subprocess.run([sys.executable, "-m", "pytest", "--atomiclab", "--collect-only", "-q",
                           "-p", "no:cacheprovider", str(ATOMICS)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "T1609/T1609.yaml::T1609[emulated]::Docker Exec Into Container" in done.stdout
    assert "Indexes" not in done.stdout


pytest_plugins = ["pytester"]


def test_pytest_plugin_collects_technique_files_only(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--atomiclab", str(ATOMICS), "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*T1609/T1609.yaml::T1609[[]emulated[]]::Docker Exec Into Container*"])
    assert "Indexes" not in result.stdout.str() and "busybox" not in result.stdout.str()


def test_upstream_checkout_validates_fast_and_true() -> None:
    checkout = _checkout()
    report = validate_paths([checkout / "atomics"])
    assert report.atomics_files >= 300
    assert not [p for p in report.problems if "Indexes" in str(p.file) or "/src/" in str(p.file)]
    files = discover_atomics([checkout])
    assert len(files) == report.atomics_files


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


@pytest.mark.slow
@pytest.mark.network
def test_provenance_names_the_checkout_commit_dirty_flag_and_file_hashes(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "my-art"
    shutil.copytree(ART, repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "checkout")
    head = _git(repo, "rev-parse", "HEAD")
    technique = repo / "atomics" / "T1046" / "T1046.yaml"
    technique.write_text(technique.read_text() + "\n")  # a local edit: the tree is dirty
    out = tmp_path / "out"
    code = main(["run", "--no-progress", "--atomics", str(repo), "--tests", "T1046-11", "--out", str(out),
                 "--history", str(tmp_path / "h.sqlite")])
    assert code in (0, 1)
    import hashlib
    import json

    digest = hashlib.sha256(technique.read_bytes()).hexdigest()
    results = json.loads((out / "results.json").read_text())
    source = {"path": str(repo.resolve()), "commit": head, "dirty": True}
    assert source in results["content"]["sources"]
    mine = [f for f in results["content"]["files"] if f.get("source") == str(repo.resolve())]
    assert {"kind": "atomic", "sha256": digest}.items() <= next(
        f for f in mine if f["path"].endswith("T1046/T1046.yaml")).items()
    assert len(mine) == 5  # the technique files of the checkout, each hashed
    manifest = json.loads((out / "manifest.json").read_text())
    assert source in manifest["content"]["sources"]
    assert any(f["sha256"] == digest for f in manifest["content"]["files"])
    html = (out / "report.html").read_text()
    assert head in html and "yes (dirty)" in html
    assert main(["verify", str(out)]) == 0


def test_pytest_plugin_default_atomics_from_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ATOMICS_ENV, str(ATOMICS / "T1609"))
    result = pytester.runpytest_inprocess("--atomiclab", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*T1609.yaml::T1609[[]emulated[]]::ExecIntoContainer",
                                 "*T1609.yaml::T1609[[]emulated[]]::Docker Exec Into Container"])


def test_lab_file_names_the_default_atomics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from harness.content.labconfig import load_lab_config

    lab = tmp_path / "lab.yaml"
    rel = os.path.relpath(ATOMICS / "T1609", tmp_path)
    lab.write_text(f"atomics: {rel}\ntargets:\n  - name: w\n    transport: winrm\n    address: 127.0.0.1\n"
                   "    username: u\n    password_env: P\n")
    assert load_lab_config(lab).atomics == (tmp_path / rel,)
    monkeypatch.setenv(ATOMICS_ENV, str(ATOMICS / "T1046"))  # the lab file wins over the environment
    assert main(["show", "--lab", str(lab), "T1609", "--brief"]) == 0
    assert capsys.readouterr().out.splitlines() == ["T1609-1 ExecIntoContainer", "T1609-2 Docker Exec Into Container"]
    lab.write_text("atomics: [1, 2]\ntargets:\n  - name: w\n    transport: winrm\n    address: 127.0.0.1\n")
    with pytest.raises(ContentError, match="atomics must be a path or a list of paths"):
        load_lab_config(lab)
