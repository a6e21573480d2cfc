"""The file system misbehaving (issue 12): a vanished folder, a full or read-only disk, a locked or damaged
index, odd data folders and options. Every case is one sentence, never a traceback; no indexed photo stops
being searchable; a later plain run finishes the work. The trials live in :mod:`tests.fs_faults` so that
``bench/reliability_report.py`` measures the same thing.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import core.library.database as database
import core.library.indexer as indexer_mod
import core.library.store as store
from core.cli import main as cli_main
from core.errors import PHSError
from core.library import (
    IndexBusyError,
    IndexDamagedError,
    IndexDiskFullError,
    IndexReadOnlyError,
    PhotoIndex,
    index_folder,
)
from core.library.store import QDCache
from tests import fs_faults
from tests.index_fakes import FakeEngine, check_consistency, make_folder, touch, tree_hash

REPO = Path(__file__).resolve().parent.parent


def _clean(o: fs_faults.Outcome, *words: str) -> None:
    assert not o.crashed and not o.detail and o.recovered and o.lost == 0, o
    assert fs_faults.one_sentence(o.sentence), o.sentence
    assert all(w in o.sentence for w in words), o.sentence


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    make_folder(folder, 12)
    return folder


# ------------------------------------------------------------------------------------------ 1. vanished
def test_folder_vanishing_mid_run_stops_with_one_sentence_and_marks_nothing_failed(tmp_path):
    o = fs_faults.vanish_trial(tmp_path, n=40, at=15)
    _clean(o, "disappeared", "40 indexed photos are kept", "phs index")


def test_a_sub_folder_vanishing_mid_run_is_a_deleted_sub_folder_not_a_vanished_library(tmp_path, photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    n_album1 = len(list((photos / "album1").glob("*.*")))
    touch(photos.rglob("*.*"))
    moved = tmp_path / "album1-away"

    def progress(p) -> None:
        if p.done == 1 and not moved.exists():
            os.rename(photos / "album1", moved)

    report = indexer_mod.Indexer(photos, engine, batch_size=4, workers=1, lookahead=1).run(progress=progress)
    assert not report.failures and report.removed == n_album1  # also what was read before the move
    with PhotoIndex.open(photos, engine) as idx:
        assert idx.db.counts() == {"done": 12 - n_album1}
    check_consistency(photos, engine)


# ----------------------------------------------------------------------------------------- 2. full disk
def test_disk_full_mid_run_on_a_real_small_disk_is_one_sentence_not_sigbus(tmp_path):
    if not fs_faults.can_mount():
        pytest.skip("mounting a tmpfs needs root (CI runs as root); the injected case runs everywhere")
    _clean(fs_faults.disk_full_trial(tmp_path, n=40, at=10, real=True), "disk holding the index", "is full")


def test_disk_full_mid_run_injected_enospc_is_one_sentence(tmp_path):
    _clean(fs_faults.disk_full_trial(tmp_path, n=40, at=10, real=False), "is full", "phs index")


def test_qd_cache_write_on_a_full_disk_raises_enospc_instead_of_killing_the_process(tmp_path):
    """Growing the cache reserves real blocks, and rows go through write(): ENOSPC, never SIGBUS."""
    if not fs_faults.can_mount():
        pytest.skip("needs a real full disk (root)")
    code = f"""
import errno, sys
from pathlib import Path
from core.library.store import QDCache
from tests.fs_faults import fill, small_disk
import numpy as np
with small_disk(Path({str(tmp_path / 'disk')!r}), "1m") as d:
    qd = QDCache(d / "qd.f16", 64, 4, 16, writable=True)
    qd.write(np.array([0]), np.ones((1, 128), np.float16))
    fill(d)
    try:
        qd.write(np.arange(5000, 6000), np.ones((1000, 128), np.float16))
        qd.flush()
    except OSError as err:
        print("ENOSPC" if err.errno == errno.ENOSPC else err)
    qd.close()
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ENOSPC", (proc.returncode, proc.stderr[-2000:])


def test_disk_full_when_creating_the_index_or_saving_faiss_is_one_sentence(photos, monkeypatch):
    engine = FakeEngine()

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(store, "atomic_write_json", no_space)  # the first sidecar of a new index
        with pytest.raises(IndexDiskFullError, match="is full"):
            index_folder(photos, engine, batch_size=4)
    index_folder(photos, engine, batch_size=4)
    make_folder(photos, 4, start=100)

    def faiss_full(index, path):
        raise RuntimeError(f"Error in faiss::FileIOWriter: could not open {path} for writing: No space left on device")

    with monkeypatch.context() as m:
        m.setattr("faiss.write_index", faiss_full)
        with pytest.raises(IndexDiskFullError) as info:
            index_folder(photos, engine, batch_size=4)
    assert fs_faults.one_sentence(str(info.value))
    assert len(fs_faults.searchable(photos, engine)) == 16  # committed before the save failed: searchable
    check_consistency(photos, engine)


