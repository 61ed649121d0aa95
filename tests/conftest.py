"""Shared fixtures (kept minimal): where the public recordings are, when they exist."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PUBLIC = REPO / ".." / "shared" / "telemetry" / "public"


@pytest.fixture
def public_telemetry() -> Path:
    """../shared/telemetry/public, or skip when this checkout has no shared recordings beside it."""
    if not PUBLIC.is_dir():
        pytest.skip(f"public recordings not found at {PUBLIC} (they live beside the project, not in it)")
    return PUBLIC
