"""Deterministic synthetic multi-object scenes for training, evaluation and the offline demo gallery.

A scene is a cluttered background (gradient, low-frequency noise, a horizon or faint tiles, random strokes
and arcs that are not objects) with 1 to 6 objects drawn on top, each of one of :data:`CATEGORIES`. The
categories differ by shape and structure (a ring has a hole, a key has a ring head, a shaft and teeth, a car
has a body, a cabin and wheels); colour and texture (solid, stripes, dots, checks, gradients, speckles) are
drawn at random per instance, so colour alone never tells a category. Each instance also varies in size,
aspect, rotation, its own geometry (number of star points, ring hole size, pine or round tree, ...),
outline and shadow, and later objects may partially hide earlier ones.

Conventions:
    * Images are ``(H, W, 3)`` uint8 RGB arrays, row-major.
    * Boxes are XYXY in continuous pixel coordinates: pixel ``(row r, column c)`` covers
      ``[c, c + 1) x [r, r + 1)``, so a mask whose pixels span columns ``c0..c1`` (inclusive) has
      ``x0 = c0`` and ``x1 = c1 + 1``. This is the COCO convention (``x1 = x + w``).
    * Masks are ``(H, W)`` bool arrays of the *visible* pixels of an object, after later objects have
      been drawn over it and after cropping at the image border.
    * Category ids are 0-based indices into :data:`CATEGORIES`, the same ids the COCO files written by
      :func:`core.evaluation.datasets.write_scene_folder` use.

Determinism: scene ``index`` of ``seed`` depends only on ``(seed, index)`` and the generation parameters
(it is drawn from ``np.random.default_rng([seed, index])``), so image ``i`` is the same whatever the number
of scenes generated, and the same seed gives byte-identical pixels.

Visible-fraction rule: an object is placed only if, after placing it, it and every object placed before it
keep at least ``min_visible`` of their full shape area visible (inside the image and not covered). A
candidate that would break the rule is not drawn at all (so no unannotated slivers remain in the image) and
another candidate is tried.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "CATEGORIES",
    "Scene",
    "SceneObject",
    "category_names",
    "generate_scene",
    "iter_scenes",
]

#: Category names; the category id is the index in this tuple.
CATEGORIES: tuple[str, ...] = (
    "circle",
    "ring",
    "triangle",
    "square",
    "star",
    "cross",
    "heart",
    "arrow",
    "crescent",
    "house",
    "tree",
    "car",
    "key",
    "bolt",
    "flower",
    "fish",
    "mushroom",
    "cloud",
    "ladder",
    "mug",
)

_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_SCALE = float(1 << _SHIFT)
_MIN_PIXELS = 20  # an object must keep at least this many visible pixels


def category_names() -> dict[int, str]:
    """Return ``{category_id: name}`` for all scene categories."""
    return dict(enumerate(CATEGORIES))


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One annotated object of a :class:`Scene`.

    Attributes:
        category_id: Index into :data:`CATEGORIES`.
        bbox: ``(4,)`` int64 XYXY box of the visible pixels (``x1``, ``y1`` exclusive, see module doc).
        amodal_bbox: ``(4,)`` int64 XYXY box of the whole shape, hidden parts included, clipped to the image.
        mask: ``(H, W)`` bool, the visible pixels of the object.
        area: Number of visible pixels (``mask.sum()``).
        full_area: Number of pixels of the whole shape, as if nothing covered it and the image had no border.
    """

    category_id: int
    bbox: np.ndarray
    amodal_bbox: np.ndarray
    mask: np.ndarray
    area: int
    full_area: int

    @property
    def name(self) -> str:
        """The category name."""
        return CATEGORIES[self.category_id]

    @property
    def visible_fraction(self) -> float:
        """``area / full_area``, at least the scene's ``min_visible``."""
        return self.area / self.full_area


@dataclass(frozen=True, eq=False)
class Scene:
    """A generated image with its objects.

    Attributes:
        seed: The generator seed.
        index: The scene's index under that seed.
        image: ``(H, W, 3)`` uint8 RGB.
        objects: The annotated objects, in drawing order (later ones are on top).
    """

    seed: int
    index: int
    image: np.ndarray
    objects: tuple[SceneObject, ...]

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def categories(self) -> frozenset[int]:
        """The set of category ids present in the scene."""
        return frozenset(o.category_id for o in self.objects)


from core.synthetic.shapes import _ADD, _SPECS  # noqa: E402 (the shapes use the constants above)

