"""The controls dock: model and device, the method (PHS, a learned prompt, the red circle), PHS knobs,
Query-Only/Query-DB, FA and ITAE, top-k.

Signals (emitted only for user edits; :meth:`Controls.set_options` and the other setters block them):

* ``options_changed(SearchOptions)`` whenever a search knob changes,
* ``model_requested(name, device)`` when the person picks another model or device.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSpinBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from core.defaults import MARKER_METHODS
from phs_gui.histogram import NormHistogram
from phs_gui.session import METHOD_LABELS, SearchOptions

DEVICES = ("auto", "cpu")  # until :meth:`Controls.set_devices` lists what the machine has
METHOD_TIPS: dict[str, str] = {
    "phs": "Choose the heads of the last block that look at the marked object (FA below adds foveal attention)",
    "lvp": "Paste the model's learned prompt where the object is marked and search with the marked photo",
    "red-circle": "Draw a red ellipse around the marked object and search with the marked photo",
    "lvp+phs": "Paste the learned prompt, then choose heads on the marked photo",
}


NOTE_ROLE = Qt.ItemDataRole.UserRole + 1


class _NoteDelegate(QStyledItemDelegate):
    """The open model list: ``name (note)``, where the note says whether the weights are here."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # noqa: N802 - Qt API
        super().initStyleOption(option, index)
        note = index.data(NOTE_ROLE)
        if note:
            option.text = f"{option.text} ({note})"


def _form(parent: QWidget) -> QFormLayout:
    """A form whose rows put the field under its label when the column is too narrow for both."""
    form = QFormLayout(parent)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


