"""The library's folders kept current while the app runs, through the real window: photos copied in are found by
the search shown, deleted ones disappear, a change made while the app was closed is found on the next launch, a
folder that vanishes is one sentence and is watched again when it is back, a second program holding the index
is one sentence while watching goes on, the on/off action is remembered, and closing the window during a
background run ends promptly with nothing lost."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from core.library import IndexReport, index_folder
from core.library import store as st
from core.method.engine import load_engine
from core.synthetic.gallery import demo_gallery_dir
from core.synthetic.scenes import generate_scene
from phs_gui.controllers import watching
from phs_gui.folder_watch import BACKGROUND_NICENESS, WatchRun, change_sentence, lower_priority
from phs_gui.main_window import MainWindow
from phs_gui.settings import load_preferences
from tests.gui_driver import WAIT_MS, WindowDriver, first_launch, shown_window

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _short_waits(monkeypatch):
    """A folder is acted on 0.3 s after it went quiet (photos younger than that wait), no periodic rescan."""
    monkeypatch.setattr(watching, "QUIET_S", 0.3)
    monkeypatch.setattr(watching, "MAX_WAIT_S", 1.0)
    monkeypatch.setattr(watching, "RESCAN_S", 0.0)
    monkeypatch.setattr(watching, "POLLING", False)


def _scenes(folder: Path, seeds: range, prefix: str = "p") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in seeds:
        p = folder / f"{prefix}{i}.jpg"
        Image.fromarray(generate_scene(77, i, (128, 96)).image).save(p)
        out.append(p)
    return out


def _copy_in(staged: list[Path], folder: Path) -> list[str]:
    """Copy finished photos (taken a minute ago) into ``folder`` as a file manager does, keeping their
    modification time; returns their paths there."""
    t = time.time() - 60
    for p in staged:
        os.utime(p, (t, t))
    return [str(shutil.copy2(p, folder / p.name)) for p in staged]


def _indexed_folder(tmp_path: Path, n: int = 4) -> Path:
    folder = tmp_path / "Pictures"
    _scenes(folder, range(n))
    index_folder(folder, load_engine("demo", device="cpu"))  # as `phs index` does: listed in the Library
    return folder


def _search_folder(qtbot, w: MainWindow, folder: Path, n: int) -> None:
    """Search ``folder`` alone (the demo gallery unchecked, ``folder`` chosen in the Library list) and wait for
    its ``n`` photos among the results."""
    d = WindowDriver(qtbot, w)
    d.set_searched(demo_gallery_dir(), False)
    d.choose_folder(folder)
    qtbot.waitUntil(lambda: w.session.folder is not None and w.session.folder.name == folder.name and w.settled
                    and {Path(p).parent for p in d.result_paths()} == {folder} and len(d.result_paths()) == n,
                    timeout=WAIT_MS)  # fmt: skip


def _line(w: MainWindow) -> str:
    return w.docks.library.status.text()


def _launch_again(qtbot) -> MainWindow:
    w = shown_window(qtbot, n=8)
    w.start()
    return w


def test_photos_copied_in_are_found_and_deleted_ones_disappear_from_the_results(qtbot, tmp_path):
    folder = _indexed_folder(tmp_path)
    staged = _scenes(tmp_path / "camera", range(10, 13), prefix="new")
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.busy, timeout=WAIT_MS)
        assert "added" not in _line(w) and "removed" not in _line(w)  # quiet: nothing changed

        new = _copy_in(staged, folder)
        qtbot.waitUntil(lambda: set(new) <= set(d.result_paths()) and w.settled, timeout=WAIT_MS)
        assert len(d.result_paths()) == 7
        qtbot.waitUntil(lambda: bool(re.search(r"^\d photos? added to Pictures \(\d\d:\d\d\)\.$", _line(w))),
                        timeout=WAIT_MS)
        assert d.status("indexed") == "7 photos in 1 folder"

        gone = [str(folder / "p1.jpg"), new[0]]
        for p in gone:
            Path(p).unlink()
        qtbot.waitUntil(lambda: not set(gone) & set(d.result_paths()) and len(d.result_paths()) == 5
                        and w.settled, timeout=WAIT_MS)  # fmt: skip
        qtbot.waitUntil(lambda: bool(re.search(r"^\d photos? removed from Pictures \(\d\d:\d\d\)\.$", _line(w))),
                        timeout=WAIT_MS)
        assert w.docks.library.failures.count() == 0
    finally:
        w.shutdown()


def test_a_change_made_while_the_app_was_closed_is_found_on_the_next_launch(qtbot, tmp_path):
    folder = _indexed_folder(tmp_path)
    w = first_launch(qtbot, n=8)
    try:
        _search_folder(qtbot, w, folder, 4)
        w.close()  # saves the preferences: this folder is the one searched
    finally:
        w.shutdown()
    new = _copy_in(_scenes(tmp_path / "camera", range(20, 22), prefix="while-closed"), folder)
    (folder / "p0.jpg").unlink()
    w2 = _launch_again(qtbot)
    d2 = WindowDriver(qtbot, w2)
    try:
        qtbot.waitUntil(lambda: w2.session is not None and w2.session.folder is not None
                        and set(new) <= set(d2.result_paths()) and w2.settled, timeout=WAIT_MS)  # fmt: skip
        assert str(folder / "p0.jpg") not in d2.result_paths() and len(d2.result_paths()) == 5
        qtbot.waitUntil(lambda: "2 photos added to Pictures, 1 removed" in _line(w2), timeout=WAIT_MS)
    finally:
        w2.shutdown()


def test_a_photo_still_being_written_is_left_until_it_is_whole_then_found(qtbot, tmp_path):
    import io

    import numpy as np

    folder = _indexed_folder(tmp_path)
    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.busy, timeout=WAIT_MS)
        target = folder / "slow-copy.jpg"
        runs: list = []
        chunks = np.array_split(np.frombuffer(data, np.uint8), 20)

        def write_slowly() -> None:  # a slow copy: a chunk every 0.1 s for 2 s, longer than the longest wait
            with open(target, "wb") as fh:
                for c in chunks:
                    fh.write(c.tobytes())
                    fh.flush()
                    time.sleep(0.1)

        writer = threading.Thread(target=write_slowly)
        writer.start()
        def note_runs() -> bool:
            run = w.watching.last_run
            if run is not None and run.report is not None and run not in runs:
                runs.append(run)
            return not writer.is_alive()

        qtbot.waitUntil(note_runs, timeout=WAIT_MS)
        writer.join()
        qtbot.waitUntil(lambda: str(target) in d.result_paths() and w.settled, timeout=WAIT_MS)
        assert any(r.report.settling for r in runs), runs  # a run came while it was written, and left it
        assert not any(r.report.failed for r in runs), runs  # never read half-written
        assert w.docks.library.failures.count() == 0 and "could not be read" not in _line(w)
        assert w.banner.level != "error" or not w.banner.text
    finally:
        w.shutdown()


def test_a_folder_that_vanishes_is_one_sentence_keeps_its_index_and_is_watched_again_when_back(qtbot, tmp_path):
    folder = _indexed_folder(tmp_path)
    away = tmp_path / "unplugged"
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.running_folder,
                        timeout=WAIT_MS)
        folder.rename(away)
        qtbot.waitUntil(lambda: "Pictures is not there" in _line(w), timeout=WAIT_MS)
        assert _line(w).count(".") == 1 and "index is kept" in _line(w)
        assert w.docks.library.failures.count() == 0 and w.banner.level != "error"
        assert st.list_indexes(folder)  # the index stays

        # Back, with a photo added meanwhile: watched again, and the photo is found.
        new = _copy_in(_scenes(tmp_path / "camera", range(30, 31), prefix="meanwhile"), away)
        away.rename(folder)
        qtbot.waitUntil(lambda: str(folder / Path(new[0]).name) in d.result_paths() and w.settled,
                        timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "1 photo added to Pictures" in _line(w), timeout=WAIT_MS)
        later = _copy_in(_scenes(tmp_path / "camera", range(31, 32), prefix="after"), folder)
        qtbot.waitUntil(lambda: set(later) <= set(d.result_paths()) and w.settled, timeout=WAIT_MS)
        assert w.docks.library.failures.count() == 0
    finally:
        w.shutdown()


def test_an_index_held_by_another_program_is_one_sentence_and_watching_goes_on(qtbot, tmp_path):
    folder = _indexed_folder(tmp_path)
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.running_folder,
                        timeout=WAIT_MS)
        (directory, _side), = st.list_indexes(folder)
        held = st.WriterLock(directory / st.LOCK_FILE)  # what `phs index --watch` on the same folder holds
        held.acquire()
        try:
            first = _copy_in(_scenes(tmp_path / "camera", range(40, 41), prefix="a"), folder)
            qtbot.waitUntil(lambda: "could not be brought up to date" in w.banner.text, timeout=WAIT_MS)
            said = w.banner.text
            assert said.startswith("Pictures could not be brought up to date: another indexing run")
            assert said.count(".") == 1
        finally:
            held.release()
        second = _copy_in(_scenes(tmp_path / "camera", range(41, 42), prefix="b"), folder)
        qtbot.waitUntil(lambda: set(first + second) <= set(d.result_paths()) and w.settled, timeout=WAIT_MS)
    finally:
        w.shutdown()


def test_keep_folders_up_to_date_turns_watching_off_and_on_and_is_remembered(qtbot, tmp_path):
    folder = _indexed_folder(tmp_path)
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    action = w.actions_.keep_current
    try:
        _search_folder(qtbot, w, folder, 4)
        assert action.isChecked() and action.isCheckable()
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched, timeout=WAIT_MS)
        action.trigger()  # File › Keep folders up to date, unticked
        assert not action.isChecked() and w.watching.watched == []
        assert "no longer kept up to date" in _line(w)
        w.close()
    finally:
        w.shutdown()
    assert load_preferences().keep_current is False
    new = _copy_in(_scenes(tmp_path / "camera", range(50, 51), prefix="off"), folder)

    w2 = _launch_again(qtbot)
    d2 = WindowDriver(qtbot, w2)
    try:
        qtbot.waitUntil(lambda: w2.session is not None and w2.session.folder is not None and w2.settled
                        and len(d2.result_paths()) == 4, timeout=WAIT_MS)  # fmt: skip
        assert not w2.actions_.keep_current.isChecked() and w2.watching.watched == []
        w2.actions_.keep_current.trigger()  # ticked again: every folder is checked once
        qtbot.waitUntil(lambda: set(new) <= set(d2.result_paths()) and w2.settled, timeout=WAIT_MS)
        assert w2.prefs.keep_current
    finally:
        w2.shutdown()
    del d


def _done_rows(folder: Path) -> int:
    (directory, _side), = st.list_indexes(folder)
    con = sqlite3.connect(f"file:{directory / st.DB_FILE}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM files WHERE status = 'done'").fetchone()[0]
    finally:
        con.close()


def test_closing_the_window_during_a_background_run_ends_promptly_and_loses_nothing(qtbot, tmp_path):
    folder = _indexed_folder(tmp_path)
    staged = _scenes(tmp_path / "camera", range(100, 500), prefix="burst")
    w = first_launch(qtbot, n=8)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.running_folder,
                        timeout=WAIT_MS)
        _copy_in(staged, folder)
        qtbot.waitUntil(lambda: w.watching.running_folder == str(folder) and _done_rows(folder) > 4,
                        timeout=WAIT_MS, )
        w.close()  # the run is asked to stop after its current photo
        assert w.stopped_cleanly  # everything stopped within the window's wait (1.5 s)
        assert not w.isVisible()
    finally:
        w.shutdown()
    kept = _done_rows(folder)
    assert 4 < kept < 404  # stopped in the middle, what it committed is there
    w2 = _launch_again(qtbot)  # the next start finishes the work
    try:
        qtbot.waitUntil(lambda: w2.session is not None and w2.session.folder is not None
                        and w2.settled and _done_rows(folder) == 404 and not w2.watching.running_folder,
                        timeout=WAIT_MS)  # fmt: skip
    finally:
        w2.shutdown()


def test_a_background_run_lowers_its_own_threads_priority_only():
    import sys

    seen: list[int] = []

    def body() -> None:
        ok = lower_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if ok else -1)

    before = os.getpriority(os.PRIO_PROCESS, 0)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    if sys.platform.startswith("linux"):
        assert seen == [max(before, BACKGROUND_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the window's own thread is untouched


def _report(**counts: int) -> IndexReport:
    base = dict(seen=0, indexed=0, reused=0, skipped=0, failed=0, removed=0, done_total=0)
    base.update(counts)
    return IndexReport(folder=Path("/p/Pictures"), index_dir=Path("/x"), cancelled=False, seconds=0.1,
                       **base)  # type: ignore[arg-type]


def test_the_sentence_says_what_changed_and_nothing_when_nothing_did():
    at = 0.0
    assert change_sentence(WatchRun("/p/Pictures", _report(skipped=9, done_total=9), 9, True), at) == ""
    s = change_sentence(WatchRun("/p/Pictures", _report(indexed=3, removed=1, done_total=11), 9, True), at)
    assert s.startswith("3 photos added to Pictures, 1 removed (") and s.endswith(").")
    s = change_sentence(WatchRun("/p/Pictures", _report(indexed=2, done_total=9), 9, True), at)
    assert s.startswith("2 photos changed in Pictures (")
    s = change_sentence(WatchRun("/p/Pictures", _report(removed=1, done_total=8), 9, True), at)
    assert s.startswith("1 photo removed from Pictures (")
    s = change_sentence(WatchRun("/p/Pictures", _report(indexed=1, failed=2, done_total=10), None, True), at)
    assert s.startswith("1 photo new or changed in Pictures, 2 could not be read (")
    assert change_sentence(WatchRun("/p/Pictures", None, 9, True), at) == ""


def test_removing_a_folder_during_its_background_run_deletes_its_index_for_good(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt

    folder = _indexed_folder(tmp_path)
    staged = _scenes(tmp_path / "camera", range(600, 900), prefix="burst")
    w = first_launch(qtbot, n=8)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.busy, timeout=WAIT_MS)
        _copy_in(staged, folder)
        qtbot.waitUntil(lambda: w.watching.running_folder == str(folder) and _done_rows(folder) > 4,
                        timeout=WAIT_MS)
        monkeypatch.setattr("phs_gui.dialogs.confirm_remove_folder", lambda parent, f: True)
        qtbot.mouseClick(w.docks.library.remove_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "deleted" in w.banner.text, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: not w.watching.busy and str(folder) not in w.watching.watched, timeout=WAIT_MS)
        assert not st.list_indexes(folder) and str(folder) not in w.docks.library.folders  # not made again
        assert len(list(folder.glob("*.jpg"))) == 304  # the photos are untouched
    finally:
        w.shutdown()


def test_a_full_disk_during_a_background_run_is_one_sentence_and_watching_goes_on(qtbot, tmp_path, monkeypatch):
    import errno

    import core.library.store as store

    folder = _indexed_folder(tmp_path)
    w = first_launch(qtbot, n=8)
    d = WindowDriver(qtbot, w)
    try:
        _search_folder(qtbot, w, folder, 4)
        qtbot.waitUntil(lambda: str(folder) in w.watching.watched and not w.watching.busy, timeout=WAIT_MS)

        def no_space(*_a, **_k):
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(store.QDCache, "write", no_space)
            first = _copy_in(_scenes(tmp_path / "camera", range(60, 62), prefix="full"), folder)
            qtbot.waitUntil(lambda: "could not be brought up to date" in w.banner.text, timeout=WAIT_MS)
            qtbot.waitUntil(lambda: not w.watching.busy, timeout=WAIT_MS)
        said = w.banner.text
        assert said.startswith("Pictures could not be brought up to date: the disk holding the index")
        assert "is full" in said and said.count(". ") == 0 and w.banner.level == "error"
        assert len(d.result_paths()) == 4 and w.docks.library.failures.count() == 0  # nothing marked failed
        # Space freed: the next change brings both in.
        second = _copy_in(_scenes(tmp_path / "camera", range(62, 63), prefix="freed"), folder)
        qtbot.waitUntil(lambda: set(first + second) <= set(d.result_paths()) and w.settled, timeout=WAIT_MS)
    finally:
        w.shutdown()
