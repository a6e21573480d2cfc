"""Export annotations to COCO, labelme and YOLO, and import COCO and labelme files.

* COCO instances JSON: ``images`` (``file_name`` relative to the folder, ``path`` absolute, real ``width`` and
  ``height``), ``categories`` from the labels (ids 1.. by name), ``annotations`` with ``bbox`` ``[x, y, w, h]``,
  ``area`` and ``segmentation``: a box as its rectangle polygon, a mask as compressed RLE (pycocotools).
  Point marks have no COCO form and are left out (counted).
* labelme: one ``<photo stem>.json`` per photo (subfolders mirrored) as labelme 5 writes it: ``rectangle``
  (two corners), ``point`` (one per click; negative clicks are left out), ``mask`` (two corners, inclusive, and
  the base64 PNG of the mask inside them); ``imagePath`` relative to the JSON file, ``imageData`` null.
* YOLO: ``classes.txt`` (one label a line, the class index is the line number) and one ``<photo stem>.txt``
  per photo: ``class cx cy w h`` normalised to ``[0, 1]`` (boxes; a mask's box). Points are left out.

An export writes only under the folder it is given, and refuses a folder inside a photo folder that holds
annotations unless ``allow_library``. An import parses and checks the whole file (or folder of labelme
files) first, then stores everything in one transaction: a damaged or foreign file changes nothing and
raises :class:`ImportFormatError` with one sentence naming what is wrong.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from core.annotations.store import Annotation, AnnotationStore
from core.errors import PHSError
from core.fileio import atomic_write_json, atomic_write_text

FORMATS = ("coco", "labelme", "yolo")
LABELME_VERSION = "5.5.0"


class ImportFormatError(PHSError):
    """A file to import is damaged or not in the format it claims."""


class ExportError(PHSError):
    """An export cannot be written where it was asked."""


def coco_masks():  # -> the pycocotools.mask module
    """pycocotools' mask module, or one sentence saying how to install it."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise PHSError("COCO masks (RLE) need pycocotools: pip install 'phs-desktop[eval]'.") from None
    return mask_utils


