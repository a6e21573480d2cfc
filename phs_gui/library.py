"""The library dock: photo folders, background indexing with progress, rate, ETA and cancel, failed files.

Signals: ``folder_selected(path)``, ``add_folder_requested()``, ``index_requested(path)``,
``cancel_requested()``. The window runs the indexer in a worker and feeds :meth:`LibraryPanel.show_progress`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
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


class LibraryPanel(QWidget):
    """Choose the folder to search, index it, see what failed."""

    folder_selected = Signal(object)  # folder paths: str, possibly not UTF-8 (never through Qt's text)
    add_folder_requested = Signal()
    index_requested = Signal(object)
    cancel_requested = Signal()
    remove_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = QComboBox()
        self._folders: list[str] = []  # the real paths, in the order of the list
        self.folder.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.folder.setMinimumContentsLength(14)
        self.folder.setToolTip("The photo folder searched now")
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
        lay.addWidget(self.folder)  # a row of its own: the panel stays as narrow as the Search knobs
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
        self.failures.hide()
        self.failures_label.hide()
        self.add_button.clicked.connect(self.add_folder_requested)
        self.remove_button.clicked.connect(lambda: self.current_folder and self.remove_requested.emit(self.current_folder))
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.index_button.clicked.connect(self._on_index)
        self.folder.activated.connect(self._on_folder)

    @property
    def folders(self) -> list[str]:
        """The folders listed, in order (their real paths)."""
        return list(self._folders)

    @property
    def current_folder(self) -> str:
        """The folder selected, or ``""``."""
        i = self.folder.currentIndex()
        return self._folders[i] if 0 <= i < len(self._folders) else ""

    def set_folders(self, folders: list[str], current: str, labels: dict[str, str] | None = None) -> None:
        """List the known folders and select ``current`` (no signal)."""
        b = self.folder.blockSignals(True)
        self.folder.clear()
        self._folders = list(folders)
        for f in folders:
            name = (labels or {}).get(f) or Path(f).name or f
            self.folder.addItem(shown(name))
            self.folder.setItemData(self.folder.count() - 1, shown(f), Qt.ItemDataRole.ToolTipRole)
        self.folder.setCurrentIndex(folders.index(current) if current in folders else 0)
        self.folder.blockSignals(b)
        self.index_button.setEnabled(bool(folders))
        self.remove_button.setEnabled(bool(folders))

    def set_running(self, running: bool) -> None:
        """Switch the buttons between indexing and idle."""
        self.cancel_button.setEnabled(running)
        self.index_button.setEnabled(not running and self.folder.count() > 0)
        self.add_button.setEnabled(not running)
        self.remove_button.setEnabled(not running and self.folder.count() > 0)
        self.folder.setEnabled(not running)
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
        if self.current_folder:
            self.folder_selected.emit(self.current_folder)
