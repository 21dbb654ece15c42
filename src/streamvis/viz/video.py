"""Overlay videos: `OverlayWriter` (MP4 + instance-id PNGs), `TrackDrawer` (live tracks during
prediction) and `render_results_video` (a saved results json over a video's frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvis.errors import DataFormatError
from streamvis.viz.draw import instance_id_map, overlay_instances, save_id_png
from streamvis.viz.select import (
    DRAW_MAX_OVERLAP,
    DRAW_SCORE_THRESHOLD,
    one_entry_per_object,
    select_tracks_to_draw,
    suppress_overlapping,
)

DEFAULT_FPS = 10.0  # frame rate of overlay videos made from frame folders and datasets


class OverlayWriter:
    """Write one video's overlays: ``overlay.mp4`` and ``instance_ids/NNNNN.png`` (16-bit track ids).

    Use as a context manager; the MP4 appears (atomically) when it closes.

    Args:
        out_dir: folder to write into (created).
        fps: frame rate of the MP4.
        write_ids: also write the per-frame instance-id PNGs (0 = background).
        max_overlap: in the MP4, a mask overlapping a higher-scored one of the same frame by more
            than this (intersection over the smaller area, `suppress_overlapping`) is not drawn;
            the id PNGs keep every instance. 1.0 draws everything.
    """

    def __init__(self, out_dir, *, fps: float = 10, write_ids: bool = True,
                 max_overlap: float = DRAW_MAX_OVERLAP):
        from streamvis.data.video import VideoWriter

        self.out_dir = Path(out_dir)
        self.write_ids = write_ids
        self.max_overlap = max_overlap
        self.num_frames = 0
        self.video = VideoWriter(self.out_dir / "overlay.mp4", fps=fps)

    def write(self, frame_bgr: np.ndarray, masks, track_ids, labels, scores=None, visible=None) -> np.ndarray:
        """Draw one frame's instances (see `overlay_instances`), append it; returns the drawn frame.

        Args:
            visible: N bools, or None for all: instances to draw in the MP4 (the id PNG keeps all).
        """
        shown = [i for i in range(len(track_ids)) if visible is None or visible[i]]
        masks_array = np.asarray(masks, dtype=bool).reshape(-1, *frame_bgr.shape[:2])
        shown_scores = None if scores is None else [scores[i] for i in shown]
        kept = suppress_overlapping(masks_array[shown], shown_scores, self.max_overlap)
        keep = [shown[k] for k in kept]
        drawn = overlay_instances(
            frame_bgr,
            masks_array[keep],
            [track_ids[i] for i in keep],
            [labels[i] for i in keep],
            None if scores is None else [scores[i] for i in keep],
        )
        self.video.write(drawn)
        if self.write_ids:
            id_map = instance_id_map(masks, track_ids, frame_bgr.shape[:2])
            save_id_png(self.out_dir / "instance_ids" / f"{self.num_frames:05d}.png", id_map)
        self.num_frames += 1
        return drawn

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.video.__exit__(exc_type, exc, tb)


class TrackDrawer:
    """Per-frame callback drawing the tracks of the current frame; opens one writer per video.

    For live sources, which cannot be read twice (files are drawn from their results with
    `render_results_video`). A track's score is not final until the video ends, so a track is
    drawn when its running score (mean member score so far, the video-level score of the
    official rule) reaches `score_threshold`, and each frame shows each object once
    (`suppress_overlapping`).

    Args:
        out_dir_for: video dict (or None) -> output folder of that video's overlays.
        class_names: 0-based class -> name (None: "class N" with N = class + 1).
        fps: overlay frame rate.
        score_threshold: tracks whose running score is below this are skipped.
    """

    def __init__(
        self, out_dir_for, *, class_names=None, fps: float = DEFAULT_FPS,
        score_threshold: float = DRAW_SCORE_THRESHOLD,
    ):
        self.out_dir_for = out_dir_for
        self.class_names = class_names
        self.fps = fps
        self.score_threshold = score_threshold
        self._writer = None
        self._video_key = object()

    def _label(self, category: int) -> str:
        if self.class_names and 0 <= category < len(self.class_names):
            return self.class_names[category]
        return f"class {category + 1}"

    def __call__(self, video, frame_index, frame_bgr, tracks) -> None:
        """The `streamvis.engine.predict.predict_video` callback: draw `tracks` over `frame_bgr`."""
        from streamvis.data.masks import decode_rles

        key = None if video is None else video["id"]
        if key != self._video_key:
            self.close()
            self._writer = OverlayWriter(self.out_dir_for(video), fps=self.fps).__enter__()
            self._video_key = key
        shown = [t for t in tracks if t.score >= self.score_threshold]
        if shown:
            masks = decode_rles([t.masks[frame_index] for t in shown]).astype(bool)  # (N, H, W)
        else:
            masks = np.zeros((0, *frame_bgr.shape[:2]), dtype=bool)
        self._writer.write(
            frame_bgr,
            masks,
            [t.track_id for t in shown],
            [self._label(t.category) for t in shown],
            [t.score for t in shown],
        )

    def close(self, exc_info=(None, None, None)) -> None:
        """Finish the current video's files (discarded when `exc_info` holds an error)."""
        if self._writer is not None:
            self._writer.__exit__(*exc_info)
            self._writer = None


