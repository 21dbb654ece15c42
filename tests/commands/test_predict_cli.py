"""`streamvis predict` end to end with a tiny randomly initialised model saved as a weights file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from streamvis.cli import main
from streamvis.data.masks import decode_rle
from streamvis.data.video import probe, write_video


@pytest.fixture(autouse=True)
def one_thread():
    """CPU tests share a small machine: one intra-op thread avoids oversubscription (10x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from streamvis.models.build import build_model
    from streamvis.models.crossvis.config import CrossVISConfig
    from streamvis.models.weights import save_weights

    cfg = CrossVISConfig(
        depth=18,
        num_classes=3,
        class_names=("cat", "dog", "fox"),
        fpn_channels=32,
        head_channels=64,
        head_num_convs=1,
        mask_branch_channels=16,
        mask_branch_num_convs=1,
        reid_dim=16,
        num_identities=10,
        detections_per_frame=3,
        test_short_side=64,
        test_max_size=96,
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.cls_logits.bias[0] = 4.0  # untrained: make class 0 ("cat") fire everywhere
        model.head.bbox_pred.bias.fill_(2.0)  # boxes of ~2 strides per side, whatever the random init
        model.head.controller.bias[-1] = (
            8.0  # last dynamic-conv bias (official order w0 w1 w2 b0 b1 b2): masks on
        )
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    save_weights(path, model.state_dict(), cfg)
    return path


def _frames(num=4, height=60, width=80):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(num)]


def _check_results(path, num_frames, video_ids=(1,)):
    results = json.loads(path.read_text())
    assert results and {r["video_id"] for r in results} == set(video_ids)
    for entry in results:
        assert entry["category_id"] == 1 and 0 < entry["score"] <= 1  # class 0 -> id 1
        assert len(entry["segmentations"]) == num_frames[entry["video_id"]]
        rles = [s for s in entry["segmentations"] if s is not None]
        assert rles and decode_rle(rles[0]).shape == (60, 80)
    return results


def test_predict_video_with_viz(tmp_path, weights, capsys):
    write_video(tmp_path / "in.mp4", _frames(), fps=8)
    out = tmp_path / "out"
    argv = [
        "predict",
        "--weights",
        str(weights),
        "--input",
        str(tmp_path / "in.mp4"),
        "--out",
        str(out),
        "--viz",
        "--viz-score-threshold",
        "0",
        "--no-progress",
    ]
    assert main(argv) == 0
    results = _check_results(out / "results.json", {1: 4})
    assert "tracks in 4 frames" in capsys.readouterr().out
    assert probe(out / "overlay.mp4") == (4, 60, 80, 8.0)
    id_pngs = sorted((out / "instance_ids").iterdir())
    assert [p.name for p in id_pngs] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    for index, png in enumerate(id_pngs):
        ids = np.asarray(Image.open(png))
        expected = np.zeros((60, 80), np.uint16)
        for track_id, entry in enumerate(results, start=1):  # default tracker: ids 1.. in results order
            if entry["segmentations"][index] is not None:
                expected[decode_rle(entry["segmentations"][index]) > 0] = track_id
        assert np.array_equal(ids, expected)
    assert (ids > 0).any()


def test_predict_frame_folder_crossvis_tracker(tmp_path, weights):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(3)):
        Image.fromarray(frame[:, :, ::-1]).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    argv = [
        "predict",
        "--weights",
        str(weights),
        "--input",
        str(folder),
        "--out",
        str(out),
        "--tracker",
        "crossvis",
        "--no-progress",
    ]
    assert main(argv) == 0
    _check_results(out / "results.json", {1: 3})
    assert not (out / "overlay.mp4").exists()


def test_predict_dataset_json(tmp_path, weights):
    videos = []
    for vid, count in ((5, 2), (9, 3)):
        names = []
        for t, frame in enumerate(_frames(count)):
            (tmp_path / f"v{vid}").mkdir(exist_ok=True)
            Image.fromarray(frame[:, :, ::-1]).save(tmp_path / f"v{vid}" / f"{t}.jpg")
            names.append(f"v{vid}/{t}.jpg")
        videos.append({"id": vid, "file_names": names, "height": 60, "width": 80, "length": count})
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "fox"}]
    (tmp_path / "gt.json").write_text(json.dumps({"videos": videos, "categories": categories}))
    out = tmp_path / "out"
    argv = [
        "predict",
        "--weights",
        str(weights),
        "--input",
        str(tmp_path / "gt.json"),
        "--out",
        str(out),
        "--viz",
        "--no-progress",
    ]
    assert main(argv) == 0
    _check_results(out / "results.json", {5: 2, 9: 3}, video_ids=(5, 9))
    assert probe(out / "videos" / "9" / "overlay.mp4")[0] == 3
    assert len(list((out / "videos" / "5" / "instance_ids").iterdir())) == 2


