"""Several objects from the command line: ``phs search --object/--exclude/--combine`` and ``phs eval --objects``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.evaluation.datasets import synthetic_dataset
from core.evaluation.objects import (
    ObjectsConfig,
    correct_photos,
    evaluate_objects,
    object_groups,
    one_region,
)
from core.evaluation.protocol import EvalError
from core.method.engine import load_engine
from core.method.prompts import Box, box_cells
from core.synthetic.scenes import generate_scene


@pytest.fixture(scope="module")
def demo():
    return load_engine("demo", device="cpu")


@pytest.fixture
def indexed(tmp_path):
    """A folder of 12 scenes indexed with the demo model (into the test's own data directory)."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(generate_scene(41, i, (160, 128)).image).save(folder / f"s{i:02d}.png")
    assert main(["index", str(folder), "--model", "demo", "--batch-size", "6", "--workers", "1", "--quiet"]) == 0
    return folder


def _search(folder: Path, *extra: str) -> list[str]:
    return ["search", "--folder", str(folder), "--image", str(folder / "s03.png"), "--json", "--k", "6", *extra]


def test_one_object_ranks_exactly_as_the_same_mark(indexed, capsys):
    capsys.readouterr()
    for mark, spec in ((["--box", "10,12,90,100"], "box:10,12,90,100"), (["--point", "40,50"], "point:40,50")):
        for mode in ("qo", "qd"):
            assert main(_search(indexed, *mark, "--mode", mode)) == 0
            plain = json.loads(capsys.readouterr().out)
            assert main(_search(indexed, "--object", spec, "--mode", mode)) == 0
            obj = json.loads(capsys.readouterr().out)
            assert [h["path"] for h in obj] == [h["path"] for h in plain]
            assert [h["score"] for h in obj] == [h["score"] for h in plain]
            assert [h["objects"] for h in obj] == [[h["score"]] for h in plain]


def test_two_objects_give_per_object_scores_and_exclusion_reorders(indexed, tmp_path, capsys):
    mask = np.zeros((128, 160), np.uint8)
    mask[60:120, 80:150] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    capsys.readouterr()
    runs = {}
    for name, extra in {
        "and": ["--object", "box:10,12,90,100", "--object", f"mask:{tmp_path / 'm.png'}"],
        "or": ["--object", "box:10,12,90,100", "--object", f"mask:{tmp_path / 'm.png'}", "--combine", "or"],
        "not": ["--object", "box:10,12,90,100", "--exclude", f"mask:{tmp_path / 'm.png'}"],
        "other": ["--object", "box:10,12,90,100", "--object", f"point:30,40@{indexed / 's07.png'}"],
        "qd": ["--object", "box:10,12,90,100", "--object", "point:120,100", "--mode", "qd", "--object-candidates", "3"],
    }.items():
        assert main(_search(indexed, *extra)) == 0, name
        hits = json.loads(capsys.readouterr().out)
        assert len(hits) == 6 and all(len(h["objects"]) == 2 for h in hits)
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        runs[name] = [h["path"] for h in hits]
    assert len({tuple(v) for v in runs.values()}) > 1
    # Without --json: rank, score, path and the per-object scores in brackets.
    argv = ["search", "--folder", str(indexed), "--image", str(indexed / "s03.png"), "--k", "2"]
    assert main([*argv, "--object", "box:10,12,90,100", "--exclude", "point:30,40"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(len(line.split("[")[1].rstrip("]").split()) == 2 for line in lines)


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--object", "circle:1,2"], "--object expects box:"),
        (["--object", "box:1,2,3"], "--object box expects 4"),
        (["--exclude", "point:5,5"], "at least one wanted object"),
        (["--object", "point:5,5@/no/such/photo.png"], "photo.png"),
        (["--object", "point:5,5", "--box", "1,1,9,9"], "not both"),
        (["--object", "mask:/no/such/mask.png"], "mask.png"),
    ],
)
def test_bad_object_is_one_sentence(tmp_path, capsys, extra, words):
    Image.fromarray(generate_scene(41, 3, (160, 128)).image).save(tmp_path / "s03.png")
    rc = main(_search(tmp_path, *extra))  # refused before any model or index is opened
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------- evaluation


def test_groups_correctness_and_todays_single_region(demo):
    data = synthetic_dataset(30, 2, (128, 128), min_objects=3)
    rec = next(r for r in data if len({o.category_id for o in r.objects}) >= 3)
    pairs = object_groups(rec.objects, 2, "and")
    cats = [o.category_id for o in rec.objects]
    assert pairs and all(cats[a] != cats[b] and a < b for a, b in pairs)
    ordered = object_groups(rec.objects, 2, "not")
    assert set(ordered) >= {(b, a) for a, b in pairs if (b, a) in ordered} and len(ordered) >= len(pairs)
    dbc = [frozenset({1, 2}), frozenset({1}), frozenset({2, 3}), frozenset({4})]
    assert correct_photos(dbc, [1, 2], "and").tolist() == [True, False, False, False]
    assert correct_photos(dbc, [1, 2], "or").tolist() == [True, True, True, False]
    assert correct_photos(dbc, [1, 2], "not").tolist() == [False, True, False, False]
    # The union of two boxes as one mask selects exactly the patches the two box prompts select.
    b1, b2 = np.array([3.0, 5.0, 40.0, 30.0]), np.array([70.0, 60.0, 120.0, 127.0])
    demo.set_image(rec.load())
    roi = demo.roi(one_region([b1, b2], demo.image_size, demo.grid, "and"))
    want = box_cells(Box(*b1), demo.image_size, demo.grid) | box_cells(Box(*b2), demo.image_size, demo.grid)
    np.testing.assert_array_equal(roi.positive > 0.5, want)
    neg = one_region([b1, b2], demo.image_size, demo.grid, "not")
    assert neg.box is not None and [p.positive for p in neg.points] == [False]


def test_evaluate_objects_reports_methods_base_rate_and_bound(demo):
    queries = synthetic_dataset(12, 9, (128, 128), start=200, min_objects=2)
    database = synthetic_dataset(80, 9, (128, 128))
    result = evaluate_objects(demo, queries, database, ObjectsConfig(
        methods=("cbir", "phs-qo", "phs-objects"), combine="and", k=10, candidates=40), progress=False)
    out = result.to_json()
    assert set(out["MP@10"]) == {"cbir", "phs-qo", "phs-objects"} and "MAP@10" in out
    assert 0 < out["base_rate"] <= out["best_MP@10"] <= 100
    assert all(0 <= v <= out["best_MP@10"] + 1e-9 for v in out["MP@10"].values())
    # the base rate is the share of database photos holding both categories, over the query images' pairs
    rates = []
    for rec in queries:
        groups = object_groups(rec.objects, 2, "and")
        if groups:
            rates.append(np.mean([np.mean(correct_photos(database.image_categories(),
                                  [rec.objects[i].category_id for i in g], "and")) for g in groups]))  # fmt: skip
    assert abs(out["base_rate"] - 100 * np.mean(rates)) < 0.01
    with pytest.raises(EvalError, match="at least 2"):
        ObjectsConfig(objects=1).validate(8)
    with pytest.raises(EvalError, match="choose methods"):
        ObjectsConfig(methods=("fa",)).validate(8)


def test_phs_eval_objects_command(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["eval", "--dataset", "synthetic", "--seed", "9", "--queries", "6", "--database", "60", "--objects", "2",
               "--combine", "not", "--k", "5", "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    table = capsys.readouterr().out
    assert "PHS objects" in table and "base rate" in table and "'not'" in table
    data = json.loads((out / "results.json").read_text())
    assert set(data["MP@5"]) == {"cbir", "phs-qo", "phs-objects"} and data["combine"] == "not"
    rc = main(["eval", "--objects", "2", "--methods", "crop", "--quiet", "--out", str(out)])
    assert rc == 2 and "choose methods" in capsys.readouterr().err


def test_an_index_gives_exact_features_and_nan_for_a_vanished_row(indexed, demo):
    from core.search import Searcher

    with Searcher(indexed, demo) as searcher:
        ids = searcher.sample_ids(100)
        assert len(ids) == 12 and list(ids) == sorted(ids)
        feats = searcher.features_of(ids)
        scores, near = searcher.nearest(feats[0], 3)
        np.testing.assert_allclose(searcher.features_of(near) @ feats[0], scores, atol=1e-5)
        mixed = searcher.features_of(np.array([ids[1], 10**9]))
        np.testing.assert_array_equal(mixed[0], feats[1])
        assert np.isnan(mixed[1]).all()
        assert set(searcher.candidates(feats[2], 4).tolist()) <= set(ids.tolist())
