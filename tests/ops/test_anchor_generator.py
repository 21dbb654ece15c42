"""Anchor generator: mmdet 2.x and mmdet 0.5 (rounded, centred) base anchors and the grid order."""

from __future__ import annotations

import torch

from streamvis.ops.anchors import AnchorGenerator, anchor_inside_flags

# masktrack facts.md section 7.2 (run with the official mmdet 0.5 code)
LEGACY_BASE = {
    4: [[-21, -9, 24, 12], [-14, -14, 17, 17], [-9, -21, 12, 24]],
    8: [[-41, -19, 48, 26], [-28, -28, 35, 35], [-19, -41, 26, 48]],
    16: [[-83, -37, 98, 52], [-56, -56, 71, 71], [-37, -83, 52, 98]],
    32: [[-165, -75, 196, 106], [-112, -112, 143, 143], [-75, -165, 106, 196]],
    64: [[-330, -149, 393, 212], [-224, -224, 287, 287], [-149, -330, 212, 393]],
}


def test_legacy_base_anchors_match_official():
    generator = AnchorGenerator(legacy=True)
    for stride, expected in LEGACY_BASE.items():
        assert generator.base_anchors(stride).tolist() == expected


def test_mmdet2_base_anchors():
    base = AnchorGenerator().base_anchors(4)
    assert base[1].tolist() == [-16.0, -16.0, 16.0, 16.0]
    w = 4 * 8 / (0.5 ** 0.5)  # ratio 0.5: h/w = 0.5
    torch.testing.assert_close(base[0], torch.tensor([-w / 2, -w / 4, w / 2, w / 4]))


def test_grid_order_location_major():
    generator = AnchorGenerator(strides=(4, 8), ratios=(0.5, 1.0, 2.0))
    anchors = generator.grid_anchors([(2, 3), (1, 2)])
    assert [a.shape for a in anchors] == [(18, 4), (6, 4)]
    base = generator.base_anchors(4)
    # index (y * W + x) * A + a: location (y=1, x=2), anchor 1
    torch.testing.assert_close(anchors[0][(1 * 3 + 2) * 3 + 1], base[1] + torch.tensor([8.0, 4.0, 8.0, 4.0]))
    assert generator.grid_anchors([(0, 0), (0, 0)])[0].shape == (0, 4)


def test_valid_and_inside_flags():
    generator = AnchorGenerator(strides=(4,), ratios=(1.0,))
    flags = generator.valid_flags([(3, 3)], pad_hw=(8, 12))
    assert flags[0].view(3, 3).tolist() == [[True, True, True], [True, True, True], [False, False, False]]
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [-1.0, 0.0, 5.0, 5.0], [0.0, 0.0, 20.0, 5.0]])
    valid = torch.ones(3, dtype=torch.bool)
    assert anchor_inside_flags(anchors, valid, (20, 20), allowed_border=0).tolist() == [True, False, False]
    assert anchor_inside_flags(anchors, valid, (20, 20), allowed_border=-1).tolist() == [True, True, True]
