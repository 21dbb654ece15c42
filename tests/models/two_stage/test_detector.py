"""TwoStageDetector: official parameter names, both convention presets end to end, a training step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.two_stage.detector import TwoStageConfig, build_two_stage_detector
from streamvis.models.two_stage.rpn import ProposalConfig


def test_state_dict_names_are_the_official_checkpoint_names():
    rows = require_shared("reference/pcan/pcan_state_dict_keys.tsv").read_text().splitlines()[1:]
    official = {line.split("\t")[0]: line.split("\t")[1] for line in rows}
    ours = {
        name: "x".join(str(s) for s in value.shape) or "scalar"
        for name, value in build_two_stage_detector(TwoStageConfig()).state_dict().items()
    }
    core = {
        name: shape
        for name, shape in official.items()
        if not name.startswith(("mu", "roi_head.track_head", "roi_head.refine_head"))
    }
    assert ours == core


def test_legacy_preset_layout():
    config = TwoStageConfig.mmdet_v05(num_classes=40, depth=18)
    detector = build_two_stage_detector(config)
    assert detector.roi_head.bbox_head.fc_cls.out_features == 41
    assert detector.roi_head.bbox_head.fc_reg.out_features == 4 * 41
    assert detector.roi_head.mask_head.conv_logits.out_channels == 41
    assert detector.rpn_head.anchor_generator.base_anchors(4)[1].tolist() == [-14, -14, 17, 17]
    assert (
        detector.roi_head.bbox_roi_extractor.legacy
        and detector.roi_head.bbox_roi_extractor.sampling_ratio == 2
    )


def _scene():
    images = torch.zeros(1, 3, 96, 128)
    images[0, :, 20:60, 30:90] = 2.0
    masks = torch.zeros(1, 96, 128, dtype=torch.bool)
    masks[0, 20:60, 30:90] = True
    return images, [torch.tensor([[30.0, 20.0, 90.0, 60.0]])], [torch.tensor([1])], [masks]


@pytest.mark.parametrize("legacy", [False, True])
def test_predict_and_train_step(legacy):
    torch.manual_seed(0)
    base = (
        TwoStageConfig.mmdet_v05(num_classes=3, depth=18)
        if legacy
        else TwoStageConfig(num_classes=3, depth=18)
    )
    config = dataclasses.replace(
        base,
        proposal=dataclasses.replace(
            base.proposal, pre_nms_topk=50, max_proposals=50, post_nms_topk_per_level=50
        ),
        box_test=dataclasses.replace(base.box_test, score_threshold=0.0),
    )
    detector = build_two_stage_detector(config)
    images, boxes, labels, masks = _scene()
    detector.eval()
    prediction = detector.predict(images, [(96, 128)], [torch.tensor([2.0, 2.0, 2.0, 2.0])], [(48, 64)])[0]
    assert prediction.proposals.shape[1] == 5 and prediction.proposals.shape[0] <= 50
    found = prediction.detections
    assert found.boxes.shape[1] == 4 and len(found) <= config.box_test.max_per_image
    assert torch.all(found.boxes[:, 2] <= 64) and torch.all(found.boxes[:, 3] <= 48)  # original pixels
    assert prediction.masks.masks.shape == (len(found), 48, 64)
    assert prediction.masks.mask_feats.shape == (len(found), 256, 14, 14)
    detector.train()
    optimizer = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    totals = []
    for _ in range(4):
        losses = detector.loss(
            images, [(96, 128)], boxes, labels, masks, generator=torch.Generator().manual_seed(0)
        )
        assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < totals[0]
    assert detector.roi_head.mask_head.conv_logits.weight.grad.abs().sum() > 0


def test_no_detection_frame():
    config = TwoStageConfig(
        num_classes=2, depth=18, proposal=ProposalConfig(pre_nms_topk=20, max_proposals=20)
    )
    detector = build_two_stage_detector(config).eval()
    with torch.no_grad():
        torch.nn.init.constant_(detector.roi_head.bbox_head.fc_cls.bias, 0.0)
        detector.roi_head.bbox_head.fc_cls.bias[-1] = 50.0  # background wins everywhere
    prediction = detector.predict(torch.zeros(1, 3, 64, 64), [(64, 64)])[0]
    assert len(prediction.detections) == 0
    assert prediction.masks.masks.shape == (0, 64, 64) and prediction.masks.mask_feats.shape == (
        0,
        256,
        14,
        14,
    )


def test_no_proposal_image():
    detector = build_two_stage_detector(TwoStageConfig(num_classes=2, depth=18)).eval()
    features = [torch.zeros(1, 256, 64 // s, 64 // s) for s in (4, 8, 16, 32, 64)]
    with torch.no_grad():
        found = detector.roi_head.predict_boxes(features, [torch.zeros(0, 5)], [(64, 64)])[0]
        masks = detector.roi_head.predict_masks(features, [found], [(64, 64)])[0]
    assert found.boxes.shape == (0, 4) and found.labels.shape == (0,)
    assert masks.masks.shape == (0, 64, 64)
