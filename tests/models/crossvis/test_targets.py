"""FCOS target assignment and crossover bookkeeping: hand cases and the official golden targets."""

import random

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.crossvis.crossover import CrossoverSampler, counterparts, crossover_assignment
from streamvis.models.crossvis.targets import (
    STRIDES,
    assign_image,
    box_centers,
    compute_locations,
    fcos_targets,
    mask_centroids,
)
from streamvis.models.losses import centerness_targets

GOLDEN = "reference/crossvis/golden_losses.npz"


def one_level(boxes, centers, size_range=(-1, 64), stride=8, grid=4):
    """assign_image on a single `grid` x `grid` level."""
    locations = compute_locations(grid, grid, stride)
    n = len(locations)
    return locations, assign_image(
        locations, torch.tensor(boxes, dtype=torch.float32), torch.arange(len(boxes)),
        torch.tensor(centers, dtype=torch.float32), radius_px=torch.full((n,), 1.5 * stride),
        size_ranges=torch.tensor([size_range] * n, dtype=torch.float32), num_classes=9)


def test_mask_centroids_use_pixel_indices():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1, 2] = masks[0, 3, 4] = True
    assert mask_centroids(masks).tolist() == [[3.0, 2.0], [0.0, 0.0]]  # empty mask -> (0, 0)
    assert box_centers(torch.tensor([[0.0, 2, 10, 4]])).tolist() == [[5.0, 3.0]]


def test_centre_sampling_radius_clipped_to_box_and_strict():
    # locations x, y in {4, 12, 20, 28}; region [16-12, 16+12] = [4, 28] is strict -> 12 and 20 only
    locations, (labels, reg, gt) = one_level([[0, 0, 32, 32]], [[16, 16]])
    pos = labels != 9
    assert sorted(map(tuple, locations[pos].tolist())) == [(12, 12), (12, 20), (20, 12), (20, 20)]
    # clipped by the box: centre (16,16) but box x in [10, 14] keeps only x = 12
    locations, (labels, _, _) = one_level([[10, 0, 14, 32]], [[16, 16]])
    assert locations[labels != 9, 0].unique().tolist() == [12.0]
    # the centre, not the box, places the region: centroid at (4, 4) -> region [-8, 16] within the box
    locations, (labels, _, _) = one_level([[0, 0, 32, 32]], [[4, 4]])
    assert sorted(map(tuple, locations[labels != 9].tolist())) == [(4, 4), (4, 12), (12, 4), (12, 12)]


def test_min_area_wins_and_ties_go_to_lower_index():
    boxes = [[0, 0, 32, 32], [8, 8, 24, 24], [8, 8, 24, 24]]
    locations, (labels, reg, gt) = one_level(boxes, [[16, 16]] * 3)
    inner = (locations[:, 0] == 12) & (locations[:, 1] == 12)
    assert gt[inner].item() == 1 and labels[inner].item() == 1  # smaller box, lower of the two equal ones
    assert reg[inner].tolist() == [[4.0, 4.0, 12.0, 12.0]]  # pixels: l, t, r, b
    assert (gt[labels == 9] == 0).all()  # background keeps GT 0 (official)


def test_size_range_is_inclusive_at_both_ends():
    # location (12, 12) in box (0,0,40,40): l=t=12, r=b=28 -> max 28
    for size_range, expect in (((-1, 28), True), ((28, 64), True), ((-1, 27.9), False), ((28.1, 64), False)):
        locations, (labels, _, _) = one_level([[0, 0, 40, 40]], [[16, 16]], size_range=size_range)
        at = (locations[:, 0] == 12) & (locations[:, 1] == 12)
        assert (labels[at].item() != 9) == expect, size_range


def test_official_quirk_gt0_centre_at_x0_disables_sampling():
    _, (labels, _, _) = one_level([[0, 0, 32, 32], [8, 8, 24, 24]], [[0.0, 16], [16, 16]])
    assert (labels == 9).all()


