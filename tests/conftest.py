"""Shared fixtures: where the golden data lives, and how to skip or fail without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS_DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("STREAMVIS_SHARED", REPO.parent / "shared"))


def require_shared(relative: str) -> Path:
    """Return ``../shared/<relative>``; skip the test when it is absent, but fail under CI."""
    path = SHARED / relative
    if not path.exists():
        reason = (
            f"{path} is absent: this test needs the large golden files in ../shared "
            "(set STREAMVIS_SHARED to point elsewhere)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason + " — CI always has ../shared, so this is an error there")
        pytest.skip(reason)
    return path


@pytest.fixture
def shared_dir():
    """The ../shared folder (skips without it, fails under CI)."""
    return require_shared("")
