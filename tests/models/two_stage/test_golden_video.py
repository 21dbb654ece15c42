"""The whole two-stage core over the 4 frames of the official PCAN end-to-end golden.

Each frame: backbone + FPN, PCAN's frame-level attention on P2/P3 (a test-side reference, see
pcan_golden.FramePCAMReference), then the core's RPN proposals, R-CNN detections and mask-head
logits, compared with golden.md's tolerances.
"""

from __future__ import annotations

import numpy as np
import torch
from tests.models.two_stage.pcan_golden import FramePCAMReference, golden_input

from streamvis.models.two_stage.detector import TwoStageConfig, build_two_stage_detector


def test_core_over_the_golden_video(golden_e2e, pcan_rule_state):
    detector = build_two_stage_detector(TwoStageConfig()).eval()
    detector.load_state_dict(pcan_rule_state, strict=False)
    attention = FramePCAMReference([pcan_rule_state["mu0"], pcan_rule_state["mu1"]])
    image_hw = tuple(int(v) for v in golden_e2e["img_shape"][:2])
    original_hw = tuple(int(v) for v in golden_e2e["ori_shape"][:2])
    scale = torch.from_numpy(golden_e2e["scale_factor"])
    for frame in range(int(golden_e2e["num_frames"])):
        with torch.no_grad():
            features = attention(detector.extract_features(golden_input(golden_e2e, frame)), frame)
            prediction = detector.predict_from_features(features, [image_hw], [scale], [original_hw])[0]
        for index, level in ((0, 2), (1, 3)):
            np.testing.assert_allclose(
                attention.mus[index].numpy(), golden_e2e[f"f{frame}_frame_mu_l{index}"], rtol=0, atol=1e-3
            )
            np.testing.assert_allclose(
                features[index][0].mean(dim=0).numpy(),
                golden_e2e[f"f{frame}_fused_p{level}_spmean"],
                rtol=0,
                atol=1e-5,
            )
        golden_proposals = golden_e2e[f"f{frame}_proposals"]
        np.testing.assert_allclose(
            prediction.proposals[:50].numpy(), golden_proposals[:50], rtol=0, atol=2e-3
        )
        found = prediction.detections
        np.testing.assert_array_equal(found.labels.numpy(), golden_e2e[f"f{frame}_det_labels"])
        golden_boxes = golden_e2e[f"f{frame}_det_bboxes"]
        np.testing.assert_allclose(found.boxes.numpy(), golden_boxes[:, :4], rtol=0, atol=5e-3)
        np.testing.assert_allclose(found.scores.numpy(), golden_boxes[:, 4], rtol=0, atol=1e-4)
        masks = prediction.masks
        np.testing.assert_allclose(
            masks.label_logits.numpy(), golden_e2e[f"f{frame}_mask_pred_label"], rtol=0, atol=5e-4
        )
        np.testing.assert_allclose(
            masks.mask_feats.mean(dim=(2, 3)).numpy(),
            golden_e2e[f"f{frame}_mask_feats_chmean"],
            rtol=0,
            atol=2e-4,
        )
        np.testing.assert_allclose(
            masks.mask_feats[0].numpy(), golden_e2e[f"f{frame}_mask_feats_d0"], rtol=0, atol=2e-4
        )
