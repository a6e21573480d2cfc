"""Where the exact FAISS index stops being the better one: ``flat`` against ``ivfpq`` by library size.

Run ``python bench/bench_crossover.py [--sizes 5000,10000,25000,50000,100000] [--repeats 200]``. For each
size it builds both kinds of :class:`core.library.vectors.VectorIndex` in memory from the same clustered
768-d unit features (random cluster centres, a power law of cluster sizes, in-cluster cosine about 0.5; the
generator of ``bench_scale.py``) and times single queries on one thread, as a prompt edit runs them: the
top-100 (Query-Only) and the 1,000 candidates of a Query-DB re-rank (``Searcher.candidates``: the inverted
file without exact re-scoring), p50 / p95 over near-duplicate queries (a stored vector plus noise), with the
recall@100 of ``ivfpq`` against the exact answer. ``flat`` is exact by construction.

The library switches kinds at :data:`core.library.vectors.APPROX_THRESHOLD`; this prints the figures that
threshold is chosen by.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402, F401  (before faiss: core sets the OpenMP wait policy the app runs with)


def timed(fn, queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Milliseconds per query and each query's ids."""
    ts, ids = [], []
    for q in queries:
        t = time.perf_counter()
        i = fn(q)
        ts.append((time.perf_counter() - t) * 1000)
        ids.append(i)
    return ts, ids


def one_size(n: int, repeats: int) -> str:
    """The table row of ``n`` vectors."""
    import faiss
    from bench_scale import DIM, _centers, clustered_rows

    from core.library.vectors import SINGLE_QUERY_THREADS, VectorIndex

    x, _ = clustered_rows(0, n, n, _centers(0, max(n // 100, 50), DIM))
    ids = np.arange(n, dtype=np.int64)
    flat = VectorIndex.build(DIM, "flat", ids, x)
    ivf = VectorIndex.build(DIM, "ivfpq", ids, x)
    rng = np.random.default_rng(1)
    q = x[rng.choice(n, repeats, replace=False)]
    q = q + 0.3 * rng.standard_normal(q.shape).astype(np.float32) / np.sqrt(DIM)
    q = np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), np.float32)
    t_flat, exact = timed(lambda v: flat.search(v[None], 100)[1][0], q)
    t_ivf, got = timed(lambda v: ivf.search(v[None], 100)[1][0], q)
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 100 for a, b in zip(exact, got)])

    def candidates(v: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(SINGLE_QUERY_THREADS)
        ivf.index.nprobe = ivf.nprobe
        return ivf.index.search(v[None], 1000)[1][0]

    c_flat, _ = timed(lambda v: flat.search(v[None], 1000)[1][0], q)
    c_ivf, _ = timed(candidates, q)

    def pp(ts: list[float]) -> str:
        return f"{np.median(ts):.2f} / {np.percentile(ts, 95):.2f} ms"

    return (f"{n:,} | {pp(t_flat)} | {pp(t_ivf)} (nprobe {ivf.nprobe} of {ivf.nlist}) | {recall:.3f} | "
            f"{pp(c_flat)} | {pp(c_ivf)}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,10000,25000,50000,100000")
    ap.add_argument("--repeats", type=int, default=200, help="queries per size")
    args = ap.parse_args()
    print("size | flat top-100 p50/p95 | ivfpq top-100 p50/p95 | recall@100 | flat 1,000 cand. p50/p95 | "
          "ivfpq 1,000 cand. p50/p95")  # fmt: skip
    for n in [int(v) for v in args.sizes.split(",")]:
        print(one_size(n, args.repeats), flush=True)


if __name__ == "__main__":
    main()
