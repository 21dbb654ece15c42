"""Training checkpoints: plain dicts written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds everything an exact resume needs, after the weights-file header of
`streamvis.models.weights` (the one owner of the file format: ``format``, ``format_version``,
``method``, ``config``)::

    {..header.., "model": state_dict, "experiment": whole config (dict),
     "optimizer": ..., "scheduler": ..., "scaler": ... or None, "iteration": completed iterations,
     "world_size": int, "rng": [per-rank RNG states]}

Only tensors and plain Python values are stored, so loading never runs code. ``model_final.pth``
is also what ``streamvis predict --weights`` reads, and ``streamvis export`` shrinks it
(`streamvis.models.weights.export_weights`).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from streamvis.errors import StreamvisError
from streamvis.utils.io import atomic_open, atomic_torch_save

LAST_CHECKPOINT_FILE = "last_checkpoint"  # a text file naming the newest checkpoint
FINAL_NAME = "model_final.pth"
_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")


def periodic_name(iteration: int) -> str:
    """``model_0001900.pth`` for the checkpoint after `iteration` completed iterations."""
    return f"model_{iteration:07d}.pth"


def capture_rng_state() -> dict:
    """This process's torch / CUDA / numpy / python RNG states as tensors and plain values."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_internal, py_gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # (624,) uint32 values
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),  # (625,)
            "gauss_next": py_gauss_next,
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss_next"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class preserved_rng:
    """Context manager: RNG states on exit equal those on entry (evaluation must not shift them)."""

    def __enter__(self):
        self._state = capture_rng_state()
        return self

    def __exit__(self, *exc):
        restore_rng_state(self._state)
        return False


def load_checkpoint(path) -> dict:
    """Read a checkpoint safely (``weights_only=True``, mapped to CPU).

    Raises:
        StreamvisError: the file is missing or is not a streamvis checkpoint (`DataFormatError`
            for an unreadable file or one from a newer streamvis).
    """
    from streamvis.models.weights import read_file

    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: checkpoint not found")
    state = read_file(path)  # weights_only; refuses a file from a newer streamvis
    if "model" not in state:
        raise StreamvisError(f"{path}: not a streamvis checkpoint (no 'model' entry)")
    return state


class Checkpointer:
    """Writes checkpoints into `output_dir`, keeps the newest `keep_last` periodic ones.

    Args:
        output_dir: the run's folder.
        keep_last: periodic checkpoints (``model_XXXXXXX.pth``) to keep; ``model_final.pth`` is
            never deleted.
    """

    def __init__(self, output_dir, *, keep_last: int = 3):
        self.output_dir = Path(output_dir)
        self.keep_last = keep_last

    def save(self, name: str, state: dict) -> Path:
        """Write `state` to ``output_dir/name`` atomically, record it as the newest, prune old ones."""
        path = self.output_dir / name
        atomic_torch_save(state, path)
        with atomic_open(self.output_dir / LAST_CHECKPOINT_FILE, "w", encoding="utf-8") as f:
            f.write(name + "\n")
        self._prune()
        return path

    def latest(self) -> Path | None:
        """The newest checkpoint written by `save` (None when there is none)."""
        marker = self.output_dir / LAST_CHECKPOINT_FILE
        if not marker.is_file():
            return None
        path = self.output_dir / marker.read_text(encoding="utf-8").strip()
        return path if path.is_file() else None

    def _prune(self) -> None:
        periodic = sorted(p for p in self.output_dir.iterdir() if _PERIODIC.match(p.name))
        for old in periodic[: max(0, len(periodic) - self.keep_last)]:
            old.unlink(missing_ok=True)
