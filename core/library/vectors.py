"""The FAISS side of an index: a cache derived from the SQLite ``feature`` column, ids = SQLite row ids.

Vectors are L2-normalised float32, so inner product = cosine similarity. Below
:data:`APPROX_THRESHOLD` vectors the index is exact (``IndexIDMap2`` over ``IndexFlatIP``); from there on an
HNSW graph (``IndexIDMap2`` over ``IndexHNSWFlat``, inner product), the kind being recorded in the sidecar.
HNSW cannot remove vectors, so a removal or an update rebuilds it from SQLite (the indexer saves the file at
the end of each run, so searchers normally load a file that needs no change).

:func:`sync_vectors` is the only way an index is brought up to date, for the indexer and for searchers alike:
it compares the FAISS ids with the done rows of SQLite and the generation the FAISS data reflects, and adds,
removes or rebuilds accordingly. Hence a FAISS file that is stale, from a crashed run, truncated or missing
is never a problem, only extra work.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from core.library.store import Database, atomic_replace

#: Number of vectors from which an approximate (HNSW) index replaces the exact one.
APPROX_THRESHOLD = 250_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
#: OpenMP threads FAISS uses for a single query. One thread answers a single query over 100k vectors in
#: a few ms; FAISS's default (all cores) spends more time waking threads than searching, badly so on a busy
#: machine (measured by bench/bench_index.py). Batches of queries keep FAISS's default.
SINGLE_QUERY_THREADS = 1


def choose_kind(n: int, threshold: int = APPROX_THRESHOLD) -> str:
    """``"flat"`` (exact) below ``threshold`` vectors, else ``"hnsw"``."""
    return "hnsw" if n >= threshold else "flat"


def gpu_available() -> bool:
    """Whether this FAISS build has GPU support and sees a GPU (``faiss-gpu``)."""
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


class VectorIndex:
    """An ``IndexIDMap2`` of L2-normalised features.

    Args:
        dim: Feature dimension ``Dout``.
        kind: ``"flat"`` or ``"hnsw"``.
        index: An existing index to wrap (as read from a file), else a new empty one is made.
    """

    def __init__(self, dim: int, kind: str = "flat", index: faiss.Index | None = None) -> None:
        self.dim = int(dim)
        self.kind = kind
        if index is None:
            if kind == "hnsw":
                inner = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
                inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            elif kind == "flat":
                inner = faiss.IndexFlatIP(self.dim)
            else:
                raise ValueError(f"unknown FAISS index kind {kind!r}")
            index = faiss.IndexIDMap2(inner)
        self.index = index
        self._gpu: faiss.Index | None = None

    @property
    def ntotal(self) -> int:
        """Number of vectors."""
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """The stored ids, (ntotal,) int64, in insertion order."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)

    def add(self, ids: np.ndarray, feats: np.ndarray) -> None:
        """Add ``feats`` (n, dim) float32 under ``ids`` (n,) int64."""
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(feats, np.float32), np.ascontiguousarray(ids, np.int64)
            )
            self._gpu = None

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (flat only; an HNSW index is rebuilt instead)."""
        if len(ids):
            if self.kind != "flat":
                raise RuntimeError("HNSW indexes cannot remove vectors; rebuild instead")
            self.index.remove_ids(np.ascontiguousarray(ids, np.int64))
            self._gpu = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products.

        Args:
            queries: (m, dim) float32, L2-normalised.
            k: Number of neighbours (clipped to ``ntotal``).

        Returns:
            ``scores`` (m, k') float32 best first and ``ids`` (m, k') int64, ``k' = min(k, ntotal)``.
        """
        k = min(int(k), self.ntotal)
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        index = self.index
        if self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        elif gpu_available():  # pragma: no cover - needs faiss-gpu and a GPU
            if self._gpu is None:
                with contextlib.suppress(Exception):
                    self._gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self.index)
            index = self._gpu or self.index
        if len(q) == 1 and SINGLE_QUERY_THREADS:
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(SINGLE_QUERY_THREADS)
            try:
                scores, ids = index.search(q, k)
            finally:
                faiss.omp_set_num_threads(before)
        else:
            scores, ids = index.search(q, k)
        return scores, ids

    def save(self, path: Path) -> None:
        """Write the index atomically (temp file in the same folder, fsync, rename, fsync folder)."""
        atomic_replace(Path(path), lambda tmp: faiss.write_index(self.index, tmp))

    @classmethod
    def load(cls, path: Path, dim: int, kind: str) -> VectorIndex | None:
        """Read a saved index; ``None`` when missing, unreadable or not of the expected dim and kind."""
        try:
            index = faiss.read_index(os.fspath(path))
        except Exception:  # missing or damaged file: the caller rebuilds from SQLite
            return None
        if not isinstance(index, faiss.IndexIDMap2) and "IDMap2" not in type(index).__name__:
            return None
        if index.d != dim:
            return None
        inner = faiss.downcast_index(index.index)
        actual = (
            "hnsw"
            if isinstance(inner, faiss.IndexHNSW)
            else "flat"
            if isinstance(inner, faiss.IndexFlat)
            else "?"
        )
        if actual != kind:
            return None
        return cls(dim, kind, index)

    @classmethod
    def build(cls, dim: int, kind: str, ids: np.ndarray, feats: np.ndarray) -> VectorIndex:
        """A new index holding ``feats`` (n, dim) under ``ids`` (n,)."""
        vi = cls(dim, kind)
        if len(ids):
            vi.add(ids, feats)
        return vi


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_vectors` did.

    Attributes:
        generation: The SQLite generation the index now reflects.
        added: Vectors added.
        removed: Vectors removed.
        rebuilt: Whether the index was rebuilt from scratch.
    """

    generation: int
    added: int
    removed: int
    rebuilt: bool


def sync_vectors(
    vi: VectorIndex | None,
    vi_generation: int,
    db: Database,
    dim: int,
    *,
    threshold: int = APPROX_THRESHOLD,
) -> tuple[VectorIndex, SyncResult]:
    """Bring a FAISS index up to date with the done rows of SQLite.

    Reads one consistent snapshot of SQLite (a read transaction), so it is safe while an indexer commits.

    Args:
        vi: The index as loaded (or ``None``).
        vi_generation: The SQLite generation ``vi`` is known to contain at least (rows written later are
            re-added).
        db: The database.
        dim: Feature dimension.
        threshold: Vector count from which the index is HNSW.

    Returns:
        The updated (or rebuilt) index and what was done.
    """
    conn = db.conn
    conn.execute("BEGIN")
    try:
        generation = db.generation
        db_ids = db.done_ids()
        kind = choose_kind(len(db_ids), threshold)
        rebuild = vi is None or vi.kind != kind or vi.dim != dim or vi_generation > generation
        if not rebuild:
            assert vi is not None
            f_ids = vi.ids()
            if len(np.unique(f_ids)) != len(f_ids):
                rebuild = True
        if not rebuild:
            assert vi is not None
            stale = np.setdiff1d(f_ids, db_ids, assume_unique=True)
            ch_ids, ch_feats = db.features(since_gen=vi_generation)
            updated = np.intersect1d(ch_ids, f_ids, assume_unique=True)
            missing = np.setdiff1d(db_ids, f_ids, assume_unique=True)
            extra = np.setdiff1d(missing, ch_ids, assume_unique=True)
            to_remove = np.union1d(stale, updated)
            if len(to_remove) and vi.kind != "flat":
                rebuild = True
            else:
                if len(extra):  # rows the file should hold but lacks (damaged file): fetch them too
                    ex_ids, ex_feats = db.features(extra)
                    ch_ids = np.concatenate([ch_ids, ex_ids])
                    ch_feats = np.concatenate([ch_feats.reshape(-1, dim), ex_feats.reshape(-1, dim)])
                vi.remove(to_remove)
                vi.add(ch_ids, ch_feats.reshape(-1, dim))
                return vi, SyncResult(generation, len(ch_ids), len(to_remove), False)
        ids, feats = db.features()
        new = VectorIndex.build(dim, kind, ids, feats.reshape(-1, dim))
        return new, SyncResult(generation, len(ids), 0, True)
    finally:
        conn.execute("COMMIT")