def _rle(mask: np.ndarray) -> dict[str, Any]:
    mask_utils = coco_masks()

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def to_coco(annotations: list[Annotation]) -> tuple[dict[str, Any], int]:
    """The COCO instances dict of ``annotations`` and how many point marks were left out."""
    labels = sorted({a.label for a in annotations})
    cat = {name: i for i, name in enumerate(labels, 1)}
    images: dict[tuple[str, str], dict[str, Any]] = {}
    anns, skipped = [], 0
    for a in annotations:
        if a.shape.kind == "points":
            skipped += 1
            continue
        key = (a.photo.folder, a.photo.path)
        if key not in images:
            images[key] = {"id": len(images) + 1, "file_name": a.photo.path, "path": str(a.photo.file),
                           "width": a.photo.size[0], "height": a.photo.size[1]}  # fmt: skip
        x0, y0, x1, y1 = a.shape.bbox()
        seg: Any = _rle(a.shape.mask) if a.shape.kind == "mask" else [[x0, y0, x1, y0, x1, y1, x0, y1]]
        anns.append({"id": len(anns) + 1, "image_id": images[key]["id"], "category_id": cat[a.label],
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": a.shape.area(), "iscrowd": 0,
                     "segmentation": seg, "origin": a.origin})  # fmt: skip
    coco = {"info": {"description": "PHS desktop annotations"}, "images": list(images.values()),
            "annotations": anns, "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cat.items()]}  # fmt: skip
    return coco, skipped


def _labelme_shape(a: Annotation) -> list[dict[str, Any]]:
    base = {"label": a.label, "group_id": None, "description": "", "flags": {}, "mask": None}
    s = a.shape
    if s.kind == "box":
        return [base | {"points": [[s.box[0], s.box[1]], [s.box[2], s.box[3]]], "shape_type": "rectangle"}]
    if s.kind == "points":
        return [base | {"points": [[float(x), float(y)]], "shape_type": "point"}
                for (x, y), pos in zip(s.points, s.positive) if pos]  # fmt: skip
    from PIL import Image

    x0, y0, x1, y1 = (int(v) for v in s.bbox())
    buf = io.BytesIO()
    Image.fromarray(s.mask[y0:y1, x0:x1]).save(buf, format="PNG")
    return [base | {"points": [[x0, y0], [x1 - 1, y1 - 1]], "shape_type": "mask",
                    "mask": base64.b64encode(buf.getvalue()).decode("ascii")}]  # fmt: skip


def check_destination(out: Path, store: AnnotationStore, folders: list[str], allow_library: bool) -> Path:
    """Refuse an export into a photo folder (one holding annotations or being exported) unless allowed."""
    out = Path(out).expanduser().resolve()
    if not allow_library:
        known = set(folders) | {a.photo.folder for a in store.list()}
        for f in known:
            if out == Path(f) or Path(f) in out.parents:
                raise ExportError(f"{out} is inside the photo folder {f}; export elsewhere, or pass "
                                  "--allow-library-folder to write there.")  # fmt: skip
    return out


def export(store: AnnotationStore, fmt: str, out: str | Path, folder: str | Path | None = None,
           allow_library: bool = False) -> dict[str, Any]:
    """Export the annotations (of ``folder``, else all) to ``out`` in ``fmt``.

    ``out`` is the JSON file for ``coco`` and a folder for ``labelme`` and ``yolo``.

    Returns:
        ``{"format", "out", "annotations", "images", "skipped_points", "files"}``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Export formats are {', '.join(FORMATS)}, not '{fmt}'.")
    anns = store.list(folder=folder)
    folders = [str(Path(folder).expanduser().resolve())] if folder is not None else []
    dest = check_destination(Path(out), store, folders, allow_library)
    try:
        if fmt == "coco":
            coco, skipped = to_coco(anns)
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(dest, coco)
            return {"format": fmt, "out": str(dest), "annotations": len(coco["annotations"]),
                    "images": len(coco["images"]), "skipped_points": skipped, "files": 1}  # fmt: skip
        return _export_per_photo(anns, fmt, dest)
    except OSError as err:
        raise ExportError(f"The export to {dest} could not be written ({(err.strerror or str(err)).lower()}).") from None


def _export_per_photo(anns: list[Annotation], fmt: str, dest: Path) -> dict[str, Any]:
    by_photo: dict[tuple[str, str], list[Annotation]] = defaultdict(list)
    for a in anns:
        by_photo[(a.photo.folder, a.photo.path)].append(a)
    labels = sorted({a.label for a in anns})
    dest.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    for group in by_photo.values():
        photo = group[0].photo
        target = dest / Path(photo.path).with_suffix(".json" if fmt == "labelme" else ".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "labelme":
            shapes = [sh for a in group for sh in _labelme_shape(a)]
            rel = Path(_relpath(photo.file, target.parent)).as_posix()
            atomic_write_json(target, {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": rel,
                                       "imageData": None, "imageHeight": photo.size[1], "imageWidth": photo.size[0]})  # fmt: skip
        else:
            w, h = photo.size
            lines = []
            for a in group:
                if a.shape.kind == "points":
                    skipped += 1
                    continue
                x0, y0, x1, y1 = a.shape.bbox()
                lines.append(f"{labels.index(a.label)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                             f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")  # fmt: skip
            atomic_write_text(target, "".join(f"{ln}\n" for ln in lines))
        written += 1
    if fmt == "yolo":
        atomic_write_text(dest / "classes.txt", "".join(f"{n}\n" for n in labels))
    return {"format": fmt, "out": str(dest), "annotations": len(anns) - skipped, "images": written,
            "skipped_points": skipped, "files": written + (fmt == "yolo")}  # fmt: skip


def _relpath(path: Path, start: Path) -> str:
    import os

    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)
