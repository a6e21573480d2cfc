"""The evaluation runner: every method on a tiny synthetic set with a tiny random engine, QD/QO/CBIR identities."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from core.evaluation.protocol import (
    METHODS,
    EvalConfig,
    EvalError,
    evaluate,
    make_prompt,
    markdown_table,
    object_point,
    synthetic_split,
    write_report,
)
from core.method.engine import load_engine
from tests.conftest import perturb_


@pytest.fixture(scope="module")
def engine():
    eng = load_engine(
        "deit3-s16", pretrained=False, device="cpu",
        model_kwargs={"img_size": 64, "depth": 3, "embed_dim": 48, "num_heads": 6},
    )
    perturb_(eng.model, seed=7)
    return eng


@pytest.fixture(scope="module")
def split():
    return synthetic_split(5, 30, seed=11, size=96)


def test_split_is_disjoint_and_queries_have_two_objects(split):
    q, db = split
    assert len(q) == 5 and len(db) == 30
    assert all(im.n_objects >= 2 for im in q)
    assert not {im.image_id for im in q} & {im.image_id for im in db}


# The tiny random model has no learned prompt; the learned-prompt methods are tested with the demo model below.
UNTRAINED = [m for m in METHODS if m not in ("lvp", "lvp+phs")]


def test_every_method_gives_sane_json(engine, split, tmp_path):
    q, db = split
    cfg = EvalConfig(methods=UNTRAINED, k=10, h_on=2, noise=40.0, h_on_sweep=[1, 3, 6])
    res = evaluate(engine, q, db, cfg, progress=False, info={"dataset": "synthetic"})
    paths = write_report(res, tmp_path)
    data = json.loads(paths["json"].read_text())
    n_prompts = sum(im.n_objects for im in q)
    assert data["n_prompts"] == n_prompts
    for key in ("MP@10", "MAP@10"):
        for m in UNTRAINED:
            assert 0.0 <= data[key][m] <= 100.0
        for m in UNTRAINED:
            if m != "cbir":
                assert 0.0 <= data[key][f"{m}-N"] <= 100.0
        assert "cbir-N" not in data[key]
    assert set(data["h_on_sweep"]) == {"phs-qo", "phs-qd"}
    assert set(data["h_on_sweep"]["phs-qo"]) == {"1", "3", "6"}
    # the sweep at the evaluated h_on would repeat the main run; at h = all heads QO equals CBIR
    assert data["h_on_sweep"]["phs-qo"]["6"]["MP@10"] == pytest.approx(data["MP@10"]["cbir"], abs=1e-6)
    table = paths["markdown"].read_text()
    assert "| Dataset | Model | CBIR | CBIR" not in table and "PHS (QO)-N" in table
    assert set(data["attention_gain"]) == {"red-circle"}  # no learned prompt for this model: the red circle's
    assert (tmp_path / "results.csv").read_text().count("\n") >= len(UNTRAINED) + 1
    for name in ("h_on_sweep.png", "noise_robustness.png", "gain_vs_objects.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_all_heads_qd_equals_qo_equals_cbir(engine, split):
    q, db = split
    cfg = EvalConfig(methods=["cbir", "phs-qo", "phs-qd"], k=10, h_on=engine.num_heads)
    res = evaluate(engine, q, db, cfg, progress=False)
    np.testing.assert_allclose(res.metrics["phs-qo"].precision, res.metrics["cbir"].precision, atol=1e-12)
    np.testing.assert_allclose(res.metrics["phs-qd"].precision, res.metrics["cbir"].precision, atol=1e-12)
    assert res.metrics["phs-qd"].mp == pytest.approx(res.metrics["cbir"].mp)
    assert res.metrics["phs-qd"].map == pytest.approx(res.metrics["cbir"].map)
    # with one head the selection changes the ranking (the random engine's heads differ)
    res1 = evaluate(engine, q, db, EvalConfig(methods=["cbir", "phs-qo"], k=10, h_on=1), progress=False)
    assert not np.allclose(res1.metrics["phs-qo"].precision, res1.metrics["cbir"].precision)


def test_metrics_follow_the_rankings(engine, split):
    """A database made of the query images' own categories only: every retrieved image is correct."""
    q, db = split
    keep = [i for i, im in enumerate(db) if im.n_objects > 0]
    res = evaluate(engine, q, db.subset(keep), EvalConfig(methods=["cbir"], k=1), progress=False)
    m = res.metrics["cbir"]
    assert m.precision.shape == (sum(im.n_objects for im in q),)
    assert set(np.unique(m.precision)) <= {0.0, 1.0}
    assert 0.0 <= m.mp <= 100.0


