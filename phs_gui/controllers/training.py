"""Training a learned prompt for the loaded model, in a worker, with progress and cancel."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from phs_gui.jobs import train_job
from phs_gui.session import SearchSession
from phs_gui.workers import Worker, WorkerPool


class TrainingController(QObject):
    """One training run at a time.

    Signals:
        running(bool): a run starts or ends.
        progress(str, int, int): the status text, steps done and the total (0 while unknown, -1: unchanged).
        trained(): a learned prompt was written: searches use it from now on.
        message(str, str, object, str): a sentence, its level, an optional ``(label, slot)``, its kind.
    """

    running = Signal(bool)
    progress = Signal(str, int, int)
    trained = Signal()
    message = Signal(str, str, object, str)

    def __init__(self, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool
        self.session: SearchSession | None = None
        # Settings of a prompt trained from the app (core.method.lvp_train.TrainConfig fields; its defaults
        # otherwise, as `phs lvp train`).
        self.settings: dict = {}
        self._worker: Worker | None = None
        self._step = 0

    @property
    def busy(self) -> bool:
        """A learned prompt is being trained."""
        return self._worker is not None

    def set_session(self, session: SearchSession | None) -> None:
        """Train for this session's model from now on."""
        self.session = session

    def can_start(self) -> bool:
        """Whether a run may start now (else says why)."""
        if self.session is None:
            self.message.emit("The model is still loading; train a learned prompt once it is ready.", "info", None,
                              "")
            return False
        if self._worker is not None:
            self.message.emit("A learned prompt is being trained already (see the status bar).", "info", None, "")
            return False
        return True

    def train(self, source: str | None) -> None:
        """Train on ``source`` (a photo folder, or ``"synthetic"`` for generated scenes); ``None``: nothing."""
        if not source or not self.can_start():
            return
        engine = self.session.engine  # type: ignore[union-attr]
        self._step = 0
        self.running.emit(True)
        self.progress.emit("Training the learned prompt: starting…", 0, 0)
        w = Worker(train_job, engine.spec.name, engine.device.type, source, dict(self.settings),
                   doing="training the learned prompt", progress_interval_s=0.1)
        w.signals.progress.connect(self._on_progress)
        w.signals.result.connect(self._on_trained)
        w.signals.error.connect(lambda t, wk=w: self._on_error(t, wk))
        w.signals.finished.connect(self._finished)
        self._worker = self.pool.start(w)

    def cancel(self) -> None:
        """Stop training after the current step (a checkpoint keeps it; training again continues)."""
        if self._worker is not None:
            self._worker.cancel()
            self.progress.emit("Training the learned prompt: cancelling…", self._step, -1)

    def _on_progress(self, p: object) -> None:
        if isinstance(p, tuple):
            _, done, total = p
            self.progress.emit(f"Generating training scenes: {done} of {total}", done, total)
            return
        self._step = p.step  # type: ignore[attr-defined]
        self.progress.emit(f"Training the learned prompt: step {p.step} of {p.steps}, "  # type: ignore[attr-defined]
                           f"attention on target {p.attn_on_target:.2f}", p.step, p.steps)  # type: ignore[attr-defined]

    def _on_trained(self, prompt: object) -> None:
        meta = getattr(prompt, "meta", {})
        if self.session is not None:
            self.session.forget_learned_prompt()
        self.message.emit(f"The learned prompt is trained ({meta.get('steps', '?')} steps in "
                          f"{meta.get('train_seconds', '?')} s, attention on target "
                          f"{meta.get('final_attn_on_target', '?')}); searches with it use it from now on.", "info",
                          None, "")
        self.trained.emit()

    def _on_error(self, text: str, worker: Worker) -> None:
        if worker.cancelled:
            at = f" at step {self._step}" if self._step else ""
            self.message.emit(f"Training stopped{at}; train again to continue from there.", "info", None,
                              "train-stopped")
        else:
            self.message.emit(text, "error", None, "")

    def _finished(self) -> None:
        self._worker = None
        self.running.emit(False)
