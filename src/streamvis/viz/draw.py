"""Drawing primitives: track colours, labels placed without overlap, mask overlays of one frame,
instance-id maps, contact sheets and the per-class AP plot (matplotlib imported inside it)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GOLDEN_RATIO_CONJUGATE = 0.618033988749895  # successive hues spread evenly around the circle


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
