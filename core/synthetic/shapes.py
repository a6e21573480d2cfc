"""The 20 shape categories of the synthetic scenes, as geometry: one builder per category.

Every builder returns primitives in unit coordinates (the shape roughly fills ``[-1, 1] x [-1, 1]``, ``y``
pointing down); :mod:`core.synthetic.scenes` places, rotates, colours and draws them. ``_SPECS[i]`` is the
shape of category ``i`` of :data:`core.synthetic.scenes.CATEGORIES`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_ADD, _CUT = 1, -1

# --------------------------------------------------------------------------------------------------------
# Shape geometry. Every builder returns primitives in unit coordinates (the shape roughly fills
# [-1, 1] x [-1, 1], y pointing down): (points (n, 2) float64, op _ADD or _CUT, colour part).
# Primitives are applied in order: _ADD fills the part's alpha, _CUT clears every part (holes).
# --------------------------------------------------------------------------------------------------------

_Prim = tuple[np.ndarray, int, int]


@functools.cache
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    cos, sin = np.cos(t), np.sin(t)
    cos.setflags(write=False)
    sin.setflags(write=False)
    return cos, sin


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40, rot: float = 0.0) -> np.ndarray:
    cos, sin = _unit_circle(n)
    x, y = rx * cos, ry * sin
    c, s = math.cos(rot), math.sin(rot)
    out = np.empty((n, 2))
    out[:, 0] = cx + c * x - s * y
    out[:, 1] = cy + s * x + c * y
    return out


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float, n: int = 6) -> np.ndarray:
    r = min(r, (x1 - x0) / 2, (y1 - y0) / 2)
    if r <= 1e-6:
        return _rect(x0, y0, x1, y1)
    pts = []
    for cx, cy, a0 in (
        (x1 - r, y0 + r, -0.5),
        (x1 - r, y1 - r, 0.0),
        (x0 + r, y1 - r, 0.5),
        (x0 + r, y0 + r, 1.0),
    ):
        t = np.linspace(a0 * math.pi, (a0 + 0.5) * math.pi, n)
        pts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1))
    return np.concatenate(pts)


def _poly(*xy: float) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def _circle(rng: np.random.Generator) -> list[_Prim]:
    return [(_ellipse(0, 0, 1, 1, 48), _ADD, 0)]


def _ring(rng: np.random.Generator) -> list[_Prim]:
    r_in = rng.uniform(0.42, 0.66)
    ox, oy = rng.uniform(-0.06, 0.06, 2)
    return [(_ellipse(0, 0, 1, 1, 48), _ADD, 0), (_ellipse(ox, oy, r_in, r_in, 40), _CUT, 0)]


def _triangle(rng: np.random.Generator) -> list[_Prim]:
    a = -math.pi / 2 + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
    r = rng.uniform(0.85, 1.05, 3)
    return [(np.stack([r * np.cos(a), r * np.sin(a) + 0.2], axis=1), _ADD, 0)]


def _square(rng: np.random.Generator) -> list[_Prim]:
    r = rng.choice([0.0, rng.uniform(0.05, 0.3)])
    return [(_rounded_rect(-0.85, -0.85, 0.85, 0.85, r), _ADD, 0)]


def _star(rng: np.random.Generator) -> list[_Prim]:
    n = int(rng.integers(5, 8))
    inner = rng.uniform(0.36, 0.55)
    a = -math.pi / 2 + np.arange(2 * n) * math.pi / n
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
    return [(np.stack([r * np.cos(a), r * np.sin(a)], axis=1), _ADD, 0)]


def _cross(rng: np.random.Generator) -> list[_Prim]:
    t = rng.uniform(0.22, 0.38)
    yc = rng.choice([0.0, rng.uniform(-0.4, -0.15)])  # Greek or Latin cross
    return [(_rect(-t, -1, t, 1), _ADD, 0), (_rect(-0.8, yc - t, 0.8, yc + t), _ADD, 0)]


def _heart(rng: np.random.Generator) -> list[_Prim]:
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    dip = rng.uniform(0.8, 1.2)  # depth of the top notch
    y = np.where(np.abs(x) < 4, y + (dip - 1) * 3 * (1 - np.abs(x) / 4) * (y < 0), y)
    pts = np.stack([x / 16.5, (y + 2.5) / 15.0], axis=1)
    return [(pts, _ADD, 0)]


def _arrow(rng: np.random.Generator) -> list[_Prim]:
    t, hl, hw = rng.uniform(0.1, 0.2), rng.uniform(0.45, 0.7), rng.uniform(0.42, 0.7)
    b = 1 - hl
    pts = _poly(-1, -t, b, -t, b, -hw, 1, 0, b, hw, b, t, -1, t)
    prims: list[_Prim] = [(pts, _ADD, 0)]
    if rng.random() < 0.4:  # fletching
        f = rng.uniform(0.25, 0.4)
        prims.append((_poly(-1, -t, -0.65, -t, -0.85, -t - f, -1.15, -t - f), _ADD, 0))
        prims.append((_poly(-1, t, -0.65, t, -0.85, t + f, -1.15, t + f), _ADD, 0))
    return prims


def _crescent(rng: np.random.Generator) -> list[_Prim]:
    d, r = rng.uniform(0.35, 0.62), rng.uniform(0.82, 1.0)
    return [(_ellipse(0, 0, 1, 1, 48), _ADD, 0), (_ellipse(d, rng.uniform(-0.12, 0.12), r, r, 48), _CUT, 0)]


def _house(rng: np.random.Generator) -> list[_Prim]:
    bw = rng.uniform(0.55, 0.8)
    eave = rng.uniform(-0.15, 0.05)
    over = rng.uniform(0.08, 0.25)
    apex = rng.uniform(-1.0, -0.8)
    prims: list[_Prim] = []
    if rng.random() < 0.5:  # chimney
        cx = rng.uniform(0.2, 0.45) * bw
        prims.append((_rect(cx, apex + 0.25, cx + 0.16, eave - 0.1), _ADD, 0))
    prims += [
        (_rect(-bw, eave, bw, 1.0), _ADD, 0),
        (_poly(-bw - over, eave + 0.02, 0.0, apex, bw + over, eave + 0.02), _ADD, 1),
    ]
    dx = rng.uniform(-0.5, 0.5) * bw
    prims.append((_rect(dx - 0.15, rng.uniform(0.4, 0.55), dx + 0.15, 1.0), _ADD, 2))
    wx = -0.45 * bw if dx > 0 else 0.2 * bw
    prims.append((_rect(wx, 0.15, wx + 0.25 * bw + 0.05, 0.38), _CUT, 0))
    return prims


def _tree(rng: np.random.Generator) -> list[_Prim]:
    tw = rng.uniform(0.08, 0.17)
    prims: list[_Prim] = [(_rect(-tw, 0.3, tw, 1.0), _ADD, 1)]
    if rng.random() < 0.5:  # pine: stacked tiers
        tiers = int(rng.integers(2, 4))
        for i in range(tiers):
            top = -1.0 + i * 1.3 / tiers
            base = top + rng.uniform(0.7, 0.9)
            hw = 0.45 + 0.45 * (i + 1) / tiers
            prims.append((_poly(0.0, top, hw, base, -hw, base), _ADD, 0))
    else:  # broadleaf: a cluster of round blobs
        n = int(rng.integers(3, 6))
        a = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, math.pi)
        for ai in a:
            rr = rng.uniform(0.32, 0.45)
            prims.append((_ellipse(0.38 * math.cos(ai), -0.35 + 0.3 * math.sin(ai), rr, rr, 28), _ADD, 0))
        prims.append((_ellipse(0, -0.35, 0.5, 0.45, 32), _ADD, 0))
    return prims


def _car(rng: np.random.Generator) -> list[_Prim]:
    top = rng.uniform(-0.5, -0.35)
    fx, bx = rng.uniform(-0.6, -0.4), rng.uniform(0.35, 0.6)
    wr = rng.uniform(0.2, 0.27)
    prims: list[_Prim] = [
        (_poly(fx - 0.1, 0.0, fx + 0.15, top, bx - 0.15, top, bx + 0.1, 0.0), _ADD, 0),
        (_rounded_rect(-1.0, -0.05, 1.0, 0.45, rng.uniform(0.05, 0.2)), _ADD, 0),
        (_poly(fx + 0.05, -0.04, fx + 0.2, top + 0.08, -0.05, top + 0.08, -0.05, -0.04), _ADD, 2),
        (_poly(0.05, -0.04, 0.05, top + 0.08, bx - 0.2, top + 0.08, bx - 0.05, -0.04), _ADD, 2),
    ]
    for x in (-0.58, 0.58):
        prims.append((_ellipse(x, 0.45, wr, wr, 24), _ADD, 1))
        prims.append((_ellipse(x, 0.45, wr * 0.4, wr * 0.4, 16), _ADD, 2))
    return prims


def _key(rng: np.random.Generator) -> list[_Prim]:
    hr = rng.uniform(0.3, 0.42)
    t = rng.uniform(0.06, 0.1)
    prims: list[_Prim] = [
        (_ellipse(-1 + hr, 0, hr, hr, 32), _ADD, 0),
        (_rect(-1 + 1.6 * hr, -t, 1.0, t), _ADD, 0),
    ]
    n = int(rng.integers(2, 4))
    for x in np.linspace(0.5, 0.92, n):
        d = rng.uniform(0.14, 0.3)
        prims.append((_rect(x - 0.06, t * 0.5, x + 0.06, t + d), _ADD, 0))
    prims.append((_ellipse(-1 + hr, 0, hr * rng.uniform(0.35, 0.5), hr * 0.45, 24), _CUT, 0))
    return prims


def _bolt(rng: np.random.Generator) -> list[_Prim]:
    pts = _poly(-0.05, -1, 0.5, -1, 0.12, -0.2, 0.45, -0.2, -0.35, 1.0, -0.08, 0.1, -0.4, 0.1)
    pts = pts + rng.uniform(-0.06, 0.06, pts.shape)
    return [(pts, _ADD, 0)]


def _flower(rng: np.random.Generator) -> list[_Prim]:
    n = int(rng.integers(5, 9))
    pl, pw = rng.uniform(0.38, 0.5), rng.uniform(0.16, 0.28)
    a0 = rng.uniform(0, math.pi)
    prims: list[_Prim] = []
    for i in range(n):
        a = a0 + 2 * math.pi * i / n
        d = 1.0 - pl
        prims.append((_ellipse(d * math.cos(a), d * math.sin(a), pl, pw, 24, rot=a), _ADD, 0))
    cr = rng.uniform(0.22, 0.32)
    prims.append((_ellipse(0, 0, cr, cr, 24), _ADD, 1))
    return prims


def _fish(rng: np.random.Generator) -> list[_Prim]:
    ry = rng.uniform(0.36, 0.55)
    prims: list[_Prim] = [(_ellipse(-0.2, 0, 0.78, ry, 40), _ADD, 0)]
    if rng.random() < 0.5:
        tail = _poly(0.45, 0.0, 1.0, -0.55, 0.85, 0.0, 1.0, 0.55)  # forked
    else:
        tail = _poly(0.45, 0.0, 1.0, -0.5, 1.0, 0.5)
    prims.append((tail, _ADD, 0))
    prims.append((_poly(-0.4, -ry + 0.05, -0.05, -ry - 0.25, 0.15, -ry + 0.1), _ADD, 0))  # dorsal fin
    prims.append((_ellipse(-0.65, -0.1, 0.08, 0.08, 12), _ADD, 1))
    return prims


def _mushroom(rng: np.random.Generator) -> list[_Prim]:
    sw = rng.uniform(0.16, 0.3)
    cry = rng.uniform(0.55, 0.85)
    base = -0.05
    t = np.linspace(math.pi, 2 * math.pi, 30)
    cap = np.stack([np.cos(t), base + cry * np.sin(t)], axis=1)
    cap = np.concatenate([cap, _poly(0.9, base + 0.12, -0.9, base + 0.12)])
    prims: list[_Prim] = [(_rounded_rect(-sw, base, sw, 1.0, sw * 0.6), _ADD, 1), (cap, _ADD, 0)]
    for _ in range(int(rng.integers(0, 4))):
        a = rng.uniform(1.15 * math.pi, 1.85 * math.pi)
        rr = rng.uniform(0.25, 0.6)
        s = rng.uniform(0.08, 0.14)
        prims.append((_ellipse(rr * math.cos(a), base + rr * cry * math.sin(a), s, s, 16), _ADD, 2))
    return prims


def _cloud(rng: np.random.Generator) -> list[_Prim]:
    prims: list[_Prim] = [(_rounded_rect(-0.95, 0.0, 0.95, 0.5, 0.25), _ADD, 0)]
    n = int(rng.integers(3, 6))
    for i, x in enumerate(np.linspace(-0.6, 0.6, n)):
        mid = 1.0 - abs(i - (n - 1) / 2) / max(1.0, (n - 1) / 2)
        r = rng.uniform(0.28, 0.36) + 0.2 * mid
        prims.append((_ellipse(x, 0.15 - r * 0.6, r, r, 28), _ADD, 0))
    return prims


def _ladder(rng: np.random.Generator) -> list[_Prim]:
    hw = rng.uniform(0.32, 0.55)
    t = rng.uniform(0.07, 0.11)
    prims: list[_Prim] = [(_rect(-hw - t, -1, -hw + t, 1), _ADD, 0), (_rect(hw - t, -1, hw + t, 1), _ADD, 0)]
    n = int(rng.integers(3, 6))
    for y in np.linspace(-0.75, 0.75, n):
        prims.append((_rect(-hw, y - t * 0.8, hw, y + t * 0.8), _ADD, 0))
    return prims


def _mug(rng: np.random.Generator) -> list[_Prim]:
    right = rng.uniform(0.25, 0.45)
    hr = rng.uniform(0.35, 0.48)
    prims: list[_Prim] = [
        (_ellipse(right, 0.05, hr, hr * 1.1, 32), _ADD, 0),
        (_ellipse(right + 0.04, 0.05, hr * 0.55, hr * 0.65, 28), _CUT, 0),
        (_rounded_rect(-0.65, -0.8, right, 0.9, rng.uniform(0.05, 0.2)), _ADD, 0),
    ]
    if rng.random() < 0.5:
        y = rng.uniform(-0.4, 0.3)
        prims.append((_rect(-0.65, y, right, y + 0.2), _ADD, 1))
    return prims


@dataclass(frozen=True)
class _ShapeSpec:
    build: Callable[[np.random.Generator], list[_Prim]]
    max_rotation: float  # degrees, uniform in [-max, max]
    aspect: tuple[float, float]  # x scale / y scale
    flip: bool  # may be mirrored horizontally


_SPECS: tuple[_ShapeSpec, ...] = (
    _ShapeSpec(_circle, 180, (0.85, 1.18), False),
    _ShapeSpec(_ring, 180, (0.85, 1.18), False),
    _ShapeSpec(_triangle, 180, (0.8, 1.25), False),
    _ShapeSpec(_square, 180, (0.8, 1.25), False),
    _ShapeSpec(_star, 180, (0.85, 1.18), False),
    _ShapeSpec(_cross, 180, (0.8, 1.25), False),
    _ShapeSpec(_heart, 30, (0.85, 1.2), False),
    _ShapeSpec(_arrow, 180, (0.85, 1.2), False),
    _ShapeSpec(_crescent, 180, (0.85, 1.15), False),
    _ShapeSpec(_house, 12, (0.8, 1.25), True),
    _ShapeSpec(_tree, 12, (0.7, 1.2), False),
    _ShapeSpec(_car, 10, (0.9, 1.3), True),
    _ShapeSpec(_key, 180, (0.85, 1.2), False),
    _ShapeSpec(_bolt, 30, (0.75, 1.2), True),
    _ShapeSpec(_flower, 180, (0.9, 1.1), False),
    _ShapeSpec(_fish, 35, (0.85, 1.25), True),
    _ShapeSpec(_mushroom, 15, (0.8, 1.25), False),
    _ShapeSpec(_cloud, 12, (0.9, 1.35), True),
    _ShapeSpec(_ladder, 30, (0.7, 1.2), False),
    _ShapeSpec(_mug, 12, (0.85, 1.2), True),
)
