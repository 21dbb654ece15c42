"""Property: any video of disjoint objects survives a round trip through every writable format.

Random (T, H, W) id maps (0 = background) become a dataset; each format writes it and reads it
back; masks, ids and frame lists must be identical (DAVIS is class-agnostic: categories are not
compared there).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tests.data.formats.conftest import frame_lists, masks_by_object

from streamvis.data.formats import get_format
from streamvis.data.formats.common import Track, Video, build_dataset, id_map_to_rles
from streamvis.data.ytvis import validate_ytvis

CATEGORIES = ("car", "bus")  # BDD100K MOTS names, so the bitmask writer takes them


def _dataset(id_maps: np.ndarray) -> dict:
    tracks: dict[int, Track] = {}
    for frame, id_map in enumerate(id_maps):
        for object_id, rle in id_map_to_rles(id_map).items():
            name = CATEGORIES[object_id % 2]
            tracks.setdefault(object_id, Track(object_id, name)).segmentations[frame] = rle
    frames, height, width = id_maps.shape
    video = Video("clip", height, width, [f"clip/{f:05d}.jpg" for f in range(frames)], list(tracks.values()))
    return build_dataset([video], list(CATEGORIES))


id_map_videos = st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 11)).flatmap(
    lambda shape: arrays(np.uint8, shape, elements=st.sampled_from([0, 0, 1, 2, 5, 9]))
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(id_maps=id_map_videos)
def test_every_format_round_trips_masks_and_ids(id_maps):
    dataset = _dataset(id_maps)
    validate_ytvis(dataset)
    expected = masks_by_object(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("ytvis", "coco-video", "cvat", "labelme", "bdd-mots", "davis"):
            module = get_format(name)
            out = Path(tmp) / name
            module.write_gt(dataset, out)
            source = out / "annotations.json" if name in ("ytvis", "coco-video") else out
            back = module.read_gt(source)
            validate_ytvis(back)
            got = masks_by_object(back)
            if name == "davis":
                got = {k: frames for k, (_, frames) in got.items()}
                want = {k: frames for k, (_, frames) in expected.items()}
            else:
                want = expected
            assert got == want, name
            assert frame_lists(back) == frame_lists(dataset), name
