"""Visual output: mask overlays of tracks and results files, dataset previews, metric plots.

Images are (H, W, 3) uint8 BGR numpy arrays (the library's frame format). matplotlib is
imported only inside the plotting function, so importing this module stays cheap. The
commands (``predict --viz``, ``render``, ``demo``, ``synth --preview``) only call what is here:

- `overlay_instances`, `OverlayWriter`: one frame / one video of drawn instances;
- `TrackDrawer`: live tracks during prediction (a `streamvis.engine.predict.predict_video` callback);
- `render_results_video`: the tracks of a saved results json over a video's frames;
- `write_dataset_preview`: a dataset's ground truth (contact sheet PNG + MP4);
- `plot_per_class_ap`: the per-category AP bar chart.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from streamvis.errors import DataFormatError

GOLDEN_RATIO_CONJUGATE = 0.618033988749895  # successive hues spread evenly around the circle
DEFAULT_FPS = 10.0  # frame rate of overlay videos made from frame folders and datasets
# Overlays (`predict --viz`, `render`, `demo`) draw tracks whose video-level score is at least this;
# the results json keeps every track. 0.25 is the confidence ultralytics' `predict` draws by default.
DRAW_SCORE_THRESHOLD = 0.25
# A drawn track hiding more than this share of a higher-scored drawn track (summed intersection over
# the smaller track's summed area, `select_tracks_to_draw`) is not drawn: one object, one label.
DRAW_MAX_OVERLAP = 0.5
RESULTS_SCORE_THRESHOLD = DRAW_SCORE_THRESHOLD  # former names, kept for callers
TRACK_SCORE_THRESHOLD = DRAW_SCORE_THRESHOLD


def color_for_id(track_id: int) -> tuple[int, int, int]:
    """A stable, bright colour for a track id, as (b, g, r) uint8 values.

    Hues step by the golden ratio so consecutive ids get far-apart colours; saturation and
    brightness alternate over three levels so ids whose hues come close still differ.
    """
    track_id = int(track_id)
    hue = (0.1 + track_id * GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = (0.95, 0.75, 0.85)[track_id % 3]
    value = (1.0, 0.85, 0.7)[(track_id // 3) % 3]
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def mask_contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boundary pixels of a (H, W) bool mask: pixels inside with a 4-neighbour outside (or the edge)."""
    inner = mask.copy()
    for _ in range(thickness):
        padded = np.pad(inner, 1, mode="constant", constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


@lru_cache(maxsize=8)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable default font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError):
        return ImageFont.load_default()


def label_text(label: str, track_id: int, score: float | None) -> str:
    """The text of an overlay label: ``"rounded_box · id 1 · 0.68"``.

    The word "id" and a middle dot between fields keep the id and the score apart: ``#1 0.68``
    read as "#10.68" in a small font, and the default font's spaces are narrow.
    """
    text = f"{label} \u00b7 id {int(track_id)}"
    return text if score is None else f"{text} \u00b7 {float(score):.2f}"


def _label_anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the mask's bounding box top-left corner, None for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0])


def _free_spot(x: int, y: int, size: tuple[int, int], placed: list, image_size) -> int:
    """A y near `y` where a (w, h) label at x overlaps no placed label: step down, then up."""
    text_w, text_h = size
    limit = max(image_size[0] - text_h, 0)

    def clear(top: int) -> bool:
        return all(
            x + text_w <= px or px + pw <= x or top + text_h <= py or py + ph <= top
            for px, py, pw, ph in placed
        )

    for step in range(0, 2 * len(placed) + 1):
        for candidate in (y + step * text_h, y - step * text_h):
            if 0 <= candidate <= limit and clear(candidate):
                return candidate
    return y


def _draw_label(draw: ImageDraw.ImageDraw, anchor, text: str, color, font, image_size, placed: list) -> None:
    """Text in black or white (whichever reads better) on a box of the track colour.

    The box sits above the mask's top-left corner, inside the image, moved off earlier labels.
    """
    height, width = image_size
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = right - left + 4, bottom - top + 4
    x = min(max(anchor[0], 0), max(width - text_w, 0))
    y = anchor[1] - text_h if anchor[1] - text_h >= 0 else min(anchor[1], max(height - text_h, 0))
    y = _free_spot(x, y, (text_w, text_h), placed, image_size)
    placed.append((x, y, text_w, text_h))
    draw.rectangle((x, y, x + text_w - 1, y + text_h - 1), fill=color)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]  # BGR order
    text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=text_color, font=font)


