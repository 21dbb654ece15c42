"""MaskTrack R-CNN model pieces by hand: input normalisation, scale factor, GT box convention, names."""

from __future__ import annotations

import pytest
import torch

from streamvis.models.build import build_model, model_config_from_dict
from streamvis.structures import FrameBatch, Instances

TINY = {"method": "masktrack", "num_classes": 3, "class_names": None,
        "backbone": {"depth": 18, "fpn_channels": 16}, "roi": {"fc_out_channels": 32, "mask_channels": 16},
        "track": {"fc_out_channels": 8}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(model_config_from_dict(TINY))


def test_official_module_names_and_legacy_layout(model):
    keys = model.state_dict()
    assert keys["roi_head.bbox_head.fc_cls.weight"].shape == (4, 32)  # background first + 3 classes
    assert keys["roi_head.bbox_head.fc_reg.weight"].shape == (16, 32)  # 4 x (3 + 1), official layout
    assert keys["roi_head.mask_head.conv_logits.weight"].shape[0] == 4
    assert keys["track_head.fcs.0.weight"].shape == (8, 16 * 49)
    assert model.rpn_head.anchor_generator.base_anchors(4)[0].tolist() == [-21.0, -9.0, 24.0, 12.0]
    assert model.roi_head.bbox_roi_extractor.sampling_ratio == 2 and model.roi_head.legacy_paste


def test_preprocess_converts_bgr_to_normalised_rgb(model):
    image = torch.zeros((3, 2, 3), dtype=torch.uint8)
    image[0], image[2] = 10, 200  # B = 10, R = 200
    batch, sizes = model.preprocess([image])
    assert sizes == [(2, 3)] and batch.shape == (1, 3, 32, 32)
    mean, std = model.config.input.pixel_mean, model.config.input.pixel_std  # RGB (official to_rgb)
    assert batch[0, 0, 0, 0].item() == pytest.approx((200 - mean[0]) / std[0])
    assert batch[0, 2, 0, 0].item() == pytest.approx((10 - mean[2]) / std[2])
    assert batch[0, :, 5, 5].abs().sum() == 0  # padding is 0 after normalisation


def test_scale_factor_is_the_official_scalar_when_it_fits(model):
    cfg = model.config.replace(test_short_side=360, test_max_size=640)
    official = type(model)(cfg, backbone=model.backbone, neck=model.neck, rpn_head=model.rpn_head,
                           roi_head=model.roi_head, track_head=model.track_head)
    assert official.scale_factor((360, 640), (720, 1280)).tolist() == [0.5] * 4
    sf = 360 / 500  # 500x700: sf = min(640/700, 360/500) = 0.72 -> 360x504
    assert official.scale_factor((360, 504), (500, 700)).tolist() == pytest.approx([sf] * 4)
    assert official.scale_factor((100, 200), (300, 300)).tolist() == pytest.approx([2 / 3, 1 / 3] * 2)


def test_training_boxes_use_the_plus_one_convention(model):
    inst = Instances((20, 20), gt_boxes=torch.tensor([[2.0, 3.0, 12.0, 8.0], [5.0, 5.0, 5.5, 9.0]]))
    (boxes,) = model.training_boxes(FrameBatch([torch.zeros(3, 20, 20, dtype=torch.uint8)], [inst]))
    # official [x, y, x + w - 1, y + h - 1]; a sub-pixel box keeps x2 >= x1
    assert boxes.tolist() == [[2.0, 3.0, 11.0, 7.0], [5.0, 5.0, 5.0, 8.0]]
