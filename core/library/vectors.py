"""The FAISS side of an index: a cache derived from the SQLite ``feature`` column, ids = SQLite row ids.

Vectors are L2-normalised float32, so inner product = cosine similarity. Two kinds, chosen by the number of
vectors (:func:`choose_kind`), the kind being recorded in the sidecar:

``flat``
    Below :data:`APPROX_THRESHOLD`: exact (``IndexIDMap2`` over ``IndexFlatIP``). One query scans every
    vector, about 0.15 us each on one core while they fit the CPU's caches: p95 2.3 ms at 15k, 5.7 ms at 25k,
    17 ms at 50k (``bench/bench_crossover.py``, 768-d).
``ivfpq``
    From there on: two FAISS indexes kept in step. An inverted file over ``nlist`` k-means cells
    (:func:`ivf_nlist`, about ``4 sqrt(n)``) holding 4-bit product-quantised residuals, one sub-quantiser per
    dimension (``IndexIVFPQFastScan``: 384 bytes a 768-d vector, scored with SIMD table look-ups), searched in
    :func:`ivf_nprobe` cells (a tenth of them), proposes :func:`refine_count` candidates; an exact float16
    copy of every vector (``IndexIDMap2`` over ``IndexScalarQuantizer``, scores within 1e-3 of float32)
    re-scores them, so the returned scores are exact and only the candidate list is approximate. On the
    clustered 768-d features of ``bench/bench_scale.py`` recall@100 against exact search is that of an exact
    scan of the same cells (0.955 at 1M). The ids live in both indexes, so adds and removals are
    incremental; the cells are re-trained (a rebuild from SQLite) only when the collection has grown so much
    that :func:`ivf_nlist` doubled. Both are written to one file (:data:`IVFPQ_MAGIC`).

Measured and replaced: an inverted file of float16 vectors (``IndexIVFScalarQuantizer``, the kind ``ivf`` of
earlier versions) reads 1.5 kB a vector and is bound by memory: 14.6-18.6 ms median at 1M with 400 of 4,000
cells searched on one AVX2 core (``ivfpq``: 6.8 ms), an 8-bit scalar quantiser no faster (17.6 ms). Its files
are rebuilt from SQLite on first use. HNSW (an earlier kind still) was no faster than IVF at the same recall,
took minutes to build at 1M on two cores and could not remove (every deletion rebuilt the graph).

:func:`core.library.vector_sync.sync_vectors` is the only way an index is brought up to date, for the indexer
and for searchers alike: it compares the FAISS ids with the done rows of SQLite and the generation the FAISS
data reflects, and adds, removes or rebuilds accordingly. Hence a FAISS file that is stale, from a crashed run, truncated or missing
is never a problem, only extra work.

On a machine with ``faiss-gpu`` and a GPU, searches run on a GPU copy of the index, kept in step with every
add and removal (a failed copy is logged and the CPU index answers).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.library.store import atomic_replace

log = logging.getLogger(__name__)

#: Number of vectors from which the inverted file replaces the exact index: the exact index is kept while its
#: top-100 stays within the 2.5 ms a prompt edit may spend in FAISS to answer within 5 ms. Measured with
#: bench/bench_crossover.py (one thread, 768-d, p95): exact 1.44 / 2.25 / 3.47 / 5.73 ms at 10k / 15k / 20k /
#: 25k, the inverted file 0.85 / 1.09 / 1.30 / 1.56 ms at recall@100 0.97-0.99; the exact scan is as fast as
#: the inverted file only up to about 5k.
APPROX_THRESHOLD = 15_000
#: k-means cells per sqrt(n); the training sample is ``IVF_TRAIN_PER_CELL`` points per cell.
IVF_CELLS_PER_SQRT_N = 4.0
IVF_TRAIN_PER_CELL = 40
IVF_TRAIN_ITERATIONS = 10
#: Fewest training points of an ``ivfpq`` index (its sub-quantisers have 16 codes; FAISS asks 39 points a code).
IVFPQ_MIN_TRAIN = 1024
#: Fraction of the cells searched (at least :data:`IVF_MIN_NPROBE`); see :func:`ivf_nprobe`.
IVF_PROBE_FRACTION = 1 / 10
IVF_MIN_NPROBE = 16
#: OpenMP threads FAISS uses for a single query. One thread answers a single query over 100k vectors in
#: a few ms; FAISS's default (all cores) spends more time waking threads than searching, badly so on a busy
#: machine (measured by bench/bench_index.py). Batches of queries keep FAISS's default.
SINGLE_QUERY_THREADS = 1

KINDS: tuple[str, ...] = ("flat", "ivfpq")

#: ``ivfpq``: candidates re-scored exactly per hit asked for (at least :data:`IVFPQ_REFINE_MIN`, at most
#: :data:`IVFPQ_REFINE_MAX` beyond the hits). Measured at 1M (bench_scale's features, 400 of 4,000 cells, one
#: thread): recall@100 0.949 / 0.955 / 0.955 / 0.956 re-scoring 2 / 3 / 4 / 6 per hit, p95 6.8 / 7.7 / 8.7 /
#: 9.3 ms (a re-scored candidate costs about 4 us: a random read of its float16 row).
IVFPQ_REFINE_FACTOR = 3
#: A filtered ``ivfpq`` search among at most this many photos scans them exactly (a random read of each one's
#: float16 row) instead of asking the inverted file, whose searched cells may hold too few of them.
EXACT_AMONG_MAX = 20_000
IVFPQ_REFINE_MIN = 64
IVFPQ_REFINE_MAX = 300
#: ``ivfpq``: a query farther from every cell's centre than all but ``UNLIKE_PERCENTILE`` % of the library's
#: photos are from their own cell's is unlike any photo: its nearest neighbours lie spread over many cells, and
#: it searches ``UNLIKE_PROBE_FACTOR`` times the cells. The library's distances are measured on
#: ``UNLIKE_SAMPLE`` of its vectors when first needed. Measured at 100k (bench_scale's random cluster centres,
#: 100 PHS queries of a ViT-B/14 unlike any photo): recall@100 0.858 / 0.946 / 0.973 searching 1 / 2 / 3 times
#: the cells; queries near the library keep their cells (and their time).
UNLIKE_PERCENTILE = 1.0
UNLIKE_PROBE_FACTOR = 3
UNLIKE_SAMPLE = 2000

#: First bytes of an ``ivfpq`` file; then the inverted file and the exact copy, as ``faiss.write_index``
#: writes them, one after the other.
IVFPQ_MAGIC = b"PHS-IVFPQ-1\n"


def choose_kind(n: int, threshold: int = APPROX_THRESHOLD) -> str:
    """``"flat"`` (exact) below ``threshold`` vectors, else ``"ivfpq"``."""
    return "ivfpq" if n >= threshold else "flat"


def ivf_nlist(n: int) -> int:
    """Cells of an inverted file for ``n`` vectors: ``4 sqrt(n)``, at most ``n / 40`` (enough points to train).

    Measured at 1M clustered 768-d vectors (bench/bench_scale.py's features, 200 near-duplicate queries, one
    thread, a tenth of the cells scanned exactly in float16): 2,000 cells gave recall@100 0.915, 4,000 cells
    0.954 (0.936 at a twentieth); the finer cells cost 82 s of training instead of 33 s.
    """
    return int(max(1, min(round(IVF_CELLS_PER_SQRT_N * math.sqrt(max(n, 1))), n // IVF_TRAIN_PER_CELL)))


def ivf_nprobe(nlist: int) -> int:
    """Cells searched per query: ``nlist / 10``, at least 16 (all of them for tiny indexes).

    Measured on the clustered 768-d features of bench/bench_scale.py, near-duplicate queries, the cells scanned
    exactly in float16: at 100k (632 cells) recall@100 0.923 / 0.945 / 0.963 / 0.978 at nprobe 16 / 32 / 64 /
    128; at 1M (4,000 cells) 0.918 / 0.936 / 0.946 / 0.954 at nprobe 100 / 200 / 300 / 400. ``ivfpq`` at 1M:
    0.955 at nprobe 400 (p95 7.7 ms), 0.963 at 571 (p95 9.2 ms).
    """
    return int(min(nlist, max(IVF_MIN_NPROBE, math.ceil(nlist * IVF_PROBE_FRACTION))))


def refine_count(k: int) -> int:
    """Candidates of an ``ivfpq`` search re-scored exactly for ``k`` hits (see :data:`IVFPQ_REFINE_FACTOR`)."""
    k = max(int(k), 1)
    return int(max(IVFPQ_REFINE_MIN, min(IVFPQ_REFINE_FACTOR * k, k + IVFPQ_REFINE_MAX)))


def pq_subquantizers(dim: int) -> int:
    """Sub-quantisers of the ``ivfpq`` codes: one per dimension (4 bits each, ``dim / 2`` bytes a vector).

    Measured at 1M (bench_scale's features, 400 of 4,000 cells, one thread): two dimensions per sub-quantiser
    scan in 3.3 ms but rank so loosely that re-scoring 4 candidates per hit reached recall@100 0.926 (6 per hit
    0.943 at p95 7.5 ms); one per dimension scans in 5.5 ms and reaches 0.955 re-scoring 3 per hit (p95 7.7 ms),
    the recall of an exact scan of the same cells (0.956).
    """
    return int(dim)


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


def _write_index(index: faiss.Index, fh) -> None:
    """Append ``index`` to the open binary file ``fh`` in chunks; a failed write raises its own OSError."""
    failure: list[OSError] = []

    def put(data: bytes) -> int | None:
        try:
            return fh.write(data)
        except OSError as exc:
            failure.append(exc)
            raise

    try:
        faiss.write_index(index, faiss.PyCallbackIOWriter(put))
    except RuntimeError:
        if failure:
            raise failure[0] from None
        raise


def _kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIDMap2) or "IDMap2" in type(index).__name__:
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
    return "?"


class VectorIndex:
    """L2-normalised features under int64 ids: exact (``flat``) or an inverted file with exact re-scoring
    (``ivfpq``).

    Args:
        dim: Feature dimension ``Dout``.
        kind: ``"flat"`` or ``"ivfpq"``.
        index: An existing index to wrap (as read from a file), else a new empty one is made (an ``ivfpq``
            one must then be trained: see :meth:`build`). For ``ivfpq``, the inverted file.
        nlist: Cells of a new ``ivfpq`` index.
        exact: The exact float16 copy of an existing ``ivfpq`` index.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        index: faiss.Index | None = None,
        nlist: int = 1,
        exact: faiss.Index | None = None,
    ) -> None:
        self.dim = int(dim)
        self.kind = kind
        if kind not in KINDS:
            raise ValueError(f"unknown FAISS index kind {kind!r}")
        if index is None:
            if kind == "ivfpq":
                quantizer = faiss.IndexFlatIP(self.dim)
                index = faiss.IndexIVFPQFastScan(
                    quantizer, self.dim, int(nlist), pq_subquantizers(self.dim), 4, faiss.METRIC_INNER_PRODUCT
                )
                index.own_fields = True
                quantizer.this.disown()
                index.cp.niter = IVF_TRAIN_ITERATIONS
            else:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if kind == "ivfpq" and exact is None:
            exact = faiss.IndexIDMap2(
                faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
            )
        self.index = index
        self.exact = exact
        self._gpu: faiss.Index | None = None
        self._gpu_failed = False
        self._unlike: tuple[int, float] | None = None  # (ntotal when measured, centre score below which)

    @property
    def ntotal(self) -> int:
        """Number of vectors."""
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        """Cells of an ``ivfpq`` index (0 for ``flat``)."""
        return int(self.index.nlist) if self.kind == "ivfpq" else 0

    @property
    def nprobe(self) -> int:
        """Cells searched per query (0 for ``flat``)."""
        return ivf_nprobe(self.nlist) if self.kind == "ivfpq" else 0

    @property
    def _by_id(self) -> faiss.Index:
        """The index that maps ids to float vectors (the exact copy of an ``ivfpq`` index)."""
        return self.exact if self.exact is not None else self.index

    def ids(self) -> np.ndarray:
        """The stored ids, (ntotal,) int64, in insertion order."""
        return faiss.vector_to_array(self._by_id.id_map).astype(np.int64, copy=False)

    def add(self, ids: np.ndarray, feats: np.ndarray) -> None:
        """Add ``feats`` (n, dim) float32 under ``ids`` (n,) int64 (to the GPU copy too, when there is one)."""
        if len(ids):
            x = np.ascontiguousarray(feats, np.float32)
            i = np.ascontiguousarray(ids, np.int64)
            self.index.add_with_ids(x, i)
            if self.exact is not None:
                self.exact.add_with_ids(x, i)
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
            if self.exact is not None:
                self.exact.remove_ids(i)
            if self._gpu is not None:  # pragma: no cover - needs faiss-gpu and a GPU
                try:
                    self._gpu.remove_ids(i)
                except Exception as exc:  # some GPU indexes cannot remove: copy the CPU index again
                    log.info("the GPU copy of the index cannot remove vectors (%s); copying it again", exc)
                    self._gpu = None

    def _gpu_index(self) -> faiss.Index | None:  # pragma: no cover - needs faiss-gpu and a GPU
        """The GPU copy of the index, made on first use; ``None`` (logged once) when the copy fails.

        For ``ivfpq`` it is an exact flat index of the float16 vectors: a GPU scans all of them faster than the
        CPU scans a tenth of the inverted file, and the answer is exact."""
        if self._gpu is None and not self._gpu_failed:
            try:
                self._gpu = self._gpu_exact_copy() if self.exact is not None else faiss.index_cpu_to_gpu(
                    _gpu_resources(), 0, self.index
                )
            except Exception as exc:
                self._gpu_failed = True
                log.warning("could not copy the %s index of %d vectors to the GPU (%s); searching on the CPU",
                            self.kind, self.ntotal, exc)  # fmt: skip
        return self._gpu

    def _gpu_exact_copy(self) -> faiss.Index:  # pragma: no cover - needs faiss-gpu and a GPU
        """The exact float16 vectors of an ``ivfpq`` index in a GPU flat index under their ids (copied in chunks)."""
        config = faiss.GpuIndexFlatConfig()
        config.useFloat16 = True
        gpu = faiss.IndexIDMap2(faiss.GpuIndexFlatIP(_gpu_resources(), self.dim, config))
        ids = self.ids()
        stored = faiss.downcast_index(self.exact.index)  # position i holds id ids[i]
        for a in range(0, len(ids), 65_536):
            b = min(a + 65_536, len(ids))
            gpu.add_with_ids(stored.reconstruct_n(a, b - a), ids[a:b])
        return gpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products.

        Args:
            queries: (m, dim) float32, L2-normalised.
            k: Number of neighbours (clipped to ``ntotal``).

        Returns:
            ``scores`` (m, k') float32 best first and ``ids`` (m, k') int64, ``k' = min(k, ntotal)``; an
            ``ivfpq`` index can return fewer than ``k'`` hits when the searched cells hold fewer vectors
            (padded with id -1 and score -inf).
        """
        k = min(int(k), self.ntotal)
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if gpu_available():  # pragma: no cover - needs faiss-gpu and a GPU
            gpu = self._gpu_index()
            if gpu is not None:
                return gpu.search(q, k)
        threads = SINGLE_QUERY_THREADS if len(q) == 1 else 0
        before = faiss.omp_get_max_threads()
        if threads:
            faiss.omp_set_num_threads(threads)
        try:
            if self.kind == "flat":
                return self.index.search(q, k)
            return self._search_refined(q, k)
        finally:
            if threads:
                faiss.omp_set_num_threads(before)

    def search_among(self, query: np.ndarray, k: int, allowed: np.ndarray, selector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products of one query among the vectors of ``allowed`` ids only (a filtered search).

        Args:
            query: ``(dim,)`` or ``(1, dim)`` float32, L2-normalised.
            k: Number of neighbours (clipped to the allowed count).
            allowed: ``(m,)`` int64 ids to search among (ids not in the index are ignored).
            selector: A ``faiss.IDSelectorBatch`` of ``allowed``, when the caller keeps one across queries.

        Returns:
            ``scores`` (k',) float32 best first and ``ids`` (k',) int64. Exact for ``flat``; for ``ivfpq`` the
            inverted file proposes candidates among the allowed ids, re-scored exactly, and a filter so narrow
            that the searched cells hold fewer than ``k`` of them is answered by an exact scan of the allowed
            vectors instead.
        """
        q = np.ascontiguousarray(np.asarray(query, np.float32).reshape(1, -1))
        allowed = np.asarray(allowed, np.int64)
        k = min(int(k), len(allowed), self.ntotal)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        sel = selector if selector is not None else faiss.IDSelectorBatch(allowed)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(SINGLE_QUERY_THREADS)
        try:
            if self.kind == "flat":
                s, i = self.index.search(q, k, params=faiss.SearchParameters(sel=sel))
                keep = i[0] >= 0
                return s[0][keep], i[0][keep]
            if len(allowed) > EXACT_AMONG_MAX:
                cand = self.approximate(q, refine_count(k), sel)
                if len(cand) >= k:
                    return self._rescore(q[0], cand, k)
            try:
                return self._rescore(q[0], allowed, k)
            except RuntimeError:  # an id the index no longer (or not yet) holds: keep those it holds
                return self._rescore(q[0], allowed[np.isin(allowed, self.ids())], k)
        finally:
            faiss.omp_set_num_threads(threads)

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of ``cand`` ids from the exact copy (``ivfpq``), top ``k``, best first."""
        if not len(cand):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        s = np.einsum("ij,j->i", self._by_id.reconstruct_batch(np.ascontiguousarray(cand, np.int64)), q)
        top = np.argsort(-s, kind="stable")[:k]
        return s[top].astype(np.float32), np.asarray(cand, np.int64)[top]

    def _unlike_score(self) -> float:
        """The score with the nearest cell centre below which a query is unlike any photo (see
        :data:`UNLIKE_PERCENTILE`); measured on a sample of the stored vectors, again when the count moved 10 %."""
        n = self.ntotal
        if self._unlike is None or abs(n - self._unlike[0]) > 0.1 * max(self._unlike[0], 1):
            ids = self.ids()
            if len(ids) > UNLIKE_SAMPLE:
                ids = ids[np.linspace(0, len(ids) - 1, UNLIKE_SAMPLE).round().astype(np.int64)]
            if not len(ids):
                return -np.inf
            x = np.ascontiguousarray(self._by_id.reconstruct_batch(ids), np.float32)
            best, _ = self.index.quantizer.search(x, 1)
            self._unlike = (n, float(np.percentile(best[:, 0], UNLIKE_PERCENTILE)))
        return self._unlike[1]

    def probes(self, q: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """Cells an ``ivfpq`` search of one ``(1, dim)`` query covers: :attr:`nprobe`, or
        :data:`UNLIKE_PROBE_FACTOR` times as many for a query unlike any photo.

        Returns:
            ``n`` and the best cells' ``(1, >= n)`` scores and numbers, best first.
        """
        q = np.ascontiguousarray(q, np.float32)
        scores, cells = self.index.quantizer.search(q, self.nprobe)
        if scores[0, 0] >= self._unlike_score():
            return self.nprobe, scores, cells
        most = min(self.nlist, self.nprobe * UNLIKE_PROBE_FACTOR)
        scores, cells = self.index.quantizer.search(q, most)
        return most, scores, cells

    def approximate(self, q: np.ndarray, n: int, selector: Any = None) -> np.ndarray:
        """``ivfpq``: the inverted file's ``(<= n,)`` best ids for one ``(1, dim)`` query, by their 4-bit codes
        (not re-scored), among the ids of ``selector`` when given (-1 padding removed)."""
        probes, scores, cells = self.probes(q)
        n = min(int(n), self.ntotal)
        if selector is None:
            self.index.nprobe = probes
            _, ids = self.index.search_preassigned(q, n, cells[:, :probes], scores[:, :probes])
        else:
            _, ids = self.index.search(q, n, params=faiss.SearchParametersIVF(sel=selector, nprobe=probes))
        return ids[0][ids[0] >= 0]

    def _search_refined(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``ivfpq``: candidates from the inverted file, re-scored with the exact copy."""
        assert self.exact is not None
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            c = self.approximate(q[r : r + 1], refine_count(k))
            if not len(c):
                continue
            # einsum, not BLAS: numpy's BLAS threads kept spinning after a product of 1,300 rows, and the
            # matrix products of the Query-DB re-rank that follows ran 1.6x slower (p50 129 vs 76 ms at 100k)
            s = np.einsum("ij,j->i", self.exact.reconstruct_batch(c), q[r])
            top = np.argsort(-s, kind="stable")[:k]
            scores[r, : len(top)], ids[r, : len(top)] = s[top], c[top]
        return scores, ids

    def save(self, path: Path) -> None:
        """Write the index atomically (temp file in the same folder, fsync, rename, fsync folder)."""

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                if self.exact is None:
                    _write_index(self.index, fh)
                    return
                fh.write(IVFPQ_MAGIC)
                _write_index(self.index, fh)
                _write_index(self.exact, fh)

        atomic_replace(Path(path), write)

    @classmethod
    def load(cls, path: Path, dim: int, kind: str) -> VectorIndex | None:
        """Read a saved index; ``None`` when missing, unreadable or not of the expected dim and kind."""
        if kind not in KINDS:
            return None  # e.g. an HNSW or IVF float16 file of an earlier version: rebuilt from SQLite
        try:
            if kind == "ivfpq":
                vi = cls._load_ivfpq(Path(path), dim)
            else:
                index = faiss.read_index(os.fspath(path))
                vi = cls(dim, kind, index) if _kind_of(index) == kind else None
        except Exception:  # missing or damaged file: the caller rebuilds from SQLite
            return None
        return vi if vi is not None and vi.index.d == dim else None

    @classmethod
    def _load_ivfpq(cls, path: Path, dim: int) -> VectorIndex | None:
        with open(path, "rb") as fh:  # read in chunks: the file is never held in memory beside the index
            if fh.read(len(IVFPQ_MAGIC)) != IVFPQ_MAGIC:
                return None
            ivf = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
            exact = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
        if not isinstance(ivf, faiss.IndexIVFPQFastScan) or not isinstance(exact, faiss.IndexIDMap2):
            return None
        if ivf.ntotal != exact.ntotal or exact.d != dim:
            return None  # a torn pair: rebuilt
        return cls(dim, "ivfpq", ivf, exact=exact)

    @classmethod
    def build(cls, dim: int, kind: str, ids: np.ndarray, feats: np.ndarray) -> VectorIndex:
        """A new index holding ``feats`` (n, dim) under ``ids`` (n,); an ``ivfpq`` one is trained on a sample."""
        n = len(ids)
        vi = cls(dim, kind, nlist=ivf_nlist(n))
        if kind == "ivfpq":
            x = np.ascontiguousarray(feats, np.float32).reshape(-1, dim)
            n_train = min(n, IVF_TRAIN_PER_CELL * vi.nlist)
            rng = np.random.default_rng(0)
            sample = x if n_train == n else x[rng.choice(n, n_train, replace=False)]
            if len(sample) < IVFPQ_MIN_TRAIN:  # a tiny index: jittered copies give the 16 codes of each
                base = sample if len(sample) else np.eye(1, dim, dtype=np.float32)  # sub-quantiser something
                sample = base[rng.integers(0, len(base), IVFPQ_MIN_TRAIN)]
                sample = sample + 1e-3 * rng.standard_normal(sample.shape).astype(np.float32)
            vi.index.train(np.ascontiguousarray(sample, np.float32))
        if n:
            vi.add(ids, feats)
        return vi

    def needs_retraining(self, n: int) -> bool:
        """Whether an ``ivfpq`` index about to hold ``n`` vectors has too few cells for them (nlist doubled)."""
        return self.kind == "ivfpq" and ivf_nlist(n) >= 2 * max(self.nlist, 1)
