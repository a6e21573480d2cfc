"""Incremental, crash-safe indexing of a photo folder (mark and sweep).

One run:

1. **Scan** the folder (:func:`core.library.scan.scan_folder`) and compare each file's ``(size, mtime_ns)``
   with its row: unchanged files are skipped without being opened (also unchanged failures, unless
   ``retry_failed``).
2. **Decode ahead**: a bounded pool of threads reads each remaining file once, hashes the bytes
   (BLAKE2b-128), and, unless that content is already indexed, decodes the same bytes
   (:func:`core.imageio.decode_image_bytes`, JPEG draft at the model input size) and preprocesses them, while
   the main thread runs the model. At most ``lookahead`` photos are in flight, so memory stays bounded.
3. **Encode and commit in batches**: every ``batch_size`` decoded photos are encoded together; their QD
   cache rows are written to free slots and flushed, then one SQLite transaction records the batch (with the
   photos reused by content hash and the failures gathered meanwhile). A renamed or duplicated photo copies
   the feature and QD row of an indexed photo with the same content instead of being decoded and encoded.
4. **Sweep**: when the scan completed (not cancelled), rows of files no longer present are deleted (except
   under folders that could not be listed this time, and never all rows because the folder looks empty,
   e.g. an unplugged drive).
5. The FAISS file is brought up to date from SQLite and saved (also every ``save_interval_s`` during a long
   run, for searchers that start meanwhile).

A SIGKILL at any point loses at most the batch in flight; see :mod:`core.library.store` for why.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ImageLoadError, PHSError
from core.imageio import decode_image_bytes
from core.library import store as st
from core.library.photo_index import EngineLike, PhotoIndex
from core.library.scan import ScannedFile, scan_folder
from core.library.vectors import APPROX_THRESHOLD
from core.method.phs import database_features


@dataclass(frozen=True)
class IndexProgress:
    """Progress of an indexing run, reported after every processed photo.

    Attributes:
        done: Photos processed so far in this run (indexed, reused or failed).
        total: Photos this run has to process (new or changed; unchanged ones are not counted).
        rate: Photos per second so far.
        eta_s: Estimated seconds left, ``None`` until a rate is known.
        current: Relative path of the photo just processed.
        indexed: Photos encoded by the model.
        reused: Photos whose vectors were copied from identical content (renamed, duplicated).
        failed: Photos recorded as failed.
        skipped: Unchanged photos skipped.
    """

    done: int
    total: int
    rate: float
    eta_s: float | None
    current: str | None
    indexed: int
    reused: int
    failed: int
    skipped: int


@dataclass(frozen=True)
class FailedFile:
    """A photo that could not be indexed.

    Attributes:
        rel: Path relative to the photo folder.
        reason: One sentence.
    """

    rel: str
    reason: str


@dataclass(frozen=True)
class IndexReport:
    """The outcome of :func:`index_folder`.

    Attributes:
        folder: The photo folder.
        index_dir: The index directory.
        seen: Photo files found by the scan.
        indexed: Encoded by the model in this run.
        reused: Copied from identical content in this run.
        skipped: Unchanged, not opened.
        failed: Recorded as failed in this run.
        removed: Rows swept because their files are gone.
        cancelled: The run was cancelled (nothing swept).
        seconds: Wall time.
        failures: The failures of this run.
        scan_errors: Folders or files the scan could not read, as ``(path, reason)``.
        notes: Sentences about repairs the run made (a damaged database rebuilt, damaged Query-DB cache
            rows re-encoded).
    """

    folder: Path
    index_dir: Path
    seen: int
    indexed: int
    reused: int
    skipped: int
    failed: int
    removed: int
    cancelled: bool
    seconds: float
    failures: tuple[FailedFile, ...] = ()
    scan_errors: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()


class FolderVanishedError(PHSError):
    """The photo folder disappeared during a run (an unplugged drive, a dropped network share, a move)."""


#: Most photos encoded per model call and committed per transaction, whatever batch size is asked for:
#: decoded inputs wait in memory until their batch is encoded, so a huge batch size would hold the whole
#: library in memory and make one all-or-nothing commit.
MAX_BATCH_SIZE = 128
#: Most decoding threads.
MAX_WORKERS = 64


@dataclass
class _Prepared:
    """A file read (and maybe decoded) by a pool thread."""

    file: ScannedFile
    hash: str | None = None
    tensor: Any = None
    error: str | None = None
    vanished: bool = False  # its folder is gone: not a property of the photo, nothing is recorded


@dataclass
class _Batch:
    encode: list[_Prepared] = field(default_factory=list)
    reuse: list[_Prepared] = field(default_factory=list)
    fail: list[_Prepared] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.encode) + len(self.reuse) + len(self.fail)


def default_workers(engine: Any) -> int:
    """Decode threads for an engine: half the cores when it computes on the CPU, else all (at most 8)."""
    cores = os.cpu_count() or 2
    device = getattr(getattr(engine, "device", None), "type", "cpu")
    return max(1, min(8, cores // 2 if device == "cpu" else cores))


def content_hash(data: bytes) -> str:
    """BLAKE2b-128 hex digest of a file's bytes (how renamed and duplicated photos are recognised)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _is_cancelled(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


