"""Search that annotates: the Propose toggle over the results, proposals computed in the engine lane, drawn
dashed on the thumbnails and in the preview, accepted (Enter/A) or rejected (Del/X) one by one, or all above a
score at once. Accepted ones become annotations with the query's label (origin ``proposed``), one undoable edit.

Coordinates: proposals are XYXY in pixels of each result photo (EXIF orientation applied).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

from core.annotations.shapes import Shape
from core.annotations.store import Annotation, Photo
from core.errors import PHSError
from phs_gui.controllers.annotations import AnnotationsController, library_folder
from phs_gui.prompt_state import state_to_dict
from phs_gui.workers import SerialLane, Worker

CACHE_MAX = 2000
CHUNK = 4  # photos per lane job: proposals appear as they come, and a search asked meanwhile goes first
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


@dataclass(frozen=True)
class Proposed:
    """A proposal on one result photo: the photo as annotations refer to it, the box, the mask, the score.

    Attributes:
        box: ``(x0, y0, x1, y1)`` pixels of the photo.
        mask: ``(H, W)`` bool of the photo's size.
        score: cosine of the region's feature with the query object's (higher is more alike).
    """

    photo: Photo
    box: tuple[float, float, float, float]
    mask: np.ndarray
    score: float


def propose_job(session, prompt, paths: list[str], folders: list[str], selected, head_mask, *, report,
                cancel) -> dict:
    """Worker body: a proposal per photo as ``{path: Proposed | None}`` (``None``: the photo cannot be read).

    The query's descriptor is computed once, then the photos are encoded as one batch; when one of them cannot
    be read, each is tried alone so the others still get theirs."""
    from core.method.propose import prompt_descriptor, propose_on

    out: dict = {}
    if cancel.is_set():
        return out
    with session.lock:
        descriptor = prompt_descriptor(session.engine, prompt, head_mask)

    def one_batch(batch: list[str]) -> None:
        photos = [Photo.open(library_folder(p, folders), p) for p in batch]
        with session.lock:
            props = propose_on(session.engine, descriptor, batch, selected, head_mask)
        for path, photo, p in zip(batch, photos, props):
            out[path] = Proposed(photo, tuple(float(v) for v in p.box), p.mask(), float(p.score))

    try:
        one_batch(paths)
    except (PHSError, OSError, ValueError):
        for path in paths:
            if cancel.is_set():
                break
            try:
                one_batch([path])
            except (PHSError, OSError, ValueError):
                out[path] = None
    return out


class ProposeBar(QWidget):
    """Propose toggle, the score threshold and "Accept all above"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QCheckBox("Propose")
        self.toggle.setToolTip("Propose the query's object in every result: where its kept heads look (dashed)")
        self.score = QDoubleSpinBox()
        self.score.setRange(-1.0, 1.0)
        self.score.setSingleStep(0.05)
        self.score.setValue(0.5)
        self.score.setToolTip("Accept the proposals with at least this score")
        self.accept_all = QPushButton("Accept all above")
        self.state = QLabel("")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        for w in (self.toggle, self.accept_all, self.score, self.state):
            lay.addWidget(w)
        lay.addStretch(1)


