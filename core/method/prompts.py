"""Visual prompts and their mapping to regions of interest (ROI) on the ViT patch grid.

Coordinate conventions (used everywhere in PHS desktop):

* Prompts live in **original-image pixels** after EXIF orientation: ``x`` to the right, ``y`` down, the
  image spans ``[0, W] x [0, H]`` (continuous coordinates; pixel ``(c, r)`` covers ``[c, c+1) x [r, r+1)``).
* Boxes are ``XYXY``: ``(x0, y0)`` top-left corner, ``(x1, y1)`` bottom-right corner.
* Masks are ``(H, W)`` boolean arrays, row-major, ``True`` inside the marked region.
* The model sees the whole photo squash-resized to its square input (no centre crop), so the patch grid
  ``(gh, gw)`` tiles the original image in ``gw`` equal columns of width ``W / gw`` and ``gh`` equal rows of
  height ``H / gh``. Patch ``(i, j)`` (row ``i``, column ``j``) covers
  ``[j W/gw, (j+1) W/gw) x [i H/gh, (i+1) H/gh)``; token order is row-major after the prefix tokens.

ROI mapping (seed 001, step 1): a point selects the patch under it; a box selects every patch it overlaps
(with positive area); a mask weights every patch by the fraction of its area inside the mask (or, with a
threshold, 1 where that fraction reaches the threshold). Negative points give a second ROI that head
scoring subtracts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.errors import PromptError


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v)) for v in values)


@dataclass(frozen=True)
class Point:
    """A click at ``(x, y)`` in original-image pixels; ``positive=False`` marks what is *not* wanted."""

    x: float
    y: float
    positive: bool = True

    def __post_init__(self) -> None:
        if not _finite(self.x, self.y):
            raise PromptError(f"The point ({self.x}, {self.y}) is not a pair of finite numbers.")
        object.__setattr__(self, "x", float(self.x))
        object.__setattr__(self, "y", float(self.y))


@dataclass(frozen=True)
class Box:
    """A box ``(x0, y0, x1, y1)`` (XYXY) in original-image pixels.

    Corners given in any order are sorted, so a box dragged up and to the left is the same box. A box with
    zero width or height is refused.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not _finite(self.x0, self.y0, self.x1, self.y1):
            raise PromptError("The box corners must be finite numbers.")
        x0, x1 = sorted((float(self.x0), float(self.x1)))
        y0, y1 = sorted((float(self.y0), float(self.y1)))
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            raise PromptError("The box has zero area: drag a box with some width and height.")
        for name, v in zip(("x0", "y0", "x1", "y1"), (x0, y0, x1, y1)):
            object.__setattr__(self, name, v)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as a ``(x0, y0, x1, y1)`` tuple."""
        return (self.x0, self.y0, self.x1, self.y1)

    def clipped(self, width: int, height: int) -> Box:
        """Return the part of the box inside a ``width x height`` image.

        Raises:
            PromptError: if nothing of the box lies inside the image.
        """
        x0, y0 = max(self.x0, 0.0), max(self.y0, 0.0)
        x1, y1 = min(self.x1, float(width)), min(self.y1, float(height))
        if x1 <= x0 or y1 <= y0:
            raise PromptError(
                f"The box ({self.x0:g}, {self.y0:g}, {self.x1:g}, {self.y1:g}) lies outside the "
                f"{width}x{height} image."
            )
        return Box(x0, y0, x1, y1)


@dataclass(frozen=True, eq=False)
class Mask:
    """A painted region: ``mask`` is an ``(H, W)`` boolean array in original-image pixels."""

    mask: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.mask)
        if m.ndim != 2:
            raise PromptError(f"A mask must be a 2-D (H, W) array, not one of shape {m.shape}.")
        if m.dtype != bool:
            if not np.issubdtype(m.dtype, np.number) or not np.all(np.isfinite(m)):
                raise PromptError("A mask must be boolean or numeric with finite values.")
            m = m > 0.5 if np.issubdtype(m.dtype, np.floating) else m != 0
        if not m.any():
            raise PromptError("The mask is empty: paint over the object first.")
        m = np.array(m, dtype=bool, copy=True)
        m.setflags(write=False)
        object.__setattr__(self, "mask", m)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the mask."""
        return self.mask.shape  # type: ignore[return-value]

    def bbox(self) -> Box:
        """The tight XYXY box around the mask's ``True`` pixels."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        return Box(cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


@dataclass(frozen=True)
class Prompt:
    """Everything a person marked on one photo: points (positive and negative), a box, a mask.

    At least one positive element is required. Positive elements are united (the ROI weight of a patch is
    the largest weight any positive element gives it); negative points form the negative ROI.
    """

    points: tuple[Point, ...] = ()
    box: Box | None = None
    mask: Mask | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        for p in self.points:
            if not isinstance(p, Point):
                raise PromptError("Prompt points must be Point objects.")
        if not (any(p.positive for p in self.points) or self.box is not None or self.mask is not None):
            raise PromptError("Mark the object first: click on it, drag a box or paint over it.")

    @classmethod
    def from_box(cls, x0: float, y0: float, x1: float, y1: float) -> Prompt:
        """Convenience: a prompt made of one XYXY box."""
        return cls(box=Box(x0, y0, x1, y1))

    @classmethod
    def from_point(cls, x: float, y: float) -> Prompt:
        """Convenience: a prompt made of one positive point."""
        return cls(points=(Point(x, y),))

    def bounding_box(self, width: int, height: int) -> Box:
        """The XYXY box around all positive elements, clipped to the image (used by Crop and FA)."""
        boxes: list[tuple[float, float, float, float]] = []
        if self.box is not None:
            boxes.append(self.box.xyxy)
        if self.mask is not None:
            boxes.append(self.mask.bbox().xyxy)
        for p in self.points:
            if p.positive:
                # A point stands for the patch-sized neighbourhood around it.
                r = max(width, height) / 32.0
                boxes.append((p.x - r, p.y - r, p.x + r, p.y + r))
        b = np.array(boxes)
        return Box(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()).clipped(width, height)


@dataclass(frozen=True, eq=False)
class Roi:
    """ROI weights over the patch grid.

    Attributes:
        positive: ``(gh, gw)`` float32 weights in ``[0, 1]``, row-major like the patch tokens.
        negative: ``(gh, gw)`` float32 weights of the negative prompts (all zeros when there are none).
    """

    positive: np.ndarray
    negative: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        pos = np.asarray(self.positive, dtype=np.float32)
        neg = np.zeros_like(pos) if self.negative is None else np.asarray(self.negative, dtype=np.float32)
        if pos.ndim != 2 or neg.shape != pos.shape:
            raise PromptError("ROI weights must be two (gh, gw) arrays of the same shape.")
        if not (pos > 0).any():
            raise PromptError("The prompt covers no part of the image.")
        object.__setattr__(self, "positive", pos)
        object.__setattr__(self, "negative", neg)

    @property
    def grid(self) -> tuple[int, int]:
        """``(gh, gw)``."""
        return self.positive.shape  # type: ignore[return-value]

    def token_box(self) -> tuple[int, int, int, int]:
        """The bounding rectangle of the positive ROI in token space: ``(row0, col0, row1, col1)``, exclusive ends."""
        rows = np.flatnonzero((self.positive > 0).any(axis=1))
        cols = np.flatnonzero((self.positive > 0).any(axis=0))
        return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def point_cell(point: Point, image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The ``(row, col)`` patch under a point.

    Args:
        point: in original-image pixels.
        image_size: ``(W, H)`` of the original image.
        grid: ``(gh, gw)`` patch grid.

    Raises:
        PromptError: if the point is outside ``[0, W] x [0, H]``.
    """
    w, h = image_size
    gh, gw = grid
    if not (0.0 <= point.x <= w and 0.0 <= point.y <= h):
        raise PromptError(f"The point ({point.x:g}, {point.y:g}) is outside the {w}x{h} image.")
    col = min(int(math.floor(point.x * gw / w)), gw - 1)
    row = min(int(math.floor(point.y * gh / h)), gh - 1)
    return row, col


