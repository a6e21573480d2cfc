"""The query: the photo shown, its prompt history (heads forced by hand included), and the latest answer.

Everything that uses the engine runs in the window's :class:`phs_gui.workers.SerialLane`, where the latest
request wins: a request overtaken before it starts never runs, an answer for a photo no longer shown is
dropped, and while a box is dragged each answer's heads are drawn as they come (the final box's results
follow). The controller holds no widget; it says what to show through its signals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal

from core.defaults import LEARNED_METHODS, MARKER_METHODS
from core.errors import PHSError
from phs_gui.jobs import EncodedPhoto, QueryAnswer, load_and_encode, query_job
from phs_gui.objects_state import carried, objects_from_dict, objects_to_dict
from phs_gui.prompt_state import History, PromptState, state_from_dict, state_to_dict
from phs_gui.result_rows import shown
from phs_gui.session import SearchOptions, SearchSession
from phs_gui.settings import Preferences
from phs_gui.workers import SerialLane, Worker

if TYPE_CHECKING:
    from core.search import Outcome

PREVIEW_DEBOUNCE_MS = 30


class QueryController(QObject):
    """Opens query photos, keeps the prompt history and asks for heads and results.

    Signals:
        photo_opened(EncodedPhoto): a photo is encoded and shown from now on.
        state_restored(PromptState): undo or redo chose the prompt to show.
        heads_answered(QueryAnswer): heads and maps to draw (also for a request already overtaken).
        results_answered(QueryAnswer): the latest request's answer: results to show.
        history_changed(bool, bool): whether undo and redo are possible.
        timing(str): the status bar's timing text.
        message(str, str, object, str): a sentence, its level, an optional ``(label, slot)``, its kind.
        message_withdrawn(str): the message of this kind no longer holds.
        train_requested(): the person asked to train a learned prompt from a message.
        hint(str): a one-line hint on how to use the window (the first launch's).
        edited(): an edit entered the prompt history (the window's undo history records it).
    """

    photo_opened = Signal(object)
    state_restored = Signal(object)
    heads_answered = Signal(object)
    results_answered = Signal(object)
    history_changed = Signal(bool, bool)
    timing = Signal(str)
    message = Signal(str, str, object, str)
    message_withdrawn = Signal(str)
    train_requested = Signal()
    hint = Signal(str)
    edited = Signal()

    def __init__(self, prefs: Preferences, lane: SerialLane, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.lane = lane
        self.session: SearchSession | None = None
        self.history = History()
        self.state: PromptState | None = None  # the prompt drawn now (while dragging: ahead of the history)
        self.outcome: Outcome | None = None
        self.photo_path: str | None = None
        self.backdrops: tuple | None = None
        self.encode_ms: float | None = None
        self.last_prompt_ms: float | None = None
        self.first_results_s: float | None = None
        self.training = False  # a learned prompt is being trained (no "train one" message meanwhile)
        self._restore_marks = dict(prefs.marks)  # the marks of the last run, put back on its photo once
        self._t_created = time.perf_counter()
        self._encoding: Worker | None = None
        self._encode_gen = 0
        self._query_gen = 0
        self._shown_gen = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self._timer.timeout.connect(self.rescore)
        #: ``(state, gen) -> Worker`` for a state with several objects (set by the objects controller).
        self.request_objects: Callable[[PromptState, int], Worker] | None = None

    # ------------------------------------------------------------------------------------------- photo
    def set_session(self, session: SearchSession | None) -> None:
        """Search with ``session`` from now on (:meth:`reopen` encodes the photo with it)."""
        self.session = session
        if self.state is not None and self.state.forced:  # head numbers belong to the old model
            self.state = self.state.with_forced(set(), set())

    def reopen(self) -> None:
        """Encode the photo shown (or the one shown when the app was closed) with the current session."""
        photo = self.photo_path or (self.prefs.last_photo if Path(self.prefs.last_photo).is_file() else "")
        if photo and self.session is not None and self._encoding is None:
            self.open_photo(photo)

    def open_if_none(self, path: str, marks: dict | None = None) -> None:
        """Open ``path`` with ``marks`` (see :func:`state_to_dict`, ``size`` optional) unless a photo is shown
        or being opened: the demo gallery's first query, which teaches the method by example."""
        if path and self.photo_path is None and self._encoding is None:
            if marks:
                self._restore_marks = dict(marks)
                if marks.get("label"):
                    self.hint.emit(f"This first search starts from a box around the {marks['label']}: the heads "
                                   "kept for it are outlined on the right. Mark your own: drag a box (B), click "
                                   "points (P) or paint (M) on the photo.")
            self.open_photo(path)

    def open_photo(self, path: str) -> None:
        """Decode and encode a photo in the engine lane; its heads and results follow on their own."""
        if self.photo_path is not None:
            self.message_withdrawn.emit("hint")
        if self.session is None:
            self.message.emit("The model is still loading; open the photo again in a moment.", "info", None, "")
            return
        self._encode_gen += 1
        self._query_gen += 1  # answers for the photo shown now are stale from here on
        self.lane.drop("query")
        self._timer.stop()
        self.timing.emit(f"opening {shown(Path(path).name)}…")
        gen = self._encode_gen
        w = Worker(load_and_encode, self.session, path, doing=f"opening {Path(path).name}")
        w.signals.result.connect(lambda out, g=gen: self._on_encoded(out, g))
        w.signals.error.connect(lambda t, g=gen: self._on_encode_error(t, g))
        self._encoding = self.lane.submit("encode", w)

    def _on_encode_error(self, text: str, gen: int) -> None:
        if gen != self._encode_gen:
            return
        self._encoding = None
        self.message.emit(text, "error", None, "")
        self._emit_timing()

    def _on_encoded(self, out: EncodedPhoto, gen: int) -> None:
        if gen != self._encode_gen:  # another photo was asked for meanwhile; its encode follows
            return
        self._encoding = None
        old, old_photo, self.photo_path = self.state, self.photo_path, out.path
        self.prefs.add_recent(out.path)
        self.prefs.last_photo = out.path
        self.backdrops = out.backdrops
        self.outcome = None
        self.encode_ms = out.encode_ms
        self.photo_opened.emit(out)  # the canvas shows the photo with an empty prompt
        self.state = self._restored(out) or carried(old, old_photo, out.size, out.path) or PromptState(out.size)
        self.history.reset(self.state)
        if not self.state.is_empty or self.state.forced or self.state.objects is not None:
            self.state_restored.emit(self.state)
        self._emit_history()
        self.message_withdrawn.emit("error")
        self.rescore()

    def _restored(self, out: EncodedPhoto) -> PromptState | None:
        marks, self._restore_marks = self._restore_marks, {}
        if marks.get("photo") != out.path or self.session is None:
            return None
        st = state_from_dict(marks, out.size, self.session.engine.num_heads)
        return st if st is None or "objects" not in marks else objects_from_dict(
            marks, st, out.path, self.session.engine.num_heads)

    def marks(self) -> dict:
        """What is marked on the photo shown, to put back on the next launch (``{}``: nothing)."""
        st = self.state
        if st is None or self.photo_path is None or (st.is_empty and not st.forced and st.objects is None):
            return {}
        return {"photo": self.photo_path, **state_to_dict(st), **objects_to_dict(st, self.photo_path)}

    # ------------------------------------------------------------------------------------------ prompts
    def set_prompt(self, state: PromptState) -> None:
        """An edit on the canvas: recorded in the history (with the heads forced now) and answered."""
        self._timer.stop()
        self.message_withdrawn.emit("hint")  # the person marks their own: the first launch's hint is done
        cur = self.state
        self.state = replace(state, force_on=cur.force_on, force_off=cur.force_off, objects=cur.objects) \
            if cur is not None else state
        if self.history.push(self.state):
            self.edited.emit()
        self._emit_history()
        self.rescore()

    def preview_prompt(self, state: PromptState) -> None:
        """The prompt while a box is dragged: one request every few milliseconds at most, from the box shown
        then (a debounce that restarts on every move would answer only when the hand pauses)."""
        cur = self.state
        self.state = replace(state, force_on=cur.force_on, force_off=cur.force_off, objects=cur.objects) \
            if cur is not None else state
        if not self._timer.isActive():
            self._timer.start()

    def apply(self, state: PromptState) -> None:
        """An edit of the objects (not of the canvas): recorded as it is, shown and answered."""
        self._timer.stop()
        if self.history.push(state):
            self.edited.emit()
            self._restore(state)

    def undo(self) -> None:
        """Restore the previous prompt (heads forced by hand included) and its results."""
        self._restore(self.history.undo())

    def redo(self) -> None:
        """Re-apply an undone prompt edit."""
        self._restore(self.history.redo())

    def _restore(self, state: PromptState | None) -> None:
        if state is None:
            return
        self.state = state
        self.state_restored.emit(state)
        self._emit_history()
        self.rescore()

    def _emit_history(self) -> None:
        self.history_changed.emit(self.history.can_undo, self.history.can_redo)

    def toggle_head(self, i: int) -> None:
        """A click on head ``i``: a forced head goes back to PHS's choice; otherwise force the opposite of now.
        An edit like any other: undo takes it back."""
        st = self.state
        if st is None or self.outcome is None or self.outcome.selection is None:
            self.message.emit("Mark the object first (click, box or brush); then heads can be forced on or off.",
                              "info", None, "")
            return
        on, off = set(st.force_on), set(st.force_off)
        if i in on or i in off:
            on.discard(i)
            off.discard(i)
        elif bool(self.outcome.selection.selected[i]):
            off.add(i)
        else:
            on.add(i)
        self._force(on, off, revert=st)

    def reset_heads(self) -> None:
        """Forget heads forced by hand (an edit: undo brings them back)."""
        if self.state is not None and self.state.forced:
            self._force(set(), set(), revert=self.state)

    def _force(self, on: set[int], off: set[int], revert: PromptState) -> None:
        self.state = revert.with_forced(on, off)
        if self.history.push(self.state):
            self.edited.emit()
        self._emit_history()
        self.rescore(revert=revert)

    # ----------------------------------------------------------------------------------------- answers
    def set_options(self, options: SearchOptions) -> None:
        """New search options: kept in the preferences (with the filter set now) and answered."""
        cur = self.prefs.search
        options = replace(options, after=cur.after, before=cur.before, under=cur.under, types=cur.types)
        self.prefs.search = options
        if options.method not in LEARNED_METHODS:
            self.message_withdrawn.emit("no-prompt")
        if options.method not in MARKER_METHODS:
            self.message_withdrawn.emit("marker-mask")
        self.rescore()

    def set_filter(self, values: dict[str, str]) -> None:
        """A new filter from the filter bar (``after``, ``before``, ``under``, ``types`` as typed): part of the
        search options, answered by a search among the photos that pass. A date or subfolder that is not one
        is said in one sentence and changes nothing."""
        options = replace(self.prefs.search, **{k: str(values.get(k, "")) for k in ("after", "before", "under",
                                                                                   "types")})
        try:
            options.photo_filter()
        except PHSError as e:
            self.message.emit(str(e), "error", None, "filter")
            return
        self.message_withdrawn.emit("filter")
        self.prefs.search = options
        self.rescore()

    def rescore(self, revert: PromptState | None = None) -> None:
        """Ask for the heads, maps and results of the prompt shown now (in the engine lane; latest wins).

        Args:
            revert: the state to go back to if the engine refuses this request's head choice.
        """
        if self.session is None or self._encoding is not None or self.photo_path is None:
            return
        self._timer.stop()
        self._query_gen += 1
        gen = self._query_gen
        st = self.state
        prompt = None if st is None else st.to_prompt()
        # Heads forced with nothing marked change nothing: none is sent, and the panel says they wait.
        on = () if st is None or prompt is None else tuple(sorted(st.force_on))
        off = () if st is None or prompt is None else tuple(sorted(st.force_off))
        if st is not None and st.objects is not None and self.request_objects is not None:
            w = self.request_objects(st, gen)
        else:
            w = Worker(query_job, self.session, gen, prompt, self.prefs.search, on, off, self.backdrops,
                       self.photo_path, doing="searching")
        w.signals.result.connect(lambda ans, photo=self._encode_gen: self._on_answer(ans, photo))
        w.signals.error.connect(lambda t, g=gen, rv=revert: self._on_query_error(t, g, rv))
        self.lane.submit("query", w)

    @property
    def settled(self) -> bool:
        """No photo is being opened and no search is waiting or running (what is shown is current)."""
        return self._encoding is None and not self.lane.busy and not self._timer.isActive()

    def _on_query_error(self, text: str, gen: int, revert: PromptState | None) -> None:
        if gen != self._query_gen:
            return
        self.message.emit(text, "error", None, "")
        if revert is not None:  # the head choice was refused: back to the last one that worked
            self.history.undo()
            self._restore(revert)

    def _on_answer(self, ans: QueryAnswer | None, photo: int) -> None:
        """Draw an answer for the photo shown now that is newer than the one drawn. While a box is dragged
        every answer is overtaken by a newer request before it arrives; its heads are drawn anyway (the maps
        move with the hand), the results wait for the last request's answer."""
        if ans is None or self.session is None or ans.gen <= self._shown_gen:
            return
        if photo != self._encode_gen or self._encoding is not None:
            return  # for a photo no longer shown, or one being replaced
        self._shown_gen = ans.gen
        self.outcome = ans.outcome
        st = self.state
        if st is not None and st.forced and ans.outcome.selection is None:
            ans = replace(ans, idle_forced=(tuple(sorted(st.force_on)), tuple(sorted(st.force_off))))
        self.heads_answered.emit(ans)
        if ans.gen != self._query_gen:
            return  # overtaken: the latest request's answer brings the results
        self.last_prompt_ms = ans.ms
        self.results_answered.emit(ans)
        self._emit_timing()
        self.message_withdrawn.emit("error")
        self._say_about_marker(ans)
        if ans.warnings:  # e.g. Query-DB cache rows that failed their checksums: left out, and why
            self.message.emit(" ".join(ans.warnings), "info", None, "index-warning")
        else:
            self.message_withdrawn.emit("index-warning")
        if self.first_results_s is None:
            self.first_results_s = time.perf_counter() - self._t_created

    def _emit_timing(self) -> None:
        parts = []
        if self.encode_ms is not None:
            parts.append(f"encode {self.encode_ms:.0f} ms")
        if self.last_prompt_ms is not None and self.photo_path is not None:
            parts.append(f"prompt→results {self.last_prompt_ms:.1f} ms")
        self.timing.emit(" · ".join(parts))

    def _say_about_marker(self, ans: QueryAnswer) -> None:
        """A word on a marker method: no learned prompt yet, or a painted mask placed as its box."""
        prompt = ans.outcome.spec.prompt
        if ans.missing_prompt:
            if not self.training:
                label = self.session.engine.spec.label if self.session is not None else "this model"
                self.message.emit(
                    f"There is no learned prompt for {label} yet, so PHS answered this search. Train one first: "
                    "it learns from the photos of the current folder or from generated scenes, in the background "
                    "(Tools, Train learned prompt).", "info", ("Train…", self.train_requested.emit), "no-prompt")
            return
        self.message_withdrawn.emit("no-prompt")
        if ans.marker is not None and prompt is not None and prompt.box is None and prompt.mask is not None:
            self.message.emit("Markers take a point or a box: the marker is pasted over the painted area's "
                              "bounding box.", "info", None, "marker-mask")
        else:
            self.message_withdrawn.emit("marker-mask")

    def shutdown(self) -> None:
        """Drop every answer still to come."""
        self._timer.stop()
        self._query_gen += 1
        self._encode_gen += 1
