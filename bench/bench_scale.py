"""Benchmark at library scale: a real index of 100k and 1M synthetic photos, searched through the query service.

Run ``python bench/bench_scale.py [--rows 100000,1000000] [--keep DIR]``. For each size it builds (once; with
``--keep`` the files are reused by later runs) an index through the store API: the SQLite rows with their
features and Query-DB checksums, the float16 Query-DB cache and the FAISS file, exactly as the indexer writes
them, with ViT-B/14 dimensions (768-d features, 12 heads of 64). The model is a random-weight ViT-B/14 with its
LayerScale set to 1 (at timm's init every photo gives the same feature). Features are clustered (a power law of
cluster sizes, in-cluster cosine about 0.5) around the model's own features of 128 source photos, so that a
PHS query on one of those photos lies near the library as a query on a real library photo would, and recall
of the approximate index means something. The build runs in a child process, so the peak RSS printed is the
searcher's. Then it prints:

1. Index open time (the Searcher, and the FAISS file read), bytes per photo on disk, the index kind.
2. Prompt edit -> top-100 through ``QueryService.run`` (a box moved on a source photo, Query-Only; PHS head
   selection and feature + FAISS on one thread + SQLite lookup), p50 / p95.
3. Recall@100 of the FAISS index against an exact scan of the stored vectors, mean and worst query, for
   near-duplicate queries (a stored feature plus noise), PHS queries on 25 source photos (4 boxes each) and
   PHS queries on 25 photos the library was not made around.
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
SOURCES = 128  # photos the library's clusters are made around


def _centers(seed: int, n_clusters: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def source_photo(i: int) -> np.ndarray:
    """The ``i``-th photo the library's clusters are made around (smooth random blobs, 640x480)."""
    from tests.conftest import random_image

    return random_image(640, 480, seed=1000 + i)


def feature_centers(plain: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """``(n_clusters, 768)`` unit cluster centres spread around the model's plain features of the source photos.

    Centre ``j`` is source ``j % S``'s feature plus a random direction of norm 0.6 (cosine about 0.85 with it),
    so the library lies where the model puts photos and a PHS query on a source photo lies near the library.
    """
    rng = np.random.default_rng([seed, 7])
    src = plain[np.arange(n_clusters) % len(plain)]
    c = src + 0.6 * rng.standard_normal((n_clusters, plain.shape[1])).astype(np.float32) / np.sqrt(plain.shape[1])
    return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)


