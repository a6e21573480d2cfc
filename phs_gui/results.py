"""The results grid: the top-k photos with rank and score, thumbnails loaded in the background and cached.

Signals: ``use_as_query(path)`` from the context menu; ``preview_requested(path)`` on Enter or double-click
(the window's built-in preview); ``message(text)`` for one-sentence problems. Identical files are shown once
with "+N copies"; the query photo itself is marked (or hidden). The context menu opens the photo in the
system viewer, reveals it, copies the selected paths and exports the list (text or CSV).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QProcess, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QIcon, QPainter
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
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from phs_gui.filter_bar import FilterBar
from phs_gui.object_bars import objects_tooltip
from phs_gui.render import format_score
from phs_gui.result_rows import (  # noqa: F401 - re-exported for the window's jobs
    THUMB_MAX,
    THUMB_MIN,
    ResultRow,
    ThumbnailCache,
    _placeholder,
    export_list,
    file_url_bytes,
    group_hits,
    load_thumbnail,
    photo_facts,
    shown,
    square_thumbnail,
    tile_name,
)
from phs_gui.workers import Worker, WorkerPool

THUMB_PX = 132  # default thumbnail side; the slider goes from THUMB_MIN to THUMB_MAX
CAPTION_PX = 38  # two caption lines under every thumbnail
PATH_ROLE = Qt.ItemDataRole.UserRole + 1


class ResultsGrid(QListWidget):
    """Ranked photos as an icon grid."""

    use_as_query = Signal(object)  # a path (str, possibly not UTF-8: never through Qt's text)
    preview_requested = Signal(object)
    message = Signal(str)
    notice = Signal(str)
    min_height_changed = Signal(int, int)

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
        self.itemActivated.connect(lambda it: self.preview_requested.emit(self.path_of(it)))
        self.itemDoubleClicked.connect(lambda it: self.preview_requested.emit(self.path_of(it)))
        self.cache = ThumbnailCache()
        self.facts: dict[str, str] = {}
        self.roots: list[str] = []  # the folders searched (a tile names its folder when there are several)
        self._pool = WorkerPool(max_threads=2)
        self._pending: set[str] = set()
        self._empty_text = "Results appear here"
        self._placeholder = _placeholder()
        self.rows: list[ResultRow] = []
        self._shown: list[ResultRow] = []  # the rows of the tiles, in order
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
        caption = 2 * self.fontMetrics().lineSpacing() + 10  # two whole lines, descenders included
        old = self.minimumHeight()
        self.setGridSize(QSize(px + 24, px + max(caption, CAPTION_PX) + 8))
        self.setMinimumHeight(self.min_height())  # a whole row of thumbnails always shows
        if old != self.minimumHeight():
            self.min_height_changed.emit(old, self.minimumHeight())
        self.relayout()

    def min_height(self) -> int:
        """Room for one row of thumbnails with captions and a scroll bar."""
        return self.gridSize().height() + self.horizontalScrollBar().sizeHint().height() + 8

    def relayout(self) -> None:
        """Lay the grid out again (after the dock was floated or re-docked, or the size changed)."""
        self.setGridSize(self.gridSize())
        self.doItemsLayout()
        self.viewport().update()

    def show_library_size(self, n: int, folders: list) -> None:
        """What the empty grid says, from the library: no folder searched, or empty indexes."""
        self.roots = [str(f) for f in folders]
        self.set_empty_text("No folder is searched: add a photo folder or check one under Library (left)."
                            if not folders else ("The index is empty." if n == 0 else "No results."))

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
        self.scrollToTop()  # a new answer starts at its best result

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
            self._shown = self.visible_rows()
            for rank, row in enumerate(self._shown, 1):
                path = row.path
                if row.is_query:
                    second = "query photo"
                elif row.copies:
                    second = f"+{len(row.copies)} {'copy' if len(row.copies) == 1 else 'copies'}"
                else:
                    second = self.fontMetrics().elidedText(tile_name(path, self.roots), Qt.TextElideMode.ElideMiddle,
                                                           self.iconSize().width())  # one line, never wrapped
                item = QListWidgetItem(f"#{rank}  {format_score(row.score)}\n{second}")
                item.setData(PATH_ROLE, rank - 1)  # the real path stays in Python: Qt's text may not hold it
                item.setToolTip(self._tooltip(row))
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
                if row.is_query:
                    item.setForeground(QColor(240, 190, 40))
                pm = self.cache.get(path)
                item.setIcon(QIcon(self._placeholder if pm is None else self.decorate(path, pm)))
                self.addItem(item)
                if pm is None:
                    self._request(path)
        finally:
            self.setUpdatesEnabled(True)

    def _tooltip(self, row: ResultRow) -> str:
        lines = [shown(row.path)]
        if row.path in self.facts:
            lines.append(self.facts[row.path])
        if row.is_query:
            lines.append("This is the query photo itself.")
        if objects_tooltip(row):
            lines.append(objects_tooltip(row))
        if row.copies:
            lines.append(f"Identical copies ({len(row.copies)}): " + ", ".join(shown(c) for c in row.copies))
        return "\n".join(lines)

    def selected_paths(self) -> list[str]:
        """The selected photos in rank order (all shown ones when none is selected)."""
        items = [self.item(i) for i in range(self.count())]
        chosen = [it for it in items if it.isSelected()] or items
        return [self.path_of(it) for it in chosen]

    def paths(self) -> list[str]:
        """The photos shown, best first."""
        return [self.path_of(self.item(i)) for i in range(self.count())]

    def path_of(self, item: QListWidgetItem) -> str:
        """The real path of a result tile (not Qt's text of it)."""
        return self._shown[int(item.data(PATH_ROLE))].path

    def caption(self, path: str) -> str:
        """The preview's caption of a result: its path, score and photo facts."""
        row = next((r for r in self.rows if r.path == path), None)
        score = "" if row is None else f"score {row.score:.3f}"
        return " · ".join(x for x in (shown(path), score, self.facts.get(path, "")) if x)

    def step_from(self, path: str, step: int) -> None:
        """Select the result ``step`` places from ``path`` (clamped) and ask for its preview."""
        paths = self.paths()
        if not paths:
            return
        i = paths.index(path) if path in paths else -1
        j = min(max(i + step, 0), len(paths) - 1)
        self.setCurrentRow(j)
        self.preview_requested.emit(paths[j])

    def _request(self, path: str) -> None:
        if path in self._pending:
            return
        self._pending.add(path)
        w = Worker(load_thumbnail, path, doing="loading a thumbnail")
        w.signals.result.connect(self._on_thumbnail)
        self._pool.start(w)

    decorate = staticmethod(lambda path, pm: pm)  # (path, thumbnail) -> what the tile shows (a proposal drawn)

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
            pm = square_thumbnail(arr)
        self.cache.put(path, pm)
        rows = {r.path: r for r in self.rows}
        for i in range(self.count()):
            it = self.item(i)
            if self.path_of(it) == path:
                it.setIcon(QIcon(self.decorate(path, pm)))
                if path in rows:
                    it.setToolTip(self._tooltip(rows[path]))

    # ------------------------------------------------------------------------------------- actions
    def open_photo(self, path: str) -> None:
        """Open a photo in the system's viewer."""
        if not QDesktopServices.openUrl(QUrl.fromEncoded(file_url_bytes(path))):
            self.message.emit(f"Could not open {shown(path)} in the system viewer.")

    def reveal(self, path: str) -> None:
        """Show the photo in the file manager (selected where the platform allows it)."""
        if sys.platform == "darwin":
            ok = QProcess.startDetached("open", ["-R", path])[0]
        elif sys.platform.startswith("win"):
            ok = QProcess.startDetached("explorer", [f"/select,{Path(path)}"])[0]
        else:
            ok = QDesktopServices.openUrl(QUrl.fromEncoded(file_url_bytes(str(Path(path).parent))))
        if not ok:
            self.message.emit(f"Could not open the folder of {shown(path)}.")

    @staticmethod
    def copy_path(path: str) -> None:
        """Put the path on the clipboard (bytes that are not UTF-8 and control characters escaped)."""
        QGuiApplication.clipboard().setText(shown(path))

    def copy_selected_paths(self) -> None:
        """Put the selected photos' paths on the clipboard, one a line."""
        QGuiApplication.clipboard().setText("\n".join(shown(p) for p in self.selected_paths()))

    def export_dialog(self) -> None:
        """Ask for a file and write the results shown as text or CSV: the selected ones when several are
        selected (one selected tile is where a click landed, not a choice), else all; says where it wrote."""
        rows = self.visible_rows()
        picked = {self.path_of(it) for it in self.selectedItems()}
        chosen = [r for r in rows if r.path in picked] if len(picked) > 1 else rows
        what = f"the {len(chosen)} selected results" if len(picked) > 1 else f"all {len(chosen)} results"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {what}", str(Path.home() / "results.csv"),
                                              "CSV (*.csv);;Text, one path a line (*.txt)")
        if not path:
            return
        try:
            export_list(chosen, path, ranks=[rows.index(r) + 1 for r in chosen])
        except OSError as err:
            self.message.emit(f"Could not write {path}: {err.strerror or err}.")
            return
        self.notice.emit(f"Exported {what} to {path}.")

    def _context_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        path = self.path_of(item)
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
        n_sel = len(self.selectedItems())
        menu.addAction(f"Export the {n_sel} selected…" if n_sel > 1 else "Export all results…", self.export_dialog)
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
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the results (the selected ones when several are, else all) to a CSV "
                                      "or text file (Ctrl+E)")
        self.export_button.clicked.connect(self.grid.export_dialog)
        bar.addWidget(self.export_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(bar)
        self.filter_bar = FilterBar()  # the search's filter: runs in the search, never hides tiles
        lay.addWidget(self.filter_bar)
        lay.addWidget(self.grid, 1)
