"""The assembled MaskTrack R-CNN against the official goldens, where their paths go through the model.

As in golden.md, the parts that need a backbone or the compiled ops are replaced by lookups of the
stored inputs: the RoI extractors return the golden RoI features of exactly the RoIs the official
code pooled (and we check that the model asks for those RoIs), and the mask head returns the golden
logits on channel ``label + 1``. Everything else is the model's own code with golden.md's rule
weights in the box and tracking heads:

- (a') ``MaskTrackRCNN.rcnn_losses`` from the golden proposals: the legacy assigner and sampler
  (sampled RoIs in the official order), box-head losses and ``loss_match``;
- (b) ``MaskTrackRCNN.instances_from_detections`` on the golden detections: RoIs at
  ``boxes * scale_factor``, tracking embeddings, the legacy truncating mask paste, then the
  registered ``masktrack`` tracker: per-frame ids, match scores, mask RLEs and the results file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.conftest import require_shared
from torch import nn

from streamvis.models.build import build_model, model_config_from_dict
from streamvis.models.masktrack.rule_weights import fill_with_rule
from streamvis.models.masktrack.targets import reference_pids
from streamvis.models.two_stage.roi_heads import RCNNDetections
from streamvis.tracking import build_tracker

GOLDEN_DIR = "reference/masktrack"


@pytest.fixture(scope="module")
def model():
    """Official heads (256-channel FPN, 1024-wide fcs, 40 classes + background) with the rule weights.

    The backbone is a ResNet-18 to keep the test light: no path below runs it.
    """
    config = model_config_from_dict({"method": "masktrack", "backbone": {"depth": 18}})
    net = build_model(config).eval()
    fill_with_rule(net.track_head, "track_head.")
    fill_with_rule(net.roi_head.bbox_head, "bbox_head.")  # official names: bbox_head.* (facts.md s.1)
    return net


class LookupExtractor(nn.Module):
    """Stands in for a RoI extractor: returns the stored feature of each RoI, found by its exact row.

    Args:
        tables: marker tensor (identifies the feature list) -> ((K, 5) RoIs, (K, C, S, S) features).
    """

    def __init__(self, tables: dict[int, tuple[np.ndarray, np.ndarray]]):
        super().__init__()
        self.tables = tables
        self.calls: list[np.ndarray] = []

    def forward(self, features, rois):
        rois_np = rois.detach().numpy()
        self.calls.append(rois_np.copy())
        known, feats = self.tables[id(features[0])]
        index = [int(np.flatnonzero((known == row).all(axis=1))[0]) for row in rois_np]
        return torch.from_numpy(feats[index].astype(np.float32))


# ------------------------------------------------------------------------------------------------
# (a') training: R-CNN + match losses from the golden proposals
# ------------------------------------------------------------------------------------------------


def test_training_path_reproduces_the_official_losses(model):
    g = np.load(require_shared(f"{GOLDEN_DIR}/golden_train_targets.npz"))
    key_marker, ref_marker = torch.zeros(1), torch.zeros(1)
    cand_rois, cand_feats, ref_rois, ref_feats = [], [], [], []
    for i in range(3):
        cands = np.concatenate([g[f"img{i}_gt_boxes"], g[f"img{i}_proposals"]])
        cand_rois.append(np.concatenate([np.full((len(cands), 1), i, np.float32), cands], axis=1))
        cand_feats.append(g[f"img{i}_cand_feats"])
        refs = g[f"img{i}_ref_boxes"]
        ref_rois.append(np.concatenate([np.full((len(refs), 1), i, np.float32), refs], axis=1))
        ref_feats.append(g[f"img{i}_ref_feats"])
    lookup = LookupExtractor({id(key_marker): (np.concatenate(cand_rois), np.concatenate(cand_feats)),
                              id(ref_marker): (np.concatenate(ref_rois), np.concatenate(ref_feats))})
    real, model.roi_head.bbox_roi_extractor = model.roi_head.bbox_roi_extractor, lookup
    pids = [reference_pids(g[f"img{i}_gt_obj_ids"], g[f"img{i}_ref_obj_ids"]) for i in range(3)]
    for i in range(3):
        assert pids[i].tolist() == g[f"img{i}_gt_pids"].tolist()
    torch.manual_seed(0)  # the pools are smaller than the sampler's quota: every candidate is taken
    try:
        with torch.no_grad():
            losses = model.rcnn_losses(
                [key_marker], [torch.from_numpy(g[f"img{i}_proposals"]) for i in range(3)],
                [torch.from_numpy(g[f"img{i}_gt_boxes"]) for i in range(3)],
                [torch.from_numpy(g[f"img{i}_gt_labels"]) - 1 for i in range(3)],  # golden labels: 1-based
                None, [ref_marker], [torch.from_numpy(g[f"img{i}_ref_boxes"]) for i in range(3)], pids)
    finally:
        model.roi_head.bbox_roi_extractor = real
    # the box head and the track head pooled the official sampled RoIs, in the official order
    assert np.array_equal(lookup.calls[0], g["sampled_rois"])
    assert np.array_equal(lookup.calls[1], g["sampled_rois"])
    assert np.array_equal(lookup.calls[2], g["ref_rois"])
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_match"}
    assert abs(losses["loss_cls"].item() - float(g["loss__loss_cls"][0])) <= 1e-6
    assert abs(losses["loss_bbox"].item() - float(g["loss__loss_reg"][0])) <= 1e-6
    assert abs(losses["loss_match"].item() - float(g["loss__loss_match"][0])) <= 1e-6


# ------------------------------------------------------------------------------------------------
# (b) inference: golden detections -> model (RoIs, embeddings, paste) -> masktrack tracker
# ------------------------------------------------------------------------------------------------


class GoldenMaskHead(nn.Module):
    """Returns (n, C + 1, 28, 28) logits: the golden logits on channel label + 1, -10 elsewhere."""

    def __init__(self, real_head: nn.Module):
        super().__init__()
        self.real_head = real_head
        self.logits = np.zeros((0, 28, 28), np.float32)  # (n, 28, 28) of the current frame
        self.labels = np.zeros((0,), np.int64)  # (n,) 0-based

    def forward(self, mask_feats):
        out = torch.full((mask_feats.shape[0], self.real_head.conv_logits.out_channels, 28, 28), -10.0)
        out[torch.arange(len(self.labels)), torch.from_numpy(self.labels) + 1] = torch.from_numpy(
            self.logits.astype(np.float32))
        return out

    def class_logits(self, mask_logits, labels):
        return self.real_head.class_logits(mask_logits, labels)


@pytest.fixture(scope="module")
def golden_replay(model):
    g = np.load(require_shared(f"{GOLDEN_DIR}/golden_assoc.npz"))
    out_hw = tuple(int(v) for v in g["ori_hw"])
    input_hw = (out_hw[0] // 2, out_hw[1] // 2)  # golden: scale_factor 0.5, network input 180x320
    real = (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor, model.roi_head.mask_head)
    mask_head = GoldenMaskHead(real[2])
    model.roi_head.mask_head = mask_head
    frames, results, trackers = {}, [], {}
    try:
        for video, frame in g["img_ids"].tolist():
            key = f"v{video}_f{frame}"
            boxes, labels = g[f"{key}_boxes"], g[f"{key}_labels"]
            marker = torch.zeros(1)
            rois = np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes[:, :4] * 0.5], axis=1)
            feats = g[f"{key}_roi_feats"] if len(boxes) else np.zeros((0, 256, 7, 7), np.float32)
            track_lookup = LookupExtractor({id(marker): (rois, feats)})
            mask_feats = np.zeros((len(boxes), 256, 14, 14), np.float32)
            mask_lookup = LookupExtractor({id(marker): (rois, mask_feats)})
            model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor = track_lookup, mask_lookup
            mask_head.logits = g[f"{key}_mask_logits"] if len(boxes) else np.zeros((0, 28, 28), np.float32)
            mask_head.labels = labels
            dets = RCNNDetections(torch.from_numpy(boxes[:, :4]), torch.from_numpy(boxes[:, 4]),
                                  torch.from_numpy(labels))
            scale = model.scale_factor(input_hw, out_hw)
            with torch.no_grad():
                (instances,) = model.instances_from_detections([marker], [dets], [scale], [out_hw])
            tracker = trackers.setdefault(video, build_tracker("masktrack"))
            active = tracker.update(instances, frame)
            frames[key] = dict(step=tracker.last_step, active=active, instances=instances,
                               track_rois=track_lookup.calls, mask_rois=mask_lookup.calls, scale=scale)
    finally:
        model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor, model.roi_head.mask_head = real
    for video in sorted(trackers):
        num_frames = int((g["img_ids"][:, 0] == video).sum())
        results += trackers[video].results(video_id=video + 1, num_frames=num_frames)
    return g, frames, results


def test_inference_path_rois_embeddings_and_scores(golden_replay):
    g, frames, _ = golden_replay
    checked = 0
    for key, frame in frames.items():
        assert torch.equal(frame["scale"], torch.full((4,), 0.5))
        if f"{key}_det_rois" not in g.files or len(g[f"{key}_boxes"]) == 0:
            continue
        # official: RoIs of the tracking head and the mask head at det_bboxes * scale_factor
        assert np.array_equal(frame["track_rois"][0], g[f"{key}_det_rois"]), key
        assert np.array_equal(frame["mask_rois"][0], g[f"{key}_mask_rois"]), key
        if f"{key}_det_embed" in g.files:
            embeddings = frame["instances"].embeddings.numpy()
            assert np.abs(embeddings - g[f"{key}_det_embed"]).max() <= 1e-5, key
            step = frame["step"]
            assert np.abs(step.match_scores.numpy() - g[f"{key}_match_score"]).max() <= 1e-4, key
            assert np.abs(step.comp_scores.numpy() - g[f"{key}_comp_scores"]).max() <= 1e-4, key
            checked += 1
    assert checked == 6


def test_inference_path_ids_and_legacy_paste_rles(golden_replay):
    g, frames, _ = golden_replay
    rles = json.loads(require_shared(f"{GOLDEN_DIR}/golden_assoc_frame_rles.json").read_text())
    for key, frame in frames.items():
        index = int(key.split("_f")[1])
        assert frame["step"].official_ids.tolist() == g[f"{key}_det_obj_ids"].tolist(), key
        assert [t.track_id - 1 for t in frame["active"]] == rles[key]["result_ids"], key
        assert [t.masks[index] for t in frame["active"]] == rles[key]["rle"], key  # exact RLEs


def test_inference_path_results_file(golden_replay):
    _, _, results = golden_replay
    official = json.loads(require_shared(f"{GOLDEN_DIR}/golden_assoc_results.json").read_text())
    assert len(results) == len(official) == 10
    for ours, theirs in zip(results, official):
        assert (ours["video_id"], ours["category_id"]) == (theirs["video_id"], theirs["category_id"])
        assert abs(ours["score"] - theirs["score"]) <= 1e-6
        assert ours["segmentations"] == theirs["segmentations"]
