"""What the canvas draws: the prompt tools, the mask overlay item and the prompt painted over the photo."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QWidget

from phs_gui.geometry import handle_points, stamp_segment
from phs_gui.prompt_state import PromptState


class Tool(Enum):
    """The prompt tools."""

    POINT = "point"
    BOX = "box"
    BRUSH = "brush"
    ERASER = "eraser"
    PAN = "pan"


TOOL_LABELS: dict[Tool, str] = {
    Tool.POINT: "Point",
    Tool.BOX: "Box",
    Tool.BRUSH: "Brush",
    Tool.ERASER: "Eraser",
    Tool.PAN: "Pan",
}
TOOL_SHORTCUTS: dict[Tool, str] = {Tool.POINT: "P", Tool.BOX: "B", Tool.BRUSH: "M", Tool.ERASER: "E", Tool.PAN: "H"}
TOOL_TIPS: dict[Tool, str] = {
    Tool.POINT: "Click on the object; Shift+click marks what you do not want",
    Tool.BOX: "Drag a box around the object; drag its handles to adjust it",
    Tool.BRUSH: "Paint over the object; wheel or [ ] change the brush size",
    Tool.ERASER: "Erase painted areas; wheel or [ ] change the size",
    Tool.PAN: "Drag to move the photo (middle button pans with any tool)",
}
TOOL_CURSORS: dict[Tool, Qt.CursorShape] = {
    Tool.POINT: Qt.CursorShape.CrossCursor,
    Tool.BOX: Qt.CursorShape.CrossCursor,
    Tool.BRUSH: Qt.CursorShape.CrossCursor,
    Tool.ERASER: Qt.CursorShape.CrossCursor,
    Tool.PAN: Qt.CursorShape.OpenHandCursor,
}

HANDLE_PX = 7.0  # handle size on screen
POINT_PX = 6.0  # point radius on screen
MASK_RGBA = (64, 156, 255, 110)
BOX_COLOR = QColor(255, 214, 0)
POS_COLOR = QColor(40, 220, 90)
NEG_COLOR = QColor(240, 60, 60)
MARKER_COLOR = QColor(255, 70, 200)
MARKER_SHAPES = ("ellipse", "circle", "square")
MIN_BRUSH, MAX_BRUSH = 2, 200  # diameter in screen pixels


class _ImageItem(QGraphicsItem):
    """Paints a ``QImage`` that wraps a numpy RGBA buffer (the mask overlay), so edits show without copies."""

    def __init__(self) -> None:
        super().__init__()
        self._rgba: np.ndarray | None = None
        self._image: QImage | None = None

    def set_array(self, rgba: np.ndarray | None) -> None:
        self.prepareGeometryChange()
        self._rgba = rgba
        if rgba is None:
            self._image = None
        else:
            h, w = rgba.shape[:2]
            self._image = QImage(rgba.data, w, h, rgba.strides[0], QImage.Format.Format_RGBA8888)
        self.update()

    def set_mask(self, mask: np.ndarray | None) -> None:
        """Show ``mask`` (``(H, W)`` bool in image pixels) tinted; ``None`` hides it."""
        if mask is None:
            self.set_array(None)
            return
        rgba = np.zeros((*mask.shape, 4), np.uint8)
        rgba[mask] = MASK_RGBA
        self.set_array(rgba)

    def update_mask_region(self, mask: np.ndarray, region: tuple[int, int, int, int]) -> None:
        """Redraw only ``region`` (XYXY image pixels) of ``mask`` after a brush stroke."""
        if self._rgba is None or self._rgba.shape[:2] != mask.shape:
            self.set_mask(mask)
            return
        x0, y0, x1, y1 = region
        sub = self._rgba[y0:y1, x0:x1]
        sub[:] = 0
        sub[mask[y0:y1, x0:x1]] = MASK_RGBA
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        if self._rgba is None:
            return QRectF()
        h, w = self._rgba.shape[:2]
        return QRectF(0, 0, w, h)

    def paint(self, painter: QPainter, option: object, widget: QWidget | None = None) -> None:
        if self._image is not None:
            painter.drawImage(QPointF(0, 0), self._image)


def paint_prompt(painter: QPainter, st: PromptState, z: float, marker: tuple | None, tool: Tool,
                 hover: QPointF | None, brush: float, colour: QColor = BOX_COLOR) -> None:
    """Draw the prompt over the photo in scene (image pixel) coordinates: the marker of a marker method, the
    box with its handles, the points and the brush outline; pens are ``1 / z`` wide so lines keep their
    screen width at zoom ``z``."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    if marker is not None:
        shape, (cx, cy, mw, mh) = marker
        r = QRectF(cx - mw / 2, cy - mh / 2, mw, mh)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        pen = QPen(MARKER_COLOR, 2.0 / z, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        if shape == "square":
            painter.drawRect(r)
        else:
            painter.drawEllipse(r)
    if st.box is not None:
        x0, y0, x1, y1 = st.box
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 4.0 / z))
        painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        painter.setPen(QPen(colour, 2.0 / z))
        painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        if tool is Tool.BOX:
            s = HANDLE_PX / z
            painter.setBrush(QBrush(colour))
            painter.setPen(QPen(QColor(0, 0, 0), 1.0 / z))
            for hx, hy in handle_points(st.box).values():
                painter.drawRect(QRectF(hx - s / 2, hy - s / 2, s, s))
    r = POINT_PX / z
    for x, y, pos in st.points:
        painter.setPen(QPen(QColor(0, 0, 0), 1.5 / z))
        painter.setBrush(QBrush(POS_COLOR if pos else NEG_COLOR))
        painter.drawEllipse(QPointF(x, y), r, r)
        if not pos:
            painter.setPen(QPen(QColor(255, 255, 255), 1.5 / z))
            painter.drawLine(QPointF(x - r * 0.5, y), QPointF(x + r * 0.5, y))
    if tool in (Tool.BRUSH, Tool.ERASER) and hover is not None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(255, 255, 255, 200), 1.0 / z))
        painter.drawEllipse(hover, brush / 2 / z, brush / 2 / z)


