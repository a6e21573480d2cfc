"""Faults that must cost nothing indexed: a passing read error, one huge file, a lost or odd sidecar, odd index
files, scrambled Query-DB rows, a stale read-only open, a stuck worker, hostile names and outputs.

Each test reproduces one fault as a user meets it and asserts what stays searchable and what is said.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import core.library.decode as decode_mod
from core.cli import main as cli_main
from core.errors import ImageLoadError, PHSError
from core.imageio import decode_image_bytes, load_image, read_photo_bytes
from core.library import IndexDamagedError, PhotoIndex, index_folder, repair
from core.library import store as st
from core.search.searcher import Searcher
from tests.fs_faults import STUCK_CHILD
from tests.index_fakes import FakeEngine, check_consistency, colour_image, make_folder, touch
from tests.search_helpers import search

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    make_folder(folder, 12)
    return folder


def _touch_all(folder: Path) -> None:
    touch(folder.rglob("*.*"))


def _searchable(folder: Path, engine: FakeEngine) -> set[str]:
    with Searcher(folder, engine) as s:
        return {h.rel for h in search(s, np.ones(engine.feature_dim, np.float32), 1000)}


def _failing_reads(monkeypatch, names: set[str], err: int) -> None:
    original = decode_mod.read_regular_bytes

    def read(path, **kw):
        if Path(path).name in names:
            raise OSError(err, os.strerror(err), str(path))
        return original(path, **kw)

    monkeypatch.setattr(decode_mod, "read_regular_bytes", read)


# ------------------------------------------------------------------------------------ passing read errors
@pytest.mark.parametrize("err", [errno.EACCES, errno.EIO, errno.ESTALE, errno.ENOENT])
def test_a_failed_re_read_keeps_the_photo_searchable_and_every_plain_run_retries_it(photos, monkeypatch, err):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    _touch_all(photos)
    names = {"img000.jpg", "img002.png", "img005.png"}
    with monkeypatch.context() as m:
        _failing_reads(m, names, err)
        report = index_folder(photos, engine, batch_size=4)
    assert {Path(f.rel).name for f in report.failures} == names
    assert all(f.kept and f.retry for f in report.failures) and report.waiting == 3
    assert len(_searchable(photos, engine)) == 12  # nothing left search
    report = index_folder(photos, engine, batch_size=4)  # the error has passed: a plain run, no option
    assert report.failures == () and report.waiting == 0 and report.reused + report.indexed == 3
    with PhotoIndex.open(photos, engine) as idx:
        assert not any(r.retry or r.error for r in idx.db.records())
    check_consistency(photos, engine)


def test_a_new_photo_that_cannot_be_read_is_retried_by_every_plain_run(photos, monkeypatch):
    engine = FakeEngine()
    with monkeypatch.context() as m:
        _failing_reads(m, {"img004.jpg"}, errno.EACCES)
        report = index_folder(photos, engine, batch_size=4)
        assert [f.rel for f in report.failures] == ["img004.jpg"] and not report.failures[0].kept
        report = index_folder(photos, engine, batch_size=4)  # unchanged, still retried
        assert [f.rel for f in report.failures] == ["img004.jpg"]
    report = index_folder(photos, engine, batch_size=4)
    assert report.indexed == 1 and report.failures == () and len(_searchable(photos, engine)) == 12


def test_a_photo_that_is_no_longer_an_image_leaves_search_and_is_not_retried(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    (photos / "img000.jpg").write_bytes(b"not a photo any more")
    report = index_folder(photos, engine, batch_size=4)
    assert [f.rel for f in report.failures] == ["img000.jpg"] and not report.failures[0].retry
    assert "img000.jpg" not in _searchable(photos, engine)
    assert index_folder(photos, engine, batch_size=4).skipped == 12  # unchanged failure: not retried


@pytest.mark.skipif(not IS_ROOT, reason="drops CAP_DAC_OVERRIDE with setpriv, which needs root")
def test_cli_photos_unreadable_to_the_user_stay_indexed_and_come_back(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PHS_DATA_DIR": str(tmp_path / "data")}
    phs = [sys.executable, "-m", "core.cli"]
    user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    index = ["index", str(photos), "--model", "demo", "--quiet"]

    def status() -> str:
        out = subprocess.run([*phs, "index", "--status", str(photos)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert subprocess.run([*phs, *index], env=env, capture_output=True).returncode == 0
    _touch_all(photos)
    locked = sorted(photos.rglob("*.png"))[:3]
    for p in locked:
        p.chmod(0)
    run = subprocess.run([*user, *phs, *index], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "permission denied (its indexed version stays searchable)" in run.stdout
    assert "3 photos could not be read this time" in run.stdout
    assert "12 photos indexed, 0 failed, 3 waiting to be retried" in status()
    for p in locked:
        p.chmod(0o644)
    run = subprocess.run([*user, *phs, *index], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "12 photos indexed, 0 failed, 0 waiting to be retried" in status()


# ------------------------------------------------------------------------------------------ huge files
def test_a_huge_sparse_file_is_a_failed_file_with_its_size_and_the_rest_is_indexed(photos):
    huge = photos / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.truncate(64 << 30)  # 64 GiB, sparse: nothing is written
    report = index_folder(photos, FakeEngine(), batch_size=4)
    assert [f.rel for f in report.failures] == ["huge.jpg"] and report.done_total == 12
    assert "68.7 GB, larger than the 512 MB limit" in report.failures[0].reason
    with pytest.raises(ImageLoadError, match="larger than the 512 MB limit"):
        read_photo_bytes(huge)  # `phs search --image` alike
    with pytest.raises(ImageLoadError, match="larger than"):
        load_image(huge)


def test_the_size_limit_is_a_setting(photos):
    report = index_folder(photos, FakeEngine(), batch_size=4, max_file_bytes=1500)
    big = {p.name for p in photos.rglob("*.*") if p.stat().st_size > 1500}
    assert big and {Path(f.rel).name for f in report.failures} == big
    assert all("limit for a photo file" in f.reason for f in report.failures)


# ------------------------------------------------------------------------------------- sidecar and files
def _db_identity(directory: Path) -> tuple[int, int]:
    s = (directory / st.DB_FILE).stat()
    return s.st_ino, s.st_dev


@pytest.mark.parametrize("kind", ["deleted", "garbage", "foreign", "list", "folder", "fifo"])
def test_a_lost_damaged_or_odd_sidecar_is_rebuilt_from_the_database(photos, kind, capsys):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    side = report.index_dir / st.SIDECAR
    ident = _db_identity(report.index_dir)
    side.unlink()
    if kind == "garbage":
        side.write_bytes(os.urandom(300))
    elif kind in ("foreign", "list"):
        side.write_text(json.dumps({"format": "something else"} if kind == "foreign" else [1, 2]))
    elif kind == "folder":
        side.mkdir()
    elif kind == "fifo":
        os.mkfifo(side)
    with pytest.raises(IndexDamagedError, match="phs index"):  # readers: a sentence, never a hang
        Searcher(photos, engine)
    assert cli_main(["index", "--status", str(photos)]) == 0  # the index is still listed
    assert "12 photos indexed" in capsys.readouterr().out
    before = engine.encoded
    report = index_folder(photos, engine, batch_size=4)
    assert engine.encoded == before and report.skipped == 12  # nothing re-encoded
    assert _db_identity(report.index_dir) == ident  # the same database
    assert any("rebuilt from the index database" in n for n in report.notes)
    assert len(_searchable(photos, engine)) == 12
    check_consistency(photos, engine)


def test_a_lost_sidecar_of_a_database_that_does_not_say_which_model_moves_the_database_aside(photos):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    conn = sqlite3.connect(report.index_dir / st.DB_FILE)
    conn.execute("DELETE FROM meta WHERE key = 'sidecar'")  # as a database from before it was recorded
    conn.commit()
    conn.close()
    (report.index_dir / st.SIDECAR).unlink()
    report = index_folder(photos, engine, batch_size=4)
    assert report.indexed == 12 and any("moved aside to files.sqlite.damaged-" in n for n in report.notes)
    copies = repair.damaged_copies(report.index_dir)
    assert any(p.name.startswith("files.sqlite.damaged-") for p in copies)  # kept, never deleted


@pytest.mark.parametrize("name", [st.DB_FILE, st.QD_FILE, st.FAISS_FILE])
@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_fifo_in_place_of_an_index_file_is_a_sentence_and_moved_aside(photos, name, kind, capsys):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    path = report.index_dir / name
    path.unlink()
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    with pytest.raises(PHSError, match="phs index"), Searcher(photos, engine) as s:
        search(s, np.ones(engine.feature_dim, np.float32), 3, mode="qd", head_mask=np.ones(2, np.float32))
    if name == st.DB_FILE:  # nothing to count: a sentence
        assert cli_main(["index", "--status", str(photos)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "phs index" in err and "Traceback" not in err
    else:
        assert cli_main(["index", "--status", str(photos)]) == 0
        assert f"note: {name} in the index" in capsys.readouterr().out
    report = index_folder(photos, engine, batch_size=4)
    assert any(f"{name} in" in n and "moved aside" in n for n in report.notes)
    assert len(_searchable(photos, engine)) == 12
    check_consistency(photos, engine)


def test_damaged_copies_are_listed_by_status_and_removed_on_request(photos, capsys):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    (report.index_dir / st.DB_FILE).write_bytes(os.urandom(8192))
    index_folder(photos, engine, batch_size=4)
    assert cli_main(["index", "--status", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "damaged copy  files.sqlite.damaged-" in out and "--clean-damaged" in out
    assert cli_main(["index", "--status", str(photos), "--clean-damaged"]) == 0
    assert "removed 1 damaged copy" in capsys.readouterr().out
    assert repair.damaged_copies(report.index_dir) == []


# ----------------------------------------------------------------------------------- Query-DB cache rows
def test_finite_scrambled_qd_rows_are_left_out_of_the_rerank_said_and_re_encoded(photos):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    with PhotoIndex.open(photos, engine) as idx:
        rows = {r.rel: r for r in idx.db.records()}
        row_bytes = idx.qd.row_bytes
    victims = ["img000.jpg", "album1/img001.png", "img002.png"]
    rng = np.random.default_rng(5)
    with open(report.index_dir / st.QD_FILE, "r+b") as fh:
        for rel in victims:
            fh.seek(rows[rel].slot * row_bytes)
            fh.write(rng.normal(size=row_bytes // 2).astype(np.float16).tobytes())  # finite, plausible
    mask = np.array([1.0, 0.0], np.float32)
    with Searcher(photos, engine) as s:
        hits = search(s, np.ones(engine.feature_dim, np.float32), 12, mode="qd", head_mask=mask, candidates=None)
        assert s.qd_mismatched == 3 and "3 photos left out of the Query-DB re-rank" in s.warnings[0]
    assert {h.rel for h in hits}.isdisjoint(victims) and len(hits) == 9
    before = engine.encoded
    report = index_folder(photos, engine, batch_size=4)
    assert engine.encoded - before == 3 and any("Query-DB cache rows" in n for n in report.notes)
    with Searcher(photos, engine) as s:
        for rel in victims:
            q = engine.feature_of(Image.open(photos / rel), mask)
            top = search(s, q, 1, mode="qd", head_mask=mask)[0]
            assert top.rel == rel and top.score > 0.999 and s.qd_mismatched == 0


def test_rows_from_before_checksums_get_theirs_once(photos):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    conn = sqlite3.connect(report.index_dir / st.DB_FILE)
    conn.execute("UPDATE files SET qd_check = NULL")
    conn.commit()
    conn.close()
    before = engine.encoded
    index_folder(photos, engine, batch_size=4)
    assert engine.encoded == before
    with PhotoIndex.open(photos, engine) as idx:
        assert all(r.qd_check is not None for r in idx.db.records())


def test_a_schema_1_database_is_read_and_upgraded(photos):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    db = report.index_dir / st.DB_FILE
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE f2 AS SELECT id, path, size, mtime_ns, hash, status, error, feature, slot, gen, first_seen, "
        "updated_at FROM files; DROP TABLE files; ALTER TABLE f2 RENAME TO files; PRAGMA user_version = 1;"
    )
    conn.close()
    assert len(_searchable(photos, engine)) == 12  # a searcher reads the old schema
    before = engine.encoded
    index_folder(photos, engine, batch_size=4)
    assert engine.encoded == before
    with PhotoIndex.open(photos, engine) as idx:
        assert idx.db.version == st.SCHEMA_VERSION and all(r.qd_check for r in idx.db.records())


# ------------------------------------------------------------------------------------------- stale reads
def test_a_read_only_open_that_cannot_see_the_wal_says_so(photos, capsys):
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    db = report.index_dir / st.DB_FILE
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("INSERT INTO meta(key, value) VALUES ('probe', 'x')")  # a commit waiting in the WAL
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Searcher(photos, engine) as s:
            assert s.index.stale_warning and "may miss the most recently indexed photos" in s.index.stale_warning
            assert s.warnings[0] == s.index.stale_warning
        assert cli_main(["index", "--status", str(photos)]) == 0
        assert "note: The index database" in capsys.readouterr().out
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ------------------------------------------------------------------------------------------- never hang
class _StuckEngine(FakeEngine):
    """Its preprocessing never returns for one photo, as a read from a dead network share would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def preprocess(self, img):
        if img.size == (64, 48) and np.asarray(img)[0, 0, 0] == np.asarray(colour_image(3))[0, 0, 0]:
            self.release.wait()
        return super().preprocess(img)


