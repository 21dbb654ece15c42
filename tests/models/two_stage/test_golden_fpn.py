"""mmdet-layout ResNet-50 (style='pytorch') + FPN P2-P6 against the official PCAN end-to-end golden."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.models.two_stage.pcan_golden import golden_input, sub_state

from streamvis.models.backbone import BottleneckBlock, MMDetResNet, ResNet
from streamvis.models.fpn import MMDetFPN


@pytest.fixture(scope="module")
def frame0_pyramid(golden_e2e, pcan_rule_state):
    backbone = MMDetResNet(depth=50).eval()
    neck = MMDetFPN(in_channels=[256, 512, 1024, 2048]).eval()
    backbone.load_state_dict(sub_state(pcan_rule_state, "backbone."), strict=True)
    neck.load_state_dict(sub_state(pcan_rule_state, "neck."), strict=True)
    images = golden_input(golden_e2e, 0)
    with torch.no_grad():
        return images, neck(backbone(images))


def test_input_matches_official_normalisation(golden_e2e, frame0_pyramid):
    images, _ = frame0_pyramid
    total, abs_total = golden_e2e["f0_input_stats"]
    assert abs(images.double().sum().item() - total) <= 1e-6 * abs_total
    assert abs(images.double().abs().sum().item() - abs_total) <= 1e-6 * abs_total


def test_fpn_levels_match_golden(golden_e2e, frame0_pyramid):
    _, pyramid = frame0_pyramid
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(104, 152), (52, 76), (26, 38), (13, 19), (7, 10)]
    for level, feature in zip(range(2, 7), pyramid):
        feature = feature[0]
        np.testing.assert_allclose(feature.mean(dim=(1, 2)).numpy(), golden_e2e[f"f0_fpn_p{level}_chmean"],
                                   rtol=0, atol=1e-5)
        np.testing.assert_allclose(feature.mean(dim=0).numpy(), golden_e2e[f"f0_fpn_p{level}_spmean"],
                                   rtol=0, atol=1e-5)
        total, abs_total, squares = golden_e2e[f"f0_fpn_p{level}_stats"]
        f64 = feature.double()
        assert abs(f64.sum().item() - total) <= 1e-6 * abs_total
        assert abs(f64.abs().sum().item() - abs_total) <= 1e-6 * abs_total
        assert abs((f64 ** 2).sum().item() - squares) <= 1e-5 * squares
    np.testing.assert_allclose(pyramid[3][0].numpy(), golden_e2e["f0_fpn_p5"], rtol=0, atol=5e-5)
    np.testing.assert_allclose(pyramid[4][0].numpy(), golden_e2e["f0_fpn_p6"], rtol=0, atol=5e-5)


def test_pytorch_style_is_the_msra_resnet_with_stride_in_3x3():
    """`ResNet(stride_in_1x1=False)` (detectron2 names) is the same function as mmdet style='pytorch'."""
    torch.manual_seed(0)
    mmdet = MMDetResNet(depth=50).eval()
    d2 = ResNet(depth=50, freeze_at=0, stride_in_1x1=False, norm="BN").eval()
    for module in mmdet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.9, 1.1)
            module.weight.data.uniform_(0.1, 0.3)
    mapping = {"stem.conv1.weight": "conv1.weight"}
    for name in ("weight", "bias", "running_mean", "running_var"):
        mapping[f"stem.conv1.norm.{name}"] = f"bn1.{name}"
    for stage in range(4):
        for block in range(len(getattr(mmdet, f"layer{stage + 1}"))):
            src, dst = f"layer{stage + 1}.{block}", f"res{stage + 2}.{block}"
            for conv in (1, 2, 3):
                mapping[f"{dst}.conv{conv}.weight"] = f"{src}.conv{conv}.weight"
                for name in ("weight", "bias", "running_mean", "running_var"):
                    mapping[f"{dst}.conv{conv}.norm.{name}"] = f"{src}.bn{conv}.{name}"
            if block == 0:
                mapping[f"{dst}.shortcut.weight"] = f"{src}.downsample.0.weight"
                for name in ("weight", "bias", "running_mean", "running_var"):
                    mapping[f"{dst}.shortcut.norm.{name}"] = f"{src}.downsample.1.{name}"
    source = mmdet.state_dict()
    d2.load_state_dict({k: source[v] for k, v in mapping.items()}, strict=False)
    assert isinstance(d2.res3[0], BottleneckBlock)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        c2, c3, c4, c5 = mmdet(images)
        ours = d2(images)
    for a, b in zip((c3, c4, c5), ours):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_frozen_stages_and_norm_eval():
    backbone = MMDetResNet(depth=18).train()
    assert not backbone.conv1.weight.requires_grad and not backbone.layer1[0].conv1.weight.requires_grad
    assert backbone.layer2[0].conv1.weight.requires_grad and backbone.layer2[0].bn1.weight.requires_grad
    assert all(not m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    neck = MMDetFPN(in_channels=backbone.out_channels, out_channels=8)
    outs = neck(backbone(torch.randn(1, 3, 64, 64)))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    torch.testing.assert_close(outs[4], outs[3][..., ::2, ::2])  # P6 = max_pool(P5, 1, stride 2)
