"""The window's one undo history over several owners of edits (the prompt, the annotations).

Each owner keeps its own undo list (:class:`phs_gui.prompt_state.History` for the prompt,
:class:`phs_gui.controllers.annotations.AnnotationsController` for saves and deletions); the journal remembers
in which order the owners' edits were made, so Ctrl+Z takes back the latest edit whoever made it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal


class EditJournal(QObject):
    """Which owner made each edit, in order.

    Args:
        owners: ``{name: (undo, redo)}``; each callable returns ``False`` when it had nothing to do.

    Signals:
        changed(bool, bool): whether undo and redo are possible.
    """

    changed = Signal(bool, bool)

    def __init__(self, owners: dict[str, tuple[Callable[[], object], Callable[[], object]]],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.owners = owners
        self._done: list[str] = []
        self._undone: list[str] = []

    def record(self, owner: str) -> None:
        """``owner`` made a new edit (the redo branch is dropped)."""
        self._done.append(owner)
        self._undone.clear()
        self._emit()

    def forget(self, owner: str) -> None:
        """``owner``'s history started over (a new photo for the prompt): its entries go."""
        self._done = [o for o in self._done if o != owner]
        self._undone = [o for o in self._undone if o != owner]
        self._emit()

    def undo(self) -> None:
        """Take back the latest edit."""
        if self._done:
            owner = self._done.pop()
            if self.owners[owner][0]() is not False:
                self._undone.append(owner)
        self._emit()

    def redo(self) -> None:
        """Do again the latest undone edit."""
        if self._undone:
            owner = self._undone.pop()
            if self.owners[owner][1]() is not False:
                self._done.append(owner)
        self._emit()

    def _emit(self) -> None:
        self.changed.emit(bool(self._done), bool(self._undone))
