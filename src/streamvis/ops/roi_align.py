"""RoIAlign in plain torch with mmcv's exact semantics, vectorized over RoIs, and the multi-level
RoI extractor of mmdet's ``SingleRoIExtractor``.

mmcv 1.2.7 ``roi_align`` (CPU kernel ``roi_align_cpu.cpp``, the Caffe2 algorithm), per RoI
``(b, x1, y1, x2, y2)`` and output bin (ph, pw):
- ``aligned=True``: ``start = x1 * scale - 0.5``, ``size = x2 * scale - 0.5 - start`` (may be 0);
  ``aligned=False``: ``start = x1 * scale``, ``size = max(x2 * scale - start, 1)``.
- ``bin = size / pooled``; samples per bin ``grid = sampling_ratio`` if > 0, else
  ``ceil(size / pooled)`` (adaptive: a zero-size RoI has no sample and pools to 0).
- sample ``y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h`` (likewise x).
- bilinear value: 0 when ``y < -1 or y > H or x < -1 or x > W``; else y clamped to >= 0,
  ``y_low = int(y)``, and at ``y_low >= H - 1`` both corners are row H - 1.
- the bin's value is the sum of its samples divided by ``max(grid_h * grid_w, 1)``.
The mmdet 0.5 RoIAlign (MaskTrack R-CNN, masktrack facts.md section 7.4; ``legacy=True``):
``start = x1 * scale``, ``end = (x2 + 1) * scale``, ``size = max(end - start, 0)``,
``sampling_ratio`` 2 in its configs, the same samples and bilinear rule, divided by ``grid_h * grid_w``.

Vectorization: bilinear sampling is separable, so each RoI's samples are the outer product of
its y samples and x samples. All RoIs of a chunk are gathered at once; chunks only bound memory
(RoIs are sorted by samples per bin so that small RoIs are not padded to a huge one's grid).
"""

from __future__ import annotations

import torch