def overlay_instances(
    image_bgr: np.ndarray,
    masks,
    track_ids: Sequence[int],
    labels: Sequence[str],
    scores: Sequence[float] | None = None,
    alpha: float = 0.5,
    contours: bool = True,
) -> np.ndarray:
    """Draw instance masks over a frame: per-track colour fill, contour, and a "class #id score" label.

    Args:
        image_bgr: (H, W, 3) uint8 BGR frame (not modified).
        masks: (N, H, W) bool masks (numpy or torch).
        track_ids: N track ids; they choose the colours (`color_for_id`).
        labels: N class names.
        scores: N scores shown after the id, or None.
        alpha: opacity of the mask fill.
        contours: draw a mask boundary in the full track colour.

    Returns:
        (H, W, 3) uint8 BGR image with the overlays.
    """
    image = np.asarray(image_bgr)
    masks = np.asarray(masks, dtype=bool).reshape(-1, *image.shape[:2])  # (N, H, W)
    lengths_differ = not (len(masks) == len(track_ids) == len(labels))
    if lengths_differ or (scores is not None and len(scores) != len(masks)):
        raise ValueError("masks, track_ids, labels (and scores) must have the same length")
    out = image.astype(np.float32)
    thickness = max(1, round(min(image.shape[:2]) / 240))
    colors = [np.array(color_for_id(t), dtype=np.float32) for t in track_ids]
    for mask, color in zip(masks, colors):
        out[mask] = out[mask] * (1.0 - alpha) + color * alpha
        if contours:
            out[mask_contour(mask, thickness)] = color
    canvas = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    font = _font(max(10, round(min(image.shape[:2]) / 28)))
    placed: list[tuple[int, int, int, int]] = []  # (x, y, w, h) of drawn labels
    for i, mask in enumerate(masks):
        anchor = _label_anchor(mask)
        if anchor is not None:
            text = label_text(labels[i], track_ids[i], None if scores is None else scores[i])
            _draw_label(draw, anchor, text, tuple(int(c) for c in colors[i]), font, image.shape[:2], placed)
    return np.asarray(canvas)


