"""The Objects list of the Search panel: each object of the query with its colour, wanted or excluded, pinned
or not, and whether a photo must hold all of the wanted objects or any of them. The panel holds no state of
its own: it shows an :class:`phs_gui.controllers.objects.ObjectsView` and says what the person asked for."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from phs_gui.objects_state import PALETTE, QueryObject
from phs_gui.result_rows import shown


def swatch(colour: int, excluded: bool = False, px: int = 14) -> QPixmap:
    """A square of an object's colour (crossed out for an excluded object)."""
    pm = QPixmap(px, px)
    pm.fill(QColor(*PALETTE[colour % len(PALETTE)]))
    if excluded:
        from PySide6.QtGui import QPainter, QPen

        p = QPainter(pm)
        p.setPen(QPen(QColor(0, 0, 0), 2))
        p.drawLine(2, 2, px - 2, px - 2)
        p.drawLine(2, px - 2, px - 2, 2)
        p.end()
    return pm


def describe(n: int, o: QueryObject, photo: str) -> str:
    """One line of the list: number, mark, wanted or excluded, pinned, the photo when it is another."""
    st = o.state
    mark = ("box" if st.box is not None else "painted area" if st.mask is not None
            else f"{len(st.points)} point{'s' if len(st.points) != 1 else ''}" if st.points else "nothing marked yet")
    parts = [f"{n}. {mark}", "excluded" if o.excluded else "wanted"]
    if o.pinned:
        parts.append("pinned")
    if o.photo != photo:
        parts.append(f"on {shown(Path(o.photo).name)}")
    return " · ".join(parts)


class ObjectsPanel(QGroupBox):
    """The list of objects and its buttons.

    Signals:
        new_requested(): start the next object (N).
        selected(int): an object chosen in the list.
        remove_requested(int), excluded_toggled(int), pinned_toggled(int): on the chosen object.
        combine_changed(str): ``and`` or ``or``.
    """

    new_requested = Signal()
    selected = Signal(int)
    remove_requested = Signal(int)
    excluded_toggled = Signal(int)
    pinned_toggled = Signal(int)
    combine_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Objects", parent)
        lay = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setToolTip("The objects of the query, each in its colour. Choose one to edit it (on this photo) "
                             "or to see its heads.")
        self.new = QPushButton("New object (N)")
        self.exclude = QPushButton("Exclude (X)")
        self.exclude.setCheckable(True)
        self.exclude.setToolTip("Photos that hold this object are lowered instead of wanted")
        self.pin = QPushButton("Pin this object (K)")
        self.pin.setCheckable(True)
        self.pin.setToolTip("Keep this object in the query when another photo is opened")
        self.remove = QPushButton("Remove")
        self.all = QRadioButton("all (AND)")
        self.any = QRadioButton("any (OR)")
        self.all.setChecked(True)
        self.all.setToolTip("Photos that hold every wanted object first")
        self.any.setToolTip("Photos that hold at least one wanted object first")
        row1, self.more = QHBoxLayout(), QWidget()  # with one object, only the first row: the panel stays small
        row1.addWidget(self.new)
        row1.addWidget(self.pin)
        more = QVBoxLayout(self.more)
        more.setContentsMargins(0, 0, 0, 0)
        row2, row3 = QHBoxLayout(), QHBoxLayout()
        row2.addWidget(self.exclude)
        row2.addWidget(self.remove)
        row3.addWidget(self.all)
        row3.addWidget(self.any)
        more.addLayout(row2)
        more.addLayout(row3)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(self.list)
        lay.addLayout(row1)
        lay.addWidget(self.more)
        self.list.hide()
        self.more.hide()
        self.new.clicked.connect(self.new_requested.emit)
        self.list.currentRowChanged.connect(lambda r: r >= 0 and self.selected.emit(r))
        self.remove.clicked.connect(lambda: self._on_row(self.remove_requested))
        self.exclude.clicked.connect(lambda: self._on_row(self.excluded_toggled))
        self.pin.clicked.connect(lambda: self._on_row(self.pinned_toggled))
        self.all.toggled.connect(lambda on: on and self.combine_changed.emit("and"))
        self.any.toggled.connect(lambda on: on and self.combine_changed.emit("or"))
        self.items: tuple[QueryObject, ...] = ()

    def _on_row(self, signal: Signal) -> None:
        r = self.list.currentRow()
        if r >= 0:
            signal.emit(r)

    def show_view(self, view: object) -> None:
        """Show an :class:`phs_gui.controllers.objects.ObjectsView` (emits nothing)."""
        items, shown_row = view.items, view.shown  # type: ignore[attr-defined]
        self.items = items
        blockers = [w.blockSignals(True) for w in (self.list, self.all, self.any)]
        try:
            self.list.clear()
            for n, o in enumerate(items, 1):
                it = QListWidgetItem(QIcon(swatch(o.colour, o.excluded)), describe(n, o, view.photo))  # type: ignore[attr-defined]
                self.list.addItem(it)
            self.list.setCurrentRow(shown_row)
            (self.all if view.combine == "and" else self.any).setChecked(True)  # type: ignore[attr-defined]
        finally:
            for w, b in zip((self.list, self.all, self.any), blockers):
                w.blockSignals(b)
        cur = items[shown_row] if 0 <= shown_row < len(items) else None
        self.exclude.setChecked(bool(cur and cur.excluded))
        self.pin.setChecked(bool(cur and cur.pinned))
        self.list.setFixedHeight(max(min(len(items), 6), 1) * max(self.list.sizeHintForRow(0), 16) + 6)
        self.remove.setEnabled(len(items) > 1)
        self.list.setVisible(len(items) > 1)
        self.more.setVisible(len(items) > 1)
        self.setTitle(f"Objects ({len(items)})" if len(items) > 1 else "Objects")