def test_predict_errors_name_the_file(tmp_path, weights, capsys):
    out = str(tmp_path / "out")
    assert (
        main(["predict", "--weights", str(weights), "--input", str(tmp_path / "nope.mp4"), "--out", out]) == 2
    )
    assert "nope.mp4" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    write_video(tmp_path / "in.mp4", _frames(1))
    assert main(["predict", "--weights", str(bad), "--input", str(tmp_path / "in.mp4"), "--out", out]) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.json").exists()


def test_predict_tracker_options(tmp_path, weights, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(2)):
        Image.fromarray(frame[:, :, ::-1]).save(folder / f"{i:03d}.png")
    base = ["predict", "--weights", str(weights), "--input", str(folder), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())  # some tracks by default
    # no detection scores 2: with new_track_score=2 no track may start
    assert main([*base, "--out", str(tmp_path / "b"), "--tracker-set", "new_track_score=2"]) == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text()) == []
    assert main([*base, "--out", str(tmp_path / "c"), "--tracker-set", "max_agee=3"]) == 2
    err = capsys.readouterr().err
    assert "max_agee" in err and "max_age" in err.replace("max_agee", "")
    assert main([*base, "--out", str(tmp_path / "c"), "--tracker-set", "max_age=soon"]) == 2
    assert "'tracker.max_age' must be int" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before any work


def _decoded(path):
    from streamvis.data.video import read_frames

    return list(read_frames(path))


