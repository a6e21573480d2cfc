"""Annotating through the real window: save a mark with a label, see it again after a relaunch, propose the
object in the results, accept proposals, export COCO, and refuse a damaged import."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog

from phs_gui.proposals import ACCEPTED, PENDING
from tests.gui_driver import WindowDriver, first_launch

pytestmark = pytest.mark.gui


def test_mark_save_relaunch_propose_accept_three_export_coco_and_refuse_damaged_import(qtbot, tmp_path, monkeypatch):
    # Mark, save with a label: listed on the photo, the label counted, drawn on the photo in its colour.
    w = first_launch(qtbot)
    drv = WindowDriver(qtbot, w)
    W, H = drv.image_size()
    drv.draw_box([W * 0.2, H * 0.2, W * 0.6, H * 0.6])
    drv.save_mark("circle", monkeypatch)
    assert drv.annotations_listed() == ["circle: box, drawn"]
    assert w.labels_panel.labels.item(0).text() == "circle  (1)"
    photo = w.photo_path
    w.close()

    # Relaunch: the same photo opens with its annotation drawn; the View toggle hides it.
    w = first_launch(qtbot)
    drv = WindowDriver(qtbot, w)
    assert w.photo_path == photo
    qtbot.waitUntil(lambda: drv.annotations_listed() == ["circle: box, drawn"], timeout=30000)
    color = w.label_colors["circle"]
    qtbot.waitUntil(lambda: drv.canvas_pixels_of(color) > 100, timeout=5000)
    w.show_ann_action.trigger()
    qtbot.waitUntil(lambda: drv.canvas_pixels_of(color) < 10, timeout=5000)
    w.show_ann_action.trigger()

    # A click on the saved annotation makes it the query's prompt: a search.
    lw = w.labels_panel.on_photo
    qtbot.mouseClick(lw.viewport(), Qt.MouseButton.LeftButton, pos=lw.visualItemRect(lw.item(0)).center())
    drv.settle()
    assert drv.box() is not None and w.outcome.selection is not None

    # Propose: every result (the query photo left out) gets a proposal, drawn dashed on its tile.
    drv.choose_label("circle")
    drv.propose()
    pr = w.proposals
    assert pr.paths and all(pr.proposal(p) is not None for p in pr.paths)
    assert "proposed" in w.propose_bar.state.text()

    # Accept three in the preview (A), stepping on to the next result each time.
    first = 1 if w.docks.results.paths()[0] == w.photo_path else 0
    drv.preview_result(first)
    accepted = [drv.accept_in_preview() for _ in range(3)]
    assert [pr.status(p) for p in accepted] == [ACCEPTED] * 3
    assert pr.status(w.previews.dialog.path) == PENDING
    assert w.labels_panel.labels.item(0).text() == "circle  (4)"
    w.previews.dialog.close()

    # Undo takes back the last accept (one edit), Edit › Redo brings it back.
    drv.key(Qt.Key.Key_Z, drv.ctrl)
    qtbot.waitUntil(lambda: w.labels_panel.labels.item(0).text() == "circle  (3)", timeout=5000)
    w.actions_.redo.trigger()  # Edit › Redo
    qtbot.waitUntil(lambda: w.labels_panel.labels.item(0).text() == "circle  (4)", timeout=5000)

    # Export COCO from the File menu: four annotations that pycocotools loads, with their boxes.
    out = tmp_path / "export" / "coco.json"
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("COCO instances (one JSON file)", True))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    w.export_ann_action.trigger()
    from pycocotools.coco import COCO

    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 4 and [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["circle"]
    origins = sorted(a["origin"] for a in json.loads(out.read_text())["annotations"])
    assert origins == ["drawn", "proposed", "proposed", "proposed"]
    assert "Exported 4 annotations" in drv.banner()

    # Import a damaged file: one sentence saying why, nothing changed.
    bad = tmp_path / "damaged.json"
    bad.write_text('{"images": [], "annotations": [{"bbox": [1, 2')
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    w.import_ann_action.trigger()
    assert "Nothing was imported" in drv.banner() and "damaged.json" in drv.banner()
    assert w.annotations.store.count() == 4
    w.shutdown()