def test_batch_order_offsets_and_images_without_gt():
    locations = [compute_locations(4, 4, 8), compute_locations(2, 2, 16)]
    boxes = [torch.zeros(0, 4), torch.tensor([[0.0, 0, 32, 32]]), torch.tensor([[0.0, 0, 20, 20]])]
    classes = [torch.zeros(0, dtype=torch.long), torch.tensor([3]), torch.tensor([4])]
    centers = [torch.zeros(0, 2), torch.tensor([[16.0, 16]]), torch.tensor([[10.0, 10]])]
    t = fcos_targets(locations, boxes, classes, centers, num_classes=5, strides=(8, 16))
    assert len(t.labels) == 3 * 20
    expected_levels = [0] * 48 + [1] * 12
    expected_images = [i for i in range(3) for _ in range(16)] + [i for i in range(3) for _ in range(4)]
    assert t.fpn_levels.tolist() == expected_levels and t.im_inds.tolist() == expected_images
    assert t.locations[16:32].tolist() == locations[0].tolist()
    assert (t.labels[:16] == 5).all() and (t.gt_inds[:16] == -1).all()  # image 0 has no GT
    pos = t.pos_inds
    assert set(t.gt_inds[pos].tolist()) == {0, 1}  # image 1 -> 0, image 2 -> 1 (image 0 added none)
    assert (t.labels[pos] == torch.where(t.gt_inds[pos] == 0, 3, 4)).all()
    # regression targets are in stride units
    i = pos[0]
    x, y = t.locations[i].tolist()
    stride = (8, 16)[t.fpn_levels[i]]
    box = boxes[1 + t.gt_inds[i].item()][0].tolist()
    assert t.reg_targets[i].tolist() == pytest.approx([(x - box[0]) / stride, (y - box[1]) / stride,
                                                       (box[2] - x) / stride, (box[3] - y) / stride])


@pytest.fixture(scope="module")
def golden():
    return np.load(require_shared(GOLDEN))