def test_cancel_ends_a_run_within_a_second_whatever_a_worker_is_stuck_on(photos):
    engine = _StuckEngine()
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    t0 = time.monotonic()
    report = index_folder(photos, engine, batch_size=2, workers=2, cancel=cancel)
    assert report.cancelled and time.monotonic() - t0 < 3.0
    engine.release.set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_a_run_within_two_seconds_whatever_a_worker_is_stuck_on(photos, sig):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", STUCK_CHILD, str(photos)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().startswith("stuck")  # two threads may print at once
    t0 = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 2.0 and proc.returncode in (130, -signal.SIGTERM)


def test_a_photo_replaced_by_a_fifo_after_the_scan_is_a_failed_file_not_a_hang(photos, monkeypatch):
    target = photos / "img004.jpg"
    engine = FakeEngine()

    def progress(p) -> None:
        if p.done == 0 and target.is_file():  # after the scan, before any photo is read
            target.unlink()
            os.mkfifo(target)

    report = index_folder(photos, engine, batch_size=4, workers=1, progress=progress)
    assert [f.rel for f in report.failures] == ["img004.jpg"]
    assert "not a regular file" in report.failures[0].reason and report.done_total == 11


# --------------------------------------------------------------------------------------- CLI sentences
def _cli(argv: list[str], tmp_path: Path, *, stdout=subprocess.PIPE, data: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PHS_DATA_DIR": data or str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "core.cli", *argv], cwd=REPO, env=env, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip


def test_output_to_a_full_device_is_one_sentence(photos, tmp_path):
    assert _cli(["index", str(photos), "--model", "demo", "--quiet"], tmp_path).returncode == 0
    query = photos / "img000.jpg"
    for argv in (["index", "--status", str(photos)], ["search", "--folder", str(photos), "--image", str(query)]):
        with open("/dev/full", "w") as full:
            proc = _cli(argv, tmp_path, stdout=full)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "could not write the output" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", [["--fa-sigma", "1e308"], ["--fa-alpha", "1e308"], ["--fa-sigma", "0"]])
def test_fa_parameters_out_of_range_are_one_sentence(photos, tmp_path, option):
    query = photos / "img000.jpg"
    proc = _cli(["search", "--folder", str(photos), "--image", str(query), "--box", "1,1,20,20", "--fa", *option],
                tmp_path)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--fa-sigma" in proc.stderr, proc.stderr


def test_a_data_folder_under_proc_is_one_sentence(photos, tmp_path):
    for argv in (["index", "--status", str(photos)], ["index", str(photos), "--model", "demo"]):
        proc = _cli(argv, tmp_path, data="/proc/self")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "disappeared" not in proc.stderr


def test_the_data_folder_removed_during_a_run_is_one_sentence(photos, tmp_path):
    import shutil

    from core.paths import data_dir

    def progress(p) -> None:
        if p.done == 3:
            shutil.rmtree(data_dir())

    with pytest.raises(PHSError, match="disappeared during the run"):
        index_folder(photos, FakeEngine(), batch_size=2, workers=1, progress=progress)


def test_names_with_control_characters_are_printed_escaped(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    colour_image(1).save(folder / "bell\x07esc\x1b[31mred\nline.png")
    (folder / "bad\x1b]0;title\x07.jpg").write_bytes(b"not a photo")
    index_folder(folder, FakeEngine())
    assert cli_main(["index", "--status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "bad\\x1b]0;title\\x07.jpg" in out


def test_status_without_a_path_lists_every_index(tmp_path, capsys):
    for name, n in (("a", 1), ("b", 3)):
        make_folder(tmp_path / name, n, sub=False)
        index_folder(tmp_path / name, FakeEngine())
    assert cli_main(["index", "--status"]) == 0
    out = capsys.readouterr().out
    assert "2 indexes:" in out and "1 photo indexed, 0 failed" in out and "3 photos indexed, 0 failed" in out
    assert str(tmp_path / "a") in out and "MB in" in out


# ------------------------------------------------------------------------------------- 64-bit float TIFF
def _float64_tiff(arr: np.ndarray, compression: int = 1) -> bytes:
    """A minimal little-endian TIFF with one strip of 64-bit float gray samples."""
    h, w = arr.shape
    data = arr.astype("<f8").tobytes()
    tags = [(256, w), (257, h), (258, 64), (259, compression), (262, 1), (273, 0), (277, 1), (278, h),
            (279, len(data)), (339, 3)]  # fmt: skip
    start = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, value in tags:
        value = start if tag == 273 else value
        out += struct.pack("<HHII", tag, 4, 1, value)
    return bytes(out + struct.pack("<I", 0) + data)


def test_a_64_bit_float_tiff_opens_as_8_bit_or_says_what_cannot_be_read(tmp_path):
    ramp = np.linspace(0.0, 1.0, 48 * 64).reshape(48, 64)
    img = decode_image_bytes(_float64_tiff(ramp), name="scan.tif")
    arr = np.asarray(img)
    assert img.mode == "RGB" and img.size == (64, 48) and arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255
    path = tmp_path / "hdr.tif"
    path.write_bytes(_float64_tiff(ramp * 5000.0 - 20.0))  # outside [0, 1]: the range is stretched
    arr = np.asarray(load_image(path))
    assert arr.min() == 0 and arr.max() == 255
    with pytest.raises(ImageLoadError, match="64-bit floating-point samples that is compressed"):
        decode_image_bytes(_float64_tiff(ramp, compression=5), name="packed.tif")


def test_a_sub_album_deleted_during_the_scan_is_swept(photos, tmp_path, monkeypatch):
    import core.library.indexer as indexer_mod

    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    in_album = {p.relative_to(photos).as_posix() for p in (photos / "album1").glob("*.*")}
    original = indexer_mod.scan_folder

    def scan(root, **kw):
        for i, f in enumerate(original(root, **kw)):
            if i == 0:
                os.rename(photos / "album1", tmp_path / "album1-away")  # before the walk reaches it
            yield f

    monkeypatch.setattr(indexer_mod, "scan_folder", scan)
    report = index_folder(photos, engine, batch_size=4)
    assert report.removed == len(in_album) and report.scan_errors == ()
    assert _searchable(photos, engine).isdisjoint(in_album)