def box_cells(box: Box, image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The patches a box overlaps with positive area, as a ``(gh, gw)`` boolean array.

    Args:
        box: XYXY in original-image pixels; clipped to the image first.
        image_size: ``(W, H)``.
        grid: ``(gh, gw)``.
    """
    w, h = image_size
    gh, gw = grid
    b = box.clipped(w, h)
    c0 = int(math.floor(b.x0 * gw / w))
    c1 = min(int(math.ceil(b.x1 * gw / w)), gw)
    r0 = int(math.floor(b.y0 * gh / h))
    r1 = min(int(math.ceil(b.y1 * gh / h)), gh)
    out = np.zeros((gh, gw), dtype=bool)
    out[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = True
    return out


def mask_fractions(mask: Mask, image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The fraction of each patch's area inside the mask, ``(gh, gw)`` float32 in ``[0, 1]``.

    Exact area: patch ``(r, c)`` covers ``[c W/gw, (c+1) W/gw] x [r H/gh, (r+1) H/gh]`` in pixel coordinates
    and pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``; each pixel counts with the area it shares with the
    patch, so patches that straddle pixel boundaries (pixels per patch not an integer) are weighted exactly.
    Separable: ``F = Ay M Ax^T / (ph pw)`` with ``Ay[r, i]`` (``Ax[c, j]``) the overlap length of pixel row
    ``i`` (column ``j``) with patch row ``r`` (column ``c``).
    """
    w, h = image_size
    gh, gw = grid
    if mask.shape != (h, w):
        raise PromptError(f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}.")
    ay = _overlap_lengths(h, gh)
    ax = _overlap_lengths(w, gw)
    frac = (ay @ mask.mask.astype(np.float64) @ ax.T) / ((h / gh) * (w / gw))
    return np.clip(frac, 0.0, 1.0).astype(np.float32)


def _overlap_lengths(n: int, cells: int) -> np.ndarray:
    """``(cells, n)``: length of ``[i, i+1]`` inside ``[k n/cells, (k+1) n/cells]`` for pixel ``i`` and cell ``k``."""
    edges = np.arange(cells + 1, dtype=np.float64) * (n / cells)
    px = np.arange(n, dtype=np.float64)
    lo = np.maximum(edges[:-1, None], px[None, :])
    hi = np.minimum(edges[1:, None], px[None, :] + 1.0)
    return np.clip(hi - lo, 0.0, None)


def prompt_to_roi(
    prompt: Prompt,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    mask_threshold: float | None = None,
) -> Roi:
    """Map a prompt to ROI weights on the patch grid (seed 001, step 1).

    Args:
        prompt: points / box / mask in original-image pixels.
        image_size: ``(W, H)`` of the original image.
        grid: ``(gh, gw)`` patch grid of the model.
        mask_threshold: if set, a mask gives weight 1 to patches whose covered fraction is at least this
            value and 0 elsewhere; if ``None`` the fraction itself is the weight.

    Returns:
        The :class:`Roi`.

    Raises:
        PromptError: a point outside the image, a box entirely outside it, a mask of another size.
    """
    gh, gw = grid
    pos = np.zeros((gh, gw), dtype=np.float32)
    neg = np.zeros((gh, gw), dtype=np.float32)
    for p in prompt.points:
        r, c = point_cell(p, image_size, grid)
        (pos if p.positive else neg)[r, c] = 1.0
    if prompt.box is not None:
        pos = np.maximum(pos, box_cells(prompt.box, image_size, grid).astype(np.float32))
    if prompt.mask is not None:
        frac = mask_fractions(prompt.mask, image_size, grid)
        if mask_threshold is not None:
            frac = (frac >= mask_threshold).astype(np.float32)
            if not frac.any():
                raise PromptError("The painted mask covers too little of any patch; paint a larger area.")
        pos = np.maximum(pos, frac)
    # A patch marked both positive and negative counts as negative only.
    pos = np.where(neg > 0, 0.0, pos).astype(np.float32)
    return Roi(pos, neg)


def prompt_pixel_mask(prompt: Prompt, image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The pixels a prompt covers, ``(H, W)`` bool (used by the *Mask* baseline).

    A box covers its pixels, a mask its painted pixels, a positive point the pixels of its patch.
    """
    w, h = image_size
    gh, gw = grid
    out = np.zeros((h, w), dtype=bool)
    if prompt.box is not None:
        b = prompt.box.clipped(w, h)
        out[int(math.floor(b.y0)) : int(math.ceil(b.y1)), int(math.floor(b.x0)) : int(math.ceil(b.x1))] = True
    if prompt.mask is not None:
        if prompt.mask.shape != (h, w):
            raise PromptError(f"The mask is {prompt.mask.shape[1]}x{prompt.mask.shape[0]} but the image is {w}x{h}.")
        out |= prompt.mask.mask
    for p in prompt.points:
        if p.positive:
            r, c = point_cell(p, image_size, grid)
            y0, y1 = int(math.floor(r * h / gh)), int(math.ceil((r + 1) * h / gh))
            x0, x1 = int(math.floor(c * w / gw)), int(math.ceil((c + 1) * w / gw))
            out[y0:y1, x0:x1] = True
    return out
