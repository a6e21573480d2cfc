"""The shape of an annotation: a box, signed points or a mask, in pixels of the photo.

Coordinates: pixels of the photo as displayed (EXIF orientation applied), ``x`` to the right, ``y`` down,
pixel ``(i, j)`` covering ``[j, j + 1) x [i, i + 1)``. Boxes are XYXY floats.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import PHSError

KINDS = ("box", "points", "mask")


class ShapeError(PHSError, ValueError):
    """A shape that cannot be stored (empty mask, zero-area box, not finite)."""


@dataclass(frozen=True, eq=False)
class Shape:
    """One of a box, signed points or a mask.

    Attributes:
        kind: ``box``, ``points`` or ``mask``.
        box: ``(4,)`` float64 XYXY for ``box``.
        points: ``(N, 2)`` float64 xy for ``points``.
        positive: ``(N,)`` bool, the sign of each point (``False`` = a negative click).
        mask: ``(H, W)`` bool of the photo's size for ``mask``.
    """

    kind: str
    box: np.ndarray | None = field(default=None, repr=False)
    points: np.ndarray | None = field(default=None, repr=False)
    positive: np.ndarray | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ShapeError(f"A shape is a box, points or a mask, not '{self.kind}'.")
        if self.kind == "box":
            b = np.asarray(self.box, np.float64).reshape(-1)
            if b.size != 4 or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
                raise ShapeError(f"A box needs x0 < x1 and y0 < y1 as finite numbers, not {b.tolist()}.")
            object.__setattr__(self, "box", b)
        elif self.kind == "points":
            p = np.asarray(self.points, np.float64).reshape(-1, 2)
            if not len(p) or not np.isfinite(p).all():
                raise ShapeError("Points need at least one point with finite coordinates.")
            s = np.ones(len(p), bool) if self.positive is None else np.asarray(self.positive, bool).reshape(-1)
            if len(s) != len(p):
                raise ShapeError("Each point needs one sign.")
            object.__setattr__(self, "points", p)
            object.__setattr__(self, "positive", s)
        else:
            m = np.asarray(self.mask).astype(bool)
            if m.ndim != 2 or not m.any():
                raise ShapeError("A mask must be a two-dimensional image with at least one marked pixel.")
            object.__setattr__(self, "mask", m)

    @classmethod
    def from_box(cls, x0: float, y0: float, x1: float, y1: float) -> Shape:
        """A box, corners in any order."""
        return cls("box", box=np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], np.float64))

    def bbox(self) -> tuple[float, float, float, float]:
        """XYXY box around the shape (the positive points' extent for points, at least one pixel wide)."""
        if self.kind == "box":
            return tuple(float(v) for v in self.box)  # type: ignore[return-value]
        if self.kind == "points":
            p = self.points[self.positive] if self.positive.any() else self.points
            x0, y0 = np.floor(p.min(axis=0))
            x1, y1 = np.ceil(p.max(axis=0))
            return float(x0), float(y0), float(max(x1, x0 + 1)), float(max(y1, y0 + 1))
        ys, xs = np.nonzero(self.mask)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)

    def area(self) -> float:
        """Pixels inside: the mask's count, the box's area, 0 for points."""
        if self.kind == "mask":
            return float(self.mask.sum())
        if self.kind == "box":
            return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))
        return 0.0

    # ---------------------------------------------------------------------------------------------
    # storage

    def to_record(self) -> tuple[str, bytes | None]:
        """``(json, blob)``: the geometry as JSON, the mask as a PNG (``None`` otherwise)."""
        if self.kind == "box":
            return json.dumps({"box": self.box.tolist()}), None
        if self.kind == "points":
            return json.dumps({"points": self.points.tolist(), "positive": self.positive.tolist()}), None
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.mask.astype(np.uint8) * 255).convert("1").save(buf, format="PNG", optimize=True)
        h, w = self.mask.shape
        return json.dumps({"mask_size": [h, w]}), buf.getvalue()

    @classmethod
    def from_record(cls, kind: str, geometry: str, blob: bytes | None) -> Shape:
        """Inverse of :meth:`to_record`."""
        g: dict[str, Any] = json.loads(geometry)
        if kind == "box":
            return cls("box", box=np.asarray(g["box"], np.float64))
        if kind == "points":
            return cls("points", points=np.asarray(g["points"], np.float64), positive=np.asarray(g["positive"], bool))
        from PIL import Image

        m = np.asarray(Image.open(io.BytesIO(blob or b"")).convert("L")) > 127
        return cls("mask", mask=m)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (the mask as its bbox and area only)."""
        out: dict[str, Any] = {"kind": self.kind, "bbox": [round(v, 2) for v in self.bbox()]}
        if self.kind == "points":
            out["points"] = [[round(x, 2), round(y, 2), bool(s)] for (x, y), s in zip(self.points, self.positive)]
        if self.kind == "mask":
            out["area"] = int(self.area())
        return out


def finite(*values: float) -> bool:
    """All values finite numbers."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
