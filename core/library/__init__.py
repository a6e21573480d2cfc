"""The photo library index: scan a folder, store features and the Query-DB cache, search them.

Qt-free. The pieces:

* :mod:`core.library.scan` walks a folder (generator, read-only, hidden/system folders skipped, symlink loops
  survived).
* :mod:`core.library.store` describes the on-disk format (SQLite WAL as the source of truth, float16
  memory-mapped QD cache, JSON sidecar, atomic writes), states the crash-safety invariant and gathers the
  names of its parts: :mod:`~core.library.errors` (one-sentence errors), :mod:`~core.library.sidecar`
  (locating an index, the sidecar, the writer lock), :mod:`~core.library.qdcache` (the QD cache, rows
  checked against their checksums) and :mod:`~core.library.database` (SQLite, migrations).
* :mod:`core.library.repair` moves unusable index files aside (never deletes them) and rebuilds a lost
  sidecar from the database.
* :mod:`core.library.vectors` keeps the FAISS index (ids = SQLite row ids) in sync with SQLite.
* :mod:`core.library.photo_index` opens one index (:class:`PhotoIndex`) for a folder and a model.
* :mod:`core.library.indexer` indexes incrementally (mark and sweep, decode-ahead pool, batched commits);
  :mod:`core.library.decode` is its bounded, non-blocking read-and-decode step and
  :mod:`core.library.reports` what a run reports.
* :mod:`core.search.searcher` answers Query-Only and two-stage Query-DB searches.

One index per (photo folder, model) lives in ``core.paths.data_dir() / "indexes" / <key>``; nothing is ever
written inside the photo folder.
"""

from core.library.indexer import (
    FailedFile,
    FolderVanishedError,
    Indexer,
    IndexProgress,
    IndexReport,
    index_folder,
)
from core.library.photo_index import IndexDims, PhotoIndex
from core.library.scan import ScannedFile, scan_folder
from core.library.store import (
    IndexBusyError,
    IndexDamagedError,
    IndexDiskFullError,
    IndexMissingError,
    IndexReadOnlyError,
    IndexStorageError,
    index_dir_for,
    list_indexes,
)

__all__ = [
    "FailedFile",
    "FolderVanishedError",
    "IndexBusyError",
    "IndexDamagedError",
    "IndexDiskFullError",
    "IndexDims",
    "IndexMissingError",
    "IndexProgress",
    "IndexReadOnlyError",
    "IndexReport",
    "IndexStorageError",
    "Indexer",
    "PhotoIndex",
    "ScannedFile",
    "index_dir_for",
    "index_folder",
    "list_indexes",
    "scan_folder",
]
