"""The query photo and the prompt tools: the canvas only shows the prompt and emits what the user did.

Tools are an :class:`Tool` enum with lookup tables (:mod:`phs_gui.canvas_items`; press/move/release handlers
here); the geometry lives in :mod:`phs_gui.geometry`. The canvas edits a :class:`PromptState` in image
pixels and emits

* ``prompt_preview(state)`` while a box or handle is dragged (the window re-scores, throttled),
* ``prompt_changed(state)`` when an edit is complete (one undo step),
* ``file_dropped(path)`` when a photo is dropped on it,
* ``brush_size_changed(px)`` and ``zoom_changed(scale)``.

It also outlines where a marker method (learned prompt, red circle) pasted its marker
(:meth:`Canvas.set_marker`), which the window sets from each answer.

It never calls the engine. Scene coordinates are image pixels (the photo item sits at the origin, unscaled),
so ``mapToScene`` turns a mouse position into prompt coordinates directly.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from phs_gui.canvas_items import (  # noqa: F401 - the tools are part of the canvas's interface
    BOX_COLOR,
    HANDLE_PX,
    MARKER_SHAPES,
    MASK_RGBA,
    MAX_BRUSH,
    MIN_BRUSH,
    TOOL_CURSORS,
    TOOL_LABELS,
    TOOL_SHORTCUTS,
    TOOL_TIPS,
    BrushStrokes,
    Tool,
    _ImageItem,
    dropped_file,
    paint_prompt,
)
from phs_gui.geometry import (
    Handle,
    clamp_zoom,
    drag_box,
    hit_box,
    normalize_box,
)
from phs_gui.prompt_state import PromptState


class Canvas(BrushStrokes, QGraphicsView):
    """Shows the query photo and the prompt; zoom (Ctrl+wheel at the cursor), pan, fit."""

    prompt_changed = Signal(object)
    prompt_preview = Signal(object)
    file_dropped = Signal(str)
    brush_size_changed = Signal(int)
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setBackgroundBrush(QBrush(QColor(38, 40, 44)))
        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self.setMinimumSize(320, 240)
        self._photo = QGraphicsPixmapItem()
        self._photo.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay = _ImageItem()
        self.scene().addItem(self._photo)
        self.scene().addItem(self._overlay)
        self._state: PromptState | None = None
        self._tool = Tool.BOX
        self._brush = 24
        self._fit = True
        self._drag: dict | None = None
        self._hover: QPointF | None = None
        self._mask_work: np.ndarray | None = None
        self._pan_from: QPoint | None = None
        self._placeholder = "Open a photo (Ctrl+O) or drop one here"
        self._marker: tuple[str, tuple[float, float, float, float]] | None = None
        self.mark_colour = QColor(BOX_COLOR)  # the colour of the object edited now

    # ------------------------------------------------------------------------------------------ state
    @property
    def state(self) -> PromptState | None:
        """The prompt shown now, or ``None`` without a photo."""
        return self._state

    @property
    def tool(self) -> Tool:
        """The active tool."""
        return self._tool

    @property
    def brush_size(self) -> int:
        """Brush diameter in image pixels."""
        return self._brush

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return float(self.transform().m11())

    @property
    def marker(self) -> tuple[str, tuple[float, float, float, float]] | None:
        """The marker outline drawn now: ``(shape, (cx, cy, width, height))`` in image pixels, or ``None``."""
        return self._marker

    def set_marker(self, shape: str | None, placement: tuple[float, float, float, float] | None = None) -> None:
        """Outline where a marker method pasted its marker, or clear it (``shape`` ``None``).

        Args:
            shape: ``ellipse`` (the red circle), ``circle`` or ``square`` (the learned prompt's shape).
            placement: ``(cx, cy, width, height)`` in pixels of the photo (EXIF orientation applied).
        """
        marker = None if shape is None or placement is None else (shape, tuple(float(v) for v in placement))
        if shape is not None and shape not in MARKER_SHAPES:
            raise ValueError(f"unknown marker shape {shape!r}")
        if marker != self._marker:
            self._marker = marker  # type: ignore[assignment]
            self.viewport().update()

    def set_placeholder(self, text: str) -> None:
        """The hint shown while no photo is open."""
        self._placeholder = text
        self.viewport().update()

    def set_photo(self, image: np.ndarray | QImage | None, image_size: tuple[int, int] | None = None) -> None:
        """Show a new photo with an empty prompt, fitted to the window.

        Args:
            image: ``(h, w, 3)`` uint8 RGB or a ``QImage``; may be a reduced copy of the photo (workers
                prepare one so that a 12-megapixel photo never stalls the window).
            image_size: ``(W, H)`` of the original photo, the prompt's coordinate frame; default the
                image's own size.
        """
        self._marker = None
        if image is None:
            self._photo.setPixmap(QPixmap())
            self._state = None
            self._overlay.set_mask(None)
            self.viewport().update()
            return
        if isinstance(image, np.ndarray):
            from phs_gui.render import to_qimage

            image = to_qimage(image)
        w, h = image_size or (image.width(), image.height())
        self._photo.setPixmap(QPixmap.fromImage(image))
        self._photo.setScale(w / max(image.width(), 1))  # scene units stay original-image pixels
        self.scene().setSceneRect(QRectF(0, 0, w, h))
        self._state = PromptState((w, h))
        self._overlay.set_mask(None)
        self.fit_to_window()

    def set_state(self, state: PromptState) -> None:
        """Show ``state`` (undo, redo, programmatic edits); emits nothing."""
        self._state = state
        self._drag = None
        self._overlay.set_mask(state.mask)
        self.viewport().update()

    def set_tool(self, tool: Tool) -> None:
        """Switch tools."""
        self._tool = tool
        self._drag = None
        self.viewport().setCursor(TOOL_CURSORS[tool])
        self.viewport().update()

    def set_brush_size(self, px: int) -> None:
        """Brush diameter in screen pixels (clamped): a stroke looks the same size at any zoom."""
        px = int(min(max(px, MIN_BRUSH), MAX_BRUSH))
        if px != self._brush:
            self._brush = px
            self.brush_size_changed.emit(px)
            self.viewport().update()

    def clear_prompt(self) -> None:
        """Remove every point, the box and the mask (one undo step)."""
        if self._state is not None and not self._state.is_empty:
            self._commit(self._state.cleared())

    def _commit(self, state: PromptState) -> None:
        self.set_state(state)
        self.prompt_changed.emit(state)

    # ------------------------------------------------------------------------------------------- view
    def fit_to_window(self) -> None:
        """Show the whole photo, and keep fitting it when the window is resized until the user zooms."""
        if self._photo.pixmap().isNull():
            return
        self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._fit = True
        self.zoom_changed.emit(self.zoom)

    def zoom_by(self, factor: float, anchor: QPoint | None = None) -> None:
        """Zoom by ``factor`` keeping the image point under ``anchor`` (viewport pixels) in place."""
        new = clamp_zoom(self.zoom * factor)
        f = new / self.zoom
        if anchor is not None:
            before = self.mapToScene(anchor)
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
            self.scale(f, f)
            after = self.mapToScene(anchor)
            d = after - before
            self.translate(d.x(), d.y())
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        else:
            self.scale(f, f)
        self._fit = False
        self.zoom_changed.emit(self.zoom)

    def resizeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        super().resizeEvent(event)
        if self._fit:
            self.fit_to_window()

    # ------------------------------------------------------------------------------------- overlays
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 - Qt API
        super().drawBackground(painter, rect)
        if self._state is None:
            painter.save()
            painter.resetTransform()
            painter.setPen(QColor(190, 192, 198))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            painter.restore()

    overlay = None  # (painter, zoom) -> None: what else is drawn over the photo (saved annotations)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 - Qt API
        if self._state is not None and self.overlay is not None:
            self.overlay(painter, max(self.zoom, 1e-6))
        if self._state is not None:
            paint_prompt(painter, self._state, max(self.zoom, 1e-6), self._marker, self._tool, self._hover,
                         self._brush, self.mark_colour)

    # ------------------------------------------------------------------------------------------ mouse
    def _image_pos(self, event: QMouseEvent) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.MiddleButton or (
            self._tool is Tool.PAN and event.button() == Qt.MouseButton.LeftButton
        ):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self._state is None or event.button() != Qt.MouseButton.LeftButton:
            return
        _PRESS[self._tool](self, self._image_pos(event), event.modifiers())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._pan_from is not None:
            d = event.position().toPoint() - self._pan_from
            self._pan_from = event.position().toPoint()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - d.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - d.y())
            return
        pos = self._image_pos(event)
        self._hover = pos
        if self._drag is not None and self._state is not None:
            _MOVE[self._tool](self, pos)
        self.viewport().update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().setCursor(TOOL_CURSORS[self._tool])
            return
        if self._drag is not None and self._state is not None:
            _RELEASE[self._tool](self, self._image_pos(event))

    def leaveEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        self._hover = None
        self.viewport().update()
        super().leaveEvent(event)

    # point
    def _press_point(self, pos: QPointF, mods: Qt.KeyboardModifier) -> None:
        st = self._state
        assert st is not None
        w, h = st.image_size
        if not (0 <= pos.x() <= w and 0 <= pos.y() <= h):
            return
        positive = not bool(mods & Qt.KeyboardModifier.ShiftModifier)
        self._commit(st.with_point(pos.x(), pos.y(), positive))

    # box
    def _press_box(self, pos: QPointF, mods: Qt.KeyboardModifier) -> None:
        st = self._state
        assert st is not None
        handle = hit_box(st.box, pos.x(), pos.y(), HANDLE_PX / max(self.zoom, 1e-6))
        if handle is not None and st.box is not None:
            self._drag = {"kind": "adjust", "handle": handle, "start": (pos.x(), pos.y()), "box": st.box, "before": st}
        else:
            self._drag = {"kind": "new", "start": (pos.x(), pos.y()), "before": st}

    def _drag_box_to(self, pos: QPointF) -> PromptState | None:
        st, d = self._state, self._drag
        assert st is not None and d is not None
        sx, sy = d["start"]
        if d["kind"] == "new":
            box = normalize_box(sx, sy, pos.x(), pos.y())
        else:
            box = drag_box(d["box"], d["handle"], pos.x() - sx, pos.y() - sy)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return None
        new = st.with_box(box)
        return None if new.box is None else new

    def _move_box(self, pos: QPointF) -> None:
        new = self._drag_box_to(pos)
        if new is not None:
            self._state = new
            self.prompt_preview.emit(new)

    def _release_box(self, pos: QPointF) -> None:
        new = self._drag_box_to(pos)
        before = self._drag.get("before") if self._drag else None
        self._drag = None
        if new is None:  # a click without a drag keeps what was there
            if before is not None:
                self.set_state(before)
            return
        self._commit(new)

    # brush and eraser
    def _noop_press(self, pos: QPointF, mods: Qt.KeyboardModifier) -> None:
        return

    def _noop(self, pos: QPointF) -> None:
        return

    # --------------------------------------------------------------------------------- wheel, keys
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        steps = event.angleDelta().y() / 120.0
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if steps:
                self.zoom_by(1.25**steps, event.position().toPoint())
            return
        if self._tool in (Tool.BRUSH, Tool.ERASER) and steps:
            self.set_brush_size(round(self._brush * (1.15**steps)) + (1 if steps > 0 else -1))
            return
        super().wheelEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_BracketLeft:
            self.set_brush_size(round(self._brush / 1.2))
        elif event.key() == Qt.Key.Key_BracketRight:
            self.set_brush_size(round(self._brush * 1.2) + 1)
        else:
            super().keyPressEvent(event)

    # ------------------------------------------------------------------------------------ drag & drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        if dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent  # noqa: N815 - Qt API

    def dropEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        path = dropped_file(event)
        if path is not None:
            event.acceptProposedAction()
            self.file_dropped.emit(path)


_NOOP = (Canvas._noop_press, Canvas._noop, Canvas._noop)
_HANDLERS = {  # tool -> (press, move, release)
    Tool.POINT: (Canvas._press_point, Canvas._noop, Canvas._noop),
    Tool.BOX: (Canvas._press_box, Canvas._move_box, Canvas._release_box),
    Tool.BRUSH: (Canvas._press_brush, Canvas._move_brush, Canvas._release_brush),
    Tool.ERASER: (Canvas._press_brush, Canvas._move_brush, Canvas._release_brush),
    Tool.PAN: _NOOP,
}
_PRESS = {t: h[0] for t, h in _HANDLERS.items()}
_MOVE = {t: h[1] for t, h in _HANDLERS.items()}
_RELEASE = {t: h[2] for t, h in _HANDLERS.items()}

__all__ = ["Canvas", "Handle", "Tool", "TOOL_LABELS", "TOOL_SHORTCUTS", "TOOL_TIPS"]