def golden_frame_targets(golden, frame):
    locations = [compute_locations(256 // s, 384 // s, s) for s in STRIDES]
    pairs = (0, 1)
    boxes = [torch.from_numpy(golden[f"gt_boxes_p{p}_f{frame}"]) for p in pairs]
    classes = [torch.from_numpy(golden[f"gt_classes_p{p}_f{frame}"]) for p in pairs]
    centers = [mask_centroids(torch.from_numpy(golden[f"gt_masks_p{p}_f{frame}"]).bool()) for p in pairs]
    return fcos_targets(locations, boxes, classes, centers, num_classes=40), boxes, classes


@pytest.mark.parametrize("frame", [0, 1])
def test_golden_positives_exact(golden, frame):
    t, _, _ = golden_frame_targets(golden, frame)
    pos = t.pos_inds
    assert len(pos) == int(golden[f"frame{frame}_num_pos"])
    assert t.gt_inds[pos].tolist() == golden[f"frame{frame}_pos_gt_inds"].tolist()
    assert t.locations[pos].tolist() == golden[f"frame{frame}_pos_locations"].tolist()
    assert t.fpn_levels[pos].tolist() == golden[f"frame{frame}_pos_fpn_levels"].tolist()
    assert t.im_inds[pos].tolist() == golden[f"frame{frame}_pos_im_inds"].tolist()
    per_image_level = torch.zeros(2, 5, dtype=torch.long)
    per_image_level.index_put_((t.im_inds[pos], t.fpn_levels[pos]), torch.ones_like(pos), accumulate=True)
    assert per_image_level.tolist() == golden[f"frame{frame}_pos_per_image_level"].tolist()


def test_golden_p0f0_dense_targets(golden):
    t, _, _ = golden_frame_targets(golden, 0)
    image0 = t.im_inds == 0
    labels = t.labels[image0]
    assert labels.tolist() == golden["p0f0_labels"].tolist()
    assert t.gt_inds[image0].tolist() == golden["p0f0_target_inds"].tolist()
    assert t.locations[image0].tolist() == golden["p0f0_locations"].tolist()
    np.testing.assert_allclose(t.reg_targets[image0].numpy(), golden["p0f0_reg_targets"], rtol=0, atol=1e-6)
    ctr = torch.zeros(len(labels))
    fg = labels != 40
    ctr[fg] = centerness_targets(t.reg_targets[image0][fg])
    np.testing.assert_allclose(ctr.numpy(), golden["p0f0_ctr_targets"], rtol=0, atol=1e-6)
    counts = torch.bincount(t.fpn_levels[image0][fg], minlength=5)
    assert counts.tolist() == golden["p0f0_pos_per_level"].tolist()


def test_golden_box_centres_would_differ(golden):
    """The mask centroid matters: box centres change labels of the golden image p0_f0 (21 of them)."""
    locations = [compute_locations(256 // s, 384 // s, s) for s in STRIDES]
    boxes = torch.from_numpy(golden["gt_boxes_p0_f0"])
    t = fcos_targets(locations, [boxes], [torch.from_numpy(golden["gt_classes_p0_f0"])], [box_centers(boxes)],
                     num_classes=40)
    assert int((t.labels != torch.from_numpy(golden["p0f0_labels"])).sum()) == 21


def test_golden_counterparts_equal_offset_rel_ids(golden):
    ids = {f: [torch.from_numpy(golden[f"gt_ids_p{p}_f{f}"]).long() for p in (0, 1)] for f in (0, 1)}
    images = {f: torch.cat([torch.full((len(x),), i) for i, x in enumerate(ids[f])]) for f in (0, 1)}
    for src, dst in ((0, 1), (1, 0)):
        rel = counterparts(torch.cat(ids[src]), images[src], torch.cat(ids[dst]), images[dst])
        offset = len(ids[dst][0])
        expected = [golden[f"rel_ids_p0_f{src}"].tolist(),
                    [r + offset if r >= 0 else -1 for r in golden[f"rel_ids_p1_f{src}"].tolist()]]
        assert rel.tolist() == expected[0] + expected[1]


def test_counterparts_need_same_image():
    rel = counterparts(torch.tensor([5, 6]), torch.tensor([0, 0]), torch.tensor([6, 5]), torch.tensor([1, 0]))
    assert rel.tolist() == [1, -1]
    assert counterparts(torch.tensor([5]), torch.tensor([0]), torch.zeros(0, dtype=torch.long),
                        torch.zeros(0, dtype=torch.long)).tolist() == [-1]


def test_crossover_assignment_pools_in_positive_order():
    src_gt_inds = torch.tensor([0, 1, 0, 2])  # source positives
    src_counterparts = torch.tensor([1, 0, -1])  # GT 2 is absent from the other frame
    dst_gt_inds = torch.tensor([1, 2, 1, 1, 2])  # GT 0 of the other frame has no positive
    keep, dst_gt, chosen = crossover_assignment(src_gt_inds, src_counterparts, dst_gt_inds, 3,
                                                CrossoverSampler("first"))
    assert keep.tolist() == [0, 2] and dst_gt.tolist() == [1, 1] and chosen.tolist() == [0, 0]
    last = CrossoverSampler("last")
    _, _, chosen = crossover_assignment(src_gt_inds, src_counterparts, dst_gt_inds, 3, last)
    assert chosen.tolist() == [3, 3]
    replay = CrossoverSampler.replay(torch.tensor([[0, 2, 1], [0, 2, 2]]))
    _, _, chosen = crossover_assignment(src_gt_inds, src_counterparts, dst_gt_inds, 3, replay)
    assert chosen.tolist() == [2, 3]
    torch.manual_seed(0)
    _, _, chosen = crossover_assignment(src_gt_inds, src_counterparts, dst_gt_inds, 3, CrossoverSampler())
    assert set(chosen.tolist()) <= {0, 2, 3}


def test_crossover_sampler_checks():
    with pytest.raises(ValueError, match="pool sizes"):
        CrossoverSampler.replay(torch.tensor([[0, 4, 1]]))(torch.tensor([3]))
    with pytest.raises(ValueError, match="recorded"):
        CrossoverSampler.replay(torch.tensor([1]))(torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="crossover sampling"):
        CrossoverSampler("middle")
    sizes = torch.tensor([12, 5, 1, 7])
    rng = random.Random(7)
    expected = [rng.randint(0, n - 1) for n in sizes.tolist()]
    assert CrossoverSampler("python", python_rng=random.Random(7))(sizes).tolist() == expected
    torch.manual_seed(0)
    draws = CrossoverSampler()(torch.full((2000,), 3))
    assert draws.min() == 0 and draws.max() == 2
    assert torch.bincount(draws).tolist() == pytest.approx([667, 667, 667], abs=60)
