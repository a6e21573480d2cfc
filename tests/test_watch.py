"""Keeping an index current while its folder changes: the watcher's events, debouncing, settling, a vanished
folder, and ``phs index --watch`` end to end (real watchdog observers, the counting fake engine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.errors import PHSError
from core.library import index_folder
from core.library.photo_index import PhotoIndex
from core.library.watch import FolderWatcher, keep_current
from tests.index_fakes import FakeEngine, colour_image, make_folder, tree_hash

ROOT = Path(__file__).resolve().parents[1]


def _indexed(folder: Path, engine: FakeEngine) -> set[str]:
    try:
        index = PhotoIndex.open(folder, engine, writable=False)
    except PHSError:  # not indexed yet
        return set()
    try:
        return {r.rel for r in index.db.records() if r.status == "done"}
    finally:
        index.close()


def _wait_for(cond, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture(params=["events", "polling"])
def watcher(request, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    w = FolderWatcher(folder, quiet_s=0.3, max_wait_s=5.0, rescan_s=0, polling=request.param == "polling")
    with w:
        assert w.backend == request.param
        yield w


def _due_after(w: FolderWatcher, change) -> str | None:
    change()
    return w.wait(threading.Event(), timeout=8.0)


def test_add_change_move_delete_are_each_a_change(watcher):
    folder = watcher.folder
    img = folder / "a.jpg"
    assert _due_after(watcher, lambda: colour_image(1).save(img)) == "changed"
    assert _due_after(watcher, lambda: colour_image(2).save(img)) == "changed"
    sub = folder / "album"
    sub.mkdir()
    assert watcher.wait(threading.Event(), timeout=3.0) == "changed"  # a new album
    assert _due_after(watcher, lambda: img.rename(sub / "b.jpg")) == "changed"
    assert _due_after(watcher, lambda: (sub / "b.jpg").unlink()) == "changed"


def test_reading_photos_and_other_files_is_not_a_change(watcher):
    folder = watcher.folder
    colour_image(1).save(folder / "a.jpg")
    assert watcher.wait(threading.Event(), timeout=8.0) == "changed"
    # What the indexer does (open, read, close) and files that are not photos must not start a run.
    (folder / "a.jpg").read_bytes()
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_bytes(b"x")
    assert watcher.wait(threading.Event(), timeout=1.5) is None


def test_a_burst_is_one_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    src = tmp_path / "one.jpg"
    colour_image(3).save(src)
    with FolderWatcher(folder, quiet_s=0.5, max_wait_s=30.0, rescan_s=0) as w:
        for i in range(1000):
            shutil.copyfile(src, folder / f"p{i:04d}.jpg")
        assert w.wait(threading.Event(), timeout=15.0) == "changed"
        assert w.events >= 1000  # every copy was seen...
        assert w.wait(threading.Event(), timeout=1.5) is None  # ...and they made one run


def test_changes_that_never_stop_still_run_after_max_wait(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with FolderWatcher(folder, quiet_s=1.0, max_wait_s=1.5, rescan_s=0) as w:
        stop = threading.Event()

        def keep_writing() -> None:
            i = 0
            while not stop.is_set():
                (folder / f"slow{i % 3}.jpg").write_bytes(os.urandom(64))
                i += 1
                time.sleep(0.1)

        t = threading.Thread(target=keep_writing)
        t.start()
        try:
            t0 = time.monotonic()
            assert w.wait(threading.Event(), timeout=8.0) == "changed"
            assert time.monotonic() - t0 < 4.0
        finally:
            stop.set()
            t.join()



def test_the_kernels_watch_limit_falls_back_to_polling(tmp_path, monkeypatch):
    """inotify refuses a watch (its per-user limit) when the observer starts: the folder is polled instead,
    and changes are still seen."""
    import errno

    import watchdog.observers

    real = watchdog.observers.Observer

    class Refused(real):  # type: ignore[misc, valid-type]
        def start(self) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", Refused)
    monkeypatch.setattr("core.library.watch.POLL_S", 0.2)
    folder = tmp_path / "photos"
    folder.mkdir()
    with FolderWatcher(folder, quiet_s=0.3, max_wait_s=5.0, rescan_s=0) as w:
        assert w.backend == "polling"
        assert _due_after(w, lambda: colour_image(3).save(folder / "new.jpg")) == "changed"

def test_periodic_rescan_without_events(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with FolderWatcher(folder, quiet_s=0.2, rescan_s=0.5) as w:
        assert w.wait(threading.Event(), timeout=3.0) == "rescan"


def test_a_photo_still_being_written_waits_until_it_settles(tmp_path):
    folder = tmp_path / "photos"
    first = make_folder(folder, 3, sub=False)[0]
    old = time.time() - 60
    for p in folder.iterdir():
        os.utime(p, (old, old))
    engine = FakeEngine()
    index_folder(folder, engine, settle_s=30.0)
    assert len(_indexed(folder, engine)) == 3
    data = first.read_bytes()
    new = folder / "late.jpg"
    colour_image(7).save(new)
    partial = new.read_bytes()
    new.write_bytes(partial[: len(partial) // 2])  # half-written, just now
    report = index_folder(folder, engine, settle_s=30.0)
    assert report.settling == 1 and report.failed == 0 and report.removed == 0
    assert "late.jpg" not in _indexed(folder, engine)
    # A photo already indexed and being rewritten keeps its row while it settles.
    first.write_bytes(data[:10])
    report = index_folder(folder, engine, settle_s=30.0)
    assert report.settling == 2 and report.removed == 0
    assert first.name in _indexed(folder, engine)
    first.write_bytes(data)
    new.write_bytes(partial)
    for p in folder.iterdir():
        os.utime(p, (old, old))
    report = index_folder(folder, engine, settle_s=30.0)
    assert report.settling == 0 and report.failed == 0
    assert "late.jpg" in _indexed(folder, engine)


def test_keep_current_follows_the_folder_and_survives_it_vanishing(tmp_path):
    folder = tmp_path / "photos"
    make_folder(folder, 4, sub=False)
    engine = FakeEngine()
    stop = threading.Event()
    said: list[str] = []
    runs: list[object] = []

    def run_once():
        report = index_folder(folder, engine, cancel=stop, settle_s=0.3)
        runs.append(report)
        return report

    t = threading.Thread(
        target=keep_current, args=(folder, run_once, stop),
        kwargs={"say": said.append, "settle_s": 0.3, "rescan_s": 0}, daemon=True,
    )  # fmt: skip
    t.start()
    try:
        assert _wait_for(lambda: len(_indexed(folder, engine)) == 4)  # once the new photos settled
        for i in range(5):
            colour_image(100 + i).save(folder / f"new{i}.jpg")
        assert _wait_for(lambda: len(_indexed(folder, engine)) == 9)
        sorted(folder.glob("new*.jpg"))[0].unlink()
        assert _wait_for(lambda: len(_indexed(folder, engine)) == 8)

        # The folder goes away (an unplugged drive): one sentence, the index kept, nothing failed.
        moved = tmp_path / "elsewhere"
        folder.rename(moved)
        assert _wait_for(lambda: any("not there" in s for s in said))
        assert len([s for s in said if "not there" in s]) == 1
        assert len(_indexed(folder, engine)) == 8
        assert all(r.failed == 0 for r in runs)
        # It comes back with one more photo: watching resumes.
        moved.rename(folder)
        colour_image(200).save(folder / "after.jpg")
        assert _wait_for(lambda: "after.jpg" in _indexed(folder, engine))
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive()


def _phs(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.slow
def test_phs_index_watch_end_to_end(tmp_path):
    """`phs index F --watch` with the demo model: copies are found by `phs search`, deletions leave its
    results, SIGTERM ends it with exit 0 and no traceback, and the photo folder is never written to."""
    folder = tmp_path / "F"
    make_folder(folder, 6, sub=False)
    extra = tmp_path / "extra"
    make_folder(extra, 5, sub=False, start=50)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = _phs("index", str(folder), "--model", "demo", "--watch", "--quiet", "--settle", "0.5", env=env)
    try:
        assert _wait_for(lambda: _search_paths(folder, env) is not None, timeout=60)
        before_copy = tree_hash(extra)
        for p in sorted(extra.iterdir()):
            shutil.copy2(p, folder / p.name)
        for p in sorted(folder.glob("img00[01].*")):
            p.unlink()
        want = {p.name for p in folder.iterdir()}
        assert _wait_for(lambda: {Path(x).name for x in _search_paths(folder, env) or []} == want, timeout=30)
        snapshot = tree_hash(folder)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Stopped watching" in out
    assert tree_hash(folder) == snapshot and tree_hash(extra) == before_copy


def _search_paths(folder: Path, env: dict) -> list[str] | None:
    import json

    query = next(iter(sorted(folder.glob("*.jpg"))), None)
    if query is None:
        return None
    res = subprocess.run([sys.executable, "-m", "core.cli", "search", "--folder", str(folder), "--image",
                          str(query), "--model", "demo", "--json", "--k", "100"],
                         env=env, cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        return None
    return [h["path"] for h in json.loads(res.stdout)]
