"""The desktop window, driven like a person would (pytest-qt, offscreen).

A tiny ViT keeps the tests fast; its weights are random, so the gallery holds near-duplicates of the query
scene (re-encoded, slightly brighter or flatter) among other scenes: a working pipeline must rank them
first, and they contain the prompted object's category.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from core.library import PhotoIndex  # noqa: E402
from core.method.engine import load_engine  # noqa: E402
from core.synthetic.scenes import generate_scene  # noqa: E402
from phs_gui.canvas import Tool  # noqa: E402
from phs_gui.main_window import MainWindow  # noqa: E402
from phs_gui.session import SearchOptions  # noqa: E402
from phs_gui.settings import Preferences  # noqa: E402
from tests.conftest import perturb_  # noqa: E402
from tests.gui_driver import drag_box, settle  # noqa: E402

pytestmark = pytest.mark.gui

TINY = ("dinov2-s14-reg4", {"img_size": 112, "depth": 3, "embed_dim": 96, "num_heads": 6})
SEED = 5
WAIT_MS = 30000


def tiny_loader(name: str, device: str):
    """A small random DINOv2-style engine whatever model is asked for (no weights needed)."""
    engine = load_engine(TINY[0], pretrained=False, model_kwargs=TINY[1], device="cpu")
    perturb_(engine.model, seed=3)
    return engine


def _query_scene():
    for i in range(50):
        s = generate_scene(SEED, i, (224, 224), min_objects=2, max_objects=4)
        if len({o.category_id for o in s.objects}) >= 2:
            return s
    raise AssertionError("no multi-object scene")


def make_gallery(folder: Path, n_other: int = 14, broken: bool = False) -> tuple[Path, list[str]]:
    """Write a query photo (outside the gallery) and a gallery with 3 near-duplicates of it."""
    folder.mkdir(parents=True, exist_ok=True)
    q = _query_scene()
    query = folder.parent / "query.jpg"
    Image.fromarray(q.image).save(query, quality=95)
    img = Image.fromarray(q.image)
    dups = {
        "dup_a.jpg": ImageEnhance.Brightness(img).enhance(1.08),
        "dup_b.jpg": img.copy(),  # re-encoded at a lower JPEG quality below
        "dup_c.jpg": ImageEnhance.Contrast(img).enhance(0.92),
    }
    for name, im in dups.items():
        im.save(folder / name, quality=70 if name == "dup_b.jpg" else 85)
    for i in range(n_other):
        s = generate_scene(SEED + 1000, i, (224, 224))
        Image.fromarray(s.image).save(folder / f"other_{i:02d}.jpg", quality=90)
    if broken:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a photo")
    box = q.objects[-1].bbox  # the top-most object, fully visible
    return query, [int(v) for v in box]


@pytest.fixture
def window(qtbot):
    w = MainWindow(Preferences(model="demo"), engine_loader=tiny_loader, demo_count=12, check_weights=False)
    qtbot.addWidget(w)
    w.resize(1280, 820)
    w.show()
    yield w
    w.shutdown()


def start_with_folder(qtbot, w: MainWindow, folder: Path, query: Path) -> None:
    w.prefs.folders = [str(folder)]
    w.prefs.current_folder = str(folder)
    w.prefs.last_photo = str(query)
    w.library.refresh()
    w.load_model("tiny", "cpu")
    qtbot.waitUntil(lambda: w.session is not None, timeout=WAIT_MS)
    w.library.select_folder(str(folder))
    qtbot.waitUntil(lambda: not w.indexing and w.session.indexed_count > 0, timeout=WAIT_MS)
    w.query.open_photo(str(query))
    qtbot.waitUntil(lambda: w.photo_path == str(query) and w.settled, timeout=WAIT_MS)


def ranking(w: MainWindow) -> list[tuple[str, float]]:
    return [(Path(h.path).name, round(h.score, 6)) for h in w.outcome.hits]


def test_box_drag_selects_heads_outlines_them_and_ranks_the_object_first(qtbot, window, tmp_path):
    query, box = make_gallery(tmp_path / "photos")
    start_with_folder(qtbot, window, tmp_path / "photos", query)
    window.set_tool(Tool.BOX)
    drag_box(qtbot, window, box)
    st = window.canvas.state
    assert st.box is not None and np.allclose(st.box, box, atol=3)  # view -> image pixels round-trip
    sel = window.outcome.selection
    assert sel is not None and int(sel.selected.sum()) == window.docks.controls.h_on.value() == 5
    assert window.docks.heads.selected_tiles() == list(np.flatnonzero(sel.selected))
    names = window.docks.results.paths()
    assert len(names) == 17
    assert {Path(p).name for p in names[:3]} == {"dup_a.jpg", "dup_b.jpg", "dup_c.jpg"}
    assert "prompt→results" in window.status.timing.text()
    assert window.status.indexed.text() == "17 photos in 1 folder"


def test_toggling_a_head_changes_the_ranking_and_undo_redo_restore_results(qtbot, window, tmp_path):
    query, box = make_gallery(tmp_path / "photos")
    start_with_folder(qtbot, window, tmp_path / "photos", query)
    window.docks.controls.h_on.setValue(2)
    drag_box(qtbot, window, box)
    first = ranking(window)
    first_scores = window.outcome.selection.scores.copy()
    kept = window.outcome.selection.indices
    qtbot.mouseClick(window.docks.heads.tiles[kept[0]], Qt.MouseButton.LeftButton)
    settle(qtbot, window)
    assert window.docks.heads.tiles[kept[0]].forced == "off" and not window.docks.heads.tiles[kept[0]].selected
    assert ranking(window) != first
    qtbot.mouseClick(window.docks.heads.tiles[kept[0]], Qt.MouseButton.LeftButton)  # back to automatic
    settle(qtbot, window)
    assert window.docks.heads.tiles[kept[0]].forced is None and ranking(window) == first
    qtbot.mouseClick(window.docks.heads.tiles[kept[0]], Qt.MouseButton.LeftButton)
    settle(qtbot, window)
    assert ranking(window) != first
    qtbot.mouseClick(window.docks.heads.reset_button, Qt.MouseButton.LeftButton)
    settle(qtbot, window)
    assert ranking(window) == first

    # A second box, then undo and redo.
    w, h = window.canvas.state.image_size
    other = [5, 5, w // 3, h // 3]
    drag_box(qtbot, window, other)
    second, second_scores = ranking(window), window.outcome.selection.scores.copy()
    assert not np.allclose(second_scores, first_scores)
    window.query.undo()
    settle(qtbot, window)
    assert np.allclose(window.canvas.state.box, box, atol=3) and ranking(window) == first
    assert np.allclose(window.outcome.selection.scores, first_scores)
    window.query.redo()
    settle(qtbot, window)
    assert np.allclose(window.canvas.state.box, other, atol=3) and ranking(window) == second
    assert np.allclose(window.outcome.selection.scores, second_scores)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert ranking(window) == first and window.actions_.redo.isEnabled()


def test_qo_qd_fa_and_itae_switches_re_rank(qtbot, window, tmp_path):
    query, box = make_gallery(tmp_path / "photos")
    start_with_folder(qtbot, window, tmp_path / "photos", query)
    drag_box(qtbot, window, box)
    c = window.docks.controls
    qo = ranking(window)
    c.qd.click()
    settle(qtbot, window)
    assert window.outcome is not None and c.options().mode == "qd"
    qd = ranking(window)
    assert qd != qo
    c.qo.click()
    settle(qtbot, window)
    assert ranking(window) == qo

    maps = window.outcome.maps.copy()
    c.fa_box.setChecked(True)
    c.fa_alpha.setValue(3.0)
    settle(qtbot, window)
    assert window.prefs.search.fa_on and not np.allclose(window.outcome.maps, maps)
    assert ranking(window) != qo
    c.fa_box.setChecked(False)
    settle(qtbot, window)
    assert ranking(window) == qo

    norms = window.session.query_norms()
    c.itae_theta.setValue(float(np.percentile(norms, 50)))
    c.itae_box.setChecked(True)
    settle(qtbot, window)
    assert window.outcome.spec.itae_theta == pytest.approx(c.itae_theta.value())
    assert window.session.engine.itae_theta is None  # the query's argument: the engine's own setting stays
    assert ranking(window) != qo
    c.itae_box.setChecked(False)
    settle(qtbot, window)
    assert window.outcome.spec.itae_theta is None and ranking(window) == qo


def test_points_and_brush_prompts_search(qtbot, window, tmp_path):
    query, box = make_gallery(tmp_path / "photos")
    start_with_folder(qtbot, window, tmp_path / "photos", query)
    vp = window.canvas.viewport()
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    window.set_tool(Tool.POINT)
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=window.canvas.mapFromScene(QPointF(cx, cy)))
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     pos=window.canvas.mapFromScene(QPointF(3, 3)))
    settle(qtbot, window)
    pts = window.canvas.state.points
    assert len(pts) == 2 and pts[0][2] and not pts[1][2]
    assert window.outcome.selection is not None
    window.canvas.clear_prompt()
    settle(qtbot, window)
    assert window.canvas.state.is_empty and window.outcome.selection is None  # plain search again
    window.set_tool(Tool.BRUSH)
    window.canvas.set_brush_size(20)
    drag_box(qtbot, window, box)  # a stroke along the diagonal
    m = window.canvas.state.mask
    assert m is not None and m[int(cy), int(cx)] and not m[2, 2]
    assert window.outcome.selection is not None and len(window.outcome.hits) == 17
    window.set_tool(Tool.ERASER)
    window.canvas.set_brush_size(400)
    drag_box(qtbot, window, box)
    assert window.canvas.state.mask is None  # all erased: nothing marked


def test_indexing_shows_progress_cancels_resumes_and_reports_a_broken_photo(qtbot, window, tmp_path):
    folder = tmp_path / "photos"
    query, _ = make_gallery(folder, n_other=40, broken=True)
    window.load_model("tiny", "cpu")
    qtbot.waitUntil(lambda: window.session is not None, timeout=WAIT_MS)
    window.prefs.folders = [str(folder)]
    window.prefs.current_folder = str(folder)
    window.library.refresh()
    seen = []

    def cancel_after_a_batch(p):
        seen.append(p)
        if p.done > 8:  # the first batch of 8 is committed; the run after this one goes to the end
            window.library.cancel_indexing()
            window.library.progress.disconnect(cancel_after_a_batch)

    engine = window.session.index_engine
    encode = engine.encode_batch

    def slow_encode(batch):  # a slower model, so the run is still going when cancel arrives
        time.sleep(0.15)
        return encode(batch)

    engine.encode_batch = slow_encode
    window.library.start_indexing(str(folder))
    window.library.progress.connect(cancel_after_a_batch)
    assert not window.docks.library.index_button.isEnabled() and window.docks.library.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not window.indexing, timeout=WAIT_MS)
    assert seen, "no progress was shown"
    assert "Cancelled" in window.docks.library.status.text()
    partial = window.session.indexed_count
    assert 8 <= partial < 43
    assert window.docks.library.progress.maximum() == 44 and seen[-1].total == 44

    window.docks.library.index_button.click()  # resume
    qtbot.waitUntil(lambda: not window.indexing, timeout=WAIT_MS)
    assert window.session.indexed_count == 43
    assert "broken.jpg" in window.banner.text
    assert window.docks.library.failures.count() == 1
    assert "broken.jpg" in window.docks.library.failures.item(0).text()
    assert window.docks.library.progress.value() == window.docks.library.progress.maximum()


def test_a_photo_that_cannot_be_opened_is_one_sentence(qtbot, window, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    window.load_model("tiny", "cpu")
    qtbot.waitUntil(lambda: window.session is not None, timeout=WAIT_MS)
    window.query.open_photo(str(bad))
    qtbot.waitUntil(lambda: bool(window.banner.text), timeout=WAIT_MS)
    text = window.banner.text
    assert "bad.png" in text and "Traceback" not in text and text.count("\n") == 0
    assert window.photo_path is None


def test_first_launch_without_weights_says_so_and_runs_the_demo_gallery(qtbot, tmp_path):
    from core.paths import data_dir
    from core.synthetic.gallery import demo_gallery_dir

    w = MainWindow(Preferences(model="dinov2-b14", search=SearchOptions(h_on=1)), engine_loader=tiny_loader, demo_count=12)
    qtbot.addWidget(w)
    w.show()
    try:
        w.start()
        assert "No weights for DINOv2 ViT-B/14" in w.banner.text and w.banner.level == "demo"
        qtbot.waitUntil(lambda: w.session is not None and not w.indexing and w.photo_path is not None
                        and w.session.indexed_count == 12 and w.settled and w.docks.results.count() == 12,
                        timeout=WAIT_MS)
        gallery = demo_gallery_dir()
        assert gallery.parent == data_dir() and len(list(gallery.glob("*.jpg"))) == 12
        assert w.prefs.current_folder == str(gallery)
        assert w.status.demo.isVisible() and "demo" in w.windowTitle()
        assert len(w.outcome.hits) == 12
        # Another model was loaded than the preferences were made for: its recommended h_on applies.
        recommended = w.session.engine.recommended_h_on
        assert recommended != 1 and w.prefs.search.h_on == w.docks.controls.h_on.value() == recommended
        w.close()  # saves the preferences
        saved = (data_dir() / "settings.json").read_text("utf-8")
        assert '"model": "demo"' in saved and str(gallery) in saved
    finally:
        w.shutdown()


def test_ctrl_wheel_zooms_at_the_cursor_and_fit_shows_the_whole_photo(qtbot):
    import numpy as np
    from PySide6.QtCore import QPointF as _P

    from phs_gui.canvas import Canvas

    c = Canvas()
    qtbot.addWidget(c)
    c.resize(500, 400)
    c.show()
    c.set_photo(np.full((300, 400, 3), 128, np.uint8))
    fit = c.zoom
    assert 400 * fit <= c.viewport().width() + 1 and 300 * fit <= c.viewport().height() + 1
    anchor = c.mapFromScene(_P(100, 80))
    c.zoom_by(2.0, anchor)
    assert c.zoom == pytest.approx(2 * fit)
    back = c.mapToScene(anchor)
    assert abs(back.x() - 100) < 1.5 and abs(back.y() - 80) < 1.5  # the point under the cursor stayed
    c.fit_to_window()
    assert c.zoom == pytest.approx(fit)


@pytest.mark.slow
def test_demo_index_box_puts_the_prompted_category_at_the_top(qtbot):
    """The real first launch: demo model, generated demo gallery, a box on an object of the query photo.

    Counted over every object of the demo query photo: the top-5 results (the query itself excluded) contain
    the prompted category far more often than a random gallery photo does.
    """
    from core.evaluation.datasets import load_synthetic
    from core.synthetic.gallery import demo_gallery_dir

    def demo_loader(name: str, device: str):
        return load_engine("demo", device="cpu")

    w = MainWindow(Preferences(), engine_loader=demo_loader, demo_count=60)  # no DINOv2 weights: falls back
    qtbot.addWidget(w)
    w.resize(1280, 820)
    w.show()
    try:
        w.start()
        qtbot.waitUntil(lambda: w.session is not None and not w.indexing and w.photo_path is not None
                        and w.settled and w.session.indexed_count == 60, timeout=WAIT_MS)
        assert w.docks.controls.h_on.value() == w.session.engine.recommended_h_on
        records = {Path(r.path).name: r for r in load_synthetic(demo_gallery_dir()).images}
        query = records[Path(w.photo_path).name]
        hits, base = [], []
        for obj in query.objects:
            w.set_tool(Tool.BOX)
            drag_box(qtbot, w, [int(v) for v in obj.bbox])
            assert int(w.outcome.selection.selected.sum()) == w.docks.controls.h_on.value()
            top = [Path(p).name for p in w.docks.results.paths() if Path(p).name != query.file_name][:5]
            hits += [obj.category_id in records[name].categories for name in top]
            base.append(np.mean([obj.category_id in r.categories for r in records.values()]))
        precision, chance = float(np.mean(hits)), float(np.mean(base))
        print(f"demo index: precision@5 of the prompted category {precision:.2f}, gallery base rate {chance:.2f}")
        assert len(query.objects) >= 2
        assert precision >= 2 * chance and precision >= chance + 0.25, (precision, chance)
    finally:
        w.shutdown()


def test_full_disk_or_damaged_index_while_indexing_is_a_banner_and_the_window_stays(qtbot, window, tmp_path,
                                                                                    monkeypatch):
    import errno

    import core.library.store as store
    from tests.fs_faults import damage_database, one_sentence

    folder = tmp_path / "photos"
    make_gallery(folder, n_other=5)
    window.load_model("tiny", "cpu")
    qtbot.waitUntil(lambda: window.session is not None, timeout=WAIT_MS)
    window.prefs.folders = [str(folder)]
    window.library.refresh()
    window.library.select_folder(str(folder))  # not indexed yet: indexes it
    qtbot.waitUntil(lambda: not window.indexing and window.session.indexed_count == 8, timeout=WAIT_MS)

    for i in range(3):  # new photos, and the disk holding the index is full when their rows are written
        Image.fromarray(generate_scene(SEED + 2000, i, (224, 224)).image).save(folder / f"new_{i}.jpg")

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(store.QDCache, "write", no_space)
        window.docks.library.index_button.click()
        qtbot.waitUntil(lambda: not window.indexing, timeout=WAIT_MS)
    text = window.banner.text
    assert window.isVisible() and window.banner.level == "error"
    assert "is full" in text and one_sentence(text), text
    assert window.session.indexed_count == 8  # what was indexed before stays searchable
    assert window.docks.library.index_button.isEnabled()

    # Space freed; meanwhile the database got damaged.
    with PhotoIndex.open(folder, window.session.index_engine) as idx:
        db = idx.directory / "files.sqlite"
    window.session.close_folder()
    damage_database(db, "not_a_database")
    window.docks.library.index_button.click()
    qtbot.waitUntil(lambda: not window.indexing, timeout=WAIT_MS)
    text = window.banner.text
    assert window.isVisible() and "damaged" in text and "rebuilt" in text and one_sentence(text), text
    assert window.session.indexed_count == 11
