"""Start PHS desktop: ``phs-gui`` (console script) or ``python main.py``.

On a machine without the chosen model's weights (offline, first launch) the window says so in one sentence
and starts with the demo model on a generated demo gallery, indexed, so searching works at once.
"""

from __future__ import annotations

import logging
import os
import sys

from PySide6.QtWidgets import QApplication

from phs_gui.main_window import MainWindow


def main(argv: list[str] | None = None) -> int:
    """Run the app; returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("PHS desktop")
    app.setOrganizationName("phs-desktop")
    window = MainWindow()
    photo = next((a for a in argv[1:] if not a.startswith("-")), None)
    if photo:
        window.prefs.last_photo = photo
    window.show()
    window.start()
    code = app.exec()
    if not window.stopped_cleanly:  # a model load or an indexing batch cannot be interrupted: do not wait
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
