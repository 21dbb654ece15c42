"""Frame-level prototypical cross-attention of PCAN (reference/pcan/facts.md, section 2).

Test-time only and parameter-free: per video it keeps, for the two finest FPN levels (P2, P3), a
feature **memory** and a set of running **prototypes**. Per frame and level:

1. EM on the memory M (C, N) from the running prototypes mu (C, K), 3 iterations of
   ``z = softmax(20 * M^T mu) over K; z = l1norm(z) over N; mu = l2norm(M z) over C``
   (no normalisation of M; eps 1e-6 added to the sum / norm) -> ``protos``.
2. ``assign = softmax(X^T protos)`` over K (temperature 1) for the current features X.
3. ``readout = protos assign^T``; fused ``X <- 0.75 X + 0.25 readout`` (replaces P2/P3 for every head).
4. ``M <- 0.75 X_fused + 0.25 M``; ``mu <- 0.5 mu + 0.5 protos`` (not re-normalised).

At frame 0 of a video the memory is that frame's raw feature and the prototypes restart from the
buffers ``mu0``/``mu1`` (official: ``EMQuasiDenseMaskRCNNRefine.forward_test`` / ``_em_iter`` /
``_prop``). The buffers ``mu0..mu4`` (1, 256, 30) are kept under their official names so that a
checkpoint maps one-to-one; only ``mu0`` and ``mu1`` are ever read (official: ``mu2`` is listed
at frame 0 but unused, ``mu3``/``mu4`` never).

Official oddities kept: the detector is trained on plain FPN features but tested on the fused
ones (a 0.75 scale of P2/P3 plus a read-out of norm <= 1, whatever the feature scale).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvis.errors import StreamvisError

NUM_PROTOTYPES = 30  # official: QuasiDenseMaskRCNN.__init__ proto_num=30
EM_ITERATIONS = 3  # official: stage_num=3
EM_KAPPA = 20.0  # official: hard-coded `20 * z` before the E-step softmax
NORM_EPS = 1e-6  # official: _l1norm / _l2norm add 1e-6 to the sum / norm
FEATURE_WEIGHT = 0.75  # official: x = 0.75 * x + 0.25 * readout
MEMORY_WEIGHT = 0.75  # official: memory = 0.75 * fused + 0.25 * memory
PROTOTYPE_MOMENTUM = 0.5  # official: mus[i] = 0.5 * mus[i] + 0.5 * protos
NUM_BUFFERS = 5  # official: mu0..mu4 are registered (and saved), only mu0/mu1 are used
NUM_LEVELS = 2  # official: P2 and P3 only


def l1norm(x: Tensor, dim: int) -> Tensor:
    """``x / (1e-6 + sum_dim x)`` (official `_l1norm`: eps added, not clamped)."""
    return x / (NORM_EPS + x.sum(dim=dim, keepdim=True))


def l2norm(x: Tensor, dim: int) -> Tensor:
    """``x / (1e-6 + ||x||_2 over dim)`` (official `_l2norm`)."""
    return x / (NORM_EPS + x.norm(dim=dim, keepdim=True))


@torch.no_grad()
def em_prototypes(memory: Tensor, prototypes: Tensor, iterations: int = EM_ITERATIONS,
                  kappa: float = EM_KAPPA) -> Tensor:
    """Prototypes of a feature map by EM (official `_em_iter` of the frame-level PCAM).

    Args:
        memory: (B, C, H, W) features (not normalised).
        prototypes: (B, C, K) initial prototypes.
        iterations: EM iterations.
        kappa: temperature of the E-step softmax.

    Returns:
        (B, C, K) prototypes with unit-norm columns (up to the 1e-6 eps).
    """
    flat = memory.flatten(2)  # (B, C, N)
    mu = prototypes
    for _ in range(iterations):
        z = torch.bmm(flat.transpose(1, 2), mu)  # (B, N, K)
        z = F.softmax(kappa * z, dim=2)
        z = l1norm(z, dim=1)  # each prototype's responsibilities sum to 1 over pixels
        mu = l2norm(torch.bmm(flat, z), dim=1)  # (B, C, K)
    return mu


class LevelStep(NamedTuple):
    """One level's result of one frame (all float32).

    Attributes:
        protos: (B, C, K) EM prototypes of the memory (before the update).
        assign: (B, N, K) softmax of the current features against `protos`, rows in row-major pixel order.
        fused: (B, C, H, W) ``0.75 X + 0.25 readout``.
        memory: (B, C, H, W) memory after the update.
        prototypes: (B, C, K) running prototypes after the update.
    """

    protos: Tensor
    assign: Tensor
    fused: Tensor
    memory: Tensor
    prototypes: Tensor


def attend_level(features: Tensor, memory: Tensor, prototypes: Tensor) -> LevelStep:
    """One frame of the frame-level PCAM on one level (facts.md section 2, steps 1-6).

    Args:
        features: (B, C, H, W) current FPN level.
        memory: (B, C, H, W) memory of this level (the frame's own features at frame 0).
        prototypes: (B, C, K) running prototypes of this level.

    Returns:
        The `LevelStep` of this frame.
    """
    batch, channels, height, width = features.shape
    protos = em_prototypes(memory, prototypes)  # (B, C, K)
    assign = F.softmax(torch.bmm(features.flatten(2).transpose(1, 2), protos), dim=2)  # (B, N, K)
    readout = torch.bmm(protos, assign.transpose(1, 2)).view(batch, channels, height, width)
    fused = FEATURE_WEIGHT * features + (1 - FEATURE_WEIGHT) * readout
    new_memory = MEMORY_WEIGHT * fused + (1 - MEMORY_WEIGHT) * memory
    new_prototypes = PROTOTYPE_MOMENTUM * prototypes + (1 - PROTOTYPE_MOMENTUM) * protos
    return LevelStep(protos, assign, fused, new_memory, new_prototypes)


class FrameAttention(nn.Module):
    """Frame-level PCAM with its per-video state (memory and running prototypes of P2 and P3).

    Args:
        channels: FPN channels (256 in the official model).
        num_prototypes: K, prototypes per level (30).

    Buffers ``mu0..mu4`` (1, C, K) hold the initial prototypes (official names; saved in the
    weights). At construction they are drawn N(0, sqrt(2/K)) and L2-normalised, as official.
    """

    def __init__(self, *, channels: int = 256, num_prototypes: int = NUM_PROTOTYPES):
        super().__init__()
        for index in range(NUM_BUFFERS):
            init = torch.randn(1, channels, num_prototypes) * math.sqrt(2.0 / num_prototypes)
            self.register_buffer(f"mu{index}", l2norm(init, dim=1))
        self._memory: list[Tensor] | None = None
        self._prototypes: list[Tensor] | None = None

    def reset(self) -> None:
        """Forget the video: the next frame must be frame 0 of a new video."""
        self._memory = None
        self._prototypes = None

    def initial_prototypes(self, level: int) -> Tensor:
        """(1, C, K) initial prototypes of `level` (0 = P2, 1 = P3)."""
        return getattr(self, f"mu{level}")

    @torch.no_grad()
    def step(self, features: list[Tensor] | tuple[Tensor, ...], frame_index: int) -> list[LevelStep]:
        """Run one frame on the first two levels and update the state; returns one `LevelStep` per level.

        Args:
            features: FPN levels, finest first ((B, C, H, W) each; at least P2 and P3).
            frame_index: 0-based index of the frame in its video; 0 starts a new video.

        Raises:
            StreamvisError: a frame other than 0 arrives without a video started.
        """
        if len(features) < NUM_LEVELS:
            raise StreamvisError(
                f"frame-level attention needs at least {NUM_LEVELS} FPN levels (P2, P3), got {len(features)}"
            )
        if frame_index == 0:
            # official: memory := this frame's raw P2/P3 (P4 is stored too, never read); mus := buffers
            self._memory = [features[level] for level in range(NUM_LEVELS)]
            self._prototypes = [self.initial_prototypes(level) for level in range(NUM_LEVELS)]
        elif self._memory is None or self._prototypes is None:
            raise StreamvisError(
                f"frame-level attention got frame {frame_index} before frame 0 of a video: call it on "
                "every frame in order from frame 0 (frame 0 resets the memory)"
            )
        steps = []
        for level in range(NUM_LEVELS):
            memory, prototypes = self._memory[level], self._prototypes[level]
            if memory.shape != features[level].shape:
                raise StreamvisError(
                    f"frame-level attention: frame {frame_index} level P{level + 2} has shape "
                    f"{tuple(features[level].shape)} but the video's memory has {tuple(memory.shape)}; "
                    "all frames of a video must have the same size (start a new video with frame 0)"
                )
            if prototypes.shape[0] != features[level].shape[0]:
                prototypes = prototypes.expand(features[level].shape[0], -1, -1)
            result = attend_level(features[level], memory, prototypes)
            self._memory[level] = result.memory
            self._prototypes[level] = result.prototypes
            steps.append(result)
        return steps

    def forward(self, features: list[Tensor] | tuple[Tensor, ...], frame_index: int) -> list[Tensor]:
        """The FPN levels with P2 and P3 replaced by their fused versions (P4.. pass through).

        Args:
            features: FPN levels, finest first, (B, C, H_l, W_l) each.
            frame_index: 0-based index of the frame in its video; 0 resets the state.

        Returns:
            The levels, same shapes, in the same order.
        """
        steps = self.step(features, frame_index)
        return [step.fused for step in steps] + list(features[NUM_LEVELS:])
