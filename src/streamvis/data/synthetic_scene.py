"""Plan and render one synthetic video: a panning textured background and moving textured objects.

`plan_video` draws everything random about a video from one generator (objects, their paths,
the camera path, the lighting drift); `render_video` turns the plan into frames and a per-pixel
label map with numpy only. Objects are painted back to front into the label map, so the visible
mask of an object is exactly the set of pixels that show it: its shape minus every nearer shape,
clipped to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvis.data.synthetic_shapes import (
    FAMILIES,
    ShapeFamily,
    bilinear,
    sample_colors,
    sample_shape_params,
)

OBJECT_COUNT_PROBS = (0.08, 0.17, 0.25, 0.22, 0.16, 0.12)  # P(0..5 objects): some videos are empty
SAME_CLASS_PROB = 0.35  # chance that a further object repeats a class already in the video
OCCLUSION_EVENT_PROB = 0.7  # chance that a video with >= 2 objects gets a planned full occlusion
MODES = ("stay", "enter", "leave", "cross")
MODE_PROBS = (0.45, 0.2, 0.2, 0.15)
RADIUS_RANGE = (0.055, 0.27)  # object radius / min(H, W): 10-52 px at 192x320, diameters ~20-105 px
RADIUS_LIMITS = (0.045, 0.34)
PAN_FRACTION = 0.2  # the camera pans up to this fraction of min(H, W) from the centre, per axis


@dataclass(frozen=True)
class ObjectPlan:
    """One object's appearance and its path over the video.

    Args:
        category_id: 1-based category (index into `FAMILIES` + 1).
        shape_params: per-instance parameters read by the family's shape and texture.
        colors: (2, 3) BGR colours mixed by the texture.
        center: (T, 2) x, y of the centre in frame pixels (may lie outside the frame).
        radius: (T,) radius in pixels; the shape fits in the disk of this radius.
        angle: (T,) rotation in radians.
    """

    category_id: int
    shape_params: dict
    colors: np.ndarray
    center: np.ndarray
    radius: np.ndarray
    angle: np.ndarray

    @property
    def family(self) -> ShapeFamily:
        return FAMILIES[self.category_id - 1]


@dataclass(frozen=True)
class VideoPlan:
    """Everything random about one video.

    Args:
        height, width: frame size in pixels.
        background: (H + 2P, W + 2P, 3) float32 BGR canvas the camera pans over.
        camera: (T, 2) int x, y of the frame's top-left corner in the canvas.
        gains: (T, 3) per-channel multipliers: slow brightness and colour drift.
        objects: the objects, in annotation order.
        depth_order: object indices from the farthest to the nearest.
    """

    height: int
    width: int
    background: np.ndarray
    camera: np.ndarray
    gains: np.ndarray
    objects: tuple[ObjectPlan, ...]
    depth_order: tuple[int, ...]

    @property
    def num_frames(self) -> int:
        return len(self.camera)


@dataclass(frozen=True)
class SynthVideo:
    """A rendered video.

    Args:
        frames: (T, H, W, 3) uint8 BGR.
        labels: (T, H, W) int16; 0 is background, k + 1 where object k is the visible one.
        amodal_areas: (T, N) int64 pixels of each object's full shape inside the frame, ignoring
            occlusion (so visible area 0 with amodal area > 0 means fully hidden by nearer objects).
        category_ids: (N,) int64 1-based categories.
    """

    frames: np.ndarray
    labels: np.ndarray
    amodal_areas: np.ndarray
    category_ids: np.ndarray

    def masks(self, index: int) -> np.ndarray:
        """(T, H, W) bool visible mask of object `index` in every frame."""
        return self.labels == index + 1

    @property
    def visible_areas(self) -> np.ndarray:
        """(T, N) int64 visible pixels of each object."""
        ids = np.arange(1, len(self.category_ids) + 1)
        return (self.labels[:, None] == ids[None, :, None, None]).sum(axis=(2, 3))


def _time(num_frames: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def _warp(rng: np.random.Generator, tau: np.ndarray) -> np.ndarray:
    """A monotone time warp: the speed along a path changes smoothly (|c| < 1 keeps it monotone)."""
    c = rng.uniform(-0.8, 0.8)
    return tau + c * np.sin(2 * np.pi * tau) / (2 * np.pi)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 textured canvas: multi-scale value noise, stripes, patches."""
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    short = min(height, width)
    value = np.zeros((height, width))
    for cells, weight in ((2, 0.45), (7, 0.3), (22, 0.2)):  # cells across the short side
        grid = rng.random((cells * height // short + 2, cells * width // short + 2))
        value += weight * bilinear(grid, ys * cells / short, xs * cells / short)
    angle, period = rng.uniform(0, np.pi), rng.uniform(0.06, 0.2) * short
    value += 0.12 * np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period)
    value += rng.uniform(-0.3, 0.3) * ys / height  # a vertical gradient, like ground and sky
    value = (value - value.min()) / max(np.ptp(value), 1e-6)
    low, high = sample_colors(rng) * rng.uniform(0.5, 0.9)  # duller than the objects, on average
    canvas = (low + value[..., None] * (high - low)).astype(np.float32)
    for _ in range(int(rng.integers(3, 9))):  # flat translucent patches: straight edges to track
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        h, w = (rng.uniform(0.05, 0.3, 2) * short).astype(int) + 1
        canvas[y0 : y0 + h, x0 : x0 + w] *= np.float32(rng.uniform(0.6, 1.4))
    return np.clip(canvas, 0, 255)


def _camera_path(rng: np.random.Generator, num_frames: int, pan: int) -> np.ndarray:
    """(T, 2) int top-left corners: a pan between two random points with changing speed."""
    start, end = rng.uniform(0, 2 * pan, 2), rng.uniform(0, 2 * pan, 2)
    warp = _warp(rng, _time(num_frames))[:, None]
    return np.rint(start + (end - start) * warp).astype(np.int64)


def _illumination(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """(T, 3) per-channel gains: brightness and white balance drift slowly over the video."""
    tau = _time(num_frames)[:, None]
    cycles = rng.uniform(0.3, 1.0)
    brightness = 1 + rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * cycles * tau + rng.uniform(0, 2 * np.pi))
    tint = 1 + rng.uniform(0.02, 0.08, 3) * np.sin(2 * np.pi * cycles * tau + rng.uniform(0, 2 * np.pi, 3))
    return (brightness * tint).astype(np.float32)


def _radius_path(rng: np.random.Generator, tau: np.ndarray, short: int, radius_range) -> np.ndarray:
    """(T,) radius: grows or shrinks (approach / recede) with a slow pulsation."""
    base = rng.uniform(*radius_range) * short
    trend = rng.uniform(-0.4, 0.4) * tau
    growth = trend + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * tau + rng.uniform(0, 7))
    return np.clip(base * np.exp(growth), RADIUS_LIMITS[0] * short, RADIUS_LIMITS[1] * short)


