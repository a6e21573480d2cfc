"""The method choice in the app: the learned prompt and the red circle with a box, their placement on the
photo and their maps in the heads panel; no learned prompt yet, training one from the app, cancelling it.

The real MainWindow, its real worker threads and the demo model, driven through the Qt event loop."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from core.method import lvp  # noqa: E402
from core.method.lvp_train import checkpoint_path  # noqa: E402
from phs_gui.main_window import MainWindow  # noqa: E402
from phs_gui.settings import load_preferences, save_preferences  # noqa: E402
from tests.gui_driver import WAIT_MS, demo_loader, drag_box, first_launch, settle  # noqa: E402

pytestmark = pytest.mark.gui
N = 12


def launch(qtbot) -> MainWindow:
    return first_launch(qtbot, N)


def choose(qtbot, w: MainWindow, method: str) -> None:
    combo = w.docks.controls.method
    combo.setCurrentIndex(combo.findData(method))
    settle(qtbot, w)


def tiles(w: MainWindow) -> list[bytes]:
    return [bytes(t.pixmap.toImage().constBits()) for t in w.docks.heads.tiles]


def test_learned_prompt_and_red_circle_show_their_placement_maps_and_results(qtbot):
    w = launch(qtbot)
    W, H = w.canvas.state.image_size
    box = (W * 0.2, H * 0.25, W * 0.6, H * 0.65)
    drag_box(qtbot, w, box)
    heads = w.docks.heads
    assert heads.summary.text().startswith("Kept") and w.canvas.marker is None
    phs_tiles, phs_results = tiles(w), w.docks.results.paths()

    # Learned prompt: a square (or circle) the size of the box's longer side, at its centre.
    choose(qtbot, w, "lvp")
    shape, (cx, cy, mw, mh) = w.canvas.marker
    assert shape in ("circle", "square") and w.outcome.query.method == "lvp"
    assert cx == pytest.approx((box[0] + box[2]) / 2, rel=0.05) and cy == pytest.approx((box[1] + box[3]) / 2, rel=0.05)
    assert mw / W == pytest.approx(mh / H, rel=0.05)  # square in the model's input
    assert "learned prompt pasted" in heads.summary.text() and "learned prompt" in heads.caption.text()
    assert len(heads.tiles) == w.session.engine.num_heads and tiles(w) != phs_tiles
    lvp_results = w.docks.results.paths()
    assert len(lvp_results) >= N - 1
    assert w.prefs.search.method == "lvp"

    # Red circle: an ellipse through the box's edges.
    choose(qtbot, w, "red-circle")
    shape, (cx, cy, mw, mh) = w.canvas.marker
    assert shape == "ellipse" and w.outcome.query.method == "red-circle"
    assert mw == pytest.approx(box[2] - box[0], rel=0.05) and mh == pytest.approx(box[3] - box[1], rel=0.05)
    assert "red circle pasted" in heads.summary.text() and "red circle" in heads.caption.text()
    assert len(w.docks.results.paths()) >= N - 1
    assert not w.docks.controls.fa_box.isEnabled()  # FA goes with PHS only

    # Learned prompt + PHS: heads chosen on the marked photo.
    choose(qtbot, w, "lvp+phs")
    assert w.canvas.marker is not None and heads.summary.text().startswith("Kept")
    assert "with the learned prompt pasted" in heads.summary.text()

    # Back to PHS: no marker, the plain photo's heads and results again.
    choose(qtbot, w, "phs")
    assert w.canvas.marker is None and w.outcome.query.method == "phs"
    assert heads.caption.text() == "<b>Selected heads, combined</b>" and "pasted" not in heads.summary.text()
    assert tiles(w) == phs_tiles and w.docks.results.paths() == phs_results
    assert w.docks.controls.fa_box.isEnabled()

    # A new photo clears the marker at once.
    choose(qtbot, w, "red-circle")
    assert w.canvas.marker is not None
    target = w.docks.results.paths()[1]
    w.query.open_photo(target)
    qtbot.waitUntil(lambda: w.photo_path == target and w.settled, timeout=WAIT_MS)
    assert w.canvas.marker is None and "Mark the object" in heads.summary.text()


def test_method_choice_is_remembered(qtbot, tmp_path):
    prefs = load_preferences()
    prefs.search = replace(prefs.search, method="red-circle")
    save_preferences(prefs)
    w = MainWindow(engine_loader=demo_loader, demo_count=N)
    qtbot.addWidget(w)
    assert w.docks.controls.method.currentText() == "Red circle"
    assert w.docks.controls.options().method == "red-circle"
    w.shutdown()


@pytest.fixture
def no_demo_prompt(monkeypatch, tmp_path):
    """The demo model without its shipped learned prompt (and none trained in the fresh data directory)."""
    monkeypatch.setattr(lvp, "demo_prompt_path", lambda: tmp_path / "no-prompt.safetensors")
    monkeypatch.setattr("phs_gui.main_window.ask_training_source", lambda *_a: "synthetic")


def test_no_learned_prompt_says_so_and_training_from_the_app_makes_it_work(qtbot, no_demo_prompt):
    w = launch(qtbot)
    W, H = w.canvas.state.image_size
    drag_box(qtbot, w, (W * 0.2, H * 0.2, W * 0.6, H * 0.6))
    choose(qtbot, w, "lvp")
    text = w.banner.text
    assert "no learned prompt" in text and "Train" in text and "`" not in text and "--" not in text
    assert w.banner.action_button.isVisible() and w.banner.action_button.text() == "Train…"
    assert w.outcome.query.method == "phs" and w.canvas.marker is None  # PHS answered meanwhile
    assert len(w.docks.results.paths()) >= N - 1

    w.training_.settings = {"steps": 4, "batch": 2, "scenes": 6, "gain_images": 0}
    qtbot.mouseClick(w.banner.action_button, Qt.MouseButton.LeftButton)
    assert w.training and w.status.cancel_train.isVisible()
    qtbot.waitUntil(lambda: not w.training, timeout=WAIT_MS)
    assert "learned prompt is trained (4 steps" in w.banner.text
    assert lvp.prompt_path(w.session.engine).is_file()
    assert not w.status.cancel_train.isVisible() and w.actions_.train.isEnabled()
    settle(qtbot, w)
    assert w.outcome.query.method == "lvp" and w.canvas.marker is not None
    assert "learned prompt pasted" in w.docks.heads.summary.text()
    assert "no learned prompt" not in w.banner.text


def test_training_can_be_cancelled_from_the_status_bar(qtbot, no_demo_prompt):
    w = launch(qtbot)
    w.training_.settings = {"steps": 100000, "batch": 2, "scenes": 6, "gain_images": 0, "checkpoint_every": 100000}
    w.actions_.train.trigger()
    qtbot.waitUntil(lambda: "step" in w.status.train.text(), timeout=WAIT_MS)
    assert w.status.train_progress.isVisible() and not w.actions_.train.isEnabled()
    qtbot.mouseClick(w.status.cancel_train, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.training, timeout=WAIT_MS)
    assert "Training stopped at step" in w.banner.text
    out = lvp.prompt_path(w.session.engine)
    assert not out.is_file() and checkpoint_path(out).is_file()  # the progress is kept for the next run
    assert not w.status.train.isVisible() and w.actions_.train.isEnabled()
