"""The method table, presets and a smoke test of every method (predict + loss + backward)."""

from __future__ import annotations

import pytest
import torch

from streamvis.config import from_dict, to_dict
from streamvis.errors import ConfigError
from streamvis.models.build import (
    METHODS,
    all_presets,
    build_model,
    check_method_config,
    model_config_from_dict,
    preset,
)
from streamvis.models.crossvis.config import CrossVISConfig, LossConfig
from streamvis.structures import FrameBatch, Instances, PairBatch

SMALL = "crossvis_r18_small"


def _frame(seed: int, height: int = 64, width: int = 96) -> tuple[torch.Tensor, Instances]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    masks[0, 10:50, 20:70] = True
    masks[1, 30:60, 60:90] = True
    boxes = torch.tensor([[20, 10, 70, 50], [60, 30, 90, 60]], dtype=torch.float32)
    inst = Instances((height, width), gt_boxes=boxes, gt_classes=torch.tensor([1, 3]), gt_masks=masks,
                     gt_ids=torch.tensor([5, 7]))
    return image, inst


def _pair_batch() -> PairBatch:
    key = [_frame(0), _frame(1)]
    ref = [_frame(2), _frame(3)]
    return PairBatch(FrameBatch([f[0] for f in key], [f[1] for f in key]),
                     FrameBatch([f[0] for f in ref], [f[1] for f in ref]))


# a small config of every method in the table: a new method must add one (test below)
SMOKE_CONFIGS = {
    "crossvis": preset(SMALL).replace(num_classes=4, num_identities=10),
    "pcan": preset("pcan_r18_small").replace(num_classes=4, fpn_channels=32, fc_channels=64,
                                             embed_channels=32, mask_conv_channels=32,
                                             rpn_pre_nms_topk=100, rpn_max_proposals=100),
}


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model(SMOKE_CONFIGS["crossvis"])


def test_presets_and_errors():
    assert set(all_presets()) == {"crossvis_r50", "crossvis_r101", "crossvis_r18_small", "pcan_r50",
                                  "pcan_r18_small"}
    assert preset("crossvis_r101").depth == 101 and preset("crossvis_r50") == CrossVISConfig()
    assert isinstance(CrossVISConfig().loss, LossConfig)
    with pytest.raises(ConfigError, match="crossvis_r50"):
        preset("crossvis_r5O")
    with pytest.raises(ConfigError):
        CrossVISConfig(depth=152)
    with pytest.raises(ConfigError):
        CrossVISConfig(num_classes=2, class_names=("a",))
    with pytest.raises(ConfigError):
        CrossVISConfig(head_channels=48)
    with pytest.raises(ConfigError, match="backbone_norm.*'GN'.*'SyncBN'"):
        CrossVISConfig(backbone_norm="SyncBN")
    with pytest.raises(ConfigError, match="must be 'crossvis'"):
        CrossVISConfig(method="pcan")


def test_config_round_trips_through_a_dict():
    cfg = preset(SMALL).replace(class_names=("a", "b"), num_classes=2, backbone_norm="GN")
    assert to_dict(cfg)["method"] == "crossvis"
    assert from_dict(CrossVISConfig, to_dict(cfg)) == cfg
    assert model_config_from_dict(to_dict(cfg)) == cfg


def test_the_method_key_selects_the_config_class():
    assert model_config_from_dict({}) == CrossVISConfig()  # no method: crossvis
    old = {"architecture": "crossvis", "depth": 18}  # configs written before model.method
    assert model_config_from_dict(old) == CrossVISConfig(depth=18)
    with pytest.raises(ConfigError, match="unknown model.method 'maskrcnn'; choose one of: crossvis"):
        model_config_from_dict({"method": "maskrcnn"})
    with pytest.raises(ConfigError, match="disagree"):
        model_config_from_dict({"architecture": "crossvis", "method": "pcan"})
    with pytest.raises(ConfigError, match="did you mean 'model.depth'"):
        model_config_from_dict({"method": "crossvis", "depht": 18})


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_follows_the_contract(method):
    spec = METHODS[method]
    check_method_config(spec.config_class)
    assert spec.config_class().method == method
    assert method in SMOKE_CONFIGS, f"add a small config of {method!r} to SMOKE_CONFIGS"
    from streamvis.tracking import TRACKERS

    assert spec.default_tracker in TRACKERS


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_predicts_and_trains(method, small_model):
    model = small_model if method == "crossvis" else build_model(SMOKE_CONFIGS[method])
    assert model.config.method == method
    image, _ = _frame(9)
    model.train()
    results = model.predict([image, image[:, :40, :64]], [(128, 192), (40, 64)])
    assert model.training  # predict restores the mode
    assert [r.image_size for r in results] == [(128, 192), (40, 64)]
    for res in results:
        assert res.masks.shape[1:] == res.image_size and res.masks.dtype == torch.bool
        assert res.embeddings.ndim == 2 and len(res.embeddings) == len(res.scores) == len(res.boxes)
    losses = model.loss(_pair_batch())
    assert losses and all(key.startswith("loss_") for key in losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    model.zero_grad()
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


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
