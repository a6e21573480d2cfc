"""Annotating in the window, put together: the annotations and proposals controllers, the Labels dock, the
Propose bar over the results, the File and View menu entries, the one undo history, and their connections.

:func:`install` is called once by the window after its own wiring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog, QMessageBox

from core.annotations.formats import ExportError, export
from core.annotations.importers import import_file
from core.errors import PHSError
from phs_gui import labels_panel
from phs_gui.controllers.annotations import AnnotationsController
from phs_gui.edit_journal import EditJournal
from phs_gui.labels_panel import LabelsPanel, paint_annotations
from phs_gui.prompt_state import PromptState
from phs_gui.proposals import ACCEPTED, ProposalsController, ProposeBar, draw_on_thumbnail, redecorate
from phs_gui.result_rows import ResultRow

if TYPE_CHECKING:
    from phs_gui.main_window import MainWindow

PROPOSAL_COLOR = "#ffd23c"
FORMATS = {"COCO instances (one JSON file)": "coco", "labelme (one JSON per photo)": "labelme",
           "YOLO (one txt per photo and classes.txt)": "yolo"}


def install(win: MainWindow) -> None:
    """Add annotating to ``win``: controllers, dock, menus and every connection of them."""
    win.annotations = AnnotationsController(win.prefs, win.workers, win)
    win.proposals = ProposalsController(win.lane, win.annotations, win)
    win.labels_panel = LabelsPanel()
    dock = QDockWidget("Labels", win)
    dock.setObjectName("dock-labels")
    dock.setWidget(win.labels_panel)
    win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    win.labels_dock = dock  # the layout tabs it beside Search and Library (phs_gui.layout)
    win.propose_bar = ProposeBar()
    win.docks.results_panel.layout().insertWidget(1, win.propose_bar)
    win.journal = EditJournal({"prompt": (win.query.undo, win.query.redo),
                               "annotation": (win.annotations.undo, win.annotations.redo)}, win)
    _menus(win, dock)
    _connect(win)
    _draw_hooks(win)


def _menus(win: MainWindow, dock: QDockWidget) -> None:
    bar = win.menuBar()
    menus = {m.title(): m for m in (a.menu() for a in bar.actions()) if m is not None}
    file_menu, view_menu, edit_menu = menus["&File"], menus["&View"], menus["&Edit"]
    win.save_mark_action = QAction("&Save mark with a label…", win)
    win.save_mark_action.setShortcut(QKeySequence("Ctrl+S"))
    win.save_mark_action.triggered.connect(lambda: save_mark(win))
    edit_menu.addSeparator()
    edit_menu.addAction(win.save_mark_action)
    win.export_ann_action = QAction("Export annotations…", win)
    win.export_ann_action.triggered.connect(lambda: export_dialog(win))
    win.import_ann_action = QAction("Import annotations…", win)
    win.import_ann_action.triggered.connect(lambda: import_dialog(win))
    file_menu.insertActions(win.actions_.quit, [win.export_ann_action, win.import_ann_action])
    file_menu.insertSeparator(win.actions_.quit)
    win.show_ann_action = QAction("Show saved annotations", win)
    win.show_ann_action.setCheckable(True)
    win.show_ann_action.setChecked(True)
    win.show_ann_action.toggled.connect(win.labels_panel.show_box.setChecked)
    win.labels_panel.show_box.toggled.connect(win.show_ann_action.setChecked)
    view_menu.addSeparator()
    view_menu.addActions([win.show_ann_action, dock.toggleViewAction()])
    win.actions_.undo.setText("&Undo")
    win.actions_.redo.setText("&Redo")


def _connect(win: MainWindow) -> None:
    a, q, ann, pr, lp, bar = (win.actions_, win.query, win.annotations, win.proposals, win.labels_panel,
                              win.propose_bar)
    a.undo.triggered.connect(win.journal.undo)
    a.redo.triggered.connect(win.journal.redo)
    win.journal.changed.connect(lambda u, r: (a.undo.setEnabled(u), a.redo.setEnabled(r)))
    q.edited.connect(lambda: win.journal.record("prompt"))
    ann.edited.connect(lambda: win.journal.record("annotation"))
    ann.history_forgotten.connect(lambda: win.journal.forget("annotation"))
    q.photo_opened.connect(lambda out: (win.journal.forget("prompt"), ann.set_photo(out.path)))
    ann.photo_annotations.connect(lambda anns: (lp.set_annotations(anns), win.canvas.viewport().update()))
    ann.labels_changed.connect(lambda labels: (lp.set_labels(labels), _remember_colors(win, labels)))
    lp.save_requested.connect(lambda: save_mark(win))
    lp.rename_requested.connect(ann.rename_label)
    lp.delete_requested.connect(ann.delete_label)
    lp.remove_requested.connect(ann.remove)
    lp.photos_requested.connect(lambda name: show_label_photos(win, name))
    lp.use_requested.connect(lambda an: use_as_prompt(win, an))
    lp.show_toggled.connect(lambda _on: win.canvas.viewport().update())
    lp.labels.currentItemChanged.connect(lambda it, _old: it and setattr(ann, "current_label", lp.current_label()))
    win.model.loaded.connect(lambda session, *_: pr.set_session(session))
    q.results_answered.connect(lambda ans: pr.set_answer(q.photo_path, q.state, ans.outcome, ans.rows))
    bar.toggle.toggled.connect(pr.set_on)
    bar.accept_all.clicked.connect(lambda: pr.accept_above(bar.score.value()))
    pr.changed.connect(lambda: _proposals_changed(win))
    win.docks.results.preview_requested.connect(lambda _p: _hook_preview(win))
    for ctl in (ann, pr):
        ctl.message.connect(win.show_message)


def _draw_hooks(win: MainWindow) -> None:
    win.label_colors = {}

    def canvas_overlay(painter: QPainter, zoom: float) -> None:
        if win.labels_panel.show_box.isChecked() and win.annotations.photo is not None:
            paint_annotations(painter, win.annotations.annotations, win.label_colors, zoom)

    win.canvas.overlay = canvas_overlay
    win.docks.results.decorate = lambda path, pm: draw_on_thumbnail(
        pm, win.proposals.proposal(path), win.proposals.status(path), PROPOSAL_COLOR)


def _remember_colors(win: MainWindow, labels: list) -> None:
    win.label_colors = {lb.name: lb.color for lb in labels}
    win.canvas.viewport().update()


def _proposals_changed(win: MainWindow) -> None:
    pr = win.proposals
    n = sum(pr.proposal(p) is not None for p in pr.paths)
    win.propose_bar.state.setText(f"{n} of {len(pr.paths)} proposed" if pr.on else "")
    redecorate(win.docks.results, pr, PROPOSAL_COLOR)
    dialog = win.previews.dialog
    if dialog is not None and dialog.isVisible():
        dialog.redraw()


def _hook_preview(win: MainWindow) -> None:
    """Give the preview its proposal overlay and its Accept and Reject keys (once)."""
    dialog = win.previews.dialog
    if dialog is None or dialog.overlay is not None:
        return
    dialog.overlay = lambda path, pm: _preview_overlay(win, path, pm)

    def decide(accept: bool) -> None:
        if dialog.path and win.proposals.decide(dialog.path, accept):
            win.docks.results.step_from(dialog.path, 1)

    dialog.decided.connect(decide)


def _preview_overlay(win: MainWindow, path: str, pm: QPixmap) -> QPixmap:
    prop = win.proposals.proposal(path)
    if prop is None:
        return pm
    s = pm.width() / prop.photo.size[0]
    x0, y0, x1, y1 = (v * s for v in prop.box)
    out = pm.copy()
    p = QPainter(out)
    solid = win.proposals.status(path) == ACCEPTED
    p.setPen(QPen(QColor(PROPOSAL_COLOR), max(2.0, pm.width() / 300),
                  Qt.PenStyle.SolidLine if solid else Qt.PenStyle.DashLine))
    p.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
    p.drawText(QRectF(x0 + 4, y0 + 2, 400, 24), f"{prop.score:.2f}  " + ("accepted" if solid else
                                                                          "Enter: accept · Del: reject"))
    p.end()
    return out


# ---------------------------------------------------------------------------------------------- actions
def save_mark(win: MainWindow) -> None:
    """Edit › Save mark with a label (Ctrl+S): ask the label (completed from the known ones) and save."""
    st = win.canvas.state
    if st is None or st.is_empty:
        win.show_message("Mark the object first (a box, points or a painted mask); then save it with a label.")
        return
    label = labels_panel.ask_label(win, win.annotations.labels(), win.annotations.current_label)
    if label:
        win.annotations.save(st, label)


def use_as_prompt(win: MainWindow, annotation) -> None:
    """A saved annotation of the photo shown becomes the query's prompt (an edit like any other)."""
    st = win.canvas.state
    if st is None:
        return
    base, s = PromptState(st.image_size), annotation.shape
    if s.kind == "mask" and s.mask.shape == (st.image_size[1], st.image_size[0]):
        new = base.with_mask(s.mask)
    elif s.kind == "points":
        new = base
        for (x, y), pos in zip(s.points, s.positive):
            new = new.with_point(float(x), float(y), bool(pos))
    else:
        new = base.with_box(s.bbox())
    win.canvas.set_state(new)
    win.query.set_prompt(new)