class Controls(QWidget):
    """Every search knob in one narrow column: forms wrap, FA and ITAE fold away while off."""

    options_changed = Signal(object)
    model_requested = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        self._build_model(lay)
        self._build_method(lay)
        self._build_heads(lay)
        self._build_advanced(lay)

        for w in (self.h_on, self.top_k, self.fa_blocks):
            w.valueChanged.connect(self._emit)
        for w in (self.fa_alpha, self.fa_sigma, self.itae_theta):
            w.valueChanged.connect(self._emit)
        for b in (self.qo, self.qd, self.roi_sum, self.roi_max):
            b.toggled.connect(self._on_radio)
        self.method.currentIndexChanged.connect(self._emit)
        self.fa_box.toggled.connect(self._emit)
        self.itae_box.toggled.connect(self._emit)
        self.fa_box.toggled.connect(self.fa_body.setVisible)
        self.itae_box.toggled.connect(self.itae_body.setVisible)
        self.histogram.theta_picked.connect(self._on_theta_picked)
        self.model.activated.connect(self._on_model)
        self.device.activated.connect(self._on_model)

    def _build_model(self, lay: QVBoxLayout) -> None:
        """The model and the device, with a note on the model loaded."""
        model_box = QGroupBox("Model")
        mf = _form(model_box)
        self.model = QComboBox()
        # The closed combo shows the model's name, the open list adds whether its weights are here; the
        # combo is never narrower than the longest name, so no name is ever cut.
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model.setItemDelegate(_NoteDelegate(self.model))
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.model_note = QLabel()
        self.model_note.setWordWrap(True)
        self.model_note.setStyleSheet("color: palette(placeholder-text);")
        mf.addRow(self.model)
        mf.addRow("Device", self.device)
        mf.addRow(self.model_note)
        lay.addWidget(model_box)

    def _build_method(self, lay: QVBoxLayout) -> None:
        """The query method."""
        method_box = QGroupBox("Method")
        mtf = _form(method_box)
        self.method = QComboBox()
        for key, label in METHOD_LABELS.items():
            self.method.addItem(label, key)
            self.method.setItemData(self.method.count() - 1, METHOD_TIPS[key], Qt.ItemDataRole.ToolTipRole)
        self.method.setToolTip("How the marked object becomes the query; the learned prompt and the red circle "
                               "take a point or a box")
        mtf.addRow(self.method)
        lay.addWidget(method_box)

    def _build_heads(self, lay: QVBoxLayout) -> None:
        """PHS's knobs: h_on, Query-Only or Query-DB, Sum or Max, top-k."""
        phs_box = QGroupBox("Head selection")
        pf = _form(phs_box)
        self.h_on = QSpinBox()
        self.h_on.setRange(1, 64)
        self.h_on.setToolTip("Heads of the last block that PHS keeps (h_on)")
        self.qo = QRadioButton("Query-Only")
        self.qd = QRadioButton("Query-DB")
        self.qo.setToolTip("Library photos keep their plain features; only the query uses the chosen heads")
        self.qd.setToolTip("Library photos are re-ranked with the query's heads too (from the index cache)")
        self._mode_group = QButtonGroup(self)
        self._mode_group.addButton(self.qo)
        self._mode_group.addButton(self.qd)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.qo)
        mode_row.addWidget(self.qd)
        mode_row.addStretch(1)
        self.roi_sum = QRadioButton("Sum")
        self.roi_max = QRadioButton("Max")
        self.roi_sum.setToolTip("A head's ROI score: its [CLS] attention summed over the marked patches (weighted "
                                "by how much of each a painted mask covers), less the sum over negative marks")
        self.roi_max.setToolTip("A head's ROI score: its largest [CLS] attention on one marked patch, less the "
                                "largest on a negative mark")
        self._roi_group = QButtonGroup(self)
        self._roi_group.addButton(self.roi_sum)
        self._roi_group.addButton(self.roi_max)
        roi_row = QHBoxLayout()
        roi_row.addWidget(self.roi_sum)
        roi_row.addWidget(self.roi_max)
        roi_row.addStretch(1)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 500)
        self.top_k.setToolTip("How many results to show")
        pf.addRow("h_on", self.h_on)
        pf.addRow("Search", mode_row)
        pf.addRow("ROI score", roi_row)
        pf.addRow("Top-k", self.top_k)
        lay.addWidget(phs_box)

    def _build_advanced(self, lay: QVBoxLayout) -> None:
        """FA and ITAE, each a check box whose settings fold away while it is off."""
        # FA and ITAE are advanced: a check box each, their settings fold away while they are off.
        self.fa_box = QCheckBox("Foveal attention (FA)")
        self.fa_box.setToolTip("FALIP: bias the [CLS] attention of the last blocks towards the marked region")
        self.fa_body = QGroupBox()
        ff = _form(self.fa_body)
        self.fa_blocks = QSpinBox()
        self.fa_blocks.setRange(1, 4)
        self.fa_alpha = QDoubleSpinBox()
        self.fa_alpha.setRange(0.0, 10.0)
        self.fa_alpha.setSingleStep(0.05)
        self.fa_alpha.setDecimals(2)
        self.fa_sigma = QDoubleSpinBox()
        self.fa_sigma.setRange(0.1, 1000.0)
        self.fa_sigma.setSingleStep(5.0)
        self.fa_sigma.setDecimals(1)
        ff.addRow("Layers", self.fa_blocks)
        ff.addRow("alpha", self.fa_alpha)
        ff.addRow("sigma", self.fa_sigma)
        lay.addWidget(self.fa_box)
        lay.addWidget(self.fa_body)

        self.itae_box = QCheckBox("Artifact suppression (ITAE)")
        self.itae_box.setToolTip("Ignore patches whose query norm exceeds theta in the [CLS] attention")
        self.itae_body = QGroupBox()
        itf = _form(self.itae_body)
        self.itae_theta = QDoubleSpinBox()
        self.itae_theta.setRange(0.0, 1e6)
        self.itae_theta.setDecimals(2)
        self.itae_theta.setSingleStep(0.5)
        self.histogram = NormHistogram()
        itf.addRow("theta", self.itae_theta)
        itf.addRow(self.histogram)
        lay.addWidget(self.itae_box)
        lay.addWidget(self.itae_body)
        self.fa_body.hide()
        self.itae_body.hide()
        lay.addStretch(1)

    # --------------------------------------------------------------------------------------- options
    def options(self) -> SearchOptions:
        """The options shown now."""
        return SearchOptions(
            method=str(self.method.currentData() or "phs"),
            h_on=self.h_on.value(),
            mode="qd" if self.qd.isChecked() else "qo",
            roi="max" if self.roi_max.isChecked() else "sum",
            fa_on=self.fa_box.isChecked(),
            fa_blocks=self.fa_blocks.value(),
            fa_alpha=self.fa_alpha.value(),
            fa_sigma=self.fa_sigma.value(),
            itae_on=self.itae_box.isChecked(),
            itae_theta=self.itae_theta.value(),
            top_k=self.top_k.value(),
        )

    def set_options(self, o: SearchOptions) -> None:
        """Show ``o`` without emitting ``options_changed``."""
        widgets = [self, self.method, self.h_on, self.top_k, self.fa_blocks, self.fa_alpha, self.fa_sigma, self.itae_theta,
                   self.qo, self.qd, self.roi_sum, self.roi_max, self.fa_box, self.itae_box]
        blocked = [w.blockSignals(True) for w in widgets]
        try:
            self.method.setCurrentIndex(max(self.method.findData(o.method), 0))
            self.h_on.setValue(o.h_on)
            self.top_k.setValue(o.top_k)
            (self.qd if o.mode == "qd" else self.qo).setChecked(True)
            (self.roi_max if o.roi == "max" else self.roi_sum).setChecked(True)
            self.fa_box.setChecked(o.fa_on)
            self.fa_blocks.setValue(o.fa_blocks)
            self.fa_alpha.setValue(o.fa_alpha)
            self.fa_sigma.setValue(o.fa_sigma)
            self.itae_box.setChecked(o.itae_on)
            self.itae_theta.setValue(o.itae_theta)
        finally:
            for w, b in zip(widgets, blocked):
                w.blockSignals(b)
        self.fa_body.setVisible(o.fa_on)  # advanced settings fold away while they are off
        self.itae_body.setVisible(o.itae_on)
        self.histogram.set_theta(o.itae_theta, o.itae_on)
        self._show_method(o.method)

    def _show_method(self, method: str) -> None:
        """FA goes with PHS only; head selection does not apply to a marker alone."""
        marker = method in MARKER_METHODS
        self.fa_box.setEnabled(not marker)
        self.fa_body.setEnabled(not marker)
        self.fa_box.setToolTip("FA does not combine with a marker; choose PHS to use it" if marker else
                               "FALIP: bias the [CLS] attention of the last blocks towards the marked region")
        self.h_on.setEnabled(method in ("phs", "lvp+phs"))

    def set_engine_limits(self, num_heads: int, depth: int) -> None:
        """Limit ``h_on`` to the model's heads and FA layers to what the engine caches."""
        for w, hi in ((self.h_on, num_heads), (self.fa_blocks, depth)):
            b = w.blockSignals(True)
            w.setMaximum(max(int(hi), 1))
            w.blockSignals(b)

    def set_models(self, entries: list[tuple[str, str, str]], current: str, device: str) -> None:
        """Fill the model list with ``(name, label, note)`` entries; select ``current`` and ``device``."""
        b = self.model.blockSignals(True)
        self.model.clear()
        for name, label, note in entries:
            self.model.addItem(label, name)
            i = self.model.count() - 1
            self.model.setItemData(i, note, NOTE_ROLE)
            self.model.setItemData(i, f"{label}: {name}, weights {note}", Qt.ItemDataRole.ToolTipRole)
        i = self.model.findData(current)
        self.model.setCurrentIndex(max(i, 0))
        self.model.setToolTip(self.model.itemData(self.model.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")
        self.model.setMinimumWidth(self.model.sizeHint().width())  # the longest name, never cut
        view = self.model.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 24)  # the open list shows every "name (note)" whole
        self.model.blockSignals(b)
        b = self.device.blockSignals(True)
        self.device.setCurrentIndex(max(self.device.findText(device), 0))
        self.device.blockSignals(b)

    def set_devices(self, devices: list[str], current: str) -> None:
        """Offer only the devices this machine has; select ``current`` (``auto`` when it is not there)."""
        b = self.device.blockSignals(True)
        self.device.clear()
        self.device.addItems(devices)
        self.device.setCurrentIndex(max(self.device.findText(current), 0))
        self.device.blockSignals(b)

    def set_model_note(self, text: str) -> None:
        """A line under the model list (what is loaded, that it is the demo, ...)."""
        self.model_note.setText(text)

    def set_query_norms(self, norms: np.ndarray | None) -> None:
        """The ITAE histogram of the query photo; the first time, theta starts at a high percentile."""
        self.histogram.set_norms(norms)
        if norms is not None and len(norms) and self.itae_theta.value() == 0.0:
            b = self.itae_theta.blockSignals(True)
            self.itae_theta.setValue(float(np.percentile(norms, 98)))
            self.itae_theta.blockSignals(b)
        self.histogram.set_theta(self.itae_theta.value(), self.itae_box.isChecked())

    # ------------------------------------------------------------------------------------------ slots
    def _emit(self, *_: object) -> None:
        o = self.options()
        self.histogram.set_theta(o.itae_theta, o.itae_on)
        self._show_method(o.method)
        self.options_changed.emit(o)

    def _on_radio(self, checked: bool) -> None:
        if checked:  # one toggled(True) per group change
            self._emit()

    def _on_theta_picked(self, theta: float) -> None:
        self.itae_theta.setValue(round(theta, 2))

    def _on_model(self, *_: object) -> None:
        name = self.model.currentData()
        if name:
            self.model_requested.emit(str(name), self.device.currentText())
