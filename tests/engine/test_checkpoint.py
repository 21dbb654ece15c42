"""Checkpoint files: RNG round trip, weights_only loading, keep-last pruning, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from streamvis.engine.checkpoint import (
    Checkpointer,
    capture_rng_state,
    load_checkpoint,
    periodic_name,
    preserved_rng,
    restore_rng_state,
)
from streamvis.errors import StreamvisError


def _draw() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)], \
        np.random.randn()


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    np.random.randn()  # leave a cached gaussian in numpy's state
    random.gauss(0, 1)
    state = capture_rng_state()
    expected = _draw()
    torch.save({"rng": state}, tmp_path / "rng.pth")
    loaded = torch.load(tmp_path / "rng.pth", weights_only=True)["rng"]
    restore_rng_state(loaded)
    assert _draw() == expected
    with preserved_rng():
        torch.rand(5)
        np.random.rand(5)
    assert _draw() != expected  # the streams moved on, from where they were before the block


def test_checkpointer_keeps_last_k_and_final(tmp_path):
    ckpt = Checkpointer(tmp_path, keep_last=2)
    for it in (10, 20, 30):
        ckpt.save(periodic_name(it), {"model": {"w": torch.tensor([float(it)])}, "iteration": it})
    assert ckpt.latest() == tmp_path / "model_0000030.pth"
    ckpt.save("model_final.pth", {"model": {}, "iteration": 35})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoints.json", "last_checkpoint", "model_0000020.pth", "model_0000030.pth",
                     "model_final.pth"]
    assert [r.name for r in ckpt.records()] == ["model_0000020.pth", "model_0000030.pth", "model_final.pth"]
    assert ckpt.latest().name == "model_final.pth"
    assert load_checkpoint(tmp_path / "model_0000030.pth")["model"]["w"].item() == 30.0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(StreamvisError, match="missing.pth: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04garbage")
    unreadable = r"not a readable weights or checkpoint file \(empty, truncated"
    with pytest.raises(StreamvisError, match="trunc.pth: " + unreadable):
        load_checkpoint(tmp_path / "trunc.pth")
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(StreamvisError, match="other.pth: not a streamvis checkpoint"):
        load_checkpoint(tmp_path / "other.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    refused = r"evil.pth: refused: .*\(its pickle asks for (builtins\.)?print\)"
    with pytest.raises(StreamvisError, match=refused):
        load_checkpoint(tmp_path / "evil.pth")  # weights_only refuses to run code
    torch.save({"model": {}, "format_version": 99}, tmp_path / "future.pth")
    with pytest.raises(StreamvisError, match="future.pth: written by a newer streamvis"):
        load_checkpoint(tmp_path / "future.pth")


def _save_three(tmp_path) -> Checkpointer:
    ckpt = Checkpointer(tmp_path, keep_last=3)
    for it in (1, 2, 3):
        ckpt.save(periodic_name(it), {"model": {"w": torch.full((64,), float(it))}, "iteration": it})
    return ckpt


def test_truncated_latest_checkpoint_falls_back_to_previous_complete_one(tmp_path):
    ckpt = _save_three(tmp_path)
    assert ckpt.latest_complete() == tmp_path / "model_0000003.pth"
    newest = tmp_path / "model_0000003.pth"
    newest.write_bytes(newest.read_bytes()[:-100])  # cut short, as a copy or a full disk would
    with pytest.warns(UserWarning) as caught:
        chosen = ckpt.latest_complete()
    assert chosen == tmp_path / "model_0000002.pth"
    message = str(caught[0].message)
    assert str(newest) in message and "truncated or torn" in message and str(chosen) in message
    assert load_checkpoint(chosen)["iteration"] == 2


def test_torn_checkpoint_of_same_size_is_caught_by_checksum(tmp_path):
    ckpt = _save_three(tmp_path)
    newest, middle = tmp_path / "model_0000003.pth", tmp_path / "model_0000002.pth"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    newest.write_bytes(bytes(data))
    middle.write_bytes(middle.read_bytes()[:10])
    expected = (r"model_0000003\.pth does not match the SHA-256.*model_0000002\.pth is 10 bytes.*"
                r"previous complete checkpoint .*model_0000001\.pth")
    with pytest.warns(UserWarning, match=expected):
        assert ckpt.latest_complete() == tmp_path / "model_0000001.pth"
    (tmp_path / "model_0000001.pth").unlink()
    with pytest.raises(StreamvisError, match=r"0001\.pth is missing: no complete checkpoint is left"):
        ckpt.latest_complete()


def test_temporary_files_of_an_interrupted_write_are_removed(tmp_path):
    ckpt = _save_three(tmp_path)
    torn = tmp_path / ".model_0000004.pth.k3j2h1.tmp"
    torn.write_bytes(b"PK\x03\x04half")
    (tmp_path / "notes.txt").write_text("mine")
    assert ckpt.remove_temporary_files() == [torn]
    assert not torn.exists() and (tmp_path / "notes.txt").exists()
    assert ckpt.latest_complete() == tmp_path / "model_0000003.pth"
