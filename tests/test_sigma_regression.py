"""SigmaHQ's regression suite through ``atomiclab detect`` (issue 13 item 7).

Reads a SigmaHQ/sigma checkout named by ``ATOMICLAB_SIGMA_CHECKOUT`` (its ``rules*/`` folders and
``regression_data/``); skipped with the reason when none is given (CI has none). For every
``regression_data/**/info.yml`` whose tests are EVTX recordings, the rule with the id in
``rule_metadata`` runs over each recording through the CLI, and passes by SigmaHQ's own rule: at
least ``match_count`` rows (1 when the file gives none).

    ATOMICLAB_SIGMA_CHECKOUT=/work/ext/sigma pytest tests/test_sigma_regression.py
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest
import yaml

from harness.cli import main

CHECKOUT = os.environ.get("ATOMICLAB_SIGMA_CHECKOUT")


def _root() -> Path:
    if not CHECKOUT:
        pytest.skip("set ATOMICLAB_SIGMA_CHECKOUT to a SigmaHQ/sigma checkout to run its regression suite")
    root = Path(CHECKOUT)
    if not (root / "regression_data").is_dir():
        pytest.skip(f"ATOMICLAB_SIGMA_CHECKOUT={root} has no regression_data/ folder")
    return root


@cache
def _rules_by_id(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder in root.glob("rules*"):
        for path in folder.rglob("*.yml"):
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("id"), str):
                out[doc["id"]] = path
    return out


def _cases() -> list[str]:
    if not CHECKOUT or not (Path(CHECKOUT) / "regression_data").is_dir():
        return ["(no checkout)"]
    base = Path(CHECKOUT) / "regression_data"
    return sorted(str(p.relative_to(base)) for p in base.rglob("info.yml"))


@pytest.mark.slow
@pytest.mark.parametrize("info", _cases())
def test_sigmahq_regression_case(info: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = _root()
    meta = yaml.safe_load((root / "regression_data" / info).read_text(encoding="utf-8"))
    rule_id = meta["rule_metadata"][0]["id"]
    rule = _rules_by_id(root).get(rule_id)
    assert rule is not None, f"rule {rule_id} is not in the checkout's rules*/ folders"
    tests = [t for t in meta.get("regression_tests_info") or [] if t.get("type") == "evtx"]
    if not tests:
        pytest.skip(f"{info}: no EVTX regression test")
    for t in tests:
        evtx = root / t["path"]
        want = int(t.get("match_count", 1))
        code = main(["detect", "--rule", str(rule), str(evtx)])
        out, err = capsys.readouterr()
        assert code == 0, f"{rule.name}: exit {code}: {err.strip()}"
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert len(rows) >= want, f"{rule.name} on {evtx.name}: {len(rows)} rows, SigmaHQ expects {want}"