def test_prompts_point_and_mask(split):
    q, _ = split
    obj = q[0].objects[0]
    mask = obj.mask()
    x, y = object_point(mask, obj.bbox)
    assert mask[int(y), int(x)]
    assert make_prompt("mask", obj.bbox, mask).mask is not None
    assert make_prompt("box", obj.bbox, None).box is not None
    with pytest.raises(EvalError):
        make_prompt("mask", obj.bbox, None)


def test_bad_options_are_refused(engine, split):
    q, db = split
    with pytest.raises(EvalError):
        evaluate(engine, q, db, EvalConfig(methods=["nope"]), progress=False)
    with pytest.raises(EvalError):
        evaluate(engine, q, db, EvalConfig(methods=["phs-qo"], h_on_sweep=[99]), progress=False)


def test_markdown_has_the_seed_layout(engine, split):
    q, db = split
    res = evaluate(engine, q, db, EvalConfig(methods=["cbir", "fa", "phs-qo"], k=5), progress=False,
                   info={"dataset": "synthetic"})
    md = markdown_table(res)
    assert md.splitlines()[0] == "| Dataset | Model | CBIR | FA | PHS (QO) |"
    assert "MP@5" in md and "MAP@5" in md


def test_query_db_is_reported_as_shipped_beside_the_exact_one(engine, split, tmp_path):
    """phs-qd re-ranks the Query-Only top K' (the shipped search); phs-qd-exact the whole database."""
    q, db = split
    n = len(db)
    small = evaluate(engine, q, db, EvalConfig(methods=["phs-qd"], k=5, h_on=1, candidates=5), progress=False)
    assert list(small.metrics) == ["phs-qd", "phs-qd-exact"]
    overlap = small.info["qd_overlap@5"]
    assert 0.0 <= overlap <= 100.0
    whole = evaluate(engine, q, db, EvalConfig(methods=["phs-qd"], k=5, h_on=1, candidates=n), progress=False)
    assert whole.info["qd_overlap@5"] == 100.0  # K' covering the database is the exact re-rank
    assert whole.metrics["phs-qd"].mp == whole.metrics["phs-qd-exact"].mp
    assert small.metrics["phs-qd-exact"].mp == whole.metrics["phs-qd-exact"].mp
    paths = write_report(small, tmp_path / "rep")
    data = json.loads(paths["json"].read_text())
    assert data["qd_candidates"] == 5 and data["qd_overlap@5"] == overlap
    assert set(data["MP@5"]) == {"phs-qd", "phs-qd-exact"}
    rows = list(csv.DictReader(paths["csv"].open()))
    by = {r["method"]: r for r in rows}
    assert by["phs-qd"]["qd_candidates"] == "5" and by["phs-qd-exact"]["qd_candidates"] == "all"
    assert float(by["phs-qd"]["qd_overlap@5"]) == overlap
    md = paths["markdown"].read_text()
    assert "PHS (QD, exact)" in md and f"overlap with the exact whole-database QD {overlap}%" in md


def test_marker_methods_and_attention_gain_are_reported(tmp_path):
    demo = load_engine("demo", device="cpu")
    q, db = synthetic_split(4, 20, seed=3, size=96)
    res = evaluate(demo, q, db, EvalConfig(methods=["cbir", "lvp", "red-circle", "lvp+phs"], k=5, prompt="point"),
                   progress=False)
    assert list(res.metrics) == ["cbir", "lvp", "red-circle", "lvp+phs"]
    gain = res.info["attention_gain"]
    per_layer = res.info["attention_gain_per_layer"]
    assert set(gain) == {"lvp", "red-circle"} and len(per_layer["lvp"]) == len(demo.model.blocks)
    assert gain["lvp"] == per_layer["lvp"][-1] and gain["red-circle"] == per_layer["red-circle"][-1]
    paths = write_report(res, tmp_path / "rep")
    data = json.loads(paths["json"].read_text())
    assert data["attention_gain"] == gain
    assert paths["attention_gain"].is_file() and "Fig. 4" in paths["markdown"].read_text()


def test_learned_prompt_methods_without_a_prompt_are_refused_before_encoding(engine, split):
    from core.errors import WeightsNotFoundError

    q, db = split
    forwards = engine.counters.forwards
    with pytest.raises(WeightsNotFoundError, match="no learned prompt"):
        evaluate(engine, q, db, EvalConfig(methods=["cbir", "lvp"], k=5), progress=False)
    assert engine.counters.forwards == forwards
