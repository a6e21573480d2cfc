"""The heads panel: every last-block head's [CLS] attention over the query photo, its ROI score, and which
heads PHS kept; a click forces a head on or off.

Signals: ``head_toggled(index)`` when a tile is clicked, ``reset_requested()`` for "Reset heads". The panel
only draws what the window gives it (:meth:`HeadsPanel.show_outcome`); it computes nothing but colours.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from phs_gui.render import blend_on_grey, dimmed_grey, format_score, shrink, to_qimage

SELECTED = QColor(255, 196, 0)
FORCED_ON = QColor(60, 220, 120)
FORCED_OFF = QColor(235, 70, 70)
TILE_PX = 112
CAPTION_PX = 18


class HeadTile(QWidget):
    """One head: its map over the photo, ``H<i>`` and the ROI score; outlined when selected."""

    clicked = Signal(int)

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.pixmap = QPixmap()
        self.score: float | None = None
        self.selected = False
        self.all_used = False  # no prompt: every head is used (plain search), none is dropped
        self.forced: str | None = None  # "on", "off" or None
        self.setFixedSize(TILE_PX + 6, TILE_PX + CAPTION_PX + 6)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self._update_tip()

    def set_data(self, pixmap: QPixmap, score: float | None, selected: bool | None, forced: str | None) -> None:
        """Show a head's map, score and state (``selected=None``: no prompt, every head is used)."""
        self.all_used = selected is None
        self.pixmap, self.score, self.selected, self.forced = pixmap, score, bool(selected), forced
        self._update_tip()
        self.update()

    def _update_tip(self) -> None:
        if self.all_used:
            self.setToolTip(f"Head {self.index}: used (no object marked, every head counts).")
            return
        state = "kept" if self.selected else "dropped"
        # What the score is: the head's [CLS] attention summed over the marked patches (mask-weighted, less
        # over negative marks) with ROI Sum, the largest patch's with Max; not a share: it may pass 1 or 0.
        score = "" if self.score is None else (f", ROI score {format_score(self.score)} (its [CLS] attention "
                                               "on the marked patches)")
        if self.forced:
            action = "Click to let PHS choose it again."
            state += f" (forced {self.forced} by hand)"
        else:
            action = f"Click to force it {'off' if self.selected else 'on'}."
        self.setToolTip(f"Head {self.index}: {state}{score}. {action}")

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(3, 3, TILE_PX, TILE_PX)
        if not self.pixmap.isNull():
            pm = self.pixmap.scaled(QSize(TILE_PX, TILE_PX), Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
            x = area.x() + (area.width() - pm.width()) / 2
            y = area.y() + (area.height() - pm.height()) / 2
            p.drawPixmap(int(x), int(y), pm)
            area = QRectF(x, y, pm.width(), pm.height())
        if self.selected or self.forced:
            color = {"on": FORCED_ON, "off": FORCED_OFF}.get(self.forced or "", SELECTED)
            pen = QPen(color, 3)
            if self.forced == "off":
                pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(area.adjusted(-1.5, -1.5, 1.5, 1.5))
        p.setPen(self.palette().windowText().color() if not self.selected else SELECTED.darker(115))
        f = QFont(self.font())
        f.setBold(self.selected)
        p.setFont(f)
        text = f"H{self.index}"
        if self.score is not None:
            text += f"  {format_score(self.score)}"
        if self.forced:
            text += "  ✓" if self.forced == "on" else "  ✗"
        p.drawText(QRectF(0, TILE_PX + 6, self.width(), CAPTION_PX), Qt.AlignmentFlag.AlignCenter, text)
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.index)


def render_maps(
    grey_tile: np.ndarray, grey_big: np.ndarray, maps: np.ndarray, combined: np.ndarray
) -> tuple[list[QImage], QImage]:
    """Colour every head's map and the combined one over the photo (thread-safe: call it in a worker).

    Args:
        grey_tile, grey_big: backdrops from :attr:`HeadsPanel.backdrops`.
        maps: ``(h, gh, gw)`` attention per head.
        combined: ``(gh, gw)`` the kept heads' mean map.
    """
    tiles = [to_qimage(blend_on_grey(grey_tile, maps[i])) for i in range(maps.shape[0])]
    return tiles, to_qimage(blend_on_grey(grey_big, combined, alpha=0.65))


