"""The shipped demo model: loads offline, says it is a demo, and makes head selection matter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from core.evaluation.protocol import EvalConfig, evaluate, synthetic_split
from core.method.engine import load_engine
from core.models.backbones import apply_state_dict, get_spec, load_state_dict_file
from core.paths import resources_dir
from core.synthetic.scenes import CATEGORIES


@pytest.fixture(scope="module")
def demo():
    return load_engine("demo", device="cpu", download=False)


def test_demo_loads_offline_and_is_labelled(demo):
    assert demo.spec.is_demo
    assert demo.spec.label == "demo (synthetic shapes)"
    assert "demo" in demo.describe()
    assert demo.backbone.weights_id.startswith("resource:demo_model.safetensors")
    assert get_spec("demo").is_demo


def test_demo_files_are_small_and_described():
    res = resources_dir()
    weights = res / "demo_model.safetensors"
    assert weights.stat().st_size <= 15 * 2**20
    cfg = json.loads((res / "demo_model.json").read_text())
    assert cfg["vit_kwargs"]["num_classes"] == 0 and cfg["vit_kwargs"]["global_pool"] == "token"
    assert cfg["categories"] == list(CATEGORIES)
    assert cfg["vit_kwargs"]["num_heads"] >= 6
    assert 1 <= cfg["h_on"] <= cfg["vit_kwargs"]["num_heads"]
    card = (res / "MODEL_CARD.md").read_text()
    assert "per-object heads" in card
    sd = load_state_dict_file(weights)
    assert not any(k.startswith("head.") for k in sd)


def test_demo_heads_differ(demo):
    """Different objects of one scene pick different heads: the heads specialise."""
    from core.method.prompts import Prompt

    q, _ = synthetic_split(12, 1, seed=5)
    picks = []
    for im in q:
        demo.set_image(im.load())
        sels = [tuple(demo.select_heads(Prompt.from_box(*o.bbox), h_on=1).indices) for o in im.objects]
        picks.append(len(set(sels)) > 1)
    assert np.mean(picks) >= 0.5


@pytest.fixture(scope="module")
def benchmark(demo):
    """A few hundred prompted objects on seed 7 (never used for tuning), disjoint database."""
    torch.set_num_threads(2)
    q, db = synthetic_split(90, 800, seed=7)
    return evaluate(demo, q, db, EvalConfig(methods=["cbir", "phs-qo", "phs-qd"], k=100), progress=False)


@pytest.mark.slow
def test_fast_benchmark_phs_beats_cbir_by_five_points(demo, benchmark):
    """The issue's acceptance on a seed never used for tuning: PHS-QO at least 5 points MP@100 above CBIR.

    The shipped model gives about +10 at 300 queries / 2,000 images on seeds 1, 5 and 7 (MODEL_CARD.md),
    so 5 points is far outside seed-to-seed noise (under 1 point between those seeds).
    """
    res = benchmark
    assert res.metrics["cbir"].n_queries >= 250
    cbir, qo = res.metrics["cbir"].mp, res.metrics["phs-qo"].mp
    assert qo - cbir >= 5.0, (cbir, qo)
    assert res.metrics["phs-qd"].mp > cbir
    assert demo.recommended_h_on == json.loads((resources_dir() / "demo_model.json").read_text())["h_on"]


def test_train_demo_writes_a_loadable_model(tmp_path):
    """A two-step run of the training script writes weights that timm's loader accepts strictly."""
    from core.synthetic.train_demo import Recipe, train

    recipe = Recipe(img_size=32, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, scene_size=64, n_scenes=6,
                    steps=2, batch=4, warmup=1)
    cfg = train(recipe, seed=3, out_dir=tmp_path, log_every=1, write_card=False)
    saved = json.loads((tmp_path / "demo_model.json").read_text())
    assert saved == json.loads(json.dumps(cfg))
    model = VisionTransformer(**saved["vit_kwargs"])
    sd = load_state_dict_file(tmp_path / "demo_model.safetensors")
    assert all(v.dtype == torch.float16 for v in sd.values())
    apply_state_dict(model, sd, "test", "demo")
    assert saved["steps"] == 2 and saved["seed"] == 3
