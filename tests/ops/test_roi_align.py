"""RoIAlign (mmcv semantics, vectorized) against a naive loop port of the mmcv CPU kernel."""

from __future__ import annotations

import math

import pytest
import torch

from streamvis.ops.roi_align import MultiLevelRoIExtractor, map_roi_levels, roi_align


def _bilinear(feature, y, x):
    """mmcv / Caffe2 bilinear_interpolate for one sample of one (C, H, W) map."""
    _, height, width = feature.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0], dtype=feature.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * feature[:, y_low, x_low] + hy * lx * feature[:, y_low, x_high]
            + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])


def naive_roi_align(features, rois, out, scale, sampling_ratio=0, aligned=True, legacy=False):
    """Loop over RoIs, bins and samples exactly as the official kernels do."""
    result = torch.zeros(rois.shape[0], features.shape[1], out, out, dtype=features.dtype)
    for r, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        if legacy:
            sx, sy = x1 * scale, y1 * scale
            rw, rh = max((x2 + 1) * scale - sx, 0.0), max((y2 + 1) * scale - sy, 0.0)
        elif aligned:
            sx, sy = x1 * scale - 0.5, y1 * scale - 0.5
            rw, rh = x2 * scale - 0.5 - sx, y2 * scale - 0.5 - sy
        else:
            sx, sy = x1 * scale, y1 * scale
            rw, rh = max(x2 * scale - sx, 1.0), max(y2 * scale - sy, 1.0)
        bh, bw = rh / out, rw / out
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / out)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / out)
        count = max(gh * gw, 1)
        for ph in range(out):
            for pw in range(out):
                acc = torch.zeros(features.shape[1], dtype=features.dtype)
                for iy in range(gh):
                    y = sy + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sx + pw * bw + (ix + 0.5) * bw / gw
                        acc += _bilinear(features[int(b)], y, x)
                result[r, :, ph, pw] = acc / count
    return result


EDGE_ROIS = torch.tensor([
    [0, 3.2, 4.7, 20.1, 15.3],     # ordinary
    [1, 0.0, 0.0, 31.0, 23.0],     # the whole image (at the borders)
    [0, -6.0, -5.0, 4.0, 3.0],     # partly outside the top-left
    [1, 28.5, 20.5, 40.0, 30.0],   # partly outside the bottom-right
    [0, 10.0, 10.0, 10.0, 18.0],   # zero width (adaptive grid has no sample -> 0)
    [0, 12.3, 7.7, 12.9, 8.1],     # tiny
    [1, -200.0, -150.0, 250.0, 190.0],  # huge, mostly outside
    [0, 31.0, 23.0, 31.0, 23.0],   # a point at the last pixel
    [1, 50.0, 40.0, 60.0, 50.0],   # entirely outside
], dtype=torch.float64)


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("variant", [
    dict(sampling_ratio=0, aligned=True), dict(sampling_ratio=2, aligned=True),
    dict(sampling_ratio=0, aligned=False), dict(sampling_ratio=2, legacy=True),
    dict(sampling_ratio=0, legacy=True)])
def test_roi_align_matches_naive_kernel(scale, variant):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, int(24 * scale), int(32 * scale), generator=g, dtype=torch.float64)
    got = roi_align(features, EDGE_ROIS, 4, scale, **variant)
    want = naive_roi_align(features, EDGE_ROIS, 4, scale, **variant)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_roi_align_known_values():
    # a linear ramp f(y, x) = x: bilinear sampling reproduces x exactly inside the map
    features = torch.arange(16, dtype=torch.float32).repeat(1, 1, 8, 1)  # (1, 1, 8, 16)
    rois = torch.tensor([[0, 2.0, 1.0, 10.0, 5.0]])
    out = roi_align(features, rois, 2, 1.0, sampling_ratio=0, aligned=True)
    # aligned: x from 1.5 to 9.5, 2 bins of width 4 -> bin centres 3.5 and 7.5
    torch.testing.assert_close(out[0, 0], torch.tensor([[3.5, 7.5], [3.5, 7.5]]))
    zero_width = roi_align(features, torch.tensor([[0, 4.0, 1.0, 4.0, 5.0]]), 2, 1.0)
    assert torch.equal(zero_width, torch.zeros(1, 1, 2, 2))
    # legacy (mmdet 0.5): x from 2 to 11, bins [2, 6.5), [6.5, 11): sample means 4.25 and 8.75
    legacy = roi_align(features, rois, 2, 1.0, sampling_ratio=2, legacy=True)
    torch.testing.assert_close(legacy[0, 0], torch.tensor([[4.25, 8.75], [4.25, 8.75]]))


