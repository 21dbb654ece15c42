"""`streamvis evaluate --metrics/--format/--seqmap`: tracking metrics beside AP, MOTS folders, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamvis.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
YTVIS = DATA / "ytvis_eval" / "case_013"
MOTS = DATA / "mots_eval"


def _close(got, expected, path=""):
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            _close(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for a, b in zip(got, expected):
            _close(a, b, path)
    elif isinstance(expected, (int, float)):
        assert got == pytest.approx(expected, abs=1e-9, rel=0), path
    else:
        assert got == expected, path


def test_all_metrics_beside_ap(tmp_path, capsys):
    out = tmp_path / "m.json"
    args = ["evaluate", "--gt", str(YTVIS / "gt.json"), "--results", str(YTVIS / "results.json")]
    assert main([*args, "--metrics", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    metrics = json.loads(out.read_text())
    expected_ap = json.loads((YTVIS / "expected.json").read_text())
    expected = json.loads((YTVIS / "expected_trackeval.json").read_text())["metrics"]
    assert metrics["stats_named"] == pytest.approx(expected_ap["stats_named"], abs=1e-9)  # AP keys kept
    assert set(metrics["tracking"]) == set(expected)  # shaped exactly like the golden `metrics`
    for key in ("cls_comb_cls_av", "cls_comb_det_av", "per_category", "per_video", "video_names"):
        _close(metrics["tracking"][key], expected[key], key)
    header = next(line for line in printed if line.lstrip().startswith("tracking"))
    assert header.split()[-6:] == ["HOTA", "DetA", "AssA", "IDF1", "MOTA", "AP"]
    class_av = next(line for line in printed if line.lstrip().startswith("class-averaged")).split()
    assert float(class_av[1]) == pytest.approx(expected["cls_comb_cls_av"]["HOTA"]["HOTA"], abs=5e-5)
    assert float(class_av[-1]) == pytest.approx(expected_ap["stats_named"]["AP"], abs=5e-5)


def test_tracking_families_without_ap(tmp_path, capsys):
    out = tmp_path / "m.json"
    args = ["evaluate", "--gt", str(YTVIS / "gt.json"), "--results", str(YTVIS / "results.json")]
    assert main([*args, "--metrics", "hota, identity", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Average Precision" not in printed
    metrics = json.loads(out.read_text())
    assert "stats_named" not in metrics
    assert set(metrics["tracking"]["cls_comb_det_av"]) == {"HOTA", "Identity", "Count"}
    assert metrics["tracking"]["metric_config"] == {"HOTA": {}, "Identity": {"THRESHOLD": 0.5}}


@pytest.mark.parametrize(
    ("case", "fmt", "results"),
    [
        ("case_004", "kitti-mots", "tracker/predictions/data"),
        ("case_012", "mots-challenge", "tracker/MOTS-train/predictions/data"),
    ],
)
def test_mots_folders(case, fmt, results, tmp_path, capsys):
    out = tmp_path / "m.json"
    folder = MOTS / case
    seqmap = (
        ["--seqmap", str(folder / "gt" / "seqmaps" / "MOTS-train.txt")] if fmt == "mots-challenge" else []
    )
    argv = ["evaluate", "--format", fmt, "--gt", str(folder / "gt"), "--results", str(folder / results)]
    assert main([*argv, *seqmap, "--out", str(out)]) == 0
    assert "MOTSA" in capsys.readouterr().out
    expected = json.loads((folder / "expected.json").read_text())
    tracking = json.loads(out.read_text())["tracking"]
    for name in expected["classes"]:
        _close(tracking["per_category"][name], expected["combined"][name], name)
    _close(tracking["cls_comb_cls_av"], expected["combined"]["cls_comb_cls_av"], "cls_av")
    _close(tracking["per_video"], expected["per_sequence"], "per_sequence")


def test_refusals_exit_2_without_traceback(tmp_path, capsys):
    base = ["evaluate", "--gt", str(YTVIS / "gt.json"), "--results", str(YTVIS / "results.json")]
    assert main([*base, "--metrics", "hota,mota"]) == 2
    assert "unknown metric(s) ['mota']" in capsys.readouterr().err
    mots = ["evaluate", "--format", "kitti-mots", "--gt", str(MOTS / "case_001" / "gt")]
    assert (
        main([*mots, "--results", str(MOTS / "case_001" / "tracker/predictions/data"), "--metrics", "ap"])
        == 2
    )
    assert "AP needs scored results" in capsys.readouterr().err
    out = tmp_path / "m.json"
    overlapping = str(MOTS / "case_013" / "tracker/predictions/data")
    mots13 = ["evaluate", "--format", "kitti-mots", "--gt", str(MOTS / "case_013" / "gt")]
    assert main([*mots13, "--results", overlapping, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "0001.txt: line" in err and "overlaps" in err and "Traceback" not in err
    assert not out.exists()
    shutil.copytree(MOTS / "case_001", tmp_path / "case")
    tracker = tmp_path / "case" / "tracker" / "predictions" / "data" / "0000.txt"
    lines = tracker.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:5])
    tracker.write_text("\n".join(lines) + "\n")
    argv = ["evaluate", "--format", "kitti-mots", "--gt", str(tmp_path / "case" / "gt")]
    assert main([*argv, "--results", str(tracker.parent)]) == 2
    err = capsys.readouterr().err
    assert f"{tracker}: line 3: a MOTS line has 6 space-separated fields" in err
