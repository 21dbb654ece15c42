"""CrossVIS (models/crossvis/model.py): details of predict/loss, gradient scaling, fast inference."""

from __future__ import annotations

import pytest
import torch
from tests.models.test_build import SMALL, SMOKE_CONFIGS, _frame, _pair_batch

from streamvis.models.build import build_model, preset


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model(SMOKE_CONFIGS["crossvis"])


def test_crossvis_smoke_details(small_model):
    model = small_model.train()
    image, _ = _frame(9)
    (res,) = model.predict([image], [(128, 192)])
    assert res.embeddings.shape[1] == 64 and res.controller_params.shape[1] == 169
    losses = model.loss(_pair_batch())
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_cross_over",
                           "loss_reid"}
    model.zero_grad()
    sum(losses.values()).backward()
    assert model.head.cls_logits.weight.grad.abs().sum() > 0
    assert model.backbone.res3[0].conv1.weight.grad.abs().sum() > 0
    assert model.backbone.stem.conv1.weight.grad is None  # frozen (freeze_at 2)


def test_backbone_gets_a_tenth_of_the_gradient(small_model):
    model = small_model
    images = torch.randn(2, 3, 64, 64)
    grads = {}
    for mode in (True, False):  # cls logits pass only GroupNorm layers: train == eval except the 0.1x
        model.train(mode)
        model.zero_grad()
        model.forward_features(images).cls_logits[0].sum().backward()
        grads[mode] = (model.fpn.output3.bias.grad.clone(), model.head.cls_logits.bias.grad.clone())
    model.train()
    torch.testing.assert_close(grads[True][0], 0.1 * grads[False][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[True][1], grads[False][1], rtol=1e-4, atol=1e-6)
    model.backbone_gradient_scale = 1.0  # the from-scratch setting: the full gradient
    model.zero_grad()
    model.forward_features(images).cls_logits[0].sum().backward()
    torch.testing.assert_close(model.fpn.output3.bias.grad, grads[False][0], rtol=1e-4, atol=1e-6)
    model.backbone_gradient_scale = 0.1


def test_reid_batchnorm_uses_per_level_statistics_in_training(small_model):
    model = small_model
    model.train()
    with torch.no_grad():
        outputs = model.forward_features(torch.randn(2, 3, 96, 96))
    bias = model.head.reid_pred_bn.bias
    for level in range(4):  # P7 is 1x1 here; each level's mean over (N, H, W) equals beta
        torch.testing.assert_close(outputs.reid_feats[level].mean(dim=(0, 2, 3)), bias, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def detecting_model():
    """An untrained small model that keeps every candidate (no threshold, no suppression, boxes > 0)."""
    torch.manual_seed(1)
    cfg = preset(SMALL).replace(num_classes=4, num_identities=10, score_threshold=0.0, nms_threshold=1.0,
                                detections_per_frame=30)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.head.bbox_pred.bias.fill_(1.0)  # non-empty boxes
    return model


def _assert_fast_path_matches(model, options):
    from streamvis.models.crossvis.model import optimize_for_inference

    fast = optimize_for_inference(model, **options)
    generator = torch.Generator().manual_seed(5)
    image = torch.randint(0, 256, (3, 72, 100), generator=generator, dtype=torch.uint8)
    ref, got = model.predict([image])[0], fast.predict([image])[0]
    assert len(ref) >= 20 and fast.sparse_inference and fast.criterion is None
    assert got.classes.tolist() == ref.classes.tolist() and got.fpn_levels.tolist() == ref.fpn_levels.tolist()
    for field in ("boxes", "scores", "embeddings", "controller_params", "global_mask_probs"):
        torch.testing.assert_close(got.get(field), ref.get(field), rtol=1e-4, atol=1e-4, msg=field)
    return fast


@pytest.mark.parametrize("options", [{}, {"fuse_towers": False}, {"winograd": True}, {"channels_last": True}])
def test_fast_inference_options_match_the_faithful_path(detecting_model, options):
    _assert_fast_path_matches(detecting_model, options)


@pytest.mark.parametrize("options", [{}, {"channels_last": True}])
def test_fast_inference_keeps_a_groupnorm_backbone(options):
    torch.manual_seed(1)
    cfg = preset(SMALL).replace(num_classes=4, num_identities=10, score_threshold=0.0, nms_threshold=1.0,
                                detections_per_frame=30, backbone_norm="GN")
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.head.bbox_pred.bias.fill_(1.0)  # non-empty boxes
    fast = _assert_fast_path_matches(model, options)
    assert isinstance(fast.backbone.res3[0].conv1.norm, torch.nn.GroupNorm)  # GN is never folded


def test_groupnorm_backbone_trains_from_scratch():
    torch.manual_seed(0)
    cfg = preset(SMALL).replace(num_classes=4, num_identities=10, backbone_norm="GN", freeze_at=0)
    model = build_model(cfg).train()
    backbone = model.backbone
    assert isinstance(backbone.res2[0].conv1.norm, torch.nn.GroupNorm)
    before = backbone.res2[0].conv1.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    total = sum(model.loss(_pair_batch()).values())
    assert torch.isfinite(total)
    total.backward()
    res2, res5 = backbone.res2[0].conv1, backbone.res5[1].conv2
    for param in (backbone.stem.conv1.weight, res2.weight, res2.norm.weight, res5.norm.bias):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(backbone.res2[0].conv1.weight, before)
