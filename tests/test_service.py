"""The query service: one path for the app, ``phs search`` and ``phs eval``; queries decoded like the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import join_negative_values, main
from core.errors import PromptError
from core.library import PhotoIndex, index_folder
from core.method.engine import load_engine
from core.method.prompts import Mask, Prompt, mask_fractions
from core.search import MemoryGallery, QueryService, QuerySpec, Searcher, query_feature, rank
from core.synthetic.scenes import generate_scene
from tests.conftest import random_image, tiny_random_engine

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():
    return load_engine("demo", device="cpu")


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_engine("dinov2", seed=5)


@pytest.fixture
def jpeg_gallery(tmp_path):
    """Scenes saved as JPEGs large enough for draft decoding (shorter side >= 2 x the demo model's 96 px)."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(generate_scene(31, i, (256, 208)).image).save(folder / f"s{i:02d}.jpg", quality=90)
    return folder


# ------------------------------------------------------------------------------------------- decoding


def test_every_photo_queried_as_itself_gives_its_stored_feature_and_ranks_first(demo, jpeg_gallery):
    report = index_folder(jpeg_gallery, demo, batch_size=4, workers=1)
    assert report.indexed == 12
    index = PhotoIndex.open(jpeg_gallery, demo, writable=False)
    ids, stored = index.db.features()
    rel = {i: r for i, (r, _) in index.db.lookup(ids).items()}
    index.close()
    with Searcher(jpeg_gallery, demo) as searcher:
        service = QueryService(demo, searcher)
        for i, row in zip(ids.tolist(), stored):
            path = jpeg_gallery / rel[i]
            out = service.run(QuerySpec(photo=path, k=3))
            f = out.query.feature / np.linalg.norm(out.query.feature)
            np.testing.assert_allclose(f, row, atol=1e-5)
            assert out.hits[0].rel == rel[i] and out.hits[0].score > 1 - 1e-5
            # Prompt coordinates are in the full-size photo's pixels even though it was draft-decoded.
            assert demo.image_size == (256, 208)


# ------------------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"h_on": 0}, "heads kept must be at least 1"),
        ({"k": 0}, "number of results must be at least 1"),
        ({"candidates": -5}, "candidates must be at least 1"),
        ({"method": "nope"}, "Unknown method"),
        ({"mode": "fast"}, "qo or qd"),
        ({"itae_theta": float("nan")}, "finite"),
    ],
)
def test_a_bad_spec_is_one_sentence(kwargs, words):
    with pytest.raises(PromptError, match=words):
        QuerySpec(**kwargs)


def test_without_a_prompt_every_method_is_the_whole_photo(tiny):
    tiny.set_image(random_image(64, 48, seed=2))
    plain = tiny.feature()
    for method in ("phs", "fa", "crop", "mask", "attn-mask", "fa+phs", "crop+phs"):
        q = query_feature(tiny, QuerySpec(method=method))
        assert q.method == "cbir" and q.selection is None
        np.testing.assert_array_equal(q.feature, plain)


def test_h_on_defaults_to_the_models_recommendation(demo, tiny):
    demo.set_image(random_image(96, 96, seed=1))
    q = query_feature(demo, QuerySpec(prompt=Prompt.from_box(10, 10, 50, 50)))
    assert q.selection.h_on == demo.recommended_h_on == 2  # recorded for the demo model
    tiny.set_image(random_image(64, 64, seed=1))
    q = query_feature(tiny, QuerySpec(prompt=Prompt.from_box(0, 0, 30, 30), method="crop+phs"))
    assert q.selection.h_on == tiny.num_heads - 1  # Table A7's noise-reduction mode


# ------------------------------------------------------------------------------------------- ranking


def _gallery(engine, n, seed):
    rng = np.random.default_rng(seed)
    imgs = [random_image(40 + int(rng.integers(0, 30)), 48, seed=seed * 100 + i) for i in range(n)]
    enc = engine.encode_batch([Image.fromarray(im) for im in imgs])
    f = enc.features / np.linalg.norm(enc.features, axis=1, keepdims=True)
    return MemoryGallery(f, enc.x_cls, enc.o_cls)