def instance_id_map(masks, track_ids: Sequence[int], image_size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint16 map holding each pixel's track id (0 = background); later masks win overlaps."""
    id_map = np.zeros(image_size, dtype=np.uint16)
    for mask, track_id in zip(np.asarray(masks, dtype=bool).reshape(-1, *image_size), track_ids):
        id_map[mask] = int(track_id)
    return id_map


def contact_sheet(images: Sequence[np.ndarray], columns: int, *, gap: int = 4) -> np.ndarray:
    """Tile images into a grid, row by row, on a dark background.

    Args:
        images: (H_i, W_i, 3) uint8 images; each cell is as large as the largest image.
        columns: images per row.
        gap: pixels between cells.

    Returns:
        (rows * (H + gap) - gap, columns * (W + gap) - gap, 3) uint8 image.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    columns = max(1, min(int(columns), len(images)))
    rows = -(-len(images) // columns)
    cell_h = max(im.shape[0] for im in images)
    cell_w = max(im.shape[1] for im in images)
    sheet = np.full((rows * (cell_h + gap) - gap, columns * (cell_w + gap) - gap, 3), 32, dtype=np.uint8)
    for i, im in enumerate(images):
        y, x = (i // columns) * (cell_h + gap), (i % columns) * (cell_w + gap)
        sheet[y : y + im.shape[0], x : x + im.shape[1]] = im
    return sheet


def plot_per_class_ap(per_category_ap: dict, names: dict, path) -> Path:
    """Save a horizontal bar chart of AP per category (PNG or any matplotlib format), atomically.

    Args:
        per_category_ap: category id -> AP in [0, 1] (NaN or None: no ground truth, drawn as "n/a").
        names: category id -> name (ids without a name are shown as "id N").
        path: output image file.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; pyplot's global state is untouched

    from streamvis.utils.io import atomic_open

    ids = sorted(per_category_ap, key=lambda k: int(k))
    values = [per_category_ap[k] for k in ids]
    finite = [float(v) if v is not None and np.isfinite(v) else 0.0 for v in values]
    labels = [str(names.get(k, names.get(int(k), names.get(str(k), f"id {k}")))) for k in ids]
    figure = Figure(figsize=(6.0, 0.8 + 0.3 * max(len(ids), 1)), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    bars = axes.barh(range(len(ids)), finite, color="#3b7dd8")
    axes.set_yticks(range(len(ids)), labels=labels)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.05)
    axes.set_xlabel("AP")
    for bar, value in zip(bars, values):
        shown = "n/a" if value is None or not np.isfinite(value) else f"{float(value):.3f}"
        axes.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, shown, va="center", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        figure.savefig(f, format=path.suffix.lstrip(".").lower() or "png")
    return path


def save_id_png(path, id_map: np.ndarray) -> None:
    """Save an (H, W) uint16 instance-id map as a 16-bit grayscale PNG, atomically."""
    from streamvis.utils.io import atomic_open

    with atomic_open(path, "wb") as f:
        Image.fromarray(np.ascontiguousarray(id_map, dtype=np.uint16)).save(f, format="PNG")


def suppress_overlapping(masks, scores: Sequence[float] | None, max_overlap: float) -> list[int]:
    """Indices (in input order) of the masks to draw, so that one object shows one label.

    A mask is left out when its overlap with a higher-scored kept mask (intersection over the
    smaller of the two areas) exceeds `max_overlap`: a second class hypothesis of the same object,
    or a fragment of it. Results keep such instances; only the picture leaves them out.

    Args:
        masks: (N, H, W) bool masks (numpy or torch).
        scores: N scores (None: input order is the priority).
        max_overlap: largest overlap two drawn masks may have; >= 1 keeps everything.
    """
    masks = np.asarray(masks, dtype=bool)
    if len(masks) < 2 or max_overlap >= 1.0:
        return list(range(len(masks)))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable") if scores is not None \
        else np.arange(len(masks))
    flat = masks.reshape(len(masks), -1)
    areas = flat.sum(axis=1).astype(np.float64)
    keep: list[int] = []
    for i in order:
        if areas[i] > 0 and keep:
            inter = np.logical_and(flat[keep], flat[i]).sum(axis=1)
            overlap = inter / np.maximum(np.minimum(areas[keep], areas[i]), 1.0)
            if overlap.max() > max_overlap:
                continue
        keep.append(int(i))
    return sorted(keep)


def select_tracks_to_draw(entries: Sequence[dict], max_overlap: float = DRAW_MAX_OVERLAP) -> list[int]:
    """Indices (in input order) of one video's results entries to draw, so that each object shows once.

    A tracker may keep one track per class hypothesis of an object (the default tracker does), or
    a short fragment of it; the results keep them all (AP rewards it) but a picture of them is
    unreadable. Over the whole video, an entry is left out when the masks it shares with a
    higher-scored kept entry cover more than `max_overlap` of the smaller of the two (summed
    intersection over the smaller summed mask area). Deciding per track, not per frame, keeps one
    stable label per object instead of a label that flips between hypotheses.

    Args:
        entries: official results entries of ONE video (``score``, ``segmentations``: RLE or None
            per frame).
        max_overlap: in [0, 1]; >= 1 keeps every entry.

    Returns:
        Sorted indices into `entries`.
    """
    import pycocotools.mask as mask_util

    count = len(entries)
    if count < 2 or max_overlap >= 1.0:
        return list(range(count))
    areas = np.zeros(count)
    inter = np.zeros((count, count))  # summed intersection areas over frames
    length = max(len(e["segmentations"]) for e in entries)
    for t in range(length):
        present = [i for i, e in enumerate(entries) if t < len(e["segmentations"]) and e["segmentations"][t]]
        rles = [_coco_rle(entries[i]["segmentations"][t]) for i in present]
        if not rles:
            continue
        frame_areas = mask_util.area(rles).astype(np.float64)  # (P,)
        areas[present] += frame_areas
        if len(rles) > 1:
            iou = np.asarray(mask_util.iou(rles, rles, [0] * len(rles)), dtype=np.float64)  # (P, P)
            # intersection from IoU: I = IoU * (A + B) / (1 + IoU)
            pair_areas = frame_areas[:, None] + frame_areas[None, :]  # (P, P)
            inter[np.ix_(present, present)] += iou * pair_areas / (1.0 + iou)
    order = np.argsort(-np.array([float(e["score"]) for e in entries]), kind="stable")
    keep: list[int] = []
    for i in order:
        if keep and areas[i] > 0:
            overlap = inter[keep, i] / np.maximum(np.minimum(areas[keep], areas[i]), 1.0)
            if overlap.max() > max_overlap:
                continue
        keep.append(int(i))
    return sorted(keep)


def _coco_rle(rle: dict) -> dict:
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return {"size": list(rle["size"]), "counts": counts}


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


def one_entry_per_object(tracks: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Keep one of the results entries that share all their masks, so each object is drawn once.

    The default tracker writes a second class hypothesis of one object as another entry with the
    same ``segmentations`` (`streamvis.tracking.base.track_results`); the highest-scored of such
    entries is kept (the first in file order on a tie), in file order.

    Args:
        tracks: ``(track id, results entry)`` pairs.
    """
    import json

    best: dict[str, tuple[int, dict]] = {}
    order: list[str] = []
    for tid, entry in tracks:
        key = json.dumps(entry["segmentations"], sort_keys=True, default=str)
        if key not in best:
            order.append(key)
            best[key] = (tid, entry)
        elif entry["score"] > best[key][1]["score"]:
            best[key] = (tid, entry)
    return sorted((best[k] for k in order), key=lambda pair: pair[0])


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


DATASET_PREVIEW_VIDEOS = 6  # rows of the contact sheet (videos that have objects first)
DATASET_PREVIEW_COLUMNS = 6  # frames per row, evenly spaced over the video
DATASET_PREVIEW_MP4_VIDEOS = 8  # videos played one after the other in the MP4
DATASET_PREVIEW_FPS = 8


def _overlaid_frame(data: dict, video: dict, t: int, image_root: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame `t` of `video` with its ground-truth masks, ids and class names."""
    from streamvis.data.masks import decode_rle
    from streamvis.data.video import read_image

    image = read_image(image_root / video["file_names"][t])
    names = {c["id"]: c["name"] for c in data["categories"]}
    masks, ids, labels = [], [], []
    for ann in data["annotations"]:
        seg = ann["segmentations"][t] if ann["video_id"] == video["id"] else None
        if seg is not None:
            masks.append(decode_rle(seg).astype(bool))
            ids.append(ann["id"])
            labels.append(names[ann["category_id"]])
    masks_array = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)
    return overlay_instances(image, masks_array, ids, labels, alpha=0.35)


def _preview_videos(data: dict, count: int) -> list[dict]:
    """`count` videos, busiest first (3+ objects, then 2, 1, 0: more objects show more occlusion)."""
    from collections import Counter

    objects = Counter(ann["video_id"] for ann in data["annotations"])
    ordered = sorted(data["videos"], key=lambda v: (-min(objects[v["id"]], 3), v["id"]))
    return ordered[:count]


def write_dataset_preview(data: dict, out_dir) -> tuple[Path, Path]:
    """Write ``out_dir/preview.png`` (contact sheet) and ``out_dir/preview.mp4`` with the ground truth drawn.

    The frames are read back from disk and the json masks decoded, so the preview shows what a
    model will be trained on, not what the generator meant to write (``streamvis synth --preview``).

    Args:
        data: the YouTube-VIS dict written to ``out_dir/instances.json``.
        out_dir: the dataset folder (frames under ``out_dir/JPEGImages``).

    Returns:
        (png path, mp4 path).

    Raises:
        ValueError: the dataset has no videos.
    """
    import io

    from streamvis.data.video import write_video
    from streamvis.utils.io import atomic_write_bytes

    out_dir = Path(out_dir)
    image_root = out_dir / "JPEGImages"
    if not data["videos"]:
        raise ValueError("the dataset has no videos to preview")
    tiles = []
    for video in _preview_videos(data, DATASET_PREVIEW_VIDEOS):
        steps = np.linspace(0, video["length"] - 1, DATASET_PREVIEW_COLUMNS).round().astype(int)
        tiles += [_overlaid_frame(data, video, int(t), image_root) for t in steps]
    sheet = contact_sheet(tiles, DATASET_PREVIEW_COLUMNS)  # (rows * H, columns * W, 3) BGR
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(sheet[..., ::-1])).save(buffer, format="PNG")
    png_path, mp4_path = out_dir / "preview.png", out_dir / "preview.mp4"
    atomic_write_bytes(png_path, buffer.getvalue())
    frames = (
        _overlaid_frame(data, video, t, image_root)
        for video in _preview_videos(data, DATASET_PREVIEW_MP4_VIDEOS)
        for t in range(video["length"])
    )
    write_video(mp4_path, frames, fps=DATASET_PREVIEW_FPS)
    return png_path, mp4_path
