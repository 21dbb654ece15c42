"""Input sources of `streamvis predict`: what a user types after ``--input``, as streams of BGR frames.

`resolve_sources` turns one ``--input`` value into one or more `Source` objects, each read by
the same `streamvis.engine.predict.VideoPredictor`:

- a video file (``clip.mp4``) or a folder of png/jpg frames: one source (read by `data/video.py`);
- a folder of video files, or a folder of frame folders: one source per entry, in name order;
- a glob (``'vids/*.mp4'``, quoted so the shell leaves it alone; ``**`` recurses): one source per match;
- a stream URL: ``rtsp://``, ``rtmp://``, ``udp://``, ``srt://``, ``http(s)://`` (an MP4 or an HLS
  ``.m3u8`` on a server, an MJPEG camera), opened by FFmpeg through PyAV;
- a webcam index (``0``): ``/dev/video0`` through FFmpeg's v4l2 input on Linux, ``avfoundation``
  on macOS, ``dshow`` on Windows (FFmpeg names DirectShow devices, so pass
  ``video=NAME`` there).

Live sources (webcam, rtsp/rtmp/udp/srt, an http stream without a known length) are read by a
background thread that keeps only the newest frame (`LiveFrames`): when the model is slower
than the source, frames are dropped instead of queued, so the output stays current and memory
stays bounded. A file is never live unless asked (``live=True``).
"""

from __future__ import annotations

import glob
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamvis.errors import DataFormatError, StreamvisError

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt")
URL_SCHEMES = (*LIVE_SCHEMES, "http", "https")
# seconds FFmpeg waits to open a stream / for the next packet before giving up (PyAV ``timeout``)
STREAM_OPEN_TIMEOUT_S = 10.0
STREAM_READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Source:
    """One stream of frames.

    Attributes:
        name: what messages show (the path, the URL, ``webcam 0``).
        kind: ``"video"`` (a file), ``"frames"`` (a frame folder), ``"url"`` or ``"webcam"``.
        location: the path, URL or device FFmpeg opens.
        live: frames are dropped when the model is slower than the source (`LiveFrames`).
        input_format: FFmpeg input format (``v4l2``, ``avfoundation``, ``dshow``) or None.
    """

    name: str
    kind: str
    location: str
    live: bool = False
    input_format: str | None = None
    options: dict = field(default_factory=dict, compare=False)

    def frames(self, *, strict: bool = False) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 BGR frames in order (every frame; `LiveFrames` drops).

        Args:
            strict: a video corrupt mid-stream raises instead of ending with a warning after the
                frames decoded so far (`streamvis.data.video.read_frames`).
        """
        if self.kind in ("video", "frames"):
            from streamvis.data.video import read_frames

            return read_frames(self.location, strict=strict)
        return _stream_frames(self)

    def probe(self) -> tuple[int | None, float | None]:
        """(frame count or None when unknown, frames per second or None)."""
        if self.kind in ("video", "frames"):
            from streamvis.data.video import probe

            num_frames, _, _, fps = probe(self.location)
            return num_frames, fps
        container = _open_stream(self)
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return (int(stream.frames) or None), (float(rate) if rate else None)
        finally:
            container.close()


def is_url(text: str) -> bool:
    """True for ``scheme://...`` with a scheme FFmpeg streams from (`URL_SCHEMES`)."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def webcam_source(index: int) -> Source:
    """The platform's webcam `index` as a live source (see the module docstring)."""
    if sys.platform.startswith("linux"):
        return Source(f"webcam {index}", "webcam", f"/dev/video{index}", live=True, input_format="v4l2")
    if sys.platform == "darwin":
        return Source(f"webcam {index}", "webcam", str(index), live=True, input_format="avfoundation",
                      options={"framerate": "30"})
    return Source(f"webcam {index}", "webcam", f"video={index}", live=True, input_format="dshow")


def resolve_sources(spec: str, *, live: bool | None = None) -> list[Source]:
    """The sources one ``--input`` value names (see the module docstring).

    Args:
        spec: a path, folder, glob, URL or webcam index.
        live: force live reading on (True) or off (False); None decides by the kind of source.

    Returns:
        One or more sources, in a stable order (names sorted).

    Raises:
        StreamvisError: nothing readable is named; the message says what was tried.
    """
    spec = str(spec)
    if spec.isdigit():
        source = webcam_source(int(spec))
        return [_with_live(source, live)]
    if is_url(spec):
        scheme = spec.partition("://")[0].lower()
        is_live = scheme in LIVE_SCHEMES if live is None else live
        options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
        return [Source(spec, "url", spec, live=is_live, options=options)]
    path = Path(spec)
    if path.exists():
        sources = _path_sources(path)
    elif any(ch in spec for ch in "*?["):
        matches = sorted(glob.glob(spec, recursive=True))
        sources = [s for match in matches for s in _match_sources(Path(match))]
        if not sources:
            raise StreamvisError(f"{spec}: the pattern matches no video file or frame folder "
                                 f"({len(matches)} paths matched)")
    else:
        raise StreamvisError(
            f"{spec}: no such video, frame folder or dataset json (an input can also be a folder of "
            "videos, a quoted glob like 'vids/*.mp4', an rtsp:// or http(s):// URL, or a webcam index "
            "like 0)")
    return [_with_live(s, live) for s in sources]


def _with_live(source: Source, live: bool | None) -> Source:
    if live is None or live == source.live:
        return source
    return Source(source.name, source.kind, source.location, live=live, input_format=source.input_format,
                  options=source.options)


