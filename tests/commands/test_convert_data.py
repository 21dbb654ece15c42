"""`streamvis convert-data`: every format to YouTube-VIS and back, results export, category maps, exit 2."""

from __future__ import annotations

import importlib.util
import json

import pytest
from tests.data.formats.conftest import make_dataset, masks_by_object

from streamvis.cli import main
from streamvis.data.formats.common import build_results, dataset_videos
from streamvis.data.ytvis import load_results, load_ytvis, write_results, write_ytvis


@pytest.fixture
def gt_json(tmp_path):
    path = tmp_path / "gt.json"
    write_ytvis(path, make_dataset())
    return path


@pytest.mark.parametrize("fmt", ["coco-video", "cvat", "labelme", "bdd-mots", "davis"])
def test_ytvis_to_format_and_back(fmt, gt_json, tmp_path, capsys):
    out = tmp_path / fmt
    assert (
        main(["convert-data", "--from", "ytvis", "--input", str(gt_json), "--to", fmt, "--out", str(out)])
        == 0
    )
    back_dir = tmp_path / "back"
    source = out / "annotations.json" if fmt == "coco-video" else out
    assert (
        main(["convert-data", "--from", fmt, "--input", str(source), "--to", "ytvis", "--out", str(back_dir)])
        == 0
    )
    printed = capsys.readouterr().out
    assert f"{fmt} -> ytvis (ground truth): 2 videos, 8 frames, 3 tracks, 10 masks" in printed
    back = load_ytvis(back_dir / "annotations.json")
    expected = masks_by_object(make_dataset())
    if fmt == "davis":  # class-agnostic: compare masks and ids only
        expected = {k: ("object", v) for k, (_, v) in expected.items()}
    assert masks_by_object(back) == expected


def test_category_map_applies_before_writing(gt_json, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "convert-data",
        "--from",
        "ytvis",
        "--input",
        str(gt_json),
        "--to",
        "ytvis",
        "--out",
        str(out),
        "--category-map",
        "pedestrian=person,car=",
    ]
    assert main(argv) == 0
    data = load_ytvis(out / "annotations.json")
    assert data["categories"] == [{"id": 1, "name": "person"}] and len(data["annotations"]) == 1
    assert "tracks per class: person 1" in capsys.readouterr().out


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "labels" / "v"
    folder.mkdir(parents=True)
    (folder / "0001.json").write_text(json.dumps({"shapes": [], "imageHeight": 4, "imageWidth": 4}))
    (folder / "0002.json").write_text(json.dumps({"shapes": [], "imageHeight": 5, "imageWidth": 4}))
    out = tmp_path / "out"
    code = main(["convert-data", "--from", "labelme", "--input", str(tmp_path / "labels"), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "convert-data: error:" in err and "0002.json" in err and "imageHeight" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["labels"]


def test_overlapping_gt_to_davis_exits_2_without_output(tmp_path, capsys):
    data = make_dataset()
    data["annotations"][1]["segmentations"][2] = data["annotations"][0]["segmentations"][2]
    write_ytvis(tmp_path / "gt.json", data)
    code = main(
        [
            "convert-data",
            "--from",
            "ytvis",
            "--input",
            str(tmp_path / "gt.json"),
            "--to",
            "davis",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "overlap" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_predict_results_to_instance_pngs_and_back(gt_json, tmp_path):
    gt = load_ytvis(gt_json)
    videos = dataset_videos(gt)
    for video in videos:
        for track in video.tracks:
            track.score = 0.8
    results = [{k: v for k, v in r.items() if k != "track_id"} for r in build_results(videos, gt)]
    write_results(tmp_path / "results.json", results, gt)
    pngs = tmp_path / "pngs"
    argv = [
        "convert-data",
        "--results",
        "--gt",
        str(gt_json),
        "--from",
        "ytvis",
        "--input",
        str(tmp_path / "results.json"),
        "--to",
        "bdd-mots",
        "--out",
        str(pngs),
    ]
    assert main(argv) == 0
    back = tmp_path / "back"
    argv = [
        "convert-data",
        "--results",
        "--gt",
        str(gt_json),
        "--from",
        "bdd-mots",
        "--input",
        str(pngs),
        "--to",
        "ytvis",
        "--out",
        str(back),
    ]
    assert main(argv) == 0
    entries = load_results(back / "results.json", gt)
    assert len(entries) == 3 and {e["category_id"] for e in entries} == {1, 2}
    assert (
        main(
            [
                "convert-data",
                "--results",
                "--from",
                "ytvis",
                "--input",
                str(tmp_path / "results.json"),
                "--to",
                "davis",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )  # results need --gt


def test_unknown_option_is_named(gt_json, tmp_path, capsys):
    argv = [
        "convert-data",
        "--from",
        "ytvis",
        "--input",
        str(gt_json),
        "--to",
        "davis",
        "--out",
        str(tmp_path / "o"),
        "--write-option",
        "palette=vga",
    ]
    assert main(argv) == 2
    assert (
        "davis write_gt does not take the option(s) ['palette']; it takes ['overlap', 'overwrite']"
        in capsys.readouterr().err
    )


@pytest.mark.skipif(
    importlib.util.find_spec("streamvis.data.formats.kitti_mots") is None,
    reason="kitti_mots is written on the metrics branch",
)
def test_results_to_kitti_mots_txt(gt_json, tmp_path):
    gt = load_ytvis(gt_json)
    videos = dataset_videos(gt)
    for video in videos:
        for track in video.tracks:
            track.score = 0.7
    write_results(tmp_path / "results.json", build_results(videos, gt), gt)
    argv = [
        "convert-data",
        "--results",
        "--gt",
        str(gt_json),
        "--from",
        "ytvis",
        "--input",
        str(tmp_path / "results.json"),
        "--to",
        "kitti-mots",
        "--out",
        str(tmp_path / "mots"),
        "--category-map",
        "pedestrian=pedestrian",
    ]
    assert main(argv) == 0
    assert any(p.suffix == ".txt" for p in (tmp_path / "mots").rglob("*"))


def test_tracks_without_masks_are_noted_and_cvat_skips_them(tmp_path, capsys):
    data = make_dataset()
    data["annotations"][2]["segmentations"] = [None, None, None]
    write_ytvis(tmp_path / "gt.json", data)
    argv = [
        "convert-data",
        "--from",
        "ytvis",
        "--input",
        str(tmp_path / "gt.json"),
        "--to",
        "cvat",
        "--out",
        str(tmp_path / "cvat"),
    ]
    assert main(argv) == 0
    assert (
        "note: 1 tracks have no non-empty mask; cvat stores objects frame by frame" in capsys.readouterr().out
    )
    argv = [
        "convert-data",
        "--from",
        "cvat",
        "--input",
        str(tmp_path / "cvat"),
        "--out",
        str(tmp_path / "back"),
    ]
    assert main(argv) == 0
    assert len(load_ytvis(tmp_path / "back" / "annotations.json")["annotations"]) == 2
