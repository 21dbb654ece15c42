"""The assembled PCAN model against golden_e2e.npz: the whole official model, frame by frame, over a
4-frame video (golden.md, "golden_e2e.npz"), with golden.md's tolerances and near-tie rules.

The official checkpoint (the whole-model weight rule) goes through `convert_official`, the frames
through `PCAN.predict` (BGR uint8, already resized, output at the original size); every frame's
intermediates are recorded from `PCAN.forward_frame`. The worst error of each quantity is printed
(``pytest -s``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.pcan.convert import convert_official
from streamvis.models.pcan.model import PCAN
from streamvis.models.pcan.rule_weights import official_rule_state_dict, read_key_table

pytestmark = pytest.mark.slow

# official (PCAN config img_norm_cfg): RGB mean / std
PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
PIXEL_STD = np.array([58.395, 57.12, 57.375])
WORST: dict[str, float] = {}


def _close(name: str, got, want, atol: float) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(np.abs(got - want).max()) if got.size else 0.0
    WORST[name] = max(WORST.get(name, 0.0), err)
    assert err <= atol, f"{name}: max abs error {err} > {atol}"


def _stats(name: str, tensor: torch.Tensor, golden_stats) -> None:
    """golden.md: |sum - golden sum| <= 1e-6 x abs-sum."""
    total = tensor.double().sum().item()
    err = abs(total - golden_stats[0]) / golden_stats[1]
    WORST[name] = max(WORST.get(name, 0.0), err)
    assert err <= 1e-6, f"{name}: relative sum error {err}"


def _mask_iou_ok(name: str, got: np.ndarray, want: np.ndarray) -> None:
    """golden.md: IoU >= 0.9 per mask; an empty golden mask allows <= 5 pixels."""
    assert got.shape == want.shape, (name, got.shape, want.shape)
    for i in range(len(want)):
        if not want[i].any():
            assert got[i].sum() <= 5, (name, i)
            continue
        iou = (got[i] & want[i]).sum() / (got[i] | want[i]).sum()
        WORST[name + " 1-IoU"] = max(WORST.get(name + " 1-IoU", 0.0), 1 - float(iou))
        assert iou >= 0.9, (name, i, iou)


def _unpack(packed: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1)[..., :width].astype(bool)


@pytest.fixture(scope="module")
def run():
    """The model over the 4 frames; returns (golden, model, per-frame (Instances, PCANFrameOutput, input))."""
    golden = dict(np.load(require_shared("reference/pcan/golden_e2e.npz")))
    keys = require_shared("reference/pcan/pcan_state_dict_keys.tsv")
    official = official_rule_state_dict(read_key_table(keys))
    state, config = convert_official({"state_dict": official, "meta": {}}, "rule.pth")
    model = PCAN(config).eval()
    model.load_state_dict(state, strict=True)
    records = []
    forward_frame = model.forward_frame

    def recording(*args, **kwargs):
        out = forward_frame(*args, **kwargs)
        records.append((args[0], out))
        return out

    model.forward_frame = recording
    original_hw = tuple(int(v) for v in golden["ori_shape"][:2])
    model.start_video()
    frames = []
    for t in range(int(golden["num_frames"])):
        bgr = torch.from_numpy(np.ascontiguousarray(golden["resized_rgb"][t][..., ::-1].transpose(2, 0, 1)))
        (instances,) = model.predict([bgr], output_sizes=[original_hw])
        network_input, out = records[-1]
        frames.append((instances, out, network_input))
    return golden, model, frames


def test_input_and_pyramid(run):
    golden, _, frames = run
    for t, (_, out, network_input) in enumerate(frames):
        image = golden["resized_rgb"][t].astype(np.float32)
        want = ((image - PIXEL_MEAN) * (1.0 / PIXEL_STD)).astype(np.float32)
        got = network_input[0, :, : want.shape[0], : want.shape[1]].permute(1, 2, 0).numpy()
        _close("input", got, want, 1e-6)
        assert tuple(network_input.shape[-2:]) == tuple(int(v) for v in golden["pad_shape"][:2])
        _stats("input_stats", network_input, golden[f"f{t}_input_stats"])
        for level, feature in zip(range(2, 7), out.pyramid):
            p = f"f{t}_fpn_p{level}_"
            _close("fpn chmean", feature[0].mean(dim=(1, 2)).numpy(), golden[p + "chmean"], 1e-5)
            _close("fpn spmean", feature[0].mean(dim=0).numpy(), golden[p + "spmean"], 1e-5)
            _stats("fpn stats", feature, golden[p + "stats"])
        if t == 0:
            _close("f0_fpn_p5", out.pyramid[3][0].numpy(), golden["f0_fpn_p5"], 5e-5)
            _close("f0_fpn_p6", out.pyramid[4][0].numpy(), golden["f0_fpn_p6"], 5e-5)


def test_fused_levels_and_frame_prototypes(run):
    golden, model, frames = run
    for t, (_, out, _) in enumerate(frames):
        for index, level in ((0, 2), (1, 3)):
            p = f"f{t}_fused_p{level}_"
            fused = out.features[index]
            _close("fused chmean", fused[0].mean(dim=(1, 2)).numpy(), golden[p + "chmean"], 1e-5)
            _close("fused spmean", fused[0].mean(dim=0).numpy(), golden[p + "spmean"], 1e-5)
            _stats("fused stats", fused, golden[p + "stats"])
        for level in (2, 3, 4):  # P4..P6 pass through unchanged
            assert out.features[level] is out.pyramid[level]
    # the running prototypes after the last frame
    for index in (0, 1):
        prototypes = model.frame_attention._prototypes[index].numpy()
        _close("frame_mu", prototypes, golden[f"f3_frame_mu_l{index}"], 1e-3)


def test_proposals_and_rcnn_scores(run):
    """Top 50 proposals row by row; the rest as a set (the per-level top-1000 cut has near-ties)."""
    golden, model, frames = run
    for t, (_, out, _) in enumerate(frames):
        want = golden[f"f{t}_proposals"]
        got = out.proposals.numpy()
        assert got.shape == want.shape
        _close("proposals top50", got[:50], want[:50], 2e-3)
        distance = torch.cdist(torch.from_numpy(want[50:, :4]).double(),
                               torch.from_numpy(got[50:, :4]).double(), p=float("inf"))
        unmatched = int((distance.min(dim=1).values > 2e-3).sum())
        assert unmatched <= 4, f"frame {t}: {unmatched} proposals beyond the top 50 have no counterpart"
        with torch.no_grad():
            rois = torch.cat([torch.zeros(50, 1), out.proposals[:50, :4]], dim=1)
            _, head = model.roi_head.box_forward(out.features, rois)
        _close("rcnn_cls_score top50", head.cls_logits.numpy(), golden[f"f{t}_rcnn_cls_score"][:50], 1e-3)
        _close("rcnn_bbox_pred top50", head.box_deltas.numpy(), golden[f"f{t}_rcnn_bbox_pred_top50"], 1e-3)


def test_detections_masks_and_embeddings(run):
    golden, _, frames = run
    for t, (instances, out, _) in enumerate(frames):
        det = golden[f"f{t}_det_bboxes"]
        np.testing.assert_array_equal(out.detections.labels.numpy(), golden[f"f{t}_det_labels"])
        _close("det boxes", out.detections.boxes.numpy(), det[:, :4], 5e-3)
        _close("det scores", out.detections.scores.numpy(), det[:, 4], 1e-4)
        _close("mask_pred_label", out.mask.label_logits.numpy(), golden[f"f{t}_mask_pred_label"], 5e-4)
        _close("mask_pred_full_first", out.mask.mask_logits[:2].numpy(),
               golden[f"f{t}_mask_pred_full_first"], 5e-4)
        _close("mask_feats chmean", out.mask.mask_feats.mean(dim=(2, 3)).numpy(),
               golden[f"f{t}_mask_feats_chmean"], 2e-4)
        _close("mask_feats d0", out.mask.mask_feats[0].numpy(), golden[f"f{t}_mask_feats_d0"], 2e-4)
        _close("embeds", out.embeds.numpy(), golden[f"f{t}_embeds"], 5e-4)
        # the predictor's view: detector order, original frame size
        assert instances.image_size == (256, 384)
        _close("instances boxes", instances.boxes.numpy(), det[:, :4], 5e-3)
        np.testing.assert_array_equal(instances.classes.numpy(), golden[f"f{t}_det_labels"])
        _close("instances embeddings", instances.embeddings.numpy(), golden[f"f{t}_embeds"], 5e-4)


def test_tracker_ids_references_and_refine_head(run):
    golden, _, frames = run
    for t, (instances, out, _) in enumerate(frames):
        tracked = out.tracked
        kept = golden[f"f{t}_trk_inds"][golden[f"f{t}_trk_valids"] > 0]
        np.testing.assert_array_equal(tracked.kept_indices.numpy(), kept)
        np.testing.assert_array_equal(tracked.ids.numpy(), golden[f"f{t}_trk_ids"], err_msg=f"frame {t}")
        np.testing.assert_array_equal(instances.track_ids.numpy(), golden[f"f{t}_trk_ids"])
        np.testing.assert_array_equal(tracked.labels.numpy(), golden[f"f{t}_trk_labels"])
        _close("trk_bboxes", tracked.boxes.numpy(), golden[f"f{t}_trk_bboxes"], 5e-3)
        np.testing.assert_array_equal(tracked.reference_is_self.numpy().astype(np.uint8),
                                      golden[f"f{t}_refine_ref_is_self"])
        _close("refine_preds", tracked.refine_logits[:, 0].numpy(), golden[f"f{t}_refine_preds"], 0.1)
    _, model, _ = run
    head = model.roi_head.refine_head
    _close("pos_mu_after", head.pos_mu.numpy(), golden["f3_pos_mu_after"], 0.1)
    _close("neg_mu_after", head.neg_mu.numpy(), golden["f3_neg_mu_after"], 0.1)


def test_refined_masks_and_official_results(run):
    """refine_segms, the per-class segm_result and the track_result (golden.md: IoU >= 0.9)."""
    golden, _, frames = run
    width = int(golden["ori_shape"][1])
    for t, (instances, out, _) in enumerate(frames):
        want = _unpack(golden[f"f{t}_refine_segms_packed"], width)
        _mask_iou_ok("refine_segms", out.refined_masks.numpy(), want)
        # segm_result / bbox_result: the per-class lists concatenated in class order
        labels = instances.classes.numpy()
        order = np.argsort(labels, kind="stable")
        np.testing.assert_array_equal(labels[order], golden[f"f{t}_out_segm_labels"])
        np.testing.assert_array_equal(labels[order], golden[f"f{t}_out_bbox_result_labels"])
        boxes = torch.cat([instances.boxes, instances.scores[:, None]], dim=1).numpy()
        _close("out_bbox_result", boxes[order], golden[f"f{t}_out_bbox_result"], 5e-3)
        masks = instances.masks.numpy()
        _mask_iou_ok("out_segm", masks[order], _unpack(golden[f"f{t}_out_segm_packed"], width))
        tracked = instances.track_ids.numpy() > -1
        np.testing.assert_array_equal(instances.track_ids.numpy()[tracked], golden[f"f{t}_out_track_ids"])
        np.testing.assert_array_equal(labels[tracked], golden[f"f{t}_out_track_labels"])
        _close("out_track_bboxes", boxes[tracked], golden[f"f{t}_out_track_bboxes"], 5e-3)
        want = _unpack(golden[f"f{t}_out_track_segms_packed"], width)
        _mask_iou_ok("out_track_segms", masks[tracked], want)


def test_print_worst_errors(run):
    """Not a check: prints the worst error of every quantity compared above (``pytest -s``)."""
    print("PCAN e2e worst errors:", {k: f"{v:.3g}" for k, v in sorted(WORST.items())})
    assert WORST