def _has_frames(folder: Path) -> bool:
    from streamvis.data.video import IMAGE_SUFFIXES

    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _path_sources(path: Path) -> list[Source]:
    from streamvis.data.video import is_video_file

    if path.is_file():
        return [Source(str(path), "video", str(path))]
    if _has_frames(path):
        return [Source(str(path), "frames", str(path))]
    entries = sorted(path.iterdir())
    videos = [Source(str(p), "video", str(p)) for p in entries if p.is_file() and is_video_file(p)]
    folders = [Source(str(p), "frames", str(p)) for p in entries if p.is_dir() and _has_frames(p)]
    if not videos and not folders:
        raise StreamvisError(f"{path}: the folder holds no .png/.jpg frames, no video files and no "
                             "frame folders")
    return videos + folders


def _match_sources(path: Path) -> list[Source]:
    from streamvis.data.video import is_video_file

    if path.is_file() and is_video_file(path):
        return [Source(str(path), "video", str(path))]
    if path.is_dir() and _has_frames(path):
        return [Source(str(path), "frames", str(path))]
    return []


def _av():
    import av  # lazy: importing PyAV loads FFmpeg's libraries

    return av


def _open_stream(source: Source):
    av = _av()
    if source.input_format and source.input_format not in av.formats_available:
        raise StreamvisError(
            f"{source.name}: this FFmpeg build has no '{source.input_format}' input, so it cannot open "
            "the camera; pass a video file or a stream URL instead")
    try:
        container = av.open(source.location, format=source.input_format, options=dict(source.options),
                            timeout=(STREAM_OPEN_TIMEOUT_S, STREAM_READ_TIMEOUT_S))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise StreamvisError(f"{source.name}: cannot open the stream ({err})") from None
    if not container.streams.video:
        container.close()
        raise DataFormatError("the stream has no video", path=source.name)
    return container


def _stream_frames(source: Source) -> Iterator[np.ndarray]:
    av = _av()
    container = _open_stream(source)
    try:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")
    except av.FFmpegError as err:
        raise StreamvisError(f"{source.name}: the stream broke off ({err})") from None
    finally:
        container.close()


class LiveFrames:
    """Iterate over the newest frame of a source; frames that arrive while the consumer is busy are dropped.

    A daemon thread reads `frames` as fast as the source delivers them into a one-frame slot;
    each step of the iteration takes the newest frame (waiting if none is new). At most one
    decoded frame waits, however slow the consumer.

    Args:
        frames: an iterator of frames (e.g. `Source.frames()`).
        clock: seconds, monotonic (tests pass their own).

    Attributes:
        frames_read, frames_processed, frames_dropped: counts so far.
    """

    def __init__(self, frames, *, clock=time.monotonic):
        self._frames = frames
        self._clock = clock
        self._condition = threading.Condition()
        self._latest: np.ndarray | None = None
        self._done = False
        self._error: BaseException | None = None
        self._stop = False
        self.frames_read = 0
        self.frames_processed = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None

    @property
    def frames_dropped(self) -> int:
        """Frames read but never handed out (the consumer was busy)."""
        pending = 1 if self._latest is not None else 0
        return self.frames_read - self.frames_processed - pending

    def _read(self) -> None:
        try:
            for frame in self._frames:
                with self._condition:
                    if self._stop:
                        return
                    self._latest = frame
                    self.frames_read += 1
                    self._condition.notify()
        except BaseException as err:  # noqa: BLE001 (handed to the consumer's thread)
            with self._condition:
                self._error = err
        finally:
            with self._condition:
                self._done = True
                self._condition.notify()

    def __iter__(self) -> Iterator[np.ndarray]:
        self.started_at = self._clock()
        thread = threading.Thread(target=self._read, name="streamvis-live-reader", daemon=True)
        thread.start()
        try:
            while True:
                with self._condition:
                    self._condition.wait_for(lambda: self._latest is not None or self._done)
                    frame, self._latest = self._latest, None
                    if frame is None:  # done and nothing new
                        if self._error is not None:
                            raise self._error
                        return
                    self.frames_processed += 1
                yield frame
        finally:
            self.finished_at = self._clock()
            with self._condition:
                self._stop = True

    @property
    def frames_per_second(self) -> float:
        """Frames processed per second of wall time so far (0 before the first)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else self._clock()
        return self.frames_processed / max(end - self.started_at, 1e-9)

    def summary(self, name: str) -> str:
        """One line: frames processed, achieved frames/s, frames dropped."""
        return (f"{name}: {self.frames_processed} frames processed at {self.frames_per_second:.1f} frames/s, "
                f"{self.frames_dropped} dropped (read {self.frames_read}; frames are dropped when the "
                "model is "
                "slower than the source)")


def check_dataset_frames(gt: dict, image_root, json_path, *, images_given: bool) -> None:
    """Check that every video's frames are under `image_root`, before any work.

    Raises:
        StreamvisError: the first missing frame, with the folder tried and how to point elsewhere
            (``--images``).
    """
    root = Path(image_root)
    for video in gt.get("videos", []):
        for index, name in enumerate(video.get("file_names") or []):
            if not (root / name).is_file():
                how = "the --images folder" if images_given else (
                    "the json's folder, or its JPEGImages/ when the first frame is there")
                raise StreamvisError(
                    f"{json_path}: frame {name!r} (video id {video['id']}, frame {index}) is not in the "
                    "image "
                    f"folder {root} (tried {root / name}; the folder used is {how}); give the folder that "
                    "holds the frames with --images")
