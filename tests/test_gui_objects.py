"""Several objects in one query, through the real window and its event loop: the Objects list, each object's
colour on the photo and on the result tiles, its heads, pinning an object from another photo, excluding one,
undo and relaunch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from core.method.prompts import Box, Prompt  # noqa: E402
from core.search.objects import ObjectSpec  # noqa: E402
from core.synthetic.gallery import gallery_categories  # noqa: E402
from phs_gui.main_window import MainWindow  # noqa: E402
from phs_gui.objects_state import PALETTE  # noqa: E402
from tests.gui_driver import (  # noqa: E402
    WAIT_MS,
    ObjectsDriver,
    first_launch,
    other_scene,
    scene_boxes,
    shown_window,
)

CTRL = Qt.KeyboardModifier.ControlModifier


def two_objects(qtbot, n: int = 16) -> tuple[MainWindow, ObjectsDriver, list]:
    """A first launch with two objects of different categories boxed on the query photo."""
    w = first_launch(qtbot, n=n)
    d = ObjectsDriver(qtbot, w)
    boxes = scene_boxes(w.photo_path)
    second = next(b for c, b in boxes[1:] if c != boxes[0][0])
    d.draw_box(boxes[0][1])
    d.new_object()
    d.draw_box(second)
    return w, d, [boxes[0][1], second]


def close_colour(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def test_two_objects_on_one_photo_rank_by_all_and_show_their_bars(qtbot):
    w, d, boxes = two_objects(qtbot)
    assert len(d.objects()) == 2 and "box" in d.objects()[0] and "wanted" in d.objects()[1]
    assert d.chosen_object() == 1 and d.marks_drawn() == [1]  # object 1 drawn by the marks, 2 edited
    assert w.canvas.mark_colour == QColor(*PALETTE[1])
    # The results are the service's AND ranking of the two boxes.
    specs = tuple(ObjectSpec(Prompt(box=Box(*b))) for b in boxes)
    with w.session.lock:
        ref = w.session.service.run(replace(w.session.spec(None, w.prefs.search), objects=specs, combine="and"))
    assert [str(h.path) for h in ref.hits][:8] == d.result_paths()[:8]
    rows = w.docks.results.visible_rows()
    assert all(len(r.objects) == 2 for r in rows)
    np.testing.assert_allclose([r.objects[0][0] for r in rows[:5]], ref.object_scores[:5, 0], rtol=1e-5)
    bars = d.tile_bar_colours(0)
    assert close_colour(bars[0], PALETTE[0]) and close_colour(bars[1], PALETTE[1]), bars
    assert "Objects: 1 " in w.docks.results.item(0).toolTip()
    # The heads panel shows the heads of the object chosen in the list.
    kept_2 = d.kept_heads()
    assert kept_2 == list(np.flatnonzero(ref.objects[1].selection.selected))
    d.choose_object(0)
    assert d.chosen_object() == 0 and d.kept_heads() == list(np.flatnonzero(ref.objects[0].selection.selected))
    assert d.marks_drawn() == [2] and w.canvas.mark_colour == QColor(*PALETTE[0])
    # any (OR) re-ranks; one object left is today's one-box search exactly.
    d.click(w.objects_panel.any)
    assert w.outcome.spec.combine == "or"
    d.click(w.objects_panel.remove)
    assert len(d.objects()) == 1 and w.outcome.spec.objects == ()


def test_an_excluded_object_lowers_the_photos_that_hold_it_and_undo_takes_it_back(qtbot):
    w = first_launch(qtbot, n=16)
    d = ObjectsDriver(qtbot, w)
    boxes = scene_boxes(w.photo_path)
    cat2, box2 = next((c, b) for c, b in boxes[1:] if c != boxes[0][0])
    cats = gallery_categories(Path(w.photo_path).parent)
    holds = {p for p in map(str, Path(w.photo_path).parent.glob("*.jpg"))
             if cat2 in cats.get(Path(p).name, set()) and p != w.photo_path}
    d.draw_box(boxes[0][1])
    alone = d.result_paths()  # object 1 only

    def mean_rank(paths: list[str]) -> float:
        return float(np.mean([paths.index(p) for p in holds if p in paths]))

    d.new_object()
    d.draw_box(box2)
    both = d.result_paths()
    d.key(Qt.Key.Key_X)  # the edited object (2) is excluded
    assert "excluded" in d.objects()[1] and w.outcome.spec.objects[1].excluded
    assert mean_rank(d.result_paths()) > mean_rank(alone) >= mean_rank(both), (
        mean_rank(d.result_paths()), mean_rank(alone), mean_rank(both))
    d.key(Qt.Key.Key_Z, CTRL)  # wanted again: the AND ranking is back
    assert "wanted" in d.objects()[1] and d.result_paths() == both
    d.key(Qt.Key.Key_Z, CTRL)  # the second box
    d.key(Qt.Key.Key_Z, CTRL)  # the second object
    assert len(d.objects()) == 1 and w.outcome.spec.objects == () and d.result_paths() == alone
    d.key(Qt.Key.Key_Y, CTRL)  # redo brings the object back
    assert len(d.objects()) == 2


def test_an_object_pinned_from_another_photo_is_searched_with_the_new_one_and_relaunch_restores_it(
        qtbot, tmp_path, monkeypatch):
    w = first_launch(qtbot)
    d = ObjectsDriver(qtbot, w)
    first = w.photo_path
    box = scene_boxes(first)[0][1]
    d.draw_box(box)
    d.key(Qt.Key.Key_K)  # pin this object
    assert "pinned" in d.objects()[0]
    other = other_scene(tmp_path)
    d.open_with_ctrl_o(other, monkeypatch)
    assert len(d.objects()) == 2 and f"on {first.rsplit('/', 1)[-1]}" in d.objects()[0]
    assert d.marks_drawn() == []  # object 1 lies on the other photo
    d.draw_box([40, 40, 160, 150])
    assert w.outcome.spec.objects[0].photo == first and len(w.docks.results.visible_rows()[0].objects) == 2
    # The pinned object keeps its feature: another edit neither decodes nor encodes its photo again.
    seen = []
    engine = w.session.engine
    real = engine.set_image
    monkeypatch.setattr(engine, "set_image", lambda img: (seen.append(img), real(img))[1])
    d.draw_box([60, 50, 200, 170])
    assert first not in [str(s) for s in seen] and w.outcome.spec.objects[0].feature is not None
    # Its heads, chosen in the list, are its own; a head clicked there is forced for it.
    d.choose_object(0)
    assert d.chosen_object() == 0 and d.kept_heads() == list(np.flatnonzero(w.outcome.objects[0].selection.selected))
    h = d.kept_heads()[0]
    d.click_head(h)
    assert w.outcome.spec.objects[0].force_off == (h,) and w.outcome.spec.objects[1].force_off == ()
    assert d.forced() == {h: "off"} and d.chosen_object() == 0
    d.key(Qt.Key.Key_Z, CTRL)
    assert w.outcome.spec.objects[0].force_off == ()
    kept, box2 = d.result_paths(), d.box()
    qtbot.keyClick(w, Qt.Key.Key_Q, CTRL)
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)

    w2 = shown_window(qtbot, n=12)
    d2 = ObjectsDriver(qtbot, w2)
    try:
        w2.start()
        qtbot.waitUntil(lambda: w2.photo_path == str(other) and w2.settled and w2.docks.results.count() > 0,
                        timeout=WAIT_MS)
        assert d2.objects() == d.objects() and d2.box() == box2
        assert d2.result_paths() == kept
    finally:
        w2.shutdown()
