"""EMMatchHeadPlus against golden_refine.npz: two inference frames, the mask head, a training call."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.errors import StreamvisError
from streamvis.models.pcan.losses import refine_loss
from streamvis.models.pcan.refine_head import EMMatchHeadPlus, select_training_pairs
from streamvis.models.pcan.rule_weights import fill_head_with_rule, prototype_array
from streamvis.models.two_stage.mask_ops import paste_masks
from streamvis.models.two_stage.roi_heads import FCNMaskHead

# golden.md: suggested absolute tolerances
TOLERANCES = {
    "pos_mu_ref": 2e-4, "neg_mu_ref": 2e-4, "pos_mu_key": 2e-4, "neg_mu_key": 2e-4,
    "pos_assign": 2e-4, "neg_assign": 2e-4, "pos_z": 2e-4, "neg_z": 2e-4, "gap": 2e-4,
    "key_mask_logit14": 2e-4, "refine_pred": 2e-4, "pos_mu_global_after": 1e-6,
    "neg_mu_global_after": 1e-6, "paste_prob": 5e-5,
}
WORST: dict[str, float] = {}


@pytest.fixture(scope="module")
def golden():
    return np.load(require_shared("reference/pcan/golden_refine.npz"))


def _t(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array).astype(np.float32))


def _head(golden, **options) -> EMMatchHeadPlus:
    head = fill_head_with_rule(EMMatchHeadPlus(**options), "refine_head.").eval()
    with torch.no_grad():
        head.pos_mu.copy_(_t(golden["pos_mu_init"]))
        head.neg_mu.copy_(_t(golden["neg_mu_init"]))
    return head


def _inputs(golden, frame):
    """(key feats, key masks, labels, ref feats, ref masks) of the golden call for `frame`."""
    perm = torch.from_numpy(golden["perm_f1_to_f0"])
    key_feats, key_masks = _t(golden[f"f{frame}_key_feats"]), _t(golden[f"f{frame}_key_masks"])
    labels = torch.from_numpy(golden[f"labels_f{frame}"])
    if frame == 0:
        return key_feats, key_masks, labels, key_feats.clone(), key_masks.clone()
    return key_feats, key_masks, labels, _t(golden["f0_key_feats"])[perm], _t(golden["f0_key_masks"])[perm]


def _check(name, got, want):
    err = float(np.abs(np.asarray(got, dtype=np.float64) - want).max())
    WORST[name] = max(WORST.get(name, 0.0), err)
    assert err <= TOLERANCES[name], f"{name}: max abs error {err}"


def test_prototype_buffers_follow_the_rule(golden):
    np.testing.assert_array_equal(prototype_array("refine_head.pos_mu", (1, 256, 10)), golden["pos_mu_init"])
    np.testing.assert_array_equal(prototype_array("refine_head.neg_mu", (1, 256, 10)), golden["neg_mu_init"])


def test_official_state_dict_names():
    keys = set(EMMatchHeadPlus().state_dict())
    expected = {"pos_mu", "neg_mu", "upsample.weight", "upsample.bias"}
    expected |= {"conv_logits.weight", "conv_logits.bias"}
    expected |= {f"{m}.conv.{p}" for m in ("conv1", "conv2", "convs.0", "convs.1", "convs.2")
                 for p in ("weight", "bias")}
    assert keys == expected


def test_two_inference_frames(golden):
    """Frame 0 (each instance its own reference), then frame 1; the global prototypes carry over."""
    head = _head(golden)
    height, width = (int(v) for v in golden["ori_hw"])
    rows = torch.arange(3)
    for frame in (0, 1):
        key_feats, key_masks, labels, ref_feats, ref_masks = _inputs(golden, frame)
        twin = copy.deepcopy(head)
        with torch.no_grad():
            details = head.forward_details(ref_feats, ref_masks[rows, labels][:, None], key_feats,
                                           key_masks[rows, labels][:, None])
            refined = twin.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
        p = f"f{frame}_"
        np.testing.assert_array_equal(details.ref_mask[:, 0].numpy(), golden[p + "ref_mask_bin"])
        np.testing.assert_array_equal(details.key_mask[:, 0].numpy(), golden[p + "key_mask_bin"])
        for name, value in (("pos_mu_ref", details.pos_ref), ("neg_mu_ref", details.neg_ref),
                            ("pos_mu_key", details.pos_key), ("neg_mu_key", details.neg_key),
                            ("pos_assign", details.pos_assign), ("neg_assign", details.neg_assign),
                            ("pos_z", details.pos_z[:, 0]), ("neg_z", details.neg_z[:, 0]),
                            ("gap", details.gap), ("key_mask_logit14", details.key_logits14[:, 0]),
                            ("refine_pred", details.logits[:, 0]),
                            ("pos_mu_global_after", head.pos_mu), ("neg_mu_global_after", head.neg_mu)):
            _check(name, value.numpy(), golden[p + name])
        # `refine` (picks the label channel of key and reference) is the same call
        torch.testing.assert_close(refined, details.logits, rtol=0, atol=0)
        torch.testing.assert_close(twin.pos_mu, head.pos_mu, rtol=0, atol=0)
        boxes = _t(golden[f"boxes_f{frame}"])
        probs = paste_masks(details.logits[:, 0].sigmoid(), boxes, (height, width), threshold=-1)
        _check("paste_prob", probs.numpy(), golden[p + "paste_prob"])
        decided = np.abs(golden[p + "paste_prob"] - 0.5) > 1e-3
        want = golden[p + "segms"].astype(bool)
        np.testing.assert_array_equal((probs.numpy() >= 0.5)[decided], want[decided])
    print("refine head max abs errors:", WORST)


def test_mask_head_module_golden(golden):
    """The two-stage FCN mask head with the rule's `mask_head.*` weights reproduces maskhead_pred_f0."""
    head = fill_head_with_rule(FCNMaskHead(num_classes=8), "mask_head.").eval()
    with torch.no_grad():
        pred = head(_t(golden["f0_key_feats"]))
    err = float(np.abs(pred.numpy() - golden["maskhead_pred_f0"]).max())
    print("maskhead_pred max abs error", err)
    assert err <= 1e-4


