"""YTVISDataset pairs, collation and loaders on the tiny dataset of conftest.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from streamvis.config import from_dict
from streamvis.data.loader import (
    DataConfig,
    SeededSampler,
    YTVISDataset,
    build_train_dataset,
    build_train_loader,
    collate_pairs,
)
from streamvis.data.sampling import PairChoice
from streamvis.data.transforms import boxes_from_masks
from streamvis.errors import ConfigError, DataFormatError
from streamvis.structures import PairBatch

from .conftest import ANNOTATED_FRAMES, IDENTITY_OF_ANNOTATION

CLASS_OF_IDENTITY = {1: 1, 2: 0, 3: 0, 4: 1, 5: 1}  # category 3 -> class 0, category 7 -> class 1


def _dataset(tiny, **kwargs) -> YTVISDataset:
    return YTVISDataset(tiny.json_path, tiny.image_root, **kwargs)


def _index_of(dataset, video_id, frame):
    return [dataset.key_frame(i) for i in range(len(dataset))].index((video_id, frame))


def test_metadata_is_derived_from_the_json(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared)
    assert len(ds) == 13  # 8 + 5 annotated frames; the crowd-only video has none
    assert ds.num_identities == 5 and sorted(IDENTITY_OF_ANNOTATION.values()) == [1, 2, 3, 4, 5]
    assert ds.num_classes == 2 and ds.category_ids == (3, 7) and ds.class_names == ("three", "seven")
    keys = [ds.key_frame(i) for i in range(len(ds))]
    assert keys == [(v, f) for v in (10, 20) for f in ANNOTATED_FRAMES[v]]


def _check_frame(frame, flip):
    """Types and shapes of one frame, its flip (from the image), and masks consistent with boxes."""
    image, inst = frame.image, frame.instances
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert inst.image_size == tuple(image.shape[1:])
    k = len(inst)
    assert inst.gt_boxes.dtype == torch.float32 and inst.gt_boxes.shape == (k, 4)
    assert inst.gt_classes.dtype == torch.int64 and inst.gt_ids.dtype == torch.int64
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (k, *image.shape[1:])
    assert k >= 1  # every annotated frame keeps at least one instance here
    width = image.shape[2]
    left, right = image[:, :, : width // 4].float().mean(), image[:, :, -width // 4 :].float().mean()
    assert (left > right) == flip  # frames are dark on the left before flipping
    # json boxes scaled by 1/2 may fall between pixels; the nearest-resized masks are within one pixel
    np.testing.assert_allclose(boxes_from_masks(inst.gt_masks.numpy()), inst.gt_boxes.numpy(), atol=1)
    for gid, cls in zip(inst.gt_ids.tolist(), inst.gt_classes.tolist()):
        assert CLASS_OF_IDENTITY[gid] == cls


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_pairs_same_video_distance_bound_identical_flip(tiny_ytvis_shared, epoch):
    ds = _dataset(tiny_ytvis_shared, short_sides=(32, 64), max_size=400, seed=4)
    ds.set_epoch(epoch)
    flips = set()
    for i in range(len(ds)):
        pair = ds[i]
        assert (pair.key.video_id, pair.key.frame_index) == ds.key_frame(i)
        assert pair.reference.video_id == pair.key.video_id
        video = pair.key.video_id
        assert pair.reference.frame_index in ANNOTATED_FRAMES[video]
        assert abs(pair.reference.frame_index - pair.key.frame_index) <= 20
        if (video, pair.key.frame_index) != (20, 39):  # 39's only neighbour within 20 is 22
            assert pair.reference.frame_index != pair.key.frame_index
        assert pair.key.image.shape == pair.reference.image.shape  # same scale
        assert min(pair.key.image.shape[1:]) == pair.short_side
        _check_frame(pair.key, pair.flip)
        _check_frame(pair.reference, pair.flip)
        flips.add(pair.flip)
    assert flips == {False, True}


def test_identity_ids_are_consistent_across_the_pair(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared)
    pair = ds.pair(_index_of(ds, 20, 22), PairChoice(reference_frame=39, short_side=48, flip=True))
    key, ref = pair.key.instances, pair.reference.instances
    assert key.gt_ids.tolist() == [3, 4] and ref.gt_ids.tolist() == [4]
    # identity 4 is the same 6x9 box in both frames: same class, same (flipped) box
    assert key.gt_classes[1] == ref.gt_classes[0] == 1
    assert torch.equal(key.gt_boxes[1], ref.gt_boxes[0])
    assert key.gt_boxes[1].tolist() == [64 - 46, 30, 64 - 40, 39]


def test_exact_targets_after_resize_and_flip(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared)
    index = _index_of(ds, 10, 4)
    plain = ds.pair(index, PairChoice(reference_frame=2, short_side=192, flip=False))
    inst = plain.key.instances  # 64x96 -> 192x288 (x3)
    assert inst.gt_ids.tolist() == [1, 2] and inst.gt_classes.tolist() == [1, 0]
    assert inst.gt_boxes.tolist() == [[24, 42, 72, 78], [90, 90, 120, 120]]  # ann 101's box: from the mask
    flipped = ds.pair(index, PairChoice(reference_frame=2, short_side=192, flip=True))
    assert flipped.key.instances.gt_boxes.tolist() == [[216, 42, 264, 78], [168, 90, 198, 120]]
    assert torch.equal(flipped.key.image, plain.key.image.flip(-1))
    assert torch.equal(flipped.reference.instances.gt_masks, plain.reference.instances.gt_masks.flip(-1))


def test_images_are_bgr(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared)
    frame = ds.pair(_index_of(ds, 10, 7), PairChoice(7, 64, False)).key.image.float()
    blue, red = frame[0, :, :20].mean().item(), frame[2, :, :20].mean().item()
    assert abs(blue - (40 + 3 * 7)) < 4 and abs(red - 40) < 4  # the fixture's blue grows with the frame


def test_crowd_and_empty_masks_are_left_out(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared)
    frame_21 = ds.pair(_index_of(ds, 20, 21), PairChoice(21, 48, False)).key.instances
    assert frame_21.gt_ids.tolist() == [3]  # ann 203's mask is empty on frame 21
    frame_0 = ds.pair(_index_of(ds, 10, 0), PairChoice(0, 64, False)).key.instances
    assert frame_0.gt_ids.tolist() == [1]  # the crowd box (ann 102) is no target


def test_max_size_caps_the_long_side(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared, short_sides=(192,), max_size=200)
    pair = ds[0]
    assert tuple(pair.key.image.shape[1:]) == (133, 200)
    assert pair.key.instances.gt_masks.shape[1:] == (133, 200)


def _signature(batch: PairBatch) -> list[torch.Tensor]:
    tensors = []
    for frames in batch.frames:
        for image, inst in zip(frames.images, frames.instances):
            tensors += [image, inst.gt_boxes, inst.gt_classes, inst.gt_masks, inst.gt_ids]
    return tensors


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def test_train_loader_is_resumable_and_worker_independent(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared, short_sides=(32, 48))
    stream = build_train_loader(ds, batch_size=3, seed=9, rank=1, world_size=2)
    full = [_signature(next(stream)) for _ in range(4)]
    resumed = build_train_loader(ds, batch_size=3, seed=9, rank=1, world_size=2, start_iter=2, num_workers=2)
    assert all(_same(full[t], _signature(next(resumed))) for t in (2, 3))
    rank0 = build_train_loader(ds, batch_size=3, seed=9, rank=0, world_size=2)
    assert not _same(full[0], _signature(next(rank0)))
    batch = next(build_train_loader(ds, batch_size=3, seed=9))
    assert isinstance(batch, PairBatch) and len(batch) == 3 and len(batch.frames[1].images) == 3


def _epoch_signatures(ds, rank, epoch, num_workers=0):
    sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
    sampler.set_epoch(epoch)
    ds.set_epoch(epoch)
    loader = DataLoader(ds, sampler=sampler, batch_size=2, collate_fn=collate_pairs, num_workers=num_workers)
    keys = [(p.key.video_id, p.key.frame_index) for p in (ds[i] for i in sampler)]
    return keys, [t for batch in loader for t in _signature(batch)]


def test_distributed_sampler_epoch_path_is_deterministic(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared, short_sides=(32, 48), seed=5)
    keys0, sig0 = _epoch_signatures(ds, rank=0, epoch=1)
    keys0_again, sig0_workers = _epoch_signatures(ds, rank=0, epoch=1, num_workers=2)
    assert keys0 == keys0_again and _same(sig0, sig0_workers)
    keys1, _ = _epoch_signatures(ds, rank=1, epoch=1)
    assert set(keys0) | set(keys1) == {ds.key_frame(i) for i in range(len(ds))}
    assert not _same(sig0, _epoch_signatures(ds, rank=0, epoch=2)[1])


def test_seeded_sampler_carries_the_epoch_to_persistent_workers(tiny_ytvis_shared):
    ds = _dataset(tiny_ytvis_shared, short_sides=(32, 48))
    sampler = SeededSampler(DistributedSampler(ds, num_replicas=1, rank=0, seed=3), seed=3)
    loader = DataLoader(ds, sampler=sampler, batch_size=4, collate_fn=collate_pairs, num_workers=1,
                        persistent_workers=True)
    epochs = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        epochs.append([t for batch in loader for t in _signature(batch)])
    assert _same(epochs[0], epochs[2]) and not _same(epochs[0], epochs[1])


def test_a_missing_frame_is_an_error_naming_file_video_and_frame(tiny_ytvis):
    (tiny_ytvis.image_root / "far" / "00022.jpg").unlink()
    ds = _dataset(tiny_ytvis)
    with pytest.raises(DataFormatError, match=r"far/00022\.jpg.*video 20 frame 22"):
        ds.pair(_index_of(ds, 20, 22), PairChoice(21, 48, False))


def test_a_frame_of_the_wrong_size_is_an_error(tiny_ytvis):
    data = json.loads(tiny_ytvis.json_path.read_text())
    data["videos"][0]["height"] = 65
    for ann in data["annotations"]:
        if ann["video_id"] == 10:
            ann["segmentations"] = [None if s is None else {"size": [65, 96], "counts": [65 * 96]}
                                    for s in ann["segmentations"]]
    data["annotations"][0]["segmentations"][0] = {"size": [65, 96], "counts": [0, 10, 65 * 96 - 10]}
    tiny_ytvis.json_path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="64x96 .* 65x96"):
        _dataset(tiny_ytvis)[0]


def test_a_dataset_without_key_frames_cannot_train(tiny_ytvis):
    data = json.loads(tiny_ytvis.json_path.read_text())
    for ann in data["annotations"]:
        ann["iscrowd"] = 1
    tiny_ytvis.json_path.write_text(json.dumps(data))
    ds = _dataset(tiny_ytvis)
    assert len(ds) == 0 and ds.num_identities == 0
    with pytest.raises(DataFormatError, match="nothing to train on"):
        build_train_loader(ds, batch_size=2, seed=0)


def test_data_config_defaults_and_checks(tiny_ytvis_shared):
    config = DataConfig()
    assert config.short_sides == (192,) and config.max_size == 320 and config.size_divisibility == 32
    assert config.reference_range == 20 and config.flip_prob == 0.5
    built = from_dict(DataConfig, {"short_sides": [32, 48], "train_json": str(tiny_ytvis_shared.json_path),
                                   "train_images": str(tiny_ytvis_shared.image_root)})
    assert built.short_sides == (32, 48)
    dataset = build_train_dataset(built, seed=2)
    assert dataset.short_sides == (32, 48) and dataset.seed == 2 and len(dataset) == 13
    with pytest.raises(ConfigError):
        DataConfig(flip_prob=1.5)
    with pytest.raises(ConfigError):
        DataConfig(short_sides=())
    with pytest.raises(ConfigError, match="train_json"):
        build_train_dataset(DataConfig())
