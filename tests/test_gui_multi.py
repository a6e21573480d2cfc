"""One search over every checked folder of the Library list: results from all of them, ranked exactly as the
core's MultiGallery ranks them (``phs search --all``), unchecking narrows the search and reruns it, the check
boxes come back on the next launch, and a checked folder whose index is gone is one sentence while the others
are still searched."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from core.library import index_folder
from core.library import store as st
from core.method.engine import load_engine
from core.search import QueryService
from core.search.multi import MultiGallery
from core.search.searcher import Searcher
from core.synthetic.gallery import demo_gallery_dir
from core.synthetic.scenes import generate_scene
from phs_gui.main_window import MainWindow
from tests.gui_driver import WAIT_MS, WindowDriver, first_launch, shown_window

pytestmark = pytest.mark.gui


def _folder(path: Path, seed: int, n: int) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(generate_scene(seed, i, (128, 96)).image).save(path / f"{path.name}{i}.jpg")
    return path


def _parents(d: WindowDriver) -> set[str]:
    return {str(Path(p).parent) for p in d.result_paths()}


def _core_ranking(w: MainWindow, folders: list[Path]) -> list[tuple[str, float]]:
    """The window's last query, answered by the core: the query service over a MultiGallery of ``folders``."""
    engine = load_engine("demo", device="cpu")
    gallery = MultiGallery([Searcher(f, engine) for f in folders])
    try:
        out = QueryService(engine, gallery).run(dataclasses.replace(w.outcome.spec, photo=w.photo_path))
        return [(str(h.path), round(float(h.score), 5)) for h in out.hits]
    finally:
        gallery.close()
        engine.close()


def _shown_ranking(w: MainWindow) -> list[tuple[str, float]]:
    return [(str(h.path), round(float(h.score), 5)) for h in w.outcome.hits]


def test_checked_folders_are_searched_together_ranked_as_the_core_ranks_them_and_restored(qtbot, tmp_path,
                                                                                          monkeypatch):
    a = _folder(tmp_path / "alpha", 41, 5)
    index_folder(a, load_engine("demo", device="cpu"))  # from the command line: found, and checked
    b = _folder(tmp_path / "beta", 42, 4)
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    demo = str(demo_gallery_dir())
    try:
        lp = w.docks.library
        # Added and indexed from the app: checked too; the demo gallery and the command line's folder are.
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(b))
        qtbot.mouseClick(lp.add_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not w.indexing and not w.library.busy and w.settled
                        and w.session.indexed_count == 17, timeout=WAIT_MS)  # fmt: skip
        assert set(lp.checked_folders) == {demo, str(a), str(b)}
        qtbot.waitUntil(lambda: d.searched_line() == "17 photos in 3 folders", timeout=WAIT_MS)

        # Both photo folders, the demo gallery unchecked: results from both, all 9 of them.
        w.docks.controls.top_k.setValue(12)
        d.set_searched(demo, False)
        qtbot.waitUntil(lambda: d.searched_line() == "9 photos in 2 folders", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: _parents(d) == {str(a), str(b)} and len(d.result_paths()) == 9, timeout=WAIT_MS)
        assert _shown_ranking(w) == _core_ranking(w, [a, b])
        grid = w.docks.results  # each tile says its photo's full path, so which folder it is in is clear
        assert all(grid.item(i).toolTip().startswith(p + "\n") or grid.item(i).toolTip() == p
                   for i, p in enumerate(d.result_paths()))

        # A marked object, and Query-DB mode: still the core's ranking over both folders.
        d.draw_box([10, 10, 90, 70])
        assert w.outcome.selection is not None and _shown_ranking(w) == _core_ranking(w, [a, b])
        w.docks.controls.qd.click()
        d.settle()
        assert w.outcome.spec.mode == "qd" and _parents(d) == {str(a), str(b)}
        assert _shown_ranking(w) == _core_ranking(w, [a, b])

        # Uncheck one: only the other's photos, the query ran again by itself.
        d.set_searched(b, False)
        qtbot.waitUntil(lambda: _parents(d) == {str(a)} and d.searched_line() == "5 photos in 1 folder",
                        timeout=WAIT_MS)
        assert _shown_ranking(w) == _core_ranking(w, [a])

        # Nothing checked: said, and no result of before is left.
        d.set_searched(a, False)
        qtbot.waitUntil(lambda: d.searched_line() == "No folder is searched" and not d.result_paths(),
                        timeout=WAIT_MS)
        d.set_searched(a, True)
        d.set_searched(b, True)
        qtbot.waitUntil(lambda: _parents(d) == {str(a), str(b)}, timeout=WAIT_MS)
        d.choose_folder(a)  # the current folder: the one the next launch opens first
        w.close()
    finally:
        w.shutdown()

    # The next launch: the same check boxes; B's index deleted meanwhile is one sentence, A still searched.
    for directory, _ in st.list_indexes(b):
        shutil.rmtree(directory)
    w2 = shown_window(qtbot, n=8)
    d2 = WindowDriver(qtbot, w2)
    try:
        w2.start()
        lp2 = w2.docks.library
        qtbot.waitUntil(lambda: w2.session is not None and w2.photo_path is not None and not w2.library.busy
                        and w2.settled and "beta is not searched" in d2.banner(), timeout=WAIT_MS)  # fmt: skip
        assert set(lp2.checked_folders) == {str(a), str(b)}
        assert demo not in lp2.checked_folders and lp2.current_folder == str(a)
        assert d2.banner().count(".") == 1 and "press Index" in d2.banner()
        qtbot.waitUntil(lambda: _parents(d2) == {str(a)} and d2.searched_line() == "5 photos in 1 folder",
                        timeout=WAIT_MS)
        item = lp2.list.item(lp2.folders.index(str(b)))
        assert "beta is not searched" in item.toolTip() and item.text() == "beta (not searched)"
        # Unchecking the folder that cannot be searched withdraws the sentence.
        d2.set_searched(b, False)
        qtbot.waitUntil(lambda: "beta" not in d2.banner(), timeout=WAIT_MS)
    finally:
        w2.shutdown()


