"""Output paths that cannot be written (a folder of that name, a missing read-only location) give a
one-paragraph streamvis error naming the path, not an OSError traceback; nothing is left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.fuzz import corpus

from streamvis.data.video import write_video
from streamvis.errors import StreamvisError
from streamvis.utils.io import atomic_write_json


def test_atomic_write_to_a_folder_name_is_a_clear_error(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(StreamvisError, match=r"out: cannot write the output file \(it is a folder\)"):
        atomic_write_json(tmp_path / "out", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary file left
    with pytest.raises(StreamvisError, match="cannot write the output file"):
        atomic_write_json("/proc/no_such_place/x.json", {"a": 1})


def test_video_writer_to_a_folder_name_is_a_clear_error(tmp_path):
    (tmp_path / "v.mp4").mkdir()
    with pytest.raises(StreamvisError, match=r"v\.mp4: cannot write the output file \(it is a folder\)"):
        write_video(tmp_path / "v.mp4", [np.zeros((8, 8, 3), np.uint8)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.parametrize("command", ["check-dataset", "evaluate"])
def test_cli_out_pointing_at_a_folder_exits_2(tmp_path, command):
    seeds = corpus.Seeds(tmp_path / "seeds")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "results.json").write_text(json.dumps(seeds.results))
    argv = {
        "check-dataset": ["check-dataset", "--gt", str(seeds.gt_json), "--images", str(seeds.images),
                          "--no-progress", "--out", str(out)],
        "evaluate": ["evaluate", "--gt", str(seeds.gt_json), "--results", str(tmp_path / "results.json"),
                     "--out", str(out)],
    }[command]
    outcome, detail = corpus.run_cli(argv, folder=tmp_path)
    assert outcome == "error" and "cannot write the output file (it is a folder)" in detail, detail
