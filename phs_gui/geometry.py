"""Pure geometry of the canvas: box handles, box edits, brush strokes, zoom limits.

No Qt here, so every rule is testable without a window. Coordinates are original-image pixels (``x`` right,
``y`` down, continuous, the image spans ``[0, W] x [0, H]``), the same as :mod:`core.method.prompts`; boxes are
XYXY tuples.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

XYXY = tuple[float, float, float, float]

MIN_ZOOM = 0.05
MAX_ZOOM = 32.0


class Handle(Enum):
    """Which part of a box the pointer grabbed; ``(sx, sy)`` says which edges move (-1 left/top, +1 right/bottom)."""

    TOP_LEFT = (-1, -1)
    TOP = (0, -1)
    TOP_RIGHT = (1, -1)
    RIGHT = (1, 0)
    BOTTOM_RIGHT = (1, 1)
    BOTTOM = (0, 1)
    BOTTOM_LEFT = (-1, 1)
    LEFT = (-1, 0)
    INSIDE = (0, 0)


def normalize_box(x0: float, y0: float, x1: float, y1: float) -> XYXY:
    """Sort the corners so that ``x0 <= x1`` and ``y0 <= y1``."""
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def clamp_box(box: XYXY, width: float, height: float) -> XYXY | None:
    """The part of ``box`` inside a ``width x height`` image, or ``None`` when it has no area there."""
    x0, y0, x1, y1 = normalize_box(*box)
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    x1, y1 = min(x1, float(width)), min(y1, float(height))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return (x0, y0, x1, y1)


def handle_points(box: XYXY) -> dict[Handle, tuple[float, float]]:
    """Where each handle of a box is drawn (corners and edge midpoints), in the box's coordinates."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    xs = {-1: x0, 0: cx, 1: x1}
    ys = {-1: y0, 0: cy, 1: y1}
    return {h: (xs[h.value[0]], ys[h.value[1]]) for h in Handle if h is not Handle.INSIDE}


def hit_box(box: XYXY | None, x: float, y: float, tol: float) -> Handle | None:
    """The handle of ``box`` under ``(x, y)``, ``Handle.INSIDE`` inside it, else ``None``.

    Args:
        box: XYXY, or ``None``.
        x, y: the pointer, same coordinates as the box.
        tol: grab distance in the same units (the canvas passes a few screen pixels divided by the zoom).
    """
    if box is None:
        return None
    best, best_d = None, tol
    for h, (hx, hy) in handle_points(box).items():
        d = max(abs(x - hx), abs(y - hy))
        if d <= best_d:
            best, best_d = h, d
    if best is not None:
        return best
    x0, y0, x1, y1 = box
    if x0 <= x <= x1 and y0 <= y <= y1:
        return Handle.INSIDE
    return None


def drag_box(box: XYXY, handle: Handle, dx: float, dy: float) -> XYXY:
    """Move the grabbed handle (or the whole box for ``INSIDE``) by ``(dx, dy)``; corners re-sorted."""
    x0, y0, x1, y1 = box
    if handle is Handle.INSIDE:
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    sx, sy = handle.value
    if sx < 0:
        x0 += dx
    elif sx > 0:
        x1 += dx
    if sy < 0:
        y0 += dy
    elif sy > 0:
        y1 += dy
    return normalize_box(x0, y0, x1, y1)


def stamp_segment(
    mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], radius: float, value: bool
) -> tuple[int, int, int, int] | None:
    """Paint (or erase) a round brush along the segment ``p0 -> p1`` into ``mask`` in place.

    Args:
        mask: ``(H, W)`` bool, modified in place.
        p0, p1: ``(x, y)`` segment ends in pixels (a click has ``p0 == p1``).
        radius: brush radius in pixels.
        value: ``True`` paints, ``False`` erases.

    Returns:
        The changed region as integer ``(x0, y0, x1, y1)`` (exclusive ends), or ``None`` if the brush lies
        outside the image.
    """
    h, w = mask.shape
    r = max(float(radius), 0.5)
    x0 = max(int(math.floor(min(p0[0], p1[0]) - r)), 0)
    y0 = max(int(math.floor(min(p0[1], p1[1]) - r)), 0)
    x1 = min(int(math.ceil(max(p0[0], p1[0]) + r)) + 1, w)
    y1 = min(int(math.ceil(max(p0[1], p1[1]) + r)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    px, py = xx + 0.5, yy + 0.5  # pixel centres
    ax, ay = p0
    vx, vy = p1[0] - ax, p1[1] - ay
    ll = vx * vx + vy * vy
    t = np.zeros_like(px) if ll == 0 else np.clip(((px - ax) * vx + (py - ay) * vy) / ll, 0.0, 1.0)
    d2 = (px - (ax + t * vx)) ** 2 + (py - (ay + t * vy)) ** 2
    inside = d2 <= r * r
    if not inside.any():
        return None
    mask[y0:y1, x0:x1][inside] = value
    return (x0, y0, x1, y1)


def clamp_zoom(scale: float) -> float:
    """Keep a zoom factor within :data:`MIN_ZOOM` .. :data:`MAX_ZOOM`."""
    return min(max(scale, MIN_ZOOM), MAX_ZOOM)


def fit_scale(image_w: float, image_h: float, view_w: float, view_h: float, margin: float = 8.0) -> float:
    """The zoom that shows a whole ``image_w x image_h`` photo inside a ``view_w x view_h`` viewport."""
    if image_w <= 0 or image_h <= 0:
        return 1.0
    return clamp_zoom(min(max(view_w - 2 * margin, 1) / image_w, max(view_h - 2 * margin, 1) / image_h))
