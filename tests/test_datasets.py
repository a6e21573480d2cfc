"""Annotation model, COCO and VOC loaders, RLE, the ``phs scenes`` command, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.errors import PHSError
from core.evaluation.datasets import (
    VOC_CLASSES,
    Dataset,
    ImageRecord,
    ObjectAnnotation,
    load_coco,
    load_synthetic,
    load_voc,
    polygons_to_mask,
    rle_decode,
    rle_encode,
    synthetic_dataset,
    write_scene_folder,
)
from core.evaluation.splits import filter_min_objects, query_objects, split_query_database
from core.synthetic.scenes import CATEGORIES, generate_scene

# ---------------------------------------------------------------------------------------------- RLE


def test_rle_known_strings():
    # [[0, 1], [1, 1]] in column-major order is 0 1 1 1: counts [1, 3]
    m = np.array([[0, 1], [1, 1]], bool)
    assert rle_encode(m) == {"size": [2, 2], "counts": "13"}
    # counts after the third are stored as deltas: [0, 10, 50, 3] 50 needs two characters ('b1'), 3 - 10 = -7 -> 'I'
    assert (
        rle_decode({"size": [7, 9], "counts": "0:b1I"}).ravel(order="F").tolist()
        == [True] * 10 + [False] * 50 + [True] * 3
    )
    assert rle_encode(rle_decode({"size": [7, 9], "counts": "0:b1I"}))["counts"] == "0:b1I"
    # uncompressed counts (as COCO crowd regions use) decode the same way
    assert np.array_equal(rle_decode({"size": [2, 2], "counts": [1, 3]}), m)


def test_rle_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (40, 33)]:
        for p in (0.0, 0.05, 0.5, 1.0):
            m = rng.random(shape) < p
            assert np.array_equal(rle_decode(rle_encode(m)), m)
    big = np.zeros((300, 200), bool)
    big[10:290, 5:195] = True  # long runs need several characters per count
    assert np.array_equal(rle_decode(rle_encode(big)), big)


def test_rle_rejects_wrong_size():
    with pytest.raises(ValueError):
        rle_decode({"size": [2, 2], "counts": [1, 2]})


def test_polygon_masks_are_cocos_own_rasterisation():
    from pycocotools import mask as mask_utils

    m = polygons_to_mask([[1, 1, 5, 1, 5, 4, 1, 4]], 8, 8)
    assert m.dtype == bool and m.shape == (8, 8)
    assert m[2:4, 2:5].all() and not m[5:].any() and not m[:, 6:].any()
    two = polygons_to_mask([[0, 0, 2, 0, 2, 2, 0, 2], [4, 4, 6, 4, 6, 6]], 8, 8)
    assert two[0:2, 0:2].all() and two[4, 5] and not two[3, 3]
    rng = np.random.default_rng(3)
    h, w = 37, 45
    for _ in range(5):  # random non-convex star-shaped polygons, partly outside the image
        a = np.sort(rng.uniform(0, 2 * np.pi, 9))
        r = rng.uniform(5, 30, 9)
        xy = np.stack([22 + r * np.cos(a), 18 + r * np.sin(a)], axis=1).ravel().tolist()
        want = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([xy], h, w))).astype(bool)
        assert np.array_equal(polygons_to_mask([xy], h, w), want)
    assert not polygons_to_mask([[1, 1, 2, 2]], 8, 8).any()  # fewer than 3 points is no area


def test_polygon_masks_without_pycocotools_say_what_to_install(monkeypatch):
    import sys

    from core.errors import PHSError

    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(PHSError, match=r"pip install 'phs-desktop\[eval\]'"):
        polygons_to_mask([[1, 1, 5, 1, 5, 4, 1, 4]], 8, 8)


# --------------------------------------------------------------------------------------------- COCO


def _write_coco(tmp_path: Path) -> Path:
    crowd = np.zeros((20, 30), bool)
    crowd[0:5, 20:30] = True
    blob = np.zeros((20, 30), bool)
    blob[8:12, 2:9] = True
    data = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 30, "height": 20},
            {"id": 9, "file_name": "b.jpg", "width": 30, "height": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 1, 4, 3], "area": 12, "iscrowd": 0,
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [2, 8, 7, 4], "area": 28, "iscrowd": 0,
             "segmentation": rle_encode(blob)},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [20, 0, 10, 5], "area": 50, "iscrowd": 1,
             "segmentation": {"size": [20, 30], "counts": [int(c) for c in _counts(crowd)]}},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
    }  # fmt: skip
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def _counts(mask: np.ndarray) -> list[int]:
    flat = mask.ravel(order="F")
    out, cur, run = [], False, 0
    for v in flat:
        if v != cur:
            out.append(run)
            cur, run = v, 0
        run += 1
    out.append(run)
    return out


def test_coco_loader(tmp_path):
    ds = load_coco(_write_coco(tmp_path), tmp_path / "imgs")
    assert ds.categories == {3: "cat", 5: "dog"}
    assert [im.image_id for im in ds] == [7, 9]
    a, b = ds
    assert a.path == tmp_path / "imgs" / "a.jpg" and b.objects == ()
    assert len(a.objects) == 3 and a.n_objects == 2
    assert a.categories == {3, 5}
    np.testing.assert_array_equal(a.objects[0].bbox, [1, 1, 5, 4])  # xywh -> xyxy
    assert a.objects[0].mask().sum() == 12
    assert a.objects[1].mask()[8:12, 2:9].all() and a.objects[1].mask().sum() == 28
    assert a.objects[2].iscrowd and a.objects[2].mask().sum() == 50
    no_crowd = load_coco(_write_coco(tmp_path), keep_crowd=False)
    assert len(no_crowd[0].objects) == 2 and no_crowd[0].path == tmp_path / "a.jpg"


def test_coco_loader_errors(tmp_path):
    with pytest.raises(PHSError):
        load_coco(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(PHSError):
        load_coco(bad)


# ------------------------------------------------------------------------------ phs scenes round trip


def test_phs_scenes_round_trip(tmp_path):
    out = tmp_path / "gallery"
    assert main(["scenes", str(out), "--n", "5", "--seed", "7", "--size", "96", "80", "--quiet"]) == 0
    data = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(CATEGORIES)
    assert all(a["iscrowd"] == 0 and len(a["bbox"]) == 4 for a in data["annotations"])
    ds = load_synthetic(out)
    assert len(ds) == 5 and ds.categories == dict(enumerate(CATEGORIES))
    for rec in ds:
        scene = generate_scene(7, int(rec.image_id), (96, 80))
        assert (rec.width, rec.height) == (96, 80)
        assert len(rec.objects) == len(scene.objects)
        for a, o in zip(rec.objects, scene.objects):
            assert a.category_id == o.category_id
            np.testing.assert_array_equal(a.bbox, o.bbox)
            np.testing.assert_array_equal(a.mask(), o.mask)
            assert a.area == o.area
        pixels = rec.load()
        assert pixels.shape == (80, 96, 3)
        assert np.abs(pixels.astype(int) - scene.image).mean() < 6  # JPEG quality 92


def test_scene_folder_is_byte_identical_for_a_seed(tmp_path):
    a = write_scene_folder(tmp_path / "a", 3, seed=4, size=(64, 48)).parent
    b = write_scene_folder(tmp_path / "b", 3, seed=4, size=(64, 48)).parent
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def test_phs_scenes_refuses_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not ours")
    assert main(["scenes", str(out), "--n", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not empty" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_phs_scenes_rewrites_its_own_output(tmp_path):
    out = tmp_path / "gallery"
    assert main(["scenes", str(out), "--n", "4", "--width", "64", "--height", "48", "--quiet"]) == 0
    assert main(["scenes", str(out), "--n", "2", "--size", "64", "48", "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == ["scene_000000.jpg", "scene_000001.jpg"]
    assert len(load_synthetic(out)) == 2
    # an interrupted run (images and marker, no annotations.json) is still recognised as ours
    (out / "annotations.json").unlink()
    assert main(["scenes", str(out), "--n", "1", "--size", "64", "48", "--quiet"]) == 0


def test_phs_scenes_argument_errors(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["scenes", out, "--size", "64", "48", "--width", "64", "--quiet"]) == 2
    assert main(["scenes", out, "--n", "0", "--quiet"]) == 2
    assert main(["scenes", out, "--min-objects", "4", "--max-objects", "2", "--quiet"]) == 2
    assert capsys.readouterr().err.count("phs: ") == 3


def test_synthetic_dataset_matches_scenes():
    ds = synthetic_dataset(3, seed=2, size=(64, 64), start=5, max_objects=3)
    assert [im.image_id for im in ds] == [5, 6, 7]
    for rec in ds:
        scene = generate_scene(2, int(rec.image_id), (64, 64), max_objects=3)
        assert np.array_equal(rec.load(), scene.image)
        assert [o.category_id for o in rec.objects] == [o.category_id for o in scene.objects]
        assert all(np.array_equal(a.mask(), o.mask) for a, o in zip(rec.objects, scene.objects))


# ---------------------------------------------------------------------------------------------- VOC


VOC_XML = """<annotation>
  <folder>VOC2012</folder><filename>{stem}.jpg</filename>
  <size><width>50</width><height>40</height><depth>3</depth></size>
  <object><name>dog</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>10.5</xmin><ymin>5</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>
  <object><name>unicorn</name>
    <bndbox><xmin>3</xmin><ymin>3</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""


