"""The synthetic dataset generator: determinism, masks = visible pixels, occlusion, json/frame agreement."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamvis.cli import main
from streamvis.data.masks import decode_rle, mask_to_bbox
from streamvis.data.synthetic import (
    FAMILIES,
    SynthConfig,
    generate_dataset,
    gt_to_results,
    plan_synthetic_video,
    render_synthetic_video,
    write_dataset,
)
from streamvis.data.synthetic_scene import render_video
from streamvis.data.synthetic_shapes import sample_colors, sample_shape_params
from streamvis.errors import ConfigError

SMALL = dict(size=(48, 80), frames=(4, 6))  # tiny videos for the file-writing tests


@pytest.fixture(scope="module")
def survey():
    """40 rendered videos (96x160, 12-20 frames) of one seed, for dataset-level properties."""
    config = SynthConfig(num_videos=40, seed=7, size=(96, 160), frames=(12, 20))
    return [render_synthetic_video(config, i) for i in range(config.num_videos)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small dataset written with one worker: (config, folder, json dict)."""
    config = SynthConfig(num_videos=4, seed=3, **SMALL)
    out = tmp_path_factory.mktemp("synth")
    json_path = write_dataset(config, out, workers=1)
    return config, out, json.loads(json_path.read_text())


def test_config_errors_name_the_limit():
    with pytest.raises(ConfigError, match=r"1\.\.10 .*ellipse.*heart"):
        SynthConfig(num_videos=1, num_classes=11)
    with pytest.raises(ConfigError, match="split"):
        SynthConfig(num_videos=1, split="test")
    with pytest.raises(ConfigError, match="frames"):
        SynthConfig(num_videos=1, frames=(5, 3))


def test_mask_is_exactly_the_visible_rendered_pixels():
    config = SynthConfig(num_videos=1, seed=11, size=(96, 160), frames=(8, 8))
    plan = next(p for p in (plan_synthetic_video(config, i) for i in range(20)) if len(p.objects) >= 3)
    video = render_video(plan)
    background = render_video(dataclasses.replace(plan, objects=(), depth_order=())).frames
    nearer = np.zeros(video.labels.shape, bool)  # union of the shapes nearer than the current one
    for k in reversed(plan.depth_order):  # nearest first
        solo = render_video(dataclasses.replace(plan, objects=(plan.objects[k],), depth_order=(0,)))
        shape = solo.masks(0)  # (T, H, W) the full shape of k clipped to the frame
        np.testing.assert_array_equal(video.masks(k), shape & ~nearer)
        np.testing.assert_array_equal(video.frames[video.masks(k)], solo.frames[video.masks(k)])
        np.testing.assert_array_equal(video.amodal_areas[:, k], shape.sum(axis=(1, 2)))
        nearer |= shape
    np.testing.assert_array_equal(video.frames[~nearer], background[~nearer])
    assert nearer.any() and not nearer.all()


def test_same_arguments_give_identical_bytes_for_any_worker_count(written, tmp_path):
    config, first, _ = written
    second = write_dataset(config, tmp_path, workers=2).parent
    assert (first / "instances.json").read_bytes() == (second / "instances.json").read_bytes()
    files = sorted(p.relative_to(first) for p in (first / "JPEGImages").rglob("*.jpg"))
    assert files == sorted(p.relative_to(second) for p in (second / "JPEGImages").rglob("*.jpg"))
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_split_and_seed_change_the_videos():
    base = SynthConfig(num_videos=1, seed=0, size=(48, 80), frames=(4, 4))
    frames = render_synthetic_video(base, 0).frames
    for changed in (dataclasses.replace(base, split="valid"), dataclasses.replace(base, seed=1)):
        assert not np.array_equal(frames, render_synthetic_video(changed, 0).frames)
    np.testing.assert_array_equal(frames, render_synthetic_video(base, 0).frames)


