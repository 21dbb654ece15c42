"""Crossover learning (CrossVIS paper section 3.2; official `cross_over`), all in one module.

Each positive location of one frame batch keeps its own dynamic mask-head parameters
(`controller_params`) but is moved onto the **other** frame of its pair: it borrows the location,
FPN level, image, mask features and ground truth of one positive of the same identity there. The
crossover loss is the dice loss of those borrowed masks, averaged over both directions:

    loss_cross_over = 0.5 * (mean dice(frame-1 params on frame 0) + mean dice(frame-0 params on frame 1))

The steps, in order: `counterparts` (which GT of the other frame has the same identity),
`crossover_assignment` (which of its positives is borrowed; drawn by a `CrossoverSampler`),
`crossover_instances` (the moved positives) and `crossover_loss`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from streamvis.models.crossvis.targets import FramePositives


def counterparts(src_ids: torch.Tensor, src_images: torch.Tensor, dst_ids: torch.Tensor,
                 dst_images: torch.Tensor) -> torch.Tensor:
    """For each GT of one frame batch, the index of the same identity among the other frame's GTs.

    This is the official `rel_ids` plus its per-pair offsets, computed from the ids without
    touching the inputs (the official code shifts `rel_ids` in place).

    Args:
        src_ids, src_images: (K0,) identity ids and image (pair) index of the source GTs.
        dst_ids, dst_images: (K1,) the same for the other frame batch.

    Returns:
        (K0,) int64 index into the other frame's GTs (same image, same id; the first if repeated), or -1.
    """
    match = (src_ids[:, None] == dst_ids[None, :]) & (src_images[:, None] == dst_images[None, :])  # (K0, K1)
    if match.shape[1] == 0:
        return torch.full((len(src_ids),), -1, dtype=torch.long, device=src_ids.device)
    first = match.to(torch.uint8).argmax(dim=1)
    return torch.where(match.any(dim=1), first, torch.full_like(first, -1))


class CrossoverSampler:
    """Chooses, for each crossover instance, one positive among its counterpart GT's positives.

    Args:
        mode: "random" (uniform, vectorized, torch RNG: `generator` or the global one), "python"
            (official: one `randint(0, n - 1)` per instance from `python_rng`, default the global
            `random` module), "first" (pool[0]), "last" (pool[-1]) or "replay" (recorded indices).
        recorded: for "replay": (R,) indices, or (R, 3) rows (low, high, index) as recorded from the
            official `random.randint(low, high)` calls; `high` is checked against the pool size.
        generator: torch generator of mode "random".
        python_rng: `random.Random` of mode "python".
    """

    MODES = ("random", "python", "first", "last", "replay")

    def __init__(self, mode: str = "random", recorded: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None, python_rng: random.Random | None = None):
        if mode not in self.MODES:
            raise ValueError(f"unknown crossover sampling {mode!r}; expected one of {self.MODES}")
        if (mode == "replay") != (recorded is not None):
            raise ValueError("recorded draws are needed by, and only by, mode 'replay'")
        self.mode = mode
        self.recorded = None if recorded is None else torch.as_tensor(recorded, dtype=torch.long)
        self.position = 0
        self.generator = generator
        self.python_rng = python_rng  # None: the global `random` module (kept out of the state: deepcopy)

    @classmethod
    def replay(cls, recorded) -> CrossoverSampler:
        """A sampler that returns the recorded draws, in order."""
        return cls("replay", recorded=recorded)

    def __call__(self, pool_sizes: torch.Tensor) -> torch.Tensor:
        """(M,) pool sizes (>= 1) -> (M,) int64 chosen index within each pool."""
        if self.mode == "first":
            return torch.zeros_like(pool_sizes)
        if self.mode == "last":
            return pool_sizes - 1
        if self.mode == "random":
            uniform = torch.rand(pool_sizes.shape, generator=self.generator, device=pool_sizes.device)
            return torch.minimum((uniform * pool_sizes).long(), pool_sizes - 1)
        if self.mode == "python":
            rng = self.python_rng if self.python_rng is not None else random
            draws = [rng.randint(0, n - 1) for n in pool_sizes.tolist()]
            return torch.tensor(draws, dtype=torch.long, device=pool_sizes.device)
        return self._replay(pool_sizes)

    def _replay(self, pool_sizes: torch.Tensor) -> torch.Tensor:
        rows = self.recorded[self.position:self.position + len(pool_sizes)]
        if len(rows) < len(pool_sizes):
            raise ValueError(f"only {len(self.recorded)} recorded draws; more are needed")
        self.position += len(pool_sizes)
        if rows.dim() == 2:
            if not torch.equal(rows[:, 1].to(pool_sizes.device) + 1, pool_sizes):
                raise ValueError("recorded draws do not match the pool sizes; the positives differ")
            rows = rows[:, 2]
        return rows.to(pool_sizes.device)


def crossover_assignment(
    src_gt_inds: torch.Tensor,
    src_counterparts: torch.Tensor,
    dst_gt_inds: torch.Tensor,
    num_dst_gts: int,
    sampler: CrossoverSampler,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair each source positive whose GT appears (with a positive) in the other frame with one
    positive of that counterpart GT.

    Args:
        src_gt_inds: (P0,) GT index of the source positives (official order).
        src_counterparts: (K0,) `counterparts` of the source GTs.
        dst_gt_inds: (P1,) GT index of the other frame's positives (official order).
        num_dst_gts: K1.
        sampler: picks the index within each counterpart's positives (the pool, in official order).

    Returns:
        keep: (M,) indices of the source positives that take part (in source order).
        dst_gt: (M,) their counterpart GT in the other frame.
        chosen: (M,) index of the drawn positive among the other frame's positives.
    """
    empty = src_gt_inds.new_zeros(0)
    if num_dst_gts == 0 or len(src_gt_inds) == 0:
        return empty, empty, empty
    pool_count = torch.bincount(dst_gt_inds, minlength=num_dst_gts)  # (K1,) positives per GT
    rel = src_counterparts[src_gt_inds]  # (P0,)
    keep = torch.nonzero((rel >= 0) & (pool_count[rel.clamp(min=0)] > 0)).squeeze(1)
    dst_gt = rel[keep]
    pool_order = torch.sort(dst_gt_inds, stable=True).indices  # positives grouped by GT, order kept
    pool_start = torch.cumsum(pool_count, 0) - pool_count
    within = sampler(pool_count[dst_gt])
    chosen = pool_order[pool_start[dst_gt] + within]
    return keep, dst_gt, chosen


