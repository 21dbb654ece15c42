"""ID switches (`streamvis.evaluation.identity`) and `streamvis evaluate --id-switches`."""

from __future__ import annotations

import json

import numpy as np

from streamvis.cli import main
from streamvis.data.masks import encode_masks
from streamvis.evaluation.identity import IdSwitchCount, count_switches, id_switches, matched_track_ids


def _square(top: int, left: int, size: int = 4, shape=(10, 10)) -> dict:
    mask = np.zeros((1, *shape), dtype=bool)
    mask[0, top : top + size, left : left + size] = True
    return encode_masks(mask)[0]


def test_count_switches_skips_unmatched_frames():
    assert count_switches([]) == 0
    assert count_switches([None, 3, None, 3, 3]) == 0
    assert count_switches([1, None, 1, 2, None, 2, 1]) == 2


def test_id_switches_hand_built():
    a, b, far = _square(0, 0), _square(0, 1), _square(6, 6)  # IoU(a, b) = 12 / 20 = 0.6
    gt = {"videos": [{"id": 1, "height": 10, "width": 10, "length": 5}],
          "annotations": [{"video_id": 1, "iscrowd": 0, "segmentations": [a, a, a, a, None]}]}
    results = [
        {"video_id": 1, "score": 0.9, "segmentations": [a, a, None, far, a]},  # track 0: frames 0, 1
        {"video_id": 1, "score": 0.1, "segmentations": [b, None, a, None, None]},  # track 1: frame 2
    ]
    ids = matched_track_ids([gt["annotations"][0]["segmentations"]],
                                           [r["segmentations"] for r in results], 10, 10)
    assert ids == [[0, 0, 1, None, None]]  # frame 0: IoU 1.0 beats 0.6; frame 3: IoU 0 -> no match
    count = id_switches(gt, results)
    assert (count.switches, count.matched_frames, count.gt_frames) == (1, 3, 4)
    strict = id_switches(gt, results[1:], iou_threshold=0.7)  # b (0.6) no longer matches
    assert (strict.switches, strict.matched_frames) == (0, 1)
    confident = id_switches(gt, results, min_score=0.5)  # track 1 ignored: no switch
    assert (confident.switches, confident.matched_frames) == (0, 2)


def test_id_switches_without_results_or_gt():
    gt = {"videos": [{"id": 1, "height": 10, "width": 10, "length": 2}],
          "annotations": [{"video_id": 1, "iscrowd": 0, "segmentations": [_square(0, 0), None]}]}
    assert id_switches(gt, []) == IdSwitchCount(0, 0, 1)
    assert id_switches({**gt, "annotations": []}, []) == IdSwitchCount(0, 0, 0)


def test_evaluate_cli_reports_id_switches(tmp_path, capsys):
    a, b = _square(0, 0), _square(0, 1)
    gt = {"videos": [{"id": 1, "height": 10, "width": 10, "length": 3, "file_names": ["0", "1", "2"]}],
          "categories": [{"id": 1, "name": "thing"}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentations": [a, a, a], "areas": [16, 16, 16]}]}
    results = [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [a, a, None]},
               {"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": [None, None, b]}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(results))
    argv = ["evaluate", "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "r.json"),
            "--out", str(tmp_path / "m.json")]
    assert main([*argv, "--id-switches"]) == 0
    expected = "ID switches: 1 (3 of 3 visible ground-truth frames matched at mask IoU >= 0.5)"
    assert expected in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["id_switches"] == {"switches": 1, "matched_frames": 3, "gt_frames": 3}
    assert main(argv) == 0
    assert "ID switches" not in capsys.readouterr().out
    assert "id_switches" not in json.loads((tmp_path / "m.json").read_text())
