"""Benchmark at library scale: a real index of 100k and 1M synthetic photos, searched through the query service.

Run ``python bench/bench_scale.py [--rows 100000,1000000] [--keep DIR]``. For each size it builds (once; with
``--keep`` the files are reused by later runs) an index through the store API: the SQLite rows with their
features, the float16 Query-DB cache and the FAISS file, exactly as the indexer writes them, with ViT-B/14
dimensions (768-d features, 12 heads of 64). Features and Query-DB states are clustered (a power law of
cluster sizes, in-cluster cosine about 0.5), so that recall of the approximate index means something. The
build runs in a child process, so the peak RSS printed is the searcher's. Then it prints:

1. Index open time (the Searcher, and the FAISS file read), bytes per photo on disk, the index kind.
2. Prompt edit -> top-100 through ``QueryService.run`` (a box moved on the query photo of a random-weight
   ViT-B/14, Query-Only; PHS head selection and feature + FAISS on one thread + SQLite lookup), p50 / p95.
3. Recall@100 of the FAISS index against an exact scan, for near-duplicate queries (a stored feature plus
   noise) and for the service's own query features.
4. Query-DB re-rank of 1,000 candidates (k = 20) through the service, p50 / p95, beside the bare fp32 matmul
   chain of the same shapes measured in the same run, and the positions of its top-20 equal to a re-rank
   done wholly in fp32.
5. Adding 1,000 photos to the index (SQLite commit + QD cache write, FAISS sync, FAISS save).
6. Peak RSS of the search process.

Timings are medians and 95th percentiles over ``--repeats`` runs; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import core  # noqa: E402, F401  (before torch: core sets the OpenMP wait policy the app runs with)

DIM, HEADS, HEAD_DIM = 768, 12, 64
CHUNK = 20_000


def _centers(seed: int, n_clusters: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def clustered_rows(start: int, n: int, total: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start .. start+n`` of a clustered library of ``total`` photos: unit features and QD cache rows.

    Returns:
        ``features`` (n, 768) float32 unit-norm, ``qd`` (n, 768 + 12*64) float16.
    """
    n_clusters = max(total // 100, 50)
    fc = _centers(seed, n_clusters, DIM)
    qc = _centers(seed + 1, n_clusters, DIM + HEADS * HEAD_DIM)
    rng = np.random.default_rng([seed, start])
    w = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    lab = rng.choice(n_clusters, n, p=w / w.sum())
    f = fc[lab] + rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    q = 4.0 * (qc[lab] + rng.standard_normal((n, qc.shape[1])).astype(np.float32) / np.sqrt(qc.shape[1]))
    q *= np.sqrt(qc.shape[1]) / 4.0  # unit-variance entries, like a ViT's residual stream
    return f.astype(np.float32), q.astype(np.float16)


def insert_rows(index, start: int, n: int, total: int) -> None:
    """Write ``n`` synthetic photos through the store API (QD cache rows flushed, then one transaction)."""
    from core.library import store as st

    db = index.db
    for a in range(start, start + n, CHUNK):
        b = min(a + CHUNK, start + n)
        f, q = clustered_rows(a, b - a, total)
        slots = np.arange(a, b, dtype=np.int64)
        index.qd.write(slots, q)
        index.qd.flush()
        t = time.time()
        with db.transaction() as conn:
            gen = db.next_generation(conn)
            conn.executemany(
                "INSERT INTO files (path, size, mtime_ns, hash, status, error, feature, slot, gen, first_seen, "
                "updated_at) VALUES (?, ?, ?, ?, 'done', NULL, ?, ?, ?, ?, ?)",
                ((st.encode_rel(f"album{i // 1000:04d}/IMG_{i:07d}.jpg"), 3_000_000 + i, i, f"h{i:016x}",
                  f[i - a].tobytes(), int(i), gen, t, t) for i in range(a, b)),
            )  # fmt: skip


def engine_b14(precision: str = "auto"):
    import torch

    from core.method.engine import load_engine

    torch.manual_seed(0)  # the same random weights in every process, so the index fingerprint matches
    return load_engine("dinov2-b14", pretrained=False, device="cpu", precision=precision)


def build(folder: Path, rows: int) -> None:
    """Child process: create the index of ``rows`` synthetic photos and save its FAISS file."""
    from core.library import PhotoIndex

    engine = engine_b14()
    t0 = time.perf_counter()
    with PhotoIndex.open(folder, engine, writable=True, rebuild=True) as idx:
        insert_rows(idx, 0, rows, rows)
        t1 = time.perf_counter()
        idx.save_vectors()
        t2 = time.perf_counter()
        kind = idx.vectors().kind
    print(f"  built {rows:,} rows: SQLite + QD cache {t1 - t0:.0f} s, FAISS ({kind}) {t2 - t1:.0f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)  # fmt: skip


def pct(ts: list[float]) -> str:
    return f"p50 {np.median(ts):.2f} ms, p95 {np.percentile(ts, 95):.2f} ms"


def matmul_bound(n: int, repeats: int) -> tuple[list[float], list[float]]:
    """The bare chain of a Query-DB re-rank (proj, MLP) on ``n`` rows, fp32 and bf16 autocast.

    The bf16 chain is timed only where the CPU has bf16 in hardware (emulated, it takes seconds); else ``[]``.
    """
    import torch

    from core.method.precision import cpu_has_native_bf16

    x = torch.randn(n, DIM)
    w = [torch.randn(DIM, DIM), torch.randn(DIM, 4 * DIM), torch.randn(4 * DIM, DIM)]
    out: dict[str, list[float]] = {"bf16": []}
    for name, ctx in (("fp32", None), ("bf16", torch.bfloat16)):
        if name == "bf16" and not cpu_has_native_bf16():
            continue
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            with torch.no_grad(), torch.autocast("cpu", dtype=ctx, enabled=ctx is not None):
                y = x @ w[0]
                y = torch.nn.functional.gelu(torch.nn.functional.layer_norm(y, (DIM,)) @ w[1]) @ w[2]
            ts.append((time.perf_counter() - t) * 1000)
        out[name] = ts
    return out["fp32"], out["bf16"]


def measure(folder: Path, rows: int, repeats: int) -> dict:
    import torch

    from core.library import PhotoIndex
    from core.method.engine import PHSEngine
    from core.method.prompts import Prompt
    from core.search import Searcher
    from core.search.service import QueryService, QuerySpec, rank
    from tests.conftest import random_image  # a photo of smooth blobs, so attention is not uniform

    engine = engine_b14()
    res: dict = {"rows": rows, "precision": engine.precision, "rerank_precision": engine.rerank_precision,
                 "torch_threads": torch.get_num_threads()}  # fmt: skip
    t0 = time.perf_counter()
    searcher = Searcher(folder, engine)
    t1 = time.perf_counter()
    vi = searcher.index.vectors()
    t2 = time.perf_counter()
    res.update(open_ms=(t1 - t0) * 1000, faiss_read_ms=(t2 - t1) * 1000, kind=vi.kind, nlist=vi.nlist,
               nprobe=vi.nprobe)  # fmt: skip
    disk = searcher.index.disk_bytes()
    res["bytes_per_photo"] = {k: v / rows for k, v in disk.items()}
    res["bytes_per_photo_total"] = sum(disk.values()) / rows

    service = QueryService(engine, searcher)
    service.set_photo(random_image(640, 480, seed=1))
    rng = np.random.default_rng(0)
    edits, qo_feats = [], []
    for i in range(repeats + 3):
        x0, y0 = rng.uniform(0, 400), rng.uniform(0, 300)
        spec = QuerySpec(prompt=Prompt.from_box(x0, y0, x0 + rng.uniform(60, 240), y0 + rng.uniform(60, 180)),
                         method="phs", mode="qo", k=100)  # fmt: skip
        t = time.perf_counter()
        out = service.run(spec)
        if i >= 3:
            edits.append((time.perf_counter() - t) * 1000)
            qo_feats.append(out.query.feature / np.linalg.norm(out.query.feature))
    res["prompt_edit_top100_ms"] = edits

    # recall@100 against an exact scan (the features as stored, regenerated chunk by chunk)
    nq = 100
    pick = np.sort(rng.choice(rows, nq, replace=False))
    near = []
    for i in pick:
        f, _ = clustered_rows(int(i), 1, rows)
        near.append(f[0])
    near = np.stack(near) + 0.3 * rng.standard_normal((nq, DIM)).astype(np.float32) / np.sqrt(DIM)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    queries = np.concatenate([near, np.stack(qo_feats[:nq])]).astype(np.float32)
    top_s = np.full((len(queries), 100), -np.inf, np.float32)
    top_i = np.zeros((len(queries), 100), np.int64)
    for a in range(0, rows, CHUNK):
        f, _ = clustered_rows(a, min(CHUNK, rows - a), rows)
        s = queries @ f.T
        cat_s = np.concatenate([top_s, s], 1)
        cat_i = np.concatenate([top_i, np.arange(a, a + f.shape[0])[None].repeat(len(queries), 0)], 1)
        sel = np.argpartition(-cat_s, 99, axis=1)[:, :100]
        top_s, top_i = np.take_along_axis(cat_s, sel, 1), np.take_along_axis(cat_i, sel, 1)
    slot_of = dict(searcher.index.db.conn.execute("SELECT slot, id FROM files").fetchall())  # row number -> id
    rec = []
    for qi, q in enumerate(queries):
        _, got = vi.search(q[None], 100)
        want = {slot_of[int(s)] for s in top_i[qi]}
        rec.append(len(want & set(got[0].tolist())) / 100)
    res["recall_near"] = float(np.mean(rec[:nq]))
    res["recall_service_queries"] = float(np.mean(rec[nq:]))

    # Query-DB re-rank of 1,000 candidates through the service, vs fp32 and vs the bare matmul bound
    qd, agree = [], []

    class Fp32Rerank(PHSEngine):
        rerank_precision = "fp32"

    exact_engine = PHSEngine.__new__(Fp32Rerank)
    exact_engine.__dict__.update(engine.__dict__)
    for i in range(repeats + 2):
        x0, y0 = rng.uniform(0, 400), rng.uniform(0, 300)
        spec = QuerySpec(prompt=Prompt.from_box(x0, y0, x0 + 150, y0 + 120), method="phs", mode="qd", k=20,
                         candidates=1000)  # fmt: skip
        out = service.run(spec)
        if i >= 2:
            qd.append(out.timings_ms["search"])
            _, ids32 = rank(exact_engine, searcher, out.query, k=20, mode="qd", candidates=1000)
            got = [h.id for h in out.hits]
            agree.append(np.mean([a == b for a, b in zip(got, ids32.tolist())]))
    res["qd_rerank_ms"] = qd
    res["qd_top20_positions_equal_fp32"] = float(np.mean(agree))
    b32, b16 = matmul_bound(1000, repeats)
    res["matmul_fp32_ms"], res["matmul_bf16_ms"] = b32, b16

    # adding 1,000 photos
    searcher.close()
    with PhotoIndex.open(folder, engine, writable=True) as idx:
        idx.vectors()
        t0 = time.perf_counter()
        insert_rows(idx, rows, 1000, rows)
        t1 = time.perf_counter()
        idx.vectors()
        t2 = time.perf_counter()
        idx.save_vectors()
        t3 = time.perf_counter()
        res.update(add1000_commit_ms=(t1 - t0) * 1000, add1000_faiss_sync_ms=(t2 - t1) * 1000,
                   add1000_faiss_save_ms=(t3 - t2) * 1000)  # fmt: skip
        with idx.db.transaction() as conn:  # put the index back as built, for the next run
            idx.db.next_generation(conn)
            conn.execute("DELETE FROM files WHERE slot >= ?", (rows,))
        idx.vectors()
        idx.save_vectors()
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def report(r: dict) -> None:
    n = r["rows"]
    print(f"\n== {n:,} photos (ViT-B/14 dims; FAISS {r['kind']}, nlist {r['nlist']}, nprobe {r['nprobe']}; encode "
          f"{r['precision']}, QD first pass {r['rerank_precision']}; torch {r['torch_threads']} threads, FAISS 1)")  # fmt: skip
    print(f"  index open: Searcher {r['open_ms']:.0f} ms + FAISS read {r['faiss_read_ms']:.0f} ms")
    print(f"  on disk: {r['bytes_per_photo_total'] / 1000:.1f} kB per photo ("
          + ", ".join(f"{k} {v / 1000:.2f} kB" for k, v in r["bytes_per_photo"].items() if v) + ")")
    print(f"  prompt edit -> top-100 through the query service: {pct(r['prompt_edit_top100_ms'])}")
    print(f"  recall@100 vs exact: near-duplicate queries {r['recall_near']:.4f}, "
          f"service queries {r['recall_service_queries']:.4f}")
    qd, b32, b16 = r["qd_rerank_ms"], r["matmul_fp32_ms"], r["matmul_bf16_ms"]
    bf16 = pct(b16) if b16 else "not timed (emulated on this CPU)"
    print(f"  QD re-rank of 1,000 (k 20) through the service: {pct(qd)}; bare fp32 matmul chain {pct(b32)}, "
          f"bf16 {bf16}; ratio to the fp32 bound {np.median(qd) / np.median(b32):.2f}")
    print(f"  QD top-20 positions equal to an fp32 re-rank: {r['qd_top20_positions_equal_fp32'] * 100:.1f}%")
    print(f"  adding 1,000 photos: SQLite + QD cache {r['add1000_commit_ms']:.0f} ms, FAISS sync "
          f"{r['add1000_faiss_sync_ms']:.0f} ms, FAISS save {r['add1000_faiss_save_ms']:.0f} ms")
    print(f"  peak RSS of the search process: {r['peak_rss_mb']:.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="100000,1000000", help="comma-separated index sizes")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--keep", default=None, help="directory for the data (reused when it holds the index)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--_build", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_measure", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="phs-scale-"))
    os.environ.setdefault("PHS_DATA_DIR", str(root / "data"))
    if args._build:
        build(root / f"photos{args._build}", args._build)
        return
    if args._measure:
        r = measure(root / f"photos{args._measure}", args._measure, args.repeats)
        print("RESULT " + json.dumps(r), flush=True)
        return
    import torch

    print(f"bench_scale: {os.cpu_count()} CPUs, torch {torch.__version__}; data in {root}", flush=True)
    results = []
    for rows in [int(v) for v in args.rows.split(",")]:
        (root / f"photos{rows}").mkdir(parents=True, exist_ok=True)
        marker = root / f"built{rows}"
        if not marker.exists():
            subprocess.run([sys.executable, __file__, "--keep", str(root), "--_build", str(rows)], check=True)
            marker.touch()
        out = subprocess.run([sys.executable, __file__, "--keep", str(root), "--_measure", str(rows),
                              "--repeats", str(args.repeats)], check=True, stdout=subprocess.PIPE, text=True)  # fmt: skip
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        r = json.loads(line[len("RESULT "):])
        results.append(r)
        report(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
