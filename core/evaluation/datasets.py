"""Evaluation data: one annotation model, loaders for synthetic scenes, COCO and PASCAL VOC, and splits.

Every loader returns a :class:`Dataset`: category names and a tuple of :class:`ImageRecord`, each with its
:class:`ObjectAnnotation` objects. Coordinates follow one convention everywhere:

* Boxes are XYXY float in continuous pixel coordinates: pixel ``(row r, column c)`` covers
  ``[c, c + 1) x [r, r + 1)``. A COCO box ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``; a VOC box with
  1-based inclusive pixel indices ``xmin..xmax`` becomes ``[xmin - 1, ymin - 1, xmax, ymax]``.
* Masks are ``(H, W)`` bool, row-major, in the pixel frame of the stored image (EXIF orientation is *not*
  applied: dataset annotations refer to the pixels as stored).

COCO segmentations: RLE (uncompressed and compressed) is decoded exactly by this module; polygons are
rasterised by pycocotools (the ``eval`` extra, ``pip install 'phs-desktop[eval]'``), the rasteriser COCO's own
masks and metrics use, so a mask prompt covers the same pixels as in every other COCO evaluation.

The evaluation protocol's data steps live in :mod:`core.evaluation.splits`:
:func:`split_query_database` (disjoint query and database sets), :func:`filter_min_objects` (queries with
at least N objects, Fig. A2 of seed 000) and :func:`query_objects` (one prompt per object, with ``n_c`` and
``n`` for :func:`core.evaluation.metrics.foir_metrics`). The folder writer of ``phs scenes`` lives with the
synthetic data, in :mod:`core.synthetic.scene_folder` (re-exported here).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ImageLoadError, PHSError
from core.synthetic.scene_folder import (  # noqa: F401 (re-exported: the writer's home before it moved)
    ANNOTATIONS_FILE,
    MARKER_FILE,
    SCENES_GENERATOR,
    _rle_counts,
    _scene_file_name,
    rle_encode,
    write_scene_folder,
)
from core.synthetic.scenes import CATEGORIES as SCENE_CATEGORIES
from core.synthetic.scenes import Scene, generate_scene

__all__ = [
    "SCENES_GENERATOR",
    "VOC_CLASSES",
    "Dataset",
    "ImageRecord",
    "ObjectAnnotation",
    "load_coco",
    "load_synthetic",
    "load_voc",
    "polygons_to_mask",
    "rle_decode",
    "rle_encode",
    "scene_record",
    "synthetic_dataset",
    "write_scene_folder",
]

#: The 20 PASCAL VOC classes; their id is the index in this tuple.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# Annotation model
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ObjectAnnotation:
    """One annotated object.

    Attributes:
        category_id: The dataset's category id (a key of :attr:`Dataset.categories`).
        bbox: ``(4,)`` float64 XYXY box in pixels (see module doc).
        height: Height of the image the object belongs to.
        width: Width of the image the object belongs to.
        area: Area in pixels (the mask's pixel count when there is a mask, else the box area or the
            dataset's own value).
        iscrowd: COCO crowd region (a group of objects, not one object); never used as a prompt.
        difficult: VOC "difficult" flag; kept as an ordinary object.
        segmentation: ``None`` (box only), an ``(H, W)`` bool array, a COCO polygon list
            ``[[x0, y0, x1, y1, ...], ...]`` or a COCO RLE dict ``{"size": [H, W], "counts": ...}``.
            Decoded on demand by :meth:`mask`, so loading a large dataset stays cheap.
    """

    category_id: int
    bbox: np.ndarray
    height: int
    width: int
    area: float
    iscrowd: bool = False
    difficult: bool = False
    segmentation: Any = field(default=None, repr=False)

    @property
    def has_mask(self) -> bool:
        """Whether a segmentation is available."""
        return self.segmentation is not None

    def mask(self) -> np.ndarray | None:
        """Return the ``(H, W)`` bool mask, or ``None`` for a box-only annotation."""
        seg = self.segmentation
        if seg is None:
            return None
        if isinstance(seg, np.ndarray):
            return seg.astype(bool, copy=False)
        if isinstance(seg, dict):
            return rle_decode(seg)
        return polygons_to_mask(seg, self.height, self.width)


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image with its annotations.

    Attributes:
        image_id: The dataset's image id (int for COCO and synthetic scenes, the file stem for VOC).
        file_name: File name as in the annotations (relative to the image folder).
        width: Image width in pixels.
        height: Image height in pixels.
        objects: The annotated objects.
        path: Where the image is on disk, or ``None`` for an in-memory image.
        pixels: ``(H, W, 3)`` uint8 RGB for an in-memory image, else ``None``.
    """

    image_id: int | str
    file_name: str
    width: int
    height: int
    objects: tuple[ObjectAnnotation, ...]
    path: Path | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def categories(self) -> frozenset[int]:
        """Category ids present in the image (crowd regions included: they do show the category)."""
        return frozenset(o.category_id for o in self.objects)

    @property
    def n_objects(self) -> int:
        """Number of objects, ``n(x_Q)`` of seed 000 Eq. A3 (crowd regions excluded)."""
        return sum(1 for o in self.objects if not o.iscrowd)

    def load(self) -> np.ndarray:
        """Return the image as ``(H, W, 3)`` uint8 RGB.

        Raises:
            ImageLoadError: When the file cannot be read or decoded.
        """
        if self.pixels is not None:
            return self.pixels
        if self.path is None:
            raise ImageLoadError(f"Image {self.image_id!r} has neither pixels nor a file path.")
        try:
            with Image.open(self.path) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:
            raise ImageLoadError(f"Cannot read image {self.path}: {err}.") from err


@dataclass(frozen=True, eq=False)
class Dataset:
    """A set of annotated images.

    Attributes:
        name: A short name ("coco", "voc", "scenes", ...).
        categories: ``{category_id: name}``.
        images: The images, in a stable order.
    """

    name: str
    categories: dict[int, str]
    images: tuple[ImageRecord, ...]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.images)

    def __getitem__(self, i: int) -> ImageRecord:
        return self.images[i]

    def subset(self, indices: Sequence[int], name: str | None = None) -> Dataset:
        """Return the images at ``indices`` (in that order) as a new dataset with the same categories."""
        return Dataset(name or self.name, dict(self.categories), tuple(self.images[i] for i in indices))

    def image_categories(self) -> list[frozenset[int]]:
        """Per image, the set of category ids it contains (the database side of the metrics)."""
        return [im.categories for im in self.images]


