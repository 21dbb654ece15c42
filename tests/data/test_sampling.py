"""Frame-pair sampling: reference-frame rule, choice statistics, resumable iteration streams, the index."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from streamvis.data.sampling import (
    IterationBatchSampler,
    epoch_rng_key,
    index_videos,
    iteration_rng_key,
    iteration_sample_indices,
    reference_candidates,
    sample_pair_choice,
    sample_rng,
)

FRAMES = (0, 3, 21, 22, 39)


def test_reference_candidates_respect_the_distance_bound_and_exclude_the_key():
    assert reference_candidates(FRAMES, 0, 20) == [3]  # 21 is 21 frames away
    assert reference_candidates(FRAMES, 22, 20) == [3, 21, 39]
    assert reference_candidates(FRAMES, 21, 1) == [22]
    assert reference_candidates(FRAMES, 39, 5) == []
    assert reference_candidates(FRAMES, 3, 0) == []


def _choice(rng, key_frame=22, **kwargs):
    options = {"annotated_frames": FRAMES, "key_frame": key_frame, "reference_range": 20,
               "short_sides": (160, 192), "flip_prob": 0.5}
    options.update(kwargs)
    return sample_pair_choice(rng, **options)


def test_reference_is_uniform_over_candidates_and_choices_are_fair():
    rng = np.random.default_rng(0)
    choices = [_choice(rng) for _ in range(3000)]
    refs = Counter(c.reference_frame for c in choices)
    assert set(refs) == {3, 21, 39}
    assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in refs.values())
    assert abs(np.mean([c.flip for c in choices]) - 0.5) < 0.04
    assert abs(np.mean([c.short_side == 160 for c in choices]) - 0.5) < 0.04


def test_without_candidates_the_key_frame_is_its_own_reference():
    rng = np.random.default_rng(1)
    assert {_choice(rng, key_frame=39, reference_range=5).reference_frame for _ in range(20)} == {39}


def test_flip_probability_extremes():
    rng = np.random.default_rng(2)
    assert not any(_choice(rng, flip_prob=0.0).flip for _ in range(50))
    assert all(_choice(rng, flip_prob=1.0).flip for _ in range(50))


def test_choice_is_a_function_of_the_rng_key():
    key = iteration_rng_key(7, 100, 1, 3)
    assert _choice(sample_rng(key)) == _choice(sample_rng(key))
    others = {_choice(sample_rng(iteration_rng_key(7, t, 1, 3))) for t in range(40)}
    assert len(others) > 3
    assert epoch_rng_key(7, 100, 1) != iteration_rng_key(7, 100, 1, 0)[:4]
    with pytest.raises(ValueError, match="non-negative"):
        sample_rng((1, -2))


def _stream(iterations, **kwargs):
    return [i for t in iterations for i in iteration_sample_indices(10, batch_size=2, iteration=t, **kwargs)]


def test_iteration_indices_cover_each_sample_once_per_pass():
    seen = _stream(range(5), seed=3)
    assert sorted(seen) == list(range(10))
    assert seen != list(range(10))  # shuffled
    next_pass = _stream(range(5, 10), seed=3)
    assert sorted(next_pass) == list(range(10)) and next_pass != seen


def test_ranks_share_one_stream_without_overlap():
    per_rank = [
        [i for t in range(3) for i in iteration_sample_indices(12, batch_size=2, seed=5, iteration=t,
                                                                rank=r, world_size=2)]
        for r in range(2)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(12))
    with pytest.raises(ValueError):
        iteration_sample_indices(12, batch_size=2, seed=5, iteration=0, rank=2, world_size=2)


def test_batch_sampler_resumes_exactly():
    full = iter(IterationBatchSampler(7, batch_size=3, seed=11))
    first = [next(full) for _ in range(6)]
    resumed = iter(IterationBatchSampler(7, batch_size=3, seed=11, start_iter=4))
    assert [next(resumed) for _ in range(2)] == first[4:]
    assert first[5][2].rng_key == iteration_rng_key(11, 5, 0, 2)
    other_seed = iter(IterationBatchSampler(7, batch_size=3, seed=12))
    assert [next(other_seed) for _ in range(6)] != first


def test_index_videos_keys_identities_and_classes(tiny_ytvis):
    index = index_videos(tiny_ytvis.json_path)
    assert index.category_ids == (3, 7) and index.class_names == ("three", "seven")
    assert index.num_identities == 5  # 2 crowd annotations get none
    left, far, crowd = index.videos
    assert left.annotated_frames == tuple(range(8))
    assert far.annotated_frames == FRAMES
    assert crowd.annotated_frames == ()
    on_frame_3 = left.frame_annotations[3]
    assert [(r.annotation_id, r.identity, r.class_index) for r in on_frame_3] == [(100, 1, 1), (101, 2, 0)]
    assert [r.annotation_id for r in far.frame_annotations[21]] == [200, 203]


def test_index_skips_frames_whose_area_is_zero(tiny_ytvis):
    data = json.loads(tiny_ytvis.json_path.read_text())
    ann = next(a for a in data["annotations"] if a["id"] == 201)
    ann["areas"] = [None] * 40
    ann["areas"][39] = 0  # frame 39 declared empty: no longer a key frame
    tiny_ytvis.json_path.write_text(json.dumps(data))
    assert index_videos(tiny_ytvis.json_path).videos[1].annotated_frames == (0, 3, 21, 22)
