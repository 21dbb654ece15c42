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

Integrity: each checkpoint is written to a temporary file and renamed into place (a crash leaves
the old file or the new one, never half of one), and its size and SHA-256 are then recorded in
``checkpoints.json`` (written atomically too). `Checkpointer.latest_complete` walks that record
from the newest entry back and returns the first file whose size and checksum still match, so a
checkpoint torn or truncated later (a copy cut short, a full disk, a file system that lost the
data of a rename after a power cut) is skipped with a warning naming it and the one used instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamvis.errors import StreamvisError
from streamvis.utils.io import atomic_open, atomic_torch_save

LAST_CHECKPOINT_FILE = "last_checkpoint"  # a text file naming the newest checkpoint
MANIFEST_FILE = "checkpoints.json"  # size and SHA-256 of every checkpoint kept, oldest first
FINAL_NAME = "model_final.pth"
_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")
# `streamvis.utils.io.atomic_open`'s temporary files for the files a run writes
_TEMPORARY = re.compile(
    r"^\.(model_(\d{7}|final)\.pth|checkpoints\.json|last_checkpoint|config\.yaml|metrics\.jsonl|loss_curve\.png)"
    r"\..+\.tmp$"
)


class CheckpointIntegrityWarning(UserWarning):
    """The newest checkpoint is torn or truncated; an older complete one is used instead."""


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


@dataclass(frozen=True)
class CheckpointRecord:
    """One entry of ``checkpoints.json``: what a complete checkpoint file looks like."""

    name: str
    iteration: int
    size: int  # bytes
    sha256: str  # hex digest of the whole file

    def problem(self, folder: Path) -> str | None:
        """Why ``folder/name`` is not this complete file (None when it is)."""
        path = folder / self.name
        if not path.is_file():
            return "is missing"
        size = path.stat().st_size
        if size != self.size:
            return f"is {size} bytes, but {self.size} were written (truncated or torn)"
        if file_sha256(path) != self.sha256:
            return "does not match the SHA-256 recorded when it was written (torn or altered)"
        return None


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        """Write `state` to ``output_dir/name`` atomically, record its size and checksum, prune old ones.

        Pruning happens only after the new file and its record are in place, so an interruption
        at any moment leaves at least one complete checkpoint (the previous one, or the new one).
        """
        path = self.output_dir / name
        atomic_torch_save(state, path)
        size, digest = path.stat().st_size, file_sha256(path)
        record = CheckpointRecord(name, int(state.get("iteration", 0)), size, digest)
        records = [r for r in self.records() if r.name != name] + [record]
        self._write_records(records)
        with atomic_open(self.output_dir / LAST_CHECKPOINT_FILE, "w", encoding="utf-8") as f:
            f.write(name + "\n")
        self._prune(records)
        return path

    def records(self) -> list[CheckpointRecord]:
        """The entries of ``checkpoints.json``, oldest first (empty for a run without one)."""
        path = self.output_dir / MANIFEST_FILE
        if not path.is_file():
            return []
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["checkpoints"]
            return [CheckpointRecord(str(e["name"]), int(e["iteration"]), int(e["size"]), str(e["sha256"]))
                    for e in entries]
        except (ValueError, KeyError, TypeError) as err:
            raise StreamvisError(f"{path}: unreadable checkpoint record ({err}); delete it to fall back "
                                 f"to {LAST_CHECKPOINT_FILE}") from None

    def latest(self) -> Path | None:
        """The newest checkpoint written by `save` (None when there is none); not verified."""
        marker = self.output_dir / LAST_CHECKPOINT_FILE
        if not marker.is_file():
            return None
        path = self.output_dir / marker.read_text(encoding="utf-8").strip()
        return path if path.is_file() else None

    def latest_complete(self) -> Path | None:
        """The newest checkpoint whose size and SHA-256 match its record (None when there is none).

        A newer checkpoint that fails the check is skipped with a `CheckpointIntegrityWarning`
        naming it and the file used instead. A run written before ``checkpoints.json`` existed
        falls back to `latest`.

        Raises:
            StreamvisError: checkpoints are recorded but none of them is complete.
        """
        records = self.records()
        if not records:
            return self.latest()
        skipped: list[str] = []
        for record in reversed(records):
            problem = record.problem(self.output_dir)
            if problem is None:
                if skipped:
                    warnings.warn(f"{'; '.join(skipped)}; resuming from the previous complete checkpoint "
                                  f"{self.output_dir / record.name} instead",
                                  CheckpointIntegrityWarning, stacklevel=2)
                return self.output_dir / record.name
            skipped.append(f"{self.output_dir / record.name} {problem}")
        raise StreamvisError(f"{'; '.join(skipped)}: no complete checkpoint is left in {self.output_dir}. "
                             "Start the run again with --overwrite (or into a new --output-dir)")

    def remove_temporary_files(self) -> list[Path]:
        """Delete the temporary files of writes that a crash (e.g. kill -9) cut short; returns them."""
        if not self.output_dir.is_dir():
            return []
        leftovers = [p for p in self.output_dir.iterdir() if _TEMPORARY.match(p.name)]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def _write_records(self, records: list[CheckpointRecord]) -> None:
        entries = [dataclasses.asdict(r) for r in records]
        with atomic_open(self.output_dir / MANIFEST_FILE, "w", encoding="utf-8") as f:
            json.dump({"checkpoints": entries}, f, indent=1)

    def _prune(self, records: list[CheckpointRecord]) -> None:
        periodic = sorted(p for p in self.output_dir.iterdir() if _PERIODIC.match(p.name))
        old = periodic[: max(0, len(periodic) - self.keep_last)]
        if not old:
            return
        gone = {p.name for p in old}
        self._write_records([r for r in records if r.name not in gone])  # the record first, then the files
        for path in old:
            path.unlink(missing_ok=True)