class Indexer:
    """Index one folder with one engine. Prefer :func:`index_folder`; this class exposes the steps.

    Args:
        folder: The photo folder (opened read-only).
        engine: The model (:class:`core.method.engine.PHSEngine` or anything with the same methods).
        batch_size: Photos per model call and per commit (at most :data:`MAX_BATCH_SIZE`, which bounds the
            memory of a run and the work a failed commit loses).
        workers: Decode threads (at most :data:`MAX_WORKERS`). Default: half the CPU cores when the model runs on the CPU (its own threads
            use the rest; more decode threads only oversubscribe the cores), else every core, at most 8.
        lookahead: Photos decoded ahead of the model at most (default ``2 * batch_size``).
        rebuild: Discard the existing index of this folder and model first.
        retry_failed: Retry files recorded as failed even when unchanged.
        approx_threshold: Vector count from which FAISS is HNSW instead of exact.
        save_interval_s: Seconds between FAISS saves during a run.
    """

    def __init__(
        self,
        folder: str | Path,
        engine: EngineLike,
        *,
        batch_size: int = 32,
        workers: int | None = None,
        lookahead: int | None = None,
        rebuild: bool = False,
        retry_failed: bool = False,
        approx_threshold: int = APPROX_THRESHOLD,
        save_interval_s: float = 60.0,
    ) -> None:
        self.folder = Path(st.folder_key(folder))
        if not self.folder.is_dir():
            raise PHSError(f"The photo folder {self.folder} does not exist or is not a folder.")
        if batch_size < 1:
            raise PHSError("The batch size must be at least 1.")
        if workers is not None and workers < 1:
            raise PHSError(f"The number of decoding workers must be at least 1 (got {workers}).")
        self.engine = engine
        self.batch_size = min(int(batch_size), MAX_BATCH_SIZE)
        self.workers = min(int(workers or default_workers(engine)), MAX_WORKERS)
        self.lookahead = int(lookahead or max(2 * self.batch_size, 2 * self.workers))
        self.rebuild = rebuild
        self.retry_failed = retry_failed
        self.approx_threshold = approx_threshold
        self.save_interval_s = save_interval_s
        self.draft_size = int(getattr(engine, "input_size", 0) or 0) or None
        self._bad_ids: list[int] = []

    # --------------------------------------------------------------------------------- pool work
    def _prepare(self, f: ScannedFile, known: set[str] | frozenset[str]) -> _Prepared:
        """Read, hash and (unless the content is known) decode + preprocess one file. Runs in a pool thread."""
        item = _Prepared(f)
        name = f.rel
        try:
            with open(f.path, "rb") as fh:  # read-only
                data = fh.read()
        except OSError as err:
            if self._folder_gone(f):
                item.vanished = True
                return item
            reason = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
            item.error = f"Cannot read {name}: {reason}."
            return item
        item.hash = content_hash(data)
        if item.hash in known:
            return item
        try:
            img = decode_image_bytes(data, name=name, draft_size=self.draft_size)
            del data
            item.tensor = self.engine.preprocess(img)
        except ImageLoadError as err:
            item.error = str(err)
        except PHSError as err:
            item.error = f"Cannot index {name}: {err}"
        except Exception as err:  # a preprocessing bug must not stop the run: record it with the file
            item.error = f"Cannot index {name}: {type(err).__name__}: {err}."
        return item

    def _folder_gone(self, f: ScannedFile | None = None) -> bool:
        """Whether the photo folder (or the sub-folder holding ``f``) is no longer there."""
        return not self.folder.is_dir() or (f is not None and not f.path.parent.is_dir())

    # ------------------------------------------------------------------------------------- the run
    def run(
        self,
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Index the folder.

        Args:
            progress: Called (in this thread) after every processed photo.
            cancel: Checked between photos; when set, the run commits what it has and stops without sweeping.

        Returns:
            What the run did.

        Raises:
            FolderVanishedError: The folder disappeared meanwhile (what was committed is kept, no file is
                recorded as failed for it, nothing is swept; a later run finishes the work).
            PHSError: The disk holding the index is full (``IndexDiskFullError``), read-only, locked by
                another program, failing; the batch in flight is lost, every earlier one is kept.
        """
        t0 = time.perf_counter()
        index = PhotoIndex.open(
            self.folder,
            self.engine,
            writable=True,
            rebuild=self.rebuild,
            approx_threshold=self.approx_threshold,
        )
        try:
            with st.storage_errors(index.directory, self.folder):
                return self._run(index, progress, cancel, t0)
        finally:
            index.close()

    def _run(
        self,
        index: PhotoIndex,
        progress: Callable[[IndexProgress], None] | None,
        cancel: threading.Event | Callable[[], bool] | None,
        t0: float,
    ) -> IndexReport:
        db = index.db
        rows = {r.rel: r for r in db.records()}
        notes: list[str] = [index.repaired] if index.repaired else []
        # Done rows whose Query-DB cache row is missing (a lost or truncated file), zero (regrown over a
        # hole) or not finite (garbage): their photos are re-encoded even when unchanged.
        done_rows = [r for r in rows.values() if r.status == "done"]
        valid = index.qd.valid_rows(np.array([r.slot for r in done_rows], dtype=np.int64))
        bad_qd = {r.rel for r, ok in zip(done_rows, valid) if not ok}
        self._bad_ids = [r.id for r in done_rows if r.rel in bad_qd]
        if bad_qd:
            notes.append(f"Re-encoded {len(bad_qd)} photos whose Query-DB cache rows were missing or damaged.")
        scan_errors: list[tuple[str, str]] = []
        unsure: list[str] = []  # folders or files the scan could not read: their rows are never swept

        def on_error(path: Path, err: OSError) -> None:
            rel = os.path.relpath(path, self.folder).replace(os.sep, "/")
            scan_errors.append((rel, err.strerror or str(err)))
            unsure.append("" if rel == "." else rel)

        seen: set[str] = set()
        todo: list[ScannedFile] = []
        skipped = 0
        for f in scan_folder(self.folder, on_error=on_error):
            seen.add(f.rel)
            r = rows.get(f.rel)
            unchanged = r is not None and r.size == f.size and r.mtime_ns == f.mtime_ns and f.rel not in bad_qd
            if unchanged and (r.status == "done" or not self.retry_failed):
                skipped += 1
                continue
            todo.append(f)

        # Free QD slots: gaps below the highest used slot, then fresh ones.
        used = sorted(r.slot for r in rows.values() if r.slot is not None)
        self._free: list[int] = sorted(set(range(used[-1] + 1)) - set(used)) if used else []
        heapq.heapify(self._free)
        self._next_slot = (used[-1] + 1) if used else 0
        known = {r.hash for r in done_rows if r.hash and r.rel not in bad_qd}
        known_snapshot = frozenset(known)  # read by pool threads; the main thread keeps `known` current

        counts = {"indexed": 0, "reused": 0, "failed": 0}
        failures: list[FailedFile] = []
        total = len(todo)
        done = 0
        t_start = time.perf_counter()
        last_save = time.perf_counter()
        cancelled = vanished = False
        batch = _Batch()

        def report(current: str | None) -> None:
            if progress is None:
                return
            elapsed = time.perf_counter() - t_start
            rate = done / elapsed if elapsed > 0 and done else 0.0
            eta = (total - done) / rate if rate > 0 else None
            # Failures count as soon as they are known, not only once their batch is committed.
            progress(IndexProgress(done, total, rate, eta, current, counts["indexed"], counts["reused"],
                                   counts["failed"] + len(batch.fail), skipped))  # fmt: skip

        report(None)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="phs-decode")
        pending: deque[Future[_Prepared]] = deque()
        it = iter(todo)
        try:

            def refill() -> None:
                while len(pending) < self.lookahead:
                    f = next(it, None)
                    if f is None:
                        return
                    pending.append(pool.submit(self._prepare, f, known_snapshot))

            refill()
            while pending:
                if _is_cancelled(cancel):
                    cancelled = True
                    break
                item = pending.popleft().result()
                if item.vanished:
                    vanished = True
                    break
                refill()
                if item.error is not None:
                    batch.fail.append(item)
                elif item.tensor is None or item.hash in known:
                    batch.reuse.append(item)
                else:
                    batch.encode.append(item)
                    known.add(item.hash)  # a second copy in this run reuses this one
                if len(batch.encode) >= self.batch_size or len(batch) >= 4 * self.batch_size:
                    self._commit(index, batch, counts, failures, known)
                    batch = _Batch()
                    if time.perf_counter() - last_save > self.save_interval_s:
                        index.save_vectors()
                        last_save = time.perf_counter()
                done += 1
                report(item.file.rel)
            if cancelled:
                batch.encode.clear()  # not encoded yet: dropped, redone next run
            self._commit(index, batch, counts, failures, known)
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

        if vanished or (not cancelled and self._folder_gone()):
            index.save_vectors()  # what was committed stays searchable, also for searchers started later
            n = db.counts().get("done", 0)
            raise FolderVanishedError(
                f"The photo folder {self.folder} disappeared during indexing (an unplugged drive, a lost network "
                f"share or a move): its {n} indexed photos are kept and searchable, and `phs index "
                f"{self.folder}` finishes the work once the folder is back."
            )
        removed = 0
        if not cancelled:
            gone = [
                r
                for rel, r in rows.items()
                if rel not in seen and not any(u == "" or rel == u or rel.startswith(u + "/") for u in unsure)
            ]
            if gone and not seen:
                scan_errors.append((".", f"the folder looks empty; kept the {len(rows)} indexed entries"))
                gone = []
            if gone:
                with db.transaction() as conn:
                    db.next_generation(conn)
                    conn.execute(
                        "DELETE FROM files WHERE id IN (SELECT value FROM json_each(?))",
                        (_json_ids(r.id for r in gone),),
                    )
                removed = len(gone)
        index.save_vectors()
        return IndexReport(
            folder=self.folder,
            index_dir=index.directory,
            seen=len(seen),
            indexed=counts["indexed"],
            reused=counts["reused"],
            skipped=skipped,
            failed=counts["failed"],
            removed=removed,
            cancelled=cancelled,
            seconds=time.perf_counter() - t0,
            failures=tuple(failures),
            scan_errors=tuple(scan_errors),
            notes=tuple(notes),
        )

    # ------------------------------------------------------------------------------------ commit
    def _alloc_slot(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self._next_slot += 1
        return self._next_slot - 1

    def _commit(
        self,
        index: PhotoIndex,
        batch: _Batch,
        counts: dict[str, int],
        failures: list[FailedFile],
        known: set[str],
    ) -> None:
        """Encode a batch, write its QD rows, flush, then record it in one SQLite transaction."""
        if not len(batch):
            return
        db = index.db
        feats: dict[str, np.ndarray] = {}  # hash -> normalised feature (Dout,)
        qd_rows: dict[str, np.ndarray] = {}  # hash -> float16 QD row
        if batch.encode:
            enc = self.engine.encode_batch(_stack([p.tensor for p in batch.encode]))
            f = np.asarray(enc.features, dtype=np.float32)
            f = database_features(f)
            rows = st.QDCache.pack(enc.x_cls, enc.o_cls)
            for i, p in enumerate(batch.encode):
                feats[p.hash] = f[i]
                qd_rows[p.hash] = rows[i]
        # Reuse by content hash: from this batch, else from a committed row.
        for p in list(batch.reuse):
            if p.hash in feats:
                continue
            r = db.conn.execute(
                "SELECT feature, slot FROM files WHERE hash = ? AND status = 'done' AND id NOT IN "
                "(SELECT value FROM json_each(?)) ORDER BY gen DESC LIMIT 1",
                (p.hash, _json_ids(self._bad_ids)),
            ).fetchone()
            if r is None:  # the source changed meanwhile: decode it here after all
                again = self._prepare(p.file, frozenset())
                batch.reuse.remove(p)
                if again.error is not None:
                    batch.fail.append(again)
                else:
                    enc = self.engine.encode_batch(_stack([again.tensor]))
                    f = np.asarray(enc.features, dtype=np.float32)[0]
                    feats[again.hash] = database_features(f)
                    qd_rows[again.hash] = st.QDCache.pack(enc.x_cls, enc.o_cls)[0]
                    batch.encode.append(again)
                continue
            feats[p.hash] = np.frombuffer(r[0], dtype=np.float32)
            x, o = index.qd.read(np.array([r[1]]))
            qd_rows[p.hash] = st.QDCache.pack(x, o)[0]

        done_items = batch.encode + batch.reuse
        slots = np.array([self._alloc_slot() for _ in done_items], dtype=np.int64)
        if len(done_items):
            index.qd.write(slots, np.stack([qd_rows[p.hash] for p in done_items]))
            index.qd.flush()  # durable before the commit that references these slots
        t = st.now()
        freed: list[int] = []
        with db.transaction() as conn:
            gen = db.next_generation(conn)
            for p, slot in zip(done_items, slots):
                freed += _upsert_file(conn, p, "done", None, feats[p.hash].astype(np.float32).tobytes(), int(slot),
                                      gen, t)  # fmt: skip
            for p in batch.fail:
                freed += _upsert_file(conn, p, "failed", p.error, None, None, gen, t)
        for s in freed:  # free only once the commit that stopped referencing them has landed
            heapq.heappush(self._free, int(s))
        for p in batch.fail:
            failures.append(FailedFile(p.file.rel, p.error or ""))
        known.update(p.hash for p in done_items if p.hash)
        counts["indexed"] += len(batch.encode)
        counts["reused"] += len(batch.reuse)
        counts["failed"] += len(batch.fail)


def _upsert_file(conn: Any, p: Any, status: str, error: str | None, feature: bytes | None, slot: int | None,
                 gen: int, t: float) -> list[int]:
    """Insert or update one photo's row; return the QD slot its previous row held (to free after commit)."""
    rel = st.encode_rel(p.file.rel)
    old = conn.execute("SELECT slot FROM files WHERE path = ?", (rel,)).fetchone()
    conn.execute(
        "INSERT INTO files (path, size, mtime_ns, hash, status, error, feature, slot, gen, first_seen, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size, "
        "mtime_ns = excluded.mtime_ns, hash = excluded.hash, status = excluded.status, error = excluded.error, "
        "feature = excluded.feature, slot = excluded.slot, gen = excluded.gen, updated_at = excluded.updated_at",
        (rel, p.file.size, p.file.mtime_ns, p.hash, status, error, feature, slot, gen, t, t),
    )
    return [old[0]] if old is not None and old[0] is not None else []


def _stack(items: list[Any]) -> Any:
    """Stack preprocessed ``(3, S, S)`` inputs into the ``(B, 3, S, S)`` batch the engine takes."""
    if all(isinstance(x, np.ndarray) for x in items):
        return np.stack(items)
    import torch  # imported here so that searching (and numpy-only engines) never need torch

    return torch.stack(items)


def _json_ids(ids: Iterable[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def index_folder(
    folder: str | Path,
    engine: EngineLike,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    rebuild: bool = False,
    retry_failed: bool = False,
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    approx_threshold: int = APPROX_THRESHOLD,
) -> IndexReport:
    """Index (or update the index of) a photo folder. See :class:`Indexer` for the arguments.

    Returns:
        What the run did.

    Raises:
        PHSError: The folder does not exist, the index belongs to another model (``IndexMismatchError``),
            another run holds it (``IndexBusyError``), or the data directory is read-only.
    """
    return Indexer(
        folder,
        engine,
        batch_size=batch_size,
        workers=workers,
        rebuild=rebuild,
        retry_failed=retry_failed,
        approx_threshold=approx_threshold,
    ).run(progress=progress, cancel=cancel)
