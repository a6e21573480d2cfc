"""Small dialogs of the window: what to train a learned prompt on, and the keyboard shortcuts."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMenuBar,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.synthetic.gallery import demo_gallery_dir
from phs_gui.result_rows import shown

GESTURES = [("Shift+click", "Negative point (what you do not want)"), ("Ctrl+wheel", "Zoom at the cursor"),
            ("Middle-drag", "Pan"), ("Wheel (brush, eraser)", "Brush size"),
            ("Enter, double-click", "Preview the selected result"), ("Left, Right (preview)", "Previous, next")]


def ask_training_source(parent: QWidget, label: str, folder: str) -> str | None:
    """Ask what to train on: the photo folder ``folder``, or generated scenes (``"synthetic"``); ``None``: no."""
    box = QMessageBox(parent)
    box.setWindowTitle("Train learned prompt")
    box.setText(f"Train a learned prompt for {label}. It runs in the background (minutes on a CPU); "
                "searching goes on meanwhile.")
    own = None
    if folder and Path(folder).is_dir() and folder != str(demo_gallery_dir()):
        own = box.addButton(f"On the photos in {Path(folder).name}", QMessageBox.ButtonRole.AcceptRole)
    scenes = box.addButton("On generated scenes", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    if own is not None and clicked is own:
        return folder
    return "synthetic" if clicked is scenes else None


def shortcut_rows(bar: QMenuBar) -> list[tuple[str, str]]:
    """``(keys, what)`` for every action with a shortcut, menus in order, plus the canvas's gestures."""
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for menu_action in bar.actions():
        for a in menu_action.menu().actions() if menu_action.menu() else []:
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts())
            text = a.text().replace("&", "").rstrip("…")
            if keys and text not in seen:
                seen.add(text)
                rows.append((keys, text))
    return rows + GESTURES


def shortcuts_dialog(parent: QWidget, rows: list[tuple[str, str]]) -> QDialog:
    """Help › Keyboard shortcuts (F1): every shortcut in a table (shown, not modal)."""
    dlg = QDialog(parent)
    dlg.setWindowTitle("Keyboard shortcuts")
    table = QTableWidget(len(rows), 2)
    table.setHorizontalHeaderLabels(["Keys", "Action"])
    for i, (keys, what) in enumerate(rows):
        table.setItem(i, 0, QTableWidgetItem(keys))
        table.setItem(i, 1, QTableWidgetItem(what))
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().hide()
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dlg.reject)
    lay = QVBoxLayout(dlg)
    lay.addWidget(table)
    lay.addWidget(buttons)
    dlg.resize(480, 560)
    dlg.show()
    return dlg


def confirm_remove_folder(parent: QWidget, folder: str) -> bool:
    """Ask before a folder leaves the library (its index is deleted from disk; its photos stay)."""
    answer = QMessageBox.question(
        parent, "Remove from the library",
        f"Remove {shown(folder)} from the library?\n\nIts index is deleted from disk (indexing it again "
        "later re-reads every photo). The photos themselves are not touched.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel,
    )  # fmt: skip
    return answer == QMessageBox.StandardButton.Yes

