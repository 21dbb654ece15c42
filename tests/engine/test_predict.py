"""VideoPredictor and predict_dataset with a fake model on tiny generated videos."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from streamvis.data.masks import decode_rle
from streamvis.data.video import read_frames, write_video
from streamvis.engine.predict import VideoPredictor, category_ids_for, predict_dataset, preprocess_frame
from streamvis.structures import Instances
from streamvis.tracking import DefaultTrackerOptions


@dataclass(frozen=True)
class FakeConfig:
    """The method-contract fields of a config (models/build.py)."""

    method: str = "crossvis"
    test_short_side: int = 16
    test_max_size: int = 40
    num_classes: int = 3
    class_names: tuple | None = None
    category_ids: tuple | None = None


class FakeModel:
    """Finds the bright square of a frame: one detection of class 1 with a fixed embedding."""

    def __init__(self, config=FakeConfig()):
        self.config = config
        self.input_shapes = []

    def predict(self, images, output_sizes):
        assert torch.is_inference_mode_enabled()
        results = []
        for image, (height, width) in zip(images, output_sizes):
            self.input_shapes.append((tuple(image.shape), image.dtype))
            small = image.float().mean(0) > 128  # (h, w)
            mask = (
                torch.nn.functional.interpolate(small[None, None].float(), size=(height, width))[0, 0] > 0.5
            )
            if not mask.any():
                results.append(
                    Instances(
                        (height, width),
                        boxes=torch.zeros(0, 4),
                        scores=torch.zeros(0),
                        classes=torch.zeros(0, dtype=torch.int64),
                        masks=mask[None][:0],
                        embeddings=torch.zeros(0, 4),
                    )
                )
                continue
            ys, xs = torch.nonzero(mask, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            results.append(
                Instances(
                    (height, width),
                    boxes=box,
                    scores=torch.tensor([0.75]),
                    classes=torch.tensor([1]),
                    masks=mask[None],
                    embeddings=torch.tensor([[1.0, 0.5, 0.0, 0.2]]),
                )
            )
        return results


def _square_frames(num=5, height=32, width=48):
    frames = []
    for t in range(num):
        frame = np.zeros((height, width, 3), np.uint8)
        if t != 2:  # the square is hidden in frame 2
            frame[8:24, 4 + 6 * t : 20 + 6 * t] = 255
        frames.append(frame)
    return frames


def test_preprocess_frame_resizes_short_side():
    tensor = preprocess_frame(np.zeros((32, 48, 3), np.uint8), FakeConfig())
    assert tensor.shape == (3, 16, 24) and tensor.dtype == torch.uint8
    assert preprocess_frame(np.zeros((20, 200, 3), np.uint8), FakeConfig()).shape == (3, 4, 40)  # max size


@pytest.mark.parametrize("tracker", ["default", "crossvis"])
def test_video_predictor_on_mp4(tmp_path, tracker):
    write_video(tmp_path / "v.mp4", _square_frames(), fps=5)
    model = FakeModel()
    predictor = VideoPredictor(model, tracker, video_id=3)
    matched = [predictor.update(frame) for frame in read_frames(tmp_path / "v.mp4")]
    assert [len(m) for m in matched] == [1, 1, 0, 1, 1]
    assert model.input_shapes[0] == ((3, 16, 24), torch.uint8)
    (entry,) = predictor.finalize()
    # crossvis: the mean member score; default: times (members / frames) ** length_weight
    score = 0.75 if tracker == "crossvis" else 0.75 * (4 / 5) ** DefaultTrackerOptions().length_weight
    assert entry["video_id"] == 3 and entry["category_id"] == 2 and entry["score"] == pytest.approx(score)
    segmentations = entry["segmentations"]
    assert len(segmentations) == 5 and segmentations[2] is None
    mask = decode_rle(segmentations[4])
    assert mask.shape == (32, 48) and mask[16, 30] and not mask[16, 10]
    assert abs(int(mask.sum()) - 256) <= 40  # a 16x16 square, after lossy video and resizing
    (track,) = predictor.tracker.finalize()
    dense = [v for v in vars(track).values() if isinstance(v, np.ndarray) and v.ndim > 1]
    assert dense == []  # nothing dense is kept per track
    json.dumps(predictor.finalize())  # json-ready


def _write_dataset(root, frames_per_video=(3, 2)):
    videos = []
    for vid, count in enumerate(frames_per_video, start=1):
        names = []
        for t, frame in enumerate(_square_frames(count)):
            name = f"video{vid}/{t:05d}.png"
            (root / f"video{vid}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame[:, :, ::-1]).save(root / name)
            names.append(name)
        videos.append({"id": 10 + vid, "file_names": names, "height": 32, "width": 48, "length": count})
    categories = [{"id": 7, "name": "a"}, {"id": 8, "name": "b"}, {"id": 9, "name": "c"}]
    gt = {"videos": videos, "categories": categories, "annotations": []}
    (root / "gt.json").write_text(json.dumps(gt))
    return gt


def test_predict_dataset(tmp_path):
    gt = _write_dataset(tmp_path)
    seen = []
    results = predict_dataset(
        FakeModel(),
        tmp_path / "gt.json",
        tmp_path,
        tracker="crossvis",
        progress=False,
        on_frame=lambda video, index, frame, tracks: seen.append((video["id"], index)),
    )
    assert seen == [(11, 0), (11, 1), (11, 2), (12, 0), (12, 1)]
    assert [(r["video_id"], r["category_id"], len(r["segmentations"])) for r in results] == [
        (11, 8, 3),
        (12, 8, 2),
    ]
    assert results == predict_dataset(FakeModel(), gt, tmp_path, tracker="crossvis", progress=False)


def test_category_ids_for():
    categories = [{"id": 9, "name": "c"}, {"id": 4, "name": "a"}, {"id": 5, "name": "b"}]
    assert category_ids_for(FakeConfig(), None) is None
    assert category_ids_for(FakeConfig(), categories) == [4, 5, 9]
    assert category_ids_for(FakeConfig(class_names=("c", "b", "a")), categories) == [9, 5, 4]
    assert category_ids_for(FakeConfig(num_classes=40), categories) is None
    assert category_ids_for(FakeConfig(category_ids=(3, 1, 2)), categories) == [3, 1, 2]


def test_the_method_chooses_the_default_tracker():
    predictor = VideoPredictor(FakeModel())  # FakeConfig.method: crossvis -> its default tracker
    assert type(predictor.tracker).__name__ == "DefaultTracker"
