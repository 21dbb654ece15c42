"""Shape and texture families of the synthetic dataset: one family per category.

A family is a shape (an inside test in the object's own frame) and a texture (a pattern in the
same frame, so it moves, turns and scales with the object). Both take normalized coordinates
``(u, v)``: the object's centre is ``(0, 0)`` and every shape fits inside the unit disk, so an
object of radius ``s`` pixels covers at most the pixel window ``centre +- s``. Colours are drawn
per instance with any hue, so a class is recognisable only from its shape and texture statistics.
All functions are vectorized numpy over the pixels of one object's window.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Params = Mapping[str, object]
ShapeFn = Callable[[np.ndarray, np.ndarray, Params], np.ndarray]


@dataclass(frozen=True)
class ShapeFamily:
    """One category of the synthetic dataset.

    Args:
        name: the category name written to the json (e.g. "star").
        inside: ``inside(u, v, params) -> bool array``, the shape in normalized coordinates.
        texture: ``texture(u, v, params) -> float array in [0, 1]``, mixing the two instance colours.
        inscribed: radius of the largest centred disk inside the shape (for any instance), in shape
            units; 0 for shapes with a hole at the centre. Used to plan full occlusions.
    """

    name: str
    inside: ShapeFn
    texture: ShapeFn
    inscribed: float


def _sharp(x: np.ndarray, sharpness: float = 3.0) -> np.ndarray:
    """Map a wave in [-1, 1] to [0, 1] with steep edges (crisp stripes that JPEG still keeps)."""
    return np.clip(0.5 + sharpness * x, 0.0, 1.0)


def bilinear(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Smoothly interpolate a small random grid (value noise) at fractional grid coordinates.

    Args:
        grid: (gh, gw) values.
        gy, gx: broadcastable arrays of row / column coordinates, clipped to the grid.

    Returns:
        The interpolated values, with the broadcast shape of `gy` and `gx`.
    """
    gh, gw = grid.shape
    gy = np.clip(gy, 0.0, gh - 1.0)
    gx = np.clip(gx, 0.0, gw - 1.0)
    y0 = np.minimum(gy.astype(np.int64), gh - 2) if gh > 1 else np.zeros_like(gy, dtype=np.int64)
    x0 = np.minimum(gx.astype(np.int64), gw - 2) if gw > 1 else np.zeros_like(gx, dtype=np.int64)
    fy, fx = gy - y0, gx - x0
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no creases at grid lines
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _rotate(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, -s * u + c * v


# ---- shapes (each fits in the unit disk) -------------------------------------------------------


def _ellipse(u, v, p):
    return u * u + (v / p["aspect"]) ** 2 <= 1.0


def _rounded_box(u, v, p):
    half_u, half_v, r = 0.68, 0.68 * p["aspect"], 0.2  # corner at radius <= 0.68 * sqrt(2) < 1
    qu, qv = np.abs(u) - half_u + r, np.abs(v) - half_v + r
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)
    return outside <= r


