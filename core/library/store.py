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
    feature, the QD cache slot and the checksum of its row and owner, whether the last read failed for a
    reason that may pass (``retry``), the generation that wrote it, timestamps). Table ``meta``: the
    generation counter, the database id and a copy of the sidecar's description of the index (so a lost
    sidecar is rebuilt from the database).
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

from core.fileio import atomic_replace, atomic_write_bytes, atomic_write_json, fsync_dir
from core.library.database import (
    BUSY_TIMEOUT_S,
    MIGRATIONS,
    Database,
    FileRecord,
    decode_rel,
    encode_rel,
    now,
    qd_checksum,
)
from core.library.errors import (
    IndexBusyError,
    IndexDamagedError,
    IndexDiskFullError,
    IndexMissingError,
    IndexReadOnlyError,
    IndexStorageError,
    storage_error,
    storage_errors,
)
from core.library.qdcache import QDCache
from core.library.sidecar import (
    COMPATIBLE_KEYS,
    DB_FILE,
    FAISS_FILE,
    FORMAT,
    IDENTITY_KEYS,
    LOCK_FILE,
    METRIC,
    QD_FILE,
    SCHEMA_VERSION,
    SIDECAR,
    WriterLock,
    check_sidecar,
    fingerprint_differences,
    folder_key,
    index_dir_for,
    indexes_root,
    list_indexes,
    model_identity,
    model_label,
    normalize_fingerprint,
    read_sidecar,
    remove_stale_temps,
    sidecar_state,
)

__all__ = [
    "BUSY_TIMEOUT_S", "COMPATIBLE_KEYS", "DB_FILE", "FAISS_FILE", "FORMAT", "IDENTITY_KEYS", "LOCK_FILE",
    "METRIC", "MIGRATIONS", "QD_FILE", "SCHEMA_VERSION", "SIDECAR", "Database", "FileRecord",
    "IndexBusyError", "IndexDamagedError", "IndexDiskFullError", "IndexMissingError", "IndexReadOnlyError",
    "IndexStorageError", "QDCache", "WriterLock", "atomic_replace", "atomic_write_bytes", "atomic_write_json",
    "check_sidecar", "decode_rel", "encode_rel", "fingerprint_differences", "folder_key", "fsync_dir",
    "index_dir_for", "indexes_root", "list_indexes", "model_identity", "model_label", "normalize_fingerprint",
    "now", "qd_checksum", "read_sidecar", "remove_stale_temps", "sidecar_state", "storage_error", "storage_errors",
]  # fmt: skip
