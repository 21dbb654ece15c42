"""Video I/O: MP4 round trip, odd sizes, frame folders, atomic writes, errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from streamvis.data.video import VideoWriter, is_video_file, probe, read_frames, write_video
from streamvis.errors import DataFormatError, StreamvisError


def _frames(n=6, h=32, w=48):
    # flat colours survive lossy encoding well: the mean error stays small
    return [np.full((h, w, 3), (20 * i, 120, 250 - 30 * i), np.uint8) for i in range(n)]


def test_mp4_round_trip(tmp_path):
    frames = _frames()
    assert write_video(tmp_path / "v.mp4", frames, fps=12) == 6
    assert probe(tmp_path / "v.mp4") == (6, 32, 48, 12.0)
    decoded = list(read_frames(tmp_path / "v.mp4"))
    assert len(decoded) == 6
    for got, want in zip(decoded, frames):
        assert got.dtype == np.uint8 and got.shape == (32, 48, 3)
        assert np.abs(got.astype(int) - want).mean() < 6  # BGR order kept (a swap would differ by ~200)


def test_odd_size_is_padded_to_even(tmp_path):
    frames = _frames(3, h=31, w=45)
    write_video(tmp_path / "odd.mp4", frames)
    decoded = list(read_frames(tmp_path / "odd.mp4"))
    assert decoded[0].shape == (32, 46, 3)
    assert np.abs(decoded[1][:31, :45].astype(int) - frames[1]).mean() < 6


def test_writer_is_atomic_and_cleans_up_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "x.mp4") as writer:
            writer.write(_frames(1)[0])
            assert not (tmp_path / "x.mp4").exists()  # only a temporary file so far
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_size_change_and_empty_video(tmp_path):
    with pytest.raises(ValueError, match="frame 1"):
        with VideoWriter(tmp_path / "x.mp4") as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            writer.write(np.zeros((18, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])
    assert list(tmp_path.iterdir()) == []


def test_frame_folder_sorted_by_name(tmp_path):
    colours = {"b_002.png": 200, "a_001.jpg": 10, "c_003.png": 100}
    for name, value in colours.items():
        Image.fromarray(np.full((8, 10, 3), (value, 0, 0), np.uint8)).save(tmp_path / name)  # RGB red = value
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(read_frames(tmp_path))
    assert [int(f[0, 0, 2]) for f in frames][1:] == [200, 100]  # red is channel 2 in BGR
    assert abs(int(frames[0][0, 0, 2]) - 10) <= 3  # jpeg is lossy
    assert probe(tmp_path) == (3, 8, 10, None)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(StreamvisError, match="missing.mp4"):
        list(read_frames(tmp_path / "missing.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 20)
    with pytest.raises(DataFormatError, match="bad.mp4"):
        probe(bad)
    with pytest.raises(DataFormatError, match="bad.mp4"):
        list(read_frames(bad))
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0001.png").write_bytes(b"broken png")
    with pytest.raises(DataFormatError, match="0001.png"):
        list(read_frames(folder))
    assert is_video_file("a/B.MP4") and not is_video_file(folder)


def test_default_image_root(tmp_path):
    from streamvis.data.video import default_image_root

    gt = {"videos": [{"file_names": ["v1/00000.jpg"]}]}
    assert default_image_root(tmp_path / "gt.json", gt) == tmp_path  # nothing found: the json's folder
    (tmp_path / "JPEGImages" / "v1").mkdir(parents=True)
    (tmp_path / "JPEGImages" / "v1" / "00000.jpg").write_bytes(b"")
    assert default_image_root(tmp_path / "gt.json", gt) == tmp_path / "JPEGImages"
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "00000.jpg").write_bytes(b"")
    assert default_image_root(tmp_path / "gt.json", gt) == tmp_path  # frames beside the json win