def test_roi_align_empty_and_chunked_large():
    features = torch.randn(1, 5, 10, 12)
    assert roi_align(features, torch.zeros(0, 5), 7, 0.25).shape == (0, 5, 7, 7)
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(300, 2, generator=g) * 40
    wh = torch.rand(300, 2, generator=g) * 30
    rois = torch.cat([torch.zeros(300, 1), xy, xy + wh], dim=1).double()
    features = torch.randn(1, 2, 12, 14, generator=g, dtype=torch.float64)
    import streamvis.ops.roi_align as module
    budget = module._GATHER_BUDGET
    module._GATHER_BUDGET = 5000  # force many chunks
    try:
        chunked = roi_align(features, rois, 3, 0.25)
    finally:
        module._GATHER_BUDGET = budget
    torch.testing.assert_close(chunked, roi_align(features, rois, 3, 0.25), rtol=0, atol=1e-12)
    naive = naive_roi_align(features, rois[:20], 3, 0.25)
    torch.testing.assert_close(chunked[:20], naive, rtol=0, atol=1e-12)


def test_roi_align_gradient_flows_to_features():
    features = torch.randn(1, 2, 6, 6, requires_grad=True)
    roi_align(features, torch.tensor([[0, 1.0, 1.0, 4.0, 4.0]]), 2, 1.0).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_map_roi_levels_official_rule():
    sizes = torch.tensor([1.0, 111.9, 112.0, 224.0, 448.0, 2000.0])
    rois = torch.stack([torch.zeros(6), torch.zeros(6), torch.zeros(6), sizes, sizes], dim=1)
    assert map_roi_levels(rois, 4).tolist() == [0, 0, 1, 2, 3, 3]
    # mmdet 0.5: +1 widths, 111 x 111 boxes become 112 x 112 -> level 1
    legacy = torch.tensor([[0, 0, 0, 111.0, 111.0]])
    assert map_roi_levels(legacy, 4).tolist() == [0]
    assert map_roi_levels(legacy, 4, pixel_offset=1.0).tolist() == [1]


def test_multi_level_extractor_uses_the_level_of_each_roi():
    g = torch.Generator().manual_seed(2)
    levels = [torch.randn(1, 3, 256 // s, 256 // s, generator=g) for s in (4, 8, 16, 32)]
    rois = torch.tensor([[0, 2.0, 2.0, 40.0, 40.0], [0, 0.0, 0.0, 200.0, 230.0], [0, 5.0, 5.0, 6.0, 7.0],
                         [0, 0.0, 0.0, 255.0, 255.0]])
    extractor = MultiLevelRoIExtractor(output_size=7)
    out = extractor(levels + [torch.randn(1, 3, 1, 1)], rois)
    want_levels = map_roi_levels(rois, 4).tolist()
    assert want_levels == [0, 1, 0, 2]
    for index, level in enumerate(want_levels):
        expected = roi_align(levels[level], rois[index : index + 1], 7, 1 / (4 * 2**level))
        torch.testing.assert_close(out[index : index + 1], expected)
    assert extractor(levels, torch.zeros(0, 5)).shape == (0, 3, 7, 7)
