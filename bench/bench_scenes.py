"""Speed of the synthetic scene generator on one core: ``python bench/bench_scenes.py [--n 300]``.

Prints scenes per second (in memory, no JPEG) for a few sizes, by wall clock and per CPU second (the figure
that depends least on what else the machine runs), and the rate of writing a folder with JPEG files and
``annotations.json`` at the demo-gallery size. OpenCV and the BLAS are limited to one thread so the figures
are per core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from core.synthetic.scene_folder import write_scene_folder  # noqa: E402
from core.synthetic.scenes import generate_scene  # noqa: E402


def _rate(n: int, size: tuple[int, int], repeat: int) -> tuple[float, float, float]:
    """Best-of-``repeat`` scenes per second by wall clock and per CPU second, and objects per scene."""
    best_wall = best_cpu = float("inf")
    objects = 0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        objects = sum(len(generate_scene(0, i, size).objects) for i in range(n))
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return n / best_wall, n / best_cpu, objects / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="scenes per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    generate_scene(0, 0, (128, 128))  # warm-up
    for size in [(128, 128), (160, 160), (224, 224), (320, 240)]:
        wall, cpu, mean_obj = _rate(args.n, size, args.repeat)
        print(
            f"{size[0]}x{size[1]}: {wall:6.1f} scenes/s wall, {cpu:6.1f} per CPU second "
            f"({1000 / cpu:.2f} ms CPU each, {mean_obj:.2f} objects per scene)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        n = min(args.n, 200)
        t0 = time.perf_counter()
        write_scene_folder(f"{tmp}/gallery", n, seed=0, size=(320, 240))
        dt = time.perf_counter() - t0
        print(f"320x240 folder (JPEG q92 + annotations.json): {n / dt:6.1f} scenes/s wall")


if __name__ == "__main__":
    main()