def _write_voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem in ("2008_000001", "2008_000002"):
        (root / "Annotations" / f"{stem}.xml").write_text(VOC_XML.format(stem=stem))
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000002\n")
    return root


def test_voc_loader(tmp_path):
    root = _write_voc(tmp_path)
    ds = load_voc(root)
    assert [im.image_id for im in ds] == ["2008_000001", "2008_000002"]
    im = ds[0]
    assert (im.width, im.height) == (50, 40) and im.path == root / "JPEGImages" / "2008_000001.jpg"
    dog, person, unicorn = im.objects
    assert dog.category_id == VOC_CLASSES.index("dog") and ds.categories[dog.category_id] == "dog"
    np.testing.assert_array_equal(dog.bbox, [0, 1, 20, 30])  # 1-based inclusive -> continuous XYXY
    np.testing.assert_array_equal(person.bbox, [9.5, 4, 50, 40])
    assert person.difficult and not dog.difficult
    assert unicorn.category_id == len(VOC_CLASSES) and ds.categories[len(VOC_CLASSES)] == "unicorn"
    assert all(o.mask() is None and not o.has_mask for o in im.objects)
    assert dog.area == 20 * 29
    assert [im.image_id for im in load_voc(root, "val")] == ["2008_000002"]
    assert len(load_voc(root, keep_difficult=False)[0].objects) == 2