assert len(_SPECS) == len(CATEGORIES)


# --------------------------------------------------------------------------------------------------------
# Colours and textures
# --------------------------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _object_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))


def _contrasting(rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0))
    if rng.random() < 0.5:
        return _hsv(h + rng.uniform(0.25, 0.75), rng.uniform(0.3, 1.0), rng.uniform(0.35, 1.0))
    return _hsv(h + rng.uniform(-0.05, 0.05), s * rng.uniform(0.3, 1.0), (v + rng.uniform(0.35, 0.65)) % 1.0)


def _texture(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float, c1: np.ndarray) -> np.ndarray:
    """Colour field ``(3, h, w)`` float32 over object-aligned coordinates ``u, v`` (pixels, ``(h, w)``).

    Channel-first because numpy broadcasts an ``(h, w)`` weight over a leading channel axis much faster than
    over a trailing axis of length 3.
    """
    kind = int(rng.integers(0, 7))
    c2 = _contrasting(rng, c1)
    if kind == 0:  # solid
        return c1[:, None, None]
    phi = rng.uniform(0, math.pi)
    cu, su = math.cos(phi), math.sin(phi)
    if kind == 1:  # stripes
        period = r * rng.uniform(0.22, 0.5) + 2.0
        w = np.clip(0.5 + 2.0 * np.sin((u * cu + v * su) * (2 * math.pi / period)), 0.0, 1.0)
    elif kind == 2:  # dots
        period = r * rng.uniform(0.25, 0.5) + 3.0
        du = (u * cu + v * su) / period
        dv = (-u * su + v * cu) / period
        d = np.hypot(du - np.round(du), dv - np.round(dv))
        w = np.clip((rng.uniform(0.2, 0.32) - d) * period * 0.8 + 0.5, 0.0, 1.0)
    elif kind == 3:  # linear gradient
        w = np.clip((u * cu + v * su) / (2 * r) + 0.5, 0.0, 1.0)
    elif kind == 4:  # radial gradient
        w = np.clip(np.hypot(u, v) / r, 0.0, 1.0)
    elif kind == 5:  # checks
        period = r * rng.uniform(0.3, 0.6) + 2.0
        w = (
            np.sin((u * cu + v * su) * math.pi / period) * np.sin((-u * su + v * cu) * math.pi / period) > 0
        ) * 1.0
    else:  # speckles
        w = (rng.random(u.shape, dtype=np.float32) < rng.uniform(0.15, 0.4)) * rng.uniform(0.5, 1.0)
    w = w.astype(np.float32)
    return c1[:, None, None] + (c2 - c1)[:, None, None] * w


# --------------------------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------------------------


def _to_hwc_uint8(img: np.ndarray) -> np.ndarray:
    """``(3, h, w)`` float32 (0..255) -> ``(h, w, 3)`` uint8, rounded to nearest. Overwrites ``img``."""
    np.clip(img, 0.0, 255.0, out=img)
    img += 0.5
    u8 = img.astype(np.uint8)
    return cv2.merge([u8[0], u8[1], u8[2]])


_NOISE_PAD = 64
_NOISE_TABLES: dict[tuple[int, int], np.ndarray] = {}


def _noise_table(h: int, w: int) -> np.ndarray:
    """``(4, h + pad, w + pad)`` float32 unit Gaussian noise, fixed (seed 0) and cached per image size."""
    table = _NOISE_TABLES.get((h, w))
    if table is None:
        if len(_NOISE_TABLES) > 8:
            _NOISE_TABLES.clear()
        gen = np.random.default_rng(0)
        table = gen.standard_normal((4, h + _NOISE_PAD, w + _NOISE_PAD), dtype=np.float32)
        table.setflags(write=False)
        _NOISE_TABLES[(h, w)] = table
    return table


def _rbf_basis(n: int, k: int) -> np.ndarray:
    """``(n, k)`` float32 weights of ``k`` evenly spaced Gaussian bumps over ``n`` samples, rows sum to 1."""
    pos = (np.arange(n, dtype=np.float32) + 0.5) / n * (k - 1)
    b = np.exp(-0.5 * ((pos[:, None] - np.arange(k, dtype=np.float32)[None, :]) / 0.7) ** 2)
    return (b / b.sum(axis=1, keepdims=True)).astype(np.float32)


