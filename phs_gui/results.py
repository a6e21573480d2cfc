"""The results grid: the top-k photos with rank and score, thumbnails loaded in the background and cached.

Signals: ``use_as_query(path)`` from the context menu; ``preview_requested(path)`` on Enter or double-click
(the window's built-in preview); ``message(text)`` for one-sentence problems. Identical files are shown once
with "+N copies"; the query photo itself is marked (or hidden). The context menu opens the photo in the
system viewer, reveals it, copies the selected paths and exports the list (text or CSV).
"""

from __future__ import annotations

import csv
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QProcess, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from core.errors import ImageLoadError
from core.imageio import load_image
from core.search.copies import ResultRow, group_hits  # noqa: F401 (the app's rows)
from phs_gui.render import format_score, to_qimage
from phs_gui.workers import Worker, WorkerPool

THUMB_PX = 132  # default thumbnail side; the slider goes from THUMB_MIN to THUMB_MAX
THUMB_MIN, THUMB_MAX = 64, 256
CAPTION_PX = 38  # two caption lines under every thumbnail
PATH_ROLE = Qt.ItemDataRole.UserRole + 1


def photo_facts(path: str) -> str:
    """Pixel size, file size and date taken (EXIF, else the file's date) of a photo, one line."""
    parts = []
    try:
        from PIL import Image

        with Image.open(path) as im:
            parts.append(f"{im.width}x{im.height} px")
            exif = im.getexif()
            taken = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
    except Exception:  # noqa: BLE001 - facts are best effort
        taken = None
    try:
        st = Path(path).stat()
        parts.append(f"{st.st_size / 1e6:.1f} MB" if st.st_size >= 1e5 else f"{st.st_size / 1e3:.0f} kB")
        if not taken:
            taken = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime)) + " (file date)"
    except OSError:
        pass
    if taken:
        taken = str(taken).strip()
        if len(taken) >= 10 and taken[4] == ":" and taken[7] == ":":
            taken = taken[:4] + "-" + taken[5:7] + "-" + taken[8:]
        parts.append(f"taken {taken}")
    return " · ".join(parts)


def load_thumbnail(path: str, *, report: object = None, cancel: object = None) -> tuple[str, np.ndarray | None, str]:
    """Decode a photo small (``(h, w, 3)`` uint8, longer side :data:`THUMB_MAX`), or ``None`` if it fails;
    and its facts for the tooltip."""
    facts = photo_facts(path)
    try:
        img = load_image(path, draft_size=THUMB_MAX)
    except ImageLoadError:
        return path, None, facts
    img.thumbnail((THUMB_MAX, THUMB_MAX))
    return path, np.asarray(img), facts


