"""Take the README's screenshots: the app on the demo gallery with a prompt drawn, saved to ``docs/``.

    python scripts/screenshots.py                 # offscreen; needs the shipped demo model
    python scripts/screenshots.py --random-model  # layout preview with a random ViT when the demo is missing

    xvfb-run -s "-screen 0 1920x1080x24" python scripts/screenshots.py   # real X11 rendering

It runs the real window (offscreen Qt, or under Xvfb when ``DISPLAY`` is set), lets it build and index the
demo gallery in a temporary data directory, drags a box over an object of the first demo photo with real
mouse events, and grabs the window at two sizes, each a first launch (default layout):

* ``docs/screenshot-1280x720.png``: a box prompt, the heads panel with the selected heads, the results;
* ``docs/screenshot-1920x1080.png``: a painted mask, Query-DB, one head forced off by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--random-model", action="store_true", help="a random ViT-S/14 instead of the demo model")
    ap.add_argument("--data-dir", type=Path, default=None, help="app data directory (default: a temporary one)")
    args = ap.parse_args()
    os.environ["PHS_DATA_DIR"] = str(args.data_dir or tempfile.mkdtemp(prefix="phs-shots-"))

    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from core.method.engine import load_engine
    from core.synthetic.gallery import demo_gallery_dir
    from phs_gui.canvas import Tool
    from phs_gui.main_window import MainWindow
    from phs_gui.settings import Preferences

    app = QApplication.instance() or QApplication(sys.argv)
    app.setStyle("Fusion")

    def loader(name: str, device: str):
        if args.random_model:
            return load_engine("dinov2-s14", pretrained=False, device="cpu")
        return load_engine(name, device=device)

    def wait(cond, timeout_s: float = 600) -> None:
        t0 = time.perf_counter()
        while not cond():
            app.processEvents()
            time.sleep(0.005)
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError("the app did not get ready in time")

    def settle(ms: int = 400) -> None:
        t0 = time.perf_counter()
        while (time.perf_counter() - t0) * 1000 < ms:
            app.processEvents()
            time.sleep(0.01)

    import json

    from core.paths import data_dir

    def launch(size: tuple[int, int]) -> MainWindow:
        (data_dir() / "window.ini").unlink(missing_ok=True)  # each size starts from the default layout
        w = MainWindow(Preferences(model="dinov2-b14"), engine_loader=loader)
        w.resize(*size)
        w.show()
        w.start()
        wait(lambda: w.session is not None and w.photo_path is not None and not w.indexing
             and w.outcome is not None and w.session.indexed_count > 0 and w.settled)
        if w.banner.level == "error":
            print("error shown:", w.banner.text)
        return w

    def box_of_largest_object(w: MainWindow) -> tuple[float, float, float, float, str, str]:
        coco = json.loads((demo_gallery_dir() / "annotations.json").read_text("utf-8"))
        name = Path(w.photo_path).name
        image_id = next(im["id"] for im in coco["images"] if im["file_name"] == name)
        anns = sorted((a for a in coco["annotations"] if a["image_id"] == image_id), key=lambda a: -a["area"])
        x, y, bw, bh = anns[0]["bbox"]
        cat = next(c["name"] for c in coco["categories"] if c["id"] == anns[0]["category_id"])
        return x, y, bw, bh, cat, name

    def drag_box(w: MainWindow, x: float, y: float, bw: float, bh: float) -> None:
        vp = w.canvas.viewport()
        a = w.canvas.mapFromScene(QPointF(x - 2, y - 2))
        b = w.canvas.mapFromScene(QPointF(x + bw + 2, y + bh + 2))
        w.set_tool(Tool.BOX)
        QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        QTest.mouseMove(vp, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
        QTest.mouseMove(vp, b)
        QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        wait(lambda: w.settled)

    args.out.mkdir(parents=True, exist_ok=True)
    w = launch((1280, 720))
    x, y, bw, bh, cat, name = box_of_largest_object(w)
    drag_box(w, x, y, bw, bh)
    w.banner.hide()
    settle(1500)  # thumbnails
    small_png = args.out / "screenshot-1280x720.png"
    w.grab().save(str(small_png))
    print(f"{small_png}: box around a {cat} in {name}; top results:",
          [Path(p).name for p in w.docks.results.paths()[:5]])
    w.close()

    w = launch((1920, 1080))
    vp = w.canvas.viewport()
    w.set_tool(Tool.BRUSH)
    w.canvas.set_brush_size(max(int(min(bw, bh) * 0.45), 6))
    cx, cy = x + bw / 2, y + bh / 2
    pts = [w.canvas.mapFromScene(QPointF(cx + dx * bw * 0.3, cy + dy * bh * 0.3))
           for dx, dy in ((-1, -1), (1, -0.5), (-1, 0.2), (1, 0.8))]
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])
    wait(lambda: w.settled)
    w.docks.controls.qd.click()
    wait(lambda: w.settled)
    kept = w.outcome.selection.indices
    w.query.toggle_head(kept[-1])
    wait(lambda: w.settled)
    w.banner.hide()
    settle(1500)
    big_png = args.out / "screenshot-1920x1080.png"
    w.grab().save(str(big_png))
    print(f"{big_png}: painted mask on the {cat}, Query-DB, head {kept[-1]} forced off; top results:",
          [Path(p).name for p in w.docks.results.paths()[:5]])
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
