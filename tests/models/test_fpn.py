"""FPN P3-P7: top-down sum, P6 from the P5 *output*, P7 from relu(P6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamvis.models.fpn import FPN


def test_fpn_levels_follow_the_official_wiring():
    torch.manual_seed(0)
    fpn = FPN(in_channels=(8, 16, 32), out_channels=16)
    for module in fpn.modules():  # nonzero biases so that a missing term would show
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.bias)
    c3, c4, c5 = torch.randn(2, 8, 16, 24), torch.randn(2, 16, 8, 12), torch.randn(2, 32, 4, 6)
    with torch.no_grad():
        p3, p4, p5, p6, p7 = fpn([c3, c4, c5])
        inner5 = fpn.lateral5(c5)
        inner4 = fpn.lateral4(c4) + F.interpolate(inner5, scale_factor=2, mode="nearest")
        inner3 = fpn.lateral3(c3) + F.interpolate(inner4, scale_factor=2, mode="nearest")
        torch.testing.assert_close(p3, fpn.output3(inner3))
        torch.testing.assert_close(p4, fpn.output4(inner4))
        torch.testing.assert_close(p5, fpn.output5(inner5))
        torch.testing.assert_close(p6, fpn.p6(p5))  # official: P6 on the P5 output, not on C5
        torch.testing.assert_close(p7, fpn.p7(F.relu(p6)))
    assert [tuple(p.shape[-2:]) for p in (p3, p4, p5, p6, p7)] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(p.shape[1] == 16 for p in (p3, p4, p5, p6, p7))
    assert p6.min() < 0  # P6 itself is returned without ReLU
    assert fpn.strides == (8, 16, 32, 64, 128)
