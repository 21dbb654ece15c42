"""`streamvis render`: overlays of a saved results json over dataset frames or a video."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from streamvis.cli import main
from streamvis.data.masks import encode_mask
from streamvis.data.video import probe, read_frames, write_video
from streamvis.viz import color_for_id

HEIGHT, WIDTH = 48, 64
GRAY = 120


def _mask(x0, x1, y0=20, y1=40):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _results(video_id=1, length=3):
    first = {
        "video_id": video_id,
        "category_id": 2,
        "score": 0.9,
        "segmentations": [encode_mask(_mask(4 + 4 * t, 24 + 4 * t)) for t in range(length)],
    }
    second = {
        "video_id": video_id,
        "category_id": 1,
        "score": 0.6,
        "segmentations": [None] + [encode_mask(_mask(44, 60))] * (length - 1),
    }
    low = {
        "video_id": video_id,
        "category_id": 1,
        "score": 0.05,
        "segmentations": [encode_mask(_mask(0, 64, 0, 10))] * length,
    }
    return [first, second, low]


def _gray_frames(length=3):
    return [np.full((HEIGHT, WIDTH, 3), GRAY, np.uint8) for _ in range(length)]


def _dataset(root):
    videos = []
    for vid in (4, 8):
        (root / f"v{vid}").mkdir()
        for t, frame in enumerate(_gray_frames()):
            Image.fromarray(frame).save(root / f"v{vid}" / f"{t:02d}.png")
        videos.append(
            {
                "id": vid,
                "height": HEIGHT,
                "width": WIDTH,
                "length": 3,
                "file_names": [f"v{vid}/{t:02d}.png" for t in range(3)],
            }
        )
    gt = {
        "videos": videos,
        "categories": [{"id": 1, "name": "duck"}, {"id": 2, "name": "fox"}],
        "annotations": [],
    }
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "results.json").write_text(json.dumps(_results(4) + _results(8)[:1]))


def test_render_dataset(tmp_path, capsys):
    _dataset(tmp_path)
    out = tmp_path / "out"
    argv = [
        "render",
        "--results",
        str(tmp_path / "results.json"),
        "--gt-or-video",
        str(tmp_path / "gt.json"),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "rendered 2 video(s)" in capsys.readouterr().out
    ids = np.asarray(Image.open(out / "videos" / "4" / "instance_ids" / "00001.png"))
    assert ids[30, 16] == 1 and ids[30, 50] == 2 and ids[5, 5] == 0  # the 0.05 track is below the threshold
    frames = list(read_frames(out / "videos" / "4" / "overlay.mp4"))
    assert len(frames) == 3
    fill = (GRAY + np.array(color_for_id(2))) / 2  # track 2 (second entry) is drawn with alpha 0.5
    assert np.abs(frames[2][34, 52].astype(int) - fill).max() < 20  # lossy video
    assert np.abs(frames[2][45, 40].astype(int) - GRAY).max() < 8  # background stays
    assert probe(out / "videos" / "8" / "overlay.mp4")[0] == 3


def test_render_video_needs_video_id_and_checks_sizes(tmp_path, capsys):
    write_video(tmp_path / "clip.mp4", _gray_frames(), fps=5)
    (tmp_path / "r.json").write_text(json.dumps(_results(1) + _results(2)))
    base = [
        "render",
        "--results",
        str(tmp_path / "r.json"),
        "--gt-or-video",
        str(tmp_path / "clip.mp4"),
        "--no-progress",
        "--categories",
        "ytvis2019",
    ]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    assert "--video-id" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "b"), "--video-id", "2", "--score-threshold", "0"]) == 0
    ids = np.asarray(Image.open(tmp_path / "b" / "instance_ids" / "00000.png"))
    assert ids[30, 10] == 1 and ids[5, 5] == 3
    assert probe(tmp_path / "b" / "overlay.mp4") == (3, HEIGHT, WIDTH, 5.0)

    write_video(tmp_path / "big.mp4", [np.zeros((50, 64, 3), np.uint8)] * 3)
    argv = [
        "render",
        "--results",
        str(tmp_path / "r.json"),
        "--gt-or-video",
        str(tmp_path / "big.mp4"),
        "--video-id",
        "1",
        "--out",
        str(tmp_path / "c"),
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "r.json" in err and "64x48" in err
    assert not (tmp_path / "c" / "overlay.mp4").exists()


def test_render_rejects_length_mismatch(tmp_path, capsys):
    write_video(tmp_path / "long.mp4", _gray_frames(4))
    (tmp_path / "r.json").write_text(json.dumps(_results(1)))
    argv = [
        "render",
        "--results",
        str(tmp_path / "r.json"),
        "--gt-or-video",
        str(tmp_path / "long.mp4"),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "video id 1" in err and "3 segmentations" in err and "another video or split" in err
    write_video(tmp_path / "short.mp4", _gray_frames(2))
    argv[4] = str(tmp_path / "short.mp4")
    assert main(argv) == 2
    assert "2 frames" in capsys.readouterr().err and not (tmp_path / "o" / "overlay.mp4").exists()


def test_render_class_names_for_a_single_video(tmp_path):
    """Results store no names: --class-names, --weights, or categories.json beside the results."""
    import argparse

    from streamvis.commands.render import _category_names, parse_class_names

    assert parse_class_names("cat, dog") == {1: "cat", 2: "dog"}
    assert parse_class_names("3=car,7=dog") == {3: "car", 7: "dog"}
    results = tmp_path / "results.json"
    args = argparse.Namespace(class_names=None, categories=None, weights=None, results=str(results))
    assert _category_names(args, None) == {}
    (tmp_path / "categories.json").write_text(json.dumps([{"id": 4, "name": "duck"}]))
    assert _category_names(args, None) == {4: "duck"}  # written beside the results by predict
    args.weights = "default"  # the bundled model's names win over the file beside the results
    from_weights = _category_names(args, None)
    assert from_weights[2] == "rounded_box" and len(from_weights) == 8
    args.class_names = "fox"
    assert _category_names(args, None) == {1: "fox"}
