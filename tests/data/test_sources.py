"""`streamvis.data.sources`: what --input may name, and live reading that drops frames."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import numpy as np
import pytest

from streamvis.data.sources import LiveFrames, Source, is_url, resolve_sources, webcam_source
from streamvis.data.video import write_video
from streamvis.errors import StreamvisError


def _frames(count, height=32, width=48):
    return [np.full((height, width, 3), 20 * i, np.uint8) for i in range(count)]


@pytest.fixture
def http_root(tmp_path):
    """A python http.server on 127.0.0.1 (any free port) serving tmp_path; shut down after the test."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))

    class Quiet(handler.func):
        def log_message(self, *args):  # keep the test output clean
            pass

    quiet = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_mp4_is_one_stream_with_every_frame(http_root):
    root, base = http_root
    write_video(root / "clip.mp4", _frames(5), fps=5)
    (source,) = resolve_sources(f"{base}/clip.mp4")
    assert source.kind == "url" and not source.live and source.location == f"{base}/clip.mp4"
    assert source.probe() == (5, 5.0)
    frames = list(source.frames())
    assert len(frames) == 5 and frames[0].shape == (32, 48, 3)
    assert [int(round(f.mean())) for f in frames] == pytest.approx([0, 20, 40, 60, 80], abs=3)
    (live,) = resolve_sources(f"{base}/clip.mp4", live=True)
    reader = LiveFrames(live.frames())
    assert len(list(reader)) == reader.frames_processed and reader.frames_read == 5
    with pytest.raises(StreamvisError, match="cannot open the stream"):
        list(Source("missing", "url", f"{base}/missing.mp4").frames())


def test_folder_of_videos_glob_and_frame_folders(tmp_path):
    write_video(tmp_path / "b.mp4", _frames(2))
    write_video(tmp_path / "a.mp4", _frames(3))
    (tmp_path / "readme.txt").write_text("x")
    names = [s.name for s in resolve_sources(str(tmp_path))]
    assert names == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert [s.name for s in resolve_sources(str(tmp_path / "b*.mp4"))] == [str(tmp_path / "b.mp4")]
    (single,) = resolve_sources(str(tmp_path / "a.mp4"))
    assert single.kind == "video" and len(list(single.frames())) == 3
    frames_root = tmp_path / "JPEGImages"
    for video in ("v2", "v1"):
        (frames_root / video).mkdir(parents=True)
        from PIL import Image

        Image.fromarray(_frames(1)[0]).save(frames_root / video / "00000.png")
    sources = resolve_sources(str(frames_root))  # a folder of frame folders
    assert [(s.kind, s.name) for s in sources] == [("frames", str(frames_root / "v1")),
                                                   ("frames", str(frames_root / "v2"))]
    assert [s.kind for s in resolve_sources(str(frames_root / "v1"))] == ["frames"]
    with pytest.raises(StreamvisError, match="matches no video file"):
        resolve_sources(str(tmp_path / "*.avi"))
    with pytest.raises(StreamvisError, match="webcam index"):
        resolve_sources(str(tmp_path / "nope.mp4"))


def test_urls_and_webcams_are_not_paths():
    (rtsp,) = resolve_sources("rtsp://camera.local:554/stream1")
    assert rtsp.kind == "url" and rtsp.live and rtsp.options == {"rtsp_transport": "tcp"}
    assert rtsp.location == "rtsp://camera.local:554/stream1"  # not mangled into a file path
    assert is_url("HTTPS://x/y.m3u8") and not is_url("clip.mp4") and not is_url("file://x")
    (camera,) = resolve_sources("0")
    assert camera.kind == "webcam" and camera.live and camera == webcam_source(0)
    assert resolve_sources("0", live=False)[0].live is False


def test_live_reading_drops_frames_when_the_consumer_is_slower():
    produced = 200
    reader = LiveFrames(iter([np.full((2, 2, 3), i, np.uint8) for i in range(produced)]))
    seen = []
    for frame in reader:
        seen.append(int(frame[0, 0, 0]))
        time.sleep(0.02)  # a model much slower than a source that has every frame ready at once
    assert reader.frames_read == produced
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # newest first, never twice, never back
    assert seen[-1] == produced - 1  # the newest frame at the end is not lost
    assert reader.frames_dropped == produced - len(seen) > 0
    assert reader.frames_processed == len(seen)
    summary = reader.summary("cam")
    assert f"{len(seen)} frames processed at" in summary and f"{reader.frames_dropped} dropped" in summary


def test_live_reading_hands_on_source_errors():
    def broken():
        yield np.zeros((2, 2, 3), np.uint8)
        raise StreamvisError("the stream broke off")

    reader = LiveFrames(broken())
    with pytest.raises(StreamvisError, match="broke off"):
        for _ in reader:
            time.sleep(0.01)


def test_achieved_frames_per_second_uses_the_clock():
    ticks = iter([0.0, 4.0])
    reader = LiveFrames(iter(_frames(2)), clock=lambda: next(ticks))
    for _ in reader:
        time.sleep(0.01)
    assert reader.frames_processed >= 1
    assert reader.frames_per_second == pytest.approx(reader.frames_processed / 4.0)
