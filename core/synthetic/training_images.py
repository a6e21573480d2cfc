"""Where a learned prompt's training images come from: generated scenes or a photo folder.

The training loop (:mod:`core.method.lvp_train`) sits with the method and takes any
:class:`~core.method.lvp_train.ImagePool`; the sources live here, above the method, because they read the
synthetic scenes and the library's folder scan. ``phs lvp train`` and the app both call
:func:`training_pools`, so a prompt trained from either sees the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import ImageLoadError, PHSError
from core.imageio import load_image
from core.library.scan import scan_folder
from core.method.lvp_train import (
    EVAL_SCENE_SEED,
    SCENE_SIZE,
    TRAIN_SCENE_SEED,
    ImagePool,
    TrainConfig,
    to_input,
)
from core.synthetic.scenes import generate_scene


def synthetic_pool(input_size: int, count: int, seed: int, progress: Callable[[int, int], None] | None = None,
                   resample: Image.Resampling = Image.Resampling.BICUBIC) -> ImagePool:
    """``count`` generated scenes of ``seed`` (drawn at 128 px, squash-resized to ``S``), generated up front.

    Args:
        input_size: ``S``.
        count: number of scenes.
        seed: scene seed.
        progress: called with ``(done, count)`` every 100 scenes and at the end.
        resample: the engine's resampling filter.
    """
    images = np.empty((count, 3, input_size, input_size), np.uint8)
    for i in range(count):
        sc = generate_scene(seed, i, (SCENE_SIZE, SCENE_SIZE))
        images[i] = to_input(Image.fromarray(sc.image), input_size, resample)
        if progress is not None and ((i + 1) % 100 == 0 or i + 1 == count):
            progress(i + 1, count)
    return ImagePool(input_size, count, lambda i: images[i], f"{count} synthetic scenes (seed {seed})", cache_bytes=0)


def folder_pool(path: str | Path, input_size: int,
                resample: Image.Resampling = Image.Resampling.BICUBIC) -> ImagePool:
    """Every photo under ``path`` (read only), decoded when first used; an unreadable one reads as grey.

    Raises:
        PHSError: the folder does not exist or holds no photo.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise PHSError(f"The image folder {root} does not exist or is not a folder.")
    files = [f.path for f in scan_folder(root)]
    if not files:
        raise PHSError(f"The folder {root} holds no photo to train on.")

    def load(i: int) -> np.ndarray:
        try:
            return to_input(load_image(files[i], draft_size=input_size), input_size, resample)
        except ImageLoadError:
            # An unreadable photo is replaced by a grey image rather than stopping a long run.
            return np.full((3, input_size, input_size), 127, np.uint8)

    return ImagePool(input_size, len(files), load, f"{len(files)} photos in {root}")


def training_pools(source: str | Path, cfg: TrainConfig, input_size: int, resample: Image.Resampling,
                   progress: Callable[[int, int], None] | None = None) -> tuple[ImagePool, ImagePool | None, str]:
    """The training images of ``source`` (``"synthetic"`` or a photo folder) and the held-out ones.

    Args:
        source: ``"synthetic"`` for generated scenes (seed ``TRAIN_SCENE_SEED + cfg.seed``), else a folder.
        cfg: the training settings (``scenes``, ``gain_images``, ``seed``).
        input_size: ``S``.
        resample: the engine's resampling filter.
        progress: scene generation progress ``(done, total)`` (synthetic only).

    Returns:
        ``(pool, eval_pool, label)``: the held-out scenes for the attention gain (``None`` for a folder or
        ``cfg.gain_images == 0``) and a one-line description of the images for the sidecar.
    """
    if str(source) == "synthetic":
        seed = TRAIN_SCENE_SEED + cfg.seed
        pool = synthetic_pool(input_size, cfg.scenes, seed, progress=progress, resample=resample)
        eval_pool = (synthetic_pool(input_size, cfg.gain_images, EVAL_SCENE_SEED, resample=resample)
                     if cfg.gain_images else None)
        return pool, eval_pool, f"synthetic scenes, seed {seed}, {cfg.scenes} scenes"
    pool = folder_pool(source, input_size, resample=resample)
    return pool, None, f"photos in {Path(source).expanduser().resolve()}"
