"""Atomic file writing: a crash never leaves a half-written output file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from streamvis.errors import StreamvisError


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """Open a temporary file next to `path`; on success it replaces `path` in one rename.

    Args:
        path: the final destination. Its parent directory is created if needed.
        mode: "w" (text) or "wb" (binary).

    Yields:
        A file object. If the block raises, the temporary file is removed and `path` is untouched.

    Raises:
        StreamvisError: the file cannot be created or put in place (a folder of that name, a
            read-only or missing location, a full disk), naming `path` and the reason.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise cannot_write(path, err) from None
    # mkstemp creates 0600 files; give the output the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise cannot_write(path, err) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cannot_write(path, err: OSError) -> StreamvisError:
    """The user-facing error for an output file that cannot be written."""
    reason = "it is a folder" if isinstance(err, IsADirectoryError) or Path(path).is_dir() else (
        err.strerror or str(err))
    return StreamvisError(f"{path}: cannot write the output file ({reason})")


def atomic_write_json(path, obj, *, indent: int | None = None) -> None:
    """Serialize `obj` as json to `path` atomically (NaN/inf are refused: they are not json)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, allow_nan=False)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_torch_save(obj, path) -> None:
    """`torch.save` to `path` atomically (imports torch lazily)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
