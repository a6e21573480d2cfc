"""The window on a small screen and the defects a newcomer hit, through the real window and its event loop."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QPushButton  # noqa: E402

from phs_gui.main_window import MainWindow  # noqa: E402
from tests.gui_driver import (  # noqa: E402
    WAIT_MS,
    WindowDriver,
    demo_loader,
    first_launch,
    other_scene,
    settle,
    shown_window,
)

pytestmark = pytest.mark.gui


def test_first_window_lies_inside_the_screens_available_area(qtbot):
    w = MainWindow(engine_loader=demo_loader, check_weights=False)
    qtbot.addWidget(w)
    w.show()
    area, geo = w.screen().availableGeometry(), w.geometry()
    # Inside the screen (the offscreen test screen is 800 px wide, less than the panels' minimum width: there the
    # window is as narrow as its panels allow, and starts at the screen's left edge).
    assert area.contains(geo.topLeft()) and geo.height() <= area.height(), (area, geo)
    assert geo.width() <= max(area.width(), w.minimumSizeHint().width()), (area, geo)
    assert geo.height() < 900 and geo.width() < 1440  # not the fixed 1440x900 of before


def test_a_new_query_shows_its_results_from_the_first(qtbot, tmp_path, monkeypatch):
    w = first_launch(qtbot, n=24)
    try:
        grid = w.docks.results
        bar = grid.verticalScrollBar()
        qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=WAIT_MS)
        bar.setValue(bar.maximum())
        assert bar.value() > 0
        other = other_scene(tmp_path)
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
        qtbot.keyClick(w, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(lambda: w.photo_path == str(other) and w.settled, timeout=WAIT_MS)
        assert bar.value() == 0 and grid.count() > 0
    finally:
        w.shutdown()


def test_arrows_step_in_the_preview_whichever_button_has_focus(qtbot):
    w = first_launch(qtbot)
    try:
        grid = w.docks.results
        paths = grid.paths()
        grid.setCurrentRow(0)
        grid.preview_requested.emit(paths[0])
        dlg = w.previews.dialog
        qtbot.waitUntil(lambda: dlg.isVisible() and dlg.path == paths[0], timeout=WAIT_MS)
        for button in dlg.findChildren(QPushButton):
            button.setFocus()
            dlg.activateWindow()
            start = dlg.path
            qtbot.keyClick(button, Qt.Key.Key_Right)
            qtbot.waitUntil(lambda s=start: dlg.path == paths[min(paths.index(s) + 1, len(paths) - 1)],
                            timeout=WAIT_MS)
        at = paths.index(dlg.path)
        qtbot.keyClick(dlg.findChildren(QPushButton)[0], Qt.Key.Key_Left)
        qtbot.waitUntil(lambda: dlg.path == paths[at - 1], timeout=WAIT_MS)
        dlg.close()
    finally:
        w.shutdown()


def test_the_wheel_over_an_unfocused_spin_box_leaves_its_value(qtbot):
    w = first_launch(qtbot)
    try:
        c = w.docks.controls
        for spin in (c.h_on, c.top_k):
            before = spin.value()
            centre = QPointF(spin.width() / 2, spin.height() / 2)
            for _ in range(5):
                ev = QWheelEvent(centre, spin.mapToGlobal(centre), QPoint(0, 0), QPoint(0, -120),
                                 Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                                 False)
                QApplication.sendEvent(spin, ev)
            settle(qtbot, w)
            assert spin.value() == before and not spin.hasFocus()
        assert w.prefs.search.h_on == c.h_on.value()
    finally:
        w.shutdown()


def test_forcing_a_head_is_undone_by_ctrl_z_and_the_box_stays(qtbot):
    w = first_launch(qtbot)
    d = WindowDriver(qtbot, w)
    try:
        W, H = d.image_size()
        d.draw_box([W * 0.2, H * 0.2, W * 0.6, H * 0.6])
        box, kept = d.box(), d.kept_heads()
        d.click_head(kept[0])
        assert d.forced() == {kept[0]: "off"} and kept[0] not in d.kept_heads() and "forced" in d.heads_label()
        d.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert d.forced() == {} and d.kept_heads() == kept and "forced" not in d.heads_label()
        assert d.box() == box
        d.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the box itself goes next
        assert d.box() is None and "Mark the object" in d.heads_label()
        d.key(Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
        d.key(Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)  # redo twice: the box, then the forced head
        assert d.box() == box and d.forced() == {kept[0]: "off"}
    finally:
        w.shutdown()


def test_view_reset_layout_puts_the_docks_back(qtbot):
    w = first_launch(qtbot)
    try:
        d = w.docks
        d.bottom.setFloating(True)
        d.right.hide()
        reset = next(a for a in w.menuBar().actions() if a.text() == "&View").menu()
        next(a for a in reset.actions() if a.text() == "Reset &layout").trigger()
        qtbot.waitUntil(lambda: d.right.isVisible() and not d.bottom.isFloating(), timeout=WAIT_MS)
        assert w.dockWidgetArea(d.bottom) == Qt.DockWidgetArea.BottomDockWidgetArea
    finally:
        w.shutdown()


def test_relaunch_restores_the_box_the_forced_head_and_the_brush_size(qtbot):
    w = first_launch(qtbot)
    d = WindowDriver(qtbot, w)
    W, H = d.image_size()
    d.draw_box([W * 0.2, H * 0.2, W * 0.6, H * 0.6])
    box, kept = d.box(), d.kept_heads()
    d.click_head(kept[0])
    w.actions_.brush_spin.setValue(40)
    photo = w.photo_path
    qtbot.keyClick(w, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)

    w2 = shown_window(qtbot, n=12)
    d2 = WindowDriver(qtbot, w2)
    try:
        w2.start()
        qtbot.waitUntil(lambda: w2.photo_path == photo and w2.settled and w2.docks.results.count() > 0,
                        timeout=WAIT_MS)
        assert d2.box() == box and d2.forced() == {kept[0]: "off"} and "forced off" in d2.heads_label()
        assert w2.actions_.brush_spin.value() == 40 and w2.canvas.brush_size == 40
        d2.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the restored marks are the starting point
        assert d2.box() == box and d2.forced() == {kept[0]: "off"}
    finally:
        w2.shutdown()


def test_a_forced_head_with_nothing_marked_is_shown_as_not_in_effect(qtbot):
    w = first_launch(qtbot)
    d = WindowDriver(qtbot, w)
    try:
        W, H = d.image_size()
        d.draw_box([W * 0.2, H * 0.2, W * 0.6, H * 0.6])
        head = d.kept_heads()[0]
        d.click_head(head)
        d.key(Qt.Key.Key_Delete)  # the box goes; the forced head stays in the prompt
        assert d.box() is None and d.forced() == {}
        assert f"H{head} off" in d.heads_label() and "not in effect" in d.heads_label()
        d.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert d.box() is not None and d.forced() == {head: "off"}
    finally:
        w.shutdown()


def test_result_tiles_of_any_aspect_show_the_whole_photo_and_both_caption_lines(qtbot, tmp_path):
    from PIL import Image

    from core.synthetic.gallery import demo_gallery_dir
    from core.synthetic.scenes import generate_scene

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, (name, size) in enumerate((("wide.jpg", (480, 160)), ("chelsea.png", (240, 240)),
                                      ("tall.jpg", (150, 450)), ("wide2.jpg", (400, 200)))):
        Image.fromarray(generate_scene(31, i, (224, 224)).image).resize(size).save(folder / name)
    w = first_launch(qtbot)
    try:
        WindowDriver(qtbot, w).set_searched(demo_gallery_dir(), False)  # the new folder alone is searched
        w.library.add_folder(str(folder), select=True)
        w.library.select_folder(str(folder))
        grid = w.docks.results
        qtbot.waitUntil(lambda: not w.indexing and w.settled and grid.count() == 4
                        and all(grid.cache.get(p) is not None for p in grid.paths()), timeout=WAIT_MS)
        px, lines = grid.iconSize().height(), 2 * grid.fontMetrics().lineSpacing()
        for i in range(grid.count()):
            item = grid.item(i)
            rect = grid.visualItemRect(item)
            assert rect.height() >= px + lines and rect.width() <= grid.gridSize().width(), (item.text(), rect)
            pm = grid.cache.get(grid.path_of(item))
            assert pm.width() == pm.height()  # the photo sits whole inside a square icon
        assert any(grid.item(i).text().endswith("chelsea.png") for i in range(grid.count()))
    finally:
        w.shutdown()


def test_no_method_or_thumbnail_change_leaves_the_layout_changed(qtbot):
    w = first_launch(qtbot)
    try:
        d = w.docks
        W, H = w.canvas.state.image_size
        WindowDriver(qtbot, w).draw_box([W * 0.2, H * 0.2, W * 0.6, H * 0.6])
        widths = (d.left.width(), d.right.width())
        height = d.bottom.height()
        combo = d.controls.method
        for method in ("lvp", "red-circle", "lvp+phs", "phs"):
            combo.setCurrentIndex(combo.findData(method))
            settle(qtbot, w)
        assert (d.left.width(), d.right.width()) == widths
        slider = d.results_panel.size_slider
        start = slider.value()
        slider.setValue(slider.maximum())
        qtbot.waitUntil(lambda: d.bottom.height() > height, timeout=WAIT_MS)
        slider.setValue(start)
        qtbot.waitUntil(lambda: d.bottom.height() == height, timeout=WAIT_MS)
        assert (d.left.width(), d.right.width()) == widths
    finally:
        w.shutdown()


def test_export_all_from_the_file_menu_or_the_selection_from_the_results_panel_says_where(qtbot, tmp_path,
                                                                                       monkeypatch):
    w = first_launch(qtbot)
    try:
        grid = w.docks.results
        out = tmp_path / "all.csv"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
        grid.setCurrentRow(3)  # one tile clicked is not a choice: all results go
        qtbot.keyClick(w, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(lambda: out.is_file(), timeout=WAIT_MS)
        rows = out.read_text("utf-8").splitlines()
        assert len(rows) == grid.count() + 1 and rows[1].startswith("1,")
        assert str(out) in w.banner.text and f"all {grid.count()} results" in w.banner.text

        picked = tmp_path / "picked.csv"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(picked), ""))
        grid.clearSelection()
        grid.item(2).setSelected(True)
        grid.item(5).setSelected(True)
        qtbot.mouseClick(w.docks.results_panel.export_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: picked.is_file(), timeout=WAIT_MS)
        rows = picked.read_text("utf-8").splitlines()[1:]
        assert [r.split(",")[0] for r in rows] == ["3", "6"]  # their ranks among all results
        assert [r.split(",")[2] for r in rows] == [grid.paths()[2], grid.paths()[5]]
        assert "the 2 selected results" in w.banner.text and str(picked) in w.banner.text
    finally:
        w.shutdown()


def test_while_a_folder_indexes_what_it_committed_is_searched_and_counted(qtbot, tmp_path, monkeypatch):
    import time

    from PIL import Image

    import phs_gui.controllers.library as library_controller
    from core.synthetic.gallery import demo_gallery_dir
    from core.synthetic.scenes import generate_scene

    monkeypatch.setattr(library_controller, "REOPEN_S", 0.2)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(generate_scene(55, i, (160, 160)).image).save(folder / f"p{i:02d}.jpg")
    w = first_launch(qtbot)
    try:
        engine = w.session.index_engine
        encode = engine.encode_batch

        def slow_encode(batch):  # a slower model, so the run is still going while we look
            time.sleep(0.3)
            return encode(batch)

        engine.encode_batch = slow_encode
        WindowDriver(qtbot, w).set_searched(demo_gallery_dir(), False)  # the new folder alone is searched
        w.library.add_folder(str(folder), select=True)
        w.library.select_folder(str(folder))
        grid = w.docks.results
        qtbot.waitUntil(lambda: w.indexing and grid.count() > 0 and "photos" in w.status.indexed.text()
                        and not w.status.indexed.text().startswith("0 "), timeout=WAIT_MS)
        n = int(w.status.indexed.text().split()[0])
        assert w.indexing and 0 < n < 40 and grid.count() == min(n, w.prefs.search.top_k)
        assert all(p.startswith(str(folder)) for p in grid.paths())
        qtbot.waitUntil(lambda: not w.indexing and w.settled, timeout=WAIT_MS)
        assert w.status.indexed.text() == "40 photos in 1 folder"
        assert w.docks.library.status.text().startswith("40 photos searchable")
    finally:
        w.shutdown()


def test_the_demo_gallery_on_a_read_only_data_folder_is_one_sentence(qtbot, monkeypatch):
    import errno

    import core.synthetic.gallery as gallery
    import phs_gui.jobs as jobs

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(jobs, "write_demo_gallery", read_only)
    monkeypatch.setattr(gallery, "demo_gallery_ready", lambda *a, **k: False)
    monkeypatch.setattr("phs_gui.controllers.library.demo_gallery_ready", lambda *a, **k: False)
    w = MainWindow(engine_loader=demo_loader, demo_count=4)
    qtbot.addWidget(w)
    w.show()
    try:
        w.start()
        qtbot.waitUntil(lambda: w.banner.level == "error" and "demo gallery" in w.banner.text, timeout=WAIT_MS)
        text = w.banner.text
        assert "read-only" in text and "PHS_DATA_DIR" in text and "\n" not in text and "Traceback" not in text
        assert w.isVisible() and not w.indexing
        assert w.docks.library.add_button.isEnabled()  # the person can still add a folder of their own
    finally:
        w.shutdown()


def test_file_and_folder_names_that_are_not_utf8_keep_their_real_paths(qtbot, tmp_path, monkeypatch):
    import os

    from PIL import Image

    from core.synthetic.gallery import demo_gallery_dir
    from core.synthetic.scenes import generate_scene

    root = os.fsencode(str(tmp_path))
    folder = os.fsdecode(root + b"/caf\xe9-photos")  # Latin-1 bytes: not UTF-8
    os.mkdir(os.fsencode(folder))
    names = [b"ph\xff\xfeto.jpg", b"plain.jpg", b"n\xe4me.png"]
    for i, n in enumerate(names):
        Image.fromarray(generate_scene(41, i, (160, 160)).image).save(os.fsdecode(os.fsencode(folder) + b"/" + n),
                                                                      format="JPEG" if n.endswith(b"jpg") else "PNG")
    w = first_launch(qtbot)
    try:
        WindowDriver(qtbot, w).set_searched(demo_gallery_dir(), False)  # the new folder alone is searched
        qt_text = os.fsencode(folder).decode("utf-8", "replace")  # what Qt's folder dialog hands back
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: qt_text)
        w.add_folder_dialog()
        assert w.prefs.current_folder == folder  # the folder on disk, not Qt's text of it
        grid = w.docks.results
        qtbot.waitUntil(lambda: not w.indexing and w.settled and grid.count() == 3, timeout=WAIT_MS)
        assert w.session.indexed_count == 3
        paths = grid.paths()
        assert all(os.path.exists(p) for p in paths)
        assert {os.fsencode(p).rsplit(b"/", 1)[1] for p in paths} == set(names)
        odd = next(i for i, p in enumerate(paths) if os.fsencode(p).endswith(b"ph\xff\xfeto.jpg"))
        assert grid.item(odd).text().endswith("ph\\xff\\xfeto.jpg")  # undecodable bytes shown escaped
        grid.preview_requested.emit(paths[odd])
        dlg = w.previews.dialog
        qtbot.waitUntil(lambda: dlg.path == paths[odd] and not dlg.image.pixmap().isNull(), timeout=WAIT_MS)
        assert "\\xff" in dlg.windowTitle() and "\\xe9" in dlg.caption.text()
        out = tmp_path / "list.csv"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
        grid.export_dialog()
        listed = out.read_bytes()
        assert b"ph\xff\xfeto.jpg" in listed and b"caf\xe9-photos" in listed  # the real bytes, not Qt's text
        dlg.close()
    finally:
        w.shutdown()
