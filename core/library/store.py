"""On-disk storage of one photo index: SQLite (source of truth), the Query-DB cache, the JSON sidecar.

Layout of an index directory ``data_dir()/indexes/<key>/`` (``key`` hashes the photo folder's real path and
the model identity, so there is one index per folder and model):

``index.json``
    The sidecar: format and schema version, the photo folder, the engine fingerprint (model, weights,
    preprocessing, dims), the metric, the QD cache layout and the state of the FAISS file (kind, the
    SQLite generation it reflects, the database id it belongs to). Replaced atomically.
``files.sqlite``
    SQLite in WAL mode, ``PRAGMA user_version`` = schema version. Table ``files``: one row per photo
    (relative path, size, mtime, content hash, status ``done``/``failed``, error, the L2-normalised float32
    feature, the QD cache slot, the generation that wrote it, timestamps). Table ``meta``: the generation
    counter and the database id.
``qd_cache.f16``
    The Query-DB cache: a raw float16 array ``(capacity, D + h * d_h)`` memory-mapped, row ``slot`` holding
    ``X_cls`` (D,) followed by ``O[CLS]`` (h, d_h) flattened.
``vectors.faiss``
    The FAISS index (ids = SQLite row ids), a cache derived from the ``feature`` column (see
    :mod:`core.library.vectors`).
``writer.lock``
    Held (``flock``) by the one indexing run allowed at a time; released by the OS if that process dies.

Crash-safety invariant (what makes a SIGKILL anywhere recoverable and loses at most the batch in flight):

1. SQLite is the only source of truth. A photo is indexed iff its row has ``status = 'done'``; such a row
   carries its feature and a QD slot whose data was written **and flushed before** the transaction that
   created the row committed. One transaction per batch, which also bumps ``meta.generation``.
2. A batch only ever writes QD rows into slots no committed row references (fresh or freed by an earlier
   commit), so an interrupted batch cannot damage committed data; its slots are simply free again.
3. The FAISS file is derived: on open, the searcher and the indexer reconcile it with SQLite (add rows
   missing from it or written after the generation it reflects, remove ids no longer done), or rebuild it
   from the ``feature`` column when it is missing, unreadable, from another database or of another kind.
   It is written with the atomic write below and the sidecar is updated after it, so the sidecar never
   claims a newer generation than the file holds.
4. Every file replacement is atomic: a temporary file in the same directory, fsync, ``os.replace``, fsync
   of the directory.

So after any crash the next open has FAISS count = done rows, no duplicate and no orphan id.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IndexMismatchError, NotReadyError, PHSError
from core.fileio import atomic_replace, atomic_write_bytes, atomic_write_json, fsync_dir  # noqa: F401 (re-exported)
from core.paths import data_dir

SCHEMA_VERSION = 1
FORMAT = "phs-desktop photo index"
SIDECAR = "index.json"
DB_FILE = "files.sqlite"
QD_FILE = "qd_cache.f16"
FAISS_FILE = "vectors.faiss"
LOCK_FILE = "writer.lock"
METRIC = "inner_product"  # on L2-normalised features, i.e. cosine similarity

#: Fingerprint keys that name *which* model an index belongs to (its directory); every other key
#: (preprocessing, dims, ITAE...) must also match, else the index is refused with a sentence.
IDENTITY_KEYS: tuple[str, ...] = ("model", "name", "timm_name", "weights", "weights_id")

#: Fingerprint keys an index may differ in from the engine that opens it. ``precision`` (what the photos
#: were encoded in): a bf16 index answers fp32 queries and the reverse (features agree to a cosine of about
#: 0.999, measured by bench/bench_scale.py); an indexer extends an index in the index's own precision
#: (see :meth:`core.library.photo_index.PhotoIndex.open`).
COMPATIBLE_KEYS: tuple[str, ...] = ("precision",)

_FLOAT16_MAX = float(np.finfo(np.float16).max)


class IndexMissingError(NotReadyError):
    """No index exists yet for a folder and model."""


class IndexBusyError(PHSError):
    """Another indexing run holds the index (one writer at a time)."""


class IndexReadOnlyError(PHSError):
    """The index directory cannot be written (search still works)."""


class IndexDiskFullError(PHSError):
    """The disk holding the index is full (what was committed before is kept)."""


class IndexStorageError(PHSError):
    """The disk holding the index failed (an input/output error)."""


class IndexDamagedError(IndexMismatchError):
    """A file of the index is damaged (not a database, malformed, a folder in its place, garbage rows)."""


#: Seconds SQLite waits for a lock held by another connection before giving up.
BUSY_TIMEOUT_S = 30.0
#: Below this many free bytes an SQLite "disk I/O error" is reported as a full disk.
_NEARLY_FULL = 4 << 20
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _index_command(folder: str | Path | None) -> str:
    return f"`phs index {folder_key(folder)}`" if folder is not None else "`phs index`"


def storage_error(err: BaseException, directory: Path, folder: str | Path | None = None) -> PHSError | None:
    """The one-sentence error for a storage failure of the index in ``directory``, or ``None``.

    Recognises a full disk (``ENOSPC``, SQLite's "database or disk is full", FAISS's "No space left on
    device"), a read-only file system or folder, a database locked by another program, a damaged database
    and an input/output error, from :class:`OSError`, :class:`sqlite3.Error` and the ``RuntimeError`` FAISS
    raises for a failed write.
    """
    if isinstance(err, PHSError) or not isinstance(err, (OSError, sqlite3.Error, RuntimeError)):
        return None
    low = str(err).lower()
    code = err.errno if isinstance(err, OSError) else None
    again = _index_command(folder)
    if code in _NO_SPACE or any(w in low for w in ("no space left", "database or disk is full", "quota exceeded")):
        return IndexDiskFullError(
            f"The disk holding the index ({directory}) is full: free some space and run {again} again "
            "(the photos indexed so far are kept and searchable)."
        )
    if code in _READ_ONLY or "readonly database" in low or "read-only file system" in low:
        return IndexReadOnlyError(
            f"The index folder {directory} is read-only: searching works, indexing needs write access to it "
            "(or set PHS_DATA_DIR to a writable folder)."
        )
    if "database is locked" in low or "database table is locked" in low:
        return IndexBusyError(
            f"Another program holds the index database in {directory} locked: close it or wait for it to "
            "finish, then try again."
        )
    if isinstance(err, sqlite3.DatabaseError) and ("malformed" in low or "not a database" in low):
        return IndexDamagedError(
            f"The index database in {directory} is damaged ({err}): run {again} to move it aside and rebuild "
            "the index."
        )
    if "disk i/o error" in low or code == errno.EIO:
        try:
            full = shutil.disk_usage(directory).free < _NEARLY_FULL
        except OSError:
            full = False
        if full:
            return storage_error(OSError(errno.ENOSPC, "No space left on device"), directory, folder)
        return IndexStorageError(
            f"The disk holding the index ({directory}) reported an input/output error: check it, then run "
            f"{again} again."
        )
    return None


@contextlib.contextmanager
def storage_errors(directory: Path, folder: str | Path | None = None) -> Iterator[None]:
    """Turn the storage failures :func:`storage_error` knows into their one-sentence errors."""
    try:
        yield
    except (OSError, sqlite3.Error, RuntimeError) as err:
        mapped = storage_error(err, Path(directory), folder)
        if mapped is None:
            raise
        raise mapped from err


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a :class:`Database` method under :func:`storage_errors` of its folder."""

    @functools.wraps(method)
    def wrapper(self: Database, *args: Any, **kwargs: Any) -> Any:
        with storage_errors(self.path.parent, self.folder):
            return method(self, *args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------------- atomic I/O
# The writers live in core.fileio (one implementation for every file PHS desktop replaces).
def remove_stale_temps(directory: Path) -> None:
    """Delete temporary files left by an interrupted atomic write."""
    for p in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


# ------------------------------------------------------------------------------------------ locating
def normalize_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Return the fingerprint as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def model_identity(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The part of a fingerprint that names the model and weights (the whole one if no key is known)."""
    fp = normalize_fingerprint(fingerprint)
    ident = {k: fp[k] for k in IDENTITY_KEYS if k in fp}
    return ident or fp


def model_label(fingerprint: dict[str, Any]) -> str:
    """A short human name of the model in a fingerprint, for messages."""
    for key in ("model", "name", "timm_name"):
        if key in fingerprint:
            return str(fingerprint[key])
    return "an unnamed model"


def folder_key(folder: str | Path) -> str:
    """The canonical form of a photo folder: its absolute real path."""
    return os.path.realpath(os.path.abspath(os.fspath(folder)))


def indexes_root() -> Path:
    """The folder holding every index (``data_dir()/indexes``)."""
    return data_dir() / "indexes"


def index_dir_for(folder: str | Path, fingerprint: dict[str, Any]) -> Path:
    """The directory of the index of ``folder`` for the model named in ``fingerprint``."""
    blob = json.dumps({"folder": folder_key(folder), "model": model_identity(fingerprint)}, sort_keys=True)
    return indexes_root() / hashlib.sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    """Return the sidecar of an index directory, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads((Path(directory) / SIDECAR).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def list_indexes(folder: str | Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """List ``(directory, sidecar)`` of every index, or of those of one photo folder."""
    root = indexes_root()
    if not root.is_dir():
        return []
    want = folder_key(folder) if folder is not None else None
    found = []
    for d in sorted(root.iterdir()):
        side = read_sidecar(d)
        if side is None or side.get("format") != FORMAT:
            continue
        if want is None or side.get("folder") == want:
            found.append((d, side))
    return found


def fingerprint_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the fingerprint entries that differ between an index and an engine (but :data:`COMPATIBLE_KEYS`)."""
    a, b = normalize_fingerprint(stored), normalize_fingerprint(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in COMPATIBLE_KEYS)


def check_sidecar(sidecar: dict[str, Any], fingerprint: dict[str, Any], folder: str | Path) -> None:
    """Refuse an index built by another format, schema, model or preprocessing.

    Raises:
        IndexMismatchError: A sentence saying what differs and how to rebuild the index.
    """
    model = model_label(fingerprint)
    rebuild = f"rebuild it with `phs index {folder_key(folder)} --model {model} --rebuild`"
    if sidecar.get("format") != FORMAT:
        raise IndexMismatchError(f"The index for {folder_key(folder)} is not a PHS desktop index; {rebuild}.")
    schema = int(sidecar.get("schema", -1))
    if schema > SCHEMA_VERSION:
        raise IndexMismatchError(
            f"The index for {folder_key(folder)} was written by a newer PHS desktop (schema {schema}, this "
            f"version reads up to {SCHEMA_VERSION}); upgrade PHS desktop or {rebuild}."
        )
    diff = fingerprint_differences(sidecar.get("fingerprint", {}), fingerprint)
    if diff:
        raise IndexMismatchError(
            f"The index for {folder_key(folder)} was built with another model or preprocessing "
            f"({', '.join(diff)} differ from {model}); {rebuild}."
        )


# --------------------------------------------------------------------------------------------- lock
class WriterLock:
    """An exclusive, non-blocking lock on ``writer.lock`` that the OS drops when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            IndexBusyError: Another process (or another indexer in this one) holds it.
        """
        try:
            fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        except IsADirectoryError:
            # Not ours to keep: a folder where the lock file belongs (left by a tool or a bad copy).
            # An empty one is removed; anything else is refused with a sentence.
            try:
                os.rmdir(self.path)
            except OSError:
                raise IndexDamagedError(
                    f"The lock file {self.path} is a folder that is not empty: move it away, then try again."
                ) from None
            fh = open(self.path, "a+b")  # noqa: SIM115
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise IndexBusyError(
                "Another indexing run is updating this index; wait for it to finish (searching works meanwhile)."
            ) from None
        self._fh = fh

    def release(self) -> None:
        """Release the lock (closing the file releases it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ------------------------------------------------------------------------------------------ QD cache
class QDCache:
    """The Query-DB cache: float16 rows ``[X_cls (D,) | O[CLS] (h*d_h,)]`` addressed by slot, memory-mapped.

    Args:
        path: The ``qd_cache.f16`` file.
        embed_dim: ``D``.
        num_heads: ``h``.
        head_dim: ``d_h`` (``h * d_h == D`` for a plain ViT, not assumed).
        writable: Open for writing (the indexer) or read-only (searchers).
    """

    def __init__(self, path: Path, embed_dim: int, num_heads: int, head_dim: int, *, writable: bool) -> None:
        self.path = Path(path)
        self.embed_dim, self.num_heads, self.head_dim = int(embed_dim), int(num_heads), int(head_dim)
        self.row_dim = self.embed_dim + self.num_heads * self.head_dim
        self.row_bytes = 2 * self.row_dim
        self.writable = writable
        self.repair_hint = "run `phs index` on the folder to repair it"
        self._mm: np.memmap | None = None
        self._capacity = 0
        # The writer writes through this descriptor (pwrite), never through the memory map: a store into
        # a mapped page the file system cannot back (a full disk) is a SIGBUS that kills the process,
        # where a write() fails with ENOSPC.
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644) if writable else None
        self._map()

    @property
    def capacity(self) -> int:
        """Number of slots the file holds now."""
        return self._capacity

    def _map(self) -> None:
        self._mm = None
        try:
            size = os.fstat(self._fd).st_size if self._fd is not None else self.path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            size = 0
        self._capacity = size // self.row_bytes
        if self._capacity:
            self._mm = np.memmap(self.path, dtype=np.float16, mode="r", shape=(self._capacity, self.row_dim))

    def ensure_capacity(self, n_slots: int) -> None:
        """Grow the file so that slots ``0 .. n_slots-1`` exist, reserving the disk space for them.

        Raises:
            OSError: ``ENOSPC`` when the disk cannot hold even ``n_slots`` rows (the file keeps its size).
        """
        if n_slots <= self._capacity:
            return
        assert self._fd is not None
        old_size = self._capacity * self.row_bytes
        self._mm = None
        try:
            try:
                _reserve(self._fd, old_size, max(n_slots, 2 * self._capacity, 1024) * self.row_bytes)
            except OSError as err:
                if err.errno not in _NO_SPACE:
                    raise
                _reserve(self._fd, old_size, n_slots * self.row_bytes)  # no room to grow ahead: just enough
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, old_size)
            self._map()
            raise
        self._map()

    @staticmethod
    def pack(x_cls: np.ndarray, o_cls: np.ndarray) -> np.ndarray:
        """Pack ``x_cls`` (B, D) and ``o_cls`` (B, h, d_h) into float16 rows (B, D + h*d_h), clipped to range."""
        x = np.asarray(x_cls, dtype=np.float32)
        o = np.asarray(o_cls, dtype=np.float32).reshape(len(x), -1)
        rows = np.concatenate([x, o], axis=1)
        return np.clip(rows, -_FLOAT16_MAX, _FLOAT16_MAX).astype(np.float16)

    def write(self, slots: np.ndarray, rows: np.ndarray) -> None:
        """Write float16 ``rows`` (n, row_dim) into ``slots`` (n,); call :meth:`flush` before committing.

        Raises:
            OSError: ``ENOSPC`` and friends, as the file system reports them (never a signal).
        """
        if not self.writable or self._fd is None:
            raise IndexReadOnlyError("This index is open for searching only.")
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) == 0:
            return
        self.ensure_capacity(int(slots.max()) + 1)
        data = np.ascontiguousarray(rows, dtype=np.float16)
        for slot, row in zip(slots.tolist(), data):
            buf = memoryview(row.tobytes())
            offset = slot * self.row_bytes
            while buf:
                n = os.pwrite(self._fd, buf, offset)
                buf, offset = buf[n:], offset + n

    def flush(self) -> None:
        """Make written rows durable (fsync) before the SQLite commit that references them."""
        if self._fd is not None:
            os.fsync(self._fd)

    def valid_rows(self, slots: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Which ``slots`` hold a plausible row: inside the file, every value finite, not all zero.

        A lost or truncated file (slots past its end), a file regrown over a hole (zero rows) or one
        overwritten with garbage (NaN and infinities) is found here, so the indexer re-encodes those photos.

        Returns:
            (n,) bool, in the order of ``slots``.
        """
        slots = np.asarray(slots, dtype=np.int64)
        self._map()
        ok = (slots >= 0) & (slots < self._capacity)
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(slots[idx], kind="stable")]  # sequential reads
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            assert self._mm is not None
            rows = np.asarray(self._mm[slots[part]])
            ok[part] = np.isfinite(rows).all(axis=1) & (rows != 0).any(axis=1)
        return ok

    def read(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Read slots as float32.

        Args:
            slots: (n,) slot numbers.

        Returns:
            ``x_cls`` (n, D) and ``o_cls`` (n, h, d_h), float32.
        """
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) and int(slots.max()) >= self._capacity:
            self._map()  # the indexer grew the file since we mapped it
        if len(slots) and int(slots.max()) >= self._capacity:
            raise IndexDamagedError(
                f"The Query-DB cache of this index is shorter than its database: {self.repair_hint}."
            )
        if not len(slots):
            return (
                np.zeros((0, self.embed_dim), np.float32),
                np.zeros((0, self.num_heads, self.head_dim), np.float32),
            )
        assert self._mm is not None
        rows = np.asarray(self._mm[slots], dtype=np.float32)
        if not np.isfinite(rows).all():
            raise IndexDamagedError(f"The Query-DB cache of this index holds damaged rows: {self.repair_hint}.")
        return rows[:, : self.embed_dim], rows[:, self.embed_dim :].reshape(-1, self.num_heads, self.head_dim)

    def close(self) -> None:
        """Drop the mapping and close the file."""
        self._mm = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _reserve(fd: int, old_size: int, size: int) -> None:
    """Make the file ``size`` bytes long with its blocks allocated (``posix_fallocate``), so later writes
    cannot run out of space; where the file system cannot allocate ahead, just set the size."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, old_size, size - old_size)
            return
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1), errno.ENOSYS):
                raise
    os.ftruncate(fd, size)


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class FileRecord:
    """One row of the ``files`` table (without the feature).

    Attributes:
        id: SQLite row id = FAISS id.
        rel: Path relative to the photo folder, POSIX separators.
        size: Size in bytes when indexed.
        mtime_ns: Modification time (ns) when indexed.
        hash: BLAKE2b-128 hex digest of the content, ``None`` if the file could not be read.
        status: ``"done"`` or ``"failed"``.
        error: The reason for ``"failed"``, one sentence.
        slot: QD cache slot (``None`` unless done).
        gen: Generation of the commit that wrote the row.
    """

    id: int
    rel: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str
    error: str | None
    slot: int | None
    gen: int


def encode_rel(rel: str) -> bytes:
    """Store a relative path as bytes so that non-UTF-8 names (surrogate escapes) round-trip."""
    return os.fsencode(rel)


def decode_rel(blob: bytes) -> str:
    """Inverse of :func:`encode_rel`."""
    return os.fsdecode(bytes(blob))


_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    feature BLOB,
    slot INTEGER UNIQUE,
    gen INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    CHECK ((status = 'done') = (feature IS NOT NULL AND slot IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash) WHERE status = 'done';
CREATE INDEX IF NOT EXISTS files_gen ON files(gen);
"""

#: ``MIGRATIONS[v]`` upgrades a database from schema ``v`` to ``v + 1`` (run inside one transaction).
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1}


class Database:
    """The SQLite side of an index (WAL). The indexer writes, any number of searchers read meanwhile.

    Args:
        path: ``files.sqlite``.
        writable: Open read-write (creating and migrating) or read-only (``mode=ro``, falling back to
            ``immutable=1`` where the directory is read-only and no WAL is pending).
        folder: The photo folder, named in error messages.
    """

    def __init__(self, path: Path, *, writable: bool, folder: str | Path | None = None) -> None:
        self.path = Path(path)
        self.writable = writable
        self.folder = folder
        self.conn: sqlite3.Connection | None = None
        try:
            with storage_errors(self.path.parent, folder):
                if self.path.is_dir():
                    raise IndexDamagedError(
                        f"The index database {self.path} is a folder, not a database: run "
                        f"{_index_command(folder)} to move it aside and rebuild the index."
                    )
                self._open()
        except BaseException:
            if self.conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.close()
            raise

    def _open(self) -> None:
        writable = self.writable
        if writable:
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            self.conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            # Damage anywhere in the file is found now, by the writer, rather than halfway through a run.
            check = self.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
            self._migrate()
        else:
            if not self.path.exists():
                raise IndexMissingError(f"The index database {self.path} is missing; run `phs index` again.")
            uri = self.path.resolve().as_uri()
            try:
                self.conn = sqlite3.connect(
                    f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                self.conn = sqlite3.connect(
                    f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
                )
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise IndexMismatchError(
                    f"The index database {self.path} has schema {version}, this version needs {SCHEMA_VERSION}; "
                    "run `phs index` on the folder to upgrade it."
                )
            self.conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise IndexMismatchError(
                f"The index database {self.path} was written by a newer PHS desktop (schema {version}); "
                "upgrade PHS desktop or rebuild the index with --rebuild."
            )
        while version < SCHEMA_VERSION:
            with self.transaction():
                for stmt in MIGRATIONS[version].split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                version += 1
                self.conn.execute(f"PRAGMA user_version = {version}")
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0')")
            self.conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('db_uuid', ?)", (uuid.uuid4().hex,)
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error, also when ``COMMIT`` itself fails).

        A failure is raised as itself (SQLite may have rolled back already, e.g. on a full disk), never
        masked by a failing ``ROLLBACK``.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise

    @_translated
    def meta(self, key: str) -> str | None:
        """Read a ``meta`` value."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def generation(self) -> int:
        """The commit counter (bumped by every batch and sweep)."""
        return int(self.meta("generation") or 0)

    @property
    def db_uuid(self) -> str:
        """A random id of this database, so a FAISS file from a deleted database is never trusted."""
        return self.meta("db_uuid") or ""

    def next_generation(self, conn: sqlite3.Connection) -> int:
        """Inside a transaction: bump and return the generation."""
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    @_translated
    def records(self) -> list[FileRecord]:
        """Every row, without features."""
        cur = self.conn.execute("SELECT id, path, size, mtime_ns, hash, status, error, slot, gen FROM files")
        return [FileRecord(r[0], decode_rel(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in cur]

    @_translated
    def counts(self) -> dict[str, int]:
        """Number of rows per status."""
        return dict(self.conn.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())

    @_translated
    def done_ids(self) -> np.ndarray:
        """Ids of the done rows, (n,) int64 sorted."""
        rows = self.conn.execute("SELECT id FROM files WHERE status = 'done' ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    @_translated
    def features(
        self, ids: Iterable[int] | None = None, *, since_gen: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read stored features of done rows.

        Args:
            ids: Restrict to these row ids (None: all done rows).
            since_gen: Restrict to rows written after this generation.

        Returns:
            ``ids`` (n,) int64 and ``features`` (n, Dout) float32 (L2-normalised).
        """
        sql = "SELECT id, feature FROM files WHERE status = 'done'"
        args: list[Any] = []
        if ids is not None:
            sql += " AND id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps([int(i) for i in ids]))
        if since_gen is not None:
            sql += " AND gen > ?"
            args.append(int(since_gen))
        rows = self.conn.execute(sql + " ORDER BY id", args).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        feats = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return out_ids, feats

    @_translated
    def lookup(self, ids: np.ndarray) -> dict[int, tuple[str, int]]:
        """Map row ids to ``(rel, slot)`` for done rows."""
        rows = self.conn.execute(
            "SELECT id, path, slot FROM files WHERE status = 'done' AND id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        ).fetchall()
        return {r[0]: (decode_rel(r[1]), r[2]) for r in rows}

    def close(self) -> None:
        """Close the connection (checkpointing the WAL when writable)."""
        if self.conn is None:
            return
        if self.writable:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()


def now() -> float:
    """Seconds since the epoch (row timestamps)."""
    return time.time()
