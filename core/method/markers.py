"""Markers pasted on a photo's model input at the prompt (seed 004): the protocol the engine draws with.

The engine encodes a photo with a marker drawn at the prompt (methods ``lvp``, ``red-circle`` and
``lvp+phs``) through :class:`Marker`, so it never needs to know what the marker is: the red circle lives
here, the learned visual prompt (:class:`core.method.lvp.LearnedPrompt`) above the engine, in
:mod:`core.method.lvp`, which depends on the engine and never the reverse.

Coordinate conventions:

* Everything here is in **model-input pixels** of the ``S x S`` input: ``x`` right, ``y`` down, pixel
  ``(c, r)`` covers ``[c, c+1) x [r, r+1)``, its centre is ``(c + 0.5, r + 0.5)``. The photo is
  squash-resized to ``S x S``, so ``(x, y)`` in a ``W x H`` photo is ``(x S / W, y S / H)`` here.
* A square patch of side ``n`` centred at ``(cx, cy)`` covers columns ``x0 .. x0 + n - 1`` with
  ``x0 = floor(cx - n / 2 + 1/2)`` (rows alike); the part outside ``[0, S)`` is clipped away.
* Images are ``(B, 3, S, S)`` (or ``(3, S, S)``) float tensors **normalised** with the model's mean and std;
  patches are ``(3, n, n)`` RGB in ``[0, 1]`` and are normalised when pasted. Pasting is a per-pixel convex
  combination, so pasting then normalising equals normalising then pasting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from core.errors import PromptError
from core.method.prompts import Prompt


def patch_origin(centre: float, size: int) -> int:
    """First pixel (column or row) of a patch of side ``size`` centred at ``centre`` (may be negative)."""
    return int(math.floor(centre - size / 2.0 + 0.5))


def paste(x: torch.Tensor, patch: torch.Tensor, mask: torch.Tensor, centres: torch.Tensor | Sequence) -> torch.Tensor:
    """Paste a masked patch on each image at its centre, clipped at the borders (differentiable in ``patch``).

    ``x'[y, x] = x[y, x] (1 - M) + P M`` over the pixels the patch covers.

    Args:
        x: ``(B, 3, S, S)`` normalised images (not modified).
        patch: ``(3, n, n)`` normalised patch, or ``(B, 3, n, n)`` one per image.
        mask: ``(n, n)`` shape mask in ``[0, 1]``.
        centres: ``(B, 2)`` ``(cx, cy)`` in input pixels.

    Returns:
        ``(B, 3, S, S)`` marked images.
    """
    b, _, s_h, s_w = x.shape
    n = int(mask.shape[-1])
    centres = torch.as_tensor(centres, dtype=torch.float64).reshape(b, 2)
    mask = mask.to(x.dtype)
    rows = []
    for i in range(b):
        x0, y0 = patch_origin(float(centres[i, 0]), n), patch_origin(float(centres[i, 1]), n)
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + n, s_w), min(y0 + n, s_h)
        img = x[i]
        if cx1 <= cx0 or cy1 <= cy0:
            rows.append(img)
            continue
        p = patch[i] if patch.dim() == 4 else patch
        ps = p[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        ms = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        region = img[:, cy0:cy1, cx0:cx1] * (1 - ms) + ps * ms
        # Rebuild the image around the region (no in-place write, so autograd reaches the patch).
        mid = torch.cat([img[:, cy0:cy1, :cx0], region, img[:, cy0:cy1, cx1:]], dim=2)
        rows.append(torch.cat([img[:, :cy0], mid, img[:, cy1:]], dim=1))
    return torch.stack(rows)


def ellipse_outline(input_size: int, cx: float, cy: float, rx: float, ry: float, thickness: float) -> torch.Tensor:
    """The red circle's pixels: between the ellipse ``(rx, ry)`` and the one ``thickness`` pixels inside it.

    Args:
        input_size: ``S``.
        cx, cy, rx, ry: centre and radii in input pixels.
        thickness: line width in input pixels.

    Returns:
        ``(S, S)`` bool, ``True`` on the outline (pixel centres tested).
    """
    c = torch.arange(input_size, dtype=torch.float64) + 0.5
    u, v = c[None, :] - cx, c[:, None] - cy
    rx, ry = max(rx, 0.5), max(ry, 0.5)
    outer = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    ix, iy = rx - thickness, ry - thickness
    if ix <= 0 or iy <= 0:
        return outer
    inner = (u / ix) ** 2 + (v / iy) ** 2 < 1.0
    return outer & ~inner


def normalise_rgb(rgb: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(3, ...)`` RGB in ``[0, 1]`` -> normalised with the model's mean and std."""
    shape = (3,) + (1,) * (rgb.dim() - 1)
    m = torch.as_tensor(mean, dtype=rgb.dtype, device=rgb.device).view(shape)
    s = torch.as_tensor(std, dtype=rgb.dtype, device=rgb.device).view(shape)
    return (rgb - m) / s