def _smooth_field(low: np.ndarray, w: int, h: int) -> np.ndarray:
    """Smoothly upsample ``low`` ``(C, gh, gw)`` to ``(C, h, w)`` (separable Gaussian interpolation)."""
    bh, bw = _rbf_basis(h, low.shape[1]), _rbf_basis(w, low.shape[2])
    return np.matmul(bh[None], np.matmul(low, bw.T))


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Cluttered background, ``(h, w, 3)`` uint8 (computed channel-first, see :func:`_texture`)."""
    hue = rng.random()
    ca = _hsv(hue, rng.uniform(0.05, 0.45), rng.uniform(0.3, 0.95))
    cb = _hsv(hue + rng.uniform(-0.2, 0.2), rng.uniform(0.05, 0.45), rng.uniform(0.3, 0.95))
    ys = np.arange(h, dtype=np.float32)[:, None] / max(h - 1, 1)
    xs = np.arange(w, dtype=np.float32)[None, :] / max(w - 1, 1)
    phi = rng.uniform(0, 2 * math.pi)
    t = np.clip(0.5 + (xs - 0.5) * math.cos(phi) + (ys - 0.5) * math.sin(phi), 0, 1)
    img = ca[:, None, None] + (cb - ca)[:, None, None] * t
    style = int(rng.integers(0, 3))
    if style == 1:  # horizon: a ground of another colour below a wavy line
        cg = _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.8))
        yh = rng.uniform(0.4, 0.75) + rng.uniform(0.02, 0.08) * np.sin(
            xs * rng.uniform(3, 12) + rng.uniform(0, 6)
        )
        g = np.clip((ys - yh) * h / 2.0, 0, 1)
        img = img * (1 - g) + cg[:, None, None] * g
    elif style == 2:  # faint tiles or planks
        period = rng.uniform(0.08, 0.2) * min(w, h)
        amp = rng.uniform(6, 16)
        lines = np.cos(np.arange(w, dtype=np.float32)[None, :] * (2 * math.pi / period)) > 0.93
        if rng.random() < 0.5:
            lines = lines | (np.cos(np.arange(h, dtype=np.float32)[:, None] * (2 * math.pi / period)) > 0.93)
        img = img - amp * lines
    gh, gw = int(rng.integers(3, 8)), int(rng.integers(3, 8))
    low = rng.standard_normal((3, gh, gw), dtype=np.float32) * 0.5 + rng.standard_normal(
        (1, gh, gw), dtype=np.float32
    )
    img = img + _smooth_field(low, w, h) * np.float32(rng.uniform(5, 18))
    base = _to_hwc_uint8(img)

    # Clutter: strokes, arcs and speckles that belong to no category.
    layer = base.copy()
    side = min(w, h)
    n = int(rng.integers(3, 10) * max(1.0, w * h / 160.0**2) ** 0.5)
    for _ in range(n):
        col = tuple(float(c) for c in _hsv(rng.random(), rng.uniform(0, 0.7), rng.uniform(0.1, 1.0)))
        th = int(rng.integers(1, max(2, side // 60) + 1))
        kind = rng.random()
        if kind < 0.45:
            k = int(rng.integers(3, 8))
            steps = rng.normal(0, side * 0.12, (k, 2)).cumsum(axis=0) + rng.uniform((0, 0), (w, h))
            pts = np.round(steps * _SCALE).astype(np.int32)
            cv2.polylines(layer, [pts], False, col, th, cv2.LINE_AA, _SHIFT)
        elif kind < 0.8:
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            ax = (int(rng.uniform(0.05, 0.4) * side), int(rng.uniform(0.05, 0.4) * side))
            a0 = rng.uniform(0, 360)
            cv2.ellipse(
                layer, c, ax, rng.uniform(0, 180), a0, a0 + rng.uniform(40, 200), col, th, cv2.LINE_AA
            )
        else:
            m = int(rng.integers(5, 20))
            centres = rng.uniform((0, 0), (w, h), (m, 2)).astype(int).tolist()
            radii = rng.integers(1, max(2, side // 80) + 1, m).tolist()
            for c, rad in zip(centres, radii, strict=True):
                cv2.circle(layer, c, rad, col, -1, cv2.LINE_AA)
    a = rng.uniform(0.35, 0.8)
    return cv2.addWeighted(layer, a, base, 1 - a, 0.0)


# --------------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    category_id: int
    ox: int  # canvas origin in image pixels (may be negative)
    oy: int
    alpha: np.ndarray  # (n_parts, ch, cw) uint8, one coverage map per colour part
    cover: np.ndarray  # (ch, cw) uint8, coverage of the whole object
    mask: np.ndarray  # (ch, cw) bool, the whole shape
    full_area: int
    cx: float
    cy: float
    r: float
    rot: float


def _rasterise(rng: np.random.Generator, cat: int, cx: float, cy: float, r: float, margin: int) -> _Candidate:
    spec = _SPECS[cat]
    prims = spec.build(rng)
    aspect = math.exp(rng.uniform(math.log(spec.aspect[0]), math.log(spec.aspect[1])))
    sx, sy = r * math.sqrt(aspect), r / math.sqrt(aspect)
    if spec.flip and rng.random() < 0.5:
        sx = -sx
    rot = math.radians(rng.uniform(-spec.max_rotation, spec.max_rotation))
    c, s = math.cos(rot), math.sin(rot)
    m = np.array([[c * sx, -s * sy], [s * sx, c * sy]])
    pts_img = [(p @ m.T + (cx, cy), op, part) for p, op, part in prims]
    allpts = np.concatenate([p for p, op, _ in pts_img if op == _ADD])
    ox, oy = (np.floor(allpts.min(axis=0)) - margin).astype(int)
    x1, y1 = (np.ceil(allpts.max(axis=0)) + margin).astype(int)
    cw, ch = int(x1 - ox), int(y1 - oy)
    n_parts = 1 + max(part for _, _, part in prims)
    alpha = np.zeros((n_parts, ch, cw), np.uint8)
    off = np.array([ox + 0.5, oy + 0.5])  # cv2 puts integer coordinates at pixel centres
    for p, op, part in pts_img:
        q = [np.round((p - off) * _SCALE).astype(np.int32)]
        if op == _ADD:
            cv2.fillPoly(alpha[part], q, 255, cv2.LINE_AA, _SHIFT)
        else:
            for k in range(n_parts):
                cv2.fillPoly(alpha[k], q, 0, cv2.LINE_AA, _SHIFT)
    cover = alpha[0] if n_parts == 1 else alpha.max(axis=0)
    mask = cover >= 128
    return _Candidate(cat, int(ox), int(oy), alpha, cover, mask, int(np.count_nonzero(mask)), cx, cy, r, rot)


def _composite(rng: np.random.Generator, img: np.ndarray, cand: _Candidate) -> None:
    """Draw ``cand`` onto ``img`` (``(3, H, W)`` float32, in place): shadow, textured parts, outline."""
    h, w = img.shape[1:]
    ch, cw = cand.mask.shape
    ix0, iy0 = max(cand.ox, 0), max(cand.oy, 0)
    ix1, iy1 = min(cand.ox + cw, w), min(cand.oy + ch, h)
    sl = (slice(iy0 - cand.oy, iy1 - cand.oy), slice(ix0 - cand.ox, ix1 - cand.ox))
    crop = img[:, iy0:iy1, ix0:ix1]
    bg_mean = crop[:, ::4, ::4].mean(axis=(1, 2))

    light = rng.uniform(0, 2 * math.pi)
    lx, ly = math.cos(light), math.sin(light)
    if rng.random() < 0.45:  # soft drop shadow, away from the light
        k = 2 * int(cand.r * 0.08) + 1
        a = cv2.blur(cv2.blur(cand.cover, (k, k)), (k, k))  # two box passes: a cheap soft blur
        dx, dy = int(round(-lx * cand.r * 0.12)), int(round(-ly * cand.r * 0.12))
        # The shadow is the blurred canvas moved by (dx, dy), cut to the object's crop.
        sx0, sy0 = max(ix0, cand.ox + dx), max(iy0, cand.oy + dy)
        sx1, sy1 = min(ix1, cand.ox + dx + cw), min(iy1, cand.oy + dy + ch)
        if sx1 > sx0 and sy1 > sy0:
            sh = a[sy0 - cand.oy - dy : sy1 - cand.oy - dy, sx0 - cand.ox - dx : sx1 - cand.ox - dx]
            img[:, sy0:sy1, sx0:sx1] *= 1.0 - np.float32(rng.uniform(0.25, 0.5) / 255.0) * sh
        else:
            rng.uniform(0.25, 0.5)  # keep the random stream the same

    ys = np.arange(iy0, iy1, dtype=np.float32)[:, None] + 0.5 - cand.cy
    xs = np.arange(ix0, ix1, dtype=np.float32)[None, :] + 0.5 - cand.cx
    c, s = math.cos(cand.rot), math.sin(cand.rot)
    u = c * xs + s * ys
    v = -s * xs + c * ys
    shade = 1.0 + np.float32(rng.uniform(0.0, 0.25)) * np.clip((u * lx + v * ly) / np.float32(cand.r), -1, 1)

    c1 = _object_colour(rng)
    for _ in range(3):  # keep the body distinguishable from the background behind it
        if np.abs(c1 - bg_mean).sum() > 90:
            break
        c1 = _object_colour(rng)
    for part in range(len(cand.alpha)):
        a = cand.alpha[part][sl]
        if not a.any():
            continue
        col = _texture(rng, u, v, cand.r, c1) if part == 0 else _contrasting(rng, c1)[:, None, None]
        af = a.astype(np.float32) * np.float32(1.0 / 255.0)
        crop *= 1.0 - af
        crop += col * (af * shade)
    if rng.random() < 0.55:  # dark outline
        m = cand.mask[sl].astype(np.uint8)
        edge = (
            m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        ) > 0
        crop[:, edge] *= np.float32(rng.uniform(0.25, 0.6))


def _box_of(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.int64)


def generate_scene(
    seed: int,
    index: int,
    size: tuple[int, int] = (160, 160),
    *,
    min_objects: int = 1,
    max_objects: int = 6,
    min_visible: float = 0.3,
    categories: Sequence[int] | None = None,
) -> Scene:
    """Generate scene ``index`` of ``seed``.

    Args:
        seed: Generator seed (non-negative).
        index: Scene index (non-negative); the scene depends only on ``(seed, index)`` and the other args.
        size: ``(W, H)`` in pixels, each at least 32.
        min_objects: Least number of annotated objects.
        max_objects: Largest number of annotated objects; the count is uniform in ``[min, max]``.
        min_visible: Least visible fraction of an object's full area (see module doc), in ``(0, 1]``.
        categories: Category ids to draw from (default: all of :data:`CATEGORIES`).

    Returns:
        The scene: ``image`` ``(H, W, 3)`` uint8 and its objects in drawing order.

    Raises:
        ValueError: On invalid arguments, or when ``min_objects`` objects cannot be placed (image too small).
    """
    w, h = int(size[0]), int(size[1])
    cats = _check_scene_args(seed, index, w, h, min_objects, max_objects, min_visible, categories)

    rng = np.random.default_rng([seed, index])
    target = int(rng.integers(min_objects, max_objects + 1))
    img = _background(rng, w, h).transpose(2, 0, 1).astype(np.float32)  # (3, H, W), see _texture
    side = min(w, h)
    hi = min(0.55, 1.0 / math.sqrt(target) + 0.05)
    lo = max(0.16, 0.45 * hi)

    placed: list[_Candidate] = []
    visible: list[np.ndarray] = []  # (H, W) bool per placed object
    counts: list[int] = []  # visible pixels per placed object
    attempts = 0
    max_attempts = 40 + 25 * target
    while len(placed) < target and attempts < max_attempts:
        attempts += 1
        shrink = 1.0 if attempts < 10 + 8 * target else 0.7
        r = 0.5 * side * rng.uniform(lo, hi) * shrink
        # Centres keep most of the shape in the frame; the border may still cut a little of it.
        cx = rng.uniform(min(0.6 * r, w / 2), max(w - 0.6 * r, w / 2))
        cy = rng.uniform(min(0.6 * r, h / 2), max(h - 0.6 * r, h / 2))
        cat = int(rng.choice(cats))
        margin = 2 + int(math.ceil(r * 0.35))
        cand = _rasterise(rng, cat, cx, cy, r, margin)
        if cand.full_area < _MIN_PIXELS:
            continue
        fit = _fit(cand, placed, visible, counts, w, h, min_visible)
        if fit is None:
            continue
        (ix0, iy0, ix1, iy1), m_in, n_in, overlaps = fit
        for j, vis in enumerate(visible):
            if overlaps[j]:
                vis[iy0:iy1, ix0:ix1] &= ~m_in
                counts[j] -= overlaps[j]
        full = np.zeros((h, w), bool)
        full[iy0:iy1, ix0:ix1] = m_in
        placed.append(cand)
        visible.append(full)
        counts.append(n_in)
        _composite(rng, img, cand)
    if len(placed) < min_objects:
        raise ValueError(
            f"Could not place {min_objects} objects in a {w}x{h} scene; use a larger size or fewer objects."
        )

    _add_sensor_noise(rng, img, w, h)
    image = _to_hwc_uint8(img)
    objects = _scene_objects(placed, visible, w, h)
    return Scene(seed=int(seed), index=int(index), image=image, objects=tuple(objects))


def _check_scene_args(seed: int, index: int, w: int, h: int, min_objects: int, max_objects: int,
                      min_visible: float, categories: Sequence[int] | None) -> np.ndarray:
    """Refuse invalid arguments of :func:`generate_scene` (``ValueError``); returns the category ids to draw from."""
    if w < 32 or h < 32:
        raise ValueError(f"Scene size must be at least 32x32 pixels, got {w}x{h}.")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"Need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}.")
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}.")
    cats = (
        np.arange(len(CATEGORIES)) if categories is None else np.asarray(sorted(set(categories)), dtype=int)
    )
    if cats.size == 0 or cats.min() < 0 or cats.max() >= len(CATEGORIES):
        raise ValueError(f"Category ids must be in [0, {len(CATEGORIES) - 1}].")
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative.")
    return cats


def _fit(cand: _Candidate, placed: list[_Candidate], visible: list[np.ndarray], counts: list[int], w: int, h: int,
         min_visible: float) -> tuple[tuple[int, int, int, int], np.ndarray, int, list[int]] | None:
    """Whether a candidate may be placed (the visible-fraction rule of the module doc), and where.

    Returns:
        ``None`` if not; else its clipped box ``(x0, y0, x1, y1)`` in the image (exclusive ends), its mask inside
        that box, its visible pixel count, and how many visible pixels of each placed object it would cover.
    """
    ch, cw = cand.mask.shape
    ix0, iy0 = max(cand.ox, 0), max(cand.oy, 0)
    ix1, iy1 = min(cand.ox + cw, w), min(cand.oy + ch, h)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    m_in = cand.mask[iy0 - cand.oy : iy1 - cand.oy, ix0 - cand.ox : ix1 - cand.ox]
    n_in = int(m_in.sum())
    if n_in < _MIN_PIXELS or n_in < min_visible * cand.full_area:
        return None
    overlaps = [int(np.count_nonzero(vis[iy0:iy1, ix0:ix1] & m_in)) for vis in visible]
    if any(
        n - o < _MIN_PIXELS or n - o < min_visible * prev.full_area
        for prev, n, o in zip(placed, counts, overlaps, strict=True)
    ):
        return None
    return (ix0, iy0, ix1, iy1), m_in, n_in, overlaps


def _add_sensor_noise(rng: np.random.Generator, img: np.ndarray, w: int, h: int) -> None:
    """Add sensor-like noise to the ``(3, H, W)`` float image in place.

    A window at a random offset into a fixed table of unit Gaussian noise, per channel plus a shared luminance
    part (drawing fresh noise per pixel would cost more than the rest of the scene together).
    """
    table = _noise_table(h, w)
    oy, ox = (int(v) for v in rng.integers(0, _NOISE_PAD + 1, 2))
    img += table[:3, oy : oy + h, ox : ox + w] * np.float32(rng.uniform(1.0, 3.0))
    img += table[3, oy : oy + h, ox : ox + w] * np.float32(rng.uniform(0.5, 3.0))


def _scene_objects(placed: list[_Candidate], visible: list[np.ndarray], w: int, h: int) -> list[SceneObject]:
    """The annotations of the placed objects: visible mask and box, amodal box clipped to the image."""
    objects = []
    for cand, vis in zip(placed, visible, strict=True):
        full_box = _box_of(cand.mask) + (cand.ox, cand.oy, cand.ox, cand.oy)
        amodal = np.clip(full_box, 0, [w, h, w, h]).astype(np.int64)
        objects.append(
            SceneObject(
                category_id=cand.category_id,
                bbox=_box_of(vis),
                amodal_bbox=amodal,
                mask=vis,
                area=int(vis.sum()),
                full_area=cand.full_area,
            )
        )
    return objects


def iter_scenes(
    seed: int, n: int, size: tuple[int, int] = (160, 160), *, start: int = 0, **kwargs
) -> Iterator[Scene]:
    """Yield scenes ``start .. start + n - 1`` of ``seed``; ``kwargs`` go to :func:`generate_scene`."""
    for i in range(start, start + n):
        yield generate_scene(seed, i, size, **kwargs)
