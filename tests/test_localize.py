"""``phs eval --localize``: proposals of the kept heads against all heads, on the correct top-k results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.evaluation.localize import Localization, collect_pairs, database_states, markdown, score_pairs
from core.evaluation.protocol import encode_database, make_prompt, synthetic_split
from core.method.engine import load_engine
from core.method.propose import box_iou, propose
from core.search.service import MemoryGallery


def test_summary_counts_shares_and_means():
    loc = Localization({"phs": [0.5, 0.2, 0.9, 0.49], "all-heads": [0.1, 0.0, 0.6, 0.3]}, {"k": 5})
    s = loc.summary()
    assert s["phs"] == {"iou@0.5": 50.0, "mean_iou": 52.25}
    assert s["all-heads"] == {"iou@0.5": 25.0, "mean_iou": 25.0}
    assert s["n_results"] == 4 and s["k"] == 5
    assert "| phs | 50.0 | 52.2 |" in markdown(s)


def test_pairs_are_correct_results_and_ious_are_best_over_category_boxes():
    engine = load_engine("demo", device="cpu", precision="fp32")
    queries, database = synthetic_split(3, 40, seed=5)
    db = encode_database(engine, database)
    gallery = MemoryGallery(db.features, db.x_cls, db.o_cls)
    pairs = collect_pairs(engine, queries, gallery, db.categories, k=8, h_on=2,
                          make_prompt=lambda o, a: make_prompt("box", o.bbox, None))  # fmt: skip
    assert pairs and all(p.category_id in db.categories[p.db_index] for p in pairs)
    assert all(p.heads.sum() == 2 and p.descriptors["phs"].shape == (engine.feature_dim,) for p in pairs)
    states = database_states(engine, database, sorted({p.db_index for p in pairs}))
    loc = score_pairs(database, pairs, states, "match", model=engine.model)
    assert len(loc.ious["phs"]) == len(loc.ious["all-heads"]) == len(pairs)
    p = pairs[0]
    box = propose(states[p.db_index], p.heads, "match", model=engine.model, descriptor=p.descriptors["phs"],
                  head_mask=p.head_mask).box  # fmt: skip
    gts = [o.bbox for o in database[p.db_index].objects if o.category_id == p.category_id]
    assert loc.ious["phs"][0] == pytest.approx(max(box_iou(box, g) for g in gts))
    assert all(0.0 <= v <= 1.0 for v in loc.ious["phs"] + loc.ious["all-heads"])


def test_eval_cli_reports_localization(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["eval", "--localize", "--seed", "2", "--queries", "4", "--database", "40", "--k", "5",
            "--methods", "phs-qo", "--quiet", "--out", str(out), "--json", str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    loc = json.loads((tmp_path / "s.json").read_text())["localization"]
    assert set(loc) >= {"phs", "all-heads", "n_results"} and loc["n_results"] > 0
    for v in ("phs", "all-heads"):
        assert set(loc[v]) == {"iou@0.5", "mean_iou"}
        assert 0.0 <= loc[v]["iou@0.5"] <= 100.0 and np.isfinite(loc[v]["mean_iou"])
        assert f"| {v} | {loc[v]['iou@0.5']:.1f} |" in table