def test_json_agrees_with_masks_and_frames(written):
    config, out, data = written
    assert [c["name"] for c in data["categories"]] == [f.name for f in FAMILIES[: config.num_classes]]
    assert [v["id"] for v in data["videos"]] == [1, 2, 3, 4]
    for video in data["videos"]:
        memory = render_synthetic_video(config, video["id"] - 1)
        assert video["length"] == len(video["file_names"]) == len(memory.frames)
        assert config.frames[0] <= video["length"] <= config.frames[1]
        folder = out / "JPEGImages" / Path(video["file_names"][0]).parent
        assert sorted(p.name for p in folder.iterdir()) == [Path(f).name for f in video["file_names"]]
        rgb = np.asarray(Image.open(out / "JPEGImages" / video["file_names"][-1]).convert("RGB"), float)
        assert rgb.shape == (video["height"], video["width"], 3) == memory.frames[-1].shape
        bgr = memory.frames[-1].astype(float)
        assert np.abs(rgb[..., ::-1] - bgr).mean() < 3.5  # files are RGB; memory is BGR
        if np.abs(bgr[..., 0] - bgr[..., 2]).mean() > 10:
            assert np.abs(rgb - bgr).mean() > np.abs(rgb[..., ::-1] - bgr).mean() + 4
    for ann in data["annotations"]:
        memory = render_synthetic_video(config, ann["video_id"] - 1)
        assert ann["iscrowd"] == 0 and len(ann["segmentations"]) == ann["length"]
        masks = [memory.masks(k) for k in range(len(memory.category_ids))]
        for t, (seg, box, area) in enumerate(zip(ann["segmentations"], ann["bboxes"], ann["areas"])):
            assert (seg is None) == (box is None) == (area is None)
            if seg is not None:
                decoded = decode_rle(seg).astype(bool)
                assert decoded.sum() == area > 0 and box == mask_to_bbox(decoded)
                assert any(np.array_equal(decoded, m[t]) for m in masks)
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


def test_occlusion_reappearance_and_entering_are_present(survey):
    full = partial = reappear = enter = leave = 0
    for video in survey:
        visible, amodal = video.visible_areas > 0, video.amodal_areas > 0
        for k in range(len(video.category_ids)):
            hidden = amodal[:, k] & ~visible[:, k]  # in the frame, covered by nearer objects
            full += hidden.any()
            partial += (visible[:, k] & (video.visible_areas[:, k] < video.amodal_areas[:, k])).any()
            for t in np.flatnonzero(hidden):
                reappear += visible[:t, k].any() and visible[t:, k].any()
            enter += not amodal[0, k] and amodal[:, k].any()
            leave += amodal[:, k].any() and not amodal[-1, k]
    assert full >= 8 and reappear >= 30 and partial >= 15 and enter >= 10 and leave >= 10


def test_object_counts_vary_and_classes_repeat(survey):
    counts = [len(v.category_ids) for v in survey]
    assert 0 in counts and max(counts) >= 4 and len(set(counts)) >= 4
    assert sum(len(set(v.category_ids.tolist())) < len(v.category_ids) for v in survey) >= 3


def test_motion_rotation_scale_camera_and_light_change():
    config = SynthConfig(num_videos=1, seed=5, size=(96, 160), frames=(24, 24))
    plans = [plan_synthetic_video(config, i) for i in range(6)]
    objects = [o for p in plans for o in p.objects]
    assert len(objects) >= 5
    for obj in objects:
        speed = np.hypot(*np.diff(obj.center, axis=0).T)  # (T-1,) px / frame
        assert speed.std() > 0.05 * speed.mean() > 0  # velocity changes
        assert np.ptp(obj.angle) > 0.01 and np.ptp(obj.radius) > 0.02 * obj.radius.mean()
    for plan in plans:
        assert np.abs(np.diff(plan.camera, axis=0)).sum() > 0  # the background pans
        assert np.ptp(plan.gains) > 0.03  # brightness / colour drift


