"""Benchmark of keeping the library current in the app: the start-up check of an unchanged folder, and a search
while a background index run goes on.

Run ``python bench/bench_watch.py`` (a few minutes on 2 CPU cores with the defaults; ``--help`` for the sizes).
Everything runs offline (random ViT weights: timing does not depend on them) in a temporary data directory.
Figures printed:

1. Start-up check: one incremental run of an unchanged folder of ``--files`` small JPEGs, as the app runs it at
   launch (stat only: no photo is opened): seconds per run (median of 5), and the first full index for scale.
2. Search during a background run: the time of a prompt edit's answer (:meth:`phs_gui.session.SearchSession.run`,
   Query-Only, top 24, a box moved a little each time) with nothing else running, while a background run
   re-encodes ``--photos`` 640x480 photos with the same model at the app's low priority (its thread at nice
   10, as :func:`phs_gui.folder_watch.lower_priority` sets it), and while the same run goes at normal priority.
   p50 and p95 in ms over ``--queries`` edits each, with the nice value each thread ran at (a process started
   at nice 19 cannot lower a thread further: both conditions then run at 19).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _small_jpegs(folder: Path, n: int, size: tuple[int, int]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(n):
        arr = base.copy()
        for b in range(12):  # every file its own content: bit b of i as a black or white 8x8 block
            y, x = divmod(b, size[0] // 8)
            arr[y * 8 : y * 8 + 8, x * 8 : x * 8 + 8] = 255 if (i >> b) & 1 else 0
        Image.fromarray(arr).save(folder / f"img_{i:05d}.jpg", quality=85)


def startup_check(engine: object, folder: Path, n: int) -> None:
    """Figure 1: the stat-only run of an unchanged folder."""
    from core.library import index_folder

    t0 = time.perf_counter()
    _small_jpegs(folder, n, (64, 48))
    made = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = index_folder(folder, engine, batch_size=32)
    full = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        rep = index_folder(folder, engine, batch_size=8, workers=2, settle_s=2.0)  # as the app's check runs
        times.append(time.perf_counter() - t0)
        assert rep.skipped == n and rep.indexed == 0, rep
    med = statistics.median(times)
    print(f"1. start-up check, {n} unchanged photos: {med:.3f} s per run (median of 5; min {min(times):.3f}, "
          f"max {max(times):.3f}) = {med / n * 1e6:.0f} us per photo; first full index {full:.1f} s "
          f"({first.indexed} encoded), {made:.1f} s to write the files")


def _latencies(session: object, options: object, n: int, size: tuple[int, int]) -> list[float]:
    from core.method.prompts import Prompt

    w, h = size
    out = []
    for i in range(n):
        d = (i % 7) * 4
        prompt = Prompt.from_box(w * 0.2 + d, h * 0.2, w * 0.6 + d, h * 0.6)
        t0 = time.perf_counter()
        session.run(prompt, options)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _background(session: object, folder: Path, niced: bool, stop: threading.Event, runs: list[int]) -> None:
    from core.library import index_folder
    from phs_gui.folder_watch import lower_priority

    if niced:
        lower_priority()
    runs[1] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if hasattr(os, "getpriority") else 0
    while not stop.is_set():  # re-encode the folder again and again: a steady load for as long as it is measured
        index_folder(folder, session.index_engine, batch_size=8, workers=2, rebuild=True,  # type: ignore[attr-defined]
                     cancel=stop)  # fmt: skip
        runs[0] += 1


def _pct(xs: list[float]) -> str:
    a = np.asarray(xs)
    return f"p50 {np.percentile(a, 50):6.1f} ms, p95 {np.percentile(a, 95):6.1f} ms"


def search_during_run(args: argparse.Namespace, tmp: Path) -> None:
    """Figure 2: prompt edits while a background run encodes photos."""
    from bench.bench_index import make_folder
    from core.library import index_folder
    from core.method.engine import load_engine
    from phs_gui.session import SearchOptions, SearchSession

    engine = load_engine(args.model, pretrained=False, device="cpu")
    session = SearchSession(engine)
    searched, busy = tmp / "searched", tmp / "arriving"
    make_folder(searched, args.searched, (640, 480))
    make_folder(busy, args.photos, (640, 480))
    index_folder(searched, session.index_engine, batch_size=16)
    session.open_folder(searched)
    photo = sorted(searched.glob("*.jpg"))[0]
    session.encode(str(photo))
    options = SearchOptions(top_k=24)
    _latencies(session, options, 5, (640, 480))  # warm
    print(f"2. prompt-edit answer, {args.model} (random weights), {args.searched} photos searched, "
          f"{args.queries} edits each, torch threads {__import__('torch').get_num_threads()}:")
    own = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    print(f"   nothing else running:                  {_pct(_latencies(session, options, args.queries, (640, 480)))}"
          f"  (the searching thread at nice {own})")
    for niced, label in ((True, "background run at nice 10 (the app)"), (False, "background run at normal priority")):
        stop, runs = threading.Event(), [0, 0]
        t = threading.Thread(target=_background, args=(session, busy, niced, stop, runs))
        t.start()
        time.sleep(args.lead_s)  # the run is encoding by now
        lat = _latencies(session, options, args.queries, (640, 480))
        stop.set()
        t.join()
        print(f"   {label + ':':<39} {_pct(lat)}  (its thread at nice {runs[1]}, {runs[0]} full runs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=3000, help="small JPEGs in the start-up check's folder")
    ap.add_argument("--model", default="dinov2-s14", help="model of the search figure (random weights)")
    ap.add_argument("--searched", type=int, default=200, help="photos in the folder searched")
    ap.add_argument("--photos", type=int, default=64, help="photos the background run re-encodes, again and again")
    ap.add_argument("--queries", type=int, default=400, help="prompt edits per condition")
    ap.add_argument("--lead-s", type=float, default=3.0, help="seconds the background run goes before measuring")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="phs-bench-watch-") as d:
        tmp = Path(d)
        os.environ["PHS_DATA_DIR"] = str(tmp / "data")
        from core.method.engine import load_engine

        startup_check(load_engine("demo", device="cpu"), tmp / "small", args.files)
        search_during_run(args, tmp)


if __name__ == "__main__":
    main()
