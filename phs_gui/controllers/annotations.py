"""Annotations in the window: the photo shown's saved marks, labels, saving the current mark, and undo.

The store (:class:`core.annotations.store.AnnotationStore`, SQLite in the data directory) is written on the
GUI thread: each write is one short transaction. Reading a photo for its content hash runs in a worker.
Undo and redo of saving and deleting are kept here as a list of edits; the window's undo history
(:class:`phs_gui.edit_journal.EditJournal`) decides whether Ctrl+Z takes back a prompt edit or one of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from core.annotations.shapes import Shape, ShapeError
from core.annotations.store import Annotation, AnnotationStore, AnnotationStoreError, Label, Photo
from core.errors import PHSError
from phs_gui.prompt_state import PromptState
from phs_gui.settings import Preferences
from phs_gui.workers import Worker, WorkerPool


def library_folder(path: str, folders: Sequence[str]) -> str:
    """The library folder holding ``path`` (the deepest one), else the photo's own folder."""
    p = Path(path).resolve()
    inside = [f for f in folders if Path(f).resolve() in p.parents]
    return max(inside, key=len) if inside else str(p.parent)


def shape_of(state: PromptState) -> Shape:
    """The mark drawn now as an annotation shape: the mask if painted, else the box, else the points.

    Raises:
        ShapeError: nothing is marked.
    """
    if state.mask is not None and np.any(state.mask):
        return Shape("mask", mask=state.mask)
    if state.box is not None:
        return Shape.from_box(*state.box)
    if state.points:
        pts = np.array([(p[0], p[1]) for p in state.points], np.float64)
        return Shape("points", points=pts, positive=np.array([bool(p[2]) for p in state.points]))
    raise ShapeError("Mark the object first (a box, points or a painted mask); then save it with a label.")


def _open_photo(folder: str, path: str, *, report: object, cancel: object) -> Photo:
    return Photo.open(folder, path)