def _star(u, v, p):
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    points = p["points"]
    tri = np.abs(((phi * points / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a tip, 0 between tips
    return rho <= 0.42 + 0.58 * tri


def _triangle(u, v, p):
    inside = np.ones(u.shape, dtype=bool)
    for k in range(3):  # three half-planes whose normals are 120 degrees apart
        a = np.pi / 2 + k * 2 * np.pi / 3
        inside &= u * np.cos(a) + v * np.sin(a) <= 0.5
    return inside


def _ring(u, v, p):
    rho = np.hypot(u, v / p["aspect"])
    return (rho <= 1.0) & (rho >= p["hole"])


def _crescent(u, v, p):
    return (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.72)


def _cross(u, v, p):
    arm = p["arm"]
    return ((np.abs(u) <= arm) & (np.abs(v) <= 0.94)) | ((np.abs(u) <= 0.94) & (np.abs(v) <= arm))


def _blob(u, v, p):
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    radius = 0.74 + 0.14 * np.sin(3 * phi + p["phase"]) + 0.1 * np.sin(5 * phi + 2 * p["phase"])
    return rho <= radius


def _hexagon(u, v, p):
    inside = np.ones(u.shape, dtype=bool)
    for k in range(3):  # three slabs 60 degrees apart; apothem 0.86 keeps the corners inside r = 1
        a = k * np.pi / 3
        inside &= np.abs(u * np.cos(a) + v * np.sin(a)) <= 0.86
    return inside


def _heart(u, v, p):
    x, y = 1.36 * u, -1.36 * v + 0.12 # the implicit heart spans x in [-1.14, 1.14], y in [-1, 1.24]
    return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0


# ---- textures (values in [0, 1]) ---------------------------------------------------------------


def _stripes(u, v, p):
    ru, _ = _rotate(u, v, p["tex_angle"] * 0.2)  # nearly along the long axis
    return _sharp(np.sin(2 * np.pi * 2.2 * p["tex_freq"] * ru))


def _checker(u, v, p):
    f = 2.4 * p["tex_freq"]
    return ((np.floor(u * f) + np.floor(v * f)) % 2).astype(np.float64)


def _radial(u, v, p):
    return np.clip(np.hypot(u, v) * 1.1, 0.0, 1.0) ** 1.5


def _fine_diagonal(u, v, p):
    return _sharp(np.sin(2 * np.pi * 4.5 * p["tex_freq"] * (u + v) / np.sqrt(2)))


def _spokes(u, v, p):
    return _sharp(np.sin(p["spokes"] * np.arctan2(v, u)), 4.0)


def _dots(u, v, p):
    period = 0.42 / p["tex_freq"]
    du = (u / period) % 1.0 - 0.5
    dv = (v / period) % 1.0 - 0.5
    return (du * du + dv * dv < 0.09).astype(np.float64)


def _noise(u, v, p):
    grid = p["noise"]
    g = grid.shape[0] - 1
    return np.clip((bilinear(grid, (v + 1) * g / 2, (u + 1) * g / 2) - 0.5) * 1.8 + 0.5, 0.0, 1.0)


def _camouflage(u, v, p):
    grid = p["noise"][:4, :4]
    return _sharp(bilinear(grid, (v + 1) * 1.5, (u + 1) * 1.5) - 0.5, 6.0)


def _grid_lines(u, v, p):
    f = 2.6 * p["tex_freq"]
    return (((u * f) % 1.0 < 0.25) | ((v * f) % 1.0 < 0.25)).astype(np.float64)


def _linear_gradient(u, v, p):
    return np.clip((v + 1) / 2, 0.0, 1.0)


FAMILIES: tuple[ShapeFamily, ...] = (
    ShapeFamily("ellipse", _ellipse, _stripes, inscribed=0.6),
    ShapeFamily("rounded_box", _rounded_box, _checker, inscribed=0.4),
    ShapeFamily("star", _star, _radial, inscribed=0.42),
    ShapeFamily("triangle", _triangle, _fine_diagonal, inscribed=0.5),
    ShapeFamily("ring", _ring, _spokes, inscribed=0.0),
    ShapeFamily("crescent", _crescent, _dots, inscribed=0.0),
    ShapeFamily("cross", _cross, _noise, inscribed=0.3),
    ShapeFamily("blob", _blob, _camouflage, inscribed=0.5),
    ShapeFamily("hexagon", _hexagon, _grid_lines, inscribed=0.86),
    ShapeFamily("heart", _heart, _linear_gradient, inscribed=0.55),
)
"""All categories, in category-id order (id = index + 1); `--classes K` uses the first K."""


def sample_shape_params(rng: np.random.Generator) -> dict[str, object]:
    """Draw the per-instance parameters every family may read (aspect, texture jitter, noise grid)."""
    return {
        "aspect": float(rng.uniform(0.6, 1.0)),
        "points": int(rng.integers(5, 7)),
        "hole": float(rng.uniform(0.45, 0.6)),
        "arm": float(rng.uniform(0.22, 0.34)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "spokes": int(rng.integers(5, 9)),
        "tex_angle": float(rng.uniform(-1, 1)),
        "tex_freq": float(rng.uniform(0.85, 1.15)),
        "noise": rng.random((7, 7)),
    }


def sample_colors(rng: np.random.Generator) -> np.ndarray:
    """Two contrasting colours of one instance, any hue.

    Returns:
        (2, 3) float64 in [0, 255], BGR: the texture mixes row 0 (value 0) and row 1 (value 1).
    """
    hue = rng.random()
    first = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0))
    second_hue = (hue + rng.uniform(0.25, 0.75)) % 1.0
    second = colorsys.hsv_to_rgb(second_hue, rng.uniform(0.3, 1.0), rng.uniform(0.15, 0.6))
    rgb = np.array([first, second]) * 255.0
    return rgb[:, ::-1].copy()  # RGB -> BGR (the in-memory convention)