def render_results_video(
    entries, frames, out_dir: Path, *, names, score_threshold: float = DRAW_SCORE_THRESHOLD,
    fps: float = DEFAULT_FPS, results_path=None, bar=None, write_ids: bool = True,
    max_overlap: float = DRAW_MAX_OVERLAP,
) -> int:
    """Draw the results entries of one video over its frames into ``out_dir/overlay.mp4``.

    The one drawing path of `streamvis render`, `streamvis predict --viz` (for inputs it can read
    twice) and `streamvis demo`: the same results and defaults give the same pixels.

    Args:
        entries: the video's results entries (official format), in file order (track id = position + 1).
        frames: iterable of (H, W, 3) uint8 BGR frames.
        out_dir: folder for ``overlay.mp4`` (and ``instance_ids/`` when `write_ids`).
        names: category id -> name; score_threshold: entries whose (video-level) score is below it
            are not drawn, nor written to the id PNGs.
        fps: MP4 frame rate; results_path: named in errors (None for in-memory results).
        bar: a tqdm bar updated once per frame, or None.
        max_overlap: see `select_tracks_to_draw` (the MP4 shows each object once; the id PNGs keep
            every entry above the threshold).

    Returns:
        The number of frames written.

    Raises:
        DataFormatError: the results have fewer or more frames than the video, or masks of
            another size (the MP4 is then discarded).
    """
    from streamvis.data.masks import decode_rles

    passing = [(i + 1, e) for i, e in enumerate(entries) if e["score"] >= score_threshold]
    tracks = one_entry_per_object(passing)  # class hypotheses of one object: drawn once
    drawn = {tracks[k][0] for k in select_tracks_to_draw([e for _, e in tracks], max_overlap)}
    count = 0
    with OverlayWriter(out_dir, fps=fps, write_ids=write_ids, max_overlap=max_overlap) as writer:
        for index, frame in enumerate(frames):
            _check_length(entries, index, results_path)
            shown = [(tid, e) for tid, e in tracks if e["segmentations"][index] is not None]
            masks = np.zeros((0, *frame.shape[:2]), dtype=bool)
            if shown:
                masks = decode_rles([e["segmentations"][index] for _, e in shown]).astype(bool)  # (N, H, W)
                _check_size(masks, frame, entries[0]["video_id"], results_path)
            labels = [names.get(e["category_id"], f"class {e['category_id']}") for _, e in shown]
            writer.write(frame, masks, [tid for tid, _ in shown], labels, [e["score"] for _, e in shown],
                         visible=[tid in drawn for tid, _ in shown])
            count += 1
            if bar is not None:
                bar.update(1)
        _check_length(entries, count - 1, results_path, exact=True)  # inside: an error discards the MP4
    return count


def _check_length(entries, index: int, path, exact: bool = False) -> None:
    for entry in entries:
        length = len(entry["segmentations"])
        if index >= length or (exact and length != index + 1):
            raise DataFormatError(
                f"the video has {'at least ' if not exact else ''}{index + 1} frames but the results have "
                f"{length} segmentations: the results may be for another video or split",
                path=path,
                where=f"video id {entry['video_id']}",
                field="segmentations",
            )


def _check_size(masks, frame, video_id, path) -> None:
    if masks.shape[1:] != frame.shape[:2]:
        raise DataFormatError(
            f"masks are {masks.shape[2]}x{masks.shape[1]} (width x height) but the frames are "
            f"{frame.shape[1]}x{frame.shape[0]}",
            path=path,
            where=f"video id {video_id}",
            field="segmentations[].size",
        )
