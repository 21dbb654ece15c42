"""MaskTrack R-CNN tracking head, targets and loss against the official goldens (golden.md (a), (a'))."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.masktrack.rule_weights import fill_with_rule, rule_array, rule_seed
from streamvis.models.masktrack.targets import (
    match_loss,
    reference_pids,
    track_loss,
    track_targets,
)
from streamvis.models.masktrack.track_head import TrackHead
from streamvis.ops.boxes import boxes_to_rois

GOLDEN_DIR = "reference/masktrack"


@pytest.fixture(scope="module")
def rule_head() -> TrackHead:
    """The official-size head with golden.md's deterministic weights."""
    return fill_with_rule(TrackHead(), "track_head.")


def _checksums() -> dict[str, list[str]]:
    path = require_shared(f"{GOLDEN_DIR}/weights_rule_checksums.tsv")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return {row[0]: row for row in rows}


def test_state_dict_keys_are_the_official_ones():
    head = TrackHead()
    keys = {f"track_head.{k}": tuple(v.shape) for k, v in head.state_dict().items()}
    assert keys == {"track_head.fcs.0.weight": (1024, 12544), "track_head.fcs.0.bias": (1024,),
                    "track_head.fcs.1.weight": (1024, 1024), "track_head.fcs.1.bias": (1024,)}


def test_official_init_statistics():
    torch.manual_seed(0)
    head = TrackHead()
    assert abs(head.fcs[0].weight.std().item() - 0.01) < 2e-4
    assert head.fcs[1].bias.abs().max().item() == 0.0


def test_rule_weights_match_the_golden_checksums(rule_head):
    rows = _checksums()
    for key, value in rule_head.state_dict().items():
        name, shape, bound, centred, seed, total, first, sha = rows[f"track_head.{key}"]
        array = value.numpy()
        assert "x".join(str(s) for s in array.shape) == shape
        assert rule_seed(name) == int(seed)
        assert hashlib.sha256(array.tobytes()).hexdigest()[:16] == sha
        assert float(array.reshape(-1)[0]) == float(first)
    for name in ("bbox_head.fc_cls.weight", "bbox_head.fc_reg.bias"):  # the rule covers the box head too
        row = rows[name]
        shape = tuple(int(s) for s in row[1].split("x"))
        assert hashlib.sha256(rule_array(name, shape).tobytes()).hexdigest()[:16] == row[7]


def test_match_scores_structure():
    head = TrackHead(in_channels=2, roi_feat_size=1, fc_out_channels=3)
    emb = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]])
    ref = torch.tensor([[1.0, 1.0, 1.0]])
    scores = head.match_scores(emb, ref)
    assert torch.equal(scores, torch.tensor([[0.0, 3.0], [0.0, 0.0]]))
    assert head.match_scores(emb, torch.zeros((0, 3))).shape == (2, 1)  # only the "new" column
    with pytest.raises(ValueError, match="do not add up"):
        head(torch.zeros(2, 2, 1, 1), torch.zeros(1, 2, 1, 1), [1], [1])
    with pytest.raises(ValueError, match="RoI features"):
        head.embed(torch.zeros(2, 3, 1, 1))


def test_no_relu_after_the_last_layer():
    head = TrackHead(in_channels=1, roi_feat_size=1, fc_out_channels=2)
    with torch.no_grad():
        head.fcs[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        head.fcs[0].bias.zero_()
        head.fcs[1].weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, 1.0]]))
        head.fcs[1].bias.zero_()
    out = head.embed(torch.tensor([[[[2.0]]], [[[-3.0]]]]))
    # hidden = relu([2, -2]) = [2, 0] -> [-2, 0]; relu([-3, 3]) = [0, 3] -> [0, 3]: negatives survive
    assert torch.equal(out, torch.tensor([[-2.0, 0.0], [0.0, 3.0]]))


def test_golden_direct_forward_loss_and_gradients(rule_head):
    g = np.load(require_shared(f"{GOLDEN_DIR}/golden_track_head.npz"))
    x = torch.from_numpy(g["x"].astype(np.float32)).requires_grad_(True)
    ref = torch.from_numpy(g["ref_x"].astype(np.float32)).requires_grad_(True)
    rule_head.zero_grad()
    scores = rule_head(x, ref, g["x_n"].tolist(), g["ref_x_n"].tolist())
    ids = torch.from_numpy(g["ids"]).split(g["x_n"].tolist())
    weights = [torch.from_numpy(g[f"id_weights_img{i}"]) for i in range(3)]
    losses = match_loss(scores, ids, weights)
    losses["loss_match"].backward()
    for i, score in enumerate(scores):
        assert score.shape == g[f"match_score_img{i}"].shape
        assert np.abs(score.detach().numpy() - g[f"match_score_img{i}"]).max() <= 1e-4
        assert torch.all(score[:, 0] == 0)
    assert abs(losses["loss_match"].item() - float(g["loss_match"][0])) <= 1e-6
    assert abs(losses["match_acc"].item() - float(g["match_acc"].reshape(-1)[0])) <= 1e-4
    assert np.abs(x.grad.numpy() - g["grad_x"]).max() <= 1e-6
    assert np.abs(ref.grad.numpy() - g["grad_ref_x"]).max() <= 1e-6
    assert np.abs(rule_head.fcs[1].bias.grad.numpy() - g["grad_fcs1_bias"]).max() <= 1e-6


