"""Compare proposal methods and their parameters on synthetic scenes (what ``phs eval --localize`` measures).

Ranks a synthetic database with PHS (Query-Only) for every prompted object, keeps the correct top-k results
and prints, per proposal variant, the share of results whose proposed box has IoU >= 0.5 with a box of the
prompted category, and the mean IoU, for the kept heads (phs) and every head (all-heads).

    python bench/bench_propose.py [--model demo] [--seed 7] [--queries 40] [--database 400] [--k 20]
    python bench/bench_propose.py --time [--model demo]   # milliseconds per result photo of propose_results
"""

from __future__ import annotations

import argparse
import time

import torch

from core.evaluation.localize import collect_pairs, database_states, score_pairs
from core.evaluation.protocol import encode_database, make_prompt, synthetic_split
from core.method.engine import load_engine
from core.method.prompts import Prompt
from core.method.propose import propose_results
from core.search.service import MemoryGallery


def time_proposals(engine, n: int = 32) -> None:
    """Print the time of :func:`propose_results` per result photo (decode, encode, propose) at batch 16."""
    queries, database = synthetic_split(1, n, seed=1)
    rec = queries[0]
    engine.set_image(rec.load())
    prompt = Prompt.from_box(*[float(v) for v in rec.objects[0].bbox])
    sel = engine.select_heads(prompt, h_on=engine.recommended_h_on)
    photos = [r.load() for r in database]
    propose_results(engine, prompt, photos[:4], sel.selected, sel.head_mask)  # warm-up
    t0 = time.perf_counter()
    propose_results(engine, prompt, photos, sel.selected, sel.head_mask)
    ms = (time.perf_counter() - t0) * 1000 / n
    print(f"propose_results: {ms:.1f} ms per result photo ({n} photos, {torch.get_num_threads()} threads, "
          f"{engine.describe()})")

VARIANTS: list[tuple[str, dict]] = [
    ("threshold", {"frac": 0.2}),
    ("threshold", {"frac": 0.35}),
    ("threshold", {"frac": 0.5}),
    ("cut", {"tau": 0.2, "space": "keys"}),
    ("cut", {"tau": 0.2, "space": "kv"}),
    ("grow", {"seeds": 4, "tau": 0.3, "space": "keys"}),
    ("grow", {"seeds": 4, "tau": 0.3, "space": "keys", "seed_by": "proto"}),
    ("grow", {"seeds": 4, "tau": 0.3, "space": "keys", "seed_by": "both"}),
    ("grow", {"seeds": 4, "tau": 0.5, "space": "values"}),
    ("grow", {"seeds": 4, "tau": 0.5, "space": "kv"}),
    ("match", {"taus": (0.5,), "candidates": 4, "space": "keys"}),
    ("match", {"taus": (0.5,), "candidates": 4}),
    ("match", {"taus": (0.5, 0.7), "candidates": 3}),
    ("match", {}),  # the default: taus (0.5, 0.7), 2 candidates each, keys and values
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--database", type=int, default=400)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--prompt", default="box", choices=("box", "point", "mask"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time", action="store_true", help="time propose_results instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    engine = load_engine(args.model, device="cpu", precision="fp32")
    if args.time:
        time_proposals(engine)
        return
    queries, database = synthetic_split(args.queries, args.database, seed=args.seed)
    db = encode_database(engine, database)
    gallery = MemoryGallery(db.features, db.x_cls, db.o_cls)
    h_on = engine.recommended_h_on

    def prompt_of(o, ann):
        return make_prompt(args.prompt, o.bbox, ann.mask() if args.prompt != "box" else None)

    pairs = collect_pairs(engine, queries, gallery, db.categories, k=args.k, h_on=h_on, make_prompt=prompt_of)
    states = database_states(engine, database, sorted({p.db_index for p in pairs}))
    print(f"model {args.model}, seed {args.seed}, {args.queries} query images, {args.database} database images, "
          f"k={args.k}, h_on={h_on}, prompt {args.prompt}: {len(pairs)} correct results "
          f"({time.time() - t0:.0f} s to rank and encode)")
    print("| method | params | phs IoU>=0.5 | phs mean IoU | all-heads IoU>=0.5 | all-heads mean IoU |")
    print("|---|---|---|---|---|---|")
    for method, params in VARIANTS:
        s = score_pairs(database, pairs, states, method, model=engine.model, **params).summary()
        ps = ", ".join(f"{k}={v}" for k, v in params.items()) or "default"
        print(f"| {method} | {ps} | {s['phs']['iou@0.5']:.1f} | {s['phs']['mean_iou']:.1f} | "
              f"{s['all-heads']['iou@0.5']:.1f} | {s['all-heads']['mean_iou']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
