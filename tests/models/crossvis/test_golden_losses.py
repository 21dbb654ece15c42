"""The official CrossVIS R-50 training losses, reproduced (reference/crossvis/golden_losses.md).

One train-mode `CrossVIS.loss` call on the golden batch (deterministic weights, weights_rule.md)
must give every official loss to relative 1e-4, with the crossover checked by its deterministic
pool[0] variant, by its pool[-1] variant, and by the official random draws (replayed, or redrawn
with Python's `random` seeded as in the official run).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.build import build_model
from streamvis.models.crossvis.convert import convert_official
from streamvis.models.crossvis.criterion import LOSS_KEYS
from streamvis.models.crossvis.crossover import CrossoverSampler
from streamvis.models.crossvis.rule_weights import official_rule_state_dict, read_key_table  # noqa: E402
from streamvis.structures import FrameBatch, Instances, PairBatch

pytestmark = pytest.mark.slow  # one R-50 forward of 2 x 2 frames (256 x 384) in train mode
REFERENCE = "reference/crossvis"
RTOL, ATOL = 1e-4, 1e-6  # golden_losses.md: suggested tolerances for a float32 re-implementation


def golden_frame(npz, frame: int) -> FrameBatch:
    """Frame `frame` of both golden pairs (images HWC BGR -> CHW; rel_ids are not inputs)."""
    images, instances = [], []
    for pair in (0, 1):
        tag = f"p{pair}_f{frame}"
        images.append(torch.from_numpy(npz[f"image_{tag}"]).permute(2, 0, 1).contiguous())
        instances.append(Instances(
            (256, 384), gt_boxes=torch.from_numpy(npz[f"gt_boxes_{tag}"]),
            gt_classes=torch.from_numpy(npz[f"gt_classes_{tag}"]),
            gt_masks=torch.from_numpy(npz[f"gt_masks_{tag}"]).bool(),
            gt_ids=torch.from_numpy(npz[f"gt_ids_{tag}"]).long()))
    return FrameBatch(images, instances)


@pytest.fixture(scope="module")
def run():
    """One train-mode loss call (crossover draws pool[0]); the criterion's inputs are captured."""
    npz = np.load(require_shared(f"{REFERENCE}/golden_losses.npz"))
    official = official_rule_state_dict(read_key_table(require_shared(f"{REFERENCE}/state_dict_keys.tsv")))
    state, cfg = convert_official({"model": official})
    cfg = cfg.replace(loss=dataclasses.replace(cfg.loss, crossover_sampling="first"))
    torch.manual_seed(1234)
    model = build_model(cfg)
    model.load_state_dict(state)
    model.train()
    batch = PairBatch(golden_frame(npz, 0), golden_frame(npz, 1))
    captured = []
    handle = model.criterion.register_forward_pre_hook(lambda module, args: captured.append(args))
    with torch.no_grad():
        losses = model.loss(batch)
    handle.remove()
    outputs = captured[0][:2]
    return {"npz": npz, "model": model, "batch": batch, "losses": losses, "outputs": outputs}


def close(value, expected, what):
    assert float(value) == pytest.approx(float(expected), rel=RTOL, abs=ATOL), what


def test_loss_dict_matches_official(run):
    npz, losses = run["npz"], run["losses"]
    assert sorted(losses) == sorted(npz["loss_keys"].tolist()) and tuple(losses) == LOSS_KEYS
    for key in LOSS_KEYS:
        expected = npz["cross_over_first"] if key == "loss_cross_over" else npz[key]
        close(losses[key], expected, key)


def positives_of(run, frame):
    criterion, outputs = run["model"].criterion, run["outputs"][frame]
    frame_batch = run["batch"].frames[frame]
    return criterion.positives(outputs, frame_batch, criterion.targets(outputs, frame_batch))


@pytest.mark.parametrize("frame", [0, 1])
def test_per_frame_losses_and_positive_sets(run, frame):
    npz, criterion = run["npz"], run["model"].criterion
    outputs, frame_batch = run["outputs"][frame], run["batch"].frames[frame]
    with torch.no_grad():
        losses, positives = criterion.frame_losses(outputs, frame_batch, run["model"].mask_head)
    for key in ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"):
        close(losses[key], npz[f"frame{frame}_{key}"], f"frame {frame} {key}")
    assert len(positives) == int(npz[f"frame{frame}_num_pos"])
    assert positives.gt_inds.tolist() == npz[f"frame{frame}_pos_gt_inds"].tolist()
    assert positives.locations.tolist() == npz[f"frame{frame}_pos_locations"].tolist()
    assert positives.fpn_levels.tolist() == npz[f"frame{frame}_pos_fpn_levels"].tolist()
    assert positives.im_inds.tolist() == npz[f"frame{frame}_pos_im_inds"].tolist()


def sampler_for(mode, npz):
    if mode == "replay":
        return CrossoverSampler.replay(torch.from_numpy(npz["cross_draws"]))
    if mode == "python":  # the official draw: Python's random seeded with 1234 before the forward
        return CrossoverSampler("python", python_rng=random.Random(int(npz["seed"])))
    return CrossoverSampler(mode)


@pytest.mark.parametrize("mode, key", [("replay", "loss_cross_over"), ("python", "loss_cross_over"),
                                       ("last", "cross_over_last")])
def test_crossover_official_replayed_and_last_draws(run, mode, key):
    npz, criterion = run["npz"], run["model"].criterion
    sampler = sampler_for(mode, npz)
    pos0, pos1 = positives_of(run, 0), positives_of(run, 1)
    default, criterion.crossover_sampler = criterion.crossover_sampler, sampler
    try:
        with torch.no_grad():
            value = criterion.crossover_loss(pos0, pos1, run["model"].mask_head)
    finally:
        criterion.crossover_sampler = default
    close(value, npz[key], key)
    if mode == "replay":
        assert sampler.position == len(npz["cross_draws"]) == 104  # 49 frame-0 + 55 frame-1 draws


def test_crossover_first_per_instance_dice(run):
    npz, criterion = run["npz"], run["model"].criterion
    on_frame0, on_frame1 = criterion.crossover_instances(positives_of(run, 0), positives_of(run, 1))
    assert (len(on_frame0), len(on_frame1)) == (55, 49)
    with torch.no_grad():
        dir0 = criterion.mask_dice(on_frame0, run["model"].mask_head)
        dir1 = criterion.mask_dice(on_frame1, run["model"].mask_head)
    np.testing.assert_allclose(dir0.numpy(), npz["cross_over_first_dice_dir0"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(dir1.numpy(), npz["cross_over_first_dice_dir1"], rtol=0, atol=1e-5)


def test_inputs_are_not_mutated(run):
    npz = run["npz"]
    for frame, frame_batch in enumerate(run["batch"].frames):
        for pair, inst in enumerate(frame_batch.instances):
            assert inst.gt_ids.tolist() == npz[f"gt_ids_p{pair}_f{frame}"].tolist()