def test_single_positive_image_is_skipped_but_counted():
    score = torch.tensor([[0.0, 2.0], [0.0, -1.0]])
    ids, weights = torch.tensor([1, 0]), torch.tensor([1.0, 0.0])
    two = (torch.tensor([[0.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 1]), torch.tensor([1.0, 1.0]))
    official = match_loss([score, two[0]], [ids, two[1]], [weights, two[2]])
    ce_two = torch.nn.functional.cross_entropy(two[0], two[1])
    assert torch.allclose(official["loss_match"], ce_two / 2)
    assert official["match_acc"].item() == 50.0  # row 0 picks column 1, target 0; row 1 is right
    fixed = match_loss([score, two[0]], [ids, two[1]], [weights, two[2]], skip_single_positive=False)
    ce_one = torch.nn.functional.cross_entropy(score[:1], ids[:1])
    assert torch.allclose(fixed["loss_match"], (ce_one + ce_two) / 2)
    none = match_loss([score], [ids], [torch.zeros(2)])
    assert none["loss_match"].item() == 0.0 and none["match_acc"].item() == 0.0


def _legacy_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU with the +1 pixel convention (official mmdet v0.5 bbox_overlaps), for the test's assigner."""
    a, b = boxes_a[:, None, :], boxes_b[None]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]) + 1, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_golden_train_targets_and_loss(rule_head):
    g = np.load(require_shared(f"{GOLDEN_DIR}/golden_train_targets.npz"))
    counts = g["sampled_n"].tolist()
    rois = np.split(g["sampled_rois"], np.cumsum(counts)[:-1])
    ref_boxes = [torch.from_numpy(g[f"img{i}_ref_boxes"]) for i in range(3)]
    assert np.array_equal(boxes_to_rois(ref_boxes).numpy(), g["ref_rois"])
    feats, ids, weights = [], [], []
    for i, image_rois in enumerate(rois):
        pids = reference_pids(g[f"img{i}_gt_obj_ids"], g[f"img{i}_ref_obj_ids"])
        assert np.array_equal(pids.numpy(), g[f"img{i}_gt_pids"])
        gt = g[f"img{i}_gt_boxes"]
        cands = np.concatenate([gt, g[f"img{i}_proposals"]])
        lookup = [int(np.flatnonzero((cands == box).all(axis=1))[0]) for box in image_rois[:, 1:]]
        feats.append(g[f"img{i}_cand_feats"][lookup].astype(np.float32))
        iou = _legacy_iou(image_rois[:, 1:], gt)  # (n_i, G): MaxIoUAssigner(pos 0.5)
        positive = iou.max(axis=1) >= 0.5
        num_pos = int(positive.sum())
        assert positive[:num_pos].all() and not positive[num_pos:].any()  # positives come first
        image_ids, image_weights = track_targets(torch.from_numpy(iou[:num_pos].argmax(axis=1)),
                                                 len(image_rois) - num_pos, pids)
        assert np.array_equal(image_weights.numpy(), g[f"id_weights_img{i}"])
        ids.append(image_ids)
        weights.append(image_weights)
    assert np.array_equal(torch.cat(ids).numpy(), g["ids"])
    ref_feats = np.concatenate([g[f"img{i}_ref_feats"] for i in range(3)]).astype(np.float32)
    with torch.no_grad():
        scores = rule_head(torch.from_numpy(np.concatenate(feats)), torch.from_numpy(ref_feats),
                           counts, [b.shape[0] for b in ref_boxes])
    for i, score in enumerate(scores):
        assert np.abs(score.numpy() - g[f"match_score_img{i}"]).max() <= 1e-4
    losses = match_loss(scores, ids, weights)
    assert abs(losses["loss_match"].item() - float(g["loss__loss_match"][0])) <= 1e-6
    assert losses["match_acc"].item() == pytest.approx(float(g["loss__match_acc"][0]), abs=1e-4)
    # the same through the batch-level entry point the model calls
    positives = [torch.from_numpy(np.flatnonzero(g[f"id_weights_img{i}"])) for i in range(3)]
    assigned = [torch.from_numpy(_legacy_iou(r[p.numpy(), 1:], g[f"img{i}_gt_boxes"]).argmax(axis=1))
                for i, (r, p) in enumerate(zip(rois, positives))]
    pids = [reference_pids(g[f"img{i}_gt_obj_ids"], g[f"img{i}_ref_obj_ids"]) for i in range(3)]
    batch = track_loss(rule_head, torch.from_numpy(np.concatenate(feats)), counts,
                       torch.from_numpy(ref_feats), [b.shape[0] for b in ref_boxes], assigned, pids)
    assert abs(batch["loss_match"].item() - float(g["loss__loss_match"][0])) <= 1e-6


def test_reference_pids_and_targets_by_hand():
    pids = reference_pids([11, 12, 13, 99], [13, 11, 14])
    assert pids.tolist() == [2, 0, 1, 0]
    ids, weights = track_targets(torch.tensor([2, 0]), 3, pids)
    assert ids.tolist() == [1, 2, 0, 0, 0]
    assert weights.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
