"""The official CrossVIS R-50 forward, reproduced: golden_r50.npz from the deterministic weights.

reference/crossvis/golden_r50.md lists the stored tensors and the suggested tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.build import build_model
from streamvis.models.crossvis.convert import convert_official
from streamvis.models.crossvis.fcos import detect
from streamvis.models.crossvis.model import optimize_for_inference
from streamvis.models.crossvis.rule_weights import (
    checksum_mismatches,
    official_rule_state_dict,
    read_key_table,
)
from streamvis.ops.image import normalize_and_pad
from streamvis.ops.misc import aligned_bilinear

LEVELS = ("p3", "p4", "p5", "p6", "p7")
REFERENCE = "reference/crossvis"


@pytest.fixture(scope="module")
def golden():
    """Golden arrays, the official-format weights and our converted model (eval)."""
    npz = np.load(require_shared(f"{REFERENCE}/golden_r50.npz"))
    official = official_rule_state_dict(read_key_table(require_shared(f"{REFERENCE}/state_dict_keys.tsv")))
    state, cfg = convert_official({"model": official})
    torch.manual_seed(0)
    model = build_model(cfg)
    model.load_state_dict(state)
    images = [torch.from_numpy(npz[f"image_{i}"]).permute(2, 0, 1).contiguous() for i in (0, 1)]
    return {"npz": npz, "official": official, "model": model.eval(), "images": images}


@pytest.fixture(scope="module")
def faithful(golden):
    """One eval forward of both golden images (same size: batching does not change the numbers)."""
    model = golden["model"]
    batch, sizes = normalize_and_pad(golden["images"], model.pixel_mean, model.pixel_std)
    captured = []
    hook = model.fpn.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.no_grad():
            outputs = model.forward_features(batch, image_sizes=sizes)
    finally:
        hook.remove()
    golden["fpn"] = captured[0]
    return outputs, model.postprocess(outputs, [(360, 640), (360, 640)])


def _close(ours, theirs, rtol, atol, what):
    theirs = torch.as_tensor(np.asarray(theirs)).float()
    torch.testing.assert_close(ours.float(), theirs, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def test_weights_follow_the_rule(golden):
    checksums = require_shared(f"{REFERENCE}/weights_checksums_r50.tsv")
    assert len(golden["official"]) == 397
    assert checksum_mismatches(golden["official"], checksums) == []


def test_raw_head_outputs(golden, faithful):
    outputs, _ = faithful
    npz = golden["npz"]
    assert tuple(npz["padded_input_shape_0"]) == (1, 3, 384, 640)
    for level, name in enumerate(LEVELS):  # float16 FPN outputs of image 0
        _close(golden["fpn"][level][:1], npz[f"fpn_{name}_0"], 1e-3, 1e-3, f"fpn {name}")
    for i in (0, 1):
        for level, name in enumerate(LEVELS):
            for field in ("cls_logits", "bbox_reg", "ctrness"):  # float32 in the npz
                _close(getattr(outputs, field)[level][i : i + 1], npz[f"{field}_{name}_{i}"], 1e-4, 1e-4,
                       f"{field} {name} image {i}")
            # float16 in the npz: its rounding dominates (the npz calls controller_params top_feats)
            for field, stored in (("controller_params", "top_feats"), ("reid_feats", "reid_feats")):
                _close(getattr(outputs, field)[level][i : i + 1], npz[f"{stored}_{name}_{i}"], 1e-3, 1e-3,
                       f"{field} {name} image {i}")
        _close(outputs.mask_feats[i : i + 1], npz[f"mask_feats_{i}"], 1e-4, 1e-4, f"mask_feats {i}")


def test_detections_before_postprocess(golden, faithful):
    outputs, results = faithful
    npz = golden["npz"]
    for i, count in ((0, 13), (1, 27)):
        det = detect(outputs, i, score_threshold=0.05, pre_nms_topk=1000, nms_threshold=0.6,
                     detections_per_frame=100)
        assert len(det.scores) == count == len(npz[f"pre_scores_{i}"])
        assert det.classes.tolist() == npz[f"pre_classes_{i}"].tolist()
        assert det.fpn_levels.tolist() == npz[f"pre_fpn_levels_{i}"].tolist()
        _close(det.locations, npz[f"pre_locations_{i}"], 0, 0, "pre_locations")
        _close(det.boxes, npz[f"pre_boxes_{i}"], 0, 5e-4, "pre_boxes")
        _close(det.scores, npz[f"pre_scores_{i}"], 0, 1e-5, "pre_scores")
        _close(results[i].controller_params, npz[f"pre_top_feat_{i}"], 1e-4, 1e-4, "pre_top_feat")
        _close(results[i].global_mask_probs, npz[f"pre_mask_probs_{i}"], 0, 2e-4, "pre_mask_probs")


def _assert_masks_match(ours: torch.Tensor, npz, i: int) -> None:
    """Masks may differ only where the official probability is within 1e-3 of 0.5."""
    theirs = torch.from_numpy(npz[f"masks_{i}"].astype(bool))
    probs = aligned_bilinear(torch.from_numpy(npz[f"pre_mask_probs_{i}"])[:, None], 4)[:, 0, :360, :640]
    uncertain = (probs - 0.5).abs() <= 1e-3
    assert ours.shape == theirs.shape
    assert not ((ours != theirs) & ~uncertain).any()


def test_final_instances(golden, faithful):
    _, results = faithful
    npz = golden["npz"]
    for i in (0, 1):
        res = results[i]
        assert res.image_size == (360, 640)
        assert res.classes.dtype == torch.int64 and res.classes.tolist() == npz[f"classes_{i}"].tolist()
        assert res.fpn_levels.tolist() == npz[f"fpn_levels_{i}"].tolist()
        assert res.boxes.dtype == torch.float32 and res.masks.dtype == torch.bool
        _close(res.boxes, npz[f"boxes_{i}"], 0, 5e-4, "boxes")
        _close(res.scores, npz[f"scores_{i}"], 0, 1e-5, "scores")
        _close(res.locations, npz[f"locations_{i}"], 0, 0, "locations")
        _close(res.embeddings, npz[f"reid_feat_{i}"], 1e-4, 1e-4, "reid_feat")
        _assert_masks_match(res.masks, npz, i)


def test_fast_inference_gives_the_same_instances(golden, faithful):
    _, results = faithful
    fast = optimize_for_inference(golden["model"])
    assert golden["model"].sparse_inference is False  # the original is untouched
    fast_results = fast.predict(golden["images"], [(360, 640), (360, 640)])
    for i in (0, 1):
        ref, got = results[i], fast_results[i]
        assert got.classes.tolist() == ref.classes.tolist()
        assert got.fpn_levels.tolist() == ref.fpn_levels.tolist()
        _close(got.boxes, ref.boxes, 0, 5e-4, "fast boxes")
        _close(got.scores, ref.scores, 0, 1e-5, "fast scores")
        _close(got.embeddings, ref.embeddings, 1e-4, 1e-4, "fast embeddings")
        _close(got.controller_params, ref.controller_params, 1e-4, 1e-4, "fast controller params")
        _assert_masks_match(got.masks, golden["npz"], i)
