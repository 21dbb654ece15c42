"""Hand-built detections for tracker tests: boxes become rectangle masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvis.structures import Instances

IMAGE_SIZE = (40, 80)  # (H, W)


def make_frame(detections, image_size=IMAGE_SIZE) -> Instances:
    """detections: list of (box xyxy, class, score, embedding) -> model-like Instances."""
    height, width = image_size
    masks = torch.zeros((len(detections), height, width), dtype=torch.bool)
    for i, (box, *_rest) in enumerate(detections):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        masks[i, y0:y1, x0:x1] = True
    return Instances(
        image_size,
        boxes=torch.tensor([d[0] for d in detections], dtype=torch.float32).reshape(-1, 4),
        classes=torch.tensor([d[1] for d in detections], dtype=torch.int64),
        scores=torch.tensor([d[2] for d in detections], dtype=torch.float32),
        embeddings=torch.tensor(np.array([d[3] for d in detections], dtype=np.float32).reshape(-1, 8)),
        masks=masks,
    )


def unit(index: int, dim: int = 8, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A one-hot embedding along `index`, optionally with a little Gaussian noise."""
    vector = np.zeros(dim, dtype=np.float32)
    vector[index] = 1.0
    if noise:
        vector += np.random.default_rng(seed).normal(0, noise, dim).astype(np.float32)
    return vector


@pytest.fixture
def frame():
    return make_frame


@pytest.fixture
def emb():
    return unit
