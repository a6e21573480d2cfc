"""Display conversion: attention maps to coloured overlays, numpy images to ``QImage``.

Only numpy for pixels (no model math): a ``(gh, gw)`` map is min-max scaled for display, upsampled to the
photo's pixels (the map tiles the whole photo, because the model sees the photo squash-resized, see
:mod:`core.method.prompts`), coloured with a matplotlib colormap and blended over the photo.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

DEFAULT_CMAP = "inferno"


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    """A ``(256, 3)`` uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def normalize_map(a: np.ndarray) -> np.ndarray:
    """Min-max scale a map to ``[0, 1]`` for display (a constant map becomes zeros)."""
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi - lo <= 1e-12 else (a - lo) / (hi - lo)


def upsample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``(gh, gw)`` map to ``size = (W, H)`` pixels, cell centres aligned."""
    img = Image.fromarray(np.asarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, resample=Image.Resampling.BILINEAR), dtype=np.float32)


def colorize(a: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A ``[0, 1]`` map as ``(..., 3)`` uint8 colours."""
    idx = np.clip(np.asarray(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _lut(cmap)[idx]


def blend_map(photo: np.ndarray, attn: np.ndarray, alpha: float = 0.6, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """An attention map over a photo.

    Args:
        photo: ``(H, W, 3)`` uint8 RGB (usually a small copy of the query photo).
        attn: ``(gh, gw)`` map over the whole photo.
        alpha: weight of the colour map.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    return blend_on_grey(dimmed_grey(photo), attn, alpha, cmap)


def dimmed_grey(photo: np.ndarray) -> np.ndarray:
    """The photo as ``(H, W, 1)`` float32 grey, slightly dimmed, the backdrop of every map (compute once)."""
    return photo.astype(np.float32).mean(axis=2, keepdims=True) * np.float32(0.9)


def blend_on_grey(grey: np.ndarray, attn: np.ndarray, alpha: float = 0.6, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """:func:`blend_map` on a backdrop from :func:`dimmed_grey`; ``(H, W, 3)`` uint8."""
    h, w = grey.shape[:2]
    heat = normalize_map(upsample(normalize_map(attn), (w, h)))
    out = colorize(heat, cmap).astype(np.float32)
    out *= np.float32(alpha)
    out += np.float32(1 - alpha) * grey + np.float32(0.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def format_score(x: float, digits: int = 3) -> str:
    """A score with ``digits`` decimals, never ``-0.000`` (a tiny negative rounds to a plain zero)."""
    v = round(float(x), digits) + 0.0
    return f"{0.0 if v == 0 else v:.{digits}f}"


def warm_up() -> None:
    """Import matplotlib and build the colour table (call from a worker so the first prompt is fast)."""
    _lut(DEFAULT_CMAP)


def shrink(photo: np.ndarray, max_side: int) -> np.ndarray:
    """A copy of an ``(H, W, 3)`` photo whose longer side is at most ``max_side`` (aspect kept)."""
    h, w = photo.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return photo
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BILINEAR))


def to_qimage(rgb: np.ndarray) -> QImage:
    """An ``(H, W, 3)`` uint8 RGB or ``(H, W, 4)`` RGBA array as a ``QImage`` that owns its pixels."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = arr.shape[:2]
    fmt = QImage.Format.Format_RGBA8888 if arr.shape[2] == 4 else QImage.Format.Format_RGB888
    return QImage(arr.data, w, h, arr.strides[0], fmt).copy()
