"""The library dock: photo folders, background indexing with progress, rate, ETA and cancel, failed files.

Every folder of the list has a check box: the search runs over all checked folders at once. The folder chosen
in the list (highlighted) is the one Index, Remove, the progress bar and the failed files are about.

Signals: ``folder_selected(path)``, ``searched_changed(path, on)``, ``add_folder_requested()``,
``index_requested(path)``, ``cancel_requested()``, ``remove_requested(path)``. The window runs the indexer in a
worker and feeds :meth:`LibraryPanel.show_progress`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.library import IndexProgress
from phs_gui.result_rows import shown


def format_eta(seconds: float | None) -> str:
    """``1:05`` style remaining time, ``--:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(p: IndexProgress) -> str:
    """One line: done of total, rate, ETA, failures."""
    parts = [f"{p.done} of {p.total} photos", f"{p.rate:.1f}/s", f"ETA {format_eta(p.eta_s)}"]
    if p.skipped:
        parts.append(f"{p.skipped} unchanged")
    if p.failed:
        parts.append(f"{p.failed} failed")
    return " · ".join(parts)


NAME_ROLE = Qt.ItemDataRole.UserRole + 1  # the folder's name as listed, without a note
LIST_ROWS = 5  # folders shown without scrolling


class LibraryPanel(QWidget):
    """Choose the folders to search (check boxes) and the folder to index; see what failed."""

    folder_selected = Signal(object)  # folder paths: str, possibly not UTF-8 (never through Qt's text)
    searched_changed = Signal(object, bool)
    add_folder_requested = Signal()
    index_requested = Signal(object)
    cancel_requested = Signal()
    remove_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self._folders: list[str] = []  # the real paths, in the order of the list
        self._running = False
        self._chosen_row = -1  # the row of the folder chosen (kept while a run indexes it)
        self._problems: dict[str, str] = {}  # checked folders that cannot be searched now, and why
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setUniformItemSizes(True)
        self.list.setMinimumWidth(12 * self.fontMetrics().averageCharWidth())
        self.list.setToolTip("Checked folders are searched together; the folder chosen here is the one Index, "
                             "Remove and the failed files are about")
        self.add_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove this folder from the library: its index is deleted from disk (its "
                                      "photos are not touched)")
        self.index_button = QPushButton("Index")
        self.index_button.setToolTip("Index new and changed photos of this folder (resumes an interrupted run)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.status = QLabel("No folder yet: add one to search your photos.")
        self.status.setWordWrap(True)
        self.failures = QListWidget()
        self.failures.setWordWrap(True)
        self.failures.setMinimumHeight(4 * self.fontMetrics().lineSpacing() + 8)
        self.failures.setMaximumHeight(160)
        self.failures.setToolTip("Photos that could not be indexed, and why")
        self.failures_label = QLabel("Failed files")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.list)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addStretch(1)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(self.index_button)
        row2.addWidget(self.cancel_button)
        row2.addWidget(self.progress, 1)
        lay.addLayout(row2)
        lay.addWidget(self.status)
        lay.addWidget(self.failures_label)
        lay.addWidget(self.failures)
        lay.addStretch(1)  # the lines stay under the bar; the room left is below them
        self.failures.hide()
        self.failures_label.hide()
        self.add_button.clicked.connect(self.add_folder_requested)
        self.remove_button.clicked.connect(lambda: self.current_folder and self.remove_requested.emit(self.current_folder))
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.index_button.clicked.connect(self._on_index)
        self.list.currentRowChanged.connect(self._on_folder)
        self.list.itemChanged.connect(self._on_check)
        self._fit_rows()

    @property
    def folders(self) -> list[str]:
        """The folders listed, in order (their real paths)."""
        return list(self._folders)

    @property
    def checked_folders(self) -> list[str]:
        """The folders whose check box is on, in order."""
        return [f for i, f in enumerate(self._folders)
                if self.list.item(i).checkState() == Qt.CheckState.Checked]  # fmt: skip

    @property
    def current_folder(self) -> str:
        """The folder chosen, or ``""``."""
        i = self.list.currentRow()
        return self._folders[i] if 0 <= i < len(self._folders) else ""

    def set_folders(self, folders: list[str], current: str, labels: dict[str, str] | None = None,
                    searched: list[str] | None = None) -> None:
        """List the known folders, check those ``searched`` (``None``: all) and choose ``current`` (no signal)."""
        b = self.list.blockSignals(True)
        self.list.clear()
        self._folders = list(folders)
        for f in folders:
            item = QListWidgetItem(shown((labels or {}).get(f) or Path(f).name or f))
            item.setData(NAME_ROLE, item.text())
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = searched is None or f in searched
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.setCurrentRow(folders.index(current) if current in folders else (0 if folders else -1))
        self._chosen_row = self.list.currentRow()
        self._decorate()
        self.list.blockSignals(b)
        self._fit_rows()
        self.index_button.setEnabled(bool(folders) and not self._running)
        self.remove_button.setEnabled(bool(folders) and not self._running)

    def show_left_out(self, problems: dict[str, str]) -> None:
        """Mark the checked folders that cannot be searched now (greyed, the sentence in their tooltip)."""
        self._problems = dict(problems)
        b = self.list.blockSignals(True)
        self._decorate()
        self.list.blockSignals(b)

    def _decorate(self) -> None:
        for i, f in enumerate(self._folders):
            item = self.list.item(i)
            problem = self._problems.get(f, "") if item.checkState() == Qt.CheckState.Checked else ""
            item.setForeground(QColor(150, 150, 150) if problem else self.list.palette().text().color())
            item.setText(item.data(NAME_ROLE) + (" (not searched)" if problem else ""))
            searched = "searched" if item.checkState() == Qt.CheckState.Checked else "not searched (check to search it)"
            item.setToolTip(f"{shown(f)}\n{problem or searched.capitalize()}")

    def _fit_rows(self) -> None:
        """As tall as the folders (at most :data:`LIST_ROWS` rows without scrolling)."""
        row = self.list.sizeHintForRow(0) if self.list.count() else self.fontMetrics().lineSpacing() + 6
        rows = min(max(self.list.count(), 2), LIST_ROWS)
        self.list.setFixedHeight(rows * row + 2 * self.list.frameWidth() + 4)

    def set_running(self, running: bool) -> None:
        """Switch the buttons between indexing and idle."""
        self._running = running
        self.cancel_button.setEnabled(running)
        self.index_button.setEnabled(not running and self.list.count() > 0)
        self.add_button.setEnabled(not running)
        self.remove_button.setEnabled(not running and self.list.count() > 0)
        if running:
            self.progress.setRange(0, 0)  # busy until the first progress report

    def show_any_progress(self, p: IndexProgress | tuple[int, int]) -> None:
        """An indexing run's progress, or ``(done, total)`` scenes while the demo gallery is written."""
        if isinstance(p, tuple):
            self.progress.setRange(0, p[1])
            self.progress.setValue(p[0])
        else:
            self.show_progress(p)

    def show_progress(self, p: IndexProgress) -> None:
        """Update the bar and the rate/ETA line."""
        self.progress.setRange(0, max(p.total, 1))
        self.progress.setValue(min(p.done, max(p.total, 1)))
        self.status.setText(progress_text(p))

    def show_status(self, text: str) -> None:
        """One line under the bar."""
        self.status.setText(text)

    def show_failures(self, failures: list[tuple[str, str]]) -> None:
        """List ``(rel, reason)`` failures (hidden when there are none)."""
        self.failures.clear()
        for rel, reason in failures:
            self.failures.addItem(f"{shown(rel)}: {reason}")
            self.failures.item(self.failures.count() - 1).setToolTip(reason)
        self.failures.setVisible(bool(failures))
        self.failures_label.setVisible(bool(failures))
        self.failures_label.setText(f"Failed files ({len(failures)})")

    def _on_index(self) -> None:
        if self.current_folder:
            self.index_requested.emit(self.current_folder)

    def _on_folder(self, *_: object) -> None:
        if self._running:  # the folder being indexed stays the chosen one until its run ends (checks still work)
            b = self.list.blockSignals(True)
            self.list.setCurrentRow(self._chosen_row)
            self.list.blockSignals(b)
            return
        self._chosen_row = self.list.currentRow()
        if self.current_folder:
            self.folder_selected.emit(self.current_folder)

    def _on_check(self, item: QListWidgetItem) -> None:
        i = self.list.row(item)
        if 0 <= i < len(self._folders):
            b = self.list.blockSignals(True)
            self._decorate()
            self.list.blockSignals(b)
            self.searched_changed.emit(self._folders[i], item.checkState() == Qt.CheckState.Checked)
