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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run the suite with one intra-op thread: tiny tensors gain nothing from more, and on a busy
    2-core machine two OpenMP threads can be 10x slower than one (reference/crossvis/timing.md).
    Tests that check "no torch import" run in subprocesses, so importing torch here is harmless."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_dir():
    """The ../shared folder (skips without it, fails under CI)."""
    return require_shared("")


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A 2-video, 3-frame generated training split at 64x96 (8 classes), for short training runs.

    Read-only for the tests that use it; a module may define its own ``tiny_synth`` to change it.
    """
    from streamvis.data.synthetic import SynthConfig, write_dataset

    out = tmp_path_factory.mktemp("synth") / "train"
    config = SynthConfig(num_videos=2, seed=0, size=(64, 96), frames=(3, 3), num_classes=8)
    write_dataset(config, out, workers=1)
    return out
