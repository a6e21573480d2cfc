"""File-system fault trials shared by ``tests/test_fs_faults.py`` and ``bench/reliability_report.py``.

Each trial builds a small library with the counting fake engine, makes the file system misbehave the way a
person's machine does (the photo folder vanishing mid-run, the disk holding the index filling up, damaged
index files), and checks three things: nothing crashed (every failure is one sentence, a :class:`PHSError`),
no photo indexed before the fault stopped being searchable, and a later plain run finished the work with a
consistent index (FAISS = SQLite, Query-DB cache = stored features).

A full disk is a real one when the process is root (a small tmpfs mounted for the trial, as CI runs), else
an injected ``ENOSPC``. The run that meets the full disk runs in a child process
(``tests.fs_fault_worker``): a disk full that faults a memory-mapped write kills with SIGBUS, and a trial
must be able to see that (a crash) rather than die with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import PHSError
from core.library import PhotoIndex, index_folder
from core.library.store import DB_FILE, QD_FILE
from tests.index_fakes import FakeEngine, check_consistency, make_folder, touch
from tests.kill_trials import data_dir_at
from tests.search_helpers import search

REPO = Path(__file__).resolve().parent.parent
BATCH = 4


@dataclass
class Outcome:
    """What one fault trial saw.

    Attributes:
        crashed: A traceback, a non-PHSError exception or a killed process (the detail says which).
        lost: Photos searchable before the fault that were not searchable after it.
        recovered: A later plain run completed and the index is consistent with every photo indexed.
        sentence: The one sentence the fault produced (empty when none was expected).
        detail: Anything unexpected.
    """

    crashed: bool = False
    lost: int = 0
    recovered: bool = False
    sentence: str = ""
    detail: str = ""


def one_sentence(text: str) -> bool:
    """Whether ``text`` is one line, ends with a period and carries no traceback."""
    text = text.strip()
    return bool(text) and "\n" not in text and text.endswith(".") and "Traceback" not in text


def searchable(folder: Path, engine: FakeEngine) -> set[str]:
    """Relative paths of the photos a search can return (done rows; the FAISS index is reconciled to them)."""
    with PhotoIndex.open(folder, engine) as idx:
        idx.vectors()
        return {r.rel for r in idx.db.records() if r.status == "done"}


def _finish(folder: Path, n: int, out: Outcome, before: set[str], engine: FakeEngine | None = None) -> Outcome:
    """Count lost photos, run a plain index to completion and check the result."""
    engine = engine or FakeEngine()
    now = _catch(out, searchable, folder, engine)
    out.lost = len(before - now) if isinstance(now, set) else len(before)
    try:
        report = index_folder(folder, engine, batch_size=BATCH)
        counts = check_consistency(folder, engine)
        out.recovered = counts["done"] == n and counts["failed"] == 0 and report.failed == 0
        if not out.recovered:
            out.detail += f" after the re-run: {counts}, report failed {report.failed}"
    except PHSError as err:
        out.detail += f" the re-run failed: {err}"
    except Exception as err:  # noqa: BLE001 - a trial reports, it does not raise
        out.crashed, out.detail = True, f"{out.detail} re-run crashed: {type(err).__name__}: {err}"
    return out


def _catch(out: Outcome, fn, *args, **kwargs) -> object:  # noqa: ANN001 - a thin trial helper
    """Run ``fn``; a PHSError becomes ``out.sentence``, anything else a crash."""
    try:
        return fn(*args, **kwargs)
    except PHSError as err:
        out.sentence = str(err)
    except Exception as err:  # noqa: BLE001
        out.crashed, out.detail = True, f"{type(err).__name__}: {err}"
    return None


# ------------------------------------------------------------------------------------- vanished folder
def vanish_trial(work: Path, n: int = 40, at: int = 15) -> Outcome:
    """Index ``n`` photos, touch them all, start a run and move the folder away after ``at`` photos.

    Expected: the run stops with one sentence, every photo stays searchable, none is recorded as failed,
    and with the folder back a plain run re-indexes the touched photos (by content, without re-encoding).
    """
    folder = work / "photos"
    with data_dir_at(work / "data"):
        make_folder(folder, n)
        index_folder(folder, FakeEngine(), batch_size=BATCH)
        before = searchable(folder, FakeEngine())
        for p in folder.rglob("*.*"):
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same content, new mtime
        away = work / "unplugged"

        def progress(p) -> None:  # noqa: ANN001
            if p.done == at and folder.exists():
                os.rename(folder, away)

        out = Outcome()
        report = _catch(out, index_folder, folder, FakeEngine(), batch_size=BATCH, progress=progress)
        if report is not None:
            out.detail = "the run did not notice the folder had gone"
        if away.exists():
            os.rename(away, folder)
        with PhotoIndex.open(folder, FakeEngine()) as idx:
            failed = idx.db.counts().get("failed", 0)
        if failed:
            out.detail += f" {failed} photos recorded as failed"
        return _finish(folder, n, out, before)


# ------------------------------------------------------------------------------------------- full disk
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root on Linux)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block (root only), unmounted in any case."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the disk is full; return it (delete it to free the space)."""
    filler = directory / "filler.bin"
    chunk = b"\0" * 65536
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    with contextlib.suppress(OSError), open(directory / "filler2.bin", "wb") as fh:  # the last small bits
        while True:
            fh.write(b"\0" * 512)
            fh.flush()
    return filler


