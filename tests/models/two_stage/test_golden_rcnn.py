"""R-CNN box and mask branches of the two-stage core against the official PCAN goldens.

golden_e2e.npz (frame 0): the R-CNN is fed the golden's own proposals on the (attention-fused)
pyramid, so its class logits, detections and mask logits are compared independently of the RPN;
test_golden_video.py runs the whole core (own proposals) over all frames. golden_refine.npz: the FCN mask
head on given RoI features and mmdet's mask paste.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared
from tests.models.two_stage.pcan_golden import frame_pcam_first_frame, golden_input

from streamvis.models.pcan.rule_weights import fill_head_with_rule
from streamvis.models.two_stage.detector import TwoStageConfig, build_two_stage_detector
from streamvis.models.two_stage.mask_ops import paste_masks
from streamvis.models.two_stage.roi_heads import FCNMaskHead
from streamvis.ops.boxes import boxes_to_rois

pytestmark = pytest.mark.slow  # the full ResNet-50 / official-size goldens


@pytest.fixture(scope="module")
def frame0(golden_e2e, pcan_rule_state):
    detector = build_two_stage_detector(TwoStageConfig()).eval()
    missing, unexpected = detector.load_state_dict(pcan_rule_state, strict=False)
    assert missing == []
    assert {
        key.split(".")[0] if key.startswith("mu") else ".".join(key.split(".")[:2]) for key in unexpected
    } == {"mu0", "mu1", "mu2", "mu3", "mu4", "roi_head.track_head", "roi_head.refine_head"}
    with torch.no_grad():
        features = detector.extract_features(golden_input(golden_e2e, 0))
        for index in (0, 1):
            features[index] = frame_pcam_first_frame(features[index], pcan_rule_state[f"mu{index}"])
    return detector, features


def _meta(golden):
    image_hw = tuple(int(v) for v in golden["img_shape"][:2])
    original_hw = tuple(int(v) for v in golden["ori_shape"][:2])
    return image_hw, original_hw, torch.from_numpy(golden["scale_factor"])


def test_rcnn_logits_on_golden_proposals(golden_e2e, frame0):
    detector, features = frame0
    proposals = torch.from_numpy(golden_e2e["f0_proposals"])
    with torch.no_grad():
        _, output = detector.roi_head.box_forward(features, boxes_to_rois([proposals]))
    np.testing.assert_allclose(output.cls_logits.numpy(), golden_e2e["f0_rcnn_cls_score"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(
        output.box_deltas[:50].numpy(), golden_e2e["f0_rcnn_bbox_pred_top50"], rtol=0, atol=1e-3
    )


def _check_detections(golden, detections):
    assert len(detections) == len(golden["f0_det_labels"]) == 21
    np.testing.assert_array_equal(detections.labels.numpy(), golden["f0_det_labels"])
    np.testing.assert_allclose(detections.boxes.numpy(), golden["f0_det_bboxes"][:, :4], rtol=0, atol=5e-3)
    np.testing.assert_allclose(detections.scores.numpy(), golden["f0_det_bboxes"][:, 4], rtol=0, atol=1e-4)


def test_detections_and_masks_on_golden_proposals(golden_e2e, frame0):
    detector, features = frame0
    image_hw, original_hw, scale = _meta(golden_e2e)
    proposals = torch.from_numpy(golden_e2e["f0_proposals"])
    with torch.no_grad():
        detections = detector.roi_head.predict_boxes(features, [proposals], [image_hw], [scale])[0]
        masks = detector.roi_head.predict_masks(features, [detections], [original_hw], [scale])[0]
    _check_detections(golden_e2e, detections)
    np.testing.assert_allclose(
        masks.label_logits.numpy(), golden_e2e["f0_mask_pred_label"], rtol=0, atol=5e-4
    )
    np.testing.assert_allclose(
        masks.mask_logits[:2].numpy(), golden_e2e["f0_mask_pred_full_first"], rtol=0, atol=5e-4
    )
    np.testing.assert_allclose(
        masks.mask_feats.mean(dim=(2, 3)).numpy(), golden_e2e["f0_mask_feats_chmean"], rtol=0, atol=2e-4
    )
    np.testing.assert_allclose(masks.mask_feats[0].numpy(), golden_e2e["f0_mask_feats_d0"], rtol=0, atol=2e-4)
    assert masks.masks.shape == (21, 256, 384) and masks.masks.dtype == torch.bool


@pytest.fixture(scope="module")
def golden_refine():
    with np.load(require_shared("reference/pcan/golden_refine.npz")) as data:
        return {key: data[key] for key in data.files}


def test_mask_head_module_golden(golden_refine):
    head = FCNMaskHead(num_classes=8).eval()
    fill_head_with_rule(head, "mask_head.")
    with torch.no_grad():
        logits = head(torch.from_numpy(golden_refine["f0_key_feats"].astype(np.float32)))
    np.testing.assert_allclose(logits.numpy(), golden_refine["maskhead_pred_f0"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("frame", [0, 1])
def test_mask_paste_matches_official(golden_refine, frame):
    probs = torch.from_numpy(golden_refine[f"f{frame}_refine_pred"]).sigmoid()
    boxes = torch.from_numpy(golden_refine[f"boxes_f{frame}"][:, :4])
    pasted = paste_masks(probs, boxes, (72, 128), threshold=-1)
    golden_prob = golden_refine[f"f{frame}_paste_prob"]
    # the golden probabilities were pasted over the whole image (skip_empty=False); ours, as the
    # official CPU path, only inside [floor(x1) - 1, ceil(x2) + 1): compare there
    region = np.zeros_like(golden_prob, dtype=bool)
    for index, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        region[
            index,
            max(int(np.floor(y1)) - 1, 0) : int(np.ceil(y2)) + 1,
            max(int(np.floor(x1)) - 1, 0) : int(np.ceil(x2)) + 1,
        ] = True
    np.testing.assert_allclose(pasted.numpy()[region], golden_prob[region], rtol=0, atol=5e-5)
    assert np.all(golden_prob[~region] < 0.5)
    binary = paste_masks(probs, boxes, (72, 128)).numpy()
    decided = np.abs(golden_prob - 0.5) > 1e-3
    np.testing.assert_array_equal(binary[decided], golden_refine[f"f{frame}_segms"].astype(bool)[decided])
