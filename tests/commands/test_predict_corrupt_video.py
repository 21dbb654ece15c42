"""`streamvis predict` on an MP4 that is corrupt mid-stream: results for the frames decoded before it."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from tests.fuzz.corpus import tiny_weights_file

from streamvis.cli import main
from streamvis.data.video import VideoDecodeWarning, read_frames, write_video
from streamvis.data.ytvis import load_results


@pytest.fixture(scope="module")
def corrupt_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corrupt")
    frames = [np.full((60, 80, 3), (12 * i, 100, 200 - 6 * i), np.uint8) for i in range(16)]
    for i, frame in enumerate(frames):
        frame[10:30, 10 + i : 40 + i] = 255
    clean = folder / "clean.mp4"
    write_video(clean, frames)
    with av.open(str(clean)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clean.read_bytes())
    pos, size = packets[10]
    data[pos : pos + size] = b"\xff" * size  # the decoder fails at this packet
    path = folder / "corrupt.mp4"
    path.write_bytes(bytes(data))
    return path


def test_predict_keeps_the_decoded_frames_and_warns(corrupt_video, tmp_path, capsys):
    with pytest.warns(VideoDecodeWarning) as caught:
        kept = len(list(read_frames(corrupt_video)))
    assert 0 < kept < 16 and f"decoding stopped at frame {kept}" in str(caught[0].message)
    weights = tiny_weights_file(tmp_path / "tiny.pth")
    out = tmp_path / "out"
    code = main(["predict", "--weights", str(weights), "--input", str(corrupt_video), "--out", str(out),
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().err  # the CLI prints warnings as one line each
    assert "streamvis predict: warning:" in printed and f"decoding stopped at frame {kept}" in printed
    results = json.loads((out / "results.json").read_text())
    assert results and all(len(entry["segmentations"]) == kept for entry in results)
    gt = {"videos": [{"id": results[0]["video_id"], "width": 80, "height": 60, "length": kept,
                      "file_names": [f"{i}.jpg" for i in range(kept)]}],
          "categories": [{"id": c, "name": str(c)} for c in {e["category_id"] for e in results}]}
    load_results(results, gt)  # valid results of the kept frames


def test_predict_strict_fails_and_writes_nothing(corrupt_video, tmp_path, capsys):
    weights = tiny_weights_file(tmp_path / "tiny.pth")
    out = tmp_path / "out"
    code = main(["predict", "--weights", str(weights), "--input", str(corrupt_video), "--out", str(out),
                 "--no-progress", "--strict"])
    assert code == 2
    assert "corrupt.mp4" in capsys.readouterr().err
    assert not (out / "results.json").exists()
