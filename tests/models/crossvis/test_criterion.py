"""CrossVISCriterion on tiny fake head outputs: keys, empty cases, averaging, crossover, options."""

import dataclasses

import pytest
import torch

from streamvis.errors import ConfigError
from streamvis.models.crossvis.condinst import DynamicMaskHead
from streamvis.models.crossvis.config import LossConfig
from streamvis.models.crossvis.criterion import LOSS_KEYS, CrossVISCriterion
from streamvis.models.crossvis.embedding import PairwiseEmbeddingLoss
from streamvis.models.crossvis.fcos import HeadOutputs
from streamvis.models.losses import dice_loss
from streamvis.ops.misc import aligned_bilinear, compute_locations
from streamvis.structures import FrameBatch, Instances, PairBatch

H, W = 64, 96
STRIDES = (8, 16, 32, 64, 128)
NUM_CLASSES = 3


def fake_outputs(seed: int, n: int = 2) -> HeadOutputs:
    g = torch.Generator().manual_seed(seed)
    sizes = [(-(-H // s), -(-W // s)) for s in STRIDES]

    def rand(c, h, w, scale=1.0):
        return (torch.randn(n, c, h, w, generator=g) * scale).requires_grad_()

    return HeadOutputs(
        cls_logits=[rand(NUM_CLASSES, h, w) for h, w in sizes],
        bbox_reg=[(torch.rand(n, 4, h, w, generator=g) * 3).requires_grad_() for h, w in sizes],
        ctrness=[rand(1, h, w) for h, w in sizes],
        controller_params=[rand(169, h, w, 0.3) for h, w in sizes],
        reid_feats=[rand(16, h, w) for h, w in sizes],
        mask_feats=rand(8, H // 8, W // 8),
        locations=[compute_locations(h, w, s) for (h, w), s in zip(sizes, STRIDES)],
        strides=STRIDES, image_sizes=[(H, W)] * n)


def instances(specs) -> Instances:
    """specs: list of (id, class, (x0, y0, x1, y1)) rectangles."""
    masks = torch.zeros(len(specs), H, W, dtype=torch.bool)
    for k, (_, _, (x0, y0, x1, y1)) in enumerate(specs):
        masks[k, y0:y1, x0:x1] = True
    return Instances((H, W), gt_boxes=torch.tensor([s[2] for s in specs], dtype=torch.float32).reshape(-1, 4),
                     gt_classes=torch.tensor([s[1] for s in specs], dtype=torch.long),
                     gt_masks=masks, gt_ids=torch.tensor([s[0] for s in specs], dtype=torch.long))


def frame(specs_per_image) -> FrameBatch:
    return FrameBatch([torch.zeros(3, H, W, dtype=torch.uint8) for _ in specs_per_image],
                      [instances(s) for s in specs_per_image])


def pair_batch() -> PairBatch:
    key = frame([[(1, 0, (8, 8, 40, 40)), (2, 1, (50, 10, 90, 60)), (3, 2, (0, 40, 20, 64))],
                 [(4, 2, (20, 4, 70, 60))]])
    ref = frame([[(2, 1, (46, 12, 86, 62)), (5, 0, (4, 4, 24, 24)), (1, 0, (10, 10, 42, 42))],
                 [(4, 2, (24, 8, 72, 60)), (6, 1, (0, 0, 16, 16))]])
    return PairBatch(key, ref)


def criterion(**changes) -> CrossVISCriterion:
    cfg = dataclasses.replace(LossConfig(crossover_sampling="first"), **changes)
    torch.manual_seed(0)
    return CrossVISCriterion(cfg, num_classes=NUM_CLASSES, num_identities=10, embedding_dim=16)


def test_keys_values_and_gradients():
    outs = fake_outputs(0), fake_outputs(1)
    losses = criterion()(*outs, pair_batch(), mask_head=DynamicMaskHead())
    assert tuple(losses) == LOSS_KEYS
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value) and value.item() > 0, key
    sum(losses.values()).backward()
    for name in ("cls_logits", "bbox_reg", "ctrness", "controller_params", "reid_feats"):
        assert getattr(outs[1], name)[0].grad.abs().sum() > 0, name
    assert outs[0].mask_feats.grad.abs().sum() > 0


def test_mean_over_frames_and_inputs_untouched():
    crit, batch, outs = criterion(), pair_batch(), (fake_outputs(0), fake_outputs(1))
    ids_before = [inst.gt_ids.clone() for f in batch.frames for inst in f.instances]
    first = crit(*outs, batch, mask_head=DynamicMaskHead())
    second = crit(*outs, batch, mask_head=DynamicMaskHead())
    assert all(torch.equal(first[k], second[k]) for k in LOSS_KEYS)  # no state shifts between calls
    assert all(torch.equal(a, inst.gt_ids) for a, inst in
               zip(ids_before, [inst for f in batch.frames for inst in f.instances]))
    per_frame = [crit.frame_losses(o, f, DynamicMaskHead())[0] for o, f in zip(outs, batch.frames)]
    for key in ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"):
        expected = (per_frame[0][key] + per_frame[1][key]).item() / 2
        assert first[key].item() == pytest.approx(expected, rel=1e-6)


def official_crossover_first(crit, outs, batch, mask_head):
    """The official cross_over rule written plainly with loops (pool[0] draws)."""
    pos = [crit.positives(o, f, crit.targets(o, f)) for o, f in zip(outs, batch.frames)]
    directions = []
    for src, dst in ((1, 0), (0, 1)):  # first: frame-1 params on frame-0 features
        losses = []
        for i in range(len(pos[src])):
            gt = pos[src].gt_inds[i].item()
            image, gid = pos[src].gt_images[gt].item(), pos[src].gt_ids[gt].item()
            matches = [k for k in range(len(pos[dst].gt_ids))
                       if pos[dst].gt_ids[k].item() == gid and pos[dst].gt_images[k].item() == image]
            pool = [j for j in range(len(pos[dst])) if matches and pos[dst].gt_inds[j].item() == matches[0]]
            if not pool:
                continue
            j = pool[0]
            logits = mask_head(pos[dst].mask_feats, pos[src].controller_params[i:i + 1],
                               pos[dst].locations[j:j + 1], pos[dst].fpn_levels[j:j + 1],
                               torch.tensor([image]))
            score = aligned_bilinear(logits, 2).sigmoid()
            losses.append(dice_loss(score, pos[dst].gt_bitmasks[matches[0]][None, None]))
        directions.append(torch.cat(losses).mean())
    return 0.5 * (directions[0] + directions[1])


def test_crossover_first_matches_plain_official_rule():
    crit, batch, outs, head = criterion(), pair_batch(), (fake_outputs(0), fake_outputs(1)), DynamicMaskHead()
    got = crit(*outs, batch, mask_head=head)["loss_cross_over"]
    assert got.item() == pytest.approx(official_crossover_first(crit, outs, batch, head).item(), rel=1e-5)


def test_no_ground_truth_anywhere_gives_finite_zeros():
    batch = PairBatch(frame([[], []]), frame([[], []]))
    outs = fake_outputs(0), fake_outputs(1)
    losses = criterion()(*outs, batch, mask_head=DynamicMaskHead())
    assert tuple(losses) == LOSS_KEYS
    assert losses["loss_fcos_cls"].item() > 0
    for key in ("loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_cross_over", "loss_reid"):
        assert losses[key].item() == 0.0, key
    sum(losses.values()).backward()
    assert all(torch.isfinite(x.grad).all() for x in outs[0].cls_logits)


def test_one_frame_without_ground_truth():
    batch = PairBatch(pair_batch().frames[0], frame([[], []]))
    losses = criterion()(fake_outputs(0), fake_outputs(1), batch, mask_head=DynamicMaskHead())
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_cross_over"].item() == 0.0 and losses["loss_reid"].item() > 0


class CountingHead:
    def __init__(self):
        self.head, self.sizes = DynamicMaskHead(), []

    def __call__(self, mask_feats, params, *args):
        self.sizes.append(len(params))
        return self.head(mask_feats, params, *args)


def test_max_proposals_subsamples_mask_and_crossover_instances():
    counting = CountingHead()
    criterion()(fake_outputs(0), fake_outputs(1), pair_batch(), mask_head=counting)
    assert len(counting.sizes) == 4 and max(counting.sizes) > 3
    counting = CountingHead()
    criterion(max_proposals=3)(fake_outputs(0), fake_outputs(1), pair_batch(), mask_head=counting)
    assert len(counting.sizes) == 4 and max(counting.sizes) <= 3


def test_options_crossover_off_pairwise_and_ce():
    outs, batch = (fake_outputs(0), fake_outputs(1)), pair_batch()
    base = criterion()(*outs, batch, mask_head=DynamicMaskHead())
    off = criterion(crossover=False)(*outs, batch, mask_head=DynamicMaskHead())
    assert off["loss_cross_over"].item() == 0.0 and off["loss_mask"].item() == base["loss_mask"].item()
    pairwise = criterion(embedding="pairwise")
    assert isinstance(pairwise.embedding, PairwiseEmbeddingLoss) and not list(pairwise.parameters())
    value = pairwise(*outs, batch, mask_head=DynamicMaskHead())["loss_reid"]
    assert torch.isfinite(value) and value.item() > 0 and value.item() != base["loss_reid"].item()
    ce = criterion(embedding_loss="ce")(*outs, batch, mask_head=DynamicMaskHead())["loss_reid"]
    assert ce.item() == pytest.approx(2.30, abs=0.3)  # ~log(10) at init: near-uniform over 10 proxies
    assert base["loss_reid"].item() != ce.item()


def test_config_and_identity_checks():
    with pytest.raises(ConfigError, match="loss.embedding is 'triplet'"):
        LossConfig(embedding="triplet")
    with pytest.raises(ValueError, match="center_sampling_on"):
        LossConfig(center_sampling_on="centroid")
    crit = CrossVISCriterion(LossConfig(), num_classes=NUM_CLASSES, num_identities=3, embedding_dim=16)
    assert crit.embedding.cls.weight.shape == (3, 16)
    with pytest.raises(ValueError, match="identity ids"):
        crit(fake_outputs(0), fake_outputs(1), pair_batch(), mask_head=DynamicMaskHead())


def test_positives_gather_the_flattened_outputs_in_official_order():
    crit, outs, batch = criterion(), fake_outputs(0), pair_batch()
    targets = crit.targets(outs, batch.frames[0])
    pos = targets.pos_inds
    positives = crit.positives(outs, batch.frames[0], targets)
    for name, got in (("controller_params", positives.controller_params),
                      ("reid_feats", positives.embeddings)):
        flat = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) for x in getattr(outs, name)])
        assert torch.equal(got, flat[pos]), name
    assert positives.fpn_levels.tolist() == sorted(positives.fpn_levels.tolist())
    assert positives.gt_ids.tolist() == [1, 2, 3, 4] and positives.gt_images.tolist() == [0, 0, 0, 1]
    assert positives.gt_bitmasks.shape == (4, H // 4, W // 4)
    # GT 0 covers rows/cols 8..39: sampled at 2, 6, 10, ... -> indices 2..9 are on
    assert positives.gt_bitmasks[0].nonzero()[:, 0].unique().tolist() == list(range(2, 10))
