"""The window's parts, built and returned as small named groups: the docks with their panels, the actions
with their menus and toolbar, the status bar's labels, and the banner above the photo.

Builders only make widgets and place them; what an action or a button does is connected in
:meth:`phs_gui.main_window.MainWindow._connect`, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QWidget,
)

from phs_gui.canvas import TOOL_LABELS, TOOL_SHORTCUTS, TOOL_TIPS, Tool
from phs_gui.controls import Controls
from phs_gui.heads import HeadsPanel
from phs_gui.layout import guard_wheel
from phs_gui.library import LibraryPanel
from phs_gui.result_rows import shown
from phs_gui.results import ResultsGrid, ResultsPanel


@dataclass
class Actions:
    """The window's actions, grouped by purpose, and the toolbar's brush size box."""

    open: QAction
    recent: QMenu
    add_folder: QAction
    export: QAction
    quit: QAction
    undo: QAction
    redo: QAction
    clear: QAction
    fit: QAction
    zoom_in: QAction
    zoom_out: QAction
    reset_layout: QAction
    shortcuts: QAction
    brush_down: QAction
    brush_up: QAction
    train: QAction
    keep_current: QAction
    brush_spin: QSpinBox
    tools: dict[Tool, QAction] = field(default_factory=dict)

    def show_brush_size(self, px: int) -> None:
        """Show the brush size set on the canvas (without setting it back)."""
        b = self.brush_spin.blockSignals(True)
        self.brush_spin.setValue(px)
        self.brush_spin.blockSignals(b)


@dataclass
class Docks:
    """The dock widgets and the panels in them."""

    controls: Controls
    library: LibraryPanel
    heads: HeadsPanel
    results: ResultsGrid
    left: QDockWidget
    right: QDockWidget
    bottom: QDockWidget
    library_dock: QDockWidget
    results_panel: ResultsPanel

    @property
    def all(self) -> tuple[QDockWidget, ...]:
        """Every dock, in the order the default layout places them."""
        return self.left, self.library_dock, self.right, self.bottom


@dataclass
class StatusBar:
    """The status bar's permanent widgets."""

    model: QLabel
    device: QLabel
    indexed: QLabel
    timing: QLabel
    demo: QLabel
    zoom: QLabel
    cancel_load: QToolButton
    train: QLabel
    train_progress: QProgressBar
    cancel_train: QToolButton

    def show_training(self, text: str, done: int, total: int) -> None:
        """A training run's line and bar (``total`` 0: busy, -1: bar unchanged)."""
        self.train.setText(text)
        if total >= 0:
            self.train_progress.setRange(0, total)
            self.train_progress.setValue(done)

    def show_indexed(self, n: int, folders: list) -> None:
        """Photos searched now, in how many folders (``folders``: their paths; none: "No folder is searched")."""
        self.indexed.setText(searched_text(n, len(folders)))
        self.indexed.setToolTip("Searched: " + ", ".join(shown(f) for f in folders) if folders else
                                "Check a folder under Library to search it")


def searched_text(n: int, folders: int) -> str:
    """``1,234 photos in 3 folders``, or ``No folder is searched``."""
    if folders == 0:
        return "No folder is searched"
    return f"{n:,} {'photo' if n == 1 else 'photos'} in {folders} {'folder' if folders == 1 else 'folders'}"


