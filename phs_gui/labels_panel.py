"""The Labels panel (labels with counts; rename, delete, show their photos; the photo's own annotations), the
dialog that asks for a label, and how saved annotations are drawn on the photo.

Coordinates: annotations are in pixels of the photo (EXIF orientation applied), the canvas scene's frame.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.annotations.store import Annotation, Label

NAME_ROLE = Qt.ItemDataRole.UserRole + 1


def ask_label(parent: QWidget, labels: list[Label], current: str) -> str | None:
    """Ask for a label with completion from the known ones (an editable list); ``None`` if cancelled."""
    names = [lb.name for lb in labels if lb.name != current]
    if current:
        names.insert(0, current)
    text, ok = QInputDialog.getItem(parent, "Save the mark", "Label:", names, 0, True)
    return text.strip() if ok and text.strip() else None


def _swatch(color: str) -> QIcon:
    pm = QPixmap(14, 14)
    pm.fill(QColor(color))
    return QIcon(pm)


class LabelsPanel(QWidget):
    """Labels with their counts and the annotations of the photo shown.

    Signals:
        save_requested(): save the current mark with a label.
        rename_requested(str, str): old and new name.
        delete_requested(str): delete the label and its annotations.
        photos_requested(str): show the photos holding the label as results.
        use_requested(object): make this :class:`Annotation` the query's prompt.
        remove_requested(list): delete these annotation ids.
        show_toggled(bool): draw the saved annotations on the photo or not.
    """

    save_requested = Signal()
    rename_requested = Signal(str, str)
    delete_requested = Signal(str)
    photos_requested = Signal(str)
    use_requested = Signal(object)
    remove_requested = Signal(list)
    show_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = QListWidget()
        self.labels.setToolTip("Every label with how many annotations carry it; double-click shows its photos")
        self.labels.itemDoubleClicked.connect(lambda it: self.photos_requested.emit(it.data(NAME_ROLE)))
        self.on_photo = QListWidget()
        self.on_photo.setToolTip("The annotations saved on this photo; a click makes one the query's prompt")
        self.on_photo.itemClicked.connect(self._use)
        self.annotations: list[Annotation] = []
        self.show_box = QCheckBox("Show on the photo")
        self.show_box.setChecked(True)
        self.show_box.toggled.connect(self.show_toggled)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        save = QPushButton("Save mark… (Ctrl+S)")
        save.setToolTip("Save the mark drawn now with a label")
        save.clicked.connect(self.save_requested)
        lay.addWidget(save)
        lay.addWidget(self.labels, 1)
        lay.addLayout(self._buttons((("Rename…", self._rename), ("Delete", self._delete),
                                     ("Show photos", self._photos))))
        lay.addWidget(QLabel("On this photo"))
        lay.addWidget(self.on_photo, 1)
        lay.addLayout(self._buttons((("Delete annotation", self._remove),)))
        lay.addWidget(self.show_box)

    @staticmethod
    def _buttons(spec: tuple) -> QHBoxLayout:
        row = QHBoxLayout()
        for text, slot in spec:
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        return row

    def set_labels(self, labels: list[Label]) -> None:
        """Show every label with its colour and count (the selection kept by name)."""
        keep = self.current_label()
        self.labels.clear()
        for lb in labels:
            it = QListWidgetItem(_swatch(lb.color), f"{lb.name}  ({lb.count})")
            it.setData(NAME_ROLE, lb.name)
            self.labels.addItem(it)
            if lb.name == keep:
                self.labels.setCurrentItem(it)

    def set_annotations(self, annotations: list[Annotation]) -> None:
        """The annotations of the photo shown."""
        self.annotations = list(annotations)
        self.on_photo.clear()
        for a in self.annotations:
            stale = " (photo changed)" if a.stale else ""
            self.on_photo.addItem(f"{a.label}: {a.shape.kind}, {a.origin}{stale}")

    def current_label(self) -> str:
        """The label selected in the list, or ``""``."""
        it = self.labels.currentItem()
        return it.data(NAME_ROLE) if it is not None else ""

    def _rename(self) -> None:
        old = self.current_label()
        if old:
            new, ok = QInputDialog.getText(self, "Rename the label", f"New name for '{old}':", text=old)
            if ok and new.strip() and new.strip() != old:
                self.rename_requested.emit(old, new.strip())

    def _delete(self) -> None:
        if self.current_label():
            self.delete_requested.emit(self.current_label())

    def _photos(self) -> None:
        if self.current_label():
            self.photos_requested.emit(self.current_label())

    def _use(self, item: QListWidgetItem) -> None:
        row = self.on_photo.row(item)
        if 0 <= row < len(self.annotations):
            self.use_requested.emit(self.annotations[row])

    def _remove(self) -> None:
        row = self.on_photo.currentRow()
        if 0 <= row < len(self.annotations):
            self.remove_requested.emit([self.annotations[row].id])


def _mask_image(mask, color: QColor) -> QImage:
    """An ``(H, W)`` bool mask as a translucent ARGB image of ``color``."""
    import numpy as np

    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (color.red(), color.green(), color.blue(), 90)
    img = QImage(rgba.data, mask.shape[1], mask.shape[0], 4 * mask.shape[1], QImage.Format.Format_RGBA8888)
    return img.copy()


def paint_annotations(painter: QPainter, annotations: list[Annotation], colors: dict[str, str], zoom: float,
                      dashed: bool = False) -> None:
    """Draw annotations in scene (photo pixel) coordinates: boxes, points, masks, each with its label.

    Args:
        zoom: screen pixels per photo pixel (pens and text keep their size on the screen).
        dashed: draw outlines dashed (proposals not yet accepted).
    """
    painter.save()
    for a in annotations:
        color = QColor(colors.get(a.label, "#f0c020"))
        pen = QPen(color, 2.0 / zoom, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        s = a.shape
        if s.kind == "mask":
            painter.drawImage(QPointF(0, 0), _mask_image(s.mask, color))
        if s.kind == "points":
            painter.setBrush(QBrush(color))
            for x, y in s.points:
                painter.drawEllipse(QPointF(x, y), 4 / zoom, 4 / zoom)
        else:
            x0, y0, x1, y1 = s.bbox()
            painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        x0, y0 = s.bbox()[:2]
        font = painter.font()
        font.setPointSizeF(9 / zoom)
        painter.setFont(font)
        painter.drawText(QPointF(x0 + 3 / zoom, y0 + 12 / zoom), a.label)
    painter.restore()