def test_rank_query_only_and_query_db_against_brute_force(tiny):
    gal = _gallery(tiny, 30, seed=4)
    tiny.set_image(random_image(64, 64, seed=9))
    q = query_feature(tiny, QuerySpec(prompt=Prompt.from_box(5, 5, 40, 30), h_on=1))
    qn = q.feature / np.linalg.norm(q.feature)
    # Query-Only: cosine against the plain features.
    scores, ids = rank(tiny, gal, q, k=10, mode="qo")
    want = np.argsort(-(gal.features @ qn), kind="stable")[:10]
    np.testing.assert_array_equal(ids, want)
    # Exact Query-DB: every database feature recomputed with the query's head mask.
    db = tiny.features_from_cache(gal.x_cls, gal.o_cls, q.head_mask)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    exact = np.argsort(-(db @ qn), kind="stable")[:10]
    _, ids_exact = rank(tiny, gal, q, k=10, mode="qd", candidates=None)
    np.testing.assert_array_equal(ids_exact, exact)
    # Two-stage with K' >= N is the exact one; with a small K' it re-ranks only the Query-Only top K'.
    _, ids_all = rank(tiny, gal, q, k=10, mode="qd", candidates=30)
    np.testing.assert_array_equal(ids_all, exact)
    _, ids_small = rank(tiny, gal, q, k=5, mode="qd", candidates=8)
    assert set(ids_small) <= set(np.argsort(-(gal.features @ qn), kind="stable")[:8].tolist())
    # k beyond the gallery is clipped, not an error.
    assert len(rank(tiny, gal, q, k=10**9, mode="qo")[1]) == 30


def test_rank_drops_rows_that_cannot_be_scored(tiny):
    gal = _gallery(tiny, 6, seed=8)
    feats = gal.features.copy()
    feats[2] = np.nan  # a damaged stored row
    bad = MemoryGallery(feats, gal.x_cls, gal.o_cls)
    tiny.set_image(random_image(40, 40, seed=3))
    scores, ids = rank(tiny, bad, tiny.feature(), k=6)
    assert 2 not in ids.tolist() and np.all(np.isfinite(scores))


# ------------------------------------------------------------------------------------------- ROI of a mask


def _fractions_by_supersampling(mask: np.ndarray, grid: tuple[int, int], s: int = 24) -> np.ndarray:
    """Reference: each pixel split into s x s sub-pixels, each assigned to the patch holding its centre."""
    h, w = mask.shape
    gh, gw = grid
    big = np.repeat(np.repeat(mask, s, axis=0), s, axis=1).astype(np.float64)
    ys = ((np.arange(h * s) + 0.5) / s * gh / h).astype(int)
    xs = ((np.arange(w * s) + 0.5) / s * gw / w).astype(int)
    out = np.zeros(grid)
    np.add.at(out, (ys[:, None].repeat(w * s, 1), xs[None, :].repeat(h * s, 0)), big)
    return out / ((h * s / gh) * (w * s / gw))


@pytest.mark.parametrize("size, grid", [((37, 23), (5, 7)), ((50, 41), (6, 6)), ((16, 16), (4, 4))])
def test_mask_roi_is_each_patchs_exact_area_fraction(size, grid):
    w, h = size
    rng = np.random.default_rng(w)
    m = rng.random((h, w)) > 0.6
    got = mask_fractions(Mask(m), (w, h), grid)
    # Sub-pixel sampling converges to the exact area at 1/s resolution along each patch edge.
    np.testing.assert_allclose(got, _fractions_by_supersampling(m, grid), atol=2.5 / 24)
    # A single pixel straddling a patch edge splits by area: pixel x in [4, 5] with patches of 37/7 px.
    one = np.zeros((h, w), bool)
    one[0, 5] = True  # x in [5, 6]; the patch edge at 37/7 = 5.2857 cuts it 0.2857 / 0.7143
    if size == (37, 23):
        f = mask_fractions(Mask(one), (w, h), grid)
        ph, pw = h / grid[0], w / grid[1]
        np.testing.assert_allclose(f[0, 0], (37 / 7 - 5) / (ph * pw), rtol=1e-6)
        np.testing.assert_allclose(f[0, 1], (6 - 37 / 7) / (ph * pw), rtol=1e-6)
    full = mask_fractions(Mask(np.ones((h, w), bool)), (w, h), grid)
    np.testing.assert_allclose(full, 1.0, rtol=1e-6)


# ------------------------------------------------------------------------------------------- phs search


def test_negative_prompt_coordinates_reach_the_option():
    assert join_negative_values(["search", "--box", "-5,-5,50,50", "--point", "-1,2", "--k", "3"]) == [
        "search", "--box=-5,-5,50,50", "--point=-1,2", "--k", "3",
    ]