def export_list(rows: list[ResultRow], path: str | Path) -> None:
    """Write results to ``path``: CSV (rank, score, path, copies, query) for ``.csv``, else one path a line."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["rank", "score", "path", "copies", "is_query"])
            for i, r in enumerate(rows, 1):
                w.writerow([i, f"{r.score:.6f}", r.path, ";".join(r.copies), int(r.is_query)])
    else:
        path.write_text("".join(f"{r.path}\n" for r in rows), encoding="utf-8")


class ThumbnailCache:
    """An LRU of decoded thumbnails keyed by path and modification time."""

    def __init__(self, capacity: int = 512) -> None:
        self._items: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self.capacity = capacity

    @staticmethod
    def key(path: str) -> tuple[str, int]:
        """``(path, mtime_ns)`` (0 when the file cannot be read)."""
        try:
            return path, Path(path).stat().st_mtime_ns
        except OSError:
            return path, 0

    def get(self, path: str) -> QPixmap | None:
        """The cached thumbnail, or ``None``."""
        k = self.key(path)
        pm = self._items.get(k)
        if pm is not None:
            self._items.move_to_end(k)
        return pm

    def put(self, path: str, pm: QPixmap) -> None:
        """Remember a thumbnail."""
        self._items[self.key(path)] = pm
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _placeholder() -> QPixmap:
    pm = QPixmap(THUMB_MAX, THUMB_MAX)
    pm.fill(QColor(60, 62, 66))
    return pm


class ResultsGrid(QListWidget):
    """Ranked photos as an icon grid."""

    use_as_query = Signal(str)
    preview_requested = Signal(str)
    message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.itemActivated.connect(lambda it: self.preview_requested.emit(it.data(PATH_ROLE)))
        self.itemDoubleClicked.connect(lambda it: self.preview_requested.emit(it.data(PATH_ROLE)))
        self.cache = ThumbnailCache()
        self.facts: dict[str, str] = {}
        self._pool = WorkerPool(max_threads=2)
        self._pending: set[str] = set()
        self._empty_text = "Results appear here"
        self._placeholder = _placeholder()
        self.rows: list[ResultRow] = []
        self.hide_query = False
        self.min_score: float | None = None
        self.set_thumb_size(THUMB_PX)

    @property
    def thumb_size(self) -> int:
        """The thumbnail side in pixels."""
        return self.iconSize().width()

    def set_thumb_size(self, px: int) -> None:
        """Show thumbnails ``px`` pixels wide, captions (two lines) under them."""
        px = int(min(max(px, THUMB_MIN), THUMB_MAX))
        self.setIconSize(QSize(px, px))
        self.setGridSize(QSize(px + 24, px + CAPTION_PX + 8))
        self.setMinimumHeight(self.min_height())  # a whole row of thumbnails always shows
        self.relayout()

    def min_height(self) -> int:
        """Room for one row of thumbnails with captions and a scroll bar."""
        return self.gridSize().height() + self.horizontalScrollBar().sizeHint().height() + 8

    def relayout(self) -> None:
        """Lay the grid out again (after the dock was floated or re-docked, or the size changed)."""
        self.setGridSize(self.gridSize())
        self.doItemsLayout()
        self.viewport().update()

    def set_empty_text(self, text: str) -> None:
        """What the empty grid says."""
        self._empty_text = text
        self.viewport().update()

    def show_hits(self, hits: list) -> None:
        """Show ranked hits (anything with ``path`` and ``score``), best first, one row each."""
        self.show_rows([ResultRow(str(h.path), float(h.score)) for h in hits])

    def show_rows(self, rows: list[ResultRow]) -> None:
        """Show grouped results (see :func:`group_hits`), filtered by the minimum score and the query setting."""
        self.rows = list(rows)
        self._fill()

    def set_filters(self, hide_query: bool | None = None, min_score: float | None | bool = False) -> None:
        """Hide the query photo or not; show only scores at least ``min_score`` (``None``: no minimum)."""
        if hide_query is not None:
            self.hide_query = hide_query
        if min_score is not False:
            self.min_score = min_score  # type: ignore[assignment]
        self._fill()

    def visible_rows(self) -> list[ResultRow]:
        """The rows shown after the filters, best first."""
        return [r for r in self.rows
                if not (self.hide_query and r.is_query)
                and (self.min_score is None or r.score >= self.min_score)]

    def _fill(self) -> None:
        self.setUpdatesEnabled(False)
        try:
            self.clear()
            for rank, row in enumerate(self.visible_rows(), 1):
                path = row.path
                if row.is_query:
                    second = "query photo"
                elif row.copies:
                    second = f"+{len(row.copies)} {'copy' if len(row.copies) == 1 else 'copies'}"
                else:
                    second = Path(path).name
                item = QListWidgetItem(f"#{rank}  {format_score(row.score)}\n{second}")
                item.setData(PATH_ROLE, path)
                item.setToolTip(self._tooltip(row))
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
                if row.is_query:
                    item.setForeground(QColor(240, 190, 40))
                pm = self.cache.get(path)
                item.setIcon(QIcon(pm if pm is not None else self._placeholder))
                self.addItem(item)
                if pm is None:
                    self._request(path)
        finally:
            self.setUpdatesEnabled(True)

    def _tooltip(self, row: ResultRow) -> str:
        lines = [row.path]
        if row.path in self.facts:
            lines.append(self.facts[row.path])
        if row.is_query:
            lines.append("This is the query photo itself.")
        if row.copies:
            lines.append(f"Identical copies ({len(row.copies)}): " + ", ".join(row.copies))
        return "\n".join(lines)

    def selected_paths(self) -> list[str]:
        """The selected photos in rank order (all shown ones when none is selected)."""
        items = [self.item(i) for i in range(self.count())]
        chosen = [it for it in items if it.isSelected()] or items
        return [it.data(PATH_ROLE) for it in chosen]

    def paths(self) -> list[str]:
        """The photos shown, best first."""
        return [self.item(i).data(PATH_ROLE) for i in range(self.count())]

    def _request(self, path: str) -> None:
        if path in self._pending:
            return
        self._pending.add(path)
        w = Worker(load_thumbnail, path, doing="loading a thumbnail")
        w.signals.result.connect(self._on_thumbnail)
        self._pool.start(w)

    def _on_thumbnail(self, out: tuple[str, np.ndarray | None, str]) -> None:
        path, arr, facts = out
        self._pending.discard(path)
        self.facts[path] = facts
        if arr is None:
            pm = self._placeholder.copy()
            p = QPainter(pm)
            p.setPen(QColor(230, 90, 90))
            p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, "cannot read")
            p.end()
        else:
            pm = QPixmap.fromImage(to_qimage(arr))
        self.cache.put(path, pm)
        rows = {r.path: r for r in self.rows}
        for i in range(self.count()):
            it = self.item(i)
            if it.data(PATH_ROLE) == path:
                it.setIcon(QIcon(pm))
                if path in rows:
                    it.setToolTip(self._tooltip(rows[path]))

    # ------------------------------------------------------------------------------------- actions
    def open_photo(self, path: str) -> None:
        """Open a photo in the system's viewer."""
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.message.emit(f"Could not open {path} in the system viewer.")

    def reveal(self, path: str) -> None:
        """Show the photo in the file manager (selected where the platform allows it)."""
        if sys.platform == "darwin":
            ok = QProcess.startDetached("open", ["-R", path])[0]
        elif sys.platform.startswith("win"):
            ok = QProcess.startDetached("explorer", [f"/select,{Path(path)}"])[0]
        else:
            ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))
        if not ok:
            self.message.emit(f"Could not open the folder of {path}.")

    @staticmethod
    def copy_path(path: str) -> None:
        """Put the path on the clipboard."""
        QGuiApplication.clipboard().setText(path)

    def copy_selected_paths(self) -> None:
        """Put the selected photos' paths on the clipboard, one a line."""
        QGuiApplication.clipboard().setText("\n".join(self.selected_paths()))

    def export_dialog(self) -> None:
        """Ask for a file and write the selected results (all when none is selected) as text or CSV."""
        path, _ = QFileDialog.getSaveFileName(self, "Export the result list", str(Path.home() / "results.csv"),
                                              "CSV (*.csv);;Text, one path a line (*.txt)")
        if not path:
            return
        chosen = set(self.selected_paths())
        try:
            export_list([r for r in self.visible_rows() if r.path in chosen], path)
        except OSError as err:
            self.message.emit(f"Could not write {path}: {err.strerror or err}.")

    def _context_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        path = item.data(PATH_ROLE)
        menu = self.build_menu(path)
        menu.exec(self.viewport().mapToGlobal(pos))

    def build_menu(self, path: str) -> QMenu:
        """The context menu of one result."""
        menu = QMenu(self)
        menu.addAction("Preview (Enter)", lambda: self.preview_requested.emit(path))
        menu.addAction("Open in system viewer", lambda: self.open_photo(path))
        menu.addAction("Reveal in file manager", lambda: self.reveal(path))
        menu.addAction("Copy path", lambda: self.copy_path(path))
        n = len(self.selectedItems())
        if n > 1:
            menu.addAction(f"Copy {n} paths", self.copy_selected_paths)
        menu.addAction("Export list…", self.export_dialog)
        menu.addSeparator()
        menu.addAction("Use as the new query", lambda: self.use_as_query.emit(path))
        return menu

    def paintEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        super().paintEvent(event)
        if self.count() == 0:
            p = QPainter(self.viewport())
            p.setPen(self.palette().placeholderText().color())
            p.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self._empty_text)
            p.end()

    def event(self, e) -> bool:  # noqa: ANN001 - Qt API
        # Let the window's [ and ] (brush size) through instead of typing them into the keyboard search.
        if e.type() == QEvent.Type.ShortcutOverride and e.key() in (Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight):
            e.ignore()
            return False
        return super().event(e)

    def resizeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        super().resizeEvent(event)
        self.doItemsLayout()

    def shutdown(self) -> None:
        """Stop loading thumbnails."""
        self._pool.shutdown(300)


