"""The main window, assembled from parts: canvas in the middle, controls and library on the left, heads on
the right, results at the bottom, actions in a toolbar and menus, facts in the status bar.

Heavy work runs in :class:`phs_gui.workers.Worker` off the GUI thread: loading a model, writing the demo
gallery and indexing in a pool; everything that uses the engine (encoding the query photo, answering a
prompt or option change with heads, maps and results, colouring the maps) in one :class:`SerialLane`, where
the latest request wins: a request overtaken before it starts never runs, an answer for a photo no longer
shown is dropped, and while a box is dragged each answer is drawn as it comes (the final box's follows).
The GUI thread only paints. Errors appear as one sentence in the banner above the photo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.defaults import LEARNED_METHODS, MARKER_METHODS
from core.errors import PHSError, WeightsError, WeightsNotFoundError
from core.imageio import load_image
from core.library import IndexMissingError, IndexProgress, IndexReport, index_folder
from core.models.backbones import get_spec, list_models, weights_available
from core.paths import data_dir
from core.synthetic.gallery import (
    DEMO_COUNT,
    demo_gallery_dir,
    demo_gallery_ready,
    gallery_categories,
    write_demo_gallery,
)
from phs_gui.canvas import TOOL_LABELS, TOOL_SHORTCUTS, TOOL_TIPS, Canvas, Tool
from phs_gui.controls import Controls
from phs_gui.heads import TILE_PX, HeadsPanel, render_maps
from phs_gui.library import LibraryPanel
from phs_gui.preview import PreviewDialog
from phs_gui.prompt_state import History, PromptState
from phs_gui.render import to_qimage, warm_up
from phs_gui.results import ResultRow, ResultsGrid, ResultsPanel, group_hits
from phs_gui.session import SearchOptions, SearchSession
from phs_gui.settings import Preferences, load_preferences, save_preferences
from phs_gui.workers import SerialLane, Worker, WorkerPool

if TYPE_CHECKING:  # torch loads in the worker that loads the model, so the window shows first
    from core.method.engine import PHSEngine
    from core.search import Outcome

log = logging.getLogger("phs_gui")

EngineLoader = Callable[[str, str], "PHSEngine"]
PHOTO_FILTER = "Photos (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.gif *.heic *.heif *.avif);;All files (*)"
PREVIEW_DEBOUNCE_MS = 30


def default_engine_loader(name: str, device: str) -> PHSEngine:
    """Load a registry model on a device (weights from resources or the Hugging Face cache, never random)."""
    from core.method.engine import load_engine

    return load_engine(name, device=device)


@dataclass(frozen=True, eq=False)
class EncodedPhoto:
    """What the encode worker hands the window: everything display-sized, prepared off the GUI thread.

    Attributes:
        path: the photo file.
        size: ``(W, H)`` of the photo (EXIF orientation applied), the prompt coordinate frame.
        display: the photo for the canvas, longer side at most :data:`DISPLAY_MAX_SIDE`.
        small: ``(h, w, 3)`` uint8 copy for the heads panel.
        norms: ``(gh * gw,)`` query norms for the ITAE histogram.
        encode_ms: time the engine took.
    """

    path: str
    size: tuple[int, int]
    display: QImage
    small: np.ndarray
    norms: np.ndarray
    encode_ms: float


DISPLAY_MAX_SIDE = 2560


def _load_and_encode(session: SearchSession, path: str, *, report: object, cancel: object) -> EncodedPhoto:
    """Worker body: decode the photo once, encode it, and prepare what the window shows."""
    img = load_image(path)
    session.encode(path)  # decoded from the file exactly as the library decodes it
    disp = img.copy()
    disp.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    small = img.copy()
    small.thumbnail((224, 224))
    return EncodedPhoto(path, img.size, to_qimage(np.asarray(disp)), np.asarray(small), session.query_norms(),
                        session.last_encode_ms or 0.0)


@dataclass(frozen=True, eq=False)
class QueryAnswer:
    """What the query worker hands the window: the outcome and its maps already coloured.

    Attributes:
        gen: the request's number (an answer older than the one drawn is dropped).
        outcome: heads, maps and hits from the query service.
        force_on, force_off: heads forced by hand in the request.
        tiles: one coloured map per head; combined: the kept heads' map.
        ms: milliseconds from the request to the answer, in the worker.
        rows: the results grouped for the grid.
        marker: how the marker looks on the photo (``ellipse``, ``circle``, ``square``) when a marker method
            ran, else ``None``; where it sits is ``outcome.query.placement``.
        missing_prompt: a learned prompt was asked for but none exists for the model (PHS ran instead).
    """

    gen: int
    outcome: Outcome
    force_on: tuple[int, ...]
    force_off: tuple[int, ...]
    tiles: list
    combined: QImage | None
    ms: float
    rows: list[ResultRow] = field(default_factory=list)
    marker: str | None = None
    missing_prompt: bool = False


def _query_job(session: SearchSession, gen: int, prompt: object, options: SearchOptions,
               force_on: tuple[int, ...], force_off: tuple[int, ...], backdrops: tuple | None,
               query_path: str | None = None, *, report: object, cancel: object) -> QueryAnswer | None:
    """Worker body: heads, maps and results for one request, maps coloured for the heads panel."""
    if cancel.is_set():  # type: ignore[attr-defined]
        return None
    t0 = time.perf_counter()
    out = session.run(prompt, options, force_on, force_off)  # type: ignore[arg-type]
    missing = out.fell_back  # no learned prompt to paste yet: PHS answered, the window offers to train one
    marker = session.marker_shape(out.query.method) if out.query.placement is not None else None
    tiles, big = ([], None) if backdrops is None else render_maps(backdrops[0], backdrops[1], out.maps,
                                                                 out.combined_map())
    rows = group_hits(list(out.hits), query_path)
    return QueryAnswer(gen, out, force_on, force_off, tiles, big, (time.perf_counter() - t0) * 1000, rows,
                       marker, missing)


def _train_job(name: str, device: str, source: str, settings: dict, *, report: Callable,
               cancel: object) -> object:
    """Worker body: train a learned prompt for the model ``name`` on a photo folder or generated scenes
    (``source == "synthetic"``), as ``phs lvp train`` does, and write it where the app looks for it.

    A model of its own in fp32 (the one the window searches with stays free); progress is reported as
    ``("scenes", done, total)`` while scenes are generated, then one :class:`TrainProgress` per step; a
    cancel stops after the current step (a checkpoint keeps the progress; training again resumes).
    """
    from core.method import lvp
    from core.method.engine import load_engine
    from core.method.lvp_train import TrainCancelled, TrainConfig, engine_resample, train_prompt
    from core.synthetic.training_images import training_pools

    cfg = TrainConfig(**settings)
    cfg.check()
    engine = load_engine(name, device=device, precision="fp32")
    try:
        s, resample = engine.input_size, engine_resample(engine)

        def scenes(done: int, total: int) -> None:
            if cancel.is_set():  # type: ignore[attr-defined]
                raise TrainCancelled("Training stopped before the first step.")
            report(("scenes", done, total))

        pool, eval_pool, label = training_pools(source, cfg, s, resample,
                                                progress=scenes if source == "synthetic" else None)
        return train_prompt(engine, pool, cfg, lvp.prompt_path(engine),
                            progress=lambda p: report(p, force=p.step == p.steps),
                            cancel=cancel.is_set, eval_pool=eval_pool, images_label=label)  # type: ignore[attr-defined]
    finally:
        engine.close()


def _where_job(session: SearchSession, path: str, selected: np.ndarray | None, *, report: object,
               cancel: object) -> tuple[str, np.ndarray | None]:
    """Worker body: the query's kept heads over a result photo (``None`` when cancelled)."""
    if cancel.is_set():  # type: ignore[attr-defined]
        return path, None
    return path, session.where_map(path, selected)


