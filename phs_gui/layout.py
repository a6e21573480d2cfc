"""Where the window and its docks go: inside the screen's available area (the desktop less panels), the
docks at their first-launch sizes, the last run's layout restored and a reset to the first one."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QCoreApplication, QEvent, QObject, QRect, QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QMainWindow, QScrollArea, QWidget

from core.paths import data_dir
from phs_gui.heads import TILE_PX

PREFERRED = QSize(1440, 900)
"""The first-launch size on a screen with room for it."""


def available_area(win: QWidget) -> QRect:
    """The available geometry of the screen the window is on (the primary screen before it is shown)."""
    screen = win.screen() or QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, PREFERRED.width(), PREFERRED.height())


def initial_geometry(win: QWidget, restored: QRect | None = None) -> QRect:
    """The window's frame geometry: ``restored`` clamped into the available area, or, without one,
    :data:`PREFERRED` shrunk to fit it and centred.

    Args:
        win: the window (its frame margins, once known, are left room for).
        restored: the geometry remembered from the last run, in global screen pixels.
    """
    area = available_area(win)
    frame = win.frameGeometry().size() - win.geometry().size()
    left = win.geometry().x() - win.frameGeometry().x()  # the frame's left edge and title bar
    top = win.geometry().y() - win.frameGeometry().y()
    room = QSize(max(area.width() - frame.width(), 320), max(area.height() - frame.height(), 240))
    size = (restored.size() if restored is not None else PREFERRED).boundedTo(room)
    lo_x, lo_y = area.left() + left, area.top() + top  # where the client area may start and end
    hi_x = area.right() + 1 - (frame.width() - left) - size.width()
    hi_y = area.bottom() + 1 - (frame.height() - top) - size.height()
    if restored is not None:
        x, y = min(max(restored.x(), lo_x), hi_x), min(max(restored.y(), lo_y), hi_y)
    else:
        x, y = (lo_x + hi_x) // 2, (lo_y + hi_y) // 2
    return QRect(max(x, lo_x), max(y, lo_y), size.width(), size.height())


def fit_to_screen(win: QWidget) -> None:
    """Once the window manager has framed the window: move and shrink it so that the frame, title bar
    included, lies inside the available area (before that, the frame's size is not known)."""
    area = available_area(win)
    if not area.contains(win.frameGeometry()):
        win.setGeometry(initial_geometry(win, win.geometry()))


def _qsettings() -> QSettings:
    return QSettings(str(data_dir() / "window.ini"), QSettings.Format.IniFormat)


def restore_geometry(win: QMainWindow) -> bool:
    """The geometry and dock layout of the last run, the geometry clamped to the screen; ``True`` when a dock
    layout was restored."""
    s = _qsettings()
    geo, state = s.value("geometry"), s.value("state")
    if geo is not None:
        win.restoreGeometry(geo)
        win.setGeometry(initial_geometry(win, win.geometry()))
    if state is not None:
        win.restoreState(state)
    return state is not None


def save_geometry(win: QMainWindow) -> None:
    """Remember the geometry and dock layout (``QSettings``, per machine). Raises ``OSError``."""
    s = _qsettings()
    s.setValue("geometry", win.saveGeometry())
    s.setValue("state", win.saveState())


def default_layout(win: QMainWindow) -> None:
    """The photo gets the most room: narrow side panels, the library tabbed behind the search knobs."""
    win.tabifyDockWidget(win.docks.left, win.docks.library_dock)  # type: ignore[attr-defined]
    win.tabifyDockWidget(win.docks.library_dock, win.labels_dock)  # type: ignore[attr-defined]
    win.docks.left.raise_()  # type: ignore[attr-defined]
    fit_docks(win)


def reset_layout(win: QMainWindow, state: QByteArray) -> None:
    """Every dock back where a first launch puts it (``state``: the window's state before any change)."""
    win.restoreState(state)
    for dock in win.docks.all:  # type: ignore[attr-defined]
        dock.setFloating(False)
        dock.show()
    win.docks.results.set_thumb_size(win.docks.results.thumb_size)  # type: ignore[attr-defined]
    default_layout(win)


def fit_docks(win: QMainWindow) -> None:
    """Side panels as narrow as their contents allow (the heads panel three tiles wide on a wide window),
    the results one row of thumbnails high: the photo keeps the rest."""
    d = win.docks  # type: ignore[attr-defined]
    left = max(d.left.minimumSizeHint().width(), d.library_dock.minimumSizeHint().width())
    right = d.right.minimumSizeHint().width() + (TILE_PX + 10 if win.width() >= 1600 else 0)
    win.resizeDocks([d.left, d.right], [left, right], Qt.Orientation.Horizontal)
    win.resizeDocks([d.bottom], [d.results_panel.minimumSizeHint().height()], Qt.Orientation.Vertical)
    d.heads.updateGeometry()


class WheelGuard(QObject):
    """Lets a spin box or combo box take the mouse wheel only when it has the keyboard focus; otherwise the
    wheel scrolls the panel it sits in (five notches over a knob must not change a search option)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            area = obj.parentWidget()
            while area is not None and not isinstance(area, QScrollArea):
                area = area.parentWidget()
            if area is not None:
                QCoreApplication.sendEvent(area.verticalScrollBar(), event)
            return True
        return super().eventFilter(obj, event)


def guard_wheel(panel: QWidget) -> WheelGuard:
    """Install a :class:`WheelGuard` (owned by ``panel``) on every spin box and combo box in ``panel``."""
    guard = WheelGuard(panel)
    for w in panel.findChildren(QAbstractSpinBox) + panel.findChildren(QComboBox):
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        w.installEventFilter(guard)
    return guard


def follow_thumb_size(win: QMainWindow, old: int, new: int) -> None:
    """The results grid's minimum height went from ``old`` to ``new`` (another thumbnail size): the results
    dock grows or shrinks by as much, keeping any height the person added, so a larger size then the
    former one leaves the dock as it was."""
    d = win.docks  # type: ignore[attr-defined]
    target = d.bottom.height() + new - old
    # After the layout has taken the new minimum (a dock cannot shrink below the old one before that).
    QTimer.singleShot(0, win, lambda: win.resizeDocks(
        [d.bottom], [max(d.results_panel.minimumSizeHint().height(), target)], Qt.Orientation.Vertical))