class Banner(QFrame):
    """One sentence above the photo: information, the demo notice, or an error; closable."""

    STYLES = {
        "info": "background:#24425f; color:#e8f1fb;",
        "demo": "background:#5a4712; color:#fff4d6;",
        "error": "background:#6b2020; color:#ffe9e9;",
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        self.action_button = QPushButton()
        self.action_button.hide()
        self.action_button.clicked.connect(self._on_action)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.level = "info"
        self.kind = ""
        self._action: Callable[[], None] | None = None
        self.hide()

    def show_text(self, text: str, level: str = "info", action: tuple[str, Callable[[], None]] | None = None,
                  kind: str = "") -> None:
        """Show a sentence at a level (``info``, ``demo``, ``error``), with an optional ``(label, slot)``
        button; ``kind`` names the message so that the window can take it back when it no longer holds."""
        self.level, self.kind = level, kind
        self._action = None if action is None else action[1]
        self.action_button.setVisible(action is not None)
        if action is not None:
            self.action_button.setText(action[0])
        self.setStyleSheet(f"Banner {{{self.STYLES.get(level, self.STYLES['info'])} border-radius:4px;}}"
                           f"QLabel {{{self.STYLES.get(level, self.STYLES['info'])}}}")
        self.label.setText(text)
        self.show()

    def _on_action(self) -> None:
        if self._action is not None:
            self._action()

    def hide_kind(self, kind: str) -> None:
        """Hide the banner if it shows the message ``kind``."""
        if self.kind == kind and self.isVisible():
            self.hide()

    def hide_errors(self) -> None:
        """Hide the banner if it shows an error (what it said no longer holds)."""
        if self.level == "error" and self.isVisible():
            self.hide()

    @property
    def text(self) -> str:
        """The sentence shown (empty when hidden)."""
        return self.label.text() if self.isVisible() else ""


def _dock(win: QMainWindow, title: str, name: str, widget: QWidget) -> QDockWidget:
    d = QDockWidget(title, win)
    d.setObjectName(name)
    d.setWidget(widget)
    d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                  | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                  | QDockWidget.DockWidgetFeature.DockWidgetClosable)
    return d


def build_docks(win: QMainWindow) -> Docks:
    """The Search, Library, Heads and Results docks, placed in ``win``."""
    controls = Controls()
    library = LibraryPanel()
    heads = HeadsPanel(columns=2)
    results = ResultsPanel()
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(controls)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    guard_wheel(controls)
    left = _dock(win, "Search", "dock-search", scroll)
    left.setMinimumWidth(250)
    lib = _dock(win, "Library", "dock-library", library)
    right = _dock(win, "Heads of the last block", "dock-heads", heads)
    bottom = _dock(win, "Results", "dock-results", results)
    win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
    win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, lib)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, right)
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, bottom)
    win.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    win.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    bottom.topLevelChanged.connect(lambda _floating: results.grid.relayout())
    return Docks(controls, library, heads, results.grid, left, right, bottom, lib, results)