def _preview_job(path: str, *, report: object, cancel: object) -> tuple[str, np.ndarray]:
    """Worker body: a result photo decoded display-sized for the preview."""
    img = load_image(path)
    img.thumbnail((1600, 1600))
    return path, np.asarray(img)


def _index_job(folder: str, engine: PHSEngine, *, report: Callable, cancel: object) -> IndexReport:
    """Worker body: index a folder incrementally, reporting progress after every photo."""
    return index_folder(folder, engine, batch_size=8, workers=2, progress=report, cancel=cancel)  # type: ignore[arg-type]


def _demo_job(n: int, *, report: Callable, cancel: object) -> Path:
    """Worker body: write the demo gallery (a few seconds; not cancellable)."""
    return write_demo_gallery(n, progress=lambda d, t: report((d, t)))


def index_summary(n: int, report: IndexReport) -> str:
    """One line that adds up: the photos searchable now and what this run did with every photo it saw."""
    parts = [f"{report.indexed} new"]
    if report.reused:
        parts.append(f"{report.reused} identical to one already indexed")
    parts.append(f"{report.skipped} unchanged")
    parts.append(f"{report.failed} failed")
    if report.removed:
        parts.append(f"{report.removed} gone from the folder")
    return (f"{n} photos searchable; of {report.seen} photos in the folder: {', '.join(parts)} "
            f"({report.seconds:.1f} s).")