def crossover_instances(src: FramePositives, dst: FramePositives,
                        sampler: CrossoverSampler) -> FramePositives:
    """`src` positives with a counterpart in `dst`, carrying their own params but the location, level,
    image and GT of one drawn `dst` positive of the counterpart (official cross_over).

    Args:
        src, dst: the positives of the two frame batches of the same pairs.
        sampler: draws the borrowed positive of each counterpart.

    Returns:
        M positives: `controller_params` and `embeddings` from `src`, everything else from `dst`.
    """
    rel = counterparts(src.gt_ids, src.gt_images, dst.gt_ids, dst.gt_images)  # (K_src,)
    keep, dst_gt, chosen = crossover_assignment(src.gt_inds, rel, dst.gt_inds, len(dst.gt_ids), sampler)
    return FramePositives(
        gt_inds=dst_gt, im_inds=dst.gt_images[dst_gt], fpn_levels=dst.fpn_levels[chosen],
        locations=dst.locations[chosen], controller_params=src.controller_params[keep],
        embeddings=src.embeddings[keep], gt_ids=dst.gt_ids, gt_images=dst.gt_images,
        gt_bitmasks=dst.gt_bitmasks, mask_feats=dst.mask_feats, mask_feat_stride=dst.mask_feat_stride)


def crossover_pair(pos0: FramePositives, pos1: FramePositives, sampler: CrossoverSampler,
                   max_proposals: int) -> tuple[FramePositives, FramePositives]:
    """The crossover instances of both directions, each frame subsampled to `max_proposals` first.

    Args:
        pos0, pos1: the positives of the key and the reference frame batch.
        sampler: draws for the frame-0 instances first, then for the frame-1 ones (official order).
        max_proposals: official 500 (random subsample, `torch.randperm`); -1 keeps all.

    Returns:
        on_frame0: frame-1 params with frame-0 locations/levels/GTs/mask features (official inst_1);
        on_frame1: frame-0 params on frame 1 (official inst_0).
    """
    pos0 = subsample_positives(pos0, max_proposals)
    pos1 = subsample_positives(pos1, max_proposals)
    on_frame1 = crossover_instances(pos0, pos1, sampler)
    on_frame0 = crossover_instances(pos1, pos0, sampler)
    return on_frame0, on_frame1


def crossover_loss(pos0: FramePositives, pos1: FramePositives, *, sampler: CrossoverSampler,
                   max_proposals: int, mask_loss: Callable[[FramePositives], torch.Tensor]) -> torch.Tensor:
    """``loss_cross_over``: 0.5 * (mask loss of frame-1 params on frame 0 + frame-0 params on frame 1).

    Args:
        pos0, pos1, sampler, max_proposals: as `crossover_pair`.
        mask_loss: positives -> mean dice loss of their dynamic masks against their GT masks
            (the criterion's `mask_loss`, the same loss as ``loss_mask``).
    """
    on_frame0, on_frame1 = crossover_pair(pos0, pos1, sampler, max_proposals)
    return (mask_loss(on_frame0) + mask_loss(on_frame1)) * 0.5


def subsample_positives(positives: FramePositives, max_count: int) -> FramePositives:
    """A random `max_count` of the positives (official torch.randperm), or all of them."""
    if max_count < 0 or len(positives) <= max_count:
        return positives
    return positives.select(torch.randperm(len(positives), device=positives.mask_feats.device)[:max_count])
