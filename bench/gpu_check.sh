#!/usr/bin/env bash
# GPU check (not part of CI): on a machine with an NVIDIA GPU, with nothing downloaded (random weights),
# in under 5 minutes. Fails loudly (non-zero exit, traceback) on any error, including a missing GPU or a
# FAISS without GPU support. Prints every figure:
#   1. the CUDA engine in bf16 (auto precision must pick it);
#   2. indexing throughput of generated 12 MP JPEGs end to end vs the bare forward on the same batch size;
#   3. faiss-gpu search at 1M clustered 768-d vectors (the product's kind, ivfpq, whose GPU copy is an exact
#      float16 flat index): single and batched queries, recall@100 vs exact, the copy following an add and a removal;
#   4. the Query-DB re-rank of 1,000 ViT-B candidates on the GPU (two-pass bf16 + fp32 vs fp32 alone).
# Usage: bash bench/gpu_check.sh [photos=96]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PHS_DATA_DIR="$(mktemp -d)"
PHOTOS="${1:-96}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec timeout 290 python -X faulthandler - "$PHOTOS" <<'PY'
import sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "bench")
import faiss

from bench_index import make_folder
from bench_scale import clustered_rows
from core.library import index_folder
from core.library.vectors import VectorIndex, check_faiss_install, gpu_available, installed_faiss
from core.method.engine import load_engine
from core.search.service import MemoryGallery, rank

n_photos = int(sys.argv[1])
t_start = time.perf_counter()
assert torch.cuda.is_available(), "CUDA is not available to PyTorch"
check_faiss_install()
assert gpu_available(), f"FAISS sees no GPU (installed: {installed_faiss()}); run scripts/install_faiss_gpu.sh"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}; "
      f"FAISS {faiss.__version__} ({installed_faiss()}), {faiss.get_num_gpus()} GPU(s)")

def ms(f, n, sync=True):
    ts = []
    for _ in range(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        f()
        if sync:
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1000)
    return float(np.median(ts)), float(np.percentile(ts, 95))

# 1. engine
torch.manual_seed(0)
engine = load_engine("dinov2-b14", pretrained=False, device="cuda")
assert engine.device.type == "cuda" and engine.precision == "bf16", engine.describe()
print(f"[1] engine: {engine.describe()}; rerank first pass {engine.rerank_precision}")

# 2. indexing throughput vs the bare forward
folder = Path(tempfile.mkdtemp()) / "photos"
t = time.perf_counter()
mb = make_folder(folder, n_photos, (4000, 3000))
print(f"[2] generated {n_photos} 12 MP JPEGs ({mb:.1f} MB each) in {time.perf_counter() - t:.0f} s")
batch = 32
x = torch.randn(batch, 3, engine.input_size, engine.input_size)
engine.encode_batch(x)  # warm-up
fwd, _ = ms(lambda: engine.encode_batch(x), 5)
t = time.perf_counter()
report = index_folder(folder, engine, batch_size=batch)
dt = time.perf_counter() - t
assert report.failed == 0, report
per_img_index, per_img_fwd = dt / n_photos * 1000, fwd / batch
print(f"[2] indexing: {n_photos / dt:.1f} photos/s ({per_img_index:.1f} ms/photo end to end, batch {batch}); "
      f"bare forward {per_img_fwd:.2f} ms/photo; indexing / bare-forward throughput ratio {per_img_fwd / per_img_index:.2f}")

# 3. faiss-gpu search at 1M
n = 1_000_000
feats = np.concatenate([clustered_rows(a, min(50_000, n - a), n)[0] for a in range(0, n, 50_000)])
t = time.perf_counter()
vi = VectorIndex.build(768, "ivfpq", np.arange(n, dtype=np.int64), feats)
print(f"[3] ivfpq index of {n:,} built in {time.perf_counter() - t:.0f} s (nlist {vi.nlist}, nprobe {vi.nprobe})")
rng = np.random.default_rng(1)
q = feats[rng.choice(n, 200, replace=False)] + 0.3 * rng.standard_normal((200, 768)).astype(np.float32) / np.sqrt(768)
q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
vi.search(q[:1], 100)  # copies the index to the GPU
assert vi._gpu is not None, "the index was not copied to the GPU (see the log)"
single = []
for i in range(200):
    t = time.perf_counter()
    _, got = vi.search(q[i : i + 1], 100)
    single.append((time.perf_counter() - t) * 1000)
t = time.perf_counter()
_, got = vi.search(q, 100)
batch_ms = (time.perf_counter() - t) * 1000
flat = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(768))
flat.add(feats)
_, gt = flat.search(q, 100)
recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(gt.tolist(), got.tolist())])
print(f"[3] faiss-gpu at 1M: single query p50 {np.median(single):.2f} ms, p95 {np.percentile(single, 95):.2f} ms; "
      f"200 queries in one batch {batch_ms:.1f} ms; recall@100 vs exact {recall:.4f}")
vi.add(np.array([n], np.int64), q[:1])
vi.remove(np.array([0], np.int64))
_, got = vi.search(q[:1], 1)
assert vi._gpu is not None and got[0, 0] == n, "the GPU copy did not follow an add and a removal"
print("[3] the GPU copy followed an add and a removal")

# 4. QD re-rank of 1,000 candidates

_, qd = clustered_rows(0, 1000, n)
x_cls, o_cls = qd[:, :768], qd[:, 768:].reshape(1000, 12, 64)
f = engine.features_from_cache(x_cls, o_cls)
f /= np.linalg.norm(f, axis=1, keepdims=True)
gallery = MemoryGallery(f, x_cls, o_cls)
m = np.zeros(12, np.float32)
m[:5] = 12 / 5
two = ms(lambda: rank(engine, gallery, f[3], k=20, mode="qd", candidates=1000, head_mask=m), 20)
fp32 = ms(lambda: engine.features_from_cache(x_cls, o_cls, m), 20)
_, a = rank(engine, gallery, f[3], k=20, mode="qd", candidates=1000, head_mask=m)
exact = engine.features_from_cache(x_cls, o_cls, m)
b = np.argsort(-(exact / np.linalg.norm(exact, axis=1, keepdims=True)) @ f[3], kind="stable")[:20]
print(f"[4] QD re-rank of 1,000 on the GPU: two-pass p50 {two[0]:.2f} ms (p95 {two[1]:.2f}); fp32 features alone "
      f"p50 {fp32[0]:.2f} ms; top-20 positions equal to fp32: {np.mean(a == b) * 100:.0f}%")
print(f"gpu_check done in {time.perf_counter() - t_start:.0f} s")
PY
