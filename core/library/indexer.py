"""Incremental, crash-safe indexing of a photo folder (mark and sweep).

One run:

1. **Scan** the folder (:func:`core.library.scan.scan_folder`) and compare each file's ``(size, mtime_ns)``
   with its row: unchanged files are skipped without being opened (also unchanged failures, unless
   ``retry_failed``), except those whose last read failed for a reason that may pass (permission,
   input/output error, a stale handle, a vanished file): those are retried by every run.
2. **Decode ahead**: a bounded pool of daemon threads (:mod:`core.library.decode`; a thread stuck in a read
   never keeps a cancelled run alive) reads each remaining regular file once, at most ``max_file_bytes``
   (checked before reading), hashes the bytes
   (BLAKE2b-128), and, unless that content is already indexed, decodes the same bytes
   (:func:`core.imageio.decode_image_bytes`, JPEG draft at the model input size) and preprocesses them, while
   the main thread runs the model. At most ``lookahead`` photos are in flight, so memory stays bounded.
3. **Encode and commit in batches**: every ``batch_size`` decoded photos are encoded together; their QD
   cache rows are written to free slots and flushed, then one SQLite transaction records the batch (with the
   photos reused by content hash and the failures gathered meanwhile). A renamed or duplicated photo copies
   the feature and QD row of an indexed photo with the same content instead of being decoded and encoded.
4. **Sweep**: when the scan completed (not cancelled), rows of files no longer present are deleted (except
   under folders that could not be listed this time, and never all rows because the folder looks empty,
   e.g. an unplugged drive). A sub-folder that vanished during the run is a deleted sub-folder; only the
   photo folder's own disappearance stops the run.
5. The FAISS file is brought up to date from SQLite and saved (also every ``save_interval_s`` during a long
   run, for searchers that start meanwhile).

A SIGKILL at any point loses at most the batch in flight; see :mod:`core.library.store` for why.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import PHSError
from core.imageio import MAX_FILE_BYTES
from core.library import store as st
from core.library.dates import fill_dates
from core.library.decode import DaemonPool, Prepared, content_hash, next_result, prepare
from core.library.photo_index import EngineLike, PhotoIndex
from core.library.reports import FailedFile, FolderVanishedError, IndexProgress, IndexReport
from core.library.scan import ScannedFile, scan_folder
from core.library.vectors import APPROX_THRESHOLD
from core.method.phs import database_features

__all__ = [
    "MAX_BATCH_SIZE", "MAX_WORKERS", "FailedFile", "FolderVanishedError", "IndexProgress", "IndexReport", "Indexer",
    "content_hash", "default_workers", "index_folder",
]  # fmt: skip

#: Most photos encoded per model call and committed per transaction, whatever batch size is asked for:
#: decoded inputs wait in memory until their batch is encoded, so a huge batch size would hold the whole
#: library in memory and make one all-or-nothing commit.
MAX_BATCH_SIZE = 128
#: Most decoding threads.
MAX_WORKERS = 64


@dataclass
class _Batch:
    encode: list[Prepared] = field(default_factory=list)
    reuse: list[Prepared] = field(default_factory=list)
    fail: list[Prepared] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.encode) + len(self.reuse) + len(self.fail)


def default_workers(engine: Any) -> int:
    """Decode threads for an engine: half the cores when it computes on the CPU, else all (at most 8)."""
    cores = os.cpu_count() or 2
    device = getattr(getattr(engine, "device", None), "type", "cpu")
    return max(1, min(8, cores // 2 if device == "cpu" else cores))


def _is_cancelled(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@dataclass
class _Plan:
    """What the scan found: the rows before the run, the files to process, what to leave alone."""

    rows: dict[str, st.FileRecord]
    todo: list[ScannedFile]
    seen: set[str]
    skipped: int
    bad_qd: set[str]
    scan_errors: list[tuple[str, str]]
    unsure: list[str]  # folders or files the scan could not read: their rows are never swept
    notes: list[str]
    settling: int = 0  # photos too young to read (still being written): left for a later run, not swept


@dataclass
class _Tally:
    """What the run did so far."""

    counts: dict[str, int] = field(default_factory=lambda: {"indexed": 0, "reused": 0, "failed": 0})
    failures: list[FailedFile] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # photos whose sub-folder vanished: deleted photos
    cancelled: bool = False
    vanished: bool = False


class Indexer:
    """Index one folder with one engine. Prefer :func:`index_folder`; this class exposes the steps.

    Args:
        folder: The photo folder (opened read-only).
        engine: The model (:class:`core.method.engine.PHSEngine` or anything with the same methods).
        batch_size: Photos per model call and per commit (at most :data:`MAX_BATCH_SIZE`, which bounds the
            memory of a run and the work a failed commit loses).
        workers: Decode threads (at most :data:`MAX_WORKERS`). Default: half the CPU cores when the model
            runs on the CPU (its own threads use the rest; more decode threads only oversubscribe the
            cores), else every core, at most 8.
        lookahead: Photos decoded ahead of the model at most (default ``2 * batch_size``).
        rebuild: Discard the existing index of this folder and model first.
        retry_failed: Retry files recorded as failed even when unchanged (those that failed for a reason
            that may pass are retried by every run anyway).
        approx_threshold: Vector count from which FAISS is HNSW instead of exact.
        save_interval_s: Seconds between FAISS saves during a run.
        max_file_bytes: Largest photo file read; larger ones are recorded as failed with their size.
        settle_s: Files whose modification time is less than this many seconds old are left for a later run
            (a photo still being copied in); their rows, if any, are kept as they are. 0 reads every file.
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
        max_file_bytes: int = MAX_FILE_BYTES,
        settle_s: float = 0.0,
    ) -> None:
        self.folder = Path(st.folder_key(folder))
        if not self.folder.is_dir():
            raise PHSError(f"The photo folder {self.folder} does not exist or is not a folder.")
        if batch_size < 1:
            raise PHSError("The batch size must be at least 1.")
        if workers is not None and workers < 1:
            raise PHSError(f"The number of decoding workers must be at least 1 (got {workers}).")
        if max_file_bytes < 1:
            raise PHSError(f"The largest photo file size must be at least 1 byte (got {max_file_bytes}).")
        self.engine = engine
        self.batch_size = min(int(batch_size), MAX_BATCH_SIZE)
        self.workers = min(int(workers or default_workers(engine)), MAX_WORKERS)
        self.lookahead = int(lookahead or max(2 * self.batch_size, 2 * self.workers))
        self.rebuild = rebuild
        self.retry_failed = retry_failed
        self.approx_threshold = approx_threshold
        self.save_interval_s = save_interval_s
        self.max_file_bytes = int(max_file_bytes)
        self.settle_ns = int(max(0.0, settle_s) * 1e9)
        self.draft_size = int(getattr(engine, "input_size", 0) or 0) or None
        self._bad_ids: list[int] = []

    # --------------------------------------------------------------------------------- pool work
    def _prepare(self, f: ScannedFile, known: set[str] | frozenset[str]) -> Prepared:
        """Read, hash and (unless the content is known) decode + preprocess one file. Runs in a pool thread."""
        return prepare(f, known, max_bytes=self.max_file_bytes, draft_size=self.draft_size,
                       preprocess=self.engine.preprocess, folder_gone=self._folder_gone)  # fmt: skip

    def _folder_gone(self) -> bool:
        """Whether the photo folder itself is no longer there (a vanished sub-folder is a deleted one)."""
        return not self.folder.is_dir()

    # ------------------------------------------------------------------------------------- the run
    def run(
        self,
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Index the folder.

        Args:
            progress: Called (in this thread) after every processed photo.
            cancel: Checked between photos and while waiting for one; when set, the run commits what it has
                and stops without sweeping (within a fraction of a second, whatever a decode thread is stuck on).

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
                report = self._run(index, progress, cancel, t0)
                if not report.cancelled:
                    fill_dates(index.db, self.folder, cancel)  # dates of new photos, or of an older index
                return report
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
        plan = self._plan(index)
        tally = self._process(index, plan, progress, cancel)
        if tally.vanished or (not tally.cancelled and self._folder_gone()):
            index.save_vectors()  # what was committed stays searchable, also for searchers started later
            n = db.counts().get("done", 0)
            raise FolderVanishedError(
                f"The photo folder {self.folder} disappeared during indexing (an unplugged drive, a lost network "
                f"share or a move): its {n} indexed photos are kept and searchable, and `phs index "
                f"{self.folder}` finishes the work once the folder is back."
            )
        removed = 0 if tally.cancelled else self._sweep(db, plan, tally.gone)
        index.save_vectors()
        waiting = db.conn.execute("SELECT count(*) FROM files WHERE retry = 1").fetchone()[0]
        c = tally.counts
        return IndexReport(
            folder=self.folder, index_dir=index.directory, seen=len(plan.seen) - len(tally.gone),
            indexed=c["indexed"], reused=c["reused"], skipped=plan.skipped, failed=c["failed"], removed=removed,
            cancelled=tally.cancelled, seconds=time.perf_counter() - t0, failures=tuple(tally.failures),
            scan_errors=tuple(plan.scan_errors), notes=tuple(plan.notes), waiting=int(waiting),
            done_total=int(db.counts().get("done", 0)), settling=plan.settling,
        )  # fmt: skip

    def _plan(self, index: PhotoIndex) -> _Plan:
        """Scan the folder and decide what to process: new, changed, damaged in the cache, waiting to retry."""
        rows = {r.rel: r for r in index.db.records()}
        notes: list[str] = list(index.notes)
        bad_qd = self._check_qd(index, [r for r in rows.values() if r.status == "done"])
        if bad_qd:
            notes.append(f"Re-encoded {len(bad_qd)} photos whose Query-DB cache rows were missing or damaged.")
        plan = _Plan(rows, [], set(), 0, bad_qd, [], [], notes)

        def on_error(path: Path, err: OSError) -> None:
            if isinstance(err, FileNotFoundError) and path != self.folder and not self._folder_gone():
                return  # deleted while the scan went on: its rows are swept like any deleted photo's
            rel = os.path.relpath(path, self.folder).replace(os.sep, "/")
            plan.scan_errors.append((rel, err.strerror or str(err)))
            plan.unsure.append("" if rel == "." else rel)

        young_after = time.time_ns() - self.settle_ns
        for f in scan_folder(self.folder, on_error=on_error):
            plan.seen.add(f.rel)  # a settling file counts as seen: its row is not swept
            if self.settle_ns and f.mtime_ns > young_after:
                plan.settling += 1
                continue
            r = rows.get(f.rel)
            unchanged = r is not None and r.size == f.size and r.mtime_ns == f.mtime_ns and f.rel not in bad_qd
            if unchanged and not r.retry and (r.status == "done" or not self.retry_failed):
                plan.skipped += 1
                continue
            plan.todo.append(f)
        # Free QD slots: gaps below the highest used slot, then fresh ones.
        used = sorted(r.slot for r in rows.values() if r.slot is not None)
        self._free: list[int] = sorted(set(range(used[-1] + 1)) - set(used)) if used else []
        heapq.heapify(self._free)
        self._next_slot = (used[-1] + 1) if used else 0
        return plan

    def _check_qd(self, index: PhotoIndex, done_rows: list[st.FileRecord]) -> set[str]:
        """Done rows whose Query-DB cache row is missing (a lost or truncated file), zero (regrown over a
        hole), not finite (garbage) or not the photo's own (checksum): their photos are re-encoded even when
        unchanged. Rows written before checksums existed get theirs now, once."""
        slots = np.array([r.slot for r in done_rows], dtype=np.int64)
        valid = index.qd.valid_rows(slots, [r.qd_check for r in done_rows], [r.rel for r in done_rows])
        bad = {r.rel for r, ok in zip(done_rows, valid) if not ok}
        self._bad_ids = [r.id for r in done_rows if r.rel in bad]
        legacy = [r for r, ok in zip(done_rows, valid) if ok and r.qd_check is None]
        if legacy:
            raw = index.qd.rows(np.array([r.slot for r in legacy], dtype=np.int64))
            with index.db.transaction() as conn:
                conn.executemany(
                    "UPDATE files SET qd_check = ? WHERE id = ?",
                    [(st.qd_checksum(r.rel, row), r.id) for r, row in zip(legacy, raw)],
                )
        return bad

    def _process(
        self,
        index: PhotoIndex,
        plan: _Plan,
        progress: Callable[[IndexProgress], None] | None,
        cancel: threading.Event | Callable[[], bool] | None,
    ) -> _Tally:
        """Read and decode ahead in the pool, encode and commit in batches."""
        known = {r.hash for r in plan.rows.values() if r.status == "done" and r.hash and r.rel not in plan.bad_qd}
        known_snapshot = frozenset(known)  # read by pool threads; the main thread keeps `known` current
        tally, batch = _Tally(), _Batch()
        total, done, t_start, last_save = len(plan.todo), 0, time.perf_counter(), time.perf_counter()

        def report(current: str | None) -> None:
            if progress is None:
                return
            elapsed = time.perf_counter() - t_start
            rate = done / elapsed if elapsed > 0 and done else 0.0
            eta = (total - done) / rate if rate > 0 else None
            c = tally.counts  # failures count as soon as they are known, not only once committed
            progress(IndexProgress(done, total, rate, eta, current, c["indexed"], c["reused"],
                                   c["failed"] + len(batch.fail), plan.skipped))  # fmt: skip

        report(None)
        pool = DaemonPool(self.workers, "phs-decode")
        pending: deque[Future[Prepared]] = deque()
        it = iter(plan.todo)
        try:
            while True:
                while len(pending) < self.lookahead and (f := next(it, None)) is not None:
                    pending.append(pool.submit(self._prepare, f, known_snapshot))
                if not pending:
                    break
                item = next_result(pending.popleft(), lambda: _is_cancelled(cancel))
                if item is None:
                    tally.cancelled = True
                    batch.encode.clear()  # not encoded yet: dropped, redone next run
                    break
                if item.vanished:
                    tally.vanished = True
                    break
                self._sort(item, batch, known, tally)
                if len(batch.encode) >= self.batch_size or len(batch) >= 4 * self.batch_size:
                    self._commit(index, batch, tally, known)
                    batch = _Batch()
                    if time.perf_counter() - last_save > self.save_interval_s:
                        index.save_vectors()
                        last_save = time.perf_counter()
                done += 1
                report(item.file.rel)
            self._commit(index, batch, tally, known)
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown()  # never waits for a thread stuck in a read
        return tally

    @staticmethod
    def _sort(item: Prepared, batch: _Batch, known: set[str], tally: _Tally) -> None:
        if item.gone:
            tally.gone.add(item.file.rel)
        elif item.error is not None:
            batch.fail.append(item)
        elif item.tensor is None or item.hash in known:
            batch.reuse.append(item)
        else:
            batch.encode.append(item)
            known.add(item.hash)  # a second copy in this run reuses this one

    def _sweep(self, db: st.Database, plan: _Plan, gone: set[str]) -> int:
        """Delete the rows of photos no longer there (never under folders the scan could not read, never all
        of them because the folder looks empty); a photo whose sub-folder vanished mid-run is deleted too."""
        parents = {rel.rpartition("/")[0] for rel in plan.seen if "/" in rel}
        lost = {d for d in parents if not (self.folder / d).is_dir()}  # sub-folders gone since the scan
        seen = {rel for rel in plan.seen - gone if rel.rpartition("/")[0] not in lost}
        doomed = [
            r
            for rel, r in plan.rows.items()
            if rel not in seen and not any(u == "" or rel == u or rel.startswith(u + "/") for u in plan.unsure)
        ]
        if doomed and not seen:
            plan.scan_errors.append((".", f"the folder looks empty; kept the {len(plan.rows)} indexed entries"))
            return 0
        if not doomed:
            return 0
        with db.transaction() as conn:
            db.next_generation(conn)
            conn.execute(
                "DELETE FROM files WHERE id IN (SELECT value FROM json_each(?))", (_json_ids(r.id for r in doomed),)
            )
        return len(doomed)

    # ------------------------------------------------------------------------------------ commit
    def _alloc_slot(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self._next_slot += 1
        return self._next_slot - 1

    def _commit(self, index: PhotoIndex, batch: _Batch, tally: _Tally, known: set[str]) -> None:
        """Encode a batch, write its QD rows, flush, then record it in one SQLite transaction."""
        if not len(batch):
            return
        db = index.db
        feats, qd_rows = self._vectors_of(index, batch)
        done_items = batch.encode + batch.reuse
        slots = np.array([self._alloc_slot() for _ in done_items], dtype=np.int64)
        if len(done_items):
            index.qd.write(slots, np.stack([qd_rows[p.hash] for p in done_items]))
            index.qd.flush()  # durable before the commit that references these slots
        t = st.now()
        freed: list[int] = []
        kept: set[str] = set()
        with db.transaction() as conn:
            gen = db.next_generation(conn)
            for p, slot in zip(done_items, slots):
                check = st.qd_checksum(p.file.rel, qd_rows[p.hash])
                freed += _upsert_file(conn, p, "done", None, feats[p.hash].astype(np.float32).tobytes(),
                                      int(slot), gen, t, check)  # fmt: skip
            for p in batch.fail:
                if p.transient and _keep_indexed(conn, p, t):
                    kept.add(p.file.rel)
                else:
                    freed += _upsert_file(conn, p, "failed", p.error, None, None, gen, t, None)
        for s in freed:  # free only once the commit that stopped referencing them has landed
            heapq.heappush(self._free, int(s))
        for p in batch.fail:
            tally.failures.append(FailedFile(p.file.rel, p.error or "", p.transient, p.file.rel in kept))
        known.update(p.hash for p in done_items if p.hash)
        tally.counts["indexed"] += len(batch.encode)
        tally.counts["reused"] += len(batch.reuse)
        tally.counts["failed"] += len(batch.fail)

    def _vectors_of(self, index: PhotoIndex, batch: _Batch) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Features ``hash -> (Dout,)`` and float16 QD rows ``hash -> (row_dim,)`` of a batch's photos:
        encoded, or copied by content hash from this batch or a committed row."""
        feats: dict[str, np.ndarray] = {}
        qd_rows: dict[str, np.ndarray] = {}
        if batch.encode:
            self._encode(batch.encode, feats, qd_rows)
        for p in list(batch.reuse):
            if p.hash in feats:
                continue
            r = index.db.conn.execute(
                "SELECT feature, slot FROM files WHERE hash = ? AND status = 'done' AND id NOT IN "
                "(SELECT value FROM json_each(?)) ORDER BY gen DESC LIMIT 1",
                (p.hash, _json_ids(self._bad_ids)),
            ).fetchone()
            if r is None:  # the source changed meanwhile: decode it here after all
                again = self._prepare(p.file, frozenset())
                batch.reuse.remove(p)
                if again.error is not None or again.tensor is None:
                    again.error = again.error or f"Cannot read {p.file.rel}: it vanished while it was indexed."
                    batch.fail.append(again)
                else:
                    self._encode([again], feats, qd_rows)
                    batch.encode.append(again)
                continue
            feats[p.hash] = np.frombuffer(r[0], dtype=np.float32)
            x, o = index.qd.read(np.array([r[1]]))
            qd_rows[p.hash] = st.QDCache.pack(x, o)[0]
        return feats, qd_rows

    def _encode(self, items: list[Prepared], feats: dict[str, np.ndarray], qd_rows: dict[str, np.ndarray]) -> None:
        enc = self.engine.encode_batch(_stack([p.tensor for p in items]))
        f = database_features(np.asarray(enc.features, dtype=np.float32))
        rows = st.QDCache.pack(enc.x_cls, enc.o_cls)
        for i, p in enumerate(items):
            feats[p.hash] = f[i]
            qd_rows[p.hash] = rows[i]


def _keep_indexed(conn: Any, p: Prepared, t: float) -> bool:
    """A photo indexed before whose re-read failed for a reason that may pass: keep its last good row
    (searchable, with its old size and mtime so the next run reads it again), note the error and mark it
    for retry. ``False`` when the photo has no indexed row."""
    cur = conn.execute(
        "UPDATE files SET error = ?, retry = 1, updated_at = ? WHERE path = ? AND status = 'done'",
        (p.error, t, st.encode_rel(p.file.rel)),
    )
    return cur.rowcount > 0


def _upsert_file(conn: Any, p: Any, status: str, error: str | None, feature: bytes | None, slot: int | None,
                 gen: int, t: float, qd_check: int | None) -> list[int]:  # fmt: skip
    """Insert or update one photo's row; return the QD slot its previous row held (to free after commit)."""
    rel = st.encode_rel(p.file.rel)
    retry = int(bool(getattr(p, "transient", False)) and status == "failed")
    old = conn.execute("SELECT slot FROM files WHERE path = ?", (rel,)).fetchone()
    conn.execute(
        "INSERT INTO files (path, size, mtime_ns, hash, status, error, feature, slot, gen, first_seen, updated_at, "
        "retry, qd_check) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
        "size = excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash, status = excluded.status, "
        "error = excluded.error, feature = excluded.feature, slot = excluded.slot, gen = excluded.gen, "
        "updated_at = excluded.updated_at, retry = excluded.retry, qd_check = excluded.qd_check",
        (rel, p.file.size, p.file.mtime_ns, p.hash, status, error, feature, slot, gen, t, t, retry, qd_check),
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
    max_file_bytes: int = MAX_FILE_BYTES,
    settle_s: float = 0.0,
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
        max_file_bytes=max_file_bytes,
        settle_s=settle_s,
    ).run(progress=progress, cancel=cancel)
