"""What bf16 encoding costs and gains on the CPU: speed of the forward, feature cosine and top-10 agreement.

Run ``python bench/bench_precision.py [--photos 120] [--batch 8] [--repeats 5]``. For the demo model on the
generated demo gallery, and for ViT-S/14 and ViT-B/14 with random weights on photos of smooth blobs, it
encodes every photo in fp32 and in bf16 (``torch.autocast`` on the CPU, as the indexer does where the CPU
has native bf16) and prints:

1. the forward time per photo at batch ``--batch`` in fp32 and in bf16, and the speed-up;
2. the cosine between each photo's fp32 and bf16 features (mean, min);
3. top-10 agreement: every photo searched against the others (cosine), the share of the fp32 top-10 found
   in the bf16 top-10, for a bf16 index searched with bf16 queries and with fp32 queries (an index built in
   one precision searched from the other, which the index fingerprint allows).

Random weights get unit scale everywhere (``tests.conftest.perturb_``); with timm's own initialisation all
photos would share nearly one feature and the rankings would be ties. It also says whether this CPU has native bf16 (:func:`core.method.precision.cpu_has_native_bf16`); without it
autocast emulates bf16 and is slower than fp32, which is why ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _topk(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = q @ db.T
    np.fill_diagonal(s, -np.inf)  # a photo is not its own neighbour
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of the rows of ``a`` (top-k ids) found in the same rows of ``b``."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def measure(name: str, engine, photos: list, batch: int, repeats: int) -> None:
    import torch

    x = torch.stack([engine.preprocess(p) for p in photos])
    out = {}
    for precision in ("fp32", "bf16"):
        engine.set_precision(precision)
        feats = np.concatenate([engine.encode_batch(x[i : i + batch]).features for i in range(0, len(x), batch)])
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            engine.encode_batch(x[:batch])
            times.append((time.perf_counter() - t0) * 1000 / batch)
        out[precision] = (_unit(feats), statistics.median(times))
    f32, t32 = out["fp32"]
    f16, t16 = out["bf16"]
    cos = np.sum(f32 * f16, axis=1)
    top32 = _topk(f32, f32, 10)
    both16 = _topk(f16, f16, 10)
    mixed = _topk(f16, f32, 10)  # a bf16 index searched with fp32 queries
    print(f"\n== {name}: {len(photos)} photos, {engine.input_size} px, batch {batch}")
    print(f"  forward per photo: fp32 {t32:.1f} ms, bf16 {t16:.1f} ms, speed-up {t32 / t16:.2f}x")
    print(f"  feature cosine fp32 vs bf16: mean {cos.mean():.5f}, min {cos.min():.5f}")
    print(f"  top-10 agreement with fp32: bf16 index + bf16 queries {agreement(top32, both16) * 100:.1f}%, "
          f"bf16 index + fp32 queries {agreement(top32, mixed) * 100:.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="demo,dinov2-s14,dinov2-b14")
    args = ap.parse_args()
    import torch
    from PIL import Image

    from core.method.engine import load_engine
    from core.method.precision import cpu_has_native_bf16
    from core.synthetic.scenes import generate_scene
    from tests.conftest import perturb_, random_image

    print(f"bench_precision: torch {torch.__version__}, {torch.get_num_threads()} threads, native CPU bf16: "
          f"{cpu_has_native_bf16()}")
    for name in args.models.split(","):
        if name == "demo":
            engine = load_engine("demo", device="cpu", precision="fp32")
            photos = [Image.fromarray(generate_scene(20240611, i, (224, 224)).image) for i in range(args.photos)]
            label = "demo model, demo gallery scenes"
        else:
            engine = load_engine(name, pretrained=False, device="cpu", precision="fp32")
            # timm's init (LayerScale 1e-5) makes every photo's feature nearly the same and every ranking a
            # tie; weights of unit scale everywhere make the photos tell apart, as trained weights do.
            perturb_(engine.model, seed=0)
            photos = [Image.fromarray(random_image(320, 240, seed=i)) for i in range(args.photos)]
            label = f"{name}, random weights (unit scale), blob photos"
        measure(label, engine, photos, args.batch, args.repeats)


if __name__ == "__main__":
    main()