class ProposalsController(QObject):
    """Proposals on the results shown, cached per (query, photo), and the person's decisions on them.

    Signals:
        changed(): proposals or decisions changed (thumbnails and preview redraw).
        message(str, str, object, str): a sentence, its level, an optional ``(label, slot)``, its kind.
    """

    changed = Signal()
    message = Signal(str, str, object, str)

    def __init__(self, lane: SerialLane, annotations: AnnotationsController, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane = lane
        self.annotations = annotations
        self.on = False
        self.session = None
        self.query_key: tuple | None = None
        self.paths: list[str] = []
        self.cache: dict[tuple, Proposed | None] = {}
        self.decided: dict[tuple, str] = {}
        self._accepted: dict[int, tuple] = {}  # annotation id -> (query, photo) it was accepted on
        annotations.presence.connect(self._on_presence)
        self._request: tuple | None = None  # (prompt, selected, head_mask) of the latest answer
        self._worker: Worker | None = None

    # ------------------------------------------------------------------------------------------ inputs
    def set_session(self, session) -> None:
        """Propose with ``session`` from now on (cached proposals belong to the old model)."""
        self.session = session
        self.cache.clear()

    def set_answer(self, photo_path: str | None, state, outcome, rows: list) -> None:
        """A new answer: its query (photo, prompt, kept heads) and the result photos shown (query photo left out)."""
        prompt = None if outcome is None else outcome.spec.prompt
        sel = None if outcome is None else outcome.selection
        if prompt is None or state is None:
            self.query_key, self._request, self.paths = None, None, []
        else:
            heads = () if sel is None else tuple(bool(x) for x in sel.selected)
            self.query_key = (photo_path, json.dumps(state_to_dict(state), sort_keys=True), heads)
            self._request = (prompt, None if sel is None else sel.selected, None if sel is None else sel.head_mask)
            self.paths = [r.path for r in rows if not r.is_query]
        self._compute()
        self.changed.emit()

    def set_on(self, on: bool) -> None:
        """The Propose toggle."""
        self.on = bool(on)
        if self.on and self.query_key is None:
            self.message.emit("Mark the object on the query photo first; then each result gets a proposal.",
                              "info", None, "")
        self._compute()
        self.changed.emit()

    def _compute(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if not self.on or self.session is None or self._request is None:
            return
        todo = [p for p in self.paths if (self.query_key, p) not in self.cache][:CHUNK]
        if not todo:
            return
        prompt, selected, head_mask = self._request
        key = self.query_key
        w = Worker(propose_job, self.session, prompt, todo, list(self.annotations.prefs.folders), selected,
                   head_mask, doing="proposing the object in the results")
        w.signals.result.connect(lambda out, k=key: self._on_proposals(out, k))
        w.signals.error.connect(lambda t: self.message.emit(t, "error", None, ""))
        self._worker = self.lane.submit("propose", w)

    def _on_proposals(self, out: dict, key: tuple) -> None:
        for path, prop in out.items():
            self.cache[(key, path)] = prop
        while len(self.cache) > CACHE_MAX:
            self.cache.pop(next(iter(self.cache)))
        if key == self.query_key:
            self._worker = None
            self._compute()  # the next photos, behind any search asked meanwhile
            self.changed.emit()

    # ------------------------------------------------------------------------------------------ reading
    def proposal(self, path: str) -> Proposed | None:
        """The proposal shown on ``path`` (``None``: off, not computed yet, unreadable or rejected)."""
        if not self.on or self.query_key is None:
            return None
        k = (self.query_key, path)
        return None if self.decided.get(k) == REJECTED else self.cache.get(k)

    def status(self, path: str) -> str:
        """``pending``, ``accepted`` or ``rejected``."""
        return self.decided.get((self.query_key, path), PENDING)

    @property
    def done(self) -> bool:
        """Every result shown has its proposal (or is unreadable)."""
        return all((self.query_key, p) in self.cache for p in self.paths)

    # ----------------------------------------------------------------------------------------- decisions
    def decide(self, path: str, accept: bool) -> bool:
        """Accept (an annotation with the query's label) or reject the proposal on ``path``."""
        prop = self.proposal(path)
        if prop is None or self.status(path) != PENDING:
            return False
        if accept and not self._accept([path]):
            return False
        self.decided[(self.query_key, path)] = ACCEPTED if accept else REJECTED
        self.changed.emit()
        return True

    def accept_above(self, score: float) -> int:
        """Accept every pending proposal shown with at least ``score``, as one undoable edit; returns how many."""
        paths = [p for p in self.paths if (pr := self.proposal(p)) is not None and pr.score >= score
                 and self.status(p) == PENDING]
        if not paths or not self._accept(paths):
            self.message.emit(f"No pending proposal has a score of {score:.2f} or more.", "info", None, "")
            return 0
        for p in paths:
            self.decided[(self.query_key, p)] = ACCEPTED
        self.changed.emit()
        return len(paths)

    def _accept(self, paths: list[str]) -> bool:
        label = self.annotations.current_label
        if not label:
            self.message.emit("Save the query's mark with a label first (Ctrl+S): accepted proposals take its "
                              "label.", "info", None, "")
            return False
        anns, keys = [], [(self.query_key, p) for p in paths]
        for p in paths:
            prop = self.proposal(p)
            shape = Shape("mask", mask=prop.mask) if prop.mask.any() else Shape.from_box(*prop.box)
            anns.append(Annotation(None, prop.photo, label, shape, "proposed", prop.score))
        added = self.annotations.add_many(anns)
        self._accepted.update({a.id: k for a, k in zip(added, keys)})
        return bool(added)

    def _on_presence(self, ids: list, present: bool) -> None:
        """An accepted proposal's annotation undone (pending again) or redone (accepted again)."""
        keys = [self._accepted[i] for i in ids if i in self._accepted]
        for k in keys:
            self.decided[k] = ACCEPTED if present else PENDING
        if keys:
            self.changed.emit()


def draw_on_thumbnail(pm: QPixmap, prop: Proposed | None, status: str, color: str) -> QPixmap:
    """A copy of a square thumbnail (the photo centred, aspect kept) with the proposal's box drawn:
    dashed while pending, solid once accepted."""
    if prop is None:
        return pm
    w, h = prop.photo.size
    side = pm.width()
    s = min(side / w, side / h)
    ox, oy = (side - w * s) / 2, (side - h * s) / 2
    x0, y0, x1, y1 = prop.box
    out = pm.copy()
    p = QPainter(out)
    pen = QPen(QColor(color), max(2.0, side / 90), Qt.PenStyle.SolidLine if status == ACCEPTED else Qt.PenStyle.DashLine)
    p.setPen(pen)
    p.drawRect(QRectF(ox + x0 * s, oy + y0 * s, (x1 - x0) * s, (y1 - y0) * s))
    p.drawText(QRectF(ox + x0 * s + 3, oy + y0 * s + 2, side, 20), f"{prop.score:.2f}")
    p.end()
    return out


def redecorate(grid, ctl: ProposalsController, color: str) -> None:
    """Redraw every result tile's icon with its proposal (or without, when Propose is off)."""
    for i in range(grid.count()):
        it = grid.item(i)
        path = grid.path_of(it)
        pm = grid.cache.get(path)
        if pm is not None:
            it.setIcon(QIcon(draw_on_thumbnail(pm, ctl.proposal(path), ctl.status(path), color)))
