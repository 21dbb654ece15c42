"""tracking/track_masks.py: a track's masks keep only the newest entry in memory and read the rest back."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from streamvis.data.masks import encode_masks
from streamvis.structures import Instances
from streamvis.tracking import build_tracker
from streamvis.tracking.base import Track, track_to_result
from streamvis.tracking.track_masks import MaskStore, TrackMasks


def _rles(count, height=6, width=5):
    masks = np.zeros((count, height, width), bool)
    for k in range(count):
        masks[k, k % height, : 1 + k % width] = True  # distinct masks
    return encode_masks(masks)


def test_older_frames_go_to_the_store_and_read_back_equal():
    store = MaskStore()
    rles = _rles(5)
    masks = TrackMasks(store=store)
    expected = {}
    for frame, rle in zip((0, 2, 3, 7, 9), rles):
        masks[frame] = rle
        expected[frame] = rle
        assert masks.in_memory == 1 and masks[frame] is rle  # only the newest stays a Python dict
    assert store.size == sum(len(r["counts"]) for r in rles[:4])
    assert masks == expected and list(masks) == [0, 2, 3, 7, 9] and len(masks) == 5
    assert masks[3] == rles[2] and type(masks[3]["counts"]) is str and masks[3]["size"] == [6, 5]
    assert 2 in masks and 4 not in masks and masks.get(4) is None and masks.get(np.int64(7)) == rles[3]


def test_overwrite_delete_and_out_of_order_entries():
    rles = _rles(4)
    masks = TrackMasks({0: rles[0], 1: rles[1], 2: rles[2]}, store=MaskStore())
    masks[1] = rles[3]  # an overwrite of a spilled frame: stays in memory, still frame order
    masks[5] = None  # not RLE: never spilled
    masks[6] = rles[0]
    assert dict(masks) == {0: rles[0], 1: rles[3], 2: rles[2], 5: None, 6: rles[0]}
    assert list(masks) == [0, 1, 2, 5, 6]
    del masks[0]
    del masks[5]
    assert list(masks) == [1, 2, 6] and masks[2] == rles[2]


def test_pickles_as_a_plain_dict():
    rles = _rles(3)
    track = Track(track_id=1, category=0, box=np.zeros(4, np.float32), embedding=np.ones(2, np.float32),
                  first_frame=0, last_frame=2)
    for frame, rle in enumerate(rles):
        track.masks[frame] = rle
    restored = pickle.loads(pickle.dumps(track))
    assert type(restored.masks) is dict and restored.masks == dict(enumerate(rles))
    entry = track_to_result(track, video_id=1, num_frames=4)
    assert entry["segmentations"] == [*rles, None]


def test_tracker_memory_per_track_stays_at_one_mask():
    """A track followed for 200 frames holds one RLE in memory; its results still list all 200."""
    tracker = build_tracker("crossvis")
    height, width = 24, 32
    for frame in range(200):
        mask = torch.zeros(1, height, width, dtype=torch.bool)
        mask[0, 4:10, 2 + frame % 20 : 8 + frame % 20] = True
        instances = Instances((height, width), boxes=torch.tensor([[2.0, 4, 8, 10]]),
                              scores=torch.tensor([0.9]), classes=torch.tensor([1]),
                              masks=mask, embeddings=torch.ones(1, 4))
        tracker.update(instances, frame)
    (track,) = tracker.finalize()
    assert track.masks.in_memory == 1 and len(track.masks) == 200
    last = track_to_result(track, video_id=1, num_frames=200)["segmentations"]
    assert all(rle is not None for rle in last)
    assert last[199] == encode_masks(mask.numpy())[0]
