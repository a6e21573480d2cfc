"""The app's library is every folder indexed with its model, from the command line too; removing one from the
library deletes its index from disk after asking (the photos are never touched)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from core.library import index_folder
from core.library import store as st
from core.method.engine import load_engine
from core.synthetic.gallery import demo_gallery_dir
from core.synthetic.scenes import generate_scene
from tests.gui_driver import WAIT_MS, WindowDriver, first_launch
from tests.index_fakes import tree_hash

pytestmark = pytest.mark.gui


def test_a_cli_indexed_folder_is_listed_and_removing_it_deletes_its_index(qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "from the command line"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(generate_scene(77, i, (128, 96)).image).save(folder / f"p{i}.jpg")
    index_folder(folder, load_engine("demo", device="cpu"))  # what `phs index` does
    before = tree_hash(folder)
    w = first_launch(qtbot, n=8)
    try:
        lib = w.docks.library
        assert str(folder) in lib.folders
        # Checked like any folder: searched with the demo gallery; alone once the gallery is unchecked.
        assert lib.checked_folders == lib.folders
        d = WindowDriver(qtbot, w)
        qtbot.waitUntil(lambda: d.searched_line() == "12 photos in 2 folders", timeout=WAIT_MS)
        d.set_searched(demo_gallery_dir(), False)
        d.choose_folder(folder)
        qtbot.waitUntil(lambda: w.session.folder is not None and w.session.folder.name == folder.name
                        and w.session.indexed_count == 4 and d.searched_line() == "4 photos in 1 folder"
                        and {Path(p).parent.name for p in d.result_paths()} == {folder.name}, timeout=WAIT_MS)
        # Cancelled: nothing changes.
        asked = []
        monkeypatch.setattr("phs_gui.dialogs.confirm_remove_folder", lambda parent, f: asked.append(f) or False)
        qtbot.mouseClick(lib.remove_button, Qt.MouseButton.LeftButton)
        assert asked == [str(folder)] and str(folder) in lib.folders and st.list_indexes(folder)
        # Yes: off the list, its index deleted from disk, a sentence says so, the photos untouched.
        monkeypatch.setattr("phs_gui.dialogs.confirm_remove_folder", lambda parent, f: True)
        qtbot.mouseClick(lib.remove_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not st.list_indexes(folder) and str(folder) not in lib.folders, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "deleted" in w.banner.text, timeout=WAIT_MS)
        assert tree_hash(folder) == before
        assert all(f.name != folder.name for f in w.session.folders)
        qtbot.waitUntil(lambda: d.searched_line() == "No folder is searched" and not d.result_paths(),
                        timeout=WAIT_MS)
    finally:
        w.shutdown()


def test_cycles_are_collected_on_the_gui_thread_only(qtbot):
    """While a window lives, Python collects reference cycles only from the GUI thread's timer, so a worker
    never destroys Qt objects that belong to the GUI thread; after the window, collection is automatic again."""
    import gc

    from phs_gui.workers import MainThreadGC

    was = gc.isenabled()
    guard = MainThreadGC(interval_ms=20)
    try:
        assert not gc.isenabled()

        class Cycle:
            pass

        for _ in range(2000):  # enough allocations to pass the youngest generation's threshold
            a, b = Cycle(), Cycle()
            a.other, b.other = b, a
        before = gc.get_count()[0]
        qtbot.waitUntil(lambda: gc.get_count()[0] < before, timeout=5000)
    finally:
        guard.stop()
    assert gc.isenabled() == was
