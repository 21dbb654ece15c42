"""Video input and output: read an MP4 or a folder of frames, write an H.264 MP4.

Frames are (H, W, 3) uint8 **BGR** numpy arrays everywhere, as the model expects
(reference facts.md, section 1). MP4 files are decoded and encoded with PyAV; frame folders hold
png/jpg files read in file-name order.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from streamvis.errors import DataFormatError, StreamvisError
from streamvis.utils.io import cannot_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def _av():
    import av  # lazy: importing PyAV loads FFmpeg's libraries

    return av


def _pick_codec() -> str:
    """libx264 (H.264, plays in browsers) when this FFmpeg build has it, else MPEG-4 part 2."""
    return "libx264" if "libx264" in _av().codecs_available else "mpeg4"


def _even_pad(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by one replicated row/column: yuv420p needs even sizes."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


class VideoWriter:
    """Write BGR frames into an MP4 file; the file appears only when the writer closes cleanly.

    Use as a context manager. Frames are encoded as they arrive (nothing is buffered), into a
    temporary file next to `path` that is renamed to `path` on `close()`; if the block raises,
    the temporary file is removed and `path` is untouched. Odd frame sizes are padded by one
    replicated row/column (H.264 in yuv420p needs even sizes).

    Args:
        path: output file (``.mp4``). Its parent folder is created.
        fps: frames per second.
        codec: FFmpeg encoder name; default libx264 when available, else mpeg4.
    """

    def __init__(self, path, fps: float = 10, *, codec: str | None = None):
        self.path = Path(path)
        self.fps = fps
        self.codec = codec or _pick_codec()
        self.num_frames = 0
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None  # (H, W) of the first frame, before padding
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp.mp4", dir=self.path.parent
            )
        except OSError as err:
            self._tmp = None
            raise cannot_write(self.path, err) from None
        os.close(fd)
        umask = os.umask(0)  # mkstemp makes 0600 files; give the MP4 the permissions open() would
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)

    def _open(self, height: int, width: int) -> None:
        av = _av()
        self._container = av.open(self._tmp, mode="w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(self.codec, rate=rate)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self._stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            self._stream.bit_rate = 4_000_000

    def write(self, frame_bgr: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 BGR frame; every frame must have the first frame's size."""
        frame_bgr = np.asarray(frame_bgr)
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame_bgr.shape} {frame_bgr.dtype}")
        if self._size is None:
            self._size = frame_bgr.shape[:2]
            self._open(*self._size)
        elif frame_bgr.shape[:2] != self._size:
            raise ValueError(f"frame {self.num_frames} is {frame_bgr.shape[:2]}, the video is {self._size}")
        frame = _av().VideoFrame.from_ndarray(np.ascontiguousarray(_even_pad(frame_bgr)), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file to `path`."""
        if self._tmp is None:
            return
        if self._container is None:
            self._discard()
            raise ValueError(f"no frames were written to {self.path}")
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        try:
            os.replace(self._tmp, self.path)
        except OSError as err:
            self._discard()
            raise cannot_write(self.path, err) from None
        self._tmp = None

    def _discard(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
        self._tmp = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._tmp is not None:
            self._discard()


def write_video(path, frames: Iterable[np.ndarray], fps: float = 10) -> int:
    """Write BGR frames to an MP4 at `path` atomically; returns the number of frames written."""
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.num_frames


def list_frame_files(folder) -> list[Path]:
    """The png/jpg files of `folder`, sorted by file name."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StreamvisError(f"{folder}: no .png/.jpg frames in this folder")
    return files


def read_image(path) -> np.ndarray:
    """Read one image file as (H, W, 3) uint8 BGR; a corrupt file raises DataFormatError."""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise StreamvisError(f"{path}: no such image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataFormatError(f"cannot decode image ({err})", path=path) from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise StreamvisError(f"{path}: no such video file or frame folder")


def _open_container(path: Path):
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DataFormatError(f"cannot open as a video ({err})", path=path) from None
    if not container.streams.video:
        container.close()
        raise DataFormatError("the file has no video stream", path=path)
    return container


class VideoDecodeWarning(UserWarning):
    """A video stopped decoding early (corrupt or truncated mid-stream); the frames before it were kept."""


def read_frames(path, *, strict: bool = False) -> Iterator[np.ndarray]:
    """Yield the frames of an MP4 (any FFmpeg-readable video) or a frame folder, one at a time.

    A video that cannot be decoded past some frame (corrupt or truncated mid-stream), or whose
    frame size changes, keeps the frames decoded before it: a `VideoDecodeWarning` names the frame
    index where decoding stopped and the reason. With ``strict=True`` a `DataFormatError` naming
    that frame is raised there instead (the consumer then writes nothing). A video whose index
    (``moov`` first) points past the end of the file, i.e. a truncated file, is treated the same.
    A file that yields no frame at all always raises. Frame folders are always strict: a frame
    file that does not decode, or has another size than the first, raises.

    (``streamvis predict`` reads with the default ``strict=False``; its ``--strict`` flag is to be
    wired to this option.)

    Args:
        path: a video file, or a folder of png/jpg frames (read in file-name order).
        strict: raise instead of warning when decoding stops early.

    Yields:
        (H, W, 3) uint8 BGR frames, all of one size. Decoding is lazy: memory does not grow with
        the video length.

    Raises:
        StreamvisError: the path does not exist; DataFormatError: it cannot be decoded (at all, or
        past some frame with ``strict=True``).
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        yield from _read_folder(path)
        return
    av = _av()
    container = _open_container(path)
    index, size, failure = 0, None, None
    try:
        indexed_end = _indexed_end(container)
        try:
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format="bgr24")
                if size is None:
                    size = image.shape[:2]
                elif image.shape[:2] != size:
                    failure = (f"the frame size changes from {size[0]}x{size[1]} to "
                               f"{image.shape[0]}x{image.shape[1]}")
                    break
                yield image
                index += 1
        except (av.FFmpegError, ValueError, MemoryError) as err:
            failure = f"cannot decode the video ({err})"
        if failure is None and indexed_end > path.stat().st_size:
            failure = (f"the file is truncated: its index lists video data up to byte {indexed_end} but it "
                       f"has {path.stat().st_size} bytes")
    finally:
        container.close()
    if failure is None:
        return
    if strict or index == 0:
        raise DataFormatError(f"decoding stopped at frame {index}: {failure}", path=path)
    warnings.warn(
        f"{path}: decoding stopped at frame {index}: {failure}; keeping the {index} frames decoded "
        "before it (strict mode raises instead)", VideoDecodeWarning, stacklevel=2)


def _indexed_end(container) -> int:
    """The byte where the video stream's indexed packets end (0 when the container has no index).

    An MP4 whose index (``moov``) comes first still opens when its end is cut off; its index then
    points past the end of the file. (Comparing decoded with declared frame counts would also flag
    valid files whose edit list drops frames.)
    """
    entries = getattr(container.streams.video[0], "index_entries", None) or ()  # PyAV >= 15
    return max((entry.pos + entry.size for entry in entries if entry.pos >= 0), default=0)


def _read_folder(folder: Path) -> Iterator[np.ndarray]:
    size = None
    for file in list_frame_files(folder):
        image = read_image(file)
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise DataFormatError(
                f"the frame is {image.shape[0]}x{image.shape[1]} but the folder's first frame is "
                f"{size[0]}x{size[1]}; all frames of a video must have one size", path=file)
        yield image


def probe(path) -> tuple[int | None, int, int, float | None]:
    """Frame count, size and frame rate of a video file or a frame folder, without decoding it all.

    Returns:
        (num_frames or None when the container does not say, height, width, fps or None for a
        frame folder).
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        files = list_frame_files(path)
        first = read_image(files[0])
        return len(files), first.shape[0], first.shape[1], None
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        num_frames = int(stream.frames) or None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        codec = stream.codec_context  # None when the stream's codec could not be found (damaged header)
        height, width = (int(codec.height), int(codec.width)) if codec is not None else (0, 0)
        if height <= 0 or width <= 0:
            raise DataFormatError("the video stream has no frame size (a damaged or truncated file?)",
                                  path=path)
        return num_frames, height, width, fps
    finally:
        container.close()


def is_video_file(path) -> bool:
    """True when `path` has a video file suffix (.mp4, .mov, ...)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def default_image_root(json_path, gt: dict) -> Path:
    """Frame folder of a dataset json when none is given: the json's folder or its ``JPEGImages/``.

    The first video's first file decides (YouTube-VIS and `streamvis synth` keep frames in JPEGImages).
    """
    folder = Path(json_path).parent
    first = next((v["file_names"][0] for v in gt.get("videos", []) if v.get("file_names")), None)
    if first is not None and not (folder / first).exists() and (folder / "JPEGImages" / first).exists():
        return folder / "JPEGImages"
    return folder
