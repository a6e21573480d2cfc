"""The photo library index: scan a folder, store features and the Query-DB cache, search them.

Qt-free. The pieces:

* :mod:`core.index.scan` walks a folder (generator, read-only, hidden/system folders skipped, symlink loops
  survived).
* :mod:`core.index.store` holds the on-disk format (SQLite WAL as the source of truth, float16 memory-mapped
  QD cache, JSON sidecar, atomic writes) and states the crash-safety invariant.
* :mod:`core.index.vectors` keeps the FAISS index (ids = SQLite row ids) in sync with SQLite.
* :mod:`core.index.library` opens one index (:class:`PhotoIndex`) for a folder and a model.
* :mod:`core.index.indexer` indexes incrementally (mark and sweep, decode-ahead pool, batched commits).
* :mod:`core.index.search` answers Query-Only and two-stage Query-DB searches.

One index per (photo folder, model) lives in ``core.paths.data_dir() / "indexes" / <key>``; nothing is ever
written inside the photo folder.
"""

from core.index.indexer import FailedFile, Indexer, IndexProgress, IndexReport, index_folder
from core.index.library import IndexDims, PhotoIndex
from core.index.scan import ScannedFile, scan_folder
from core.index.search import Searcher, SearchHit, query_feature, search_folder
from core.index.store import (
    IndexBusyError,
    IndexMissingError,
    IndexReadOnlyError,
    index_dir_for,
    list_indexes,
)

__all__ = [
    "FailedFile",
    "IndexBusyError",
    "IndexDims",
    "IndexMissingError",
    "IndexProgress",
    "IndexReadOnlyError",
    "IndexReport",
    "Indexer",
    "PhotoIndex",
    "ScannedFile",
    "SearchHit",
    "Searcher",
    "index_dir_for",
    "index_folder",
    "list_indexes",
    "query_feature",
    "scan_folder",
    "search_folder",
]
