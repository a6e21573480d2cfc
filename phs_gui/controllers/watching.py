"""Keeping the library's folders current while the app runs, and catching up on start.

Every folder of the Library list that has an index for the loaded model is watched (one
:class:`core.library.watch.FolderWatcher` each, owned by :class:`phs_gui.folder_watch.WatchThread`). When its
watcher starts (after a model loads, so also at launch) and whenever the folder changed and went quiet, an
incremental index run of it is queued: unchanged photos cost one ``stat`` each and are never opened, photos still
being written are left for the next run. Runs go one at a time on a thread of their own at low priority, with the
index engine (never the session's lock or the search lane), so a search is never blocked by one; they wait
while the Library panel's own indexing run or a model load is in progress.

What a person sees: nothing when nothing changed; one sentence in the Library panel when photos were added,
changed or removed (a searched folder is then opened again and the query asked again); one sentence when a
folder vanishes and when it is back; a fault (disk full, the index held by another program) once, in the
banner, while watching goes on.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from core.library.watch import POLL_S
from phs_gui.folder_watch import (
    WatchRun,
    WatchThread,
    WatchTiming,
    change_sentence,
    say_once,
    watch_index_job,
)
from phs_gui.jobs import indexed_folders
from phs_gui.result_rows import shown
from phs_gui.session import SearchSession
from phs_gui.settings import Preferences
from phs_gui.workers import Worker, WorkerPool

#: Seconds a folder must be quiet before a run, which is also the age a photo must reach before it is read.
QUIET_S = 2.0
#: Longest wait for quiet while changes keep coming (seconds).
MAX_WAIT_S = 30.0
#: A stat-only pass of every watched folder this often, for what no event reports (seconds).
RESCAN_S = 600.0
#: Poll instead of kernel events (tests of the fallback; network drives are rescanned anyway).
POLLING = False
#: Longest wait for the searched folders to open after a model load before the start-up checks begin (ms).
OPENING_HOLD_MS = 10000


class WatchController(QObject):
    """Watches the library's indexed folders and runs their background index runs, one at a time.

    Args:
        prefs: the preferences (``keep_current`` turns watching on and off, persisted).
        timing: how the folders are watched (default: the module's constants, read when this is made).

    Signals:
        status(str): one sentence for the Library panel's line.
        message(str, str, object, str): a sentence for the banner, its level, no action, kind ``"watch"``.
        changed(str): a run changed what the index of this folder holds (search it again if it is searched).
    """

    status = Signal(str)
    message = Signal(str, str, object, str)
    changed = Signal(str)
    _due = Signal(str, str)  # from the watch thread: delivered here, on the GUI thread

    def __init__(self, prefs: Preferences, parent: QObject | None = None, timing: WatchTiming | None = None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.timing = timing or WatchTiming(QUIET_S, MAX_WAIT_S, RESCAN_S, POLLING)
        self.session: SearchSession | None = None
        self.last_run: WatchRun | None = None  # the latest run's outcome (for tests and benches)
        self._folders: list[str] = []  # the Library list
        self._watched: list[str] = []
        self._queue: list[str] = []
        self._run: Worker | None = None
        self._run_folder = ""
        self._holds: set[str] = set()  # why no run may start now (see pause)
        self._closed = False
        self._errors: dict[str, str] = {}  # the last fault said per folder (said once until a run succeeds)
        self._pool = WorkerPool(max_threads=1)  # its own thread: the one whose priority a run lowers
        self._thread: WatchThread | None = None
        self._due.connect(self._on_due)

    @property
    def enabled(self) -> bool:
        """Folders are kept up to date (File › Keep folders up to date)."""
        return self.prefs.keep_current

    @property
    def watched(self) -> list[str]:
        """The folders watched now."""
        return list(self._watched)

    @property
    def busy(self) -> bool:
        """A background run is in progress or waiting."""
        return self._run is not None or bool(self._queue)

    @property
    def running_folder(self) -> str:
        """The folder of the background run in progress (``""`` when none runs)."""
        return self._run_folder

    # ------------------------------------------------------------------------------------ what it is told
    def set_session(self, session: SearchSession) -> None:
        """A model was loaded: watch the folders indexed with it, each checked once as its watcher starts."""
        if self._run is not None:
            self._run.cancel()  # it used the previous model; its answer is dropped
        self.session = session
        self._queue.clear()
        self._errors.clear()
        self._holds.add("opening")  # until the window has opened the searched folders (its line comes first)
        QTimer.singleShot(OPENING_HOLD_MS, self, lambda: self.pause("opening", False))  # if it never says so
        self._refresh(restart=True)

    def set_folders(self, folders: list[str], *_: object) -> None:
        """The Library list changed (a folder added, removed, indexed)."""
        self._folders = list(folders)
        self._refresh()

    def pause(self, why: str, on: bool) -> None:
        """Hold background runs while ``why`` lasts (``"indexing"``: the panel's run; ``"model"``: a load;
        ``"opening"``: the searched folders are being opened after a model load). A run in progress stops after
        its current photo and is queued again."""
        if on:
            self._holds.add(why)
            if self._run is not None:
                self._run.cancel()
        else:
            self._holds.discard(why)
            if why == "indexing":
                self._refresh()  # a folder indexed for the first time is watched from now on
            self._next()

    def set_enabled(self, on: bool) -> None:
        """Keep the folders up to date, or stop (persisted). Turned on, every folder is checked once."""
        if on == self.prefs.keep_current:
            return
        self.prefs.keep_current = on
        if not on:
            self._queue.clear()
            if self._run is not None:
                self._run.cancel()
            self.status.emit("Folders are no longer kept up to date: press Index to update one.")
        self._refresh(restart=on)

    def shutdown(self) -> None:
        """Stop the watchers and ask the background run to stop after its current photo (what it committed is
        kept; the next start catches up). Does not wait: see :meth:`wait`."""
        self._closed = True
        self._queue.clear()
        if self._run is not None:
            self._run.cancel()
        if self._thread is not None:
            self._thread.stop(timeout_s=0)

    def wait(self, timeout_ms: int) -> bool:
        """Wait at most ``timeout_ms`` for the run and the watchers to stop; ``True`` if they did."""
        t0 = time.perf_counter()
        stopped = self._pool.shutdown(timeout_ms)
        if self._thread is not None:
            self._thread.stop(timeout_s=max(0.0, timeout_ms / 1000 - (time.perf_counter() - t0)))
            stopped = stopped and not self._thread.is_alive()
        return stopped

    # ------------------------------------------------------------------------------------------ watching
    def _refresh(self, restart: bool = False) -> None:
        if self._closed:
            return
        indexed = set(indexed_folders(self.session)) if self.enabled and self.session is not None else set()
        self._watched = [f for f in dict.fromkeys(self._folders) if f in indexed]
        if self._run is not None and self._run_folder not in self._watched:
            self._run.cancel()  # taken off the list (removed): its index is about to be deleted
        if self._thread is None:
            if not self._watched:
                return
            self._thread = WatchThread(self._due.emit, self.timing)
            self._thread.start()
        self._thread.watch(self._watched, restart=restart)

    def _on_due(self, folder: str, why: str) -> None:
        if self._closed or folder not in self._watched:
            return  # said before the folder was taken off the list
        name = shown(Path(folder).name or folder)
        if why == "vanished":
            if folder in self._queue:
                self._queue.remove(folder)
            self.status.emit(f"{name} is not there (unplugged or moved?): its index is kept, and it is kept up to "
                             "date again when it is back.")  # fmt: skip
        elif why == "polling":
            self.message.emit(f"{name} cannot be watched for changes (the system's limit of watched folders is "
                              f"reached): it is looked at every {POLL_S:.0f} s instead.", "info", None, "watch")
        else:
            if why == "back":
                self.status.emit(f"{name} is back; looking for what changed while it was away.")
            self._enqueue(folder)

    # -------------------------------------------------------------------------------------------- runs
    def _enqueue(self, folder: str, first: bool = False) -> None:
        if folder not in self._queue:  # a run of it in progress: this one waits behind it
            self._queue.insert(0 if first else len(self._queue), folder)
        self._next()

    def _next(self) -> None:
        if (self._run is not None or self._holds or self._closed or not self.enabled or self.session is None
                or not self._queue):
            return
        folder = self._queue.pop(0)
        if folder not in self._watched:  # taken off the list meanwhile: never index it again
            self._next()
            return
        session = self.session
        w = Worker(watch_index_job, folder, session.index_engine, self.timing.quiet_s,
                   doing=f"bringing the index of {folder} up to date")
        w.signals.result.connect(lambda run, s=session: self._on_run(run, s))
        w.signals.error.connect(lambda text, f=folder, s=session: self._on_error(f, text, s))
        w.signals.finished.connect(self._run_over)
        self._run_folder = folder
        self._run = self._pool.start(w)

    def _run_over(self) -> None:
        self._run, self._run_folder = None, ""
        self._next()

    def _on_run(self, run: WatchRun, session: SearchSession) -> None:
        if session is not self.session or self._closed:
            return
        self.last_run = run
        rep = run.report
        if run.outcome == "cancelled" and self.enabled and run.folder in self._watched:
            self._enqueue(run.folder, first=True)  # held before it began: it runs once the hold is over
        if rep is None:  # vanished during the run (the watcher says it), cancelled early or no index any more
            return
        self._errors.pop(run.folder, None)
        if rep.indexed or rep.reused or rep.removed:
            self.changed.emit(run.folder)  # first, so that the sentence below is the line's last word
        text = change_sentence(run)
        if text:
            self.status.emit(text)
        if rep.settling and self._thread is not None:
            self._thread.note_change(run.folder)  # come back once those photos are written
        if rep.cancelled and self.enabled and run.folder in self._watched:
            self._enqueue(run.folder, first=True)  # held for the panel's run: finish after it

    def _on_error(self, folder: str, text: str, session: SearchSession) -> None:
        if session is not self.session or self._closed:
            return
        name = shown(Path(folder).name or folder)
        sentence = f"{name} could not be brought up to date: {text[:1].lower()}{text[1:]}"
        if say_once(self._errors, folder, sentence):  # the same fault at every change is said once
            self.message.emit(sentence, "error", None, "watch")
