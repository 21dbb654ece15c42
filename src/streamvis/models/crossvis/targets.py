"""FCOS training targets: which location regresses which ground-truth box (official CrossVIS rules).

All locations of a frame batch are flattened in the official order **level, then image, then
row-major (y slow, x fast)**; `gt_inds` index the concatenated ground truths of the batch (image 0's
first). The rules (reference golden_losses.md, facts.md section 9):

- centre sampling: a location is a candidate when it lies strictly inside the box
  [c - 1.5*stride, c + 1.5*stride] clipped to the GT box, where c is the **mask centroid** (pixel
  indices, no +0.5) when masks are given (official `get_sample_region` with `gt_bitmasks_full`);
- the largest of l, t, r, b (pixels) must lie in the level's size range, inclusive at both ends;
- among the remaining candidates the GT of minimum box area wins (ties: the lower GT index);
- regression targets are l, t, r, b divided by the level stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamvis.ops.misc import compute_locations  # noqa: F401  (re-exported for callers)

# official: FCOS INF, MODEL.FCOS.FPN_STRIDES, SIZES_OF_INTEREST [64, 128, 256, 512] -> ranges, POS_RADIUS
INF = 100000000
STRIDES = (8, 16, 32, 64, 128)
SIZE_RANGES = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF))
CENTER_SAMPLING_RADIUS = 1.5


@dataclass
class FCOSTargets:
    """Per-location targets of one frame batch, flattened level -> image -> row-major.

    Attributes:
        labels: (L,) int64 class 0..C-1, or `num_classes` for background.
        reg_targets: (L, 4) float32 l, t, r, b in units of the level stride.
        gt_inds: (L,) int64 index into the batch's concatenated GTs (-1 for an image without GT).
        im_inds: (L,) int64 image index.
        locations: (L, 2) float32 (x, y) pixels.
        fpn_levels: (L,) int64 level index (0 = P3).
        num_classes: the background label.
    """

    labels: torch.Tensor
    reg_targets: torch.Tensor
    gt_inds: torch.Tensor
    im_inds: torch.Tensor
    locations: torch.Tensor
    fpn_levels: torch.Tensor
    num_classes: int

    @property
    def pos_inds(self) -> torch.Tensor:
        """(P,) int64 indices of the positive locations, in the official order."""
        return torch.nonzero(self.labels != self.num_classes).squeeze(1)


def mask_centroids(masks: torch.Tensor) -> torch.Tensor:
    """Centroids of binary masks in pixel indices (official moments; an empty mask gives (0, 0)).

    Args:
        masks: (K, H, W) bool or float.

    Returns:
        (K, 2) float32 (x, y).
    """
    masks = masks.to(torch.float32)
    h, w = masks.shape[-2:]
    xs = torch.arange(0, w, dtype=torch.float32, device=masks.device)
    ys = torch.arange(0, h, dtype=torch.float32, device=masks.device)
    m00 = masks.sum(dim=-1).sum(dim=-1).clamp(min=1e-6)
    m10 = (masks * xs).sum(dim=-1).sum(dim=-1)
    m01 = (masks * ys[:, None]).sum(dim=-1).sum(dim=-1)
    return torch.stack((m10 / m00, m01 / m00), dim=1)


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """(K, 4) xyxy -> (K, 2) box centres (FCOS without masks)."""
    return torch.stack((boxes[:, [0, 2]].sum(dim=-1) * 0.5, boxes[:, [1, 3]].sum(dim=-1) * 0.5), dim=1)


def _per_location(values: list, counts: list[int], device) -> torch.Tensor:
    """Repeat one value per level to one value per location: (L,) float32."""
    return torch.cat([torch.full((n,), float(v), device=device) for v, n in zip(values, counts)])


def _center_region(
    boxes: torch.Tensor, centers: torch.Tensor, locations: torch.Tensor, radius_px: torch.Tensor
) -> torch.Tensor:
    """(L, K) bool: location strictly inside the centre region (clipped to the box) of each GT."""
    r = radius_px[:, None]  # (L, 1)
    x0 = torch.maximum(centers[None, :, 0] - r, boxes[None, :, 0])
    y0 = torch.maximum(centers[None, :, 1] - r, boxes[None, :, 1])
    x1 = torch.minimum(centers[None, :, 0] + r, boxes[None, :, 2])
    y1 = torch.minimum(centers[None, :, 1] + r, boxes[None, :, 3])
    xs, ys = locations[:, 0:1], locations[:, 1:2]
    sides = torch.stack((xs - x0, ys - y0, x1 - xs, y1 - ys), dim=-1)  # (L, K, 4)
    # official quirk (get_sample_region): a GT 0 centred at x == 0 disables centre sampling of the image
    return (sides.min(dim=-1).values > 0) & (centers[0, 0] != 0)


def assign_image(
    locations: torch.Tensor,
    boxes: torch.Tensor,
    classes: torch.Tensor,
    centers: torch.Tensor,
    *,
    radius_px: torch.Tensor,
    size_ranges: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign every location of one image to at most one GT (min area among the candidates).

    Args:
        locations: (L, 2) all levels' locations, level by level.
        boxes: (K, 4) float32 xyxy, K >= 1; classes: (K,) int64; centers: (K, 2) sampling centres.
        radius_px: (L,) sampling radius in pixels (stride * radius) per location.
        size_ranges: (L, 2) allowed [min, max] of max(l, t, r, b) per location.
        num_classes: background label.

    Returns:
        labels (L,) int64, reg_targets (L, 4) pixels, gt_index (L,) int64 within the image
        (background locations keep the distances to / index of GT 0, as official).
    """
    xs, ys = locations[:, 0:1], locations[:, 1:2]
    reg = torch.stack((xs - boxes[None, :, 0], ys - boxes[None, :, 1],
                       boxes[None, :, 2] - xs, boxes[None, :, 3] - ys), dim=2)  # (L, K, 4)
    in_region = _center_region(boxes, centers, locations, radius_px)
    max_reg = reg.max(dim=2).values
    in_range = (max_reg >= size_ranges[:, [0]]) & (max_reg <= size_ranges[:, [1]])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    loc_to_area = area[None].repeat(len(locations), 1)
    loc_to_area[~(in_region & in_range)] = INF
    min_area = loc_to_area.min(dim=1).values
    # ties go to the lowest GT index (what the official `min(dim=1)` returns on CPU), made explicit
    ks = torch.arange(len(boxes), device=boxes.device).expand_as(loc_to_area)
    gt_index = torch.where(loc_to_area == min_area[:, None], ks, len(boxes)).min(dim=1).values
    labels = classes[gt_index].clone()
    labels[min_area == INF] = num_classes
    reg = reg[torch.arange(len(locations), device=reg.device), gt_index]
    return labels, reg, gt_index


