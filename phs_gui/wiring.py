"""Every signal of the window connected in one place: what the widgets report goes to the controllers, what
the controllers say goes to the widgets that show it (and to the controller that acts on it). Controllers never
call each other; they meet here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phs_gui import dialogs
from phs_gui.annotating import install as install_annotating
from phs_gui.layout import follow_thumb_size

if TYPE_CHECKING:
    from phs_gui.main_window import MainWindow


def wire(self: MainWindow) -> None:
    """Connect everything in the window ``self``."""
    _widgets_to_controllers(self)
    _controllers_to_widgets(self)
    install_annotating(self)  # its controllers, dock and menus; undo and redo go through its edit journal


def _widgets_to_controllers(self: MainWindow) -> None:
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
    a.clear.triggered.connect(c.clear_prompt)
    a.fit.triggered.connect(c.fit_to_window)
    a.zoom_in.triggered.connect(lambda: c.zoom_by(1.25))
    a.zoom_out.triggered.connect(lambda: c.zoom_by(0.8))
    a.reset_layout.triggered.connect(self.reset_layout)
    a.shortcuts.triggered.connect(self.show_shortcuts)
    a.brush_down.triggered.connect(lambda: c.set_brush_size(round(c.brush_size / 1.2)))
    a.brush_up.triggered.connect(lambda: c.set_brush_size(round(c.brush_size * 1.2) + 1))
    a.train.triggered.connect(self.train_learned_prompt)
    a.keep_current.toggled.connect(self.watching.set_enabled)
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
    d.results_panel.filter_bar.changed.connect(q.set_filter)
    d.results_panel.hide_query.toggled.connect(lambda on: setattr(self.prefs, "hide_query", on))
    d.results_panel.size_slider.valueChanged.connect(lambda v: setattr(self.prefs, "thumb_px", int(v)))
    grid.min_height_changed.connect(lambda old, new: follow_thumb_size(self, old, new))
    lp.add_folder_requested.connect(self.add_folder_dialog)
    lp.folder_selected.connect(lib.select_folder)
    lp.searched_changed.connect(lib.set_searched)
    lp.index_requested.connect(lib.start_indexing)
    lp.cancel_requested.connect(lib.cancel_indexing)
    lp.remove_requested.connect(lambda f: dialogs.confirm_remove_folder(self, f) and lib.remove_folder(f))
    s.cancel_load.clicked.connect(m.cancel)
    s.cancel_train.clicked.connect(t.cancel)

def _controllers_to_widgets(self: MainWindow) -> None:
    """What each controller says, to the widgets that show it (and to the controllers that act on it)."""
    s, q, lib, m, t, pv = self.status, self.query, self.library, self.model, self.training_, self.previews
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
    fb = self.docks.results_panel.filter_bar
    q.results_answered.connect(lambda ans: (fb.show_count(ans.passing), fb.set_subfolders(ans.subfolders)))
    q.timing.connect(s.timing.setText)
    q.train_requested.connect(self.train_learned_prompt)
    q.hint.connect(self.show_hint)
    lib.folders_changed.connect(lp.set_folders)
    lib.left_out.connect(lp.show_left_out)
    lib.message_withdrawn.connect(self.banner.hide_kind)
    lib.status.connect(lp.show_status)
    lib.progress.connect(lp.show_any_progress)
    lib.finished_bar.connect(lambda: (lp.progress.setRange(0, 1), lp.progress.setValue(1)))
    lib.running.connect(lp.set_running)
    lib.failures.connect(lp.show_failures)
    lib.count.connect(s.show_indexed)
    lib.count.connect(grid.show_library_size)
    lib.searchable_changed.connect(q.rescore)
    lib.first_photo.connect(q.open_if_none)
    _watching(self)
    t.running.connect(self._show_training)
    t.progress.connect(s.show_training)
    t.trained.connect(q.rescore)
    pv.step_requested.connect(grid.step_from)
    pv.use_as_query.connect(q.open_photo)
    for ctl in (m, lib, q, t, self.watching):
        ctl.message.connect(self.show_message)
    q.message_withdrawn.connect(lambda kind: self.banner.hide_errors() if kind == "error"
                                else self.banner.hide_kind(kind))


def _watching(self: MainWindow) -> None:
    """The watched folders: told the model, the Library list and when the panel's own run or a model load
    holds them; what they find goes to the Library panel's line and to the searched folders."""
    wt, m, lib = self.watching, self.model, self.library
    m.loaded.connect(lambda session, *_: wt.set_session(session))  # after the window's own slot: folder opened
    m.loading.connect(lambda _text: wt.pause("model", True))
    m.load_over.connect(lambda: wt.pause("model", False))
    lib.folders_changed.connect(wt.set_folders)
    lib.running.connect(lambda on: wt.pause("indexing", on))
    lib.count.connect(lambda *_: wt.pause("opening", False))  # the searched folders are open: checks may start
    wt.status.connect(self.docks.library.show_status)
    wt.changed.connect(lib.refresh_searched)
