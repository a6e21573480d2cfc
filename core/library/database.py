"""The SQLite side of an index (``files.sqlite``, WAL): the ``files`` and ``meta`` tables, migrations."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IndexMismatchError
from core.library.errors import IndexDamagedError, IndexMissingError, _index_command, storage_errors
from core.library.sidecar import SCHEMA_VERSION

#: Seconds SQLite waits for a lock held by another connection before giving up.
BUSY_TIMEOUT_S = 30.0


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a :class:`Database` method under :func:`storage_errors` of its folder."""

    @functools.wraps(method)
    def wrapper(self: Database, *args: Any, **kwargs: Any) -> Any:
        with storage_errors(self.path.parent, self.folder):
            return method(self, *args, **kwargs)

    return wrapper


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
        retry: The last read failed for a reason that may pass (permission, input/output error, a file
            vanishing): every plain run tries it again. A ``"done"`` row with ``retry`` keeps its last good
            feature (searchable) and its old size and mtime, and ``error`` says why the re-read failed.
        qd_check: Checksum of the photo's Query-DB cache row and its owner (:func:`qd_checksum`), ``None``
            for rows written before checksums existed.
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
    retry: bool = False
    qd_check: int | None = None


def encode_rel(rel: str) -> bytes:
    """Store a relative path as bytes so that non-UTF-8 names (surrogate escapes) round-trip."""
    return os.fsencode(rel)


def decode_rel(blob: bytes) -> str:
    """Inverse of :func:`encode_rel`."""
    return os.fsdecode(bytes(blob))


def qd_checksum(rel: str, row: np.ndarray) -> int:
    """A signed 64-bit checksum of a Query-DB cache row (float16, (row_dim,)) and the photo owning it.

    Stored in the photo's SQLite row, it catches a cache row that is finite but not the photo's own (a
    backup that copied the database and the cache at different moments, a scrambled file).
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(encode_rel(rel))
    h.update(b"\0")
    h.update(np.ascontiguousarray(row, dtype=np.float16).tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


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

_SCHEMA_V2 = """
ALTER TABLE files ADD COLUMN retry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN qd_check INTEGER;
"""

#: ``MIGRATIONS[v]`` upgrades a database from schema ``v`` to ``v + 1`` (run inside one transaction).
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1, 1: _SCHEMA_V2}
#: Oldest schema a read-only open still reads (a searcher never migrates; missing columns read as defaults).
OLDEST_READABLE = 1
_COLUMNS_V1 = "id, path, size, mtime_ns, hash, status, error, slot, gen, 0, NULL"
_COLUMNS = "id, path, size, mtime_ns, hash, status, error, slot, gen, retry, qd_check"


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
        self.version = SCHEMA_VERSION
        #: One sentence when a read-only open could not see the newest committed changes (the database is
        #: locked by another program or its folder is read-only while changes wait in the WAL), else None.
        self.stale_warning: str | None = None
        try:
            with storage_errors(self.path.parent, folder):
                _check_regular(self.path, folder)
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
            self._open_read_only()

    def _open_read_only(self) -> None:
        uri = self.path.resolve().as_uri()
        try:
            self.conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as err:
            if self.conn is not None:
                self.conn.close()
            # Without write access to the folder or past another program's lock, only an immutable open
            # works; it cannot see changes still in the WAL, so say so when there are any.
            self.conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
            if _size(Path(f"{self.path}-wal")) > 0:
                why = "locked by another program" if "locked" in str(err).lower() else "not writable"
                self.stale_warning = (
                    f"The index database in {self.path.parent} is {why}, so its newest changes could not be "
                    "read: the results may miss the most recently indexed photos."
                )
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            raise IndexDamagedError(
                f"The index database {self.path} is empty (an interrupted first run or a damaged copy): run "
                f"{_index_command(self.folder)} to rebuild the index."
            )
        if not OLDEST_READABLE <= version <= SCHEMA_VERSION:
            raise IndexMismatchError(
                f"The index database {self.path} has schema {version}, this version reads {OLDEST_READABLE} to "
                f"{SCHEMA_VERSION}; upgrade PHS desktop or rebuild the index with `phs index --rebuild`."
            )
        self.version = version
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
        cols = _COLUMNS if self.version >= 2 else _COLUMNS_V1
        cur = self.conn.execute(f"SELECT {cols} FROM files")
        return [FileRecord(r[0], decode_rel(r[1]), *r[2:9], bool(r[9]), r[10]) for r in cur]

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
        return {i: (rel, slot) for i, (rel, slot, _) in self.lookup_checked(ids).items()}

    @_translated
    def lookup_checked(self, ids: np.ndarray) -> dict[int, tuple[str, int, int | None]]:
        """Map row ids to ``(rel, slot, qd_check)`` for done rows (``qd_check`` None where not recorded)."""
        check = "qd_check" if self.version >= 2 else "NULL"
        rows = self.conn.execute(
            f"SELECT id, path, slot, {check} FROM files WHERE status = 'done' AND id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        ).fetchall()
        return {r[0]: (decode_rel(r[1]), r[2], r[3]) for r in rows}

    @_translated
    def set_meta(self, key: str, value: str) -> None:
        """Write a ``meta`` value (writer only)."""
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        """Close the connection (checkpointing the WAL when writable)."""
        if self.conn is None:
            return
        if self.writable:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _check_regular(path: Path, folder: str | Path | None) -> None:
    """Refuse a folder, FIFO, socket or device where the database belongs (SQLite would block on a FIFO)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise IndexDamagedError(
            f"The index database {path} is {kind}, not a database: run {_index_command(folder)} to move it "
            "aside and rebuild the index."
        )


def now() -> float:
    """Seconds since the epoch (row timestamps)."""
    return time.time()
