"""The measurement that chose how several objects' scores combine (``core.search.objects``).

Run ``python bench/objects_rules.py --seed 3 [--queries 300] [--database 2000]``. It follows ``phs eval
--objects 2`` (the same groups of two objects of different categories, the same correctness for and / or /
not, precision at 20 averaged per query image, then over images) on the demo model, but scores the whole
database once per object and setting and then tries every rule on the same scores:

* per-object scores from ``h_on`` 1-4, Query-Only or Query-DB (the database recomputed with the object's
  head mask), and three blends (Query-Only ``h_on`` 2 with Query-DB ``h_on`` 2 or 3, and Query-Only
  ``h_on`` 1, 2 and 3; z-scores averaged);
* raw cosines or z-scores against each object's cosines over the library sample the product uses;
* and: minimum, mean, soft minimum (several temperatures), the worse of the two ranks, reciprocal-rank
  fusion; or: maximum, mean, soft maximum, the better rank, reciprocal-rank fusion; not: the wanted score
  minus a share of the excluded one, or the minimum of the wanted and the negated excluded score.

It prints one table per combination: MP@20 (%) of every rule (rows) for every score setting (columns), with
CBIR, today's one-region PHS and the base rate. Tune on one seed; confirm with ``phs eval`` on others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

K = 20


def _z(s: np.ndarray, sample: np.ndarray) -> np.ndarray:
    return (s - s[sample].mean()) / s[sample].std()


def _rank(s: np.ndarray) -> np.ndarray:
    r = np.empty(len(s))
    r[np.argsort(-s, kind="stable")] = np.arange(len(s))
    return r


def _soft_min(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return -t * np.logaddexp(-a / t, -b / t)


def rules(combine: str, a: np.ndarray, b: np.ndarray, za: np.ndarray, zb: np.ndarray) -> dict[str, np.ndarray]:
    """Every rule tried for one combination, on raw cosines ``a``, ``b`` and their z-scores ``za``, ``zb``."""
    if combine == "and":
        ra, rb = _rank(a), _rank(b)
        return {"min": np.minimum(a, b), "mean": a + b, "soft-min t.02": _soft_min(a, b, 0.02),
                "soft-min t.05": _soft_min(a, b, 0.05), "z min": np.minimum(za, zb), "z mean": za + zb,
                "z soft-min t.25": _soft_min(za, zb, 0.25), "z soft-min t.5": _soft_min(za, zb, 0.5),
                "z soft-min t1": _soft_min(za, zb, 1.0), "worse rank": -np.maximum(ra, rb),
                "rrf 60": 1 / (60 + ra) + 1 / (60 + rb)}  # fmt: skip
    if combine == "or":
        ra, rb = _rank(a), _rank(b)
        return {"max": np.maximum(a, b), "mean": a + b, "z max": np.maximum(za, zb),
                "z soft-max t.5": -_soft_min(-za, -zb, 0.5), "better rank": -np.minimum(ra, rb),
                "rrf 60": 1 / (60 + ra) + 1 / (60 + rb)}  # fmt: skip
    out = {"wanted only": a}
    for lam in (0.25, 0.5, 1.0):
        out[f"a - {lam} b"] = a - lam * b
        out[f"z: a - {lam} b"] = za - lam * zb
    out["z: min(a, -b)"] = np.minimum(za, -zb)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--database", type=int, default=2000)
    args = ap.parse_args()

    from core.evaluation.objects import correct_photos, object_groups, one_region
    from core.evaluation.protocol import encode_database, make_prompt, synthetic_split
    from core.method.engine import load_engine
    from core.method.phs import l2_normalize
    from core.search.objects import STATS_SAMPLE
    from core.search.service import QuerySpec, query_feature

    engine = load_engine("demo")
    queries, database = synthetic_split(args.queries, args.database, seed=args.seed)
    db = encode_database(engine, database)
    sample = np.linspace(0, len(database) - 1, min(STATS_SAMPLE, len(database))).round().astype(np.int64)
    acc: dict[tuple[str, str, str], list[float]] = {}
    for rec in queries:
        pairs = {c: object_groups(rec.objects, 2, c) for c in ("and", "or", "not")}
        if not pairs["and"]:
            continue
        engine.set_image(rec.load())
        raw: dict[tuple[int, str], np.ndarray] = {}
        for oi in {i for groups in pairs.values() for g in groups for i in g}:
            prompt = make_prompt("box", rec.objects[oi].bbox, None)
            for h in (1, 2, 3, 4):
                q = query_feature(engine, QuerySpec(prompt=prompt, h_on=h))
                qn = l2_normalize(q.feature)
                raw[(oi, f"h{h} QO")] = db.features @ qn
                raw[(oi, f"h{h} QD")] = l2_normalize(engine.features_from_cache(db.x_cls, db.o_cls, q.head_mask)) @ qn
        z = {key: _z(s, sample) for key, s in raw.items()}
        for oi in {i for i, _ in raw}:
            for name, parts in (("QO h2 + QD h2", ("h2 QO", "h2 QD")), ("QO h2 + QD h3", ("h2 QO", "h3 QD")),
                                ("QO h1 + h2 + h3", ("h1 QO", "h2 QO", "h3 QO"))):  # fmt: skip
                z[(oi, name)] = np.mean([z[(oi, p)] for p in parts], axis=0)
                raw[(oi, name)] = np.mean([raw[(oi, p)] for p in parts], axis=0)
        cbir = db.features @ l2_normalize(engine.feature())
        per_image: dict[tuple[str, str, str], list[float]] = {}
        for combine, groups in pairs.items():
            for i, j in groups:
                cats = [rec.objects[i].category_id, rec.objects[j].category_id]
                correct = correct_photos(db.categories, cats, combine)

                def p_at(s: np.ndarray, correct: np.ndarray = correct) -> float:
                    return float(correct[np.argsort(-s, kind="stable")[:K]].mean())

                region = one_region([rec.objects[i].bbox, rec.objects[j].bbox], engine.image_size, engine.grid,
                                    combine)  # fmt: skip
                today = db.features @ l2_normalize(query_feature(engine, QuerySpec(prompt=region)).feature)
                per_image.setdefault((combine, "base rate", ""), []).append(float(correct.mean()))
                for name, s in (("CBIR", cbir), ("PHS (QO, one region)", today)):
                    per_image.setdefault((combine, name, ""), []).append(p_at(s))
                for setting in {key for _, key in raw}:
                    for name, s in rules(combine, raw[(i, setting)], raw[(j, setting)], z[(i, setting)],
                                         z[(j, setting)]).items():  # fmt: skip
                        per_image.setdefault((combine, name, setting), []).append(p_at(s))
        for key, v in per_image.items():
            acc.setdefault(key, []).append(float(np.mean(v)))
    report(acc, args)


def report(acc: dict[tuple[str, str, str], list[float]], args: argparse.Namespace) -> None:
    """One markdown table per combination: rules by score settings, MP@20 in percent."""
    settings = [f"h{h} {m}" for m in ("QO", "QD") for h in (1, 2, 3, 4)] + ["QO h2 + QD h2", "QO h2 + QD h3",
                                                                         "QO h1 + h2 + h3"]
    n_img = len(next(iter(acc.values())))
    for combine in ("and", "or", "not"):
        base = {name: 100 * np.mean(acc[(combine, name, "")]) for name in ("base rate", "CBIR", "PHS (QO, one region)")}
        print(f"\n{combine}: MP@{K} (%), seed {args.seed}, {n_img} query images, database {args.database}; "
              + ", ".join(f"{k} {v:.2f}" for k, v in base.items()))  # fmt: skip
        print("| rule | " + " | ".join(settings) + " |")
        print("|---|" + "---:|" * len(settings))
        names = dict.fromkeys(name for (c, name, s) in acc if c == combine and s)
        for name in names:
            cells = [100 * np.mean(acc[(combine, name, s)]) for s in settings]
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")


if __name__ == "__main__":
    main()