def test_a_folder_unplugged_or_without_an_index_is_left_out_with_a_sentence_and_the_others_searched(tmp_path):
    from phs_gui.jobs import open_library_job
    from phs_gui.session import SearchOptions, SearchSession

    a = _folder(tmp_path / "alpha", 41, 3)
    b = _folder(tmp_path / "beta", 42, 2)
    never = _folder(tmp_path / "gamma", 43, 2)  # listed but never indexed
    engine = load_engine("demo", device="cpu")
    for f in (a, b):
        index_folder(f, engine)
    session = SearchSession(engine)
    folders = [str(a), str(b), str(never)]
    try:
        out = open_library_job(session, str(a), folders, report=None, cancel=None)
        assert out.searched == (str(a), str(b)) and out.searched_count == 5 and out.count == 3
        assert list(out.left_out) == [str(never)] and "gamma is not searched" in out.left_out[str(never)]
        session.encode(str(a / "alpha0.jpg"))
        assert {Path(h.path).parent for h in session.run(None, SearchOptions(top_k=10)).hits} == {a, b}

        b.rename(tmp_path / "unplugged")
        out = open_library_job(session, str(a), folders, report=None, cancel=None)
        assert out.searched == (str(a),) and session.indexed_count == 3
        assert out.left_out[str(b)] == ("beta is not searched: the folder is not there now (moved, deleted or on "
                                        "an unplugged drive).")
        assert {Path(h.path).parent for h in session.run(None, SearchOptions(top_k=10)).hits} == {a}

        (tmp_path / "unplugged").rename(b)
        out = open_library_job(session, str(a), folders[:2], report=None, cancel=None)
        assert out.searched == (str(a), str(b)) and not out.left_out
        # The filter's "under" and its subfolder list span every folder searched.
        (a / "trips").mkdir()
        (b / "trips").mkdir()
        (b / "home").mkdir()
        assert session.subfolders() == ["home", "trips"]
    finally:
        session.close()


def test_checking_a_folder_opens_its_index_in_a_worker_and_reruns_the_query(qtbot, tmp_path, monkeypatch):
    import threading

    a = _folder(tmp_path / "alpha", 41, 3)
    index_folder(a, load_engine("demo", device="cpu"))
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        d.set_searched(a, False)
        qtbot.waitUntil(lambda: d.searched_line() == "8 photos in 1 folder" and str(a) not in _parents(d),
                        timeout=WAIT_MS)  # fmt: skip
        opened_on = []
        real_init = Searcher.__init__

        def spy(self, folder, *args, **kwargs):
            opened_on.append((str(folder), threading.current_thread() is threading.main_thread()))
            real_init(self, folder, *args, **kwargs)

        monkeypatch.setattr(Searcher, "__init__", spy)
        before = w.outcome
        d.set_searched(a, True)  # nothing else done: the answer shown is a new one, over both folders
        qtbot.waitUntil(lambda: str(a) in _parents(d) and d.searched_line() == "11 photos in 2 folders",
                        timeout=WAIT_MS)  # fmt: skip
        assert w.outcome is not before and opened_on == [(str(a), False)]
    finally:
        w.shutdown()
