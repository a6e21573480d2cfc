"""The filter bar over the results: taken after / before, under a subfolder, of some file types, and Clear.

The bar only shows and reports the filter as typed; the query controller checks it and the search runs under
it (:meth:`phs_gui.session.SearchSession.apply_filter`), so a narrow filter still fills the top k.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

FIELDS = ("after", "before", "under", "types")


class FilterBar(QWidget):
    """Line edits for the dates and file types, an editable combo of subfolders, Clear and a count.

    Signals:
        changed(dict): the filter as typed, ``{"after", "before", "under", "types"}`` -> text, on Enter, on
            leaving a field that changed, on picking a subfolder, and on Clear.
    """

    changed = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.after = self._line("after", "YYYY, YYYY-MM or YYYY-MM-DD: taken on or after this date (empty: any)")
        self.before = self._line("before", "YYYY, YYYY-MM or YYYY-MM-DD: taken before this date (empty: any)")
        self.under = QComboBox()
        self.under.setEditable(True)
        self.under.setMinimumContentsLength(12)
        self.under.setToolTip("Only photos under this subfolder, in every folder searched (empty: the whole folders)")
        self.under.lineEdit().setPlaceholderText("any subfolder")
        self.under.lineEdit().editingFinished.connect(self._edited)
        self.under.activated.connect(lambda _i: self._edited())
        self.types = self._line("jpg, png", "File types, comma-separated (empty: all)")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Search every photo of the folders searched again")
        self.clear_button.clicked.connect(self.clear)
        self.count = QLabel("")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        for text, w in (("Taken after", self.after), ("before", self.before), ("Under", self.under),
                        ("Types", self.types)):
            lay.addWidget(QLabel(text))
            lay.addWidget(w)
        lay.addWidget(self.clear_button)
        lay.addWidget(self.count, 1)
        self._last = self.values()

    def _line(self, placeholder: str, tip: str) -> QLineEdit:
        e = QLineEdit()
        e.setPlaceholderText(placeholder)
        e.setToolTip(tip)
        e.setMaximumWidth(110)
        e.editingFinished.connect(self._edited)
        return e

    def values(self) -> dict[str, str]:
        """The filter as typed now."""
        return {"after": self.after.text().strip(), "before": self.before.text().strip(),
                "under": self.under.currentText().strip(), "types": self.types.text().strip()}

    def set_values(self, values: dict[str, str]) -> None:
        """Show a filter (the one restored on launch) without reporting it."""
        for name in ("after", "before", "types"):
            getattr(self, name).setText(values.get(name, ""))
        self.under.setEditText(values.get("under", ""))
        self._last = self.values()

    def set_subfolders(self, subfolders: tuple[str, ...] | list[str]) -> None:
        """Offer the open folder's subfolders in the combo (what is typed there stays)."""
        items = ["", *subfolders]
        if [self.under.itemText(i) for i in range(self.under.count())] == items:
            return
        text = self.under.currentText()
        b = self.under.blockSignals(True)
        self.under.clear()
        self.under.addItems(items)
        self.under.setEditText(text)
        self.under.blockSignals(b)

    def show_count(self, passing: int | None) -> None:
        """``N photos pass the filter``, or nothing when no filter is set."""
        self.count.setText("" if passing is None else f"{passing:,} photo{'' if passing == 1 else 's'} "
                           "pass the filter")

    def clear(self) -> None:
        """Empty every field and report it."""
        self.set_values({})
        self._last = {}
        self._edited()

    def _edited(self) -> None:
        now = self.values()
        if now != self._last:
            self._last = now
            self.changed.emit(now)
