"""The marks of the objects not edited now, drawn on the photo in their objects' colours (dashed when
excluded) with their numbers; the edited object is drawn by the canvas itself, in its colour."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsSimpleTextItem,
)

from phs_gui.canvas import Canvas
from phs_gui.objects_state import PALETTE, QueryObject

Z_MARKS = 5


def _mask_pixmap(mask: np.ndarray, rgb: tuple[int, int, int]) -> QPixmap:
    """``(H, W)`` bool mask as a translucent pixmap of colour ``rgb``."""
    h, w = mask.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[mask] = (*rgb, 90)
    img = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return QPixmap.fromImage(img.copy())


class ObjectMarks:
    """Scene items for the other objects' marks on one canvas."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.items: list[QGraphicsItem] = []
        self.drawn: list[int] = []  # the list numbers (from 1) of the objects drawn

    def clear(self) -> None:
        """Remove every drawn mark (another photo is shown)."""
        for it in self.items:
            self.canvas.scene().removeItem(it)
        self.items, self.drawn = [], []

    def show(self, view: object) -> None:
        """Draw the objects of an :class:`phs_gui.controllers.objects.ObjectsView` that lie on its photo, the
        edited one excepted; the canvas draws the edited one in its colour."""
        self.clear()
        items, edited, photo = view.items, view.edited, view.photo  # type: ignore[attr-defined]
        me = items[edited] if 0 <= edited < len(items) else None
        self.canvas.mark_colour = QColor(*PALETTE[me.colour % len(PALETTE)]) if me is not None else QColor(*PALETTE[0])
        for n, o in enumerate(items, 1):
            if n - 1 == edited or o.photo != photo:
                continue
            self._draw(o, n)
            self.drawn.append(n)
        self.canvas.viewport().update()

    def _add(self, item: QGraphicsItem) -> None:
        item.setZValue(Z_MARKS)
        self.canvas.scene().addItem(item)
        self.items.append(item)

    def _draw(self, o: QueryObject, n: int) -> None:
        rgb = PALETTE[o.colour % len(PALETTE)]
        pen = QPen(QColor(*rgb), 2, Qt.PenStyle.DashLine if o.excluded else Qt.PenStyle.SolidLine)
        pen.setCosmetic(True)
        st = o.state
        anchor: QPointF | None = None
        if st.mask is not None:
            self._add(QGraphicsPixmapItem(_mask_pixmap(st.mask, rgb)))
            ys, xs = np.nonzero(st.mask)
            anchor = QPointF(float(xs.min()), float(ys.min()))
        if st.box is not None:
            x0, y0, x1, y1 = st.box
            r = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
            r.setPen(pen)
            self._add(r)
            anchor = QPointF(x0, y0)
        rad = max(3.0, 0.012 * max(st.image_size))
        for x, y, pos in st.points:
            e = QGraphicsEllipseItem(QRectF(x - rad, y - rad, 2 * rad, 2 * rad))
            e.setPen(QPen(QColor(0, 0, 0), 1))
            e.setBrush(QBrush(QColor(*rgb) if pos else QColor(240, 60, 60)))
            self._add(e)
            anchor = anchor or QPointF(x + rad, y - 2 * rad)
        if anchor is not None:
            label = QGraphicsSimpleTextItem(f"{n}{' ✕' if o.excluded else ''}")
            label.setBrush(QBrush(QColor(*rgb)))
            label.setFont(QFont("", 11, QFont.Weight.Bold))
            label.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            label.setPos(anchor + QPointF(3, 2))
            self._add(label)