# elements of the gathered (RoIs, samples, 4 corners, C) tensor per chunk: bounds peak memory
# (64 MB in float32); not a semantic constant
_GATHER_BUDGET = 1 << 24


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
              spatial_scale: float, *, sampling_ratio: int = 0, aligned: bool = True,
              legacy: bool = False) -> torch.Tensor:
    """Average RoIAlign (mmcv ``RoIAlign(..., pool_mode='avg')``).

    Args:
        features: (B, C, H, W) float feature map.
        rois: (K, 5) rows [image index, x1, y1, x2, y2] in input-image pixels.
        output_size: pooled (height, width), or one int for both.
        spatial_scale: 1 / stride of `features`.
        sampling_ratio: samples per bin per axis; 0 = adaptive ceil(roi size / output size).
        aligned: mmcv's half-pixel shift (ignored when `legacy`).
        legacy: the mmdet 0.5 variant (see the module docstring).

    Returns:
        (K, C, out_h, out_w) in the features' dtype; (0, C, out_h, out_w) for no RoI.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    if features.dim() != 4 or rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_align expects features (B, C, H, W) and rois (K, 5); got "
                         f"{tuple(features.shape)} and {tuple(rois.shape)}")
    num_rois, channels = rois.shape[0], features.shape[1]
    output = features.new_zeros((num_rois, out_h, out_w, channels))
    if num_rois == 0:
        return output.permute(0, 3, 1, 2)
    # official: the kernel computes the geometry in the features' floating type (float32 usually)
    geometry_dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    geometry = _roi_geometry(rois.to(geometry_dtype), spatial_scale, out_h, out_w, sampling_ratio,
                             aligned, legacy)
    flat = features.permute(0, 2, 3, 1).reshape(-1, channels)  # (B*H*W, C): one row per pixel
    grid_cost = (geometry["grid_h"].clamp(min=1) * geometry["grid_w"].clamp(min=1))
    order = torch.argsort(grid_cost, stable=True)
    per_sample = out_h * out_w * 4 * channels
    start = 0
    while start < num_rois:
        sizes = torch.arange(1, num_rois - start + 1)
        fits = sizes * grid_cost[order[start:]] * per_sample <= _GATHER_BUDGET
        count = max(1, int(fits.sum()))  # grid_cost is sorted, so `fits` is a prefix
        chunk = order[start : start + count]
        pooled = _align_chunk(flat, features.shape, {k: v[chunk] for k, v in geometry.items()},
                              out_h, out_w)
        output[chunk] = pooled.to(output.dtype)
        start += count
    return output.permute(0, 3, 1, 2).contiguous()


def _roi_geometry(rois: torch.Tensor, scale: float, out_h: int, out_w: int, sampling_ratio: int,
                  aligned: bool, legacy: bool) -> dict[str, torch.Tensor]:
    """Per RoI: image index, start, bin size and grid (samples per bin) on each axis."""
    x1, y1, x2, y2 = (rois[:, i] * scale for i in range(1, 5))
    if legacy:
        end_x, end_y = (rois[:, 3] + 1) * scale, (rois[:, 4] + 1) * scale
        width, height = (end_x - x1).clamp(min=0), (end_y - y1).clamp(min=0)
    elif aligned:
        x1, y1, x2, y2 = x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5
        width, height = x2 - x1, y2 - y1
    else:
        width, height = (x2 - x1).clamp(min=1), (y2 - y1).clamp(min=1)
    bin_h, bin_w = height / out_h, width / out_w
    if sampling_ratio > 0:
        grid_h = torch.full_like(height, sampling_ratio, dtype=torch.int64)
        grid_w = torch.full_like(width, sampling_ratio, dtype=torch.int64)
    else:
        # official: ceil(roi_height / pooled_height) in float; a non-positive size gives no sample
        grid_h = torch.ceil(height / out_h).to(torch.int64).clamp(min=0)
        grid_w = torch.ceil(width / out_w).to(torch.int64).clamp(min=0)
    return {"batch": rois[:, 0].to(torch.int64), "start_y": y1, "start_x": x1, "bin_h": bin_h,
            "bin_w": bin_w, "grid_h": grid_h, "grid_w": grid_w}


def _axis_samples(start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, pooled: int,
                  length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear corners and weights of every sample along one axis.

    Returns:
        index (R, pooled, G, 2) int64 (low, high corner) and weight (R, pooled, G, 2); samples
        beyond a RoI's own grid and samples outside [-1, length] weigh 0.
    """
    max_grid = max(int(grid.max()), 1)
    bins = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]  # (1, P, 1)
    steps = torch.arange(max_grid, device=start.device)  # (G,)
    grid_f = grid.clamp(min=1).to(start.dtype)[:, None, None]
    coord = (start[:, None, None] + bins * bin_size[:, None, None]
             + (steps.to(start.dtype)[None, None, :] + 0.5) * bin_size[:, None, None] / grid_f)  # (R, P, G)
    valid = (coord >= -1.0) & (coord <= length) & (steps[None, None, :] < grid[:, None, None])
    coord = coord.clamp(min=0)
    low = coord.floor().to(torch.int64)
    at_edge = low >= length - 1
    low = torch.where(at_edge, torch.full_like(low, length - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)
    frac = coord - low.to(coord.dtype)
    weight = torch.stack((1 - frac, frac), dim=-1) * valid[..., None]
    return torch.stack((low, high), dim=-1), weight


def _align_chunk(flat: torch.Tensor, shape: torch.Size, geometry: dict[str, torch.Tensor],
                 out_h: int, out_w: int) -> torch.Tensor:
    """Pool one chunk of RoIs -> (R, out_h, out_w, C)."""
    _, channels, height, width = shape
    index_y, weight_y = _axis_samples(geometry["start_y"], geometry["bin_h"], geometry["grid_h"], out_h,
                                      height)
    index_x, weight_x = _axis_samples(geometry["start_x"], geometry["bin_w"], geometry["grid_w"], out_w,
                                      width)
    num = index_y.shape[0]
    rows = index_y.reshape(num, out_h, -1)  # (R, P_h, S_y): S = G * 2 corners
    cols = index_x.reshape(num, out_w, -1)  # (R, P_w, S_x)
    base = geometry["batch"] * (height * width)
    pixel = (base[:, None, None, None, None] + rows[:, :, :, None, None] * width
             + cols[:, None, None, :, :])  # (R, P_h, S_y, P_w, S_x)
    values = flat.index_select(0, pixel.reshape(-1)).reshape(*pixel.shape, channels)
    w_y = weight_y.reshape(num, out_h, -1).to(flat.dtype)
    w_x = weight_x.reshape(num, out_w, -1).to(flat.dtype)
    pooled = torch.einsum("rpyqxc,rpy,rqx->rpqc", values, w_y, w_x)  # (R, P_h, P_w, C)
    count = (geometry["grid_h"] * geometry["grid_w"]).clamp(min=1).to(flat.dtype)
    return pooled / count[:, None, None, None]


def map_roi_levels(rois: torch.Tensor, num_levels: int, *, finest_scale: float = 56.0,
                   pixel_offset: float = 0.0) -> torch.Tensor:
    """mmdet ``SingleRoIExtractor.map_roi_levels``: floor(log2(sqrt(w * h) / 56 + 1e-6)) clamped to
    [0, num_levels - 1]; w = x2 - x1 + offset (mmdet 2.x offset 0, mmdet 0.5 offset 1).

    Args:
        rois: (K, 5) [image index, x1, y1, x2, y2].

    Returns:
        (K,) int64 level index (0 = the finest level, P2).
    """
    scale = torch.sqrt((rois[:, 3] - rois[:, 1] + pixel_offset) * (rois[:, 4] - rois[:, 2] + pixel_offset))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))  # official eps 1e-6
    return levels.clamp(min=0, max=num_levels - 1).to(torch.int64)


