"""The main window: it builds the widgets (:mod:`phs_gui.parts`), makes one controller per job
(:mod:`phs_gui.controllers`) and connects the two in :meth:`MainWindow._connect`, in one place.

Controllers own the work and its state and never call each other; heavy work runs in their workers, and
everything that uses the engine in one :class:`phs_gui.workers.SerialLane` where the latest request wins.
The GUI thread only paints. Errors appear as one sentence in the banner above the photo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QFileDialog, QMainWindow, QVBoxLayout, QWidget

from core.synthetic.gallery import DEMO_COUNT
from phs_gui.canvas import Canvas, Tool
from phs_gui.controllers.library import LibraryController
from phs_gui.controllers.model import ModelController
from phs_gui.controllers.preview import PreviewController
from phs_gui.controllers.query import QueryController
from phs_gui.controllers.training import TrainingController
from phs_gui.dialogs import ask_training_source, shortcut_rows, shortcuts_dialog
from phs_gui.jobs import EngineLoader, QueryAnswer, default_engine_loader, index_summary  # noqa: F401 - re-exported
from phs_gui.layout import (
    default_layout,
    fit_docks,
    fit_to_screen,
    follow_thumb_size,
    initial_geometry,
    reset_layout,
    restore_geometry,
    save_geometry,
)
from phs_gui.parts import Banner, build_actions, build_docks, build_status
from phs_gui.result_rows import real_path, shown
from phs_gui.session import SearchSession
from phs_gui.settings import Preferences, load_preferences, save_preferences
from phs_gui.workers import SerialLane, WorkerPool

if TYPE_CHECKING:
    from core.search import Outcome
    from phs_gui.jobs import EncodedPhoto

log = logging.getLogger("phs_gui")
PHOTO_FILTER = "Photos (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.gif *.heic *.heif *.avif);;All files (*)"


class MainWindow(QMainWindow):
    """PHS desktop's window.

    Args:
        prefs: preferences (default: read from the data directory).
        engine_loader: ``(name, device) -> PHSEngine``; tests pass a tiny model.
        demo_count: photos in the generated demo gallery.
        check_weights: fall back to the demo model when the chosen model's weights are not on the machine.
    """

    def __init__(self, prefs: Preferences | None = None, engine_loader: EngineLoader | None = None,
                 demo_count: int = DEMO_COUNT, check_weights: bool = True) -> None:
        super().__init__()
        self.prefs = prefs or load_preferences()
        self.workers = WorkerPool(max_threads=3)
        self.lane = SerialLane()  # every use of the engine, one at a time
        self.model = ModelController(self.workers, engine_loader, check_weights, self)
        self.library = LibraryController(self.prefs, self.workers, self.lane, demo_count, self)
        self.query = QueryController(self.prefs, self.lane, self)
        self.training_ = TrainingController(self.workers, self)
        self.previews = PreviewController(self, self.workers, self.lane, self)
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
        self.docks = build_docks(self)
        self.actions_ = build_actions(self, self.docks)
        self.status = build_status(self)
        self.shortcuts_dialog: QWidget | None = None
        self._connect()
        self._show_prefs()
        self._default_state = self.saveState()
        self.setGeometry(initial_geometry(self))
        self._restored = restore_geometry(self)
        if not self._restored:
            default_layout(self)

    # ============================================================================================ wiring
    def _connect(self) -> None:
        """What the widgets report, to the controllers (and the window's own dialogs)."""
        d, a, s, q, lib, m, t, pv = (self.docks, self.actions_, self.status, self.query, self.library, self.model,
                                     self.training_, self.previews)
        c, grid, lp = self.canvas, d.results, d.library
        c.prompt_changed.connect(q.set_prompt)
        c.prompt_preview.connect(q.preview_prompt)
        c.file_dropped.connect(q.open_photo)
        c.brush_size_changed.connect(a.show_brush_size)
        c.zoom_changed.connect(lambda z: s.zoom.setText(f"{z * 100:.0f} %"))
        a.open.triggered.connect(self.open_dialog)
        a.add_folder.triggered.connect(self.add_folder_dialog)
        a.export.triggered.connect(grid.export_dialog)
        a.quit.triggered.connect(self.close)
        a.undo.triggered.connect(q.undo)
        a.redo.triggered.connect(q.redo)
        a.clear.triggered.connect(c.clear_prompt)
        a.fit.triggered.connect(c.fit_to_window)
        a.zoom_in.triggered.connect(lambda: c.zoom_by(1.25))
        a.zoom_out.triggered.connect(lambda: c.zoom_by(0.8))
        a.reset_layout.triggered.connect(self.reset_layout)
        a.shortcuts.triggered.connect(self.show_shortcuts)
        a.brush_down.triggered.connect(lambda: c.set_brush_size(round(c.brush_size / 1.2)))
        a.brush_up.triggered.connect(lambda: c.set_brush_size(round(c.brush_size * 1.2) + 1))
        a.train.triggered.connect(self.train_learned_prompt)
        a.brush_spin.valueChanged.connect(c.set_brush_size)
        for tool, action in a.tools.items():
            action.triggered.connect(lambda _=False, tl=tool: self.set_tool(tl))
        d.controls.options_changed.connect(q.set_options)
        d.controls.model_requested.connect(self.load_model)
        d.heads.head_toggled.connect(q.toggle_head)
        d.heads.reset_requested.connect(q.reset_heads)
        grid.use_as_query.connect(q.open_photo)
        grid.preview_requested.connect(lambda p: pv.show(p, grid.caption(p)))
        grid.message.connect(lambda text: self.show_message(text, "error"))
        grid.notice.connect(lambda text: self.show_message(text, "info"))
        d.results_panel.hide_query.toggled.connect(lambda on: setattr(self.prefs, "hide_query", on))
        d.results_panel.size_slider.valueChanged.connect(lambda v: setattr(self.prefs, "thumb_px", int(v)))
        grid.min_height_changed.connect(lambda old, new: follow_thumb_size(self, old, new))
        lp.add_folder_requested.connect(self.add_folder_dialog)
        lp.folder_selected.connect(lib.select_folder)
        lp.index_requested.connect(lib.start_indexing)
        lp.cancel_requested.connect(lib.cancel_indexing)
        lp.remove_requested.connect(lib.remove_folder)
        s.cancel_load.clicked.connect(m.cancel)
        s.cancel_train.clicked.connect(t.cancel)
        self._connect_controllers()

    def _connect_controllers(self) -> None:
        """What each controller says, to the widgets that show it (and to the controllers that act on it)."""
        a, s, q, lib, m, t, pv = (self.actions_, self.status, self.query, self.library, self.model, self.training_,
                                  self.previews)
        c, grid, lp = self.canvas, self.docks.results, self.docks.library
        m.loading.connect(lambda text: (s.model.setText(text), s.cancel_load.show()))
        m.load_over.connect(self._model_idle)
        m.failed.connect(lambda text: self.show_message(text, "error"))
        m.loaded.connect(self._on_model)
        q.photo_opened.connect(self._show_photo)
        q.state_restored.connect(c.set_state)
        q.heads_answered.connect(self.docks.heads.show_answer)
        q.heads_answered.connect(lambda ans: c.set_marker(ans.marker, ans.outcome.query.placement))
        q.results_answered.connect(lambda ans: (grid.show_rows(ans.rows), pv.set_outcome(ans.outcome)))
        q.history_changed.connect(lambda u, r: (a.undo.setEnabled(u), a.redo.setEnabled(r)))
        q.timing.connect(s.timing.setText)
        q.train_requested.connect(self.train_learned_prompt)
        q.hint.connect(self.show_hint)
        lib.folders_changed.connect(lp.set_folders)
        lib.status.connect(lp.show_status)
        lib.progress.connect(lp.show_any_progress)
        lib.finished_bar.connect(lambda: (lp.progress.setRange(0, 1), lp.progress.setValue(1)))
        lib.running.connect(lp.set_running)
        lib.failures.connect(lp.show_failures)
        lib.count.connect(s.show_indexed)
        lib.count.connect(grid.show_library_size)
        lib.searchable_changed.connect(q.rescore)
        lib.first_photo.connect(q.open_if_none)
        t.running.connect(self._show_training)
        t.progress.connect(s.show_training)
        t.trained.connect(q.rescore)
        pv.step_requested.connect(grid.step_from)
        pv.use_as_query.connect(q.open_photo)
        for ctl in (m, lib, q, t):
            ctl.message.connect(self.show_message)
        q.message_withdrawn.connect(lambda kind: self.banner.hide_errors() if kind == "error"
                                    else self.banner.hide_kind(kind))

    def _show_prefs(self) -> None:
        """The remembered choices, shown once at start."""
        self.docks.controls.set_options(self.prefs.search)
        self.docks.results_panel.hide_query.setChecked(self.prefs.hide_query)
        self.docks.results_panel.size_slider.setValue(self.prefs.thumb_px)
        self._model_idle()
        self.library.refresh()
        self._refresh_recent()
        self.actions_.undo.setEnabled(False)
        self.actions_.redo.setEnabled(False)
        self.set_tool(Tool.BOX)
        self.canvas.set_brush_size(self.prefs.brush_px)
        self.actions_.brush_spin.setValue(self.canvas.brush_size)

    # ============================================================================== what the window shows
    def _on_model(self, session: SearchSession, name: str, device: str) -> None:
        engine, demo = session.engine, self.model.is_demo
        self.docks.controls.set_engine_limits(engine.num_heads, engine.fa_blocks)
        if name != self.prefs.model:  # a different model: start from its recommended h_on (demo: 2 of 8 heads)
            self.prefs.search = replace(self.prefs.search, h_on=engine.recommended_h_on)
            self.docks.controls.set_options(self.prefs.search)
        self.prefs.model, self.prefs.device = name, device
        self.status.demo.setVisible(demo)
        self.status.model.setToolTip(engine.describe())
        self.status.device.setText(f"{engine.device.type}, {engine.precision}")
        self.setWindowTitle("PHS desktop — demo model (synthetic shapes)" if demo else "PHS desktop")
        self.docks.controls.set_model_note(("Demo model: trained on synthetic shapes only. " if demo else "")
                                           + f"{engine.num_heads} heads, {engine.grid[0]}x{engine.grid[1]} "
                                           f"patches, {engine.input_size}px input.")
        self._model_idle()
        for ctl in (self.query, self.previews, self.training_):
            ctl.set_session(session)
        self.library.set_session(session, demo)
        self.query.reopen()

    def _model_idle(self) -> None:
        self.status.cancel_load.setVisible(self.model.busy)
        if not self.model.busy:
            self.status.model.setText("no model loaded" if self.session is None else self.model.label())
        self.docks.controls.set_models(self.model.entries(), self.prefs.model, self.prefs.device)
        if self.model.devices is not None:
            self.docks.controls.set_devices(self.model.devices, self.prefs.device)

    def _show_photo(self, out: EncodedPhoto) -> None:
        self.canvas.set_photo(out.display, out.size)
        self.docks.heads.set_photo(out.small)
        self.docks.controls.set_query_norms(out.norms)
        self._refresh_recent()

    def _show_training(self, on: bool) -> None:
        self.query.training = on
        self.actions_.train.setEnabled(not on)
        for w in (self.status.train, self.status.train_progress, self.status.cancel_train):
            w.setVisible(on)
        if on:
            self.banner.hide_kind("no-prompt")

    def _refresh_recent(self) -> None:
        menu = self.actions_.recent
        menu.clear()
        for p in self.prefs.recent_files:
            menu.addAction(shown(Path(p).name), lambda path=p: self.query.open_photo(path)).setToolTip(shown(p))
        menu.setEnabled(bool(self.prefs.recent_files))

    def show_message(self, text: str, level: str = "info", action: tuple[str, Callable[[], None]] | None = None,
                     kind: str = "") -> None:
        """One sentence in the banner above the photo, with an optional ``(label, slot)`` button."""
        if level == "error":
            log.warning("%s", text)
        self.banner.show_text(text, level, action, kind)

    def show_hint(self, text: str) -> None:
        """A hint on using the window: after the demo notice when that is shown, else on its own."""
        if self.banner.isVisible() and self.banner.level == "demo":
            self.banner.show_text(f"{self.banner.label.text()} {text}", "demo", kind="hint")
        else:
            self.show_message(text, "info", kind="hint")

    # ========================================================================== what a person asks for
    def start(self) -> None:
        """Load the model (falling back to the demo model when the chosen one has no weights here)."""
        self.model.start(self.prefs.model, self.prefs.device)

    def load_model(self, name: str, device: str) -> None:
        """Load another model; the current one stays usable until it is ready (indexing stops first)."""
        if not self.model.busy:
            self.library.cancel_indexing()
        self.model.load(name, device)

    def open_dialog(self) -> None:
        """Ask for a photo and open it."""
        start = str(Path(self.photo_path).parent) if self.photo_path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open a query photo", start, PHOTO_FILTER)
        if path:
            self.query.open_photo(real_path(path))

    def add_folder_dialog(self) -> None:
        """Ask for a photo folder, add it and index it."""
        folder = QFileDialog.getExistingDirectory(self, "Add a photo folder", str(Path.home()))
        if folder:
            folder = real_path(folder)  # a name that is not UTF-8: the folder on disk, not Qt's text of it
            self.library.add_folder(folder, select=True)
            self.library.select_folder(folder)

    def set_tool(self, tool: Tool) -> None:
        """Switch the prompt tool."""
        self.actions_.tools[tool].setChecked(True)
        self.canvas.set_tool(tool)

    def train_learned_prompt(self) -> None:
        """Tools › Train learned prompt…: ask what to train on, then train in a worker."""
        if self.training_.can_start():
            self.training_.train(ask_training_source(self, self.model.label(), self.prefs.current_folder))

    def show_shortcuts(self) -> None:
        """Help › Keyboard shortcuts (F1): every shortcut in a table."""
        self.shortcuts_dialog = shortcuts_dialog(self, shortcut_rows(self.menuBar()))

    # =========================================================================== facts for tests, bench
    session = property(lambda self: self.model.session, doc="The search session (``None`` until a model loads).")
    photo_path = property(lambda self: self.query.photo_path, doc="The query photo shown.")
    outcome: Outcome | None = property(lambda self: self.query.outcome, doc="The latest answer drawn.")  # type: ignore[assignment]
    indexing = property(lambda self: self.library.indexing, doc="An indexing run is in progress.")
    training = property(lambda self: self.training_.busy, doc="A learned prompt is being trained.")
    is_demo = property(lambda self: self.model.is_demo, doc="The demo model is loaded.")

    @property
    def settled(self) -> bool:
        """No photo is being opened, no index opened, no search waiting or running: what is shown is current."""
        return self.query.settled and not self.lane.busy

    # ========================================================================= layout, settings, closing
    def reset_layout(self) -> None:
        """View › Reset layout: every panel back where a first launch puts it, at its first size."""
        reset_layout(self, self._default_state)

    def showEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(250, self, lambda: fit_to_screen(self))  # once the window manager framed it
            if not self._restored or self.width() <= 1400:  # first launch, or a small screen
                fit_docks(self)

    _shown_once = False

    def save_settings(self) -> None:
        """Write the preferences file and the window geometry."""
        self.prefs.search = self.docks.controls.options()
        self.prefs.marks = self.query.marks()
        self.prefs.brush_px = self.canvas.brush_size
        try:
            save_preferences(self.prefs)
            save_geometry(self)
        except OSError as err:
            log.warning("could not save settings: %s", err)

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
        import time

        self.query.shutdown()
        deadline = time.perf_counter() + wait_ms / 1000
        stopped = self.lane.shutdown(wait_ms)
        left = max(0, int((deadline - time.perf_counter()) * 1000))
        stopped = self.workers.shutdown(left) and stopped
        self.docks.results.shutdown()
        self.model.close(stopped)
        self.stopped_cleanly = stopped
        return stopped

    stopped_cleanly = True
