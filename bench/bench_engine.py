"""Time ``set_image`` (one forward) against a prompt edit (select heads + feature) on this machine.

Random weights (``pretrained=False``): timing does not depend on the values. Prints one row per model and
the ratio forward / prompt edit.

    python bench/bench_engine.py [--models dinov2-s14,dinov2-b14] [--repeats 20] [--precision fp32]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from core.method.engine import load_engine
from core.method.prompts import Box, Point, Prompt


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def bench_model(name: str, img: np.ndarray, repeats: int, precision: str) -> None:
    """Print one row: forward time, prompt-edit time, FA edit time and the ratio for ``name``."""
    engine = load_engine(name, pretrained=False, device="cpu", precision=precision)
    # A different image each call so the encoded-image cache never answers.
    it = iter([np.roll(img, 7 * i, axis=1) for i in range(repeats + 1)])
    t_set, _ = _time(lambda: engine.set_image(next(it)), repeats)
    boxes = iter([Prompt(box=Box(50 + i % 200, 60, 300 + i % 200, 400), points=(Point(600, 20, positive=False),))
                  for i in range(repeats * 10 + 1)])

    def edit() -> None:
        sel = engine.select_heads(next(boxes), h_on=5)
        engine.feature(sel.head_mask)

    t_edit, _ = _time(edit, repeats * 10)
    # FA results are cached per ROI box; move the box by a whole patch or more each time.
    fa_boxes = iter([Prompt.from_box(45 * (i % 8), 45 * (i // 8 % 6), 300 + 40 * (i % 8), 460)
                     for i in range(repeats + 1)])
    t_fa, _ = _time(lambda: engine.query(next(fa_boxes), method="fa+phs"), repeats)
    print(f"{name:12s} {engine.num_heads:5d} {t_set * 1e3:13.1f} {t_edit * 1e6:15.0f} {t_fa * 1e3:11.1f} "
          f"{t_set / t_edit:8.0f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="dinov2-s14,dinov2-b14")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, precision {args.precision}")
    print(f"{'model':12s} {'heads':>5s} {'set_image ms':>13s} {'prompt edit us':>15s} {'FA edit ms':>11s} {'ratio':>9s}")
    rng = np.random.default_rng(0)
    img = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    for name in args.models.split(","):
        bench_model(name, img, args.repeats, args.precision)


if __name__ == "__main__":
    main()
