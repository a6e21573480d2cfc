"""``phs scenes`` and the demo gallery: synthetic scenes written as JPEG files with a COCO ``annotations.json``.

The writer is part of the synthetic data (:mod:`core.synthetic.scenes` draws the scenes); the evaluation
reads such a folder back with :func:`core.evaluation.datasets.load_synthetic`. Masks are written as COCO
compressed RLE of the visible pixels (``(H, W)`` bool, row-major, column-major runs as COCO defines them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import PHSError
from core.fileio import atomic_write_json
from core.synthetic.scenes import CATEGORIES as SCENE_CATEGORIES
from core.synthetic.scenes import Scene, generate_scene

#: The ``info.generator`` value of the ``annotations.json`` that :func:`write_scene_folder` writes.
SCENES_GENERATOR = "phs scenes"
ANNOTATIONS_FILE = "annotations.json"
#: Marker file that :func:`write_scene_folder` puts first into a folder, so that it recognises a folder it
#: was interrupted in.
MARKER_FILE = ".phs-scenes"
_OWN_NAME = re.compile(r"scene_\d{6,}\.jpg|annotations\.json|\.phs-scenes|\.annotations\..*\.tmp")
_SCENE_NAME = re.compile(r"scene_\d{6,}\.jpg")


def _rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of ``mask`` in column-major order, starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def _counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed RLE string (pycocotools ``rleToString``): LEB128-like, deltas after the third."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode an ``(H, W)`` bool mask as COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}.")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(_rle_counts(mask))}


def _scene_file_name(index: int) -> str:
    return f"scene_{index:06d}.jpg"


def _is_own_output(folder: Path, names: set[str]) -> bool:
    """Whether ``folder`` (holding ``names``) was written by :func:`write_scene_folder`, and only by it.

    It must hold the marker file or an ``annotations.json`` whose ``info.generator`` is ours, and nothing
    but files with the names this writer uses.
    """
    if not all(_OWN_NAME.fullmatch(nm) for nm in names):
        return False
    if MARKER_FILE in names:
        return True
    try:
        with open(folder / ANNOTATIONS_FILE, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("info", {}).get("generator") == SCENES_GENERATOR


def write_scene_folder(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    *,
    min_objects: int = 1,
    max_objects: int = 6,
    min_visible: float = 0.3,
    quality: int = 92,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` scenes as JPEG files and a COCO ``annotations.json`` into ``out_dir``.

    The JSON has ``images`` (id = scene index, ``scene_XXXXXX.jpg``), ``annotations`` (``category_id``,
    ``bbox`` in COCO ``[x, y, w, h]`` of the visible pixels, ``segmentation`` as compressed RLE of the
    visible pixels, ``area`` = visible pixel count, ``iscrowd`` = 0), ``categories`` (id = index in
    :data:`core.synthetic.scenes.CATEGORIES`, with names) and ``info`` with the generator parameters.

    ``out_dir`` may be missing, empty, or a previous (possibly interrupted) output of this function: a folder
    holding its marker file ``.phs-scenes`` or its ``annotations.json``, and only files named as it names
    them. Scene images of a previous output that the new one does not have are removed. The JSON is
    removed first and written last, atomically, so a folder with an ``annotations.json`` always matches
    its images.

    Args:
        out_dir: Target folder.
        n: Number of scenes (at least 1).
        seed: Generator seed.
        size: ``(W, H)`` of the images.
        min_objects: See :func:`core.synthetic.scenes.generate_scene`.
        max_objects: See :func:`core.synthetic.scenes.generate_scene`.
        min_visible: See :func:`core.synthetic.scenes.generate_scene`.
        quality: JPEG quality (1-95).
        progress: Called as ``progress(done, n)`` after each image.

    Returns:
        The path of ``annotations.json``.

    Raises:
        PHSError: ``out_dir`` is a file, or a non-empty folder that is not an output of this function.
    """
    out = Path(out_dir)
    if n < 1:
        raise PHSError(f"The number of scenes must be at least 1, got {n}.")
    stale = _claim_folder(out)

    images, anns = [], []
    ann_id = 1
    for i in range(n):
        scene = generate_scene(
            seed, i, size, min_objects=min_objects, max_objects=max_objects, min_visible=min_visible
        )
        fname = _scene_file_name(i)
        Image.fromarray(scene.image).save(out / fname, format="JPEG", quality=int(quality))
        stale.discard(fname)
        images.append({"id": i, "file_name": fname, "width": scene.width, "height": scene.height})
        anns += _annotations(scene, ann_id)
        ann_id += len(scene.objects)
        if progress is not None:
            progress(i + 1, n)
    for name in stale:
        (out / name).unlink(missing_ok=True)
    data = {
        "info": _info(seed, size, min_objects, max_objects, min_visible),
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": i, "name": nm, "supercategory": "shape"} for i, nm in enumerate(SCENE_CATEGORIES)
        ],
    }
    target = out / ANNOTATIONS_FILE
    atomic_write_json(target, data, compact=True)
    return target


def _claim_folder(out: Path) -> set[str]:
    """Make ``out`` this writer's folder (marker first, no annotations until the end); returns its old scene
    images, which the new output removes unless it rewrites them.

    Raises:
        PHSError: ``out`` is a file, or a non-empty folder that is not an output of :func:`write_scene_folder`.
    """
    if out.exists() and not out.is_dir():
        raise PHSError(f"{out} is a file, not a folder; choose another output folder.")
    stale: set[str] = set()
    if out.is_dir():
        present = {p.name for p in out.iterdir()}
        if present and not _is_own_output(out, present):
            raise PHSError(
                f"{out} is not empty and is not a folder written by 'phs scenes'; choose an empty or new folder."
            )
        stale = {nm for nm in present if _SCENE_NAME.fullmatch(nm)}
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text(SCENES_GENERATOR + "\n", encoding="utf-8")
    # Until the new annotations.json is complete, the folder has none (an interrupted run leaves only images).
    (out / ANNOTATIONS_FILE).unlink(missing_ok=True)
    return stale


def _annotations(scene: Scene, first_id: int) -> list[dict[str, Any]]:
    """The COCO annotations of a scene's objects, ids from ``first_id``: ``bbox`` ``[x, y, w, h]`` of the
    visible pixels, ``segmentation`` compressed RLE, ``area`` the visible pixel count."""
    anns = []
    for n, o in enumerate(scene.objects):
        x0, y0, x1, y1 = (int(v) for v in o.bbox)
        anns.append(
            {
                "id": first_id + n,
                "image_id": scene.index,
                "category_id": o.category_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": int(o.area),
                "iscrowd": 0,
                "segmentation": rle_encode(o.mask),
            }
        )
    return anns


def _info(seed: int, size: tuple[int, int], min_objects: int, max_objects: int, min_visible: float) -> dict[str, Any]:
    """The ``info`` block of ``annotations.json``: the generator and its parameters."""
    return {
        "description": "PHS desktop synthetic scenes",
        "generator": SCENES_GENERATOR,
        "seed": int(seed),
        "size": [int(size[0]), int(size[1])],
        "min_objects": int(min_objects),
        "max_objects": int(max_objects),
        "min_visible": float(min_visible),
        "bbox": "visible pixels",
    }