def _inside_point(rng: np.random.Generator, height: int, width: int, margin: float) -> np.ndarray:
    lo = np.minimum([margin, margin], [width / 2, height / 2])
    return rng.uniform(lo, [width - lo[0], height - lo[1]])


def _outside_point(rng: np.random.Generator, height: int, width: int, margin: float, edge: int) -> np.ndarray:
    """A point beyond `edge` (0 top, 1 bottom, 2 left, 3 right), so far that a disk of radius
    `margin` around it is fully outside the frame."""
    beyond = margin + rng.uniform(0, 0.15) * min(height, width)
    along = rng.uniform(0, width if edge < 2 else height)
    across = (-beyond, (height if edge < 2 else width) + beyond)[edge % 2]
    return np.array([along, across] if edge < 2 else [across, along])


def _plan_path(rng, mode: str, tau: np.ndarray, height: int, width: int, radius: np.ndarray, camera):
    """(T, 2) centre in frame pixels; world-space motion, seen through the panning camera."""
    short, rmax = min(height, width), float(radius.max())
    edge = int(rng.integers(4))  # "cross" goes from this edge to the opposite one (edge ^ 1)
    start = _outside_point(rng, height, width, rmax + 2, edge) if mode in ("enter", "cross") else None
    end = _outside_point(rng, height, width, rmax + 2, edge ^ 1) if mode in ("leave", "cross") else None
    if start is None:
        start = _inside_point(rng, height, width, 0.6 * rmax)
    if end is None:
        end = start + rng.normal(0, 0.25 * short, 2)
        low = 0.6 * rmax
        end = np.clip(end, low, [max(width - low, low), max(height - low, low)])
    world_start, world_end = start + camera[0], end + camera[-1]
    normal = np.array([-(end - start)[1], (end - start)[0]]) / max(np.hypot(*(end - start)), 1e-6)
    wobble = rng.uniform(-0.12, 0.12) * short * np.sin(np.pi * int(rng.integers(1, 3)) * tau)
    world = world_start + (world_end - world_start) * _warp(rng, tau)[:, None] + wobble[:, None] * normal
    return world - camera