def dropped_file(event) -> str | None:  # noqa: ANN001 - Qt drag events of several types
    """The first local file a drag carries, or ``None``."""
    md = event.mimeData()
    if md is None or not md.hasUrls():
        return None
    for url in md.urls():
        if url.isLocalFile() and Path(url.toLocalFile()).is_file():
            return url.toLocalFile()
    return None


class BrushStrokes:
    """The brush and eraser tools of :class:`phs_gui.canvas.Canvas` (a mix-in): a stroke paints into a working
    copy of the mask, redrawn region by region, and becomes one prompt edit on release."""

    def _press_brush(self, pos: QPointF, mods: Qt.KeyboardModifier) -> None:
        st = self._state
        assert st is not None
        w, h = st.image_size
        work = np.zeros((h, w), bool) if st.mask is None else st.mask.copy()
        self._mask_work = work
        self._drag = {"kind": "paint", "last": (pos.x(), pos.y()), "value": self._tool is Tool.BRUSH}
        self._paint_to(pos)

    def _paint_to(self, pos: QPointF) -> None:
        d, work = self._drag, self._mask_work
        assert d is not None and work is not None
        p = (pos.x(), pos.y())
        # The brush is sized on the screen: the same stroke width at any zoom.
        region = stamp_segment(work, d["last"], p, self._brush / 2 / max(self.zoom, 1e-6), d["value"])
        d["last"] = p
        if region is not None:
            self._overlay.update_mask_region(work, region)

    def _move_brush(self, pos: QPointF) -> None:
        self._paint_to(pos)

    def _release_brush(self, pos: QPointF) -> None:
        self._paint_to(pos)
        work = self._mask_work
        self._drag = None
        self._mask_work = None
        assert self._state is not None and work is not None
        self._commit(self._state.with_mask(work if work.any() else None))