def fcos_targets(
    locations: list[torch.Tensor],
    boxes: list[torch.Tensor],
    classes: list[torch.Tensor],
    centers: list[torch.Tensor],
    *,
    num_classes: int,
    strides: tuple[int, ...] = STRIDES,
    size_ranges: tuple[tuple[float, float], ...] = SIZE_RANGES,
    radius: float = CENTER_SAMPLING_RADIUS,
) -> FCOSTargets:
    """FCOS targets of a frame batch, in the official level -> image -> row-major order.

    Args:
        locations: per level, (HW_l, 2) float32 (x, y) (`streamvis.ops.misc.compute_locations`).
        boxes: per image, (K_i, 4) float32 xyxy pixels (K_i may be 0).
        classes: per image, (K_i,) int64 0-based.
        centers: per image, (K_i, 2) sampling centres (`mask_centroids`, or `box_centers`).
        num_classes: background label.
        strides, size_ranges, radius: per level stride, [min, max] of max(l,t,r,b), sampling radius.

    Returns:
        `FCOSTargets` over N * sum(HW_l) locations; `reg_targets` in stride units.
    """
    counts = [len(loc) for loc in locations]
    device = locations[0].device
    all_locations = torch.cat(locations, dim=0)  # (L, 2)
    radius_px = _per_location([s * radius for s in strides], counts, device)
    ranges = torch.stack([_per_location([r[0] for r in size_ranges], counts, device),
                          _per_location([r[1] for r in size_ranges], counts, device)], dim=1)
    per_image, offset = [], 0
    for im_boxes, im_classes, im_centers in zip(boxes, classes, centers):
        per_image.append(_image_targets(all_locations, im_boxes, im_classes, im_centers, offset,
                                        radius_px=radius_px, size_ranges=ranges, num_classes=num_classes))
        offset += len(im_boxes)
    labels, reg, gt_inds = (torch.stack([t[i] for t in per_image]) for i in range(3))  # (N, L, ...)
    num_images = len(per_image)
    im_inds = torch.arange(num_images, device=device)[:, None].expand(num_images, len(all_locations))
    levels = torch.cat([torch.full((n,), lvl, dtype=torch.long, device=device)
                        for lvl, n in enumerate(counts)])
    level_strides = _per_location(list(strides), counts, device)
    return FCOSTargets(
        labels=_level_first(labels, counts),
        reg_targets=_level_first(reg / level_strides[None, :, None], counts),
        gt_inds=_level_first(gt_inds, counts),
        im_inds=_level_first(im_inds, counts),
        locations=_level_first(all_locations[None].expand(num_images, -1, -1), counts),
        fpn_levels=_level_first(levels[None].expand(num_images, -1), counts),
        num_classes=num_classes,
    )


