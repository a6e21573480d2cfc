"""Annotations kept: the store (labels, undo, moved and changed photos, crash safety) and the CLI journey."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.annotations.shapes import Shape, ShapeError
from core.annotations.store import AnnotationStore, AnnotationStoreError, Photo
from core.cli import main


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def gallery(tmp_path) -> Path:
    """A generated gallery of 4 scenes (``phs scenes``)."""
    out = tmp_path / "gallery"
    assert main(["scenes", "--n", "4", "--quiet", str(out)]) == 0
    return out


def _photos(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.jpg"))


def test_shapes_validate_and_round_trip():
    with pytest.raises(ShapeError):
        Shape.from_box(5, 5, 5, 9)
    with pytest.raises(ShapeError):
        Shape("mask", mask=np.zeros((4, 4), bool))
    m = np.zeros((20, 30), bool)
    m[3:9, 4:20] = True
    for s in (Shape.from_box(9, 8, 1, 2), Shape("points", points=[[1, 2], [3, 4]], positive=[True, False]), Shape("mask", mask=m)):
        back = Shape.from_record(s.kind, *s.to_record())
        assert back.kind == s.kind and back.bbox() == s.bbox()
    assert Shape.from_box(9, 8, 1, 2).bbox() == (1.0, 2.0, 9.0, 8.0)
    assert Shape("mask", mask=m).bbox() == (4.0, 3.0, 20.0, 9.0)


def test_store_labels_undo_and_relabel(gallery):
    a, b = _photos(gallery)[:2]
    with AnnotationStore() as st:
        pa = Photo.open(gallery, a)
        x = st.add(pa, Shape.from_box(1, 2, 30, 40), "cat")
        y = st.add(Photo.open(gallery, b), Shape.from_box(5, 5, 20, 20), "dog")
        assert [(lb.name, lb.count) for lb in st.labels()] == [("cat", 1), ("dog", 1)]
        assert all(lb.color.startswith("#") for lb in st.labels())
        removed = st.remove([x.id])
        assert [r.id for r in removed] == [x.id] and st.count() == 1
        st.restore(removed)  # undo
        assert {r.id for r in st.list()} == {x.id, y.id}
        assert st.relabel([y.id], "cat") == 1
        assert st.photos_of("cat") == [(str(gallery.resolve()), a), (str(gallery.resolve()), b)]
        st.rename_label("cat", "feline")
        with pytest.raises(AnnotationStoreError, match="exists already"):
            st.rename_label("dog", "feline")
        gone = st.delete_label("feline")
        assert len(gone) == 2 and st.count() == 0
        st.restore(gone)
        assert st.count() == 2 and {lb.name for lb in st.labels()} >= {"feline"}


def test_moved_photo_keeps_and_changed_photo_flags(gallery):
    a, b = _photos(gallery)[:2]
    with AnnotationStore() as st:
        st.add(Photo.open(gallery, a), Shape.from_box(1, 2, 30, 40), "cat")
        st.add(Photo.open(gallery, b), Shape.from_box(1, 2, 30, 40), "dog")
        (gallery / "sub").mkdir()
        shutil.move(gallery / a, gallery / "sub" / "renamed.jpg")
        moved = st.for_photo(Photo.open(gallery, "sub/renamed.jpg"))
        assert [(m.label, m.photo.path, m.stale) for m in moved] == [("cat", "sub/renamed.jpg", False)]
        shutil.copy(gallery / "sub" / "renamed.jpg", gallery / b)  # other bytes at b's path
        changed = st.for_photo(Photo.open(gallery, b))
        assert [(c.label, c.stale) for c in changed] == [("dog", True)]


def test_damaged_database_is_one_sentence(tmp_path):
    bad = tmp_path / "annotations.sqlite"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(AnnotationStoreError, match="cannot be used"):
        AnnotationStore(bad)


def test_cli_acceptance_journey(gallery, tmp_path, capsys):
    """Three labelled marks are listed, exported to COCO and labelme; the photo folder is untouched."""
    pycoco = pytest.importorskip("pycocotools.coco")
    before = _tree_digest(gallery)
    a, b, _c, _d = _photos(gallery)
    marks = [(a, "10,20,110,120", "cat"), (a, "150,30,200,90", "dog"), (b, "5,5,60,70", "cat")]
    for img, box, label in marks:
        assert main(["annotate", "add", "--folder", str(gallery), "--image", img, "--box", box, "--label", label]) == 0
    capsys.readouterr()
    assert main(["annotate", "list", "--folder", str(gallery), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["image"], r["label"], r["bbox"]) for r in listed] == [
        (img, label, [float(v) for v in box.split(",")]) for img, box, label in marks
    ]
    out = tmp_path / "export"
    assert main(["annotate", "export", "--folder", str(gallery), "--format", "coco", "--out", str(out / "c.json")]) == 0
    coco = pycoco.COCO(str(out / "c.json"))
    got = sorted((coco.imgs[x["image_id"]]["file_name"], coco.cats[x["category_id"]]["name"],
                  [x["bbox"][0], x["bbox"][1], x["bbox"][0] + x["bbox"][2], x["bbox"][1] + x["bbox"][3]])
                 for x in coco.dataset["annotations"])  # fmt: skip
    assert got == sorted((img, label, [float(v) for v in box.split(",")]) for img, box, label in marks)
    assert {(im["width"], im["height"]) for im in coco.dataset["images"]} == {(320, 240)}
    assert all(coco.annToMask(x).sum() > 0 for x in coco.dataset["annotations"])
    assert main(["annotate", "export", "--folder", str(gallery), "--format", "labelme", "--out", str(out / "lm")]) == 0
    files = sorted((out / "lm").glob("*.json"))
    assert [f.stem for f in files] == [Path(a).stem, Path(b).stem]
    shapes = []
    for f in files:
        d = json.loads(f.read_text())
        assert (f.parent / d["imagePath"]).resolve() == (gallery / f"{f.stem}.jpg").resolve()
        assert (d["imageWidth"], d["imageHeight"]) == (320, 240)
        shapes += [(f.stem, s["label"], s["shape_type"]) for s in d["shapes"]]
    assert shapes == [(Path(a).stem, "cat", "rectangle"), (Path(a).stem, "dog", "rectangle"), (Path(b).stem, "cat", "rectangle")]
    assert main(["annotate", "export", "--folder", str(gallery), "--format", "yolo", "--out", str(out / "y")]) == 0
    assert (out / "y" / "classes.txt").read_text() == "cat\ndog\n"
    assert (out / "y" / f"{Path(a).stem}.txt").read_text().splitlines()[0] == "0 0.187500 0.291667 0.312500 0.416667"
    capsys.readouterr()
    assert main(["annotate", "export", "--folder", str(gallery), "--format", "yolo", "--out", str(gallery / "y")]) == 2
    assert "inside the photo folder" in capsys.readouterr().err
    assert _tree_digest(gallery) == before


def test_import_round_trip_and_damaged_file_changes_nothing(gallery, tmp_path, capsys):
    pytest.importorskip("pycocotools")
    a = _photos(gallery)[0]
    m = np.zeros((240, 320), bool)
    m[50:90, 60:140] = True
    with AnnotationStore() as st:
        st.add(Photo.open(gallery, a), Shape.from_box(10, 20, 110, 120), "cat")
        st.add(Photo.open(gallery, a), Shape("mask", mask=m), "dog")
        st.add(Photo.open(gallery, a), Shape("points", points=[[30, 40]]), "dog")
    out = tmp_path / "out"
    for fmt, dest in (("coco", out / "c.json"), ("labelme", out / "lm")):
        assert main(["annotate", "export", "--folder", str(gallery), "--format", fmt, "--out", str(dest)]) == 0
    with AnnotationStore() as st:
        st.remove([x.id for x in st.list()])
    assert main(["annotate", "import", "--folder", str(gallery), str(out / "lm")]) == 0
    with AnnotationStore() as st:
        got = st.list()
        assert [(x.label, x.shape.kind, x.origin) for x in got] == [("cat", "box", "imported"), ("dog", "mask", "imported"), ("dog", "points", "imported")]
        assert np.array_equal(got[1].shape.mask, m)
        st.remove([x.id for x in got])
    assert main(["annotate", "import", "--folder", str(gallery), str(out / "c.json")]) == 0
    with AnnotationStore() as st:
        got = st.list()
        assert [(x.label, x.shape.kind) for x in got] == [("cat", "box"), ("dog", "mask")]
        assert np.array_equal(got[1].shape.mask, m)
        n = st.count()
    # damaged: valid first annotation, broken second one -> nothing imported, one sentence
    coco = json.loads((out / "c.json").read_text())
    coco["annotations"][1]["bbox"] = [1, 2, "x"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(coco))
    truncated = tmp_path / "trunc.json"
    truncated.write_text((out / "c.json").read_text()[:200])
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    for f, why in ((bad, "bbox needs 4 finite numbers"), (truncated, "not valid JSON"), (foreign, "neither a COCO")):
        capsys.readouterr()
        assert main(["annotate", "import", "--folder", str(gallery), str(f)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("phs: ") and why in err and err.count("\n") == 1 and "Traceback" not in err
        with AnnotationStore() as st:
            assert st.count() == n


_WORKER = """
import sys, time
from core.annotations.store import AnnotationStore, Photo
from core.annotations.shapes import Shape
st = AnnotationStore()
photo = Photo.open(sys.argv[1], sys.argv[2])
i = 0
while True:
    st.add(photo, Shape.from_box(1, 1, 10 + i, 10 + i), "cat")
    i += 1
    print(i, flush=True)
"""


def test_kill_during_saves_loses_at_most_the_save_in_flight(gallery, tmp_path):
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(gallery), _photos(gallery)[0]], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    acked = 0
    deadline = time.monotonic() + 60
    while acked < 15 and time.monotonic() < deadline:
        acked = int(proc.stdout.readline() or acked)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read().split()
    acked = int(rest[-1]) if rest else acked
    assert acked >= 15
    with AnnotationStore() as st:
        got = st.list()
    assert acked <= len(got) <= acked + 1
    assert [x.shape.bbox()[2] for x in got] == [10.0 + i for i in range(len(got))]