COMBINED_CAPTION = "<b>Selected heads, combined</b>"
MARKER_NAMES = {"lvp": "the learned prompt", "red-circle": "the red circle", "lvp+phs": "the learned prompt"}


class HeadsPanel(QWidget):
    """A combined map of the selected heads on top, one tile per head below."""

    head_toggled = Signal(int)
    reset_requested = Signal()

    def __init__(self, parent: QWidget | None = None, columns: int = 3) -> None:
        super().__init__(parent)
        self._columns = columns
        self._photo: np.ndarray | None = None
        self._grey_big: np.ndarray | None = None
        self._grey_tile: np.ndarray | None = None
        self.tiles: list[HeadTile] = []
        self.combined = QLabel()
        self.combined.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.combined.setMinimumHeight(160)
        self.combined.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.summary = QLabel("Mark the object on the photo to choose heads.")
        self.summary.setWordWrap(True)
        self.reset_button = QPushButton("Reset heads")
        self.reset_button.setToolTip("Forget the heads forced on or off by hand")
        self.reset_button.setEnabled(False)
        self.reset_button.clicked.connect(self.reset_requested)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.reset_button)
        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setSpacing(4)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._grid_host)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self._columns * (TILE_PX + 10) + 24)  # ``columns`` is the fewest shown
        self._scroll = scroll
        self._shown_columns = self._columns
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.caption = QLabel(COMBINED_CAPTION)
        self.caption.setWordWrap(True)  # a longer caption (a marker method) must not widen the panel
        lay.addWidget(self.caption)
        lay.addWidget(self.combined)
        lay.addLayout(top)
        lay.addWidget(scroll, 1)

    def set_photo(self, rgb: np.ndarray | None) -> None:
        """The query photo (any size; a small copy is kept for drawing)."""
        self._photo = None if rgb is None else shrink(rgb, 224)
        self._grey_big = None if rgb is None else dimmed_grey(self._photo)
        self._grey_tile = None if rgb is None else dimmed_grey(shrink(rgb, TILE_PX))
        if rgb is None:
            self._set_tiles(0)
            self.combined.clear()

    def _set_tiles(self, n: int) -> None:
        if len(self.tiles) == n:
            return
        for t in self.tiles:
            self._grid.removeWidget(t)
            t.deleteLater()
        self.tiles = []
        for i in range(n):
            t = HeadTile(i)
            t.clicked.connect(self.head_toggled)
            self._grid.addWidget(t, i // self._shown_columns, i % self._shown_columns)
            self.tiles.append(t)

    def columns_fitting(self) -> int:
        """As many tile columns as the panel's width holds, at least the ``columns`` it was made with."""
        room = self._scroll.width() - 24
        return max(self._columns, room // (TILE_PX + 6 + self._grid.spacing()))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        cols = self.columns_fitting()
        if cols != self._shown_columns:  # a wider panel shows more heads side by side
            self._shown_columns = cols
            for i, t in enumerate(self.tiles):
                self._grid.removeWidget(t)
                self._grid.addWidget(t, i // cols, i % cols)

    def show_outcome(
        self,
        maps: np.ndarray,
        scores: np.ndarray | None,
        selected: np.ndarray | None,
        combined: np.ndarray,
        force_on: tuple[int, ...] = (),
        force_off: tuple[int, ...] = (),
    ) -> None:
        """Draw every head.

        Args:
            maps: ``(h, gh, gw)`` attention per head.
            scores: ``(h,)`` ROI scores, or ``None`` without a prompt.
            selected: ``(h,)`` bool, or ``None`` without a prompt.
            combined: ``(gh, gw)`` the selected heads' mean map.
            force_on, force_off: heads forced by hand.
        """
        if self._grey_big is None or self._grey_tile is None:
            return
        tiles, big = render_maps(self._grey_tile, self._grey_big, maps, combined)
        self.show_rendered(tiles, big, scores, selected, force_on, force_off)

    def show_answer(self, ans: object) -> None:
        """Draw a :class:`phs_gui.jobs.QueryAnswer`'s maps (already coloured), scores and kept heads."""
        sel = ans.outcome.selection  # type: ignore[attr-defined]
        if ans.combined is not None:  # type: ignore[attr-defined]
            self.show_rendered(ans.tiles, ans.combined, None if sel is None else sel.scores,  # type: ignore[attr-defined]
                               None if sel is None else sel.selected, ans.force_on, ans.force_off,  # type: ignore[attr-defined]
                               ans.outcome.query.method)  # type: ignore[attr-defined]
        if ans.idle_forced:  # type: ignore[attr-defined]
            on, off = ans.idle_forced  # type: ignore[attr-defined]
            heads = ", ".join([f"H{i} on" for i in on] + [f"H{i} off" for i in off])
            self.summary.setText(self.summary.text() + f" Forced by hand ({heads}): not in effect until an "
                                 "object is marked.")

    @property
    def backdrops(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(tile, big)`` grey backdrops of the photo for :func:`render_maps` (``None`` without a photo)."""
        if self._grey_big is None or self._grey_tile is None:
            return None
        return self._grey_tile, self._grey_big

    def show_rendered(
        self,
        tiles: list[QImage],
        big: QImage,
        scores: np.ndarray | None,
        selected: np.ndarray | None,
        force_on: tuple[int, ...] = (),
        force_off: tuple[int, ...] = (),
        method: str = "phs",
    ) -> None:
        """Show maps already coloured by :func:`render_maps` (in a worker) with their scores and states.

        ``method`` is the method that ran: for a marker method (``lvp``, ``red-circle``, ``lvp+phs``) the maps
        are those of the photo with the marker pasted, and the panel says so.
        """
        h = len(tiles)
        self._set_tiles(h)
        for i, tile in enumerate(self.tiles):
            forced = "on" if i in force_on else "off" if i in force_off else None
            tile.set_data(QPixmap.fromImage(tiles[i]), None if scores is None else float(scores[i]),
                          None if selected is None else bool(selected[i]), forced)
        pm = QPixmap.fromImage(big)
        target = self.combined.size()
        self.combined.setPixmap(pm.scaled(QSize(max(target.width() - 8, 64), max(target.height() - 8, 64)),
                                          Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation))
        self.reset_button.setEnabled(bool(force_on or force_off))
        marker = MARKER_NAMES.get(method)
        which = "Selected heads" if selected is not None else "Every head"
        self.caption.setText(COMBINED_CAPTION if marker is None else f"<b>{which}, combined, with {marker} pasted</b>")
        if marker is not None and selected is None:
            self.summary.setText(f"{h} heads on the photo with {marker} pasted where the object is marked; "
                                 "every head is kept (the marker points at the object).")
        elif selected is None:
            self.summary.setText(f"{h} heads. Mark the object to choose heads (now: all heads, plain search).")
        else:
            kept = ", ".join(f"H{i}" for i in np.flatnonzero(selected))
            forced = []
            if force_on:
                forced.append("forced on: " + ", ".join(f"H{i}" for i in force_on))
            if force_off:
                forced.append("forced off: " + ", ".join(f"H{i}" for i in force_off))
            extra = f" ({'; '.join(forced)}; click a forced head to let PHS choose it again)" if forced else \
                ". Click a head to force it on or off"
            where = "" if marker is None else f" on the photo with {marker} pasted"
            self.summary.setText(f"Kept {int(selected.sum())} of {h}{where}: {kept}{extra}.")

    def selected_tiles(self) -> list[int]:
        """Indices of the tiles drawn as selected (tests use it)."""
        return [t.index for t in self.tiles if t.selected]
