"""Import COCO instances JSON and labelme JSON files into the annotation store, all or nothing.

Every annotation of the file (or of every ``*.json`` of a folder) is parsed, checked and matched to a photo
of the library folder before anything is stored; then all are added in one transaction. A damaged or foreign
file raises :class:`core.annotations.formats.ImportFormatError` with one sentence naming the file and what is
wrong, and the store is unchanged.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.annotations.formats import ImportFormatError, coco_masks
from core.annotations.shapes import Shape, ShapeError
from core.annotations.store import Annotation, AnnotationStore, Photo
from core.errors import ImageLoadError, PHSError


def import_file(store: AnnotationStore, folder: str | Path, source: str | Path) -> list[Annotation]:
    """Import a COCO file, a labelme file or a folder of labelme files; returns what was stored."""
    source = Path(source).expanduser()
    if source.is_dir():
        files = sorted(p for p in source.rglob("*.json") if p.is_file())
        if not files:
            raise ImportFormatError(f"{source} holds no .json annotation files.")
        anns = [a for f in files for a in _parse_labelme(f, _read(f), folder)]
    else:
        data = _read(source)
        if isinstance(data, dict) and "shapes" in data:
            anns = _parse_labelme(source, data, folder)
        elif isinstance(data, dict) and {"images", "annotations", "categories"} <= data.keys():
            anns = _parse_coco(source, data, folder)
        else:
            raise ImportFormatError(f"{source} is neither a COCO instances file (images, annotations, categories) "
                                    "nor a labelme file (shapes).")  # fmt: skip
    return store.add_many(anns)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportFormatError(f"{path} does not exist.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ImportFormatError(f"{path} is not valid JSON ({err.__class__.__name__}: {str(err)[:80]}).") from None
    except OSError as err:
        raise ImportFormatError(f"{path} cannot be read ({(err.strerror or str(err)).lower()}).") from None


def _photo(folder: str | Path, image: Path, where: str, size: tuple[Any, Any] | None) -> Photo:
    try:
        photo = Photo.open(folder, image)
    except (ImageLoadError, PHSError) as err:
        raise ImportFormatError(f"{where}: the photo {image} cannot be used ({str(err).rstrip('.')}).") from None
    if size is not None and tuple(size) != photo.size:
        raise ImportFormatError(f"{where}: the photo {photo.path} is {photo.size[0]}x{photo.size[1]}, not "
                                f"{size[0]}x{size[1]} as the file says (annotations of another photo?).")  # fmt: skip
    return photo


def _numbers(values: Any, n: int, where: str) -> list[float]:
    if (not isinstance(values, (list, tuple)) or len(values) != n
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
        raise ImportFormatError(f"{where} needs {n} finite numbers, not {str(values)[:60]}.")
    return [float(v) for v in values]


def _polygon_mask(polys: list, h: int, w: int, where: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for poly in polys:
        xy = _numbers(poly, len(poly) if isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 else 6, where)
        draw.polygon(xy, fill=1, outline=1)
    return np.asarray(img, bool)


def _coco_shape(ann: dict, bbox: list[float], h: int, w: int, where: str) -> Shape:
    seg = ann.get("segmentation")
    x0, y0, bw, bh = bbox
    rect = [x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]
    if not seg or (isinstance(seg, list) and len(seg) == 1 and np.allclose(seg[0], rect)):
        return Shape.from_box(x0, y0, x0 + bw, y0 + bh)
    if isinstance(seg, dict):
        mask_utils = coco_masks()
        try:
            rle = dict(seg)
            if isinstance(rle.get("counts"), list):
                rle = mask_utils.frPyObjects(rle, *rle["size"])
            elif isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
            m = mask_utils.decode(rle).astype(bool)
        except Exception as err:  # pycocotools raises bare exceptions on bad counts
            raise ImportFormatError(f"{where} has a damaged RLE segmentation ({err}).") from None
        if m.shape != (h, w):
            raise ImportFormatError(f"{where}: its RLE mask is {m.shape[1]}x{m.shape[0]}, the photo {w}x{h}.")
        return Shape("mask", mask=m)
    if isinstance(seg, list):
        return Shape("mask", mask=_polygon_mask(seg, h, w, where))
    raise ImportFormatError(f"{where} has a segmentation that is neither polygons nor RLE.")


def _parse_coco(source: Path, data: dict, folder: str | Path) -> list[Annotation]:
    images, cats = data["images"], data["categories"]
    if not all(isinstance(x, list) for x in (images, data["annotations"], cats)):
        raise ImportFormatError(f"{source}: images, annotations and categories must be lists.")
    try:
        names = {int(c["id"]): str(c["name"]) for c in cats}
        files = {int(im["id"]): (str(im["file_name"]), (int(im["width"]), int(im["height"]))) for im in images}
    except (KeyError, TypeError, ValueError) as err:
        raise ImportFormatError(f"{source}: a category or image entry lacks {err} or has a wrong type.") from None
    photos: dict[int, Photo] = {}
    out = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{source}, annotation {i + 1}"
        if not isinstance(ann, dict):
            raise ImportFormatError(f"{where} is not an object.")
        img_id, cat_id = ann.get("image_id"), ann.get("category_id")
        if img_id not in files:
            raise ImportFormatError(f"{where} refers to image {img_id}, which the file does not list.")
        if cat_id not in names:
            raise ImportFormatError(f"{where} refers to category {cat_id}, which the file does not list.")
        if img_id not in photos:
            photos[img_id] = _photo(folder, Path(files[img_id][0]), f"{source}, image {img_id}", files[img_id][1])
        photo = photos[img_id]
        bbox = _numbers(ann.get("bbox"), 4, f"{where}'s bbox")
        try:
            shape = _coco_shape(ann, bbox, photo.size[1], photo.size[0], where)
        except ShapeError as err:
            raise ImportFormatError(f"{where}: {str(err)[0].lower()}{str(err)[1:]}") from None
        out.append(Annotation(None, photo, names[cat_id], shape, "imported"))
    return out


def _labelme_shape(sh: Any, photo: Photo, where: str) -> Shape:
    if not isinstance(sh, dict) or not isinstance(sh.get("points"), list):
        raise ImportFormatError(f"{where} has no list of points.")
    kind = sh.get("shape_type") or "polygon"
    pts = [_numbers(p, 2, f"{where}'s point") for p in sh["points"]]
    if kind == "rectangle" and len(pts) == 2:
        return Shape.from_box(pts[0][0], pts[0][1], pts[1][0], pts[1][1])
    if kind == "point" and len(pts) == 1:
        return Shape("points", points=np.asarray(pts))
    if kind == "polygon" and len(pts) >= 3:
        return Shape("mask", mask=_polygon_mask([[v for p in pts for v in p]], photo.size[1], photo.size[0], where))
    if kind == "mask" and len(pts) == 2 and isinstance(sh.get("mask"), str):
        from PIL import Image

        try:
            crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(sh["mask"], validate=True))).convert("L")) > 0
        except Exception:  # binascii.Error, PIL.UnidentifiedImageError
            raise ImportFormatError(f"{where} has a mask that is not a base64 PNG.") from None
        x0, y0 = (int(round(v)) for v in pts[0])
        m = np.zeros((photo.size[1], photo.size[0]), bool)
        h, w = crop.shape
        if x0 < 0 or y0 < 0 or y0 + h > m.shape[0] or x0 + w > m.shape[1]:
            raise ImportFormatError(f"{where} has a mask that reaches outside the photo.")
        m[y0 : y0 + h, x0 : x0 + w] = crop
        return Shape("mask", mask=m)
    raise ImportFormatError(f"{where} is a '{kind}' with {len(pts)} point{'' if len(pts) == 1 else 's'}, which cannot be imported "
                            "(rectangle, point, polygon and mask can).")  # fmt: skip


def _parse_labelme(source: Path, data: Any, folder: str | Path) -> list[Annotation]:
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) or not data.get("imagePath"):
        raise ImportFormatError(f"{source} is not a labelme file (it needs shapes and imagePath).")
    size = (data.get("imageWidth"), data.get("imageHeight"))
    photo = _photo(folder, (source.parent / str(data["imagePath"])), str(source), size if None not in size else None)
    out = []
    for i, sh in enumerate(data["shapes"]):
        where = f"{source}, shape {i + 1}"
        label = sh.get("label") if isinstance(sh, dict) else None
        if not isinstance(label, str) or not label.strip():
            raise ImportFormatError(f"{where} has no label.")
        try:
            out.append(Annotation(None, photo, label, _labelme_shape(sh, photo, where), "imported"))
        except ShapeError as err:
            raise ImportFormatError(f"{where}: {str(err)[0].lower()}{str(err)[1:]}") from None
    return out
