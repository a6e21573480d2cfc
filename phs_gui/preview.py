"""The built-in preview of a result, with "where is it": the query's kept heads looking at that photo.

The window decodes the photo and computes the map in workers (:meth:`PreviewDialog.set_photo`,
:meth:`PreviewDialog.set_where`); the dialog only draws. Enter or double-click on a result opens it; Left and
Right step through the results, Escape closes it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from phs_gui.render import blend_map, to_qimage

_DECISIONS = {Qt.Key.Key_Return: True, Qt.Key.Key_Enter: True, Qt.Key.Key_A: True, Qt.Key.Key_Delete: False,
              Qt.Key.Key_X: False}


class PreviewDialog(QDialog):
    """One result photo, large, optionally with the attention of the query's kept heads over it."""

    step_requested = Signal(int)  # -1 previous, +1 next
    use_as_query = Signal(object)  # a path (str, possibly not UTF-8)
    decided = Signal(bool)  # Enter/A accepts, Del/X rejects the proposal shown
    overlay = None  # (path, pixmap of the photo) -> pixmap: what is drawn over the photo (a proposal)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preview")
        self.path: str | None = None
        self._rgb: np.ndarray | None = None
        self._where: np.ndarray | None = None
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(320, 240)
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where_box = QCheckBox("Where is it (the query's kept heads on this photo)")
        self.where_box.setChecked(True)
        self.where_box.toggled.connect(self._draw)
        self.where_state = QLabel("")
        prev_b, next_b = QPushButton("◀ Previous"), QPushButton("Next ▶")
        prev_b.clicked.connect(lambda: self.step_requested.emit(-1))
        next_b.clicked.connect(lambda: self.step_requested.emit(1))
        use_b = QPushButton("Use as the new query")
        use_b.clicked.connect(lambda: self.path and self.use_as_query.emit(self.path))
        row = QHBoxLayout()
        row.addWidget(self.where_box)
        row.addWidget(self.where_state, 1)
        row.addWidget(prev_b)
        row.addWidget(next_b)
        row.addWidget(use_b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.image, 1)
        lay.addWidget(self.caption)
        lay.addLayout(row)
        self.resize(900, 700)
        for child in (self, self.where_box, prev_b, next_b, use_b):  # Left/Right step whichever of them has the focus
            child.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.step_requested.emit(-1 if event.key() == Qt.Key.Key_Left else 1)
            return True
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in _DECISIONS:
            event.accept()  # A, X, Enter, Del decide here, not the main window's shortcuts
            return True
        if event.type() == QEvent.Type.KeyPress and event.key() in _DECISIONS:
            self.decided.emit(_DECISIONS[event.key()])
            return True
        return super().eventFilter(obj, event)

    def set_photo(self, path: str, rgb: np.ndarray | None, caption: str) -> None:
        """Show a photo (``(H, W, 3)`` uint8, display-sized) and its caption; the map follows."""
        self.path, self._rgb, self._where = path, rgb, None
        self.caption.setText(caption)
        self.where_state.setText("computing where it is…")
        self._draw()

    def set_where(self, path: str, where: np.ndarray | None, text: str = "") -> None:
        """The ``(gh, gw)`` map of the query's kept heads over ``path`` (ignored if another photo is shown)."""
        if path != self.path:
            return
        self._where = where
        self.where_state.setText(text)
        self._draw()

    @property
    def showing_where(self) -> bool:
        """The map is drawn over the photo now."""
        return self._where is not None and self.where_box.isChecked() and self._rgb is not None

    def _draw(self) -> None:
        if self._rgb is None:
            self.image.setText("loading…")
            return
        rgb = blend_map(self._rgb, self._where, alpha=0.55) if self.showing_where else self._rgb
        pm = QPixmap.fromImage(to_qimage(rgb))
        pm = self.overlay(self.path, pm) if self.overlay is not None else pm
        size = self.image.size()
        self.image.setPixmap(pm.scaled(QSize(max(size.width(), 64), max(size.height(), 64)),
                                       Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))

    redraw = _draw

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._draw()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_Left:
            self.step_requested.emit(-1)
        elif event.key() == Qt.Key.Key_Right:
            self.step_requested.emit(1)
        elif event.key() in _DECISIONS:
            self.decided.emit(_DECISIONS[event.key()])
        else:
            super().keyPressEvent(event)