def clustered_rows(start: int, n: int, total: int, centers: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start .. start+n`` of a clustered library of ``total`` photos: unit features and QD cache rows.

    Args:
        centers: ``(C, 768)`` the features' cluster centres (:func:`feature_centers`); cluster sizes follow a
            power law, in-cluster cosine about 0.5.

    Returns:
        ``features`` (n, 768) float32 unit-norm, ``qd`` (n, 768 + 12*64) float16.
    """
    n_clusters = len(centers)
    qc = _centers(seed + 1, n_clusters, DIM + HEADS * HEAD_DIM)
    rng = np.random.default_rng([seed, start])
    w = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    lab = rng.choice(n_clusters, n, p=w / w.sum())
    f = centers[lab] + rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    q = 4.0 * (qc[lab] + rng.standard_normal((n, qc.shape[1])).astype(np.float32) / np.sqrt(qc.shape[1]))
    q *= np.sqrt(qc.shape[1]) / 4.0  # unit-variance entries, like a ViT's residual stream
    return f.astype(np.float32), q.astype(np.float16)


def insert_rows(index, start: int, n: int, total: int, centers: np.ndarray) -> None:
    """Write ``n`` synthetic photos through the store API (QD cache rows flushed, then one transaction)."""
    from core.library import store as st
    from core.library.database import qd_checksum

    def rel(i: int) -> str:
        return f"album{i // 1000:04d}/IMG_{i:07d}.jpg"

    db = index.db
    for a in range(start, start + n, CHUNK):
        b = min(a + CHUNK, start + n)
        f, q = clustered_rows(a, b - a, total, centers)
        slots = np.arange(a, b, dtype=np.int64)
        index.qd.write(slots, q)
        index.qd.flush()
        t = time.time()
        with db.transaction() as conn:
            gen = db.next_generation(conn)
            conn.executemany(
                "INSERT INTO files (path, size, mtime_ns, hash, status, error, feature, slot, gen, first_seen, "
                "updated_at, qd_check) VALUES (?, ?, ?, ?, 'done', NULL, ?, ?, ?, ?, ?, ?)",
                ((st.encode_rel(rel(i)), 3_000_000 + i, i, f"h{i:016x}", f[i - a].tobytes(), int(i), gen, t, t,
                  qd_checksum(rel(i), q[i - a])) for i in range(a, b)),
            )  # fmt: skip


def engine_b14(precision: str = "auto"):
    """A random-weight ViT-B/14 whose LayerScale is set to 1: at timm's init (1e-5) the blocks add nothing
    and every photo and every prompt gives the same feature."""
    import torch

    from core.method.engine import load_engine

    torch.manual_seed(0)  # the same random weights in every process, so the index fingerprint matches
    engine = load_engine("dinov2-b14", pretrained=False, device="cpu", precision=precision)
    with torch.no_grad():
        for name, p in engine.model.named_parameters():
            if name.endswith(".gamma"):
                p.fill_(1.0)
    return engine


def source_features(engine, n: int = SOURCES) -> np.ndarray:
    """``(n, 768)`` unit plain features of the first ``n`` source photos (:func:`source_photo`)."""
    out = []
    for a in range(0, n, 8):
        f = engine.encode_batch([source_photo(i) for i in range(a, min(a + 8, n))]).features
        out.append(f / np.linalg.norm(f, axis=1, keepdims=True))
    return np.concatenate(out).astype(np.float32)


def build(folder: Path, rows: int, centres: str = "model") -> None:
    """Child process: create the index of ``rows`` synthetic photos and save its FAISS file."""
    from core.library import PhotoIndex

    engine = engine_b14()
    t = time.perf_counter()
    n_clusters = max(rows // 100, 50)
    if centres == "model":
        centers = feature_centers(source_features(engine), n_clusters)
        print(f"  {SOURCES} source photos encoded in {time.perf_counter() - t:.0f} s", flush=True)
    else:
        centers = _centers(0, n_clusters, DIM)
    np.save(folder.parent / f"{folder.name}-centers.npy", centers)
    t0 = time.perf_counter()
    with PhotoIndex.open(folder, engine, writable=True, rebuild=True) as idx:
        insert_rows(idx, 0, rows, rows, centers)
        t1 = time.perf_counter()
        idx.save_vectors()
        t2 = time.perf_counter()
        kind = idx.vectors().kind
    print(f"  built {rows:,} rows: SQLite + QD cache {t1 - t0:.0f} s, FAISS ({kind}) {t2 - t1:.0f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)  # fmt: skip


def random_box(rng: np.random.Generator):
    """A box of 60-240 x 60-180 px somewhere on a 640x480 photo."""
    from core.method.prompts import Prompt

    x0, y0 = rng.uniform(0, 400), rng.uniform(0, 300)
    return Prompt.from_box(x0, y0, x0 + rng.uniform(60, 240), y0 + rng.uniform(60, 180))


def phs_queries(service, photos: list[np.ndarray], rng: np.random.Generator, per_photo: int = 4) -> np.ndarray:
    """``(len(photos) * per_photo, 768)`` unit PHS query features of random boxes on each photo."""
    from core.search.service import QuerySpec

    out = []
    for photo in photos:
        service.set_photo(photo)
        for _ in range(per_photo):
            f = service.run(QuerySpec(prompt=random_box(rng), method="phs", mode="qo", k=1)).query.feature
            out.append(f / np.linalg.norm(f))
    return np.stack(out).astype(np.float32)


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
    from core.search import Searcher
    from core.search.service import QueryService, QuerySpec, rank

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
    service.set_photo(source_photo(0))
    rng = np.random.default_rng(0)
    edits = []
    for i in range(repeats + 3):
        t = time.perf_counter()
        service.run(QuerySpec(prompt=random_box(rng), method="phs", mode="qo", k=100))
        if i >= 3:
            edits.append((time.perf_counter() - t) * 1000)
    res["prompt_edit_top100_ms"] = edits

    # recall@100 against an exact scan of the stored (float16) vectors
    nq = 100
    ids = np.sort(rng.choice(vi.ids(), nq, replace=False))
    near = searcher.features_of(ids) + 0.3 * rng.standard_normal((nq, DIM)).astype(np.float32) / np.sqrt(DIM)
    sets = {"near": near / np.linalg.norm(near, axis=1, keepdims=True),
            "library_photos": phs_queries(service, [source_photo(i) for i in range(25)], rng),
            "new_photos": phs_queries(service, [source_photo(5000 + i) for i in range(25)], rng)}  # fmt: skip
    for name, queries in sets.items():
        _, want = vi.exact.search(np.ascontiguousarray(queries, np.float32), 100) if vi.exact is not None else (
            vi.index.search(np.ascontiguousarray(queries, np.float32), 100))  # fmt: skip
        rec = [len(set(w.tolist()) & set(vi.search(q[None], 100)[1][0].tolist())) / 100 for q, w in zip(queries, want)]
        res[f"recall_{name}"] = float(np.mean(rec))
        res[f"recall_{name}_min"] = float(np.min(rec))

    # Query-DB re-rank of 1,000 candidates through the service, vs fp32 and vs the bare matmul bound
    qd, agree = [], []

    class Fp32Rerank(PHSEngine):
        rerank_precision = "fp32"

    exact_engine = PHSEngine.__new__(Fp32Rerank)
    exact_engine.__dict__.update(engine.__dict__)
    service.set_photo(source_photo(0))
    for i in range(repeats + 2):
        out = service.run(QuerySpec(prompt=random_box(rng), method="phs", mode="qd", k=20, candidates=1000))
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
        insert_rows(idx, rows, 1000, rows, np.load(folder.parent / f"{folder.name}-centers.npy"))
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
    print(f"\n== {n:,} photos, {r.get('centres', 'model')} cluster centres (ViT-B/14 dims; FAISS {r['kind']}, nlist {r['nlist']}, nprobe {r['nprobe']}; encode "
          f"{r['precision']}, QD first pass {r['rerank_precision']}; torch {r['torch_threads']} threads, FAISS 1)")  # fmt: skip
    print(f"  index open: Searcher {r['open_ms']:.0f} ms + FAISS read {r['faiss_read_ms']:.0f} ms")
    print(f"  on disk: {r['bytes_per_photo_total'] / 1000:.1f} kB per photo ("
          + ", ".join(f"{k} {v / 1000:.2f} kB" for k, v in r["bytes_per_photo"].items() if v) + ")")
    print(f"  prompt edit -> top-100 through the query service: {pct(r['prompt_edit_top100_ms'])}")
    print("  recall@100 vs exact (mean, worst query): " + ", ".join(
        f"{name} {r[f'recall_{key}']:.4f} ({r[f'recall_{key}_min']:.2f})" for key, name in (
            ("near", "near-duplicates"), ("library_photos", "PHS queries on library photos"),
            ("new_photos", "PHS queries on new photos"))))  # fmt: skip
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
    ap.add_argument("--centres", choices=("model", "random"), default="model",
                    help="cluster centres around the model's features of source photos (a PHS query on one of them "
                    "lies near the library), or random directions (every PHS query is unlike any photo)")  # fmt: skip
    ap.add_argument("--_build", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_measure", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="phs-scale-"))
    os.environ.setdefault("PHS_DATA_DIR", str(root / "data"))
    name = "photos{}" + ("" if args.centres == "model" else "-random")
    if args._build:
        build(root / name.format(args._build), args._build, args.centres)
        return
    if args._measure:
        r = measure(root / name.format(args._measure), args._measure, args.repeats)
        r["centres"] = args.centres
        print("RESULT " + json.dumps(r), flush=True)
        return
    import torch

    print(f"bench_scale: {os.cpu_count()} CPUs, torch {torch.__version__}; data in {root}", flush=True)
    results = []
    for rows in [int(v) for v in args.rows.split(",")]:
        folder = root / name.format(rows)
        folder.mkdir(parents=True, exist_ok=True)
        marker = root / f"{folder.name}-built"
        if not marker.exists():
            subprocess.run([sys.executable, __file__, "--keep", str(root), "--centres", args.centres, "--_build",
                            str(rows)], check=True)  # fmt: skip
            marker.touch()
        out = subprocess.run([sys.executable, __file__, "--keep", str(root), "--centres", args.centres, "--_measure", str(rows),
                              "--repeats", str(args.repeats)], check=True, stdout=subprocess.PIPE, text=True)  # fmt: skip
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        r = json.loads(line[len("RESULT "):])
        results.append(r)
        report(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
