"""The main window: it builds the widgets (:mod:`phs_gui.parts`), makes one controller per job
(:mod:`phs_gui.controllers`) and connects the two in :func:`phs_gui.wiring.wire`, in one place.

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
from phs_gui.controllers.watching import WatchController
from phs_gui.dialogs import ask_training_source, shortcut_rows, shortcuts_dialog
from phs_gui.jobs import EngineLoader, QueryAnswer, default_engine_loader, index_summary  # noqa: F401 - re-exported
from phs_gui.layout import (
    default_layout,
    fit_docks,
    fit_to_screen,
    initial_geometry,
    reset_layout,
    restore_geometry,
    save_geometry,
)
from phs_gui.objects_panel import attach_objects
from phs_gui.parts import Banner, build_actions, build_docks, build_status
from phs_gui.result_rows import real_path, shown
from phs_gui.session import SearchSession
from phs_gui.settings import Preferences, load_preferences, save_preferences
from phs_gui.wiring import wire
from phs_gui.workers import MainThreadGC, SerialLane, WorkerPool

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
        self.gc_guard = MainThreadGC(self)  # cycles are collected on this thread, never in a worker
        self.workers = WorkerPool(max_threads=3)
        self.lane = SerialLane()  # every use of the engine, one at a time
        self.model = ModelController(self.workers, engine_loader, check_weights, self)
        self.library = LibraryController(self.prefs, self.workers, self.lane, demo_count, self)
        self.watching = WatchController(self.prefs, self)  # the library's folders kept current
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
        wire(self)  # every connection, in one place
        self.objects = attach_objects(self)  # the query's several objects (their own module)
        self._show_prefs()
        self._default_state = self.saveState()
        self.setGeometry(initial_geometry(self))
        self._restored = restore_geometry(self)
        self._placed_size = self.size()
        if not self._restored:
            default_layout(self)

    # ============================================================================================ wiring
    def _show_prefs(self) -> None:
        """The remembered choices, shown once at start."""
        self.docks.controls.set_options(self.prefs.search)
        self.docks.results_panel.hide_query.setChecked(self.prefs.hide_query)
        self.actions_.keep_current.setChecked(self.prefs.keep_current)
        self.docks.results_panel.size_slider.setValue(self.prefs.thumb_px)
        o = self.prefs.search
        self.docks.results_panel.filter_bar.set_values(
            {"after": o.after, "before": o.before, "under": o.under, "types": o.types})
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
            if self.size() == self._placed_size:  # as placed here (not resized by the caller): refit once framed
                QTimer.singleShot(250, self, lambda: fit_to_screen(self))
            if not self._restored or self.width() <= 1400:  # first launch, or a small screen
                fit_docks(self)

    _shown_once = False

    def save_settings(self) -> None:
        """Write the preferences file and the window geometry."""
        o = self.prefs.search  # the controls hold every option but the filter (the filter bar's)
        self.prefs.search = replace(self.docks.controls.options(), after=o.after, before=o.before, under=o.under,
                                    types=o.types)
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
        self.watching.shutdown()  # the watchers and a background run are asked to stop; waited for below
        deadline = time.perf_counter() + wait_ms / 1000
        stopped = self.lane.shutdown(wait_ms)
        left = max(0, int((deadline - time.perf_counter()) * 1000))
        stopped = self.workers.shutdown(left) and stopped
        stopped = self.watching.wait(max(0, int((deadline - time.perf_counter()) * 1000))) and stopped
        self.docks.results.shutdown()
        self.annotations.close()
        self.model.close(stopped)
        self.gc_guard.stop()
        self.stopped_cleanly = stopped
        return stopped

    stopped_cleanly = True
