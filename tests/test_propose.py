"""Proposals: region growing on patch features, candidate matching, and ``phs search --propose``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.evaluation.datasets import synthetic_dataset
from core.method.engine import load_engine
from core.method.prompts import Prompt
from core.method.propose import (
    METHODS,
    PatchState,
    box_iou,
    cells_box,
    patch_states,
    propose,
    propose_results,
)


@pytest.fixture(scope="module")
def engine():
    return load_engine("demo", device="cpu", precision="fp32")


def _toy_state(rng: np.random.Generator) -> tuple[PatchState, np.ndarray]:
    """A 12x12 grid whose cells rows 3-6, cols 5-9 share one key direction (the object), 2 heads."""
    gh = gw = 12
    obj = np.zeros((gh, gw), bool)
    obj[3:7, 5:10] = True
    base = rng.normal(size=(2, 16))
    keys = rng.normal(size=(2, gh * gw, 16)) * 0.3 - base[:, None, :]
    keys[:, obj.ravel()] = base[:, None, :] + rng.normal(size=(2, int(obj.sum()), 16)) * 0.2
    maps = np.full((2, gh, gw), 0.001)
    maps[0, 4, 7] = 0.5  # head 0 looks at the object
    maps[1, 10, 1] = 0.5  # head 1 looks at background
    tokens = np.zeros((1 + gh * gw, 8), np.float32)
    return PatchState(maps.astype(np.float32), keys.astype(np.float32), keys.astype(np.float32), tokens, (240, 120)), obj


@pytest.mark.parametrize("method", ["grow", "cut"])
def test_growing_from_the_kept_head_finds_the_object(method):
    state, obj = _toy_state(np.random.default_rng(0))
    p = propose(state, np.array([True, False]), method, space="keys")
    assert np.array_equal(p.cells, obj)
    assert p.box == cells_box(obj, (240, 120)) == (100.0, 30.0, 200.0, 70.0)  # cell = 20 x 10 px
    assert p.mask().shape == (120, 240) and p.mask().sum() == 100 * 40
    wrong = propose(state, np.array([False, True]), method, space="keys")  # the other head's peak: not the object
    assert not wrong.cells[obj].any()


def test_threshold_and_errors():
    state, _ = _toy_state(np.random.default_rng(1))
    p = propose(state, [0], "threshold", frac=0.3)
    assert p.cells.sum() == 1 and p.cells[4, 7]
    with pytest.raises(ValueError, match="at least one head"):
        propose(state, np.zeros(2, bool), "grow")
    with pytest.raises(ValueError, match="Unknown proposal method"):
        propose(state, None, "nope")
    with pytest.raises(ValueError, match="descriptor"):
        propose(state, None, "match")
    assert set(METHODS) == {"match", "grow", "cut", "threshold"}
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


def test_patch_states_agree_with_the_engine(engine):
    rec = synthetic_dataset(1, seed=3, size=(128, 96))[0]
    engine.set_image(rec.load())
    st = patch_states(engine, [rec.load()])[0]
    np.testing.assert_allclose(st.maps, engine.attention_maps(), atol=1e-5)
    assert st.image_size == (128, 96) and st.keys.shape == (engine.num_heads, 144, engine.head_dim)


def test_match_finds_the_marked_object_in_its_own_photo(engine):
    """The query photo as its own result: most proposals overlap the marked object (IoU >= 0.5)."""
    data = synthetic_dataset(6, seed=21, size=(128, 128), min_objects=2)
    ious = []
    for rec in data:
        engine.set_image(rec.load())
        for o in rec.objects:
            prompt = Prompt.from_box(*[float(v) for v in o.bbox])
            sel = engine.select_heads(prompt, h_on=engine.recommended_h_on)
            p = propose_results(engine, prompt, [rec.load()], sel.selected, sel.head_mask)[0]
            ious.append(box_iou(p.box, o.bbox))
    assert len(ious) >= 12
    assert np.mean(np.asarray(ious) >= 0.5) >= 0.5, ious


def test_search_propose_adds_a_box_per_hit(tmp_path, capsys):
    gallery = tmp_path / "g"
    assert main(["scenes", "--n", "12", "--quiet", str(gallery)]) == 0
    assert main(["index", str(gallery), "--model", "demo"]) == 0
    coco = json.loads((gallery / "annotations.json").read_text())
    ann = coco["annotations"][0]
    img = next(i for i in coco["images"] if i["id"] == ann["image_id"])
    x, y, w, h = ann["bbox"]
    capsys.readouterr()
    argv = ["search", "--folder", str(gallery), "--image", str(gallery / img["file_name"]),
            "--box", f"{x},{y},{x + w},{y + h}", "--k", "4", "--json", "--propose"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for r in rows:
        x0, y0, x1, y1 = r["box"]
        assert 0 <= x0 < x1 <= img["width"] and 0 <= y0 < y1 <= img["height"]
    first = next(r for r in rows if r["path"].endswith(img["file_name"]))
    assert box_iou(first["box"], (x, y, x + w, y + h)) > 0.3
    assert main(argv[:5] + ["--k", "2", "--propose"]) == 2
    assert "needs a point, box or mask" in capsys.readouterr().err


def test_the_window_job_batches_the_photos_and_a_bad_one_spoils_nothing(engine, tmp_path):
    """The app's propose job: the query's descriptor once, the photos as one batch; a photo that cannot be
    read is None and the others get exactly what one call per photo gives."""
    import threading
    from types import SimpleNamespace

    from PIL import Image

    from phs_gui.proposals import propose_job

    data = synthetic_dataset(4, seed=31, size=(128, 96), min_objects=2)
    paths = []
    for i, rec in enumerate(data[1:]):
        Image.fromarray(np.asarray(rec.load())).save(tmp_path / f"r{i}.jpg")
        paths.append(str(tmp_path / f"r{i}.jpg"))
    (tmp_path / "bad.jpg").write_bytes(b"not a photo at all")
    engine.set_image(data[0].load())
    prompt = Prompt.from_box(*[float(v) for v in data[0].objects[0].bbox])
    sel = engine.select_heads(prompt, h_on=engine.recommended_h_on)
    want = {p: propose_results(engine, prompt, [p], sel.selected, sel.head_mask)[0] for p in paths}
    session = SimpleNamespace(engine=engine, lock=threading.RLock())
    for todo in (paths, [paths[0], str(tmp_path / "bad.jpg"), *paths[1:]]):
        out = propose_job(session, prompt, todo, [str(tmp_path)], sel.selected, sel.head_mask,
                          report=None, cancel=threading.Event())  # fmt: skip
        assert set(out) == set(todo)
        assert out.get(str(tmp_path / "bad.jpg"), "absent") in (None, "absent")
        for p in paths:
            assert out[p].box == pytest.approx(tuple(want[p].box), abs=1e-3)
            assert out[p].score == pytest.approx(want[p].score, abs=1e-5)