class AnnotationsController(QObject):
    """The saved annotations of the photo shown and every label, with an undo list of saves and deletions.

    Signals:
        photo_annotations(list): the :class:`Annotation` list of the photo shown (after any change).
        labels_changed(list): every :class:`Label` with its count.
        edited(): an undoable edit was made (the window's undo history records it).
        presence(list, bool): these annotation ids are stored now (``True``) or no longer (``False``).
        history_forgotten(): the undo list started over (a label was renamed; the edits held the old name).
        message(str, str, object, str): a sentence, its level, an optional ``(label, slot)``, its kind.
    """

    photo_annotations = Signal(object)
    labels_changed = Signal(object)
    edited = Signal()
    history_forgotten = Signal()
    presence = Signal(list, bool)
    message = Signal(str, str, object, str)

    def __init__(self, prefs: Preferences, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.pool = pool
        self.photo: Photo | None = None
        self.annotations: list[Annotation] = []
        self.current_label = ""
        self._store: AnnotationStore | None = None
        self._undo: list[tuple[str, list[Annotation]]] = []
        self._redo: list[tuple[str, list[Annotation]]] = []
        self._photo_gen = 0

    @property
    def store(self) -> AnnotationStore:
        """The store, opened on first use."""
        if self._store is None:
            self._store = AnnotationStore()
        return self._store

    def close(self) -> None:
        """Close the store."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------------------------------ photo
    def set_photo(self, path: str) -> None:
        """The query photo shown now: read it for its hash in a worker, then show its annotations."""
        self._photo_gen += 1
        self.photo, self.annotations = None, []
        self.photo_annotations.emit([])
        gen = self._photo_gen
        w = Worker(_open_photo, library_folder(path, self.prefs.folders), path, doing="reading the photo")
        w.signals.result.connect(lambda ph, g=gen: self._on_photo(ph, g))
        w.signals.error.connect(lambda t: self.message.emit(t, "error", None, ""))
        self.pool.start(w)

    def _on_photo(self, photo: Photo, gen: int) -> None:
        if gen == self._photo_gen:
            self.photo = photo
            self.refresh()

    def refresh(self) -> None:
        """Re-read the photo's annotations and the labels, and say them."""
        try:
            self.annotations = self.store.for_photo(self.photo) if self.photo is not None else []
            labels = self.store.labels()
        except PHSError as err:
            self.message.emit(str(err), "error", None, "")
            return
        self.photo_annotations.emit(self.annotations)
        self.labels_changed.emit(labels)

    def labels(self) -> list[Label]:
        """Every label (``[]`` when the store cannot be opened)."""
        try:
            return self.store.labels()
        except PHSError:
            return []

    # ------------------------------------------------------------------------------------------ edits
    def save(self, state: PromptState | None, label: str) -> Annotation | None:
        """Save the mark drawn now on the photo shown with ``label`` (an undoable edit)."""
        if self.photo is None or state is None:
            self.message.emit("Open a photo and mark the object first; then save it with a label.", "info", None, "")
            return None
        try:
            saved = self._apply("add", [Annotation(None, self.photo, label, shape_of(state))])
        except (PHSError, ValueError) as err:
            self.message.emit(str(err), "error", None, "")
            return None
        self.current_label = saved[0].label
        return saved[0]

    def add_many(self, annotations: list[Annotation]) -> list[Annotation]:
        """Store several annotations in one undoable edit (accepted proposals)."""
        try:
            return self._apply("add", annotations) if annotations else []
        except PHSError as err:
            self.message.emit(str(err), "error", None, "")
            return []

    def remove(self, ids: Sequence[int]) -> None:
        """Delete annotations by id (an undoable edit)."""
        try:
            self._apply("remove", [a for a in self.store.list() if a.id in set(ids)])
        except PHSError as err:
            self.message.emit(str(err), "error", None, "")

    def rename_label(self, old: str, new: str) -> None:
        """Rename a label (its annotations follow)."""
        try:
            self.store.rename_label(old, new)
        except PHSError as err:
            self.message.emit(str(err), "error", None, "")
            return
        self._undo.clear()
        self._redo.clear()  # the ops held the old name
        self.history_forgotten.emit()
        if self.current_label == old:
            self.current_label = new.strip()
        self.refresh()

    def delete_label(self, name: str) -> None:
        """Delete a label and its annotations (an undoable edit: undo brings them back)."""
        try:
            removed = self.store.delete_label(name)
        except PHSError as err:
            self.message.emit(str(err), "error", None, "")
            return
        self.record("remove", removed)

    def _apply(self, op: str, anns: list[Annotation]) -> list[Annotation]:
        done = self.store.add_many(anns) if op == "add" else self.store.remove([a.id for a in anns])
        self.record(op, done)
        return done

    def record(self, op: str, anns: list[Annotation]) -> None:
        """Note an edit already made in the store (``add`` or ``remove`` of ``anns``) for undo, and show it."""
        self._undo.append((op, anns))
        self._redo.clear()
        self.presence.emit([a.id for a in anns], op == "add")
        self.edited.emit()
        self.refresh()

    def undo(self) -> bool:
        """Take back the last save or deletion; ``False`` when there is none."""
        return self._step(self._undo, self._redo, undoing=True)

    def redo(self) -> bool:
        """Do again the last undone save or deletion."""
        return self._step(self._redo, self._undo, undoing=False)

    def _step(self, src: list, dst: list, undoing: bool) -> bool:
        if not src:
            return False
        op, anns = src.pop()
        try:
            present = (op == "add") != undoing
            if present:
                self.store.restore(anns)
            else:
                self.store.remove([a.id for a in anns])
        except AnnotationStoreError as err:
            self.message.emit(str(err), "error", None, "")
            return False
        dst.append((op, anns))
        self.presence.emit([a.id for a in anns], present)
        self.refresh()
        return True