def test_classes_differ_by_shape_and_texture_not_colour():
    rng = np.random.default_rng(0)
    grid = np.linspace(-1, 1, 97)
    u, v = np.meshgrid(grid, grid)
    params = sample_shape_params(rng)
    shapes = [f.inside(u, v, params) for f in FAMILIES]
    for i in range(len(shapes)):
        for j in range(i):
            iou = (shapes[i] & shapes[j]).sum() / (shapes[i] | shapes[j]).sum()
            assert iou < 0.9, (FAMILIES[i].name, FAMILIES[j].name)
    for family, shape in zip(FAMILIES, shapes):
        assert np.hypot(u, v)[shape].max() <= 1.0 + 1e-9  # fits the disk the renderer windows
        texture = family.texture(u[shape], v[shape], params)
        assert texture.min() >= 0 and texture.max() <= 1 and texture.std() > 0.1, family.name
    hues = np.array([sample_colors(rng)[0] for _ in range(20)])  # BGR of the first colour
    assert np.ptp(hues, axis=0).min() > 100  # any colour for any class


def test_gt_to_results_gives_ap_one_with_streamvis_evaluate(written, tmp_path):
    config, out, data = written
    results = gt_to_results(data)
    assert len(results) == len(data["annotations"]) > 0 and {r["score"] for r in results} == {1.0}
    evaluation = pytest.importorskip("streamvis.evaluation", reason="the evaluator is not written yet")
    from streamvis.data.ytvis import write_results

    write_results(tmp_path / "results.json", results, data)
    argv = ["evaluate", "--gt", str(out / "instances.json"), "--results", str(tmp_path / "results.json")]
    assert main(argv + ["--out", str(tmp_path / "metrics.json")]) == 0
    named = json.loads((tmp_path / "metrics.json").read_text())["stats_named"]
    assert named["AP"] == pytest.approx(1.0) and named["AR100"] == pytest.approx(1.0)
    relabelled = [dict(r, category_id=r["category_id"] % config.num_classes + 1) for r in results[:2]]
    worse = relabelled + results[2:]
    assert evaluation.evaluate(data, worse).stats_named["AP"] < 1.0  # the check can fail


def test_cli_writes_dataset_and_preview(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["synth", "--out", str(out), "--videos", "2", "--seed", "1", "--size", "48x64", "--frames", "3:4"]
    assert main(argv + ["--preview", "--workers", "1"]) == 0
    data = json.loads((out / "instances.json").read_text())
    assert [(v["height"], v["width"]) for v in data["videos"]] == [(48, 64)] * 2
    preview = np.asarray(Image.open(out / "preview.png"))
    assert preview.shape[0] >= 48 and preview.shape[1] >= 64 * 4
    assert (out / "preview.mp4").stat().st_size > 0
    assert main(argv + ["--classes", "99"]) == 2
    assert "num_classes must be 1..10" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--videos", "1", "--seed", "0", "--size", "big"]) == 2


def test_generate_dataset_api_and_empty_dataset(tmp_path):
    path = generate_dataset(tmp_path, num_videos=0, seed=0, **SMALL)
    data = json.loads(path.read_text())
    assert path == tmp_path / "instances.json" and data["videos"] == [] and data["annotations"] == []
    assert data["info"]["generator"]["num_videos"] == 0


def test_synthetic_stream_plays_the_valid_videos_back_to_back():
    from streamvis.data.synthetic import SynthConfig, render_synthetic_video, synthetic_stream

    frames = list(synthetic_stream(50, size=(32, 48), num_classes=2, seed=0))
    assert len(frames) == 50 and frames[0].shape == (32, 48, 3) and frames[0].dtype == np.uint8
    first = render_synthetic_video(SynthConfig(num_videos=50, seed=0, split="valid", size=(32, 48),
                                               num_classes=2), 0).frames
    assert len(first) < 50  # the stream crosses into the next video
    assert np.array_equal(np.stack(frames[: len(first)]), first)
