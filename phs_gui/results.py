"""The results grid: the top-k photos with rank and score, thumbnails loaded in the background and cached.

Signals: ``use_as_query(path)`` from the context menu; ``message(text)`` for one-sentence problems. Double-
click opens a photo in the system viewer; the context menu also reveals it in the file manager and copies
its path.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QProcess, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QMenu, QWidget

from core.errors import ImageLoadError
from core.imageio import load_image
from phs_gui.render import to_qimage
from phs_gui.workers import Worker, WorkerPool

THUMB_PX = 132
PATH_ROLE = Qt.ItemDataRole.UserRole + 1


def load_thumbnail(path: str, *, report: object = None, cancel: object = None) -> tuple[str, np.ndarray | None]:
    """Decode a photo small (``(h, w, 3)`` uint8, longer side :data:`THUMB_PX`), or ``None`` if it fails."""
    try:
        img = load_image(path, draft_size=THUMB_PX)
    except ImageLoadError:
        return path, None
    img.thumbnail((THUMB_PX, THUMB_PX))
    return path, np.asarray(img)


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
    pm = QPixmap(THUMB_PX, THUMB_PX)
    pm.fill(QColor(60, 62, 66))
    return pm


class ResultsGrid(QListWidget):
    """Ranked photos as an icon grid."""

    use_as_query = Signal(str)
    message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.setGridSize(QSize(THUMB_PX + 16, THUMB_PX + 34))
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.itemDoubleClicked.connect(lambda it: self.open_photo(it.data(PATH_ROLE)))
        self.cache = ThumbnailCache()
        self._pool = WorkerPool(max_threads=2)
        self._pending: set[str] = set()
        self._empty_text = "Results appear here"
        self._placeholder = _placeholder()

    def set_empty_text(self, text: str) -> None:
        """What the empty grid says."""
        self._empty_text = text
        self.viewport().update()

    def show_hits(self, hits: list) -> None:
        """Show ranked hits (anything with ``path``, ``rel`` and ``score``), best first."""
        self.setUpdatesEnabled(False)
        try:
            self.clear()
            for rank, hit in enumerate(hits, 1):
                path = str(hit.path)
                item = QListWidgetItem(f"#{rank}  {hit.score:.3f}")
                item.setData(PATH_ROLE, path)
                item.setToolTip(path)
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
                pm = self.cache.get(path)
                item.setIcon(QIcon(pm if pm is not None else self._placeholder))
                self.addItem(item)
                if pm is None:
                    self._request(path)
        finally:
            self.setUpdatesEnabled(True)

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

    def _on_thumbnail(self, out: tuple[str, np.ndarray | None]) -> None:
        path, arr = out
        self._pending.discard(path)
        if arr is None:
            pm = self._placeholder.copy()
            p = QPainter(pm)
            p.setPen(QColor(230, 90, 90))
            p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, "cannot read")
            p.end()
        else:
            pm = QPixmap.fromImage(to_qimage(arr))
        self.cache.put(path, pm)
        for i in range(self.count()):
            it = self.item(i)
            if it.data(PATH_ROLE) == path:
                it.setIcon(QIcon(pm))

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
        menu.addAction("Open in viewer", lambda: self.open_photo(path))
        menu.addAction("Reveal in file manager", lambda: self.reveal(path))
        menu.addAction("Copy path", lambda: self.copy_path(path))
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

    def shutdown(self) -> None:
        """Stop loading thumbnails."""
        self._pool.shutdown(300)
