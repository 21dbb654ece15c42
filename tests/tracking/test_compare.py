"""tracking/compare.py: trackers compared on the same cached detections (what bench_trackers prints)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from streamvis.data.masks import decode_rle, encode_masks
from streamvis.errors import DataFormatError
from streamvis.structures import Instances
from streamvis.tracking.compare import (
    FrameDetections,
    cached_detections,
    compare_trackers,
    detections_fingerprint,
    format_rows,
    load_detections,
    save_detections,
    wins,
)


def _square(top: int, left: int, size: int = 4, shape=(10, 10)) -> dict:
    mask = np.zeros((1, *shape), dtype=bool)
    mask[0, top : top + size, left : left + size] = True
    return encode_masks(mask)[0]


def test_frame_detections_round_trip():
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:, :] = True
    inst = Instances((6, 8), boxes=torch.rand(2, 4), scores=torch.tensor([0.9, 0.2]),
                     classes=torch.tensor([1, 0]), embeddings=torch.rand(2, 5), masks=masks,
                     global_mask_probs=torch.rand(2, 2, 2))
    back = FrameDetections.from_instances(inst).to_instances()
    assert back.image_size == (6, 8) and not back.has("global_mask_probs")
    for name in ("boxes", "scores", "classes", "embeddings", "masks"):
        assert torch.equal(back.get(name), inst.get(name)), name
    empty = FrameDetections.from_instances(inst[torch.zeros(2, dtype=torch.bool)])
    assert empty.to_instances().masks.shape == (0, 6, 8)


class OracleModel:
    """Stands in for a model: returns the ground-truth objects of each frame, in dataset order."""

    def __init__(self, gt):
        self.config = SimpleNamespace(method="crossvis", num_classes=len(gt["categories"]), class_names=None,
                                      category_ids=None, test_short_side=32, test_max_size=48)
        self.frames = [(v, t) for v in gt["videos"] for t in range(v["length"])]
        self.annotations = gt["annotations"]
        self.calls = 0

    def predict(self, images, output_sizes):
        video, t = self.frames[self.calls]
        self.calls += 1
        anns = [a for a in self.annotations if a["video_id"] == video["id"] and a["segmentations"][t]]
        masks = torch.zeros((len(anns), *output_sizes[0]), dtype=torch.bool)
        for i, a in enumerate(anns):
            masks[i] = torch.from_numpy(decode_rle(a["segmentations"][t])).bool()
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bboxes"][t] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        embeddings = torch.nn.functional.one_hot(torch.tensor([a["id"] for a in anns], dtype=torch.long),
                                                 64).float().reshape(-1, 64)
        return [Instances(tuple(output_sizes[0]), boxes=boxes, scores=torch.full((len(anns),), 0.9),
                          classes=torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.long),
                          embeddings=embeddings, masks=masks)]


def test_compare_trackers_on_oracle_detections(tmp_path):
    from streamvis.data.synthetic import generate_dataset
    from streamvis.data.ytvis import load_ytvis

    json_path = generate_dataset(tmp_path / "valid", num_videos=2, seed=1, split="valid", size=(32, 48),
                                 frames=(4, 5), num_classes=3, workers=1)
    gt = load_ytvis(json_path)
    assert gt["annotations"], "the case needs objects"
    model = OracleModel(gt)
    rows = compare_trackers(model, gt, json_path.parent / "JPEGImages", progress=False)
    assert model.calls == sum(v["length"] for v in gt["videos"])  # the model ran once per frame
    assert [r["tracker"] for r in rows] == ["default", "crossvis", "masktrack", "quasi_dense"]
    visible = sum(s is not None for a in gt["annotations"] for s in a["segmentations"])
    for row in rows:
        assert row["AP"] == pytest.approx(1.0) and row["AP50"] == pytest.approx(1.0), row
        assert (row["id_switches"], row["matched_frames"], row["gt_frames"]) == (0, visible, visible)
        assert row["entries"] == len(gt["annotations"])
        for key in ("HOTA_det", "IDF1_det"):
            assert row[key] == pytest.approx(1.0), (row["tracker"], key)
        # class-averaged rows: a category without GT and without predictions counts as 0 (TrackEval)
        present = len({a["category_id"] for a in gt["annotations"]}) / len(gt["categories"])
        for key in ("HOTA", "DetA", "AssA", "IDF1", "MOTA"):
            assert row[key] == pytest.approx(present), (row["tracker"], key)
        assert row["IDSW"] == 0
    table = format_rows(rows)
    assert "default" in table and "HOTA" in table and "ms/frame" not in table
    assert "ms/frame" in format_rows(rows, timing=True)


def test_detections_cache_round_trip_and_fingerprint(tmp_path):
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[2, 4:, :] = True
    inst = Instances((6, 8), boxes=torch.rand(3, 4), scores=torch.tensor([0.9, 0.2, 0.5]),
                     classes=torch.tensor([1, 0, 2]), embeddings=torch.rand(3, 5), masks=masks)
    empty = inst[torch.zeros(3, dtype=torch.bool)]
    cached = {7: [FrameDetections.from_instances(inst), FrameDetections.from_instances(empty)],
              3: [FrameDetections.from_instances(inst[torch.tensor([2])])]}
    gt = {"videos": [{"id": 7, "height": 6, "width": 8, "file_names": ["a/0.jpg", "a/1.jpg"]},
                     {"id": 3, "height": 6, "width": 8, "file_names": ["b/0.jpg"]}]}
    fingerprint = detections_fingerprint(gt)
    path = tmp_path / "dets.npz"
    save_detections(path, cached, fingerprint)
    back = load_detections(path, fingerprint)
    assert list(back) == [7, 3] and [len(v) for v in back.values()] == [2, 1]
    for video_id, frames in cached.items():
        for mine, theirs in zip(frames, back[video_id]):
            a, b = mine.to_instances(), theirs.to_instances()
            assert b.image_size == (6, 8) and len(a) == len(b)
            for name in ("boxes", "scores", "classes", "embeddings", "masks"):
                assert torch.equal(a.get(name), b.get(name)), name
    other = detections_fingerprint({"videos": gt["videos"][:1]})
    with pytest.raises(DataFormatError, match="other weights or another split"):
        load_detections(path, other)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="not a streamvis detections cache"):
        load_detections(tmp_path / "junk.npz")


def test_cached_detections_detects_once(tmp_path):
    from streamvis.data.synthetic import generate_dataset
    from streamvis.data.ytvis import load_ytvis

    json_path = generate_dataset(tmp_path / "valid", num_videos=1, seed=2, split="valid", size=(32, 48),
                                 frames=(3, 3), num_classes=3, workers=1)
    gt = load_ytvis(json_path)
    model = OracleModel(gt)
    cache = tmp_path / "dets.npz"
    first = cached_detections(model, gt, json_path.parent / "JPEGImages", cache, progress=False)
    second = cached_detections(model, gt, json_path.parent / "JPEGImages", cache, progress=False)
    assert model.calls == 3 and cache.is_file()  # the second call read the file
    video_id = gt["videos"][0]["id"]
    assert [f.mask_rles for f in first[video_id]] == [f.mask_rles for f in second[video_id]]


def test_wins_direction():
    base = {"AP": 0.4, "HOTA": 0.5, "AssA": 0.6, "IDF1": 0.5, "id_switches": 10}
    row = {"AP": 0.5, "HOTA": 0.5, "AssA": 0.7, "IDF1": 0.6, "id_switches": 9}
    assert wins(row, base) == {"AP": True, "HOTA": False, "AssA": True, "IDF1": True, "id_switches": True}