def _action(win: QMainWindow, text: str, shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
    a = QAction(text, win)
    if shortcut is not None:
        a.setShortcut(QKeySequence(shortcut))
    if tip:
        a.setToolTip(tip)
        a.setStatusTip(tip)
    return a


def _make_actions(win: QMainWindow) -> Actions:
    spin = QSpinBox()
    spin.setRange(2, 200)
    spin.setSuffix(" px")
    spin.setToolTip("Brush size on the screen (wheel or [ ] on the photo)")
    a = Actions(
        open=_action(win, "&Open photo…", QKeySequence.StandardKey.Open, "Open a query photo (Ctrl+O)"),
        recent=QMenu("Open &recent", win),
        add_folder=_action(win, "&Add photo folder…", None, "Add a folder of photos to search"),
        export=_action(win, "&Export results…", "Ctrl+E",
                       "Write the results (the selected ones, or all) to a CSV or text file (Ctrl+E)"),
        quit=_action(win, "&Quit", "Ctrl+Q", "Quit (Ctrl+Q)"),
        undo=_action(win, "&Undo prompt edit", QKeySequence.StandardKey.Undo, "Undo (Ctrl+Z)"),
        redo=_action(win, "&Redo prompt edit", "Ctrl+Shift+Z", "Redo (Ctrl+Shift+Z)"),
        clear=_action(win, "&Clear prompt", "Delete", "Remove points, box and mask (Del)"),
        fit=_action(win, "&Fit to window", "Ctrl+0", "Show the whole photo (Ctrl+0)"),
        zoom_in=_action(win, "Zoom &in", QKeySequence.StandardKey.ZoomIn),
        zoom_out=_action(win, "Zoom &out", QKeySequence.StandardKey.ZoomOut),
        reset_layout=_action(win, "Reset &layout", None, "Put every panel back where it started"),
        shortcuts=_action(win, "&Keyboard shortcuts", "F1", "Every keyboard shortcut (F1)"),
        brush_down=_action(win, "Smaller brush", "[", "Smaller brush ([)"),
        brush_up=_action(win, "Larger brush", "]", "Larger brush (])"),
        train=_action(win, "&Train learned prompt…", None, "Train the learned prompt for the current model on "
                      "the current photo folder or on generated scenes"),
        keep_current=_action(win, "&Keep folders up to date", None, "Watch the library's folders and index new, "
                             "changed and deleted photos in the background, also those changed while the app was "
                             "closed"),
        brush_spin=spin,
    )
    a.keep_current.setCheckable(True)
    a.redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    a.shortcuts.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
    for action, short in ((a.open, "Open"), (a.undo, "Undo"), (a.redo, "Redo"), (a.clear, "Clear"),
                          (a.fit, "Fit")):
        action.setIconText(short)
    group = QActionGroup(win)
    for tool in Tool:
        t = _action(win, TOOL_LABELS[tool], TOOL_SHORTCUTS[tool], f"{TOOL_TIPS[tool]} ({TOOL_SHORTCUTS[tool]})")
        t.setCheckable(True)
        group.addAction(t)
        a.tools[tool] = t
    a.tools[Tool.BOX].setChecked(True)
    return a


def build_actions(win: QMainWindow, docks: Docks) -> Actions:
    """The actions, in the menus and the toolbar of ``win`` (not yet connected to anything)."""
    a = _make_actions(win)
    bar = win.menuBar()
    file_menu, edit_menu, view_menu, tools_menu = (bar.addMenu(t) for t in ("&File", "&Edit", "&View", "&Tools"))
    file_menu.addAction(a.open)
    file_menu.addMenu(a.recent)
    file_menu.addSeparator()
    file_menu.addActions([a.add_folder, a.keep_current, a.export])
    file_menu.addSeparator()
    file_menu.addAction(a.quit)
    edit_menu.addActions([a.undo, a.redo, a.clear])
    view_menu.addActions([a.fit, a.zoom_in, a.zoom_out])
    view_menu.addSeparator()
    for d, key in zip(docks.all, ("Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4"), strict=True):
        t = d.toggleViewAction()
        t.setShortcut(QKeySequence(key))
        view_menu.addAction(t)
    view_menu.addSeparator()
    view_menu.addAction(a.reset_layout)
    tools_menu.addActions(list(a.tools.values()))
    tools_menu.addSeparator()
    tools_menu.addActions([a.brush_down, a.brush_up])
    tools_menu.addSeparator()
    tools_menu.addAction(a.train)
    bar.addMenu("&Help").addAction(a.shortcuts)
    tb = win.addToolBar("Tools")
    tb.setObjectName("toolbar-main")
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    tb.addAction(a.open)
    tb.addSeparator()
    tb.addActions(list(a.tools.values()))
    tb.addWidget(QLabel(" Brush "))
    tb.addWidget(a.brush_spin)
    tb.addSeparator()
    tb.addActions([a.clear, a.undo, a.redo])
    tb.addSeparator()
    tb.addAction(a.fit)
    return a


def build_status(win: QMainWindow) -> StatusBar:
    """The status bar's labels (model, device, photos indexed, timing, zoom), the demo badge, and the
    cancel buttons and progress of a model load and a training run (hidden until one runs)."""
    sb = win.statusBar()
    s = StatusBar(QLabel("loading model…"), QLabel(""), QLabel("no folder"), QLabel(""), QLabel(" DEMO "),
                  QLabel(""), QToolButton(), QLabel(""), QProgressBar(), QToolButton())
    s.demo.setStyleSheet("background:#8a6d12; color:white; border-radius:3px; font-weight:bold;")
    s.demo.setToolTip("The demo model only knows the synthetic shapes of the demo gallery")
    s.demo.hide()
    s.cancel_load.setText("Cancel loading")
    s.cancel_load.setToolTip("Stop loading this model and keep the current one")
    s.cancel_load.hide()
    sb.addPermanentWidget(s.cancel_load)
    s.train_progress.setMaximumWidth(140)
    s.train_progress.setTextVisible(False)
    s.cancel_train.setText("Cancel training")
    s.cancel_train.setToolTip("Stop training the learned prompt (training again continues from here)")
    for wdg in (s.train, s.train_progress, s.cancel_train):
        wdg.hide()
        sb.addPermanentWidget(wdg)
    sb.addPermanentWidget(s.demo)
    s.zoom.setToolTip("Zoom of the photo (Ctrl+wheel; Ctrl+0 fits it)")
    for w in (s.model, s.device, s.indexed, s.timing, s.zoom):
        sb.addPermanentWidget(w)
    return s