class MultiLevelRoIExtractor(torch.nn.Module):
    """RoIAlign each RoI on the pyramid level chosen by its size (mmdet ``SingleRoIExtractor``).

    Args:
        output_size: pooled size (7 for box/track RoIs, 14 for mask RoIs, official configs).
        strides: strides of the levels given to `forward` (official: 4, 8, 16, 32 = P2..P5).
        sampling_ratio: 0 (mmdet 2.x adaptive) or 2 (mmdet 0.5).
        aligned: mmcv ``aligned`` (mmdet 2.x True).
        legacy: mmdet 0.5 RoIAlign and level rule (+1 widths).
        finest_scale: official 56.
    """

    def __init__(self, *, output_size: int, strides: tuple[int, ...] = (4, 8, 16, 32),
                 sampling_ratio: int = 0, aligned: bool = True, legacy: bool = False,
                 finest_scale: float = 56.0):
        super().__init__()
        self.output_size = output_size
        self.strides = tuple(strides)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.legacy = legacy
        self.finest_scale = finest_scale

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """Args: features, the levels (at least len(strides); extra coarser ones are ignored), each
        (B, C, H_l, W_l); rois (K, 5). Returns (K, C, output_size, output_size)."""
        features = features[: len(self.strides)]
        channels = features[0].shape[1]
        out = features[0].new_zeros((rois.shape[0], channels, self.output_size, self.output_size))
        if rois.shape[0] == 0:
            return out
        levels = map_roi_levels(rois, len(self.strides), finest_scale=self.finest_scale,
                                pixel_offset=1.0 if self.legacy else 0.0)
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            indices = torch.nonzero(levels == level).squeeze(1)
            if indices.numel() > 0:
                out[indices] = roi_align(feature, rois[indices], self.output_size, 1.0 / stride,
                                         sampling_ratio=self.sampling_ratio, aligned=self.aligned,
                                         legacy=self.legacy)
        return out