def test_voc_loader_errors(tmp_path):
    with pytest.raises(PHSError):
        load_voc(tmp_path)
    root = _write_voc(tmp_path)
    with pytest.raises(PHSError):
        load_voc(root, "test")
    (root / "Annotations" / "2008_000003.xml").write_text("<annotation><size>")
    with pytest.raises(PHSError):
        load_voc(root)


# ------------------------------------------------------------------------------------ splits, queries


def _toy(n_objects: list[int]) -> Dataset:
    recs = []
    for i, n in enumerate(n_objects):
        objs = tuple(
            ObjectAnnotation(category_id=j % 3, bbox=np.array([0, 0, 4, 4.0]), height=8, width=8, area=16.0)
            for j in range(n)
        )
        recs.append(ImageRecord(image_id=i, file_name=f"{i}.jpg", width=8, height=8, objects=objs))
    return Dataset("toy", {0: "a", 1: "b", 2: "c"}, tuple(recs))


def test_split_is_disjoint_sized_and_seeded():
    ds = _toy([i % 5 for i in range(60)])  # 12 images without objects
    q, db = split_query_database(ds, 10, 30, seed=1)
    qi, di = {im.image_id for im in q}, {im.image_id for im in db}
    assert len(q) == 10 and len(db) == 30 and not qi & di
    assert all(im.n_objects >= 1 for im in q)
    q2, db2 = split_query_database(ds, 10, 30, seed=1)
    assert [im.image_id for im in q2] == [im.image_id for im in q]
    assert [im.image_id for im in db2] == [im.image_id for im in db]
    q3, _ = split_query_database(ds, 10, 30, seed=2)
    assert [im.image_id for im in q3] != [im.image_id for im in q]
    q4, db4 = split_query_database(ds, seed=0, min_query_objects=3)
    assert len(q4) == 12 and all(im.n_objects >= 3 for im in q4) and len(db4) == 48
    with pytest.raises(ValueError):
        split_query_database(ds, 100)
    with pytest.raises(ValueError):
        split_query_database(ds, 10, 51)


def test_filter_min_objects_and_query_objects():
    ds = _toy([1, 4, 2, 0])
    assert [im.image_id for im in filter_min_objects(ds, 2)] == [1, 2]
    crowd = ObjectAnnotation(
        category_id=0, bbox=np.array([0, 0, 8, 8.0]), height=8, width=8, area=64, iscrowd=True
    )
    recs = list(ds.images)
    recs[1] = ImageRecord(1, "1.jpg", 8, 8, recs[1].objects + (crowd,))
    qs = query_objects(Dataset("toy", ds.categories, tuple(recs)))
    # image 1 has categories 0, 1, 2, 0 (plus a crowd region of 0 that is no query and not counted)
    q1 = [q for q in qs if q.image_id == 1]
    assert [(q.category_id, q.n_cat, q.n_objects) for q in q1] == [(0, 2, 4), (1, 1, 4), (2, 1, 4), (0, 2, 4)]
    assert len(qs) == 1 + 4 + 2
