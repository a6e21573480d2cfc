"""The offline demo: a generated gallery of synthetic scenes that the demo model can search at once.

When no real model weights are on the machine, the desktop app (and anyone trying the CLI) starts with the
demo model (``load_engine("demo")``) and this gallery: JPEG photos of synthetic scenes from
:mod:`core.scenes`, written into ``core.paths.data_dir() / "demo-gallery"`` (never anywhere else), plus a
COCO-style ``annotations.json`` naming the objects in each photo, so a person (or a test) can check that the
photos at the top of a search contain the marked kind of object.

Qt-free; the GUI runs :func:`write_demo_gallery` in a worker and shows its progress.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from core.paths import data_dir
from core.scenes import CATEGORIES, generate_scene

DEMO_FOLDER = "demo-gallery"
ANNOTATIONS = "annotations.json"
DEMO_SEED = 20240611
"""Scene seed of the demo gallery (a seed the demo model was not trained on is the honest choice)."""
DEMO_SIZE = (224, 224)
DEMO_COUNT = 160
_DONE_MARK = ".complete"


def demo_gallery_dir() -> Path:
    """Where the demo gallery lives: ``data_dir() / "demo-gallery"``."""
    return data_dir() / DEMO_FOLDER


def demo_gallery_ready(folder: Path | None = None) -> bool:
    """Whether a complete demo gallery has been written (an interrupted one is finished on the next call)."""
    return ((folder or demo_gallery_dir()) / _DONE_MARK).is_file()


def write_demo_gallery(
    n: int = DEMO_COUNT,
    *,
    seed: int = DEMO_SEED,
    size: tuple[int, int] = DEMO_SIZE,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    folder: Path | None = None,
) -> Path:
    """Write the demo gallery: ``n`` JPEG scenes and their COCO-style annotations.

    Photos already present are kept (scene ``i`` depends only on ``(seed, i)``), so an interrupted run
    resumes where it stopped. Files are written atomically (temporary name, then rename).

    Args:
        n: Number of photos.
        seed: Scene seed.
        size: ``(W, H)`` of each photo.
        progress: Called with ``(done, n)`` after every photo.
        cancel: When set, stop after the current photo (the gallery stays incomplete).
        folder: Target folder; default :func:`demo_gallery_dir` (tests pass a temporary folder).

    Returns:
        The gallery folder.
    """
    out = Path(folder) if folder is not None else demo_gallery_dir()
    out.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        if cancel is not None and cancel.is_set():
            return out
        scene = generate_scene(seed, i, size)
        name = f"scene_{i:04d}.jpg"
        path = out / name
        if not path.is_file():
            tmp = out / f".{name}.tmp"
            Image.fromarray(scene.image).save(tmp, format="JPEG", quality=92)
            os.replace(tmp, path)
        images.append({"id": i, "file_name": name, "width": scene.width, "height": scene.height})
        for j, obj in enumerate(scene.objects):
            x0, y0, x1, y1 = (int(v) for v in obj.bbox)
            annotations.append(
                {
                    "id": i * 100 + j,
                    "image_id": i,
                    "category_id": obj.category_id,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": int(obj.area),
                    "iscrowd": 0,
                }
            )
        if progress is not None:
            progress(i + 1, n)
    coco = {
        "info": {"description": f"PHS desktop demo gallery (synthetic scenes, seed {seed})"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": name} for c, name in enumerate(CATEGORIES)],
    }
    tmp = out / f".{ANNOTATIONS}.tmp"
    tmp.write_text(json.dumps(coco), "utf-8")
    os.replace(tmp, out / ANNOTATIONS)
    (out / _DONE_MARK).write_text("ok\n", "utf-8")
    return out


def gallery_categories(folder: Path) -> dict[str, set[str]]:
    """``{file name: {category names}}`` from a gallery's ``annotations.json`` (empty if there is none)."""
    try:
        coco = json.loads((Path(folder) / ANNOTATIONS).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    files = {im["id"]: im["file_name"] for im in coco.get("images", [])}
    out: dict[str, set[str]] = {f: set() for f in files.values()}
    for a in coco.get("annotations", []):
        out.setdefault(files.get(a["image_id"], ""), set()).add(names.get(a["category_id"], "?"))
    return out
