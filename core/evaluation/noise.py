"""Noisy box prompts (seed 000, section A3, Eqs. A9-A10).

A box ``(x0, y0, x1, y1)`` (XYXY, continuous pixel coordinates, see :mod:`core.evaluation.datasets`) is shifted by
``(c_x, c_y)`` and resized by ``(l_x, l_y)``, four integers drawn independently and uniformly from
``[-m, m]``::

    (x0', y0') = (x0, y0) + (c_x, c_y) - (l_x, l_y)      (A9)
    (x1', y1') = (x1, y1) + (c_x, c_y) + (l_x, l_y)      (A10)

so each corner moves by at most ``2m`` per axis. The paper uses ``m = 40`` px on COCO (about 7.6% of the
image side); here ``m`` scales with the image: ``m = round(m_ref * max(W, H) / ref_side)``, 40 px at a
640 px side by default (:func:`noise_magnitude`).

After Eqs. A9-A10 the box is clipped to the image ``[0, W] x [0, H]``. A box that is then thinner than
``min_size`` on an axis (the resize shrank it past zero, or the shift pushed it off the image) is degenerate;
on that axis it is replaced by a ``min_size`` wide interval centred on the clipped noisy centre
``(x0' + x1') / 2`` and moved inside the image if it sticks out. The noise thus keeps its shift, the box
keeps positive area, stays inside the image, and each corner moves by at most ``2m + min_size``
(``2m`` when no axis was degenerate).
"""

from __future__ import annotations

import numpy as np

__all__ = ["noise_magnitude", "noisy_box", "noisy_boxes"]

#: Paper's noise magnitude (px) and the image side it refers to (COCO images are at most 640 px).
M_REF = 40.0
REF_SIDE = 640.0


def noise_magnitude(width: int, height: int, *, m_ref: float = M_REF, ref_side: float = REF_SIDE) -> int:
    """Return ``m = round(m_ref * max(W, H) / ref_side)`` (integer pixels, at least 0)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"Image size must be positive, got {width}x{height}.")
    if m_ref < 0 or ref_side <= 0:
        raise ValueError("m_ref must be >= 0 and ref_side > 0.")
    return max(0, int(round(m_ref * max(width, height) / ref_side)))


def noisy_boxes(
    boxes: np.ndarray,
    width: int,
    height: int,
    rng: np.random.Generator | int | None = None,
    *,
    m: int | None = None,
    m_ref: float = M_REF,
    ref_side: float = REF_SIDE,
    min_size: float = 1.0,
) -> np.ndarray:
    """Apply Eqs. A9-A10 to each box, then clip and repair as the module doc says.

    Args:
        boxes: ``(N, 4)`` XYXY boxes in pixels of a ``width x height`` image (``x0 < x1``, ``y0 < y1``).
        width: Image width ``W``.
        height: Image height ``H``.
        rng: A generator, or a seed for ``np.random.default_rng``.
        m: Noise magnitude in pixels; default :func:`noise_magnitude` of the image.
        m_ref: Magnitude at the reference side (40 px in the paper).
        ref_side: Reference image side (640 px, COCO scale).
        min_size: Least width and height of the result in pixels (``0 < min_size <= min(W, H)``).

    Returns:
        ``(N, 4)`` float64 noisy XYXY boxes inside ``[0, W] x [0, H]`` with width and height ``>= min_size``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) XYXY, got shape {boxes.shape}.")
    if not 0 < min_size <= min(width, height):
        raise ValueError(f"min_size must be in (0, {min(width, height)}], got {min_size}.")
    if m is None:
        m = noise_magnitude(width, height, m_ref=m_ref, ref_side=ref_side)
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}.")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    # Columns: c_x, c_y, l_x, l_y, each uniform over the integers of [-m, m].
    c = gen.integers(-m, m, size=(len(boxes), 4), endpoint=True).astype(np.float64)
    shift, grow = c[:, :2], c[:, 2:]
    lo = boxes[:, :2] + shift - grow  # (A9)
    hi = boxes[:, 2:] + shift + grow  # (A10)
    limit = np.array([width, height], dtype=np.float64)
    lo = np.clip(lo, 0.0, limit)
    hi = np.clip(hi, 0.0, limit)
    bad = hi - lo < min_size
    centre = np.clip((lo + hi) / 2.0, min_size / 2.0, limit - min_size / 2.0)
    lo = np.where(bad, centre - min_size / 2.0, lo)
    hi = np.where(bad, centre + min_size / 2.0, hi)
    return np.concatenate([lo, hi], axis=1)


def noisy_box(
    box: np.ndarray | tuple[float, float, float, float],
    width: int,
    height: int,
    rng: np.random.Generator | int | None = None,
    **kwargs,
) -> np.ndarray:
    """One noisy box: :func:`noisy_boxes` on a ``(4,)`` XYXY box; returns ``(4,)`` float64."""
    return noisy_boxes(np.asarray(box, dtype=np.float64)[None, :], width, height, rng, **kwargs)[0]
