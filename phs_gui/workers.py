"""Background work with one contract: ``progress``, ``result``, ``error``, ``finished``, cooperative cancel.

A :class:`Worker` runs a plain function in a thread pool. The function receives two keyword arguments:
``report`` (call it with any progress value; calls are throttled so a fast loop cannot flood the event
loop) and ``cancel`` (a :class:`threading.Event` to check between steps). Its return value arrives through
``result``; a :class:`core.errors.PHSError` arrives through ``error`` as its own one-sentence message, any
other exception as one sentence too (the traceback goes to the log, never to the window). ``finished``
always comes last.

The signals are queued to the GUI thread, so slots run there; nothing heavy happens in them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from core.errors import PHSError

log = logging.getLogger("phs_gui")


class WorkerSignals(QObject):
    """The signals of one :class:`Worker` (a QRunnable cannot carry signals itself)."""

    progress = Signal(object)
    result = Signal(object)
    error = Signal(str)
    finished = Signal()


def user_message(err: BaseException, doing: str) -> str:
    """One sentence for the window: a PHSError's own message, otherwise what failed and why."""
    if isinstance(err, PHSError):
        return str(err)
    text = str(err).strip().rstrip(".") or type(err).__name__
    return f"Something went wrong while {doing}: {text}."


class Worker(QRunnable):
    """Run ``fn(*args, report=..., cancel=..., **kwargs)`` in a pool thread.

    Args:
        fn: the work; it must accept the ``report`` and ``cancel`` keyword arguments.
        doing: what the work is, for error messages ("encoding the photo").
        progress_interval_s: least time between two ``progress`` signals (the last one always gets through
            when the function reports it with ``force=True``).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        doing: str = "working",
        progress_interval_s: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.signals = WorkerSignals()
        self.cancel_event = threading.Event()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._doing = doing
        self._interval = progress_interval_s
        self._last_report = 0.0
        self.done = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.cancel_event.is_set()

    def _report(self, value: Any, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last_report >= self._interval:
            self._last_report = now
            self.signals.progress.emit(value)

    def run(self) -> None:  # noqa: D102 - QRunnable entry point
        try:
            out = self._fn(*self._args, report=self._report, cancel=self.cancel_event, **self._kwargs)
        except BaseException as err:  # noqa: BLE001 - every failure becomes one sentence
            if not isinstance(err, PHSError):
                log.exception("error while %s", self._doing)
            self.signals.error.emit(user_message(err, self._doing))
        else:
            self.signals.result.emit(out)
        finally:
            self.done.set()
            self.signals.finished.emit()


class WorkerPool:
    """A thread pool that keeps its running workers alive (Python side) until they finish."""

    def __init__(self, max_threads: int = 3) -> None:
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(max_threads)
        self._running: set[Worker] = set()

    def start(self, worker: Worker) -> Worker:
        """Start ``worker``; it is forgotten once ``finished`` has been delivered."""
        self._running.add(worker)
        worker.signals.finished.connect(lambda w=worker: self._running.discard(w))
        self.pool.start(worker)
        return worker

    @property
    def busy(self) -> bool:
        """Some worker has not finished yet."""
        return bool(self._running)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel every worker and wait at most ``timeout_ms`` for the pool to drain; ``True`` if it did."""
        for w in list(self._running):
            w.cancel()
        return self.pool.waitForDone(timeout_ms)


class SerialLane:
    """One worker thread for everything that uses the engine, which is not thread-safe.

    Work runs one job at a time in submission order. Jobs carry a ``kind``; a job waiting to start is
    replaced by a newer one of the same kind (the latest request wins; the stale one never runs), and
    :meth:`drop` forgets waiting jobs of a kind (a query for a photo that is no longer shown).
    """

    def __init__(self) -> None:
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(1)
        self._running: Worker | None = None
        self._waiting: dict[str, Worker] = {}

    def submit(self, kind: str, worker: Worker) -> Worker:
        """Queue ``worker``; it replaces a waiting job of the same ``kind``."""
        old = self._waiting.pop(kind, None)
        if old is not None:
            old.cancel()
        self._waiting[kind] = worker
        worker.signals.finished.connect(lambda w=worker: self._on_finished(w))
        self._next()
        return worker

    def drop(self, kind: str) -> None:
        """Forget the waiting job of ``kind`` (a running one is asked to cancel)."""
        old = self._waiting.pop(kind, None)
        if old is not None:
            old.cancel()

    def _next(self) -> None:
        if self._running is not None or not self._waiting:
            return
        kind = next(iter(self._waiting))
        self._running = self._waiting.pop(kind)
        self.pool.start(self._running)

    def _on_finished(self, worker: Worker) -> None:
        if worker is self._running:
            self._running = None
            self._next()

    @property
    def busy(self) -> bool:
        """A job runs or waits."""
        return self._running is not None or bool(self._waiting)

    def shutdown(self, timeout_ms: int = 1000) -> bool:
        """Forget waiting jobs, cancel the running one, wait at most ``timeout_ms``; ``True`` if it stopped."""
        for w in self._waiting.values():
            w.cancel()
        self._waiting.clear()
        if self._running is not None:
            self._running.cancel()
        return self.pool.waitForDone(timeout_ms)


class MainThreadGC(QObject):
    """Python's cycle collector, run on the GUI thread only.

    With automatic collection on, a collection can start in whichever thread allocates, a worker building a
    model included, and then destroy Qt objects that are garbage from that thread; Qt objects must die in
    the thread that owns them, and doing otherwise can crash the process. So automatic collection is off
    while a window lives, and this timer collects on the GUI thread, generation by generation, when the
    allocation counts pass the usual thresholds. Reference counting frees everything else as before.
    """

    _live = 0  # guards alive (windows): collection is automatic again once the last one stops
    _was_enabled = True

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        import gc

        self._thresholds = gc.get_threshold()
        if MainThreadGC._live == 0:
            MainThreadGC._was_enabled = gc.isenabled()
            gc.disable()
        MainThreadGC._live += 1
        self._stopped = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_if_due)
        self._timer.start(interval_ms)

    def collect_if_due(self) -> None:
        """Collect the generations whose allocation counts passed their thresholds."""
        import gc

        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self._thresholds[generation]:
                break
            gc.collect(generation)

    def stop(self) -> None:
        """Stop the timer, collect once more here and give collection back to Python."""
        import gc

        if self._stopped:
            return
        self._stopped = True
        self._timer.stop()
        gc.collect()
        MainThreadGC._live -= 1
        if MainThreadGC._live == 0 and MainThreadGC._was_enabled:
            gc.enable()