# --------------------------------------------------------------------------------------------------------
# COCO RLE and polygons
# --------------------------------------------------------------------------------------------------------


def _string_to_counts(s: str) -> list[int]:
    """Inverse of :func:`_counts_to_string` (pycocotools ``rleFrString``)."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("Truncated COCO RLE string.")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list ``counts``) to an ``(H, W)`` bool mask."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = _string_to_counts(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"RLE counts do not describe an {h}x{w} mask.")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel coordinates) into an ``(H, W)`` bool mask.

    Through pycocotools (``frPyObjects``, ``merge``, ``decode``): the union of the polygons, exactly as COCO
    rasterises them.

    Raises:
        PHSError: pycocotools is not installed (one sentence saying what to install).
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise PHSError(
            "Reading COCO polygon masks needs pycocotools: pip install 'phs-desktop[eval]' (or use --prompt box)."
        ) from None
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, int(height), int(width)))
    return np.asarray(mask_utils.decode(rle), dtype=bool)


# --------------------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as err:
        raise PHSError(f"The annotation file {path} does not exist.") from err
    except (OSError, ValueError) as err:
        raise PHSError(f"The annotation file {path} cannot be read as JSON ({err}).") from err
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise PHSError(f"{path} is not a COCO instances file (it needs 'images' and 'annotations').")
    return data


def load_coco(
    annotations: str | Path,
    image_dir: str | Path | None = None,
    *,
    name: str = "coco",
    keep_crowd: bool = True,
) -> Dataset:
    """Load a COCO instances file (``instances_val2017.json`` or one written by :func:`write_scene_folder`).

    Args:
        annotations: Path of the JSON file.
        image_dir: Folder of the images (``file_name`` is relative to it); default: the JSON's folder.
        name: Dataset name.
        keep_crowd: Keep ``iscrowd=1`` regions (they count for what a database image contains, and are
            never prompts); ``False`` drops them.

    Returns:
        The dataset, images in the file's order, objects in annotation order. Category ids are the file's.

    Raises:
        PHSError: The file is missing or not a COCO instances file.
    """
    annotations = Path(annotations)
    root = Path(image_dir) if image_dir is not None else annotations.parent
    data = _read_json(annotations)
    categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    per_image: dict[Any, list[dict]] = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    images = []
    for im in data["images"]:
        w, h = int(im["width"]), int(im["height"])
        objs = []
        for a in per_image.get(im["id"], []):
            crowd = bool(a.get("iscrowd", 0))
            if crowd and not keep_crowd:
                continue
            x, y, bw, bh = (float(v) for v in a["bbox"])
            seg = a.get("segmentation")
            if isinstance(seg, dict) and isinstance(seg.get("counts"), list) and "size" not in seg:
                seg = dict(seg, size=[h, w])
            if seg is not None and not isinstance(seg, dict) and len(seg) == 0:
                seg = None
            cat = int(a["category_id"])
            categories.setdefault(cat, str(cat))
            objs.append(
                ObjectAnnotation(
                    category_id=cat,
                    bbox=np.array([x, y, x + bw, y + bh], dtype=np.float64),
                    height=h,
                    width=w,
                    area=float(a.get("area", bw * bh)),
                    iscrowd=crowd,
                    segmentation=seg,
                )
            )
        images.append(
            ImageRecord(
                image_id=im["id"],
                file_name=str(im["file_name"]),
                width=w,
                height=h,
                objects=tuple(objs),
                path=root / str(im["file_name"]),
            )
        )
    return Dataset(name, dict(sorted(categories.items())), tuple(images))


# --------------------------------------------------------------------------------------------------------
# PASCAL VOC
# --------------------------------------------------------------------------------------------------------


def _xml_text(node: ET.Element, tag: str, default: str | None = None) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        if default is None:
            raise ValueError(f"missing <{tag}>")
        return default
    return child.text.strip()


def _voc_object(obj: ET.Element, w: int, h: int, cat_ids: dict[str, int],
                keep_difficult: bool) -> ObjectAnnotation | None:
    """One ``<object>`` of a VOC file: its 1-based inclusive box as XYXY pixels clipped to the ``w x h`` image;
    a class name outside ``cat_ids`` gets the next id. ``None`` for a difficult object when those are left out.

    Raises:
        ValueError: the object has no ``<bndbox>`` or a field is missing or not a number.
    """
    cname = _xml_text(obj, "name").lower()
    difficult = _xml_text(obj, "difficult", default="0") == "1"
    if difficult and not keep_difficult:
        return None
    bb = obj.find("bndbox")
    if bb is None:
        raise ValueError("object without <bndbox>")
    x0, y0, x1, y1 = (float(_xml_text(bb, t)) for t in ("xmin", "ymin", "xmax", "ymax"))
    box = np.array([x0 - 1.0, y0 - 1.0, x1, y1], dtype=np.float64)
    box = np.clip(box, 0.0, [w, h, w, h])
    cat = cat_ids.setdefault(cname, len(cat_ids))
    return ObjectAnnotation(category_id=cat, bbox=box, height=h, width=w,
                            area=float((box[2] - box[0]) * (box[3] - box[1])), difficult=difficult)


def load_voc(
    root: str | Path,
    image_set: str | None = None,
    *,
    name: str = "voc",
    keep_difficult: bool = True,
) -> Dataset:
    """Load PASCAL VOC detection annotations (boxes only: every object's ``segmentation`` is ``None``).

    Args:
        root: A ``VOC20xx`` folder with ``Annotations/*.xml`` and ``JPEGImages/``.
        image_set: Name of a list in ``ImageSets/Main`` (``"val"``, ``"trainval"``, ...); default: every
            XML file in ``Annotations``, sorted by name.
        name: Dataset name.
        keep_difficult: Keep objects marked ``difficult`` (flagged on the annotation).

    Returns:
        The dataset. Category ids are indices into :data:`VOC_CLASSES`; names outside the 20 classes get
        the next ids in order of first appearance. Image ids are the file stems.

    Raises:
        PHSError: Missing folders or list, or an XML file that cannot be parsed.
    """
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise PHSError(f"{root} is not a PASCAL VOC folder: it has no Annotations subfolder.")
    if image_set is None:
        xmls = sorted(ann_dir.glob("*.xml"))
    else:
        list_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not list_file.is_file():
            raise PHSError(f"The image set list {list_file} does not exist.")
        stems = [ln.split()[0] for ln in list_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        xmls = [ann_dir / f"{s}.xml" for s in stems]
    cat_ids = {n: i for i, n in enumerate(VOC_CLASSES)}
    images = []
    for xml_path in xmls:
        try:
            tree = ET.parse(xml_path).getroot()
            size = tree.find("size")
            if size is None:
                raise ValueError("missing <size>")
            w, h = int(float(_xml_text(size, "width"))), int(float(_xml_text(size, "height")))
            file_name = _xml_text(tree, "filename", default=f"{xml_path.stem}.jpg")
            objs = []
            for obj in tree.iter("object"):
                ann = _voc_object(obj, w, h, cat_ids, keep_difficult)
                if ann is not None:
                    objs.append(ann)
        except FileNotFoundError as err:
            raise PHSError(f"The annotation file {xml_path} does not exist.") from err
        except (ET.ParseError, ValueError) as err:
            raise PHSError(f"The VOC annotation {xml_path} cannot be read ({err}).") from err
        images.append(
            ImageRecord(
                image_id=xml_path.stem,
                file_name=file_name,
                width=w,
                height=h,
                objects=tuple(objs),
                path=img_dir / file_name,
            )
        )
    categories = {i: n for n, i in cat_ids.items()}
    return Dataset(name, dict(sorted(categories.items())), tuple(images))


# --------------------------------------------------------------------------------------------------------
# Synthetic scenes
# --------------------------------------------------------------------------------------------------------


def scene_record(scene: Scene, *, with_pixels: bool = True, path: Path | None = None) -> ImageRecord:
    """Convert a generated :class:`core.synthetic.scenes.Scene` to an :class:`ImageRecord` (``image_id = index``).

    Masks are kept as uncompressed RLE (a few hundred bytes instead of ``H * W``), decoded exactly by
    :meth:`ObjectAnnotation.mask`.
    """
    h, w = scene.height, scene.width
    objs = tuple(
        ObjectAnnotation(
            category_id=o.category_id,
            bbox=o.bbox.astype(np.float64),
            height=h,
            width=w,
            area=float(o.area),
            segmentation={"size": [h, w], "counts": np.asarray(_rle_counts(o.mask), dtype=np.int64)},
        )
        for o in scene.objects
    )
    return ImageRecord(
        image_id=scene.index,
        file_name=_scene_file_name(scene.index),
        width=w,
        height=h,
        objects=objs,
        path=path,
        pixels=scene.image if with_pixels else None,
    )


def synthetic_dataset(
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (160, 160),
    *,
    start: int = 0,
    name: str = "scenes",
    **scene_kwargs: Any,
) -> Dataset:
    """Generate ``n`` scenes in memory (pixels and exact masks), scenes ``start .. start + n - 1`` of ``seed``.

    ``scene_kwargs`` go to :func:`core.synthetic.scenes.generate_scene` (``min_objects``, ``max_objects``,
    ``min_visible``, ``categories``). The annotations equal those of the folder that
    :func:`write_scene_folder` writes with the same arguments; the pixels differ only by JPEG coding.
    """
    recs = tuple(scene_record(generate_scene(seed, i, size, **scene_kwargs)) for i in range(start, start + n))
    return Dataset(name, dict(enumerate(SCENE_CATEGORIES)), recs)


def load_synthetic(folder: str | Path) -> Dataset:
    """Load a folder written by :func:`write_scene_folder` (or ``phs scenes``)."""
    folder = Path(folder)
    return load_coco(folder / ANNOTATIONS_FILE, folder, name="scenes")