def test_training_call_and_loss(golden):
    """Fresh buffers, train mode: the same forward, the buffers move, mean BCE loss."""
    head = _head(golden).train()
    key_feats, key_masks, labels, ref_feats, ref_masks = _inputs(golden, 1)
    logits = head.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
    _check("refine_pred", logits[:, 0].detach().numpy(), golden["train_refine_pred"])
    _check("pos_mu_global_after", head.pos_mu.numpy(), golden["train_pos_mu_global_after"])
    _check("neg_mu_global_after", head.neg_mu.numpy(), golden["train_neg_mu_global_after"])
    loss = refine_loss(logits, _t(golden["loss_targets"]))
    np.testing.assert_allclose(loss.item(), golden["train_loss_refine"], rtol=1e-5)
    loss.backward()
    assert head.conv1.conv.weight.grad is not None and float(head.conv1.conv.weight.grad.abs().sum()) > 0


def test_frozen_prototypes_option(golden):
    """Opt-in fix: in eval mode the global prototypes stay put; training still updates them."""
    head = _head(golden, freeze_prototypes_at_inference=True)
    key_feats, key_masks, labels, ref_feats, ref_masks = _inputs(golden, 1)
    with torch.no_grad():
        first = head.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
        second = head.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
    np.testing.assert_array_equal(head.pos_mu.numpy(), golden["pos_mu_init"])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    head.train()
    head.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
    assert not np.array_equal(head.pos_mu.numpy(), golden["pos_mu_init"])


def test_official_prototypes_drift_between_identical_calls(golden):
    """Official default: the same input twice gives two different outputs (the buffers moved)."""
    head = _head(golden)
    key_feats, key_masks, labels, ref_feats, ref_masks = _inputs(golden, 1)
    with torch.no_grad():
        first = head.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
        second = head.refine(key_feats, key_masks, labels, ref_feats, ref_masks)
    assert float((first - second).abs().max()) > 0


def test_empty_masks_empty_batch_and_bad_shapes():
    torch.manual_seed(0)
    head = EMMatchHeadPlus(in_channels=8, conv_channels=8).eval()
    feats = torch.randn(2, 8, 14, 14)
    logits = torch.full((2, 1, 28, 28), -5.0)  # empty masks: fg prototypes are all zero (0 / eps)
    before = head.pos_mu.clone()
    with torch.no_grad():
        details = head.forward_details(feats, logits, feats, logits)
    assert float(details.pos_key.abs().max()) == 0.0 and float(details.gap.abs().max()) == 0.0
    assert torch.isfinite(details.logits).all()
    torch.testing.assert_close(head.pos_mu, 0.95 * before, rtol=1e-6, atol=1e-7)
    no_feats, no_masks = torch.zeros(0, 8, 14, 14), torch.zeros(0, 3, 28, 28)
    empty = head.refine(no_feats, no_masks, torch.zeros(0, dtype=torch.long), no_feats, no_masks)
    assert empty.shape == (0, 1, 28, 28)
    with pytest.raises(StreamvisError, match="ref_feats must have shape"):
        head(torch.zeros(2, 8, 7, 7), logits, feats, logits)


def test_select_training_pairs_and_fallback():
    c = 4
    key = [(torch.arange(3.0)[:, None, None, None].expand(3, c, 14, 14), torch.zeros(3, 2, 28, 28),
            torch.zeros(3, 28, 28), torch.tensor([0, 1, 1]))]
    ref = [(10 + torch.arange(2.0)[:, None, None, None].expand(2, c, 14, 14), torch.ones(2, 2, 28, 28))]
    pairs = select_training_pairs(key, ref, [torch.tensor([True, False, True])], [torch.tensor([1, 0])])
    assert pairs.key_feats[:, 0, 0, 0].tolist() == [0.0, 2.0]
    assert pairs.ref_feats[:, 0, 0, 0].tolist() == [11.0, 10.0]
    assert pairs.labels.tolist() == [0, 1]
    none = select_training_pairs(key, ref, [torch.tensor([False] * 3)], [torch.zeros(0, dtype=torch.long)])
    assert none.key_feats.shape[0] == 3 and torch.equal(none.ref_feats, none.key_feats)
    assert torch.equal(none.ref_mask_pred, none.key_mask_pred)
