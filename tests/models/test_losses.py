"""Element losses against hand-computed values, and the embedding losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from streamvis.models.crossvis.embedding import GlobalEmbeddingLoss, PairwiseEmbeddingLoss, embedding_scale
from streamvis.models.losses import (
    centerness_loss,
    centerness_targets,
    dice_loss,
    iou_loss,
    ltrb_iou_giou,
    sigmoid_focal_loss,
)

LOG2 = math.log(2.0)


def test_sigmoid_focal_loss_hand_values():
    logits = torch.tensor([[0.0, 0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    per = sigmoid_focal_loss(logits, targets, reduction="none")[0]
    p2 = 1 / (1 + math.exp(-2.0))
    expected = [0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2, 0.75 * p2**2 * math.log(1 + math.exp(2.0))]
    assert per.tolist() == pytest.approx(expected, rel=1e-6)
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(sum(expected), rel=1e-6)
    mean = sigmoid_focal_loss(logits, targets, reduction="mean")
    assert mean.item() == pytest.approx(sum(expected) / 3, rel=1e-6)


def test_sigmoid_focal_loss_without_alpha_and_gamma_is_bce():
    logits = torch.tensor([0.3, -1.2, 2.5])
    targets = torch.tensor([1.0, 0.0, 1.0])
    got = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert got.item() == pytest.approx(bce.item())
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(logits, targets, reduction="max")


def test_iou_and_giou_with_plus_one_smoothing():
    pred = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2]])
    target = torch.tensor([[1.0, 1, 1, 1], [2, 2, 2, 2], [2, 2, 0, 0]])
    ious, gious = ltrb_iou_giou(pred, target)
    # identical: 5/5; nested 2x2 in 4x4: (4+1)/(16+1); disjoint corners: I=0, U=8, C=16
    assert ious.tolist() == pytest.approx([1.0, 5 / 17, 1 / 9], rel=1e-6)
    assert gious.tolist() == pytest.approx([1.0, 5 / 17, 1 / 9 - 8 / 16], rel=1e-6)


def test_iou_loss_types_and_weights():
    pred = torch.tensor([[1.0, 1, 1, 1], [0, 0, 2, 2]])
    target = torch.tensor([[2.0, 2, 2, 2], [2, 2, 0, 0]])
    weight = torch.tensor([0.5, 2.0])
    assert iou_loss(pred, target).item() == pytest.approx(12 / 17 + 1.5 - 1 / 9, rel=1e-6)
    assert iou_loss(pred, target, weight).item() == pytest.approx(0.5 * 12 / 17 + 2 * (1.5 - 1 / 9), rel=1e-6)
    expected_iou = -math.log(5 / 17) - math.log(1 / 9)
    assert iou_loss(pred, target, loss_type="iou").item() == pytest.approx(expected_iou)
    assert iou_loss(pred, target, loss_type="linear_iou").item() == pytest.approx(12 / 17 + 8 / 9)
    assert iou_loss(pred[:0], target[:0]).item() == 0.0
    with pytest.raises(ValueError, match="IoU loss type"):
        iou_loss(pred, target, loss_type="diou")


def test_centerness_targets_and_loss():
    reg = torch.tensor([[1.0, 2, 3, 4], [2, 2, 2, 2]])
    ctr = centerness_targets(reg)
    assert ctr.tolist() == pytest.approx([math.sqrt(1 / 3 * 2 / 4), 1.0], rel=1e-6)
    assert centerness_targets(reg[:0]).shape == (0,)
    logits = torch.tensor([0.0, 1.0])
    # BCE(logit 0, any t) = log 2; BCE(logit 1, t 1) = log(1 + e^-1)
    value = centerness_loss(logits, torch.tensor([ctr[0].item(), 1.0]))
    assert value.item() == pytest.approx(LOG2 + math.log(1 + math.exp(-1.0)), rel=1e-6)


def test_dice_loss_hand_values():
    scores = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    got = dice_loss(scores, targets)
    # perfect: 1 - 2/(2+eps); half everywhere: inter 0.5, squares 4*0.25 + 1; both empty: 1 - 0/eps
    assert got.tolist() == pytest.approx([1 - 2 / (2 + 1e-5), 1 - 1 / (2 + 1e-5), 1.0], abs=1e-6)
    assert got[0].item() > 0  # the eps keeps a perfect match just above 0


def test_global_embedding_loss_matches_formula_and_init():
    torch.manual_seed(0)
    loss = GlobalEmbeddingLoss(num_identities=5, embedding_dim=4)
    assert loss.cls.bias[0].item() == pytest.approx(-math.log(99), rel=1e-6)
    assert loss.emb_scale == pytest.approx(math.sqrt(2) * math.log(4))
    assert embedding_scale(3774) == pytest.approx(11.64693, abs=1e-4)
    emb = torch.randn(3, 4)
    ids = torch.tensor([1, 5, 5])
    logits = F.linear(loss.emb_scale * emb / emb.norm(dim=1, keepdim=True), loss.cls.weight, loss.cls.bias)
    one_hot = F.one_hot(ids - 1, 5).float()
    expected = sigmoid_focal_loss(logits, one_hot).item() / 3
    assert loss(emb, ids).item() == pytest.approx(expected, rel=1e-5)
    ce = GlobalEmbeddingLoss(num_identities=5, embedding_dim=4, loss_type="ce")
    ce.load_state_dict(loss.state_dict())
    assert ce(emb, ids).item() == pytest.approx(F.cross_entropy(logits, ids - 1).item(), rel=1e-5)


def test_global_embedding_loss_edge_cases():
    loss = GlobalEmbeddingLoss(num_identities=5, embedding_dim=4)
    empty = torch.zeros(0, 4, requires_grad=True)
    value = loss(empty, torch.zeros(0, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(loss.cls.weight.grad).all()
    with pytest.raises(ValueError, match="1..5"):
        loss(torch.randn(1, 4), torch.tensor([6]))
    with pytest.raises(ValueError, match="embedding loss"):
        GlobalEmbeddingLoss(num_identities=5, embedding_dim=4, loss_type="arcface")


def test_pairwise_embedding_loss_hand_value_and_direction():
    loss = PairwiseEmbeddingLoss(temperature=0.5)
    key = torch.tensor([[1.0, 0.0]])
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # only the key anchor has a positive and a negative (s_p = 1, s_n = 0): softplus((s_n - s_p) / T)
    value = loss(key, torch.tensor([7]), ref, torch.tensor([7, 8]))
    assert value.item() == pytest.approx(F.softplus(torch.tensor(-2.0)).item(), rel=1e-6)
    swapped = loss(key, torch.tensor([8]), ref, torch.tensor([7, 8]))
    assert swapped.item() == pytest.approx(F.softplus(torch.tensor(2.0)).item(), rel=1e-6)
    no_positive = loss(key, torch.tensor([9]), ref, torch.tensor([7, 8]))
    assert no_positive.item() == 0.0


def test_pairwise_embedding_loss_multi_positive():
    loss = PairwiseEmbeddingLoss(temperature=1.0)
    key = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ref = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    key_ids, ref_ids = torch.tensor([1, 2]), torch.tensor([1, 1, 2])
    sim = key @ ref.t()
    anchors = []
    for i in range(2):  # key anchors
        pos, neg = sim[i][ref_ids == key_ids[i]], sim[i][ref_ids != key_ids[i]]
        anchors.append(math.log(1 + sum(math.exp(n - p) for p in pos for n in neg)))
    for j in range(3):  # reference anchors
        pos, neg = sim[:, j][key_ids == ref_ids[j]], sim[:, j][key_ids != ref_ids[j]]
        anchors.append(math.log(1 + sum(math.exp(n - p) for p in pos for n in neg)))
    assert loss(key, key_ids, ref, ref_ids).item() == pytest.approx(sum(anchors) / 5, rel=1e-5)
