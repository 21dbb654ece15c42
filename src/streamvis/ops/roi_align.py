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

Vectorization: bilinear sampling is separable, so each RoI's output is A_y @ window @ A_x^T, with
A_y (out_h, window rows) the summed sample weights of each bin row (likewise A_x) over the window
of the map the RoI's samples touch. All RoIs of a chunk are gathered and multiplied at once
(batched matmuls); chunks only bound memory (RoIs are sorted by window shape so that small RoIs
are not padded to a huge one's window).
"""

from __future__ import annotations

import torch

# elements of the gathered (RoIs, window rows, window columns, C) tensor per chunk: bounds peak
# memory (64 MB in float32); not a semantic constant
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
    height, width = features.shape[-2:]
    samples_y = _axis_samples(geometry["start_y"], geometry["bin_h"], geometry["grid_h"], out_h, height)
    samples_x = _axis_samples(geometry["start_x"], geometry["bin_w"], geometry["grid_w"], out_w, width)
    extent_y = _window_extent(samples_y[0])
    extent_x = _window_extent(samples_x[0])
    # group RoIs of similar window shape so that a chunk pads little (by rows, then columns)
    order = torch.argsort(extent_y * (int(extent_x.max()) + 1) + extent_x, stable=True)
    sorted_y, sorted_x = extent_y[order], extent_x[order]
    start = 0
    while start < num_rois:
        # the chunk's window is its largest height x largest width (running maxima along `order`)
        max_y = torch.cummax(sorted_y[start:], 0).values
        max_x = torch.cummax(sorted_x[start:], 0).values
        sizes = torch.arange(1, num_rois - start + 1)
        fits = sizes * max_y * max_x * channels <= _GATHER_BUDGET
        count = max(1, int(fits.sum()))  # the running product is non-decreasing, so `fits` is a prefix
        chunk = order[start : start + count]
        pooled = _align_chunk(flat, features.shape, geometry["batch"][chunk],
                              tuple(t[chunk] for t in samples_y), tuple(t[chunk] for t in samples_x))
        count_per_roi = (geometry["grid_h"][chunk] * geometry["grid_w"][chunk]).clamp(min=1)
        output[chunk] = (pooled / count_per_roi.to(pooled.dtype)[:, None, None, None]).to(output.dtype)
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


def _window_extent(index: torch.Tensor) -> torch.Tensor:
    """Rows (or columns) spanned by each RoI's bilinear corners: (R, P, G, 2) indices -> (R,)."""
    return index.flatten(1).amax(dim=1) - index.flatten(1).amin(dim=1) + 1


def _dense_axis(index: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-RoI interpolation matrices over a window: (R, P, G, 2) corners and weights ->
    (R, P, window) summed sample weights and (R,) the window's first index."""
    num, pooled = index.shape[:2]
    first = index.flatten(1).amin(dim=1)
    relative = (index - first[:, None, None, None]).reshape(num, pooled, -1)
    size = int(relative.max()) + 1
    dense = weight.new_zeros((num, pooled, size))
    dense.scatter_add_(2, relative, weight.reshape(num, pooled, -1))
    return dense, first


def _align_chunk(flat: torch.Tensor, shape: torch.Size, batch: torch.Tensor,
                 samples_y: tuple[torch.Tensor, torch.Tensor],
                 samples_x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Sum of the bilinear samples of each bin for one chunk of RoIs -> (R, out_h, out_w, C).

    Separable form: out[r] = A_y[r] @ window[r] @ A_x[r]^T over the RoI's window of the map,
    where A_y (out_h, window_h) holds each bin's summed sample weights per row (likewise A_x).
    """
    _, channels, height, width = shape
    dense_y, first_y = _dense_axis(*samples_y)  # (R, P_h, S_h), (R,)
    dense_x, first_x = _dense_axis(*samples_x)  # (R, P_w, S_w), (R,)
    num, out_h, size_h = dense_y.shape
    out_w, size_w = dense_x.shape[1:]
    rows = (first_y[:, None] + torch.arange(size_h, device=flat.device)).clamp(max=height - 1)  # (R, S_h)
    cols = (first_x[:, None] + torch.arange(size_w, device=flat.device)).clamp(max=width - 1)  # (R, S_w)
    pixel = batch[:, None, None] * (height * width) + rows[:, :, None] * width + cols[:, None, :]
    window = flat.index_select(0, pixel.reshape(-1)).reshape(num, size_h, size_w * channels)
    pooled_y = torch.bmm(dense_y.to(flat.dtype), window)  # (R, P_h, S_w * C)
    pooled_y = pooled_y.reshape(num, out_h, size_w, channels).transpose(1, 2).reshape(num, size_w, -1)
    pooled = torch.bmm(dense_x.to(flat.dtype), pooled_y)  # (R, P_w, P_h * C)
    return pooled.reshape(num, out_w, out_h, channels).transpose(1, 2)  # (R, P_h, P_w, C)


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