def test_phs_search_has_the_apps_options_and_uses_the_indexed_model(demo, jpeg_gallery, capsys):
    assert main(["index", str(jpeg_gallery), "--model", "demo", "--batch-size", "4", "--workers", "1"]) == 0
    capsys.readouterr()
    query = jpeg_gallery / "s03.jpg"
    base = ["search", "--folder", str(jpeg_gallery), "--image", str(query), "--json", "--k", "5"]
    # No --model: the folder's index names the demo model; no network is touched (HF offline, empty cache).
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert Path(plain[0]["path"]).name == "s03.jpg"
    runs = [
        ["--box", "-5,-5,120,100"],
        ["--box", "0,0,120,100", "--roi", "max", "--strategy", "after+scale"],
        ["--box", "0,0,120,100", "--fa", "--fa-layers", "2", "--fa-alpha", "0.5", "--fa-sigma", "3"],
        ["--point", "60,60", "--method", "attn-mask"],
        ["--box", "0,0,120,100", "--itae", "2.5", "--force-on", "3", "--force-off", "0", "--mode", "qd",
         "--candidates", "4"],
        ["--box", "0,0,120,100", "--method", "crop+phs", "--h-on", "7"],
    ]  # fmt: skip
    outputs = []
    for extra in runs:
        assert main(base + extra) == 0, extra
        hits = json.loads(capsys.readouterr().out)
        assert 1 <= len(hits) <= 5 and all(np.isfinite(h["score"]) for h in hits)
        outputs.append([h["path"] for h in hits])
    # The options change what is searched for: not every run ranks the same.
    assert len({tuple(o) for o in outputs}) > 1
    # The same options through the service directly give the same ranking as the CLI.
    with Searcher(jpeg_gallery, demo) as searcher:
        out = QueryService(demo, searcher).run(
            QuerySpec(photo=query, prompt=Prompt.from_box(-5, -5, 120, 100), k=5))
    assert [str(h.path) for h in out.hits] == outputs[0]


def test_phs_search_refuses_what_it_cannot_do_in_one_sentence(jpeg_gallery, tmp_path, capsys):
    query = jpeg_gallery / "s00.jpg"
    base = ["search", "--folder", str(jpeg_gallery), "--image", str(query)]
    assert main(base) == 2
    assert "has not been indexed yet" in capsys.readouterr().err
    for extra, words in [
        (["--h-on", "0"], "at least 1"),
        (["--candidates", "-5"], "at least 1"),
        (["--k", "0"], "at least 1"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
    gone = tmp_path / "moved-away"
    assert main(["search", "--folder", str(gone), "--image", str(query)]) == 2
    assert "does not exist" in capsys.readouterr().err
    fifo = tmp_path / "query.jpg"
    os.mkfifo(fifo)
    assert main(["search", "--folder", str(jpeg_gallery), "--image", str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_several_indexed_models_are_named(tiny, demo, jpeg_gallery, capsys):
    index_folder(jpeg_gallery, demo, batch_size=6, workers=1)
    index_folder(jpeg_gallery, tiny, batch_size=6, workers=1)
    assert main(["search", "--folder", str(jpeg_gallery), "--image", str(jpeg_gallery / "s01.jpg")]) == 2
    err = capsys.readouterr().err
    assert "several models" in err and "demo" in err and "--model" in err


def test_public_api_stays_importable():
    code = (
        "from core.engine import load_engine, PHSEngine; from core.prompts import Prompt; import core.metrics;"
        "import core.engine, core.method.engine;"
        "assert core.engine.PHSEngine is core.method.engine.PHSEngine;"
        "assert callable(core.metrics.foir_metrics); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------------------------------- markers (seed 004)


def test_marker_methods_encode_the_marked_photo_and_come_back_to_the_plain_one(demo):
    demo.set_image(random_image(120, 90, seed=4))
    plain = demo.feature().copy()
    forwards = demo.counters.forwards
    box = Prompt.from_box(20, 10, 80, 60)
    seen = {}
    for method in ("lvp", "red-circle", "lvp+phs"):
        q = query_feature(demo, QuerySpec(prompt=box, method=method))
        seen[method] = q.feature
        assert q.method == method and q.placement is not None
        cx, cy, w, h = q.placement  # photo pixels: centred on the box, scaled to it
        assert abs(cx - 50) < 2 and abs(cy - 35) < 2 and w > 20 and h > 20
        assert (q.selection is not None) == (method == "lvp+phs")
        np.testing.assert_array_equal(demo.feature(), plain)  # the plain photo is current again
    assert not np.allclose(seen["lvp"], plain) and not np.allclose(seen["lvp"], seen["red-circle"])
    assert demo.counters.forwards == forwards + 2  # one encode per marker placement
    query_feature(demo, QuerySpec(prompt=box, method="lvp"))
    assert demo.counters.forwards == forwards + 2  # the same placement again comes from the cache
    # The maps a person sees are the marked photo's.
    out = QueryService(demo).run(QuerySpec(prompt=box, method="lvp", with_maps=True))
    assert not np.allclose(out.maps, demo.attention_maps())


def test_learned_prompt_missing_for_a_model_is_one_sentence(tiny):
    from core.errors import WeightsNotFoundError

    tiny.set_image(random_image(48, 48, seed=1))
    with pytest.raises(WeightsNotFoundError, match="no learned prompt"):
        query_feature(tiny, QuerySpec(prompt=Prompt.from_point(20, 20), method="lvp"))
    q = query_feature(tiny, QuerySpec(prompt=Prompt.from_point(20, 20), method="red-circle"))
    assert q.placement is not None  # the red circle needs no training
