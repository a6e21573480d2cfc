"""The offline demo: a generated gallery of synthetic scenes that the demo model can search at once.

When no real model weights are on the machine, the desktop app (and anyone trying the CLI) starts with the
demo model (``load_engine("demo")``) and this gallery: JPEG photos of synthetic scenes from
:mod:`core.synthetic.scenes`, written by :func:`core.synthetic.scene_folder.write_scene_folder` (the writer of ``phs scenes``) into
``core.paths.data_dir() / "demo-gallery"`` (never anywhere else), with a COCO ``annotations.json`` naming
the objects in each photo, so a person (or a test) can check that the photos at the top of a search contain
the marked kind of object.

Qt-free; the GUI runs :func:`write_demo_gallery` in a worker and shows its progress.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.paths import data_dir
from core.synthetic.scene_folder import ANNOTATIONS_FILE, write_scene_folder

DEMO_FOLDER = "demo-gallery"
DEMO_SEED = 20240611
"""Scene seed of the demo gallery (a seed the demo model was not trained on is the honest choice)."""
DEMO_SIZE = (224, 224)
DEMO_COUNT = 160


def demo_gallery_dir() -> Path:
    """Where the demo gallery lives: ``data_dir() / "demo-gallery"``."""
    return data_dir() / DEMO_FOLDER


def demo_gallery_ready(folder: Path | None = None) -> bool:
    """Whether a complete demo gallery has been written (its annotations are written last)."""
    return ((folder or demo_gallery_dir()) / ANNOTATIONS_FILE).is_file()


def write_demo_gallery(
    n: int = DEMO_COUNT,
    *,
    seed: int = DEMO_SEED,
    size: tuple[int, int] = DEMO_SIZE,
    progress: Callable[[int, int], None] | None = None,
    folder: Path | None = None,
) -> Path:
    """Write the demo gallery: ``n`` JPEG scenes and their COCO annotations (``phs scenes``'s writer).

    An interrupted gallery (no ``annotations.json`` yet) is written again; scene ``i`` depends only on
    ``(seed, i)``, so the photos are the same each time and an index built on them stays valid.

    Args:
        n: Number of photos.
        seed: Scene seed.
        size: ``(W, H)`` of each photo.
        progress: Called with ``(done, n)`` after every photo.
        folder: Target folder; default :func:`demo_gallery_dir` (tests pass a temporary folder).

    Returns:
        The gallery folder.
    """
    out = Path(folder) if folder is not None else demo_gallery_dir()
    write_scene_folder(out, n, seed, size, progress=progress)
    return out


def gallery_categories(folder: Path) -> dict[str, set[str]]:
    """``{file name: {category names}}`` from a gallery's ``annotations.json`` (empty if there is none)."""
    try:
        coco = json.loads((Path(folder) / ANNOTATIONS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    files = {im["id"]: im["file_name"] for im in coco.get("images", [])}
    out: dict[str, set[str]] = {f: set() for f in files.values()}
    for a in coco.get("annotations", []):
        out.setdefault(files.get(a["image_id"], ""), set()).add(names.get(a["category_id"], "?"))
    return out
