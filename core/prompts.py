"""Public name of the prompts (``from core.prompts import Prompt``): :mod:`core.method.prompts`, re-exported."""

from core.method.prompts import (
    Box,
    Mask,
    Point,
    Prompt,
    Roi,
    box_cells,
    mask_fractions,
    point_cell,
    prompt_pixel_mask,
    prompt_to_roi,
)

__all__ = [
    "Box", "Mask", "Point", "Prompt", "Roi", "box_cells", "mask_fractions", "point_cell", "prompt_pixel_mask",
    "prompt_to_roi",
]  # fmt: skip
