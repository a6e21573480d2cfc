"""The model: which backbone is loaded, loading another in a worker, the demo fallback, the devices."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from core.errors import PHSError, WeightsError, WeightsNotFoundError
from core.models.backbones import get_spec, list_models, weights_available
from phs_gui.jobs import EngineLoader, default_engine_loader
from phs_gui.render import warm_up
from phs_gui.session import SearchSession
from phs_gui.workers import Worker, WorkerPool

if TYPE_CHECKING:
    from core.method.engine import PHSEngine


def _label(name: str) -> str:
    try:
        return get_spec(name).label
    except PHSError:
        return name


class ModelController(QObject):
    """Loads models off the GUI thread; the current one stays usable until the new one is ready.

    Signals:
        loading(str): a model with this label is being loaded.
        loaded(object, str, str): ``(session, name, device)``: the new model searches from now on.
        load_over(): the load ended (loaded, failed or cancelled): the model list is current again.
        failed(str): one sentence; the current model stays.
        message(str, str, object, str): a sentence, its level, an optional ``(label, slot)``, its kind.
    """

    loading = Signal(str)
    loaded = Signal(object, str, str)
    load_over = Signal()
    failed = Signal(str)
    message = Signal(str, str, object, str)

    def __init__(self, pool: WorkerPool, loader: EngineLoader | None = None, check_weights: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool
        self.loader = loader or default_engine_loader
        self.check_weights = check_weights
        self.session: SearchSession | None = None
        self.devices: list[str] | None = None  # known once a model has loaded (torch is not for the GUI thread)
        self.is_demo = False
        self._loading: Worker | None = None

    @property
    def busy(self) -> bool:
        """A model is being loaded."""
        return self._loading is not None

    def label(self) -> str:
        """The loaded model's label."""
        return "the current model" if self.session is None else self.session.engine.spec.label

    def start(self, name: str, device: str) -> None:
        """Load ``name`` (the demo model when its weights are not on this machine, saying so)."""
        if self.check_weights and name != "demo":
            try:
                spec = get_spec(name)
                ok = weights_available(spec)
            except PHSError:
                spec, ok = None, False
            if not ok:
                label = spec.label if spec is not None else name
                self.message.emit(
                    f"No weights for {label} are on this machine, so PHS desktop runs its demo model on a "
                    f"generated gallery of synthetic shapes; to search your own photos, choose {label} under "
                    "Model while connected to the internet (it downloads once), or choose an installed model.",
                    "demo", None, "")
                name = "demo"
        self.load(name, device)

    def load(self, name: str, device: str) -> None:
        """Load a model in a worker (a second request while one loads is ignored)."""
        if self._loading is not None:
            return
        label, current, loader = _label(name), self.label(), self.loader

        def job(*, report: Callable, cancel: object) -> tuple[PHSEngine, list[str]]:
            from core.models.backbones import available_devices  # asks torch: here, off the GUI thread

            warm_up()  # matplotlib's colour table, so the first prompt does not wait for the import
            try:
                return loader(name, device), available_devices()
            except WeightsNotFoundError as err:
                raise WeightsNotFoundError(
                    f"No weights for {label} are on this machine and they could not be downloaded (no "
                    f"connection); {current} stays loaded. Choose {label} under Model again "
                    "while connected to the internet, or choose an installed model.") from err
            except WeightsError as err:
                if "device" in str(err).lower() or "cuda" in str(err).lower():
                    raise WeightsError(
                        f"The device {device} is not available on this computer; choose another under Device."
                    ) from err
                raise

        self.loading.emit(f"loading {label}…")
        w = Worker(job, doing=f"loading the model {label}")
        w.signals.result.connect(lambda eng, n=name, dv=device, wk=w: self._on_loaded(eng, n, dv, wk))
        w.signals.error.connect(lambda t, wk=w: self._on_error(t, wk))
        w.signals.finished.connect(lambda wk=w: self._over(wk))
        self._loading = self.pool.start(w)

    def cancel(self) -> None:
        """Stop waiting for the model being loaded; the current model stays (the load's result is dropped)."""
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None
            self.load_over.emit()

    def _over(self, worker: Worker) -> None:
        if worker is self._loading:
            self._loading = None
            self.load_over.emit()

    def _on_loaded(self, loaded: tuple[PHSEngine, list[str]], name: str, device: str, worker: Worker) -> None:
        self._over(worker)  # the load is over now, not when the worker's finished signal arrives
        engine, self.devices = loaded
        if worker.cancelled:
            engine.close()
            return
        if self.session is not None:
            self.session.close()
        self.session = SearchSession(engine)
        self.is_demo = bool(engine.spec.is_demo or name == "demo")
        self.load_over.emit()
        self.loaded.emit(self.session, name, device)

    def _on_error(self, text: str, worker: Worker) -> None:
        self._over(worker)  # a model chosen right after this error must start loading
        if not worker.cancelled:
            self.failed.emit(text)

    def entries(self) -> list[tuple[str, str, str]]:
        """``(name, label, note)`` for every model the app offers; note: shipped, installed, downloadable…"""
        out = []
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
            out.append((spec.name, spec.label, note))
        return out

    def close(self, stopped: bool) -> None:
        """Close the session when every worker stopped (else a worker may still hold it)."""
        if self.session is not None and stopped:
            self.session.close()
            self.session = None