def _child(action: str, args: dict, env: dict) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "tests.fs_fault_worker", action, json.dumps(args)], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)  # fmt: skip
    res = next((json.loads(ln[7:]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), {})
    return proc.returncode, res, proc.stderr


def disk_full_trial(work: Path, n: int = 40, at: int = 10, *, real: bool | None = None) -> Outcome:
    """Index half a library, then index the rest while the disk holding the index fills up after ``at`` photos.

    Expected: the CLI-equivalent child exits with one sentence saying the disk is full (no SIGBUS, no
    traceback), the first half stays searchable and at most the batch in flight is lost; once space is
    freed a plain run completes.
    """
    real = can_mount() if real is None else real
    folder = work / "photos"
    make_folder(folder, n // 2)
    disk = work / "disk"
    with contextlib.ExitStack() as stack:
        if real:
            stack.enter_context(small_disk(disk))
        data = disk / "data"
        stack.enter_context(data_dir_at(data))
        index_folder(folder, FakeEngine(), batch_size=BATCH)
        before = searchable(folder, FakeEngine())
        make_folder(folder, n - n // 2, start=n // 2)
        rc, res, err = _child("index_until_full", {"folder": str(folder), "at": at, "fill": str(disk),
                                                   "inject": not real}, {"PHS_DATA_DIR": str(data)})  # fmt: skip
        out = Outcome(sentence=res.get("error", ""))
        if rc < 0 or rc not in (0, 2) or "Traceback" in err or not res:
            out.crashed, out.detail = True, f"exit {rc}: {err.strip()[-500:]}"
        elif rc == 0:
            out.detail = "the run did not notice the disk was full"
        for f in disk.glob("filler*.bin"):
            f.unlink()
        committed = res.get("committed_before_fill", 0)
        now = searchable(folder, FakeEngine())
        if len(now) < len(before) + committed - BATCH:
            out.detail += f" more than one batch lost: {len(now)} < {len(before)} + {committed} - {BATCH}"
        return _finish(folder, n, out, before)


# ------------------------------------------------------------------------------------- damaged database
DAMAGE_KINDS = ("malformed", "not_a_database", "a_folder")


def damage_database(db: Path, kind: str) -> None:
    """Damage an index database: garbage over its pages, garbage over its header, or a folder in its place."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db}{suffix}").unlink()
    if kind == "a_folder":
        db.unlink()
        db.mkdir()
        (db / "something").write_bytes(b"x")
        return
    data = bytearray(db.read_bytes())
    rng = random.Random(7)
    if kind == "not_a_database":
        data[:100] = bytes(rng.randrange(256) for _ in range(100))
    else:  # every page but the first (the schema) gets garbage in its middle
        page = int.from_bytes(data[16:18], "big") or 65536
        for start in range(page, len(data), page):
            data[start + 8 : start + page // 2] = bytes(rng.randrange(256) for _ in range(page // 2 - 8))
    db.write_bytes(bytes(data))


def damaged_db_trial(work: Path, kind: str, n: int = 24) -> Outcome:
    """Damage the database, check searching and ``--status`` say so in one sentence, then index again.

    Expected: the read side names ``phs index``; the plain run moves the damaged file aside, rebuilds and
    says so in a note, with every photo searchable again.
    """
    folder = work / "photos"
    with data_dir_at(work / "data"):
        make_folder(folder, n)
        index_folder(folder, FakeEngine(), batch_size=BATCH)
        with PhotoIndex.open(folder, FakeEngine()) as idx:
            directory = idx.directory
        damage_database(directory / DB_FILE, kind)
        out = Outcome()
        if _catch(out, searchable, folder, FakeEngine()) is not None:
            out.detail = "a damaged database was read without complaint"
        elif not out.crashed and "phs index" not in out.sentence:
            out.detail = f"the sentence does not name the repair: {out.sentence}"
        engine = FakeEngine()
        report = _catch(out, index_folder, folder, engine, batch_size=BATCH)
        if report is not None and not any("damaged" in note for note in report.notes):
            out.detail += " the rebuild was not reported"
        if report is not None and not list(directory.glob(f"{DB_FILE}.damaged-*")):
            out.detail += " the damaged file was not kept"
        out.lost = n - len(searchable(folder, engine)) if not out.crashed else n
        return _finish(folder, n, out, set())


# ---------------------------------------------------------------------------------------- Query-DB cache
QD_KINDS = ("lost", "truncated", "garbage")


def qd_cache_trial(work: Path, kind: str, n: int = 24) -> Outcome:
    """Lose, truncate or scramble the Query-DB cache; a plain run must re-encode exactly the damaged rows."""
    import numpy as np

    from core.library.store import QDCache

    folder = work / "photos"
    with data_dir_at(work / "data"):
        make_folder(folder, n)
        index_folder(folder, FakeEngine(), batch_size=BATCH)
        with PhotoIndex.open(folder, FakeEngine()) as idx:
            qd_path, row_bytes = idx.directory / QD_FILE, idx.qd.row_bytes
            done = [r for r in idx.db.records() if r.status == "done"]
            slots = np.array([r.slot for r in done])
            checks, owners = [r.qd_check for r in done], [r.rel for r in done]
            assert all(c is not None for c in checks)  # every row carries its checksum
        if kind == "lost":
            qd_path.unlink()
        elif kind == "truncated":
            os.truncate(qd_path, row_bytes * (n // 2))
        else:
            size = qd_path.stat().st_size
            qd_path.write_bytes(np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8).tobytes())
        e = FakeEngine()
        probe = QDCache(qd_path, e.embed_dim, e.num_heads, e.head_dim, writable=False)
        expected_bad = int((~probe.valid_rows(slots, checks, owners)).sum())
        probe.close()
        out = Outcome()
        with PhotoIndex.open(folder, e) as idx:  # what a Query-DB search reads: a sentence, never NaN
            _catch(out, idx.qd.read, slots)  # without checksums: NaN rows are a sentence
        if not out.sentence:
            out.detail = "the damaged cache was read without complaint"
        report = _catch(out, index_folder, folder, e, batch_size=BATCH)
        if report is not None and (e.encoded != expected_bad or expected_bad == 0):
            out.detail += f" re-encoded {e.encoded}, expected {expected_bad}"
        with PhotoIndex.open(folder, e) as idx:
            done = [r for r in idx.db.records() if r.status == "done"]
            bad_after = int((~idx.qd.valid_rows(np.array([r.slot for r in done]), [r.qd_check for r in done],
                                                [r.rel for r in done])).sum())  # fmt: skip
        if bad_after:
            out.detail += f" {bad_after} rows still damaged"
        out.lost = n - len(searchable(folder, e))
        return _finish(folder, n, out, set())


# ------------------------------------------------------------------------------------ passing read errors
READ_ERRORS = ("EACCES", "EIO", "ESTALE")


@contextlib.contextmanager
def failing_reads(names: set[str], code: int) -> Iterator[None]:
    """Make reading the photos named ``names`` fail with ``code`` (as a lapsed permission, a flaky disk or a
    stale network handle does), in this process."""
    import core.library.decode as decode

    original = decode.read_regular_bytes

    def read(path, **kw):  # noqa: ANN001, ANN003, ANN202
        if Path(path).name in names:
            raise OSError(code, os.strerror(code), str(path))
        return original(path, **kw)

    decode.read_regular_bytes = read
    try:
        yield
    finally:
        decode.read_regular_bytes = original


def read_error_trial(work: Path, code_name: str, n: int = 40, k: int = 5) -> Outcome:
    """Index ``n`` photos, touch them all, index again while ``k`` of them cannot be read, then once more.

    Expected: the failing run keeps every indexed photo searchable (``lost`` counts those that were not),
    names the ``k`` files and says they wait to be retried; the plain run after the error passed re-reads
    them with no option and leaves nothing waiting.
    """
    folder = work / "photos"
    with data_dir_at(work / "data"):
        paths = make_folder(folder, n)
        index_folder(folder, FakeEngine(), batch_size=BATCH)
        before = searchable(folder, FakeEngine())
        touch(paths)
        names = {p.name for p in paths[:k]}
        out = Outcome()
        with failing_reads(names, getattr(errno, code_name)):
            report = _catch(out, index_folder, folder, FakeEngine(), batch_size=BATCH)
        if report is not None and (report.waiting != k or {Path(f.rel).name for f in report.failures} != names):
            out.detail = f"the failing run reported {report.waiting} waiting, failures {len(report.failures)}"
        out = _finish(folder, n, out, before)
        with PhotoIndex.open(folder, FakeEngine()) as idx:
            if any(r.retry for r in idx.db.records()):
                out.recovered, out.detail = False, out.detail + " still waiting after the plain run"
        return out


# ------------------------------------------------------------------------------------------ huge file
def huge_file_trial(work: Path, n: int = 40, size: int = 64 << 30) -> Outcome:
    """A sparse ``size``-byte ``.jpg`` among ``n`` photos: the run must index the ``n`` and record the big one
    as failed with its size (never read into memory); ``recovered`` means exactly that happened."""
    folder = work / "photos"
    with data_dir_at(work / "data"):
        make_folder(folder, n)
        with open(folder / "huge.jpg", "wb") as fh:
            fh.truncate(size)
        out = Outcome()
        report = _catch(out, index_folder, folder, FakeEngine(), batch_size=BATCH)
        if report is not None:
            out.sentence = report.failures[0].reason if report.failures else ""
            out.lost = n - report.done_total
            out.recovered = [f.rel for f in report.failures] == ["huge.jpg"] and "limit" in out.sentence
        return out


# ------------------------------------------------------------------------------------ sidecar and files
SIDECAR_KINDS = ("deleted", "garbage", "foreign", "folder", "fifo")


def sidecar_trial(work: Path, kind: str, n: int = 24) -> Outcome:
    """Lose or damage ``index.json`` (deleted, random bytes, another program's JSON, a folder, a FIFO).

    Expected: readers say so in one sentence (a lost one: "not indexed yet"), never hang; a plain run rebuilds
    it from what the database records, keeps the same database and re-encodes nothing.
    """
    from core.library.store import SIDECAR

    folder = work / "photos"
    with data_dir_at(work / "data"):
        make_folder(folder, n)
        report = index_folder(folder, FakeEngine(), batch_size=BATCH)
        before = searchable(folder, FakeEngine())
        side, db = report.index_dir / SIDECAR, report.index_dir / DB_FILE
        inode = db.stat().st_ino
        side.unlink()
        if kind == "garbage":
            side.write_bytes(os.urandom(300))
        elif kind == "foreign":
            side.write_text(json.dumps({"format": "another program", "version": 3}))
        elif kind == "folder":
            side.mkdir()
        elif kind == "fifo":
            os.mkfifo(side)
        out = Outcome()
        _catch(out, searchable, folder, FakeEngine())
        engine = FakeEngine()
        _catch(out, index_folder, folder, engine, batch_size=BATCH)
        if engine.encoded or db.stat().st_ino != inode:
            out.detail = f"re-encoded {engine.encoded} photos, database replaced: {db.stat().st_ino != inode}"
        return _finish(folder, n, out, before)


ODD_FILES = (("qd_cache.f16", "folder"), ("qd_cache.f16", "fifo"), ("vectors.faiss", "folder"),
             ("files.sqlite", "fifo"))  # fmt: skip


def odd_file_trial(work: Path, name: str, kind: str, n: int = 24) -> Outcome:
    """A folder or FIFO in place of an index file: readers say so in one sentence (never hang); a plain run
    moves it aside and repairs the index."""
    folder = work / "photos"
    with data_dir_at(work / "data"):
        make_folder(folder, n)
        report = index_folder(folder, FakeEngine(), batch_size=BATCH)
        before = searchable(folder, FakeEngine())
        path = report.index_dir / name
        path.unlink()
        path.mkdir() if kind == "folder" else os.mkfifo(path)
        out = Outcome()
        _catch(out, searchable, folder, FakeEngine())
        if not out.sentence:
            out.detail = "readers did not notice"
        # Searching refuses until the repair (one sentence), so count what the repair run brings back.
        out = _finish(folder, n, out, set())
        out.lost = len(before - searchable(folder, FakeEngine()))
        return out


# ------------------------------------------------------------------------------ finite scrambled cache
def qd_finite_trial(work: Path, n: int = 24, k: int = 3) -> Outcome:
    """Overwrite ``k`` Query-DB cache rows with random *finite* values (a backup that copied the database and
    the cache at different moments). Expected: a Query-DB search leaves them out and says so; a plain run
    re-encodes exactly them, after which each is its own first hit in Query-DB mode with a score near 1."""
    import numpy as np
    from PIL import Image

    from core.search.searcher import Searcher

    folder = work / "photos"
    with data_dir_at(work / "data"):
        paths = make_folder(folder, n)
        engine = FakeEngine()
        report = index_folder(folder, engine, batch_size=BATCH)
        with PhotoIndex.open(folder, engine) as idx:
            rows, row_bytes = {r.rel: r for r in idx.db.records()}, idx.qd.row_bytes
        victims = [p.relative_to(folder).as_posix() for p in paths[:k]]
        with open(report.index_dir / QD_FILE, "r+b") as fh:
            for i, rel in enumerate(victims):
                fh.seek(rows[rel].slot * row_bytes)
                fh.write(np.random.default_rng(i).normal(size=row_bytes // 2).astype(np.float16).tobytes())
        mask = np.array([1.0, 0.0], np.float32)
        out = Outcome()
        with Searcher(folder, engine) as s:
            search(s, np.ones(engine.feature_dim, np.float32), n, mode="qd", head_mask=mask, candidates=None)
            out.sentence = s.warnings[0] if s.warnings else ""
            if s.qd_mismatched != k:
                out.detail = f"left out {s.qd_mismatched} of {k}"
        encoded = engine.encoded
        _catch(out, index_folder, folder, engine, batch_size=BATCH)
        if engine.encoded - encoded != k:
            out.detail += f" re-encoded {engine.encoded - encoded}, expected {k}"
        with Searcher(folder, engine) as s:
            firsts = [search(s, engine.feature_of(Image.open(folder / rel), mask), 1, mode="qd", head_mask=mask)[0]
                      for rel in victims]  # fmt: skip
        if any(h.rel != rel or h.score < 0.999 for h, rel in zip(firsts, victims)):
            out.detail += " a repaired photo is not its own first hit"
        return _finish(folder, n, out, set(rows))


# ------------------------------------------------------------------------------------ vanished sub-album
def sub_album_trial(work: Path, n: int = 40, at: int = 10) -> Outcome:
    """A sub-album moved away after ``at`` photos of a run over a touched library: the run completes (it is
    a deleted sub-album, not a vanished library) and drops exactly its photos; once it is back, a plain run
    indexes them again. ``lost`` counts photos outside that sub-album that left search."""
    folder = work / "photos"
    with data_dir_at(work / "data"):
        paths = make_folder(folder, n)
        index_folder(folder, FakeEngine(), batch_size=BATCH)
        before = searchable(folder, FakeEngine())
        touch(paths)
        away = work / "album1-away"

        def progress(p) -> None:  # noqa: ANN001
            if p.done == at and not away.exists():
                os.rename(folder / "album1", away)

        out = Outcome()
        report = _catch(out, index_folder, folder, FakeEngine(), batch_size=BATCH, workers=1, progress=progress)
        in_album = {r for r in before if r.startswith("album1/")}
        if report is not None and (report.failures or report.removed != len(in_album)):
            out.detail = f"failures {len(report.failures)}, removed {report.removed} of {len(in_album)}"
        now = _catch(out, searchable, folder, FakeEngine()) or set()
        out.lost = len((before - in_album) - now)
        os.rename(away, folder / "album1")
        return _finish(folder, n, out, set())


# -------------------------------------------------------------------------------------- stuck worker
STUCK_CHILD = """
import signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when started in the background
from tests.index_fakes import FakeEngine
from core.library import index_folder
class Stuck(FakeEngine):
    def preprocess(self, img):
        print("stuck", flush=True)
        threading.Event().wait()
try:
    index_folder(sys.argv[1], Stuck(), batch_size=2, workers=2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def stuck_worker_trial(work: Path, sig_name: str) -> tuple[Outcome, float]:
    """A run whose decode threads never return (a dead network share): ``sig_name`` (SIGINT = Ctrl+C, or
    SIGTERM) must end it within two seconds. Returns the outcome and the seconds it took to end."""
    import signal
    import time

    folder = work / "photos"
    make_folder(folder, 8)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PHS_DATA_DIR": str(work / "data")}
    proc = subprocess.Popen([sys.executable, "-c", STUCK_CHILD, str(folder)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    out = Outcome()
    proc.stdout.readline()
    t0 = time.monotonic()
    proc.send_signal(getattr(signal, sig_name))
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        out.detail = "still running 30 s after the signal"
    took = time.monotonic() - t0
    if "Traceback" in proc.stderr.read():
        out.crashed = True
    out.recovered = took < 2.0 and not out.detail and not out.crashed
    return out, took
