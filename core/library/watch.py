"""Keep a folder's index current while the folder changes: a folder watcher, debounced, with a periodic rescan.

The watcher (watchdog: inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on Windows) watches folders,
recursively, never one watch per photo. It only says *that* the folder changed; *what* changed is found by the
indexer's own stat-only comparison (mark and sweep: unchanged photos cost one ``stat`` and are never opened).
The same pass runs every ``rescan_s`` seconds, which catches what a watcher cannot see: changes made on another
machine to a network share, events dropped by a full kernel queue.

Timing: a run starts once the folder has been quiet for ``quiet_s`` seconds (a copy of 1,000 photos is one
run, not 1,000), or ``max_wait_s`` after the first unhandled change while changes keep coming. Photos whose
modification time is younger than the settle time are left for the next run by the indexer
(``Indexer(settle_s=...)``), so a photo still being written is never read half-written.

Reading photos must not look like a change: only creations, deletions, moves, modifications and closes after
writing count, of photo files (by suffix) and of folders; opening or reading a file does not.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.imageio import SUPPORTED_SUFFIXES
from core.library.scan import is_skipped_name

#: Event types that may change what the index holds (watchdog's names). "opened" and "closed_no_write"
#: (someone read a photo, the indexer included) do not.
CHANGE_EVENTS: frozenset[str] = frozenset({"created", "deleted", "modified", "moved", "closed"})
#: How often the waiting loop looks at the clock, the stop flag and the folder (seconds).
TICK_S = 0.2
#: Polling period of the fallback watcher (no inotify watch could be placed, e.g. the kernel's limit).
POLL_S = 30.0


class FolderWatcher:
    """Watch one photo folder (recursively) and say when an index run is due.

    Args:
        folder: The photo folder (never written to).
        quiet_s: A change is acted on once no further change came for this many seconds.
        max_wait_s: ...or at the latest this many seconds after the first change not yet acted on.
        rescan_s: A run is due this often even without any event (0 or less: never).
        polling: Poll the folder instead of asking the kernel for events (network drives, tests).
        suffixes: File suffixes (lower case, with the dot) that are photos.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        quiet_s: float = 2.0,
        max_wait_s: float = 30.0,
        rescan_s: float = 600.0,
        polling: bool = False,
        suffixes: frozenset[str] = SUPPORTED_SUFFIXES,
    ) -> None:
        self.folder = Path(folder)
        self.quiet_s = float(quiet_s)
        self.max_wait_s = max(float(max_wait_s), self.quiet_s)
        self.rescan_s = float(rescan_s)
        self.polling = polling
        self.suffixes = suffixes
        self.events = 0  # relevant events seen since start (for tests and progress lines)
        self._lock = threading.Lock()
        self._first: float | None = None  # monotonic time of the first change not yet acted on
        self._last = 0.0
        self._next_rescan = float("inf")
        self._observer: Any = None
        self.backend = ""

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start watching (falls back to polling when the kernel refuses a watch)."""
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        if self.polling:
            self._observer, self.backend = PollingObserver(timeout=min(POLL_S, max(0.5, self.quiet_s))), "polling"
            self._schedule()
            self._observer.start()
        else:
            try:
                self._observer, self.backend = Observer(), "events"
                self._schedule()
                self._observer.start()  # the kernel's watches are placed here, so its refusal comes from here
            except OSError:  # inotify's watch or instance limit: poll instead
                with contextlib.suppress(Exception):
                    self._observer.stop()
                self._observer, self.backend = PollingObserver(timeout=POLL_S), "polling"
                self._schedule()
                self._observer.start()
        self._next_rescan = time.monotonic() + self.rescan_s if self.rescan_s > 0 else float("inf")

    def _schedule(self) -> None:
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if watcher.is_change(event):
                    watcher.note_change()

        self._observer.schedule(_Handler(), str(self.folder), recursive=True)

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout=5)
            self._observer = None

    def restart(self) -> None:
        """Watch again from scratch (after the folder came back: the old watches died with it)."""
        self.stop()
        self.start()

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- events
    def is_change(self, event: Any) -> bool:
        """Whether a watchdog event may change the index: a photo file or a folder created, deleted, moved or
        written, outside hidden and system folders."""
        if event.event_type not in CHANGE_EVENTS:
            return False
        if event.is_directory and event.event_type in ("modified", "closed"):
            return False  # a folder's own timestamp: the file events inside it are what matter
        paths = [event.src_path] + ([event.dest_path] if getattr(event, "dest_path", "") else [])
        return any(self._relevant(p, event.is_directory) for p in paths)

    def _relevant(self, path: str | bytes, is_dir: bool) -> bool:
        p = os.fsdecode(path)
        try:
            rel = os.path.relpath(p, self.folder)
        except ValueError:
            return False
        if rel == ".":
            return True  # the folder itself (deleted or moved away)
        if rel.startswith(".."):
            return False
        if any(is_skipped_name(part) for part in Path(rel).parts):
            return False
        return is_dir or os.path.splitext(p)[1].lower() in self.suffixes

    def note_change(self) -> None:
        """Record a change now (called by the watcher thread; also by the caller when a run left photos that
        were still being written)."""
        now = time.monotonic()
        with self._lock:
            self.events += 1
            self._last = now
            if self._first is None:
                self._first = now

    # -------------------------------------------------------------------------------------- waiting
    def due(self) -> str | None:
        """What is due now: ``"changed"``, ``"rescan"``, ``"vanished"`` or ``None`` (nothing yet)."""
        if not self.folder.is_dir():
            return "vanished"
        now = time.monotonic()
        with self._lock:
            if self._first is not None and (
                now - self._last >= self.quiet_s or now - self._first >= self.max_wait_s
            ):
                self._first = None
                self._next_rescan = now + self.rescan_s if self.rescan_s > 0 else float("inf")
                return "changed"
        if now >= self._next_rescan:
            self._next_rescan = now + self.rescan_s
            return "rescan"
        return None

    def wait(self, stop: threading.Event, timeout: float | None = None) -> str | None:
        """Block until a run is due (see :meth:`due`); ``None`` when ``stop`` was set or ``timeout`` passed."""
        end = time.monotonic() + timeout if timeout is not None else float("inf")
        while not stop.is_set() and time.monotonic() < end:
            why = self.due()
            if why is not None:
                return why
            stop.wait(TICK_S)
        return None

    def wait_back(self, stop: threading.Event) -> bool:
        """Block until the folder exists again (``True``) or ``stop`` is set (``False``)."""
        while not stop.is_set():
            if self.folder.is_dir():
                return True
            stop.wait(max(TICK_S, min(2.0, self.quiet_s)))
        return False


def keep_current(
    folder: str | Path,
    run_once: Callable[[], Any],
    stop: threading.Event,
    *,
    say: Callable[[str], None] = print,
    settle_s: float = 2.0,
    rescan_s: float = 600.0,
    max_wait_s: float = 30.0,
    polling: bool = False,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Index ``folder`` now, then again whenever it changed and settled, until ``stop`` is set.

    Args:
        folder: The photo folder.
        run_once: One incremental index run (it must leave files younger than ``settle_s`` for later and
            return a report with a ``settling`` count); it should stop soon when ``stop`` is set.
        stop: Set by the caller (a signal handler, the app closing) to end watching; a run in progress is
            expected to honour it as its cancel flag.
        say: Where one-line messages go (the folder vanished, came back, the watcher fell back to polling).
        settle_s: Quiet time before a run, which is also the age a photo must reach before it is read.
        rescan_s: A full stat pass this often, for what no event reports (0: never).
        max_wait_s: Longest wait for quiet while changes keep coming.
        polling: Poll instead of kernel events.
        on_error: Called with a :class:`core.errors.PHSError` of a run (the disk full, the index locked by
            another program); watching goes on and the next change or rescan tries again. Default: ``say``.

    The watcher starts before the first run, so nothing that changes during it is missed.
    """
    from core.errors import PHSError
    from core.library.indexer import FolderVanishedError

    watcher = FolderWatcher(folder, quiet_s=settle_s, max_wait_s=max_wait_s, rescan_s=rescan_s, polling=polling)
    with watcher:
        if watcher.backend == "polling" and not polling:
            say(f"Cannot watch {folder} for events (the system's watch limit): polling it every {POLL_S:.0f} s.")
        why: str | None = "start"
        while why is not None and not stop.is_set():
            if why == "vanished":
                say(f"The photo folder {folder} is not there (unplugged or moved?); its index is kept, and "
                    "watching resumes when it is back.")  # fmt: skip
                if not watcher.wait_back(stop):
                    break
                say(f"The photo folder {folder} is back.")
                watcher.restart()
            try:
                report = run_once()
            except FolderVanishedError:
                why = "vanished"
                continue
            except PHSError as err:
                (on_error or (lambda e: say(str(e))))(err)
            else:
                if getattr(report, "settling", 0):
                    watcher.note_change()  # come back for the photos still being written
            why = watcher.wait(stop)
