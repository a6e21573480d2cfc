"""The index with the real engine (tiny random ViTs), the ``phs index`` / ``phs search`` commands, the demo model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.library import PhotoIndex, index_folder
from core.method.engine import load_engine
from core.paths import resources_dir
from core.search import Searcher
from tests.conftest import perturb_, random_image, tiny_random_engine
from tests.index_fakes import tree_hash
from tests.search_helpers import search


@pytest.fixture(scope="module")
def engine():
    return tiny_random_engine("dinov2", seed=3)


@pytest.fixture
def gallery(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(14):
        Image.fromarray(random_image(96 + 8 * (i % 3), 80, seed=i)).save(folder / f"p{i:02d}.png")
    return folder


def test_duplicate_query_ranks_first_and_qd_cache_is_exact(engine, gallery, tmp_path):
    before = tree_hash(gallery)
    report = index_folder(gallery, engine, batch_size=4, workers=2)
    assert report.indexed == 14 and report.failed == 0
    query = tmp_path / "query.png"
    Image.fromarray(random_image(112, 80, seed=5)).save(query)  # a copy of p05 outside the folder
    with Searcher(gallery, engine) as s:
        engine.set_image(query)
        hits = search(s, engine.feature(None), 5)
        assert hits[0].rel == "p05.png" and hits[0].score > 0.999
        # QD: the head mask's DB features from the float16 cache match re-encoding every photo.
        from core.method.prompts import Prompt

        sel = engine.select_heads(Prompt.from_box(10, 10, 60, 50), h_on=2)
        q = engine.feature(sel.head_mask)
        qd = search(s, q, 14, mode="qd", head_mask=sel.head_mask)
    exact = {}
    for p in sorted(gallery.iterdir()):
        engine.set_image(p)
        f = engine.feature(sel.head_mask)
        exact[p.name] = float(f @ q / np.linalg.norm(f) / np.linalg.norm(q))
    assert qd[0].rel == "p05.png"
    for h in qd:
        assert abs(h.score - exact[h.rel]) < 5e-3
    # With the head mask all ones, the cache gives back the stored plain feature.
    with PhotoIndex.open(gallery, engine) as idx:
        rows = idx.db.conn.execute("SELECT slot, feature FROM files ORDER BY id").fetchall()
        x, o = idx.qd.read(np.array([r[0] for r in rows]))
        f = engine.features_from_cache(x, o, np.ones(engine.num_heads, np.float32))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        stored = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
        assert np.abs(f - stored).max() < 5e-3
    assert tree_hash(gallery) == before


@pytest.fixture
def weights_file(tmp_path):
    """A tiny test ViT saved as safetensors, so the CLI loads a real model offline through --weights."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    eng = load_engine("test-vit", pretrained=False, device="cpu")
    perturb_(eng.model, seed=1)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in eng.model.state_dict().items()}, str(path))
    return path


def test_cli_index_status_and_search(gallery, weights_file, tmp_path, capsys):
    common = ["--model", "test-vit", "--weights", str(weights_file), "--device", "cpu"]
    assert main(["index", str(gallery), *common, "--batch-size", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Indexed 14 photos" in out and "failed 0" in out
    (gallery / "broken.jpg").write_text("no photo")
    assert main(["index", str(gallery), *common, "--quiet"]) == 1  # some photos failed: exit 1
    out = capsys.readouterr().out
    assert "Indexed 0 photos" in out and "skipped 14 unchanged, failed 1" in out
    assert "failed  broken.jpg: it is not an image" in out and "14 photos searchable" in out
    assert main(["index", "--status", str(gallery)]) == 0
    out = capsys.readouterr().out
    assert "14 photos indexed, 1 failed" in out and "broken.jpg" in out

    query = tmp_path / "q.png"
    Image.fromarray(random_image(112, 80, seed=8)).save(query)  # a copy of p08
    argv = ["search", "--folder", str(gallery), "--image", str(query), *common, "--k", "3"]
    assert main([*argv, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and hits[0]["path"].endswith("p08.png") and hits[0]["score"] > 0.999
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert main([*argv, "--box", "5,5,60,50", "--mode", "qd", "--h-on", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "1"


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--point", "5000,3"], "outside"),
        (["--point", "3"], "--point expects 2"),
        (["--box", "1,1,1,9"], "zero area"),
    ],
)
def test_cli_bad_prompt_is_one_sentence(gallery, weights_file, tmp_path, capsys, extra, words):
    common = ["--model", "test-vit", "--weights", str(weights_file), "--device", "cpu"]
    assert main(["index", str(gallery), *common, "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["search", "--folder", str(gallery), "--image", str(gallery / "p01.png"), *common, *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_missing_index_and_folder(gallery, weights_file, capsys):
    common = ["--model", "test-vit", "--weights", str(weights_file), "--device", "cpu"]
    rc = main(["search", "--folder", str(gallery), "--image", str(gallery / "p01.png"), *common])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "phs index" in err and len(err.splitlines()) == 1
    rc = main(["index", str(gallery / "nope"), *common])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


DEMO = resources_dir() / "demo_model.safetensors"


@pytest.mark.slow
@pytest.mark.skipif(
    not DEMO.is_file(), reason="the demo model (resources/demo_model.safetensors) is not trained yet"
)
def test_demo_model_prompted_category_dominates_top_k(tmp_path):
    from core.synthetic.scenes import generate_scene

    folder = tmp_path / "scenes"
    folder.mkdir()
    card = json.loads((resources_dir() / "demo_model.json").read_text())
    size = int(card.get("scene_size", 160))
    h_on = int(card.get("h_on", 5))
    db = [generate_scene(11, i, (size, size)) for i in range(120)]
    for sc in db:
        Image.fromarray(sc.image).save(folder / f"s{sc.index:03d}.png")
    engine = load_engine("demo", device="cpu")
    index_folder(folder, engine, batch_size=16)
    from core.method.prompts import Prompt

    precisions, base_rates = [], []
    with Searcher(folder, engine) as s:
        for qi in range(12):
            q = generate_scene(12, qi, (size, size), min_objects=2, max_objects=4)
            obj = max(q.objects, key=lambda o: o.area)
            engine.set_image(q.image)
            sel = engine.select_heads(Prompt.from_box(*obj.bbox.tolist()), h_on=h_on)
            hits = search(s, engine.feature(sel.head_mask), 10, mode="qd", head_mask=sel.head_mask)
            has = [obj.category_id in db[int(h.rel[1:4])].categories for h in hits]
            precisions.append(np.mean(has))
            base_rates.append(np.mean([obj.category_id in sc.categories for sc in db]))
    assert np.mean(precisions) > 2 * np.mean(base_rates), (np.mean(precisions), np.mean(base_rates))
