"""ITAE's histogram of the query photo's patch query norms, with theta marked; a click sets theta."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget


class NormHistogram(QWidget):
    """A histogram of the query photo's last-block patch query norms with the ITAE threshold as a line.

    Clicking on it moves the threshold there (``theta_picked``).
    """

    theta_picked = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(70)
        self._counts: np.ndarray | None = None
        self._edges: np.ndarray | None = None
        self._theta: float | None = None
        self._active = False
        self.setToolTip("Patch query norms of the query photo; click to set the ITAE threshold there")

    def set_norms(self, norms: np.ndarray | None) -> None:
        """New norms (``(N,)``), or ``None`` to clear."""
        if norms is None or len(norms) == 0:
            self._counts = self._edges = None
        else:
            self._counts, self._edges = np.histogram(np.asarray(norms, dtype=np.float64), bins=32)
        self.update()

    def set_theta(self, theta: float, active: bool) -> None:
        """Where the threshold line is and whether ITAE is on."""
        self._theta, self._active = float(theta), active
        self.update()

    @property
    def range(self) -> tuple[float, float] | None:
        """``(min, max)`` norm, or ``None`` without data."""
        if self._edges is None:
            return None
        return float(self._edges[0]), float(self._edges[-1])

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(4, 4, -4, -14)
        p.fillRect(self.rect(), self.palette().base())
        if self._counts is None or self._edges is None:
            p.setPen(self.palette().placeholderText().color())
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "open a photo to see query norms")
            p.end()
            return
        lo, hi = float(self._edges[0]), float(self._edges[-1])
        span = max(hi - lo, 1e-9)
        top = max(int(self._counts.max()), 1)
        n = len(self._counts)
        bw = r.width() / n
        for i, c in enumerate(self._counts):
            above = self._theta is not None and self._edges[i] >= self._theta
            col = QColor(235, 110, 60) if (above and self._active) else QColor(90, 140, 210)
            bh = r.height() * c / top
            p.fillRect(QRectF(r.x() + i * bw + 0.5, r.bottom() - bh, bw - 1, bh), col)
        p.setPen(self.palette().windowText().color())
        f = p.font()
        f.setPointSizeF(max(f.pointSizeF() - 1.5, 6))
        p.setFont(f)
        p.drawText(QRectF(r.x(), r.bottom() + 1, r.width(), 12), Qt.AlignmentFlag.AlignLeft, f"{lo:.1f}")
        p.drawText(QRectF(r.x(), r.bottom() + 1, r.width(), 12), Qt.AlignmentFlag.AlignRight, f"{hi:.1f}")
        if self._theta is not None:
            x = r.x() + (self._theta - lo) / span * r.width()
            if r.x() <= x <= r.right():
                pen = QPen(QColor(220, 40, 40) if self._active else QColor(150, 150, 150), 2)
                p.setPen(pen)
                p.drawLine(int(x), int(r.top()), int(x), int(r.bottom()))
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        rng = self.range
        if rng is None:
            return
        r = QRectF(self.rect()).adjusted(4, 4, -4, -14)
        t = (event.position().x() - r.x()) / max(r.width(), 1)
        self.theta_picked.emit(rng[0] + min(max(t, 0.0), 1.0) * (rng[1] - rng[0]))
