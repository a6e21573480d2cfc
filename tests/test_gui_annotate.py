"""Annotating through the real window: save a mark with a label, see it again after a relaunch, propose the
object in the results, accept proposals, export COCO, and refuse a damaged import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

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
    drv.close_preview()

    # Undo takes back the last accept (one edit), redo (Ctrl+Y) brings it back.
    drv.key(Qt.Key.Key_Z, drv.ctrl)
    qtbot.waitUntil(lambda: w.labels_panel.labels.item(0).text() == "circle  (3)", timeout=5000)
    assert pr.status(accepted[-1]) == PENDING  # its proposal can be decided again
    drv.key(Qt.Key.Key_Y, drv.ctrl)
    qtbot.waitUntil(lambda: w.labels_panel.labels.item(0).text() == "circle  (4)", timeout=5000)
    assert pr.status(accepted[-1]) == ACCEPTED

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


def test_reject_accept_all_above_labels_panel_and_export_into_a_photo_folder(qtbot, tmp_path, monkeypatch):
    w = first_launch(qtbot)
    drv = WindowDriver(qtbot, w)
    W, H = drv.image_size()
    drv.draw_box([W * 0.2, H * 0.2, W * 0.6, H * 0.6])
    drv.save_mark("shape", monkeypatch)
    drv.propose()
    pr = w.proposals

    # X in the preview rejects: the proposal is no longer drawn, nothing is saved.
    first = 1 if w.docks.results.paths()[0] == w.photo_path else 0
    drv.preview_result(first)
    rejected = w.previews.dialog.path
    qtbot.keyClick(w.previews.dialog, Qt.Key.Key_X)
    qtbot.waitUntil(lambda: w.previews.dialog.path != rejected, timeout=5000)
    assert pr.status(rejected) == "rejected" and pr.proposal(rejected) is None
    drv.close_preview()

    # Accept all above a score: every pending one at or above it, one undoable edit.
    scores = sorted(pr.proposal(p).score for p in pr.paths if pr.proposal(p) is not None)
    threshold = scores[len(scores) // 2]
    w.propose_bar.score.setValue(threshold - 0.005)  # the spin box shows two decimals
    expect = sum(s >= w.propose_bar.score.value() for s in scores)
    qtbot.mouseClick(w.propose_bar.accept_all, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.annotations.store.count() == 1 + expect, timeout=5000)
    drv.key(Qt.Key.Key_Z, drv.ctrl)
    qtbot.waitUntil(lambda: w.annotations.store.count() == 1, timeout=5000)
    drv.key(Qt.Key.Key_Y, drv.ctrl)
    qtbot.waitUntil(lambda: w.annotations.store.count() == 1 + expect, timeout=5000)

    # Show the photos of a label as results; rename the label; delete it, then undo the deletion.
    drv.choose_label("shape")
    qtbot.mouseClick(_button(w, "Show photos"), Qt.MouseButton.LeftButton)
    assert len(w.docks.results.paths()) == 1 + expect and "labelled 'shape'" in drv.banner()
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("object", True))
    qtbot.mouseClick(_button(w, "Rename…"), Qt.MouseButton.LeftButton)
    assert w.labels_panel.labels.item(0).text() == f"object  ({1 + expect})"
    drv.choose_label("object")
    qtbot.mouseClick(_button(w, "Delete"), Qt.MouseButton.LeftButton)
    assert w.labels_panel.labels.count() == 0 and w.annotations.store.count() == 0
    drv.key(Qt.Key.Key_Z, drv.ctrl)
    qtbot.waitUntil(lambda: w.annotations.store.count() == 1 + expect, timeout=5000)

    # An export into a photo folder is refused unless confirmed.
    gallery = w.prefs.current_folder
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("labelme (one JSON per photo)", True))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: gallery)
    before = sorted(p.name for p in Path(gallery).iterdir())
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    w.export_ann_action.trigger()
    assert "Nothing was exported" in drv.banner() and "inside a photo folder" in drv.banner()
    assert sorted(p.name for p in Path(gallery).iterdir()) == before
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    w.export_ann_action.trigger()
    assert f"Exported {1 + expect} annotations" in drv.banner()
    assert len(set(Path(gallery).iterdir()) - {Path(gallery) / n for n in before}) == 1 + expect
    w.shutdown()


def _button(w, text: str):
    from PySide6.QtWidgets import QPushButton

    return next(b for b in w.labels_panel.findChildren(QPushButton) if b.text() == text)
