"""From a photo to the model's input: decode exactly as the library does, squash-resize, normalise.

Kept apart from the engine the way segment-anything keeps ``ResizeLongestSide`` apart from its predictor.

* :func:`read_for_model` decodes a query photo through the same code and the same bytes path as the indexer
  (:func:`core.imageio.decode_image_bytes` with JPEG draft scaling at the model input side), so a photo used
  as its own query gives its stored feature exactly. It also returns the photo's full upright size: prompts
  are given in those pixels, and the squash resize maps the whole photo (full or draft-decoded) onto the
  same input square.
* :class:`SquashResize` turns an RGB image into the normalised ``(3, S, S)`` input (no centre crop, so every
  prompt location maps to a token).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.errors import ImageLoadError
from core.imageio import decode_image_bytes, load_image, read_photo_bytes, upright_size

ImageLike = Image.Image | np.ndarray | str | Path | bytes
"""What the engine accepts as a photo: a PIL image, an ``(H, W, 3)`` uint8 RGB array, a path or file bytes."""


def to_pil(image: ImageLike) -> Image.Image:
    """Any supported input as an RGB PIL image with EXIF orientation applied, at full resolution.

    Args:
        image: a PIL image, an ``(H, W, 3)`` or ``(H, W)`` uint8 array, a path, or encoded bytes.

    Raises:
        ImageLoadError: the file cannot be read or decoded.
    """
    if isinstance(image, (str, Path, bytes, Image.Image)):
        return load_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ImageLoadError(f"An image array must be (H, W, 3) RGB, not {image.shape}.")
        return Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8), "RGB")
    raise ImageLoadError(f"Cannot read an image from a {type(image).__name__}.")


def read_for_model(image: ImageLike, input_size: int) -> tuple[Image.Image, tuple[int, int]]:
    """Decode a photo for the model exactly as the indexer decodes a library file.

    Args:
        image: as for :func:`to_pil`. Paths and bytes are decoded from their bytes with JPEG draft scaling
            at ``input_size`` (the indexer's decode); images and arrays are used as they are.
        input_size: the model's square input side ``S``.

    Returns:
        ``(img, (W, H))``: the RGB image to resize for the model (possibly draft-reduced) and the photo's
        full size after EXIF orientation, the pixel frame of prompts.
    """
    if isinstance(image, (str, Path)):
        data = read_photo_bytes(image)
        name = Path(image).name
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data, name = bytes(image), "the image data"
    else:
        pil = to_pil(image)
        return pil, pil.size
    img = decode_image_bytes(data, name=name, draft_size=input_size)
    return img, upright_size(data, name=name)


@dataclass(frozen=True)
class SquashResize:
    """Squash-resize to ``S x S`` and normalise with the model's mean and std.

    Attributes:
        size: input side ``S`` in pixels.
        mean, std: per-channel normalisation of ``[0, 1]`` RGB.
        interpolation: ``bicubic`` or ``bilinear``.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def resize(self, image: Image.Image) -> Image.Image:
        """The ``S x S`` RGB image the model sees (before normalisation)."""
        resample = Image.Resampling.BICUBIC if self.interpolation == "bicubic" else Image.Resampling.BILINEAR
        return image.resize((self.size, self.size), resample=resample)

    def normalize(self, image: Image.Image) -> torch.Tensor:
        """An ``S x S`` RGB image as the normalised ``(3, S, S)`` float32 tensor."""
        arr = np.asarray(image, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Resize and normalise: RGB PIL image -> ``(3, S, S)`` float32 tensor on the CPU."""
        return self.normalize(self.resize(image))
