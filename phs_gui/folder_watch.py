"""What keeping the library's folders current needs off the GUI thread: one thread that owns a
:class:`core.library.watch.FolderWatcher` per folder, the background index run's worker body (at low priority),
and the one sentence that says what a run changed.

The watch thread never indexes: it only says *that* a folder is due (changed and quiet, its periodic rescan,
vanished, back, its watcher started), through a callback that the controller turns into a queued Qt signal.
Starting a watcher walks the folder tree (one inotify watch per subfolder), and a vanished network share can
make a ``stat`` hang: both happen here, never on the GUI thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.library import IndexReport, index_folder
from core.library.watch import TICK_S, FolderWatcher
from phs_gui.jobs import INDEX_WRITER
from phs_gui.result_rows import shown

if TYPE_CHECKING:
    from core.method.engine import PHSEngine

#: Seconds between two tries to watch a folder that is there but could not be watched (not readable).
RETRY_S = 5.0
#: How much lower than normal a background run's thread runs (its decoding threads inherit it): a search, the
#: window and other programs come first.
BACKGROUND_NICENESS = 10


@dataclass(frozen=True)
class WatchTiming:
    """How the folders are watched (seconds).

    Attributes:
        quiet_s: a change is acted on once the folder was quiet this long; it is also the age a photo must
            reach before a run reads it (younger ones are still being written: left for the next run).
        max_wait_s: at the latest this long after the first change while changes keep coming.
        rescan_s: a stat-only pass this often even without any event (network drives, dropped events).
        polling: poll the folders instead of asking the kernel for events.
    """

    quiet_s: float = 2.0
    max_wait_s: float = 30.0
    rescan_s: float = 600.0
    polling: bool = False


class WatchThread(threading.Thread):
    """One thread owning the watchers of the folders it is given; ``say(folder, why)`` when one is due.

    ``why`` is ``"started"`` (its watcher is on: look for what changed while nobody watched), ``"changed"``,
    ``"rescan"``, ``"vanished"``, ``"back"`` or ``"polling"`` (the kernel refused a watch; polled instead).
    ``say`` is called from this thread.
    """

    def __init__(self, say: Callable[[str, str], None], timing: WatchTiming) -> None:
        super().__init__(name="phs-folder-watch", daemon=True)
        self._say, self.timing = say, timing
        self._lock = threading.Lock()
        self._wanted: tuple[list[str], bool] | None = None  # (folders, restart all) not yet applied
        self._watchers: dict[str, FolderWatcher] = {}
        self._gone: set[str] = set()  # watched folders that are not there now
        self._retry_at: dict[str, float] = {}  # when a watcher that could not start is tried again (monotonic)
        self._halt = threading.Event()

    def watch(self, folders: list[str], restart: bool = False) -> None:
        """Watch exactly ``folders`` from now on (``restart``: start every watcher again, so each says
        ``"started"`` once more)."""
        with self._lock:
            self._wanted = (list(folders), restart or (self._wanted is not None and self._wanted[1]))

    def note_change(self, folder: str) -> None:
        """Come back to ``folder`` once it is quiet (a run left photos that were still being written)."""
        with self._lock:
            w = self._watchers.get(folder)
        if w is not None:
            w.note_change()

    def _tell(self, folder: str, why: str) -> None:
        if self._halt.is_set():
            return  # stopping: whoever listened may be gone
        with contextlib.suppress(RuntimeError):  # its receiver was deleted meanwhile (the window closed)
            self._say(folder, why)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop every watcher and the thread (waits at most ``timeout_s`` for it)."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:  # noqa: D102 - thread body
        try:
            while not self._halt.is_set():
                self._apply()
                for folder, w in list(self._watchers.items()):
                    if self._halt.is_set():
                        break
                    self._check(folder, w)
                self._halt.wait(TICK_S)
        finally:
            for w in self._watchers.values():
                w.stop()

    def _apply(self) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, None
        if wanted is None:
            return
        folders, restart = wanted
        for folder in list(self._watchers):
            if restart or folder not in folders:
                with self._lock:
                    w = self._watchers.pop(folder)
                w.stop()
                self._gone.discard(folder)
        for folder in folders:
            if folder not in self._watchers and not self._halt.is_set():
                t = self.timing
                w = FolderWatcher(folder, quiet_s=t.quiet_s, max_wait_s=t.max_wait_s, rescan_s=t.rescan_s,
                                  polling=t.polling)  # fmt: skip
                with self._lock:
                    self._watchers[folder] = w
                self._start(folder, w, "started")

    def _start(self, folder: str, w: FolderWatcher, why: str) -> None:
        try:
            w.start()
        except OSError:
            w.stop()
            if not w.polling and Path(folder).is_dir():  # there, but the kernel refused (its watch limit): poll
                w.polling = True
                self._start(folder, w, why)
                return
            # not there (or not readable) now: watched again once it is back
            self._retry_at[folder] = time.monotonic() + RETRY_S
            if folder not in self._gone:
                self._gone.add(folder)
                self._tell(folder, "vanished")
            return
        self._gone.discard(folder)
        if w.backend == "polling" and not self.timing.polling:
            self._tell(folder, "polling")
        self._tell(folder, why)

    def _check(self, folder: str, w: FolderWatcher) -> None:
        if folder in self._gone:
            if time.monotonic() >= self._retry_at.get(folder, 0.0) and Path(folder).is_dir():
                w.stop()
                self._start(folder, w, "back")
            return
        why = w.due()
        if why == "vanished":
            w.stop()
            self._gone.add(folder)
        if why is not None:
            self._tell(folder, why)


def lower_priority(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's priority to ``niceness`` where the OS allows one thread's priority to be set
    (Linux: a thread is a task of its own with its own nice value; threads it starts inherit it). Returns
    whether it is lowered. Never raised back: a thread that ran a background run keeps running them only."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
        return True
    except (AttributeError, OSError):
        return False


@dataclass(frozen=True)
class WatchRun:
    """What one background run of a folder did.

    Attributes:
        folder: the photo folder.
        report: the indexer's report (``None`` when the run did not end with one: see ``outcome``).
        before: photos searchable before the run (from the index description), ``None`` if unknown.
        niced: the run's thread had its priority lowered.
        outcome: ``"done"``; ``"vanished"`` (the folder disappeared during the run; what it committed is
            kept); ``"cancelled"`` (asked to stop before it began); ``"no-index"`` (the folder has no index for
            the model now, removed meanwhile: a background run never makes one).
    """

    folder: str
    report: IndexReport | None
    before: int | None
    niced: bool
    outcome: str = "done"


def searchable_before(folder: str, engine: PHSEngine) -> int | None:
    """Photos the index of ``folder`` held at its last save (its description's vector count), ``None`` when
    there is no index for ``engine``'s model or it does not say."""
    from core.library import store as st

    side = st.read_sidecar(st.index_dir_for(folder, st.normalize_fingerprint(engine.fingerprint())))
    n = ((side or {}).get("faiss") or {}).get("ntotal")
    return int(n) if isinstance(n, int) else None


def watch_index_job(folder: str, engine: PHSEngine, settle_s: float, *, report: Callable,
                    cancel: threading.Event) -> WatchRun:
    """Worker body: one incremental, stat-only-when-unchanged index run of ``folder`` at low priority.

    Photos younger than ``settle_s`` are left for later (``report.settling``). A folder that vanishes meanwhile
    keeps what was committed and is no error here (the watcher says it). Other faults (disk full, index held
    by another program) raise their one-sentence :class:`core.errors.PHSError`.
    """
    from core.library import FolderVanishedError

    niced = lower_priority()
    with INDEX_WRITER:  # one writer at a time with the Library panel's run and Remove
        before = searchable_before(folder, engine)
        if cancel.is_set() or before is None:  # stopped while it waited, or its index was removed meanwhile
            return WatchRun(folder, None, before, niced, "cancelled" if before is not None else "no-index")
        try:
            rep = index_folder(folder, engine, batch_size=8, workers=2, cancel=cancel, settle_s=settle_s)
        except FolderVanishedError:
            return WatchRun(folder, None, before, niced, "vanished")
    return WatchRun(folder, rep, before, niced)


def _photos(n: int) -> str:
    return f"{n} photo" if n == 1 else f"{n} photos"


def change_sentence(run: WatchRun, at: float | None = None) -> str:
    """One sentence on what a run changed (``""`` when it changed nothing), with the time it ended:
    "3 photos added to Pictures, 1 removed (14:02)."."""
    rep = run.report
    if rep is None:
        return ""
    touched = rep.indexed + rep.reused
    added = touched if run.before is None else min(touched, max(0, rep.done_total - run.before + rep.removed))
    what = [  # (count, what happened, how the folder is named after it)
        (added, "added" if run.before is not None else "new or changed", "to" if run.before is not None else "in"),
        (touched - added, "changed", "in"),
        (rep.removed, "removed", "from"),
        (rep.failed, "could not be read", "in"),
    ]
    what = [w for w in what if w[0]]
    if not what:
        return ""
    (n, verb, prep), rest = what[0], what[1:]
    name = shown(Path(run.folder).name or run.folder)
    clock = time.strftime("%H:%M", time.localtime(at))
    return f"{_photos(n)} {verb} {prep} {name}{''.join(f', {k} {v}' for k, v, _ in rest)} ({clock})."


def say_once(last: dict[str, str], folder: str, text: str) -> bool:
    """Whether ``text`` is new for ``folder`` (a fault that repeats at every change is said once)."""
    with contextlib.suppress(KeyError):
        if last[folder] == text:
            return False
    last[folder] = text
    return True
