"""The FAISS side of an index: a cache derived from the SQLite ``feature`` column, ids = SQLite row ids.

Vectors are L2-normalised float32, so inner product = cosine similarity. Two kinds, chosen by the number of
vectors (:func:`choose_kind`), the kind being recorded in the sidecar:

``flat``
    Below :data:`APPROX_THRESHOLD`: exact (``IndexIDMap2`` over ``IndexFlatIP``). One query scans every
    vector, about 0.1 us each on one core: 2.5 ms at 25k.
``ivf``
    From there on: an inverted file over ``nlist`` k-means cells (:func:`ivf_nlist`, about ``4 sqrt(n)``)
    holding the vectors as float16 (``IndexIVFScalarQuantizer``, QT_fp16, no residual: scores within
    1e-3 of the exact ones), searched in :func:`ivf_nprobe` cells (a tenth of them). On clustered 768-d
    features (the synthetic ones of ``bench/bench_scale.py``) that keeps recall@100 against exact search
    above 0.95 at a tenth of the exact scan's cost. The ids live in the inverted lists themselves, so adds and
    removals are incremental; the cells are re-trained (a rebuild from SQLite) only when the collection
    has grown so much that :func:`ivf_nlist` doubled.

HNSW (the earlier approximate kind) was measured and dropped: no faster than IVF at the same recall, a
build of minutes at 1M on two cores, and no removal (every deletion rebuilt the graph).

:func:`sync_vectors` is the only way an index is brought up to date, for the indexer and for searchers alike:
it compares the FAISS ids with the done rows of SQLite and the generation the FAISS data reflects, and adds,
removes or rebuilds accordingly. Hence a FAISS file that is stale, from a crashed run, truncated or missing
is never a problem, only extra work.

On a machine with ``faiss-gpu`` and a GPU, searches run on a GPU copy of the index, kept in step with every
add and removal (a failed copy is logged and the CPU index answers).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from core.library.store import Database, atomic_replace

log = logging.getLogger(__name__)

#: Number of vectors from which the inverted file replaces the exact index. Measured with
#: bench/bench_scale.py (one thread, 768-d): the exact scan costs ~0.1 us per vector, so past ~25k it alone
#: exceeds the 2.5 ms a prompt edit may spend in FAISS to reach its top-100 within 5 ms.
APPROX_THRESHOLD = 25_000
#: k-means cells per sqrt(n); the training sample is ``IVF_TRAIN_PER_CELL`` points per cell.
IVF_CELLS_PER_SQRT_N = 4.0
IVF_TRAIN_PER_CELL = 40
IVF_TRAIN_ITERATIONS = 10
#: Fraction of the cells searched (at least :data:`IVF_MIN_NPROBE`); see :func:`ivf_nprobe`.
IVF_PROBE_FRACTION = 1 / 10
IVF_MIN_NPROBE = 16
#: OpenMP threads FAISS uses for a single query. One thread answers a single query over 100k vectors in
#: a few ms; FAISS's default (all cores) spends more time waking threads than searching, badly so on a busy
#: machine (measured by bench/bench_index.py). Batches of queries keep FAISS's default.
SINGLE_QUERY_THREADS = 1

KINDS: tuple[str, ...] = ("flat", "ivf")


def choose_kind(n: int, threshold: int = APPROX_THRESHOLD) -> str:
    """``"flat"`` (exact) below ``threshold`` vectors, else ``"ivf"``."""
    return "ivf" if n >= threshold else "flat"


def ivf_nlist(n: int) -> int:
    """Cells of an inverted file for ``n`` vectors: ``4 sqrt(n)``, at most ``n / 40`` (enough points to train).

    Measured at 1M clustered 768-d vectors (bench/bench_scale.py's features, 200 near-duplicate queries, one
    thread, a tenth of the cells searched): 2,000 cells gave recall@100 0.915 at p95 7.0 ms, 4,000 cells 0.954
    at p95 10.1 ms (0.936 / 6.1 ms at a twentieth); the finer cells cost 82 s of training instead of 33 s.
    """
    return int(max(1, min(round(IVF_CELLS_PER_SQRT_N * math.sqrt(max(n, 1))), n // IVF_TRAIN_PER_CELL)))


def ivf_nprobe(nlist: int) -> int:
    """Cells searched per query: ``nlist / 10``, at least 16 (all of them for tiny indexes).

    Measured on the clustered 768-d features of bench/bench_scale.py at 100k (632 cells, one thread), for
    near-duplicate queries: recall@100 0.923 / 0.945 / 0.963 / 0.978 at nprobe 16 / 32 / 64 / 128, with
    median search times 0.26 / 0.57 / 0.82 / 1.61 ms (shared machine); at 1M (4,000 cells, quiet machine)
    0.918 / 0.936 / 0.946 / 0.954 at nprobe 100 / 200 / 300 / 400, p95 3.2 / 6.1 / 7.9 / 10.1 ms.
    """
    return int(min(nlist, max(IVF_MIN_NPROBE, math.ceil(nlist * IVF_PROBE_FRACTION))))


FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu11", "faiss-gpu-cu12")


def installed_faiss(names: tuple[str, ...] = FAISS_DISTRIBUTIONS) -> list[str]:
    """The FAISS distributions installed in this environment (each ships the same ``faiss`` package)."""
    from importlib import metadata

    found = []
    for name in names:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_faiss_install(found: list[str] | None = None) -> None:
    """Refuse two FAISS builds in one environment: they overwrite each other's ``faiss/`` files.

    Raises:
        PHSError: both ``faiss-cpu`` and a ``faiss-gpu`` build are installed; says how to fix it.
    """
    found = installed_faiss() if found is None else found
    if len(found) > 1:
        from core.errors import PHSError

        raise PHSError(
            f"Both {' and '.join(found)} are installed and overwrite each other's files; keep one: for FAISS on "
            "the GPU run scripts/install_faiss_gpu.sh (pip uninstall -y faiss-cpu faiss-gpu-cu12, then pip "
            "install faiss-gpu-cu12), for the CPU pip uninstall -y faiss-gpu-cu12 and pip install --force-reinstall faiss-cpu."
        )


check_faiss_install()


def gpu_available() -> bool:
    """Whether this FAISS build has GPU support and sees a GPU (``faiss-gpu``)."""
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


_GPU_RESOURCES = None


def _gpu_resources():  # pragma: no cover - needs faiss-gpu and a GPU
    """One ``StandardGpuResources`` per process (it holds scratch memory and CUDA streams)."""
    global _GPU_RESOURCES
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


def _kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf"
    if isinstance(index, faiss.IndexIDMap2) or "IDMap2" in type(index).__name__:
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
    return "?"


class VectorIndex:
    """L2-normalised features under int64 ids: exact (``flat``) or an inverted file (``ivf``).

    Args:
        dim: Feature dimension ``Dout``.
        kind: ``"flat"`` or ``"ivf"``.
        index: An existing index to wrap (as read from a file), else a new empty one is made (an ``ivf``
            one must then be trained: see :meth:`build`).
        nlist: Cells of a new ``ivf`` index.
    """

    def __init__(self, dim: int, kind: str = "flat", index: faiss.Index | None = None, nlist: int = 1) -> None:
        self.dim = int(dim)
        self.kind = kind
        if index is None:
            if kind == "ivf":
                quantizer = faiss.IndexFlatIP(self.dim)
                index = faiss.IndexIVFScalarQuantizer(
                    quantizer, self.dim, int(nlist), faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
                )
                index.own_fields = True
                quantizer.this.disown()
                index.cp.niter = IVF_TRAIN_ITERATIONS
            elif kind == "flat":
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            else:
                raise ValueError(f"unknown FAISS index kind {kind!r}")
        self.index = index
        self._gpu: faiss.Index | None = None
        self._gpu_failed = False

    @property
    def ntotal(self) -> int:
        """Number of vectors."""
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        """Cells of an ``ivf`` index (0 for ``flat``)."""
        return int(self.index.nlist) if self.kind == "ivf" else 0

    @property
    def nprobe(self) -> int:
        """Cells searched per query (0 for ``flat``)."""
        return ivf_nprobe(self.nlist) if self.kind == "ivf" else 0

    def ids(self) -> np.ndarray:
        """The stored ids, (ntotal,) int64 (insertion order for ``flat``, by cell for ``ivf``)."""
        if self.kind == "flat":
            return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
        invlists = self.index.invlists
        parts = []
        for cell in range(self.index.nlist):
            size = invlists.list_size(cell)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(cell), size).astype(np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def add(self, ids: np.ndarray, feats: np.ndarray) -> None:
        """Add ``feats`` (n, dim) float32 under ``ids`` (n,) int64 (to the GPU copy too, when there is one)."""
        if len(ids):
            x = np.ascontiguousarray(feats, np.float32)
            i = np.ascontiguousarray(ids, np.int64)
            self.index.add_with_ids(x, i)
            if self._gpu is not None:  # pragma: no cover - needs faiss-gpu and a GPU
                try:
                    self._gpu.add_with_ids(x, i)
                except Exception as exc:  # the GPU copy is made again from the CPU index on the next search
                    log.warning("could not add %d vectors to the GPU copy of the index (%s); copying it again", len(i), exc)
                    self._gpu = None

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (either kind; incremental)."""
        if len(ids):
            i = np.ascontiguousarray(ids, np.int64)
            self.index.remove_ids(i)
            if self._gpu is not None:  # pragma: no cover - needs faiss-gpu and a GPU
                try:
                    self._gpu.remove_ids(i)
                except Exception as exc:  # some GPU indexes cannot remove: copy the CPU index again
                    log.info("the GPU copy of the index cannot remove vectors (%s); copying it again", exc)
                    self._gpu = None

    def _gpu_index(self) -> faiss.Index | None:  # pragma: no cover - needs faiss-gpu and a GPU
        """The GPU copy of the index, made on first use; ``None`` (logged once) when the copy fails."""
        if self._gpu is None and not self._gpu_failed:
            try:
                self._gpu = faiss.index_cpu_to_gpu(_gpu_resources(), 0, self.index)
            except Exception as exc:
                self._gpu_failed = True
                log.warning("could not copy the %s index of %d vectors to the GPU (%s); searching on the CPU",
                            self.kind, self.ntotal, exc)  # fmt: skip
        return self._gpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products.

        Args:
            queries: (m, dim) float32, L2-normalised.
            k: Number of neighbours (clipped to ``ntotal``).

        Returns:
            ``scores`` (m, k') float32 best first and ``ids`` (m, k') int64, ``k' = min(k, ntotal)``; an
            ``ivf`` index can return fewer than ``k'`` hits when the searched cells hold fewer vectors
            (padded with id -1).
        """
        k = min(int(k), self.ntotal)
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        index = self.index
        if self.kind == "ivf":
            index.nprobe = self.nprobe
        if gpu_available():  # pragma: no cover - needs faiss-gpu and a GPU
            gpu = self._gpu_index()
            if gpu is not None:
                if self.kind == "ivf":
                    faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", self.nprobe)
                return gpu.search(q, k)
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
        if kind not in KINDS:
            return None  # e.g. an HNSW file of an earlier version: rebuilt from SQLite
        try:
            index = faiss.read_index(os.fspath(path))
        except Exception:  # missing or damaged file: the caller rebuilds from SQLite
            return None
        if index.d != dim or _kind_of(index) != kind:
            return None
        return cls(dim, kind, index)

    @classmethod
    def build(cls, dim: int, kind: str, ids: np.ndarray, feats: np.ndarray) -> VectorIndex:
        """A new index holding ``feats`` (n, dim) under ``ids`` (n,); an ``ivf`` one is trained on a sample."""
        n = len(ids)
        vi = cls(dim, kind, nlist=ivf_nlist(n))
        if kind == "ivf":
            x = np.ascontiguousarray(feats, np.float32).reshape(-1, dim)
            n_train = min(n, IVF_TRAIN_PER_CELL * vi.nlist)
            sample = x if n_train == n else x[np.random.default_rng(0).choice(n, n_train, replace=False)]
            vi.index.train(np.ascontiguousarray(sample) if len(sample) else np.zeros((1, dim), np.float32))
        if n:
            vi.add(ids, feats)
        return vi

    def needs_retraining(self, n: int) -> bool:
        """Whether an ``ivf`` index about to hold ``n`` vectors has too few cells for them (nlist doubled)."""
        return self.kind == "ivf" and ivf_nlist(n) >= 2 * max(self.nlist, 1)


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
        threshold: Vector count from which the index is an inverted file.

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
        rebuild = rebuild or (vi is not None and vi.needs_retraining(len(db_ids)))
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
            to_remove = np.union1d(stale, updated)  # both kinds remove and add incrementally
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