def show_label_photos(win: MainWindow, label: str) -> None:
    """The photos holding ``label``, shown as the results (in path order)."""
    photos = win.annotations.store.photos_of(label)
    rows = [ResultRow(str(Path(f) / p), 1.0) for f, p in photos if (Path(f) / p).is_file()]
    win.docks.results.show_rows(rows)
    win.show_message(f"{len(rows)} photo{'s' if len(rows) != 1 else ''} labelled '{label}'.", "info")


def export_dialog(win: MainWindow) -> None:
    """File › Export annotations: a format, a destination (never a photo folder unless confirmed)."""
    name, ok = QInputDialog.getItem(win, "Export annotations", "Format:", list(FORMATS), 0, False)
    if not ok:
        return
    fmt = FORMATS[name]
    start = str(Path.home() / "annotations")
    if fmt == "coco":
        out, _ = QFileDialog.getSaveFileName(win, "Export COCO annotations", start + ".json", "JSON (*.json)")
    else:
        out = QFileDialog.getExistingDirectory(win, f"Export {fmt} annotations into", str(Path.home()))
    if out:
        export_to(win, fmt, out)


def export_to(win: MainWindow, fmt: str, out: str) -> dict | None:
    """Export every annotation to ``out``; a photo folder as destination is refused unless confirmed."""
    store = win.annotations.store
    try:
        try:
            report = export(store, fmt, out, allow_library=False)
        except ExportError as err:
            if "photo folder" not in str(err):
                raise
            if QMessageBox.question(win, "Export into a photo folder?", f"{out} is inside a photo folder. Write the "
                                    "export there anyway?") != QMessageBox.StandardButton.Yes:
                win.show_message(f"Nothing was exported: {out} is inside a photo folder.", "info")
                return None
            report = export(store, fmt, out, allow_library=True)
    except PHSError as err:
        win.show_message(str(err), "error")
        return None
    win.show_message(f"Exported {report['annotations']} annotations of {report['images']} photos to {report['out']}.")
    return report


def import_dialog(win: MainWindow) -> None:
    """File › Import annotations: a COCO or labelme JSON file; its photos are found in the current folder."""
    path, _ = QFileDialog.getOpenFileName(win, "Import annotations", str(Path.home()), "JSON (*.json)")
    if path:
        import_from(win, path)


def import_from(win: MainWindow, path: str) -> int:
    """Import ``path`` (all or nothing, one undoable edit); a damaged file is one sentence, nothing changed."""
    folder = win.prefs.current_folder or str(Path(path).parent)
    ann = win.annotations
    try:
        added = import_file(ann.store, folder, path)
    except PHSError as err:
        win.show_message(f"{err} Nothing was imported.", "error")
        return 0
    ann.record("add", added)
    win.show_message(f"Imported {len(added)} annotations from {Path(path).name}.")
    return len(added)