@dataclass(frozen=True)
class Placement:
    """Where a marker goes, in input pixels: centre ``(cx, cy)`` and extent ``width x height``.

    A learned prompt is a square (``width == height``, its side); the red circle is an ellipse with
    diameters ``width`` and ``height``.
    """

    cx: float
    cy: float
    width: float
    height: float

    def in_image(self, image_size: tuple[int, int], input_size: int) -> tuple[float, float, float, float]:
        """The same placement in original-image pixels ``(cx, cy, width, height)`` (for drawing it on the photo).

        Args:
            image_size: ``(W, H)`` of the photo.
            input_size: ``S``.
        """
        sx, sy = image_size[0] / input_size, image_size[1] / input_size
        return self.cx * sx, self.cy * sy, self.width * sx, self.height * sy

    def pixel_box(self, input_size: int) -> tuple[int, int, int, int]:
        """The clipped pixel rectangle the marker can touch, ``(x0, y0, x1, y1)`` exclusive ends."""
        w, h = int(round(self.width)), int(round(self.height))
        x0, y0 = patch_origin(self.cx, w), patch_origin(self.cy, h)
        return max(x0, 0), max(y0, 0), min(x0 + w, input_size), min(y0 + h, input_size)


def prompt_extent(prompt: Prompt, image_size: tuple[int, int], input_size: int) -> tuple[float, float, float | None, float | None]:
    """The prompt's centre and size in input pixels: ``(cx, cy, w, h)``, ``w = h = None`` for a point.

    A box (or else a mask's bounding box) gives its centre and size; otherwise the first positive point.

    Args:
        prompt: in original-image pixels.
        image_size: ``(W, H)`` of the photo.
        input_size: ``S``.
    """
    w, h = image_size
    sx, sy = input_size / w, input_size / h
    box = prompt.box.clipped(w, h) if prompt.box is not None else (prompt.mask.bbox() if prompt.mask is not None else None)
    if box is not None:
        return (box.x0 + box.x1) / 2 * sx, (box.y0 + box.y1) / 2 * sy, (box.x1 - box.x0) * sx, (box.y1 - box.y0) * sy
    p = next(p for p in prompt.points if p.positive)
    if not (0.0 <= p.x <= w and 0.0 <= p.y <= h):
        raise PromptError(f"The point ({p.x:g}, {p.y:g}) is outside the {w}x{h} image.")
    return p.x * sx, p.y * sy, None, None



@dataclass(frozen=True)
class RedCircle:
    """The manual marker: a red ellipse outline (no training).

    Attributes:
        size: diameter in input pixels for a point prompt (``None``: a quarter of ``S``); a box gets the
            ellipse through its corners' midpoints (diameters = the box's width and height).
        thickness: line width in input pixels (``None``: ``S / 48``, at least 1).
        colour: RGB in ``[0, 1]``.
    """

    size: int | None = None
    thickness: float | None = None
    colour: tuple[float, float, float] = (1.0, 0.0, 0.0)

    name = "red-circle"

    def placement(self, prompt: Prompt, image_size: tuple[int, int], input_size: int) -> Placement:
        """See :meth:`Marker.placement`: a box gets the inscribed ellipse, a point the default diameter."""
        cx, cy, w, h = prompt_extent(prompt, image_size, input_size)
        if w is None or h is None:
            w = h = float(self.size or max(input_size // 4, 3))
        return Placement(cx, cy, max(w, 3.0), max(h, 3.0))

    def apply(self, x: torch.Tensor, placements: Sequence[Placement], mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
        """Draw the outline on ``(B, 3, S, S)`` normalised images, one placement per image."""
        s = x.shape[-1]
        t = self.thickness if self.thickness is not None else max(1.0, round(s / 48))
        red = normalise_rgb(torch.tensor(self.colour, dtype=x.dtype), mean, std).view(3, 1, 1)
        out = []
        for img, pl in zip(x, placements):
            ring = ellipse_outline(s, pl.cx, pl.cy, pl.width / 2, pl.height / 2, t).to(x.device)
            out.append(torch.where(ring[None], red.to(x.device), img))
        return torch.stack(out)



@runtime_checkable
class Marker(Protocol):
    """What the engine needs of a marker: where it goes for a prompt, and how it is drawn.

    Implemented by :class:`RedCircle` and :class:`core.method.lvp.LearnedPrompt`.
    """

    name: str

    def placement(self, prompt: Prompt, image_size: tuple[int, int], input_size: int) -> Placement:
        """Where the marker is drawn for ``prompt``, in input pixels (the app draws it from this).

        A point prompt puts the marker's centre on the point, at the marker's own size. A box (or a mask's
        bounding box) puts it at the box's centre, scaled to the box. Map back to the photo with
        :meth:`Placement.in_image`.

        Args:
            prompt: in original-image pixels.
            image_size: ``(W, H)`` of the photo.
            input_size: ``S``.
        """
        ...

    def apply(self, x: torch.Tensor, placements: Sequence[Placement], mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
        """Draw on ``(B, 3, S, S)`` normalised images, one placement per image; returns the marked images."""
        ...


def mark_input(x: torch.Tensor, prompt: Prompt, image_size: tuple[int, int], marker: Marker,
               mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, Placement]:
    """The photo's model input with ``marker`` drawn at ``prompt``.

    Args:
        x: ``(3, S, S)`` normalised input of the photo (squash-resized).
        prompt: in original-image pixels of the ``image_size`` photo.
        image_size: ``(W, H)``.
        marker: learned prompt or red circle.
        mean, std: the model's normalisation.

    Returns:
        ``(3, S, S)`` marked input and the :class:`Placement` used.
    """
    pl = marker.placement(prompt, image_size, int(x.shape[-1]))
    return marker.apply(x[None], [pl], mean, std)[0], pl
