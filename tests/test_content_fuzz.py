"""Arbitrary text and YAML fed to the content loaders: only HarnessError subclasses come out."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.content.atomics import check_atomic_file, lint_atomic_file, load_atomic_file
from harness.content.expectations import load_expectations
from harness.errors import ContentError, HarnessError

REPO = Path(__file__).resolve().parents[1]
SEEDS = [
    (REPO / "atomics" / "T1046" / "T1046.yaml").read_text(encoding="utf-8"),
    (REPO / "expectations" / "T1046.yaml").read_text(encoding="utf-8"),
]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["#{x}", "powershell", "manual", "Image|re",
                                                           "Image|contains|all", "(", "T1046"]))
keys = st.one_of(st.text(max_size=12), st.sampled_from([
    "attack_technique", "display_name", "atomic_tests", "name", "auto_generated_guid", "executor",
    "command", "steps", "input_arguments", "type", "default", "supported_platforms", "dependencies",
    "atomics", "tests", "time_budget", "events", "detections", "where", "rule", "fires", "min", "max",
    "requires", "Image|endswith", "CommandLine|re", "x|gt", "11111111-2222-4333-8444-555555555555"]))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


def _mutations() -> st.SearchStrategy[str]:
    """Real content with a slice cut out or a random string spliced in."""
    return st.builds(
        lambda seed, a, b, junk: seed[:a] + junk + seed[a + b:],
        st.sampled_from(SEEDS), st.integers(0, 6000), st.integers(0, 200), st.text(max_size=30))


def _only_harness_errors(path: Path) -> None:
    """Each loader either returns a model or raises a ContentError naming this file."""
    for load in (load_atomic_file, load_expectations):
        try:
            load(path)
        except Exception as exc:
            assert isinstance(exc, HarnessError), f"{type(exc).__name__} escaped: {exc}"
            assert isinstance(exc, ContentError) and exc.file == str(path)
            assert "\n" not in exc.message  # one line


def _feed(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_harness_errors(path)
    lint_atomic_file(check_atomic_file(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    _feed(tmp_path / "any.yaml", text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_arbitrary_yaml_documents(tmp_path: Path, tree: object) -> None:
    _feed(tmp_path / "tree.yaml", yaml.safe_dump(tree, allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mutations())
def test_mutated_real_content(tmp_path: Path, text: str) -> None:
    _feed(tmp_path / "mut.yaml", text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    _only_harness_errors(path)
