"""Take the README's screenshots by playing a newcomer's journey in the real window, on a real X screen.

    python scripts/screenshots.py --photos DIR            # Xvfb + openbox at 1280x720 and 1366x768
    python scripts/screenshots.py --photos DIR --size 1280x720

For each screen size it starts ``Xvfb`` with the ``openbox`` window manager (both from Debian: ``apt-get
install xvfb openbox imagemagick``), runs the window in a fresh data directory with the shipped demo model
and plays: first launch (the demo gallery, its first query with a box already drawn), add the photo folder
``DIR`` (real photos of mixed sizes beside the demo), open one of its photos and drag a box with real mouse
events, preview a result and step with the Right key, quit, relaunch. The whole X screen is captured at each
step (``import -window root``), window frame and all, into ``docs/``:

* ``docs/first-launch-WxH.png``, ``docs/screenshot-WxH.png`` (a box on a real photo, results from both
  folders), ``docs/preview-WxH.png``, ``docs/relaunch-WxH.png``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def with_xvfb(size: str, argv: list[str], script: str = __file__) -> int:
    """Run ``script`` with ``argv`` for one ``size`` inside a new Xvfb display with openbox (it gets
    ``--size SIZE --inside``)."""
    name = Path(script).stem
    for tool in ("Xvfb", "openbox", "import"):
        if shutil.which(tool) is None:
            print(f"{name}: {tool} is missing: apt-get install xvfb openbox imagemagick", file=sys.stderr)
            return 2
    display = f":{90 + int(size.split('x')[0]) % 7}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{size}x24", "-nolisten", "tcp"])
    time.sleep(1.0)
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
    wm = subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        return subprocess.run([sys.executable, script, *argv, "--size", size, "--inside"], env=env).returncode
    finally:
        wm.terminate()
        xvfb.terminate()


def wait_until(app, cond, timeout_s: float = 900) -> None:
    """Process the app's events until ``cond()`` holds (a TimeoutError after ``timeout_s``)."""
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        time.sleep(0.005)
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("the app did not get there in time")


def journey(size: str, photos: Path, out: Path) -> int:
    """Play the journey in this process (``DISPLAY`` set) and capture the screen at each step."""
    os.environ["PHS_DATA_DIR"] = tempfile.mkdtemp(prefix="phs-shots-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from phs_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)

    def wait(cond, timeout_s: float = 900) -> None:
        wait_until(app, cond, timeout_s)

    def pause(ms: int) -> None:
        t0 = time.perf_counter()
        while (time.perf_counter() - t0) * 1000 < ms:
            app.processEvents()
            time.sleep(0.01)

    def shot(name: str) -> None:
        pause(1200)  # thumbnails, repaints
        path = out / f"{name}-{size}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True)
        print(path)

    def launch() -> MainWindow:
        w = MainWindow()  # the real first launch: preferences from the (fresh) data folder, the demo fallback
        w.show()
        w.start()
        wait(lambda: w.session is not None and w.photo_path is not None and not w.indexing and w.settled
             and w.docks.results.count() > 0)
        return w

    w = launch()
    shot("first-launch")
    w.library.add_folder(str(photos), select=True)
    w.library.select_folder(str(photos))
    wait(lambda: not w.indexing and w.settled)
    query = photos / "chelsea.png"
    w.query.open_photo(str(query))
    wait(lambda: w.photo_path == str(query) and w.settled)
    W, H = w.canvas.state.image_size
    vp = w.canvas.viewport()
    a = w.canvas.mapFromScene(QPointF(W * 0.33, H * 0.12))  # the cat's head and body in chelsea.png
    b = w.canvas.mapFromScene(QPointF(W * 0.72, H * 0.95))
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(vp, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    wait(lambda: w.settled)
    w.banner.hide()
    shot("screenshot")
    grid = w.docks.results
    grid.setCurrentRow(1)
    grid.preview_requested.emit(grid.paths()[1])
    dlg = w.previews.dialog
    wait(lambda: dlg is not None and dlg.isVisible() and dlg.showing_where)
    QTest.keyClick(dlg.findChildren(type(dlg.where_box))[0], Qt.Key.Key_Right)
    wait(lambda: dlg.path == grid.paths()[2] and dlg.showing_where)
    shot("preview")
    dlg.close()
    w.close()
    w2 = launch()
    wait(lambda: w2.photo_path == str(query) and w2.canvas.state is not None and w2.canvas.state.box is not None)
    shot("relaunch")
    w2.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True, help="a folder of real photos (with chelsea.png)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--size", action="append", help="screen size WxH (default 1280x720 and 1366x768)")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.inside:
        return journey(args.size[-1], args.photos.resolve(), args.out)
    code = 0
    for size in args.size or ["1280x720", "1366x768"]:
        code = with_xvfb(size, ["--photos", str(args.photos.resolve()), "--out", str(args.out)]) or code
    return code


if __name__ == "__main__":
    sys.exit(main())
