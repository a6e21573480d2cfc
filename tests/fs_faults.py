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
from tests.index_fakes import FakeEngine, check_consistency, make_folder
from tests.kill_trials import data_dir_at

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
