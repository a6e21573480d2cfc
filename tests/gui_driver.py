"""A page object for the real window: what a person does (open a photo, drag a box, click a head, press a
key) and what they read (the heads label, the result tiles, the status bar, the banner, the preview).

GUI tests act and read through these helpers, so that a change in how the window is built inside changes
this module only. Every action waits through the Qt event loop (``qtbot.waitUntil``) until the window shows
the answer to it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QFileDialog

from core.method.engine import load_engine
from core.synthetic.scenes import generate_scene
from phs_gui.main_window import MainWindow

WAIT_MS = 60000


def demo_loader(name: str, device: str):
    """The shipped demo model, whatever model is asked for."""
    return load_engine("demo", device="cpu")


def settle(qtbot, w: MainWindow) -> None:
    """Wait until the window shows the answer to the latest request."""
    qtbot.waitUntil(lambda: w.settled, timeout=WAIT_MS)


def drag_box(qtbot, w: MainWindow, box) -> None:
    """Press, move and release the left button on the photo from one corner of ``box`` (XYXY image pixels)
    to the other, then wait for the answer."""
    vp = w.canvas.viewport()
    a = w.canvas.mapFromScene(QPointF(box[0], box[1]))
    b = w.canvas.mapFromScene(QPointF(box[2], box[3]))
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(vp, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    qtbot.mouseMove(vp, b)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=b)
    settle(qtbot, w)


def shown_window(qtbot, n: int = 12, size: tuple[int, int] = (1280, 720), **kwargs) -> MainWindow:
    """A launch of the window (demo model, a demo gallery of ``n`` scenes), shown at ``size``, not started."""
    w = MainWindow(engine_loader=demo_loader, demo_count=n, **kwargs)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    return w


def first_launch(qtbot, n: int = 12, size: tuple[int, int] = (1280, 720), marked: bool = False,
                 **kwargs) -> MainWindow:
    """A fresh first launch: demo model, demo gallery of ``n`` scenes indexed, its query photo answered.

    The first query opens with a box around one of its objects; unless ``marked``, the box is then removed
    (Delete, an undoable edit) so that a test starts from an unmarked photo."""
    w = shown_window(qtbot, n, size, **kwargs)
    w.start()
    qtbot.waitUntil(lambda: w.session is not None and not w.indexing and w.photo_path is not None
                    and w.session.indexed_count >= n and w.docks.results.count() >= n - 1 and w.settled,
                    timeout=WAIT_MS)  # >= : folders indexed beforehand (from the command line) are searched too
    if not marked and w.canvas.state is not None and not w.canvas.state.is_empty:
        qtbot.keyClick(w.canvas, Qt.Key.Key_Delete)
        qtbot.waitUntil(lambda: w.canvas.state.is_empty and w.settled and w.outcome.selection is None,
                        timeout=WAIT_MS)
    return w


def heads_shown(w: MainWindow) -> tuple[str, list]:
    """The heads panel's label and its tiles' (selected, pixmap key) as drawn."""
    return w.docks.heads.summary.text(), [(t.selected, t.pixmap.cacheKey()) for t in w.docks.heads.tiles]


def tile_images(w: MainWindow) -> list[bytes]:
    """The pixels of every head tile."""
    return [bytes(t.pixmap.toImage().constBits()) for t in w.docks.heads.tiles]


def other_scene(tmp_path: Path) -> Path:
    """Another photo (a generated scene, 320x240) outside the gallery."""
    p = tmp_path / "another.jpg"
    Image.fromarray(generate_scene(77, 3, (320, 240), min_objects=2).image).save(p, quality=92)
    return p


class WindowDriver:
    """Drives one window as a person would and reads what it shows."""

    ctrl = Qt.KeyboardModifier.ControlModifier

    def __init__(self, qtbot, window: MainWindow) -> None:
        self.qtbot = qtbot
        self.w = window

    def settle(self) -> None:
        """Wait for the answer to the latest request."""
        settle(self.qtbot, self.w)

    def open_with_ctrl_o(self, path: Path | str, monkeypatch) -> None:
        """File › Open (Ctrl+O), choosing ``path`` in the dialog, and wait for its heads and results."""
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
        self.qtbot.keyClick(self.w, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
        self.qtbot.waitUntil(lambda: self.w.photo_path == str(path) and self.w.settled, timeout=WAIT_MS)

    def draw_box(self, box) -> None:
        """Drag a box (XYXY image pixels) on the photo."""
        drag_box(self.qtbot, self.w, box)

    def image_size(self) -> tuple[int, int]:
        """``(W, H)`` of the photo shown."""
        return self.w.canvas.state.image_size

    def click_head(self, i: int) -> None:
        """Click head tile ``i`` and wait for the answer."""
        self.qtbot.mouseClick(self.w.docks.heads.tiles[i], Qt.MouseButton.LeftButton)
        self.settle()

    def key(self, key: Qt.Key, mods: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
        """Press a key on the photo (where shortcuts such as Ctrl+Z apply) and wait."""
        self.qtbot.keyClick(self.w.canvas, key, mods)
        self.settle()

    def heads_label(self) -> str:
        """The sentence over the head tiles."""
        return self.w.docks.heads.summary.text()

    def kept_heads(self) -> list[int]:
        """The heads drawn as kept."""
        return [t.index for t in self.w.docks.heads.tiles if t.selected]

    def forced(self) -> dict[int, str]:
        """Heads drawn as forced: ``{index: "on" | "off"}``."""
        return {t.index: t.forced for t in self.w.docks.heads.tiles if t.forced}

    def box(self):
        """The box drawn on the photo (XYXY image pixels) or ``None``."""
        st = self.w.canvas.state
        return None if st is None else st.box

    def result_paths(self) -> list[str]:
        """The result tiles' photos, best first."""
        return self.w.docks.results.paths()

    def status(self, name: str) -> str:
        """A status bar label's text: ``model``, ``device``, ``indexed``, ``timing``, ``zoom``."""
        return getattr(self.w.status, name).text()

    def banner(self) -> str:
        """The sentence above the photo (``""`` when hidden)."""
        return self.w.banner.text

    # ------------------------------------------------------------------------------------------- library
    def _folder_rect(self, folder: Path | str):
        lp = self.w.docks.library
        lw = lp.list
        item = lw.item(lp.folders.index(str(folder)))
        lw.scrollToItem(item)
        return lw, lw.visualItemRect(item)

    def choose_folder(self, folder: Path | str) -> None:
        """Click a folder's name in the Library list (it becomes the one Index and the failed files are about)
        and wait until the window has answered."""
        lw, r = self._folder_rect(folder)
        self.qtbot.mouseClick(lw.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(r.right() - 8, r.center().y()))
        self.qtbot.waitUntil(lambda: self.w.prefs.current_folder == str(folder) and not self.w.library.busy
                             and self.w.settled, timeout=WAIT_MS)  # fmt: skip

    def set_searched(self, folder: Path | str, on: bool) -> None:
        """Click a folder's check box in the Library list if it is not ``on`` already; wait for the answer."""
        lp = self.w.docks.library
        if (str(folder) in lp.checked_folders) != on:
            lw, r = self._folder_rect(folder)
            self.qtbot.mouseClick(lw.viewport(), Qt.MouseButton.LeftButton,
                                  pos=QPoint(r.left() + r.height() // 2, r.center().y()))
        self.qtbot.waitUntil(lambda: (str(folder) in lp.checked_folders) == on and not self.w.library.busy
                             and self.w.settled, timeout=WAIT_MS)  # fmt: skip

    def searched_line(self) -> str:
        """The status bar's "N photos in K folders" (or "No folder is searched")."""
        return self.w.status.indexed.text()

    # ------------------------------------------------------------------------------------------- filters
    def set_filter_field(self, name: str, text: str) -> None:
        """Type ``text`` into the filter bar's ``after``, ``before``, ``under`` or ``types`` field (replacing what
        was there), press Enter and wait for the answer."""
        bar = self.w.docks.results_panel.filter_bar
        edit = bar.under.lineEdit() if name == "under" else getattr(bar, name)
        edit.selectAll()
        self.qtbot.keyClick(edit, Qt.Key.Key_Delete)
        self.qtbot.keyClicks(edit, text)
        self.qtbot.keyClick(edit, Qt.Key.Key_Return)
        self.settle()

    def clear_filter(self) -> None:
        """Press the filter bar's Clear and wait for the answer."""
        self.qtbot.mouseClick(self.w.docks.results_panel.filter_bar.clear_button, Qt.MouseButton.LeftButton)
        self.settle()

    def filter_shown(self) -> dict[str, str]:
        """The filter bar's fields as shown."""
        return self.w.docks.results_panel.filter_bar.values()

    def filter_count(self) -> str:
        """The filter bar's "N photos pass the filter" (``""`` without a filter)."""
        return self.w.docks.results_panel.filter_bar.count.text()

    # ---------------------------------------------------------------------------------------- annotating
    def save_mark(self, label: str, monkeypatch) -> None:
        """Edit › Save mark with a label (Ctrl+S), typing ``label`` in the dialog; wait until it is listed."""
        from phs_gui import labels_panel

        before = self.w.labels_panel.on_photo.count()
        monkeypatch.setattr(labels_panel, "ask_label", lambda *a, **k: label)
        self.qtbot.keyClick(self.w.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        self.qtbot.waitUntil(lambda: self.w.labels_panel.on_photo.count() == before + 1, timeout=WAIT_MS)

    def annotations_listed(self) -> list[str]:
        """The Labels panel's lines for the photo shown."""
        lw = self.w.labels_panel.on_photo
        return [lw.item(i).text() for i in range(lw.count())]

    def choose_label(self, name: str) -> None:
        """Click a label in the Labels panel."""
        lw = self.w.labels_panel.labels
        row = next(i for i in range(lw.count()) if lw.item(i).text().startswith(f"{name}  ("))
        self.qtbot.mouseClick(lw.viewport(), Qt.MouseButton.LeftButton, pos=lw.visualItemRect(lw.item(row)).center())

    def canvas_pixels_of(self, color: str) -> int:
        """How many pixels of the photo view are drawn in ``color`` (#rrggbb)."""
        import numpy as np
        from PySide6.QtGui import QColor, QImage

        img = self.w.canvas.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
        rgb = arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).astype(int)
        c = QColor(color)
        return int((np.abs(rgb - np.array([c.red(), c.green(), c.blue()])).sum(axis=2) < 30).sum())

    def propose(self) -> None:
        """Tick Propose over the results and wait until every result shown has its proposal."""
        self.qtbot.mouseClick(self.w.propose_bar.toggle, Qt.MouseButton.LeftButton)
        self.qtbot.waitUntil(lambda: self.w.proposals.done and self.w.settled, timeout=WAIT_MS)

    def preview_result(self, row: int) -> None:
        """Enter on result ``row``: the preview opens on it."""
        grid = self.w.docks.results
        grid.setFocus()
        grid.setCurrentRow(row)
        self.qtbot.keyClick(grid, Qt.Key.Key_Return)
        self.qtbot.waitUntil(lambda: self.w.previews.dialog is not None and self.w.previews.dialog.isVisible()
                             and self.w.previews.dialog.path == grid.paths()[row], timeout=WAIT_MS)

    def accept_in_preview(self) -> str:
        """A in the preview: accept the proposal shown; wait for the next result. Returns the accepted photo."""
        d = self.w.previews.dialog
        path = d.path
        self.qtbot.keyClick(d, Qt.Key.Key_A)
        self.qtbot.waitUntil(lambda: d.path != path, timeout=WAIT_MS)
        return path

    def close_preview(self) -> None:
        """Close the preview; the window is the active one again (its shortcuts apply)."""
        self.w.previews.dialog.close()
        self.w.activateWindow()
        self.qtbot.waitUntil(self.w.isActiveWindow, timeout=5000)

def scene_boxes(photo: str) -> list[tuple[str, list[float]]]:
    """``(category, XYXY box)`` of each object of a demo scene, largest first, from its COCO annotations."""
    import json

    coco = json.loads((Path(photo).parent / "annotations.json").read_text("utf-8"))
    image = next(im for im in coco["images"] if im["file_name"] == Path(photo).name)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    objs = sorted((a for a in coco["annotations"] if a["image_id"] == image["id"]),
                  key=lambda a: -a["bbox"][2] * a["bbox"][3])
    return [(names[a["category_id"]], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                       a["bbox"][1] + a["bbox"][3]]) for a in objs]


class ObjectsDriver(WindowDriver):
    """The Objects list, the objects' marks and the per-object bars of the result tiles."""

    def objects(self) -> list[str]:
        """The lines of the Objects list."""
        lst = self.w.objects_panel.list
        return [lst.item(i).text() for i in range(lst.count())]

    def chosen_object(self) -> int:
        """The row chosen in the Objects list."""
        return self.w.objects_panel.list.currentRow()

    def new_object(self) -> None:
        """Press N on the photo: the next object starts."""
        self.key(Qt.Key.Key_N)

    def choose_object(self, k: int) -> None:
        """Click row ``k`` of the Objects list and wait for the answer."""
        lst = self.w.objects_panel.list
        self.qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=lst.visualItemRect(lst.item(k)).center())
        self.settle()

    def click(self, button) -> None:
        """Click a button of the Objects panel and wait."""
        self.qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        self.settle()

    def marks_drawn(self) -> list[int]:
        """The numbers of the other objects drawn on the photo (the edited one is the canvas's own)."""
        return list(self.w.object_marks.drawn)

    def tile_bar_colours(self, rank: int) -> list[tuple[int, int, int]]:
        """The colour at the left end of each per-object bar of result tile ``rank`` (0 = best), as painted."""
        from phs_gui.object_bars import bar_rects

        grid = self.w.docks.results
        item = grid.item(rank)
        grid.scrollToItem(item)
        n = len(grid.visible_rows()[rank].objects)
        img = grid.viewport().grab().toImage()
        dpr = img.devicePixelRatio()
        out = []
        for r in bar_rects(grid.visualItemRect(item), n):
            c = img.pixelColor(int((r.left() + 1) * dpr), int(r.center().y() * dpr))
            out.append((c.red(), c.green(), c.blue()))
        return out