def test_predict_viz_and_render_draw_the_same_pixels(tmp_path, weights, capsys):
    """Same results, same defaults: `predict --viz` and `render` write identical overlays and id maps."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(3)):
        Image.fromarray(frame[:, :, ::-1]).save(folder / f"{i:03d}.png")
    out, rendered = tmp_path / "out", tmp_path / "rendered"
    argv = ["predict", "--weights", str(weights), "--input", str(folder), "--out", str(out), "--viz",
            "--no-progress"]
    assert main(argv) == 0
    names = json.loads((out / "categories.json").read_text())
    assert names == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "fox"}]
    argv = ["render", "--results", str(out / "results.json"), "--gt-or-video", str(folder), "--out",
            str(rendered), "--no-progress"]
    assert main(argv) == 0  # class names come from categories.json beside the results
    from_predict, from_render = _decoded(out / "overlay.mp4"), _decoded(rendered / "overlay.mp4")
    assert len(from_predict) == len(from_render) == 3
    for a, b in zip(from_predict, from_render):
        assert np.array_equal(a, b)
    for name in ("00000.png", "00001.png", "00002.png"):
        assert np.array_equal(np.asarray(Image.open(out / "instance_ids" / name)),
                              np.asarray(Image.open(rendered / "instance_ids" / name)))
    original = np.asarray(Image.open(folder / "000.png"))[:, :, ::-1].astype(int)
    assert np.abs(from_predict[0].astype(int) - original).mean() > 5  # something was drawn
    # a changed default would show: a different threshold draws a different picture
    assert main([*argv[:-1], "--score-threshold", "2", "--out", str(tmp_path / "none"), "--no-progress"]) == 0
    assert not np.array_equal(_decoded(tmp_path / "none" / "overlay.mp4")[0], from_render[0])


def test_predict_filters(tmp_path, weights, capsys):
    """The flags reach the written file (ResultsFilter itself: tests/data/test_results_filter.py)."""
    write_video(tmp_path / "in.mp4", _frames(3), fps=8)
    base = ["predict", "--weights", str(weights), "--input", str(tmp_path / "in.mp4"), "--no-progress"]

    def written(name, *flags):
        assert main([*base, "--out", str(tmp_path / name), *flags]) == 0
        return json.loads((tmp_path / name / "results.json").read_text())

    everything = written("all")
    assert everything  # the tiny model's class 0 ("cat", id 1) fires everywhere
    best = max(e["score"] for e in everything)
    assert written("above", "--score-threshold", str(best + 1e-6)) == []
    assert written("at", "--score-threshold", str(best)) != []
    assert written("dog", "--classes", "dog") == []
    assert written("cat", "--classes", "cat,2") == everything
    assert main([*base, "--out", str(tmp_path / "x"), "--classes", "zebra"]) == 2
    err = capsys.readouterr().err
    assert "'zebra' is not a category" in err and "1=cat" in err
    assert main([*base, "--out", str(tmp_path / "x"), "--max-tracks", "0"]) == 2


def test_predict_help_shows_defaults_and_why(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "AP rewards keeping low-scored tracks" in text
    assert "(default 0.25; predict --viz and render share it)" in text
    assert "'default' names the bundled model" in text and "(default: default)" in text


def test_predict_weights_default_is_the_bundled_model(tmp_path):
    from streamvis.assets import default_weights_path
    from streamvis.cli import build_parser
    from streamvis.commands.arguments import resolve_weights

    args = build_parser(("predict",)).parse_args(["predict", "--input", "x.mp4", "--out", str(tmp_path)])
    assert args.weights == "default"
    assert resolve_weights(args.weights) == default_weights_path()
    assert resolve_weights("w.pth").name == "w.pth"


def test_predict_folder_of_videos_and_glob(tmp_path, weights, capsys):
    vids = tmp_path / "vids"
    vids.mkdir()
    write_video(vids / "b.mp4", _frames(2), fps=8)
    write_video(vids / "a.mp4", _frames(3), fps=8)
    (vids / "notes.txt").write_text("not a video")
    for spec, name in ((str(vids), "folder"), (str(vids / "*.mp4"), "glob")):
        out = tmp_path / name
        argv = ["predict", "--weights", str(weights), "--input", spec, "--out", str(out), "--viz",
                "--no-progress"]
        assert main(argv) == 0
        _check_results(out / "results.json", {1: 3, 2: 2}, video_ids=(1, 2))  # a.mp4 is video 1
        listing = json.loads((out / "sources.json").read_text())
        assert [(s["video_id"], s["input"], s["frames"]) for s in listing] == [
            (1, str(vids / "a.mp4"), 3), (2, str(vids / "b.mp4"), 2)]
        assert probe(out / "videos" / "2" / "overlay.mp4")[0] == 2
    assert "tracks in 2 inputs" in capsys.readouterr().out
    assert main(["predict", "--weights", str(weights), "--input", str(tmp_path / "*.avi"), "--out",
                 str(tmp_path / "none")]) == 2
    assert "matches no video file or frame folder" in capsys.readouterr().err


def test_predict_dataset_missing_frame_names_folder_and_images_flag(tmp_path, weights, capsys):
    videos = [{"id": 3, "file_names": ["v3/0.jpg"], "height": 60, "width": 80, "length": 1}]
    gt = {"videos": videos, "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    argv = ["predict", "--weights", str(weights), "--input", str(tmp_path / "gt.json"), "--out",
            str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'v3/0.jpg' (video id 3" in err and f"image folder {tmp_path}" in err and "--images" in err
    assert "Traceback" not in err


def test_predict_http_stream_live_prints_frames_per_second(tmp_path, weights, capsys):
    """An http:// URL is a stream (not a file path); --live drops frames and reports the rate achieved."""
    import functools
    import http.server
    import threading

    write_video(tmp_path / "clip.mp4", _frames(4), fps=8)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    try:
        out = tmp_path / "out"
        argv = ["predict", "--weights", str(weights), "--input", url, "--out", str(out), "--no-progress"]
        assert main(argv) == 0
        _check_results(out / "results.json", {1: 4})
        assert main([*argv[:-3], "--out", str(tmp_path / "live"), "--live", "--viz", "--no-progress"]) == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    err = capsys.readouterr().err
    assert f"{url}: " in err and "frames processed at" in err and "frames/s" in err and "dropped" in err
    processed = int(err.split(f"{url}: ")[1].split(" frames processed")[0])
    results = json.loads((tmp_path / "live" / "results.json").read_text())
    assert 1 <= processed <= 4 and all(len(e["segmentations"]) == processed for e in results)
    assert probe(tmp_path / "live" / "overlay.mp4")[0] == processed  # drawn live, frame by frame
