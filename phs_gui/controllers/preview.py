"""The preview of a result: the dialog, the photo decoded in a worker, and where the query's kept heads look
in it (computed in the engine lane, cached per photo, selection and model)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from phs_gui.jobs import preview_job, where_job
from phs_gui.preview import PreviewDialog
from phs_gui.result_rows import shown
from phs_gui.session import SearchSession
from phs_gui.workers import SerialLane, Worker, WorkerPool

if TYPE_CHECKING:
    from core.search import Outcome

WHERE_CACHE = 64


class PreviewController(QObject):
    """Shows results in :class:`PreviewDialog` (made on first use, parented to ``owner``).

    Signals:
        step_requested(str, int): step from this result to the previous (-1) or next (+1) one.
        use_as_query(str): the person asked to search with the photo shown.
    """

    step_requested = Signal(object, int)
    use_as_query = Signal(object)

    def __init__(self, owner: QWidget, pool: WorkerPool, lane: SerialLane, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._owner = owner
        self.pool = pool
        self.lane = lane
        self.session: SearchSession | None = None
        self.selected: np.ndarray | None = None  # (h,) bool kept heads of the query, None without a prompt
        self.dialog: PreviewDialog | None = None
        self._cache: dict[tuple, np.ndarray] = {}

    def set_session(self, session: SearchSession | None) -> None:
        """Compute maps with this session from now on."""
        self.session = session

    def set_outcome(self, outcome: Outcome | None) -> None:
        """The query's latest answer: its kept heads decide the map (redrawn if the preview is open)."""
        sel = None if outcome is None or outcome.selection is None else outcome.selection.selected.copy()
        self.selected = sel
        if self.dialog is not None and self.dialog.isVisible() and self.dialog.path:
            self._request_where(self.dialog.path)

    def show(self, path: str, caption: str) -> None:
        """Show ``path`` with ``caption``; the photo and its map follow from workers."""
        if self.dialog is None:
            self.dialog = PreviewDialog(self._owner)
            self.dialog.step_requested.connect(lambda s: self.step_requested.emit(self.dialog.path or "", s))
            self.dialog.use_as_query.connect(self.use_as_query)
        self.dialog.set_photo(path, None, caption)
        self.dialog.setWindowTitle(f"Preview: {shown(Path(path).name)}")
        self.dialog.show()
        self.dialog.raise_()
        w = Worker(preview_job, path, doing=f"opening {Path(path).name}")
        w.signals.result.connect(self._on_photo)
        w.signals.error.connect(lambda t: self.dialog and self.dialog.where_state.setText(t))
        self.pool.start(w)
        self._request_where(path)

    def _on_photo(self, out: tuple[str, np.ndarray]) -> None:
        path, rgb = out
        if self.dialog is not None and self.dialog.path == path:
            self.dialog.set_photo(path, rgb, self.dialog.caption.text())
            key = self._key(path)
            if key in self._cache:
                self.dialog.set_where(path, self._cache[key], self._text())

    def _key(self, path: str) -> tuple:
        try:
            mtime = Path(path).stat().st_mtime_ns
        except OSError:
            mtime = 0
        sel = None if self.selected is None else tuple(bool(x) for x in self.selected)
        return (path, mtime, sel, id(self.session))

    def _text(self) -> str:
        if self.selected is None:
            return "every head (no object marked)"
        return "kept heads: " + ", ".join(f"H{i}" for i in np.flatnonzero(self.selected))

    def _request_where(self, path: str) -> None:
        if self.session is None or self.dialog is None:
            return
        key = self._key(path)
        if key in self._cache:
            self.dialog.set_where(path, self._cache[key], self._text())
            return
        w = Worker(where_job, self.session, path, self.selected, doing="finding the object")
        w.signals.result.connect(lambda out, k=key: self._on_where(out, k))
        w.signals.error.connect(lambda t: self.dialog and self.dialog.where_state.setText(t))
        self.lane.submit("where", w)

    def _on_where(self, out: tuple[str, np.ndarray | None], key: tuple) -> None:
        path, where = out
        if where is None:
            return
        self._cache[key] = where
        while len(self._cache) > WHERE_CACHE:
            self._cache.pop(next(iter(self._cache)))
        if self.dialog is not None and key == self._key(path):
            self.dialog.set_where(path, where, self._text())
