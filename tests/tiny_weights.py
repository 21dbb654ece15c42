"""A tiny CrossVIS weights file for command tests: fast (R-18, 32-channel FPN, 64x96 test size) and
with detections on any frame (its untrained class 0 fires everywhere)."""

from __future__ import annotations

from pathlib import Path

import torch


def write_tiny_crossvis(path) -> Path:
    """Save the tiny CrossVIS (3 classes: cat, dog, fox) as a streamvis weights file at `path`."""
    from streamvis.models.build import build_model
    from streamvis.models.crossvis.config import CrossVISConfig
    from streamvis.models.weights import save_weights

    config = CrossVISConfig(depth=18, num_classes=3, class_names=("cat", "dog", "fox"), fpn_channels=32,
                            head_channels=64, head_num_convs=1, mask_branch_channels=16,
                            mask_branch_num_convs=1, reid_dim=16, num_identities=10,
                            detections_per_frame=3, test_short_side=64, test_max_size=96)
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        model.head.cls_logits.bias[0] = 4.0  # untrained: class 0 fires everywhere
        model.head.bbox_pred.bias.fill_(2.0)  # boxes of ~2 strides per side
        model.head.controller.bias[-1] = 8.0  # last dynamic-conv bias (official order w0 w1 w2 b0 b1 b2)
    return save_weights(path, model.state_dict(), config)