def plan_object(rng, category_id: int, *, height: int, width: int, camera: np.ndarray, mode=None,
                radius_range=RADIUS_RANGE) -> ObjectPlan:
    """Draw one object: appearance, size path, rotation and motion path (mode: one of `MODES`)."""
    num_frames = len(camera)
    tau, frame = _time(num_frames), np.arange(num_frames)
    mode = mode or MODES[int(rng.choice(len(MODES), p=MODE_PROBS))]
    radius = _radius_path(rng, tau, min(height, width), radius_range)
    center = _plan_path(rng, mode, tau, height, width, radius, camera)
    spin, spin_change = rng.uniform(-0.1, 0.1), rng.uniform(-0.004, 0.004)  # rad / frame, rad / frame^2
    angle = rng.uniform(0, 2 * np.pi) + spin * frame + 0.5 * spin_change * frame**2
    params = sample_shape_params(rng)
    return ObjectPlan(category_id, params, sample_colors(rng), center, radius, angle)


def _sample_categories(rng: np.random.Generator, count: int, num_classes: int) -> list[int]:
    """1-based categories; repeats are common, so class alone cannot tell instances apart."""
    categories: list[int] = []
    for _ in range(count):
        if categories and rng.random() < SAME_CLASS_PROB:
            categories.append(categories[int(rng.integers(len(categories)))])
        else:
            categories.append(int(rng.integers(1, num_classes + 1)))
    return categories


def _pass_profile(rng: np.random.Generator, num_frames: int, t_mid: int) -> np.ndarray:
    """(T,) relative displacement in units of D: -1 at t_mid - h, 0 at t_mid, +1 at t_mid + h.

    Inside the pass the profile is ``a x + (1 - a) x^3``: the near object slows down while it covers
    the far one (hidden for longer) and speeds up after; outside it goes on at the end speed.
    """
    half = max(rng.uniform(0.6, 0.95) * min(t_mid, num_frames - 1 - t_mid), 1.0)  # h, in frames
    a = rng.uniform(0.1, 0.4)
    x = (np.arange(num_frames) - t_mid) / half
    end_slope = a + 3 * (1 - a)
    inner = a * x + (1 - a) * x**3
    outer = np.sign(x) * (1 + end_slope * (np.abs(x) - 1))
    return np.where(np.abs(x) <= 1, inner, outer)


def _plan_occlusion(rng, objects: list, depth: list, *, height: int, width: int, camera, num_classes: int):
    """Rebuild two objects so a large near one passes over a small far one that stays in view: disjoint,
    partly hidden, fully hidden around a mid-video frame t_mid, partly hidden, disjoint again (it
    re-appears). The near one has a family with a large inscribed disk, so it can hide the far one.
    """
    num_frames, short = len(camera), min(height, width)
    solid = [k + 1 for k in range(num_classes) if FAMILIES[k].inscribed >= 0.5]
    # the near object keeps its class when that can hide others (fewer forced classes: better balance)
    can_hide = [i for i, obj in enumerate(objects) if obj.category_id in solid]
    front = int(rng.choice(can_hide)) if can_hide else int(rng.integers(len(objects)))
    hidden = int(rng.choice([i for i in range(len(objects)) if i != front]))
    front_category = objects[front].category_id if can_hide or not solid else int(rng.choice(solid))
    back = plan_object(rng, objects[hidden].category_id, height=height, width=width, camera=camera,
                       mode="stay", radius_range=(0.055, 0.09))
    near = plan_object(rng, front_category, height=height, width=width, camera=camera)
    t_mid = int(rng.integers(round(0.3 * (num_frames - 1)), round(0.7 * (num_frames - 1)) + 1))
    inscribed = max(FAMILIES[front_category - 1].inscribed, 1e-3)
    need = (back.radius[t_mid] + 2) / inscribed  # radius at which `near` covers `back` completely
    radius = np.clip(near.radius * max(1.0, need / near.radius[t_mid]), None, RADIUS_LIMITS[1] * short)
    reach = radius.max() + back.radius.max() + 2  # D: centres this far apart never overlap
    direction = rng.normal(size=2)
    direction /= max(np.hypot(*direction), 1e-6)
    offset = direction * reach * _pass_profile(rng, num_frames, t_mid)[:, None]  # (T, 2)
    objects[hidden] = back
    objects[front] = ObjectPlan(front_category, near.shape_params, near.colors, back.center + offset,
                                radius, near.angle)
    if depth.index(front) < depth.index(hidden):
        i, j = depth.index(front), depth.index(hidden)
        depth[i], depth[j] = depth[j], depth[i]
    return objects, depth


