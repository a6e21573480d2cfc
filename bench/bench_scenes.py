"""Speed of the synthetic scene generator on one core: ``python bench/bench_scenes.py [--n 300]``.

Prints images per second (in memory, no JPEG) for a few sizes, and the rate of writing a folder with
JPEG files and ``annotations.json`` for the demo-gallery size. OpenCV is limited to one thread so the
figure is per core.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2

from core.datasets import write_scene_folder
from core.scenes import generate_scene


def _rate(n: int, size: tuple[int, int], repeat: int) -> tuple[float, float]:
    best = float("inf")
    objects = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        objects = sum(len(generate_scene(0, i, size).objects) for i in range(n))
        best = min(best, time.perf_counter() - t0)
    return n / best, objects / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="scenes per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    generate_scene(0, 0, (128, 128))  # warm-up
    for size in [(128, 128), (160, 160), (224, 224), (320, 240)]:
        rate, mean_obj = _rate(args.n, size, args.repeat)
        print(
            f"{size[0]}x{size[1]}: {rate:7.1f} scenes/s in memory ({1000 / rate:.2f} ms each, {mean_obj:.2f} objects)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        n = min(args.n, 200)
        t0 = time.perf_counter()
        write_scene_folder(f"{tmp}/gallery", n, seed=0, size=(320, 240))
        dt = time.perf_counter() - t0
        print(f"320x240 folder (JPEG q92 + annotations.json): {n / dt:7.1f} scenes/s")


if __name__ == "__main__":
    main()