def _image_targets(locations, boxes, classes, centers, offset, *, radius_px, size_ranges, num_classes):
    """`assign_image` plus the batch offset of gt indices; an image without GT is all background."""
    if len(boxes) == 0:
        n = len(locations)
        labels = torch.full((n,), num_classes, dtype=torch.long, device=locations.device)
        return labels, locations.new_zeros((n, 4)), torch.full_like(labels, -1)
    labels, reg, gt_index = assign_image(locations, boxes.to(torch.float32), classes.long(),
                                         centers.to(torch.float32), radius_px=radius_px,
                                         size_ranges=size_ranges, num_classes=num_classes)
    return labels, reg, gt_index + offset


def _level_first(per_image: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """(N, L, ...) image-first -> (N*L, ...) level, then image, then location."""
    chunks = per_image.split(counts, dim=1)
    return torch.cat([c.reshape(-1, *per_image.shape[2:]) for c in chunks], dim=0)


@dataclass
class FramePositives:
    """The positive locations of one frame batch (official order) and that batch's GTs.

    Attributes:
        gt_inds, im_inds, fpn_levels: (P,) int64; locations: (P, 2) float32 pixels.
        controller_params: (P, 169) dynamic mask-head parameters (controller output).
        embeddings: (P, D) re-ID features.
        gt_ids: (K,) identity ids of the batch's GTs; gt_images: (K,) their image index.
        gt_bitmasks: (K, Hp/s, Wp/s) float GT masks sampled at the mask output stride s.
        mask_feats: (N, 8, Hp/8, Wp/8); mask_feat_stride: 8.
    """

    gt_inds: torch.Tensor
    im_inds: torch.Tensor
    fpn_levels: torch.Tensor
    locations: torch.Tensor
    controller_params: torch.Tensor
    embeddings: torch.Tensor
    gt_ids: torch.Tensor
    gt_images: torch.Tensor
    gt_bitmasks: torch.Tensor
    mask_feats: torch.Tensor
    mask_feat_stride: int

    def __len__(self) -> int:
        return len(self.gt_inds)

    def select(self, keep: torch.Tensor) -> FramePositives:
        """The positives `keep` (index tensor), same GTs."""
        fields = {k: getattr(self, k)[keep] for k in ("gt_inds", "im_inds", "fpn_levels", "locations",
                                                      "controller_params", "embeddings")}
        return FramePositives(**fields, gt_ids=self.gt_ids, gt_images=self.gt_images,
                              gt_bitmasks=self.gt_bitmasks, mask_feats=self.mask_feats,
                              mask_feat_stride=self.mask_feat_stride)