def install_actions(win: QMainWindow, panel: ObjectsPanel) -> tuple[QAction, QAction, QAction]:
    """The keys N (next object), X (exclude or want) and K (pin) in the Edit menu, acting on the panel."""
    edit = next((a.menu() for a in win.menuBar().actions() if a.menu() and "Edit" in a.text()), None)
    acts = []
    for text, key, fn in (("New object", "N", panel.new_requested.emit),
                          ("Exclude or want the object", "X", panel.exclude.click),
                          ("Pin this object", "K", panel.pin.click)):
        a = QAction(text, win)
        a.setShortcut(QKeySequence(key))
        a.triggered.connect(fn)
        win.addAction(a)
        if isinstance(edit, QMenu):
            edit.addAction(a)
        acts.append(a)
    return acts[0], acts[1], acts[2]


def attach_objects(win: QMainWindow) -> object:
    """Build the Objects list (in the Search panel), its controller, the other objects' marks on the photo and
    the per-object bars on the result tiles, and connect them; returns the controller."""
    from phs_gui.controllers.objects import ObjectsController
    from phs_gui.object_bars import ObjectBarsDelegate
    from phs_gui.object_marks import ObjectMarks

    q, c, grid = win.query, win.canvas, win.docks.results  # type: ignore[attr-defined]
    ctl = ObjectsController(q, win)
    panel = ObjectsPanel()
    win.docks.controls.layout().insertWidget(1, panel)  # type: ignore[attr-defined]
    marks = ObjectMarks(c)
    grid.setItemDelegate(ObjectBarsDelegate(grid))
    win.objects_panel, win.object_marks = panel, marks  # type: ignore[attr-defined]
    install_actions(win, panel)
    win.docks.heads.head_toggled.disconnect(q.toggle_head)  # a head is forced for the object shown
    win.docks.heads.head_toggled.connect(ctl.toggle_head)
    panel.new_requested.connect(ctl.new_object)
    panel.selected.connect(ctl.select)
    panel.remove_requested.connect(ctl.remove)
    panel.excluded_toggled.connect(ctl.toggle_excluded)
    panel.pinned_toggled.connect(ctl.toggle_pinned)
    panel.combine_changed.connect(ctl.set_combine)
    ctl.changed.connect(panel.show_view)
    ctl.changed.connect(marks.show)
    ctl.message.connect(win.show_message)  # type: ignore[attr-defined]
    q.photo_opened.connect(lambda _out: marks.clear())
    for sig in (q.state_restored, q.results_answered, c.prompt_changed):
        sig.connect(ctl.refresh)
    q.results_answered.connect(ctl.keep_features)
    win.model.loaded.connect(ctl.forget_features)  # type: ignore[attr-defined]
    return ctl
