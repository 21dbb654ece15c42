"""`Instances`: the one container passed between stages (model -> tracker -> writers).

A set of N instances of one image: every field is a tensor (or list) whose first dimension is N.
Typical fields: ``boxes`` (N, 4) xyxy in pixels, ``scores`` (N,), ``classes`` (N,) int64 0-based,
``masks`` (N, H, W) probabilities or bitmasks, ``embeddings`` (N, D), ``track_ids`` (N,) int64,
and ``gt_*`` fields for training targets.
"""

from __future__ import annotations

from typing import Any

import torch


class Instances:
    """Aligned per-instance fields of one image, with indexing, `.to()` and `cat()`.

    Args:
        image_size: (height, width) of the image the instances live in.
        **fields: initial fields; each must have the same length.
    """

    def __init__(self, image_size: tuple[int, int], **fields: Any):
        object.__setattr__(self, "_image_size", (int(image_size[0]), int(image_size[1])))
        object.__setattr__(self, "_fields", {})
        for name, value in fields.items():
            self.set(name, value)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width)."""
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"cannot set private attribute {name!r} on Instances")
        self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        fields = object.__getattribute__(self, "_fields")
        if name not in fields:
            raise AttributeError(f"Instances has no field {name!r}; fields are {sorted(fields)}")
        return fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set field `name`; its length must equal that of the existing fields."""
        n = len(value)
        if self._fields and n != len(self):
            raise ValueError(f"field {name!r} has length {n}, but the instances have length {len(self)}")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        del self._fields[name]

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        """The fields as a (shallow-copied) dict."""
        return dict(self._fields)

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """A copy with every tensor field moved/cast by ``tensor.to(*args, **kwargs)``."""
        out = Instances(self._image_size)
        for name, value in self._fields.items():
            out.set(name, value.to(*args, **kwargs) if hasattr(value, "to") else value)
        return out

    def __getitem__(self, item: int | slice | torch.Tensor) -> Instances:
        """Select instances by an int, a slice, a bool mask or an index tensor."""
        if isinstance(item, int):
            if item >= len(self) or item < -len(self):
                raise IndexError(f"instance index {item} out of range for {len(self)} instances")
            item = slice(item, None, len(self)) if item == -1 else slice(item, item + 1)
        out = Instances(self._image_size)
        for name, value in self._fields.items():
            if isinstance(value, list):
                if isinstance(item, slice):
                    out.set(name, value[item])
                else:
                    idx = torch.as_tensor(item)
                    if idx.dtype == torch.bool:
                        idx = idx.nonzero().flatten()
                    out.set(name, [value[i] for i in idx.tolist()])
            else:
                out.set(name, value[item])
        return out

    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        return 0

    def __iter__(self):
        raise NotImplementedError("Instances is not iterable; index it or read its fields")

    @staticmethod
    def cat(instance_lists: list[Instances]) -> Instances:
        """Concatenate instances of the same image size and the same fields."""
        if not instance_lists:
            raise ValueError("Instances.cat needs at least one Instances")
        first = instance_lists[0]
        for other in instance_lists[1:]:
            if other.image_size != first.image_size:
                raise ValueError(f"image sizes differ: {first.image_size} vs {other.image_size}")
        out = Instances(first.image_size)
        for name, value in first._fields.items():
            values = [inst.get(name) for inst in instance_lists]
            if isinstance(value, torch.Tensor):
                out.set(name, torch.cat(values, dim=0))
            elif isinstance(value, list):
                out.set(name, [v for vs in values for v in vs])
            else:
                raise TypeError(f"cannot concatenate field {name!r} of type {type(value).__name__}")
        return out

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}: {tuple(v.shape) if hasattr(v, 'shape') else len(v)}" for k, v in self._fields.items()
        )
        return f"Instances(num_instances={len(self)}, image_size={self._image_size}, fields=[{fields}])"


class FrameBatch:
    """One frame of each of B videos (B images), with their training targets.

    Args:
        images: B tensors (3, H_i, W_i), uint8, BGR, already resized/flipped, not padded.
        instances: B `Instances` with ``gt_boxes`` (K, 4) float32 xyxy pixels, ``gt_classes`` (K,)
            int64 0-based, ``gt_masks`` (K, H_i, W_i) bool, ``gt_ids`` (K,) int64 global identity
            ids (1-based, unique over the training set).
    """

    def __init__(self, images: list[torch.Tensor], instances: list[Instances]):
        if len(images) != len(instances):
            raise ValueError(f"{len(images)} images but {len(instances)} instance sets")
        self.images = images
        self.instances = instances

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device) -> FrameBatch:
        return FrameBatch([im.to(device) for im in self.images], [inst.to(device) for inst in self.instances])


class PairBatch:
    """B frame pairs: ``frames[0]`` holds the key frames, ``frames[1]`` the reference frames.

    Image i of both frame batches comes from the same video.
    """

    def __init__(self, key: FrameBatch, reference: FrameBatch):
        if len(key) != len(reference):
            raise ValueError(f"{len(key)} key frames but {len(reference)} reference frames")
        self.frames = (key, reference)

    def __len__(self) -> int:
        return len(self.frames[0])

    def to(self, device) -> PairBatch:
        return PairBatch(self.frames[0].to(device), self.frames[1].to(device))