def test_sqlite_reporting_a_full_disk_or_io_error_is_one_sentence(tmp_path):
    d = tmp_path
    for raw, cls in [(sqlite3.OperationalError("database or disk is full"), IndexDiskFullError),
                     (sqlite3.OperationalError("disk I/O error"), store.IndexStorageError),
                     (OSError(errno.EROFS, "Read-only file system"), IndexReadOnlyError),
                     (sqlite3.OperationalError("database is locked"), IndexBusyError)]:  # fmt: skip
        err = store.storage_error(raw, d, d)
        assert isinstance(err, cls) and fs_faults.one_sentence(str(err)), (raw, err)
    assert store.storage_error(ValueError("x"), d) is None


# ------------------------------------------------------------------------------------ 3. damaged SQLite
@pytest.mark.parametrize("kind", fs_faults.DAMAGE_KINDS)
def test_damaged_database_is_one_sentence_for_readers_and_rebuilt_by_the_indexer(tmp_path, kind):
    _clean(fs_faults.damaged_db_trial(tmp_path, kind), "damaged" if kind != "a_folder" else "folder", "phs index")


def test_cli_status_and_index_on_a_damaged_database(tmp_path, photos, capsys):
    index_folder(photos, FakeEngine(), batch_size=4)
    with PhotoIndex.open(photos, FakeEngine()) as idx:
        db = idx.directory / store.DB_FILE
    fs_faults.damage_database(db, "not_a_database")
    assert cli_main(["index", "--status", str(photos)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phs: ") and fs_faults.one_sentence(err) and f"phs index {photos}" in err, err


# ------------------------------------------------------------------------------- 4. read-only, locked
def test_data_dir_on_a_read_only_mount_searches_and_refuses_indexing_in_one_sentence(tmp_path, monkeypatch):
    if not fs_faults.can_mount():
        pytest.skip("remounting read-only needs root; tests/test_reliability.py covers a read-only folder")
    folder = tmp_path / "photos"
    make_folder(folder, 8)
    engine = FakeEngine()
    with fs_faults.small_disk(tmp_path / "disk", "4m") as disk:
        monkeypatch.setenv("PHS_DATA_DIR", str(disk / "data"))
        index_folder(folder, engine, batch_size=4)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(IndexReadOnlyError) as info:
            index_folder(folder, engine, batch_size=4)
        assert "read-only" in str(info.value) and fs_faults.one_sentence(str(info.value))
        assert len(fs_faults.searchable(folder, engine)) == 8
        monkeypatch.setenv("PHS_DATA_DIR", str(disk / "elsewhere"))  # cannot even be created
        with pytest.raises(PHSError, match="cannot be created"):
            index_folder(folder, engine, batch_size=4)


def test_database_locked_by_another_program_is_one_sentence_and_search_works(photos, monkeypatch):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    monkeypatch.setattr(database, "BUSY_TIMEOUT_S", 0.3)
    with PhotoIndex.open(photos, engine) as idx:
        db = idx.directory / store.DB_FILE
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(IndexBusyError) as info:
            index_folder(photos, engine, batch_size=4)
        assert "locked" in str(info.value) and fs_faults.one_sentence(str(info.value))
        assert len(fs_faults.searchable(photos, engine)) == 12
    finally:
        other.close()
    assert index_folder(photos, engine, batch_size=4).skipped == 12


# ------------------------------------------------------------------------------------- 5. QD cache
@pytest.mark.parametrize("kind", fs_faults.QD_KINDS)
def test_lost_short_or_garbage_qd_cache_is_repaired_by_a_plain_run(tmp_path, kind):
    _clean(fs_faults.qd_cache_trial(tmp_path, kind), "Query-DB cache", "phs index")


def test_qd_check_finds_nan_zero_and_missing_rows(tmp_path):
    qd = QDCache(tmp_path / "q.f16", 4, 2, 2, writable=True)
    rows = np.ones((4, 8), np.float16)
    rows[1, 3] = np.nan
    rows[2, 0] = np.inf
    qd.write(np.array([0, 1, 2, 4]), rows)  # slot 3: a hole (zeros)
    assert qd.valid_rows(np.array([0, 1, 2, 3, 4, 99999])).tolist() == [True, False, False, False, True, False]
    with pytest.raises(IndexDamagedError):
        qd.read(np.array([1]))
    qd.close()



def test_checksums_are_remembered_per_slot_until_the_row_changes(tmp_path):
    """A reader hashes a row once per recorded checksum: a row rewritten under a new checksum (its photo
    changed) is hashed again, and a checksum that no longer matches the slot's row is a mismatch."""
    from core.library.database import qd_checksum

    writer = QDCache(tmp_path / "q.f16", 4, 2, 2, writable=True)
    a, b = np.full((1, 8), 0.5, np.float16), np.full((1, 8), 0.25, np.float16)
    writer.write(np.array([0]), a)
    writer.flush()
    ca, cb = qd_checksum("x.jpg", a[0]), qd_checksum("x.jpg", b[0])
    reader = QDCache(tmp_path / "q.f16", 4, 2, 2, writable=False)
    for _ in range(2):
        x, _ = reader.read(np.array([0]), [ca], ["x.jpg"])
        assert reader.last_mismatched == 0 and np.allclose(x, 0.5)
    writer.write(np.array([0]), b)  # the photo changed: new row, new checksum in its database row
    writer.flush()
    x, _ = reader.read(np.array([0]), [cb], ["x.jpg"])
    assert reader.last_mismatched == 0 and np.allclose(x, 0.25)
    x, _ = reader.read(np.array([0]), [ca], ["x.jpg"])  # a database row older than the cache row
    assert reader.last_mismatched == 1 and np.isnan(x).all()
    x, _ = writer.read(np.array([0]), [ca], ["x.jpg"])
    assert writer.last_mismatched == 1
    reader.close()
    writer.close()

# ------------------------------------------------------------------------------------ 6. PHS_DATA_DIR
@pytest.mark.parametrize("under", [False, True])
def test_data_dir_that_is_a_file_is_one_sentence_in_every_command(tmp_path, photos, monkeypatch, capsys, under):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    monkeypatch.setenv("PHS_DATA_DIR", str(f / "sub" if under else f))
    monkeypatch.setattr("core.method.engine.load_engine", lambda *a, **k: FakeEngine())
    for argv in (["index", "--status", str(photos)], ["index", str(photos), "--quiet"]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert fs_faults.one_sentence(err) and "PHS_DATA_DIR" in err and "is a file" in err, err


# ------------------------------------------------------------------------------------------ 7. low
def test_negative_workers_is_one_sentence_before_loading_a_model(photos, capsys):
    assert cli_main(["index", str(photos), "--workers", "-1", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "workers must be at least 1" in err and fs_faults.one_sentence(err)
    with pytest.raises(PHSError, match="at least 1"):
        index_folder(photos, FakeEngine(), workers=-1)


def test_sidecar_without_dims_is_a_sentence_for_readers_and_repaired_by_the_indexer(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    with PhotoIndex.open(photos, engine) as idx:
        side_path = idx.directory / store.SIDECAR
    side = json.loads(side_path.read_text())
    del side["dims"]
    side_path.write_text(json.dumps(side))
    with pytest.raises(IndexDamagedError, match="dims") as info:
        PhotoIndex.open(photos, engine)
    assert fs_faults.one_sentence(str(info.value))
    report = index_folder(photos, engine, batch_size=4)
    assert report.skipped == 12 and engine.encoded == 12  # nothing re-encoded
    assert len(fs_faults.searchable(photos, engine)) == 12


def test_writer_lock_that_is_a_folder(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    with PhotoIndex.open(photos, engine) as idx:
        lock = idx.directory / store.LOCK_FILE
    lock.unlink()
    lock.mkdir()  # empty: not ours, removed
    assert index_folder(photos, engine, batch_size=4).skipped == 12
    lock.unlink()
    (lock / "x").mkdir(parents=True)
    with pytest.raises(IndexDamagedError, match="is a folder") as info:
        index_folder(photos, engine, batch_size=4)
    assert fs_faults.one_sentence(str(info.value))


def test_huge_batch_size_is_encoded_and_committed_in_bounded_chunks(photos, monkeypatch):
    monkeypatch.setattr(indexer_mod, "MAX_BATCH_SIZE", 4)
    engine = FakeEngine()
    sizes: list[int] = []
    encode = engine.encode_batch
    engine.encode_batch = lambda b: (sizes.append(len(b)), encode(b))[1]
    indexer = indexer_mod.Indexer(photos, engine, batch_size=100_000)
    assert indexer.batch_size == 4 and indexer.lookahead <= 2 * max(4, indexer.workers)
    indexer.run()
    assert max(sizes) <= 4 and sum(sizes) == 12
    with PhotoIndex.open(photos, engine) as idx:
        assert idx.db.generation >= 3  # one commit per chunk, not one for everything


def test_photo_folder_untouched_by_the_faults(tmp_path, photos):
    before = tree_hash(photos)
    index_folder(photos, FakeEngine(), batch_size=4)
    with PhotoIndex.open(photos, FakeEngine()) as idx:
        fs_faults.damage_database(idx.directory / store.DB_FILE, "malformed")
    index_folder(photos, FakeEngine(), batch_size=4)
    assert tree_hash(photos) == before


# ---------------------------------------------------------------------------- 7. passing read errors
@pytest.mark.parametrize("code", fs_faults.READ_ERRORS)
def test_photos_unreadable_on_re_read_stay_searchable_and_come_back_with_a_plain_run(tmp_path, code):
    o = fs_faults.read_error_trial(tmp_path, code, n=16, k=3)
    assert not o.crashed and not o.detail and o.recovered and o.lost == 0, o


# ------------------------------------------------------------------------------------ 8. odd index files
@pytest.mark.parametrize(("name", "kind"), fs_faults.ODD_FILES)
def test_odd_file_in_place_of_an_index_file_trial(tmp_path, name, kind):
    _clean(fs_faults.odd_file_trial(tmp_path, name, kind, n=12), "phs index", "not a file")


def test_sub_album_moved_away_mid_run_trial(tmp_path):
    o = fs_faults.sub_album_trial(tmp_path, n=16, at=4)
    assert not o.crashed and not o.detail and o.recovered and o.lost == 0, o