def plan_video(rng: np.random.Generator, *, height: int, width: int, num_frames: int,
               num_classes: int) -> VideoPlan:
    """Draw everything random about one video from `rng`.

    Args:
        rng: the video's own generator (the same generator state gives the same video).
        height, width: frame size in pixels.
        num_frames: number of frames T.
        num_classes: categories 1..num_classes are used (at most `len(FAMILIES)`).

    Returns:
        The `VideoPlan`.
    """
    pan = max(round(PAN_FRACTION * min(height, width)), 1)
    background = _background(rng, height + 2 * pan, width + 2 * pan)
    camera = _camera_path(rng, num_frames, pan)
    gains = _illumination(rng, num_frames)
    count = int(rng.choice(len(OBJECT_COUNT_PROBS), p=OBJECT_COUNT_PROBS))
    objects = [plan_object(rng, c, height=height, width=width, camera=camera)
               for c in _sample_categories(rng, count, num_classes)]
    depth = [int(i) for i in rng.permutation(count)]
    if count >= 2 and rng.random() < OCCLUSION_EVENT_PROB:
        objects, depth = _plan_occlusion(rng, objects, depth, height=height, width=width, camera=camera,
                                         num_classes=num_classes)
    return VideoPlan(height, width, background, camera, gains, tuple(objects), tuple(depth))


def _paint_object(image: np.ndarray, labels: np.ndarray, obj: ObjectPlan, t: int, label: int) -> int:
    """Rasterize one object into its bounding window of `image` (H, W, 3) and `labels` (H, W).

    Returns:
        The number of pixels of its shape inside the frame (before nearer objects cover it).
    """
    height, width = labels.shape
    (cx, cy), r = obj.center[t], obj.radius[t]
    x0, x1 = max(int(np.floor(cx - r)), 0), min(int(np.ceil(cx + r)) + 1, width)
    y0, y1 = max(int(np.floor(cy - r)), 0), min(int(np.ceil(cy + r)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return 0
    dx = (np.arange(x0, x1) + 0.5 - cx)[None, :]  # (1, w) pixel centres relative to the object
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None]  # (h, 1)
    cos, sin = np.cos(obj.angle[t]), np.sin(obj.angle[t])
    u, v = (cos * dx + sin * dy) / r, (cos * dy - sin * dx) / r  # (h, w) object coordinates
    inside = obj.family.inside(u, v, obj.shape_params)  # (h, w) bool
    if not inside.any():
        return 0
    value = obj.family.texture(u[inside], v[inside], obj.shape_params)[:, None]  # (n, 1)
    image[y0:y1, x0:x1][inside] = obj.colors[0] + value * (obj.colors[1] - obj.colors[0])
    labels[y0:y1, x0:x1][inside] = label
    return int(inside.sum())


def render_video(plan: VideoPlan) -> SynthVideo:
    """Render every frame of `plan`: background crop, objects back to front, lighting drift.

    Returns:
        The `SynthVideo` (frames BGR uint8, label maps, amodal areas, categories).
    """
    num_frames, height, width = plan.num_frames, plan.height, plan.width
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    labels = np.zeros((num_frames, height, width), np.int16)
    amodal = np.zeros((num_frames, len(plan.objects)), np.int64)
    for t in range(num_frames):
        x, y = plan.camera[t]
        image = plan.background[y : y + height, x : x + width].copy()  # (H, W, 3) float32
        for k in plan.depth_order:
            amodal[t, k] = _paint_object(image, labels[t], plan.objects[k], t, k + 1)
        frames[t] = np.clip(image * plan.gains[t] + 0.5, 0, 255).astype(np.uint8)
    categories = np.array([obj.category_id for obj in plan.objects], np.int64)
    return SynthVideo(frames, labels, amodal, categories)
