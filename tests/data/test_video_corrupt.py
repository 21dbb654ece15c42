"""Corrupt, truncated and size-changing videos: the frames decoded so far are kept with a warning
naming the frame where decoding stopped, or (strict) a DataFormatError naming it."""

from __future__ import annotations

import warnings

import av
import numpy as np
import pytest
from PIL import Image

from streamvis.data.video import VideoDecodeWarning, read_frames, write_video
from streamvis.errors import DataFormatError


def _frames(n, h=48, w=64):
    return [np.full((h, w, 3), (10 * i, 100, 200 - 5 * i), np.uint8) for i in range(n)]


def _read(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(read_frames(path, **kwargs))
    return frames, [w for w in caught if issubclass(w.category, VideoDecodeWarning)]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clean.mp4"
    write_video(path, _frames(20))
    return path


def _corrupt_packet(clean, out, packet_index):
    """Overwrite one packet's bytes (found with the demuxer) with 0xFF: the decoder fails there."""
    with av.open(str(clean)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clean.read_bytes())
    pos, size = packets[packet_index]
    data[pos : pos + size] = b"\xff" * size
    out.write_bytes(bytes(data))
    return out


def test_corrupt_mid_stream_keeps_the_frames_before_it_and_warns_with_the_index(clean, tmp_path):
    path = _corrupt_packet(clean, tmp_path / "corrupt.mp4", 10)
    expected = list(read_frames(clean))
    frames, caught = _read(path)
    assert 0 < len(frames) < 20
    for got, want in zip(frames, expected):
        np.testing.assert_array_equal(got, want)  # the kept frames are exactly the clean ones
    (warning,) = caught
    assert f"decoding stopped at frame {len(frames)}" in str(warning.message)
    assert f"keeping the {len(frames)} frames" in str(warning.message) and str(path) in str(warning.message)


def test_strict_raises_naming_the_frame(clean, tmp_path):
    path = _corrupt_packet(clean, tmp_path / "corrupt.mp4", 10)
    kept, _ = _read(path)
    with pytest.raises(DataFormatError, match=rf"corrupt\.mp4: decoding stopped at frame {len(kept)}: "):
        list(read_frames(path, strict=True))
    assert len(list(read_frames(clean, strict=True))) == 20  # a clean video is fine in strict mode


def test_truncated_faststart_mp4_warns_that_the_stream_ends_early(clean, tmp_path):
    """With the index ('moov') first, a truncated file opens; the missing frames are noticed."""
    faststart = tmp_path / "fs.mp4"
    with av.open(str(clean)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = faststart.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.85)])
    frames, caught = _read(truncated)
    assert 0 < len(frames) < 20 and len(caught) == 1
    assert f"decoding stopped at frame {len(frames)}" in str(caught[0].message)
    with pytest.raises(DataFormatError, match="decoding stopped at frame"):
        list(read_frames(truncated, strict=True))


def test_truncated_mp4_without_its_index_is_a_clear_error(clean, tmp_path):
    """Cut before the first frame's data, or without the index: nothing can be kept, so it raises."""
    data = clean.read_bytes()
    path = tmp_path / "cut.mp4"
    for end in (len(data) // 2, 100):
        path.write_bytes(data[:end])
        message = r"cut\.mp4: (cannot open as a video|decoding stopped at frame 0)"
        with pytest.raises(DataFormatError, match=message):
            list(read_frames(path))


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_empty_or_not_a_video(tmp_path, content):
    path = tmp_path / "x.mp4"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=r"x\.mp4: "):
        list(read_frames(path))


def _raw_h264(path, frames):
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs an H.264 encoder")
def test_a_frame_size_change_stops_the_video_there(tmp_path):
    first = _raw_h264(tmp_path / "a.h264", _frames(5, 48, 64))
    second = _raw_h264(tmp_path / "b.h264", _frames(5, 32, 32))
    path = tmp_path / "variable.h264"
    path.write_bytes(first + second)
    frames, caught = _read(path)
    assert len(frames) == 5 and {f.shape for f in frames} == {(48, 64, 3)}
    assert "frame size changes from 48x64 to 32x32" in str(caught[0].message)
    with pytest.raises(DataFormatError, match="decoding stopped at frame 5: the frame size changes"):
        list(read_frames(path, strict=True))


def test_frame_folders_are_strict(tmp_path):
    for i in range(3):
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / f"{i:03d}.png")
    Image.fromarray(np.zeros((9, 10, 3), np.uint8)).save(tmp_path / "003.png")
    message = r"003\.png: the frame is 9x10 but the folder's first frame is 8x10"
    with pytest.raises(DataFormatError, match=message):
        list(read_frames(tmp_path))
    (tmp_path / "003.png").write_bytes((tmp_path / "000.png").read_bytes()[:40])  # truncated PNG
    with pytest.raises(DataFormatError, match=r"003\.png: cannot decode image"):
        list(read_frames(tmp_path))