@dataclass
class Actions:
    """The window's actions, grouped by purpose."""

    open: QAction
    recent: QMenu
    add_folder: QAction
    quit: QAction
    undo: QAction
    redo: QAction
    clear: QAction
    fit: QAction
    zoom_in: QAction
    zoom_out: QAction
    tools: dict[Tool, QAction] = field(default_factory=dict)


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

    @property
    def text(self) -> str:
        """The sentence shown (empty when hidden)."""
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    """PHS desktop's window.

    Args:
        prefs: preferences (default: read from the data directory).
        engine_loader: ``(name, device) -> PHSEngine``; tests pass a tiny model.
        demo_count: photos in the generated demo gallery.
        check_weights: fall back to the demo model when the chosen model's weights are not on the machine.
    """

    def __init__(
        self,
        prefs: Preferences | None = None,
        engine_loader: EngineLoader | None = None,
        demo_count: int = DEMO_COUNT,
        check_weights: bool = True,
    ) -> None:
        super().__init__()
        self.prefs = prefs or load_preferences()
        self._loader = engine_loader or default_engine_loader
        self._demo_count = demo_count
        self._check_weights = check_weights
        self.session: SearchSession | None = None
        self.workers = WorkerPool(max_threads=3)
        self.lane = SerialLane()  # every use of the engine, one at a time
        self._query_gen = 0
        self._shown_gen = 0
        self._encode_gen = 0
        self.history = History()
        self.force_on: set[int] = set()
        self.force_off: set[int] = set()
        self.outcome: Outcome | None = None
        self.photo_path: str | None = None
        self._encoding: Worker | None = None
        self._indexing: Worker | None = None
        self._index_folder: str | None = None
        self._loading: Worker | None = None
        self._demo_worker: Worker | None = None
        self._training: Worker | None = None
        self._train_step = 0
        # Settings of a learned prompt trained from the app (core.method.lvp_train.TrainConfig fields; its
        # defaults otherwise, as `phs lvp train`).
        self.train_settings: dict = {}
        self.last_prompt_ms: float | None = None
        self._t_created = time.perf_counter()
        self.setWindowTitle("PHS desktop")
        self.setAcceptDrops(True)

        self.canvas = Canvas()
        self.banner = Banner()
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(4, 4, 4, 0)
        cl.setSpacing(4)
        cl.addWidget(self.banner)
        cl.addWidget(self.canvas, 1)
        self.setCentralWidget(central)
        self.docks = self._setup_docks()
        self.actions_ = self._setup_actions()
        self._setup_status()
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self._preview_timer.timeout.connect(self.rescore)
        self._connect()
        self.docks.controls.set_options(self._options_from_prefs())
        self.docks.results_panel.hide_query.setChecked(self.prefs.hide_query)
        self.docks.results_panel.size_slider.setValue(self.prefs.thumb_px)
        self.preview: PreviewDialog | None = None
        self._where_cache: dict[tuple, np.ndarray] = {}
        self._refresh_models()
        self._refresh_folders()
        self._refresh_recent()
        self._update_undo()
        self.resize(1440, 900)
        self._restored = self._restore_geometry()
        if not self._restored:
            self._default_layout()

    # ========================================================================================= assembly
    def _setup_docks(self) -> Docks:
        controls = Controls()
        library = LibraryPanel()
        heads = HeadsPanel(columns=2)
        results = ResultsPanel()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(controls)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left = QDockWidget("Search", self)
        left.setObjectName("dock-search")
        left.setWidget(scroll)
        left.setMinimumWidth(250)
        lib = QDockWidget("Library", self)
        lib.setObjectName("dock-library")
        lib.setWidget(library)
        right = QDockWidget("Heads of the last block", self)
        right.setObjectName("dock-heads")
        right.setWidget(heads)
        bottom = QDockWidget("Results", self)
        bottom.setObjectName("dock-results")
        bottom.setWidget(results)
        for d in (left, lib, right, bottom):
            d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                          | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                          | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, lib)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, right)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, bottom)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        bottom.topLevelChanged.connect(lambda _floating: results.grid.relayout())
        return Docks(controls, library, heads, results.grid, left, right, bottom, lib, results)

    def _setup_actions(self) -> Actions:
        def act(text: str, slot: Callable, shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
            a = QAction(text, self)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setToolTip(tip)
                a.setStatusTip(tip)
            a.triggered.connect(slot)
            return a

        file_menu = self.menuBar().addMenu("&File")
        edit_menu = self.menuBar().addMenu("&Edit")
        view_menu = self.menuBar().addMenu("&View")
        tools_menu = self.menuBar().addMenu("&Tools")
        a = Actions(
            open=act("&Open photo…", self.open_dialog, QKeySequence.StandardKey.Open, "Open a query photo (Ctrl+O)"),
            recent=QMenu("Open &recent", self),
            add_folder=act("&Add photo folder…", self.add_folder_dialog, None, "Add a folder of photos to search"),
            quit=act("&Quit", self.close, "Ctrl+Q", "Quit (Ctrl+Q)"),
            undo=act("&Undo prompt edit", self.undo, QKeySequence.StandardKey.Undo, "Undo (Ctrl+Z)"),
            redo=act("&Redo prompt edit", self.redo, "Ctrl+Shift+Z", "Redo (Ctrl+Shift+Z)"),
            clear=act("&Clear prompt", self.canvas.clear_prompt, "Delete", "Remove points, box and mask (Del)"),
            fit=act("&Fit to window", self.canvas.fit_to_window, "Ctrl+0", "Show the whole photo (Ctrl+0)"),
            zoom_in=act("Zoom &in", lambda: self.canvas.zoom_by(1.25), QKeySequence.StandardKey.ZoomIn),
            zoom_out=act("Zoom &out", lambda: self.canvas.zoom_by(0.8), QKeySequence.StandardKey.ZoomOut),
        )
        a.redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for action, short in ((a.open, "Open"), (a.undo, "Undo"), (a.redo, "Redo"), (a.clear, "Clear"),
                              (a.fit, "Fit")):
            action.setIconText(short)
        group = QActionGroup(self)
        for tool in Tool:
            t = act(TOOL_LABELS[tool], lambda _=False, tl=tool: self.set_tool(tl), TOOL_SHORTCUTS[tool],
                    f"{TOOL_TIPS[tool]} ({TOOL_SHORTCUTS[tool]})")
            t.setCheckable(True)
            group.addAction(t)
            a.tools[tool] = t
            tools_menu.addAction(t)
        file_menu.addActions([a.open])
        file_menu.addMenu(a.recent)
        file_menu.addSeparator()
        file_menu.addAction(a.add_folder)
        file_menu.addSeparator()
        file_menu.addAction(a.quit)
        edit_menu.addActions([a.undo, a.redo, a.clear])
        view_menu.addActions([a.fit, a.zoom_in, a.zoom_out])
        view_menu.addSeparator()
        for d, key in ((self.docks.left, "Ctrl+1"), (self.docks.library_dock, "Ctrl+2"),
                       (self.docks.right, "Ctrl+3"), (self.docks.bottom, "Ctrl+4")):
            t = d.toggleViewAction()
            t.setShortcut(QKeySequence(key))
            view_menu.addAction(t)
        help_menu = self.menuBar().addMenu("&Help")
        self.shortcuts_action = act("&Keyboard shortcuts", self.show_shortcuts, "F1", "Every keyboard shortcut (F1)")
        self.shortcuts_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        help_menu.addAction(self.shortcuts_action)
        brush_down = act("Smaller brush", lambda: self.canvas.set_brush_size(round(self.canvas.brush_size / 1.2)),
                         "[", "Smaller brush ([)")
        brush_up = act("Larger brush", lambda: self.canvas.set_brush_size(round(self.canvas.brush_size * 1.2) + 1),
                       "]", "Larger brush (])")
        tools_menu.addSeparator()
        tools_menu.addActions([brush_down, brush_up])
        tools_menu.addSeparator()
        self.train_action = act("&Train learned prompt…", self.train_learned_prompt, None,
                                "Train the learned prompt for the current model on the current photo folder or "
                                "on generated scenes")
        tools_menu.addAction(self.train_action)

        tb = self.addToolBar("Tools")
        tb.setObjectName("toolbar-main")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.addAction(a.open)
        tb.addSeparator()
        for tool in Tool:
            tb.addAction(a.tools[tool])
        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(2, 400)
        self.brush_spin.setSuffix(" px")
        self.brush_spin.setToolTip("Brush size (wheel or [ ] on the photo)")
        self.brush_spin.setValue(self.canvas.brush_size)
        tb.addWidget(QLabel(" Brush "))
        tb.addWidget(self.brush_spin)
        tb.addSeparator()
        tb.addActions([a.clear, a.undo, a.redo])
        tb.addSeparator()
        tb.addAction(a.fit)
        a.tools[Tool.BOX].setChecked(True)
        self.canvas.set_tool(Tool.BOX)
        return a

    def _setup_status(self) -> None:
        sb = self.statusBar()
        self.status_model = QLabel("loading model…")
        self.status_device = QLabel("")
        self.status_indexed = QLabel("no folder")
        self.status_timing = QLabel("")
        self.status_demo = QLabel(" DEMO ")
        self.status_demo.setStyleSheet("background:#8a6d12; color:white; border-radius:3px; font-weight:bold;")
        self.status_demo.setToolTip("The demo model only knows the synthetic shapes of the demo gallery")
        self.status_demo.hide()
        self.cancel_load_button = QToolButton()
        self.cancel_load_button.setText("Cancel loading")
        self.cancel_load_button.setToolTip("Stop loading this model and keep the current one")
        self.cancel_load_button.clicked.connect(self.cancel_loading)
        self.cancel_load_button.hide()
        sb.addPermanentWidget(self.cancel_load_button)
        self.status_train = QLabel("")
        self.train_progress = QProgressBar()
        self.train_progress.setMaximumWidth(140)
        self.train_progress.setTextVisible(False)
        self.cancel_train_button = QToolButton()
        self.cancel_train_button.setText("Cancel training")
        self.cancel_train_button.setToolTip("Stop training the learned prompt (training again continues from here)")
        self.cancel_train_button.clicked.connect(self.cancel_training)
        for wdg in (self.status_train, self.train_progress, self.cancel_train_button):
            wdg.hide()
            sb.addPermanentWidget(wdg)
        sb.addPermanentWidget(self.status_demo)
        self.status_zoom = QLabel("")
        self.status_zoom.setToolTip("Zoom of the photo (Ctrl+wheel; Ctrl+0 fits it)")
        for w in (self.status_model, self.status_device, self.status_indexed, self.status_timing, self.status_zoom):
            sb.addPermanentWidget(w)

    def _connect(self) -> None:
        d = self.docks
        self.canvas.prompt_changed.connect(self._on_prompt_changed)
        # While a box is dragged: one request every PREVIEW_DEBOUNCE_MS at most, from the box shown then
        # (a debounce that restarts on every move would answer only when the hand pauses).
        self.canvas.prompt_preview.connect(lambda _s: self._preview_timer.isActive() or self._preview_timer.start())
        self.canvas.file_dropped.connect(self.open_photo)
        self.canvas.brush_size_changed.connect(self._on_brush_size)
        self.brush_spin.valueChanged.connect(self.canvas.set_brush_size)
        d.controls.options_changed.connect(self._on_options)
        d.controls.model_requested.connect(self.load_model)
        d.heads.head_toggled.connect(self.toggle_head)
        d.heads.reset_requested.connect(self.reset_heads)
        d.results.use_as_query.connect(self.open_photo)
        d.results.preview_requested.connect(self.show_preview)
        self.canvas.zoom_changed.connect(lambda z: self.status_zoom.setText(f"{z * 100:.0f} %"))
        rp = d.results_panel
        rp.hide_query.toggled.connect(lambda on: setattr(self.prefs, "hide_query", on))
        rp.size_slider.valueChanged.connect(lambda v: setattr(self.prefs, "thumb_px", int(v)))
        d.results.message.connect(lambda t: self.show_message(t, "error"))
        d.library.add_folder_requested.connect(self.add_folder_dialog)
        d.library.folder_selected.connect(self.select_folder)
        d.library.index_requested.connect(self.start_indexing)
        d.library.cancel_requested.connect(self.cancel_indexing)
        d.library.remove_requested.connect(self.remove_folder)

    # ========================================================================================= startup
    def start(self) -> None:
        """Load the model (falling back to the demo model when the chosen one has no weights here)."""
        name = self.prefs.model
        if self._check_weights and name != "demo":
            try:
                spec = get_spec(name)
                ok = weights_available(spec)
            except PHSError:
                spec, ok = None, False
            if not ok:
                label = spec.label if spec is not None else name
                self.show_message(
                    f"No weights for {label} are on this machine, so PHS desktop runs its demo model on a "
                    f"generated gallery of synthetic shapes; to search your own photos, choose {label} under "
                    "Model while connected to the internet (it downloads once), or choose an installed model.",
                    "demo",
                )
                name = "demo"
        self.load_model(name, self.prefs.device)

    def load_model(self, name: str, device: str) -> None:
        """Load a model in a worker; the current one stays usable until the new one is ready (or cancelled)."""
        if self._loading is not None:
            return
        self.cancel_indexing()
        try:
            label = get_spec(name).label
        except PHSError:
            label = name
        self.status_model.setText(f"loading {label}…")
        self.cancel_load_button.show()

        def job(*, report: Callable, cancel: object) -> tuple[PHSEngine, list[str]]:
            from core.models.backbones import available_devices  # asks torch: here, off the GUI thread

            warm_up()  # matplotlib's colour table, so the first prompt does not wait for the import
            try:
                return self._loader(name, device), available_devices()
            except WeightsNotFoundError as err:
                raise WeightsNotFoundError(
                    f"No weights for {label} are on this machine and they could not be downloaded (no "
                    f"connection); {self._current_label()} stays loaded. Choose {label} under Model again "
                    "while connected to the internet, or choose an installed model."
                ) from err
            except WeightsError as err:
                if "device" in str(err).lower() or "cuda" in str(err).lower():
                    raise WeightsError(
                        f"The device {device} is not available on this computer; choose another under Device."
                    ) from err
                raise

        w = Worker(job, doing=f"loading the model {label}")
        w.signals.result.connect(lambda eng, n=name, dv=device, wk=w: self._on_engine_loaded(eng, n, dv, wk))
        w.signals.error.connect(lambda t, wk=w: self._on_model_error(t, wk))
        w.signals.finished.connect(lambda wk=w: self._loading_finished(wk))
        self._loading = self.workers.start(w)

    def cancel_loading(self) -> None:
        """Stop waiting for the model being loaded; the current model stays (the load's result is dropped)."""
        if self._loading is None:
            return
        self._loading.cancel()
        self._loading = None
        self.cancel_load_button.hide()
        self._show_model_status()
        self._refresh_models()

    def _current_label(self) -> str:
        return "the current model" if self.session is None else self.session.engine.spec.label

    def _show_model_status(self) -> None:
        if self.session is None:
            self.status_model.setText("no model loaded")
        else:
            self.status_model.setText(self.session.engine.spec.label)

    def _loading_finished(self, worker: Worker) -> None:
        if worker is self._loading:
            self._loading = None
            self.cancel_load_button.hide()

    def _on_engine_loaded(self, loaded: tuple[PHSEngine, list[str]], name: str, device: str, worker: Worker) -> None:
        self._loading_finished(worker)  # the load is over now, not when the worker's finished signal arrives
        engine, self._devices = loaded
        if worker.cancelled:
            engine.close()
            return
        self._on_engine(engine, name, device)

    _devices: list[str] | None = None  # known once a model has loaded (asking torch is not for the GUI thread)

    def _on_model_error(self, text: str, worker: Worker) -> None:
        self._loading_finished(worker)  # a model chosen right after this error must start loading
        if worker.cancelled:
            return
        self.show_message(text, "error")
        self._show_model_status()
        self._refresh_models()

    def _on_engine(self, engine: PHSEngine, name: str, device: str) -> None:
        if self.session is not None:
            self.session.close()
        self.session = SearchSession(engine)
        self.docks.controls.set_engine_limits(engine.num_heads, engine.fa_blocks)
        if name != self.prefs.model:  # a different model: start from its recommended h_on (demo: 2 of 8 heads)
            self.prefs.h_on = engine.recommended_h_on
            self.docks.controls.set_options(self._options_from_prefs())
        self.prefs.model, self.prefs.device = name, device
        self.is_demo = bool(engine.spec.is_demo or name == "demo")
        self.status_demo.setVisible(self.is_demo)
        self.status_model.setText(engine.spec.label)
        self.status_model.setToolTip(engine.describe())
        self.status_device.setText(f"{engine.device.type}, {engine.precision}")
        self.setWindowTitle("PHS desktop — demo model (synthetic shapes)" if self.is_demo else "PHS desktop")
        self.docks.controls.set_model_note(
            ("Demo model: trained on synthetic shapes only. " if self.is_demo else "")
            + f"{engine.num_heads} heads, {engine.grid[0]}x{engine.grid[1]} patches, {engine.input_size}px input."
        )
        self._refresh_models()
        self.force_on.clear()
        self.force_off.clear()
        if self.is_demo and not self._demo_ready():
            self._make_demo_gallery()
            return
        if self.is_demo and str(demo_gallery_dir()) not in self.prefs.folders:
            self._add_folder(str(demo_gallery_dir()), select=True)
        self._open_current_folder(index_if_missing=self.is_demo)
        photo = self.photo_path or (self.prefs.last_photo if Path(self.prefs.last_photo).is_file() else "")
        if not photo and self.is_demo:
            photo = self._demo_query_photo()
        if photo:
            self.open_photo(photo)

    is_demo = False

    # ============================================================================================ demo
    def _demo_ready(self) -> bool:
        return demo_gallery_ready()

    def _make_demo_gallery(self) -> None:
        self.docks.library.set_running(True)
        self.docks.library.show_status("Writing the demo gallery of synthetic scenes…")
        w = Worker(_demo_job, self._demo_count, doing="writing the demo gallery")
        w.signals.progress.connect(self._on_demo_progress)
        w.signals.result.connect(self._on_demo_written)
        w.signals.error.connect(lambda t: self.show_message(t, "error"))
        w.signals.finished.connect(lambda: self.docks.library.set_running(False))
        self._demo_worker = self.workers.start(w)

    def _on_demo_progress(self, p: tuple[int, int]) -> None:
        done, total = p
        self.docks.library.progress.setRange(0, total)
        self.docks.library.progress.setValue(done)
        self.docks.library.show_status(f"Writing the demo gallery: {done} of {total} scenes")

    def _on_demo_written(self, folder: Path) -> None:
        self._demo_worker = None
        self._add_folder(str(folder), select=True)
        self.docks.library.set_running(False)
        self.start_indexing(str(folder))
        photo = self._demo_query_photo()
        if photo and self.photo_path is None:
            self.open_photo(photo)

    def _demo_query_photo(self) -> str:
        """A demo scene with several objects, as the first query photo."""
        folder = demo_gallery_dir()
        cats = gallery_categories(folder)
        for name in sorted(cats):
            if len(cats[name]) >= 3 and (folder / name).is_file():
                return str(folder / name)
        files = sorted(folder.glob("*.jpg"))
        return str(files[0]) if files else ""

    # ========================================================================================= photos
    def open_dialog(self) -> None:
        """Ask for a photo and open it."""
        start = str(Path(self.photo_path).parent) if self.photo_path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open a query photo", start, PHOTO_FILTER)
        if path:
            self.open_photo(path)

    def open_photo(self, path: str) -> None:
        """Decode and encode a photo in the engine lane; its heads and results follow on their own."""
        if self.session is None:
            self.show_message("The model is still loading; open the photo again in a moment.", "info")
            return
        self._encode_gen += 1
        self._query_gen += 1  # answers for the photo shown now are stale from here on
        self.lane.drop("query")
        self._preview_timer.stop()
        self.status_timing.setText(f"opening {Path(path).name}…")
        gen = self._encode_gen
        w = Worker(_load_and_encode, self.session, path, doing=f"opening {Path(path).name}")
        w.signals.result.connect(lambda out, g=gen: self._on_encoded(out, g))
        w.signals.error.connect(lambda t, g=gen: self._on_encode_error(t, g))
        self._encoding = self.lane.submit("encode", w)

    def _on_encode_error(self, text: str, gen: int) -> None:
        if gen != self._encode_gen:
            return
        self._encoding = None
        self.show_message(text, "error")
        self._update_timing()

    def _on_encoded(self, out: EncodedPhoto, gen: int) -> None:
        if gen != self._encode_gen:  # another photo was asked for meanwhile; its encode follows
            return
        self._encoding = None
        path = out.path
        self.photo_path = path
        self.prefs.add_recent(path)
        self.prefs.last_photo = path
        self._refresh_recent()
        self.canvas.set_photo(out.display, out.size)
        self.docks.heads.set_photo(out.small)
        self.docks.controls.set_query_norms(out.norms)
        self.history.reset(self.canvas.state)  # type: ignore[arg-type]
        self.force_on.clear()
        self.force_off.clear()
        self.outcome = None
        self._update_undo()
        self.encode_ms = out.encode_ms
        if self.banner.level == "error":
            self.banner.hide()
        self.rescore()

    encode_ms: float | None = None

    # ========================================================================================= prompts
    def set_tool(self, tool: Tool) -> None:
        """Switch the prompt tool."""
        self.actions_.tools[tool].setChecked(True)
        self.canvas.set_tool(tool)

    def _on_brush_size(self, px: int) -> None:
        b = self.brush_spin.blockSignals(True)
        self.brush_spin.setValue(px)
        self.brush_spin.blockSignals(b)

    def _on_prompt_changed(self, state: PromptState) -> None:
        self._preview_timer.stop()
        self.history.push(state)
        self._update_undo()
        self.rescore()

    def undo(self) -> None:
        """Restore the previous prompt and its results."""
        st = self.history.undo()
        if st is not None:
            self.canvas.set_state(st)
            self._update_undo()
            self.rescore()

    def redo(self) -> None:
        """Re-apply an undone prompt edit."""
        st = self.history.redo()
        if st is not None:
            self.canvas.set_state(st)
            self._update_undo()
            self.rescore()

    def _update_undo(self) -> None:
        self.actions_.undo.setEnabled(self.history.can_undo)
        self.actions_.redo.setEnabled(self.history.can_redo)

    # ========================================================================================== heads
    def toggle_head(self, i: int) -> None:
        """A click on head ``i``: a forced head goes back to PHS's choice; otherwise force the opposite of now."""
        if self.outcome is None or self.outcome.selection is None:
            self.show_message("Mark the object first (click, box or brush); then heads can be forced on or off.")
            return
        revert = (set(self.force_on), set(self.force_off))
        if i in self.force_on or i in self.force_off:
            self.force_on.discard(i)
            self.force_off.discard(i)
        elif bool(self.outcome.selection.selected[i]):
            self.force_off.add(i)
        else:
            self.force_on.add(i)
        self.rescore(revert=revert)

    def reset_heads(self) -> None:
        """Forget heads forced by hand."""
        self.force_on.clear()
        self.force_off.clear()
        self.rescore()

    # ========================================================================================= search
    def _on_options(self, options: SearchOptions) -> None:
        self._options_to_prefs(options)
        if options.method not in LEARNED_METHODS:
            self.banner.hide_kind("no-prompt")
        if options.method not in MARKER_METHODS:
            self.banner.hide_kind("marker-mask")
        self.rescore()

    def rescore(self, revert: tuple[set[int], set[int]] | None = None) -> None:
        """Ask for the heads, maps and results of the prompt shown now (in the engine lane; latest wins).

        Args:
            revert: forced heads to go back to if the engine refuses this request's head choice.
        """
        if self.session is None or self._encoding is not None or self.photo_path is None:
            return
        self._preview_timer.stop()
        self._query_gen += 1
        gen = self._query_gen
        state = self.canvas.state
        prompt = None if state is None else state.to_prompt()
        on, off = tuple(sorted(self.force_on)), tuple(sorted(self.force_off))
        w = Worker(_query_job, self.session, gen, prompt, self.docks.controls.options(), on, off,
                   self.docks.heads.backdrops, self.photo_path, doing="searching")
        w.signals.result.connect(lambda ans, photo=self._encode_gen: self._on_answer(ans, photo))
        w.signals.error.connect(lambda t, g=gen, rv=revert: self._on_query_error(t, g, rv))
        self.lane.submit("query", w)

    @property
    def settled(self) -> bool:
        """No photo is being opened and no search is waiting or running (what is shown is current)."""
        return self._encoding is None and not self.lane.busy and not self._preview_timer.isActive()

    def _on_query_error(self, text: str, gen: int, revert: tuple[set[int], set[int]] | None) -> None:
        if gen != self._query_gen:
            return
        self.show_message(text, "error")
        if revert is not None:  # the head choice was refused: back to the last one that worked
            self.force_on, self.force_off = set(revert[0]), set(revert[1])
            self.rescore()

    def _on_answer(self, ans: QueryAnswer | None, photo: int | None = None) -> None:
        """Draw an answer for the photo shown now that is newer than the one drawn. While a box is dragged
        every answer is overtaken by a newer request before it arrives; its heads are drawn anyway (the box
        of a moment ago: the maps move with the hand), the results grid waits for the last request's answer
        (re-laying out a grid of thumbnails on every answer would stall the window)."""
        if ans is None or self.session is None or ans.gen <= self._shown_gen:
            return
        if (photo if photo is not None else self._encode_gen) != self._encode_gen or self._encoding is not None:
            return  # for a photo no longer shown, or one being replaced
        self._shown_gen = ans.gen
        out = ans.outcome
        self.outcome = out
        sel = out.selection
        if ans.combined is not None:
            self.docks.heads.show_rendered(
                ans.tiles,
                ans.combined,
                None if sel is None else sel.scores,
                None if sel is None else sel.selected,
                ans.force_on,
                ans.force_off,
                out.query.method,
            )
        self.canvas.set_marker(ans.marker, out.query.placement)
        if ans.gen != self._query_gen:
            return  # overtaken: the latest request's answer brings the results
        self.docks.results.show_rows(ans.rows)
        if self.preview is not None and self.preview.isVisible() and self.preview.path:
            self._request_where(self.preview.path)  # the kept heads may have changed
        if not out.hits:
            self.docks.results.set_empty_text(
                "No results yet: add a photo folder and index it (Library, left)."
                if self.session.searcher is None else "The index is empty."
            )
        self.last_prompt_ms = ans.ms
        self._update_timing()
        if self.banner.level == "error" and self.banner.isVisible():
            self.banner.hide()
        self._say_about_marker(ans)
        if self.first_results_s is None:
            self.first_results_s = time.perf_counter() - self._t_created

    first_results_s: float | None = None

    def _say_about_marker(self, ans: QueryAnswer) -> None:
        """The banner's word on a marker method: no learned prompt yet, or a painted mask placed as its box."""
        prompt = ans.outcome.spec.prompt
        if ans.missing_prompt:
            if self._training is None:
                label = self.session.engine.spec.label if self.session is not None else "this model"
                self.show_message(
                    f"There is no learned prompt for {label} yet, so PHS answered this search. Train one first: "
                    "it learns from the photos of the current folder or from generated scenes, in the background "
                    "(Tools, Train learned prompt).", "info", ("Train…", self.train_learned_prompt), "no-prompt")
            return
        self.banner.hide_kind("no-prompt")
        if ans.marker is not None and prompt is not None and prompt.box is None and prompt.mask is not None:
            self.show_message("Markers take a point or a box: the marker is pasted over the painted area's "
                              "bounding box.", "info", kind="marker-mask")
        else:
            self.banner.hide_kind("marker-mask")

    # ======================================================================================= training
    def _ask_training_source(self) -> str | None:
        """Ask what to train on: the current photo folder, or generated scenes (``"synthetic"``); ``None`` = no."""
        folder = self.prefs.current_folder
        box = QMessageBox(self)
        box.setWindowTitle("Train learned prompt")
        label = self.session.engine.spec.label if self.session is not None else "this model"
        box.setText(f"Train a learned prompt for {label}. It runs in the background (minutes on a CPU); "
                    "searching goes on meanwhile.")
        own = None
        if folder and Path(folder).is_dir() and folder != str(demo_gallery_dir()):
            own = box.addButton(f"On the photos in {Path(folder).name}", QMessageBox.ButtonRole.AcceptRole)
        scenes = box.addButton("On generated scenes", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        if own is not None and clicked is own:
            return folder
        return "synthetic" if clicked is scenes else None

    def train_learned_prompt(self) -> None:
        """Tools › Train learned prompt…: train one for the current model in a worker, progress in the status bar."""
        if self.session is None:
            self.show_message("The model is still loading; train a learned prompt once it is ready.", "info")
            return
        if self._training is not None:
            self.show_message("A learned prompt is being trained already (see the status bar).", "info")
            return
        source = self._ask_training_source()
        if not source:
            return
        engine = self.session.engine
        self._train_step = 0
        self.banner.hide_kind("no-prompt")
        self.status_train.setText("Training the learned prompt: starting…")
        self.train_progress.setRange(0, 0)
        for wdg in (self.status_train, self.train_progress, self.cancel_train_button):
            wdg.show()
        self.train_action.setEnabled(False)
        w = Worker(_train_job, engine.spec.name, engine.device.type, source, dict(self.train_settings),
                   doing="training the learned prompt", progress_interval_s=0.1)
        w.signals.progress.connect(self._on_train_progress)
        w.signals.result.connect(lambda prompt, wk=w: self._on_trained(prompt, wk))
        w.signals.error.connect(lambda t, wk=w: self._on_train_error(t, wk))
        w.signals.finished.connect(self._training_finished)
        self._training = self.workers.start(w)

    def cancel_training(self) -> None:
        """Stop training after the current step (a checkpoint keeps it; training again continues)."""
        if self._training is not None:
            self._training.cancel()
            self.status_train.setText("Training the learned prompt: cancelling…")

    @property
    def training(self) -> bool:
        """A learned prompt is being trained."""
        return self._training is not None

    def _on_train_progress(self, p: object) -> None:
        if isinstance(p, tuple):
            _, done, total = p
            self.train_progress.setRange(0, total)
            self.train_progress.setValue(done)
            self.status_train.setText(f"Generating training scenes: {done} of {total}")
            return
        self._train_step = p.step  # type: ignore[attr-defined]
        self.train_progress.setRange(0, p.steps)  # type: ignore[attr-defined]
        self.train_progress.setValue(p.step)  # type: ignore[attr-defined]
        self.status_train.setText(f"Training the learned prompt: step {p.step} of {p.steps}, "  # type: ignore[attr-defined]
                                  f"attention on target {p.attn_on_target:.2f}")  # type: ignore[attr-defined]

    def _on_trained(self, prompt: object, worker: Worker) -> None:
        meta = getattr(prompt, "meta", {})
        if self.session is not None:
            self.session.forget_learned_prompt()
        self.show_message(f"The learned prompt is trained ({meta.get('steps', '?')} steps in "
                          f"{meta.get('train_seconds', '?')} s, attention on target "
                          f"{meta.get('final_attn_on_target', '?')}); searches with it use it from now on.", "info")
        self.rescore()

    def _on_train_error(self, text: str, worker: Worker) -> None:
        if worker.cancelled:
            at = f" at step {self._train_step}" if self._train_step else ""
            self.show_message(f"Training stopped{at}; train again to continue from there.", "info",
                              kind="train-stopped")
        else:
            self.show_message(text, "error")

    def _training_finished(self) -> None:
        self._training = None
        self.train_action.setEnabled(True)
        for wdg in (self.status_train, self.train_progress, self.cancel_train_button):
            wdg.hide()

    def _update_timing(self) -> None:
        parts = []
        if self.encode_ms is not None:
            parts.append(f"encode {self.encode_ms:.0f} ms")
        if self.last_prompt_ms is not None and self.photo_path is not None:
            parts.append(f"prompt→results {self.last_prompt_ms:.1f} ms")
        self.status_timing.setText(" · ".join(parts))

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """``(keys, what)`` for every action with a shortcut, menus in order, plus the canvas's gestures."""
        rows: list[tuple[str, str]] = []
        seen: set[str] = set()
        for menu_action in self.menuBar().actions():
            for a in menu_action.menu().actions() if menu_action.menu() else []:
                keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts())
                text = a.text().replace("&", "").rstrip("…")
                if keys and text not in seen:
                    seen.add(text)
                    rows.append((keys, text))
        rows += [("Shift+click", "Negative point (what you do not want)"), ("Ctrl+wheel", "Zoom at the cursor"),
                 ("Middle-drag", "Pan"), ("Wheel (brush, eraser)", "Brush size"),
                 ("Enter, double-click", "Preview the selected result"), ("Left, Right (preview)", "Previous, next")]
        return rows

    def show_shortcuts(self) -> None:
        """Help › Keyboard shortcuts (F1): every shortcut in a table."""
        from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem

        dlg = QDialog(self)
        dlg.setWindowTitle("Keyboard shortcuts")
        rows = self.shortcut_rows()
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        for i, (keys, what) in enumerate(rows):
            table.setItem(i, 0, QTableWidgetItem(keys))
            table.setItem(i, 1, QTableWidgetItem(what))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.reject)
        lay = QVBoxLayout(dlg)
        lay.addWidget(table)
        lay.addWidget(buttons)
        dlg.resize(480, 560)
        self.shortcuts_dialog = dlg
        dlg.show()

    shortcuts_dialog = None

    # ======================================================================================== preview
    def show_preview(self, path: str) -> None:
        """The built-in preview of a result, with where the query's kept heads look in it."""
        if self.preview is None:
            self.preview = PreviewDialog(self)
            self.preview.step_requested.connect(self._preview_step)
            self.preview.use_as_query.connect(self.open_photo)
        grid = self.docks.results
        rows = {r.path: r for r in grid.rows}
        row = rows.get(path)
        facts = grid.facts.get(path, "")
        score = "" if row is None else f"score {row.score:.3f}"
        self.preview.set_photo(path, None, " · ".join(x for x in (path, score, facts) if x))
        self.preview.setWindowTitle(f"Preview: {Path(path).name}")
        self.preview.show()
        self.preview.raise_()
        w = Worker(_preview_job, path, doing=f"opening {Path(path).name}")
        w.signals.result.connect(self._on_preview_photo)
        w.signals.error.connect(lambda t: self.preview and self.preview.where_state.setText(t))
        self.workers.start(w)
        self._request_where(path)

    def _on_preview_photo(self, out: tuple[str, np.ndarray]) -> None:
        path, rgb = out
        if self.preview is not None and self.preview.path == path:
            self.preview.set_photo(path, rgb, self.preview.caption.text())
            key = self._where_key(path)
            if key in self._where_cache:
                self.preview.set_where(path, self._where_cache[key], self._where_text())

    def _where_key(self, path: str) -> tuple:
        sel = None if self.outcome is None or self.outcome.selection is None else self.outcome.selection.selected
        try:
            mtime = Path(path).stat().st_mtime_ns
        except OSError:
            mtime = 0
        return (path, mtime, None if sel is None else tuple(bool(x) for x in sel), id(self.session))

    def _where_text(self) -> str:
        sel = None if self.outcome is None or self.outcome.selection is None else self.outcome.selection
        if sel is None:
            return "every head (no object marked)"
        return "kept heads: " + ", ".join(f"H{i}" for i in np.flatnonzero(sel.selected))

    def _request_where(self, path: str) -> None:
        if self.session is None or self.preview is None:
            return
        key = self._where_key(path)
        if key in self._where_cache:
            self.preview.set_where(path, self._where_cache[key], self._where_text())
            return
        sel = None if self.outcome is None or self.outcome.selection is None else self.outcome.selection.selected
        w = Worker(_where_job, self.session, path, None if sel is None else sel.copy(), doing="finding the object")
        w.signals.result.connect(lambda out, k=key: self._on_where(out, k))
        w.signals.error.connect(lambda t: self.preview and self.preview.where_state.setText(t))
        self.lane.submit("where", w)

    def _on_where(self, out: tuple[str, np.ndarray | None], key: tuple) -> None:
        path, where = out
        if where is None:
            return
        self._where_cache[key] = where
        while len(self._where_cache) > 64:
            self._where_cache.pop(next(iter(self._where_cache)))
        if self.preview is not None and key == self._where_key(path):
            self.preview.set_where(path, where, self._where_text())

    def _preview_step(self, step: int) -> None:
        grid = self.docks.results
        paths = grid.paths()
        if not paths or self.preview is None:
            return
        i = paths.index(self.preview.path) if self.preview.path in paths else -1
        j = min(max(i + step, 0), len(paths) - 1)
        grid.setCurrentRow(j)
        self.show_preview(paths[j])

    # ======================================================================================== library
    def add_folder_dialog(self) -> None:
        """Ask for a photo folder, add it and index it."""
        folder = QFileDialog.getExistingDirectory(self, "Add a photo folder", str(Path.home()))
        if folder:
            self._add_folder(folder, select=True)
            self.select_folder(folder)

    def _add_folder(self, folder: str, select: bool) -> None:
        self.prefs.add_folder(folder)
        if select:
            self.prefs.current_folder = folder
        self._refresh_folders()

    def remove_folder(self, folder: str) -> None:
        """Take a folder off the library list (its photos are never touched; its index stays on disk)."""
        if self._indexing is not None and self._index_folder == folder:
            self.show_message("That folder is being indexed; cancel the run first, then remove it.", "info")
            return
        self.prefs.folders = [f for f in self.prefs.folders if f != folder]
        if self.prefs.current_folder == folder:
            self.prefs.current_folder = self.prefs.folders[0] if self.prefs.folders else ""
            if self.session is not None:
                self.session.close_folder()
            self.docks.library.show_failures([])
            self._open_current_folder(index_if_missing=False)
            if not self.prefs.current_folder:
                self.docks.library.show_status("No folder yet: add one to search your photos.")
        self._refresh_folders()
        self._update_indexed()
        self.rescore()

    def select_folder(self, folder: str) -> None:
        """Search ``folder`` from now on (indexing it first if it has no index for this model)."""
        self.prefs.current_folder = folder
        self._refresh_folders()
        self._open_current_folder(index_if_missing=True)
        self.rescore()

    def _open_current_folder(self, index_if_missing: bool) -> None:
        folder = self.prefs.current_folder
        if self.session is None or not folder:
            return
        lib = self.docks.library
        try:
            n = self.session.open_folder(folder)
        except IndexMissingError:
            self.session.close_folder()
            if index_if_missing:
                self.start_indexing(folder)
            else:
                lib.show_status("This folder is not indexed with this model yet: press Index.")
            self._update_indexed()
            return
        except PHSError as err:
            self.session.close_folder()
            self.show_message(str(err), "error")
            self._update_indexed()
            return
        lib.show_status(f"{n} photos indexed. Press Index to add new or changed photos.")
        lib.show_failures(self.session.searcher.index.failures() if self.session.searcher else [])
        lib.progress.setRange(0, 1)
        lib.progress.setValue(1)
        self._update_indexed()

    def start_indexing(self, folder: str) -> None:
        """Index ``folder`` in a worker (new and changed photos only; an interrupted run resumes)."""
        if self.session is None or self._indexing is not None:
            return
        if not Path(folder).is_dir():
            self.show_message(f"The folder {folder} is not available (moved, deleted or on an unplugged drive).",
                              "error")
            return
        self._index_folder = folder
        lib = self.docks.library
        lib.show_failures([])  # the list belongs to the folder being indexed now
        lib.set_running(True)
        lib.show_status("Scanning the folder…")
        w = Worker(_index_job, folder, self.session.index_engine, doing=f"indexing {folder}",
                   progress_interval_s=0.1)
        w.signals.progress.connect(self._on_index_progress)
        w.signals.result.connect(self._on_indexed)
        w.signals.error.connect(self._on_index_error)
        w.signals.finished.connect(self._index_finished)
        self._indexing = self.workers.start(w)

    def cancel_indexing(self) -> None:
        """Ask the indexing run to stop after the current photo (what it did is kept; Index resumes)."""
        if self._indexing is not None:
            self._indexing.cancel()
            self.docks.library.show_status("Cancelling…")

    @property
    def indexing(self) -> bool:
        """An indexing run is in progress."""
        return self._indexing is not None

    def _on_index_progress(self, p: IndexProgress) -> None:
        self.docks.library.show_progress(p)

    def _on_indexed(self, report: IndexReport) -> None:
        lib = self.docks.library
        if report.cancelled:
            lib.show_status(f"Cancelled after {report.indexed + report.reused} new photos; press Index to resume.")
        if self.session is not None and self.prefs.current_folder == self._index_folder:
            try:
                n = self.session.open_folder(report.folder)
            except PHSError as err:
                self.show_message(str(err), "error")
                n = 0
            if not report.cancelled:  # a cancelled run keeps its bar where it stopped
                lib.show_status(index_summary(n, report))
                lib.progress.setRange(0, 1)
                lib.progress.setValue(1)
            lib.show_failures(self.session.searcher.index.failures() if self.session.searcher else [])
        if report.failures:
            first = report.failures[0]
            more = f" ({len(report.failures)} photos could not be indexed; see Failed files)" \
                if len(report.failures) > 1 else ""
            self.show_message(f"{first.reason.rstrip('.')}{more}.", "error")
        elif report.notes:  # a repair the run made (a damaged index rebuilt): worth knowing, not an error
            self.show_message(report.notes[0], "info")
        self._update_indexed()
        self.rescore()

    def _on_index_error(self, text: str) -> None:
        # A full disk, a vanished folder, a locked or damaged index: what was committed stays searchable.
        if self.session is not None and self.prefs.current_folder == self._index_folder:
            try:
                self.session.open_folder(self._index_folder)
            except PHSError:
                self.session.close_folder()
            self._update_indexed()
        self.show_message(text, "error")
        self.docks.library.show_status("Indexing stopped.")

    def _index_finished(self) -> None:
        self._indexing = None
        self.docks.library.set_running(False)

    def _update_indexed(self) -> None:
        n = self.session.indexed_count if self.session else 0
        folder = self.session.folder if self.session else None
        self.status_indexed.setText(f"{n} photos indexed" + (f" in {folder.name}" if folder else ""))

    # ========================================================================================= helpers
    def show_message(self, text: str, level: str = "info", action: tuple[str, Callable[[], None]] | None = None,
                     kind: str = "") -> None:
        """One sentence in the banner above the photo, with an optional ``(label, slot)`` button."""
        if level == "error":
            log.warning("%s", text)
        self.banner.show_text(text, level, action, kind)

    def _refresh_models(self) -> None:
        entries = []
        for spec in list_models():
            if spec.family == "test":
                continue
            try:
                have = weights_available(spec)
            except Exception:  # noqa: BLE001 - a broken cache must not stop the list
                have = False
            if spec.is_demo:
                note = "shipped" if have else "missing"
            else:
                note = "installed" if have else ("downloadable" if spec.hf_repo else "not available")
            entries.append((spec.name, spec.label, note))
        self.docks.controls.set_models(entries, self.prefs.model, self.prefs.device)
        if self._devices is not None:
            self.docks.controls.set_devices(self._devices, self.prefs.device)

    def _refresh_folders(self) -> None:
        labels = {str(demo_gallery_dir()): "Demo gallery (synthetic)"}
        self.docks.library.set_folders(self.prefs.folders, self.prefs.current_folder, labels)

    def _refresh_recent(self) -> None:
        menu = self.actions_.recent
        menu.clear()
        for p in self.prefs.recent_files:
            menu.addAction(Path(p).name, lambda path=p: self.open_photo(path)).setToolTip(p)
        menu.setEnabled(bool(self.prefs.recent_files))

    def _options_from_prefs(self) -> SearchOptions:
        # Preferences carry every SearchOptions field under the same name (and more).
        return SearchOptions(**{f.name: getattr(self.prefs, f.name) for f in fields(SearchOptions)})

    def _options_to_prefs(self, o: SearchOptions) -> None:
        for f in fields(SearchOptions):
            setattr(self.prefs, f.name, getattr(o, f.name))

    def _qsettings(self) -> QSettings:
        return QSettings(str(data_dir() / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> bool:
        s = self._qsettings()
        geo, state = s.value("geometry"), s.value("state")
        if geo is not None:
            self.restoreGeometry(geo)
        if state is not None:
            self.restoreState(state)
        return state is not None

    def _default_layout(self) -> None:
        """The photo gets the most room: narrow side panels, the library tabbed behind the search knobs."""
        self.tabifyDockWidget(self.docks.left, self.docks.library_dock)
        self.docks.left.raise_()
        self._fit_docks()

    def _fit_docks(self) -> None:
        """Side panels as narrow as their contents allow (the heads panel three tiles wide on a wide window),
        the results one row of thumbnails high: the photo keeps the rest."""
        left = max(self.docks.left.minimumSizeHint().width(), self.docks.library_dock.minimumSizeHint().width())
        heads = self.docks.heads
        right = self.docks.right.minimumSizeHint().width()
        if self.width() >= 1600:
            right += TILE_PX + 10  # one more column of heads
        self.resizeDocks([self.docks.left, self.docks.right], [left, right], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks.bottom], [self.docks.results_panel.minimumSizeHint().height()],
                         Qt.Orientation.Vertical)
        heads.updateGeometry()

    def showEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not self._restored or self.width() <= 1400:  # first launch, or a small screen
                self._fit_docks()

    _shown_once = False

    def save_settings(self) -> None:
        """Write the preferences file and the window geometry."""
        self._options_to_prefs(self.docks.controls.options())
        try:
            save_preferences(self.prefs)
            s = self._qsettings()
            s.setValue("geometry", self.saveGeometry())
            s.setValue("state", self.saveState())
        except OSError as err:
            log.warning("could not save settings: %s", err)

    # ==================================================================================== drag & drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        self.canvas.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        self.canvas.dropEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self, wait_ms: int = 1500) -> bool:
        """Cancel background work, wait for it at most ``wait_ms`` and close the index.

        Returns:
            ``True`` when every worker stopped in time. Otherwise a worker is still inside a step that cannot
            be interrupted (a model load, one batch of indexing); :func:`phs_gui.app.main` then ends the
            process without waiting for it: the index loses at most that batch, as after a crash.
        """
        self._preview_timer.stop()
        self._query_gen += 1
        self._encode_gen += 1
        deadline = time.perf_counter() + wait_ms / 1000
        stopped = self.lane.shutdown(wait_ms)
        left = max(0, int((deadline - time.perf_counter()) * 1000))
        stopped = self.workers.shutdown(left) and stopped
        self.docks.results.shutdown()
        if self.session is not None and stopped:
            self.session.close()
            self.session = None
        self.stopped_cleanly = stopped
        return stopped

    stopped_cleanly = True