class ResultsPanel(QWidget):
    """The grid with its bar: thumbnail size, minimum score, show or hide the query photo."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = ResultsGrid()
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(THUMB_MIN, THUMB_MAX)
        self.size_slider.setValue(THUMB_PX)
        self.size_slider.setMaximumWidth(140)
        self.size_slider.setToolTip("Thumbnail size")
        self.size_slider.valueChanged.connect(self.grid.set_thumb_size)
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(-1.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setDecimals(2)
        self.min_score.setSpecialValueText("any")
        self.min_score.setValue(-1.0)
        self.min_score.setToolTip("Show only results with at least this score")
        self.min_score.valueChanged.connect(
            lambda v: self.grid.set_filters(min_score=None if v <= -1.0 else float(v)))
        self.hide_query = QCheckBox("Hide the query photo")
        self.hide_query.setToolTip("Leave the query photo itself (and its copies) out of the results")
        self.hide_query.toggled.connect(lambda on: self.grid.set_filters(hide_query=on))
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        bar.addWidget(QLabel("Size"))
        bar.addWidget(self.size_slider)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Min. score"))
        bar.addWidget(self.min_score)
        bar.addSpacing(12)
        bar.addWidget(self.hide_query)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(bar)
        lay.addWidget(self.grid, 1)
