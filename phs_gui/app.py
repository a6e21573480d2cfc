"""Start PHS desktop: ``phs-gui`` (console script) or ``python main.py``.

On a machine without the chosen model's weights (offline, first launch) the window says so in one sentence
and starts with the demo model on a generated demo gallery, indexed, so searching works at once.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from phs_gui.platform_check import import_failure, problem


def main(argv: list[str] | None = None) -> int:
    """Run the app; returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    text = problem()
    if text:  # Qt would abort with its generic plugin message: say what to install instead
        print(text, file=sys.stderr)
        return 2
    # Warnings and errors on the console; what the app and its libraries say along the way only with --verbose.
    verbose = "--verbose" in argv or "-v" in argv
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from core.errors import PHSError
    from core.paths import data_dir

    try:
        data_dir()  # preferences, indexes and the demo gallery live there: a sentence now, not a traceback later
    except PHSError as err:
        print(f"phs-gui: {err}", file=sys.stderr)
        return 2
    try:
        from PySide6.QtWidgets import QApplication

        from phs_gui.main_window import MainWindow
    except ImportError as err:  # Qt itself cannot load: a system library (libEGL, libGL, ...) is missing
        text = import_failure(err)
        if text is None:
            raise
        print(text, file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("PHS desktop")
    app.setOrganizationName("phs-desktop")
    window = MainWindow()
    photo = next((a for a in argv[1:] if not a.startswith("-")), None)  # options such as --verbose are skipped
    if photo:
        window.prefs.last_photo = photo
    window.show()
    app.processEvents()
    logging.getLogger("phs_gui").info("window shown %.2f s after launch", time.perf_counter() - t0)
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
