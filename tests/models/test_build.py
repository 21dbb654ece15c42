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
    "masktrack": model_config_from_dict({
        "method": "masktrack", "num_classes": 4, "class_names": None,
        "backbone": {"depth": 18, "frozen_stages": -1, "norm_eval": False, "fpn_channels": 16},
        "roi": {"fc_out_channels": 32, "mask_channels": 16, "rois_per_image": 16},
        "track": {"fc_out_channels": 8}}),
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
