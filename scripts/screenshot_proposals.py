"""Take the README's screenshot of proposals on the results, in the real window on a real X screen.

    python scripts/screenshot_proposals.py              # Xvfb + openbox at 1280x720 -> docs/proposals-1280x720.png

Needs ``apt-get install xvfb openbox imagemagick``. A fresh data directory, the shipped demo model and its
demo gallery: the first query's box is saved with the label ``shape``, Propose is ticked, the proposals on the
two best results are accepted (solid) and the rest stay proposed (dashed); the whole screen is captured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from screenshots import wait_until, with_xvfb  # noqa: E402 (the X screen and the wait, as for the other shots)


def shoot(size: str, out: Path) -> int:
    """Play the steps in this process (``DISPLAY`` set) and capture the screen."""
    os.environ["PHS_DATA_DIR"] = tempfile.mkdtemp(prefix="phs-shots-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtWidgets import QApplication

    from phs_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)

    def wait(cond, timeout_s: float = 900) -> None:
        wait_until(app, cond, timeout_s)

    w = MainWindow()
    w.show()
    w.start()
    wait(lambda: w.session is not None and w.photo_path is not None and not w.indexing and w.settled
         and w.docks.results.count() > 0 and w.annotations.photo is not None)
    w.annotations.save(w.canvas.state, "shape")
    w.propose_bar.toggle.setChecked(True)
    wait(lambda: w.proposals.done and w.settled)
    for path in w.proposals.paths[:2]:
        w.proposals.decide(path, True)
    w.docks.results_panel.size_slider.setValue(104)  # more results in view
    w.banner.hide()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.5:  # thumbnails, repaints
        app.processEvents()
        time.sleep(0.01)
    path = out / f"proposals-{size}.png"
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    print(path)
    w.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--size", default="1280x720", help="screen size WxH")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return shoot(args.size, args.out) if args.inside else with_xvfb(args.size, ["--out", str(args.out.resolve())],
                                                                     script=__file__)


if __name__ == "__main__":
    sys.exit(main())
