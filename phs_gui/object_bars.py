"""Per-object score bars on the result tiles: with several objects, each tile shows one small bar per object,
in the object's colour, so a person sees why a photo matched (and which excluded object it holds).

A bar's length is the photo's cosine with that object placed between the lowest and the highest cosine
of that object among the results shown (at least a sliver, so a bar is always visible); an excluded object's
bar is hatched. The exact cosines are in the tile's tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRect, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import QListWidget, QStyledItemDelegate, QStyleOptionViewItem

from phs_gui.objects_state import PALETTE

BAR_H = 5
BAR_GAP = 2
BAR_MARGIN = 4
MIN_FRACTION = 0.08


def bar_rects(item: QRect, n: int) -> list[QRect]:
    """The full-length rectangle of each of ``n`` bars on a tile whose item rectangle is ``item`` (viewport
    pixels): stacked from the tile's top edge, inset by :data:`BAR_MARGIN`."""
    w = max(item.width() - 2 * BAR_MARGIN, 4)
    return [QRect(item.left() + BAR_MARGIN, item.top() + BAR_MARGIN + j * (BAR_H + BAR_GAP), w, BAR_H)
            for j in range(n)]


def fractions(rows: list, k: int) -> list[float]:
    """Bar lengths in ``[MIN_FRACTION, 1]`` of row ``k``'s objects, each against that object's range over ``rows``."""
    objs = rows[k].objects
    out = []
    for j, (s, _, _) in enumerate(objs):
        col = [r.objects[j][0] for r in rows if len(r.objects) > j]
        lo, hi = min(col), max(col)
        f = 1.0 if hi - lo < 1e-9 else (s - lo) / (hi - lo)
        out.append(MIN_FRACTION + (1 - MIN_FRACTION) * f)
    return out


class ObjectBarsDelegate(QStyledItemDelegate):
    """Paints a result tile as usual, then its per-object bars (rows of ``grid._shown``)."""

    def __init__(self, grid: QListWidget) -> None:
        super().__init__(grid)
        self.grid = grid

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        rows = getattr(self.grid, "_shown", [])
        k = index.row()
        if not 0 <= k < len(rows) or len(rows[k].objects) < 2:
            return
        painter.save()
        for rect, f, (_, colour, excluded) in zip(bar_rects(option.rect, len(rows[k].objects)),
                                                  fractions(rows, k), rows[k].objects):
            c = QColor(*PALETTE[colour % len(PALETTE)])
            painter.fillRect(rect, QColor(0, 0, 0, 150))
            fill = QRect(rect.left(), rect.top(), max(int(rect.width() * f), 2), rect.height())
            painter.fillRect(fill, QBrush(c, Qt.BrushStyle.Dense3Pattern) if excluded else c)
            if excluded:
                painter.setPen(QPen(c, 1))
                painter.drawRect(fill.adjusted(0, 0, -1, -1))
        painter.restore()


def objects_tooltip(row: object) -> str:
    """The tooltip line of a row's per-object cosines (``""`` with one object)."""
    objs = getattr(row, "objects", ())
    if len(objs) < 2:
        return ""
    return "Objects: " + ", ".join(f"{j}{' (excluded)' if ex else ''} {s:.3f}" for j, (s, _, ex) in
                                   enumerate(objs, 1))
