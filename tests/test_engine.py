"""The engine's cached [CLS] recomputation against full timm forwards, and its caching contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import NotReadyError, PromptError
from core.method import vit
from core.method.engine import FAParams
from core.method.phs import HeadStrategy, head_mask
from core.method.prompts import Box, Mask, Point, Prompt
from core.search.service import QuerySpec, query_feature
from tests.conftest import random_image


def _query(engine, prompt, method="phs", **kwargs):
    """The query service's feature for the engine's current photo."""
    return query_feature(engine, QuerySpec(prompt=prompt, method=method, **kwargs))


ATOL = 1e-5


def _rel_close(a: np.ndarray, b: np.ndarray, tol: float = ATOL) -> None:
    scale = max(float(np.abs(b).max()), 1.0)
    np.testing.assert_allclose(a / scale, b / scale, atol=tol, rtol=0)


def test_all_heads_equals_timm_forward(tiny_engine):
    img = random_image(90, 60, seed=1)
    tiny_engine.set_image(img)
    x = tiny_engine.preprocess(tiny_engine.to_pil(img))[None]
    with torch.no_grad():
        ref = tiny_engine.model(x)[0].numpy()
    _rel_close(tiny_engine.feature(), ref)
    # Keeping every head with Before+Scale gives m_i = h/h = 1: the same feature.
    all_on = head_mask(np.ones(tiny_engine.num_heads, bool), "before+scale")
    _rel_close(tiny_engine.feature(all_on), ref)
    assert tiny_engine.feature().shape == (tiny_engine.feature_dim,)


@pytest.mark.parametrize("strategy", [s.value for s in HeadStrategy])
def test_random_head_masks_equal_masked_full_forward(tiny_engine, strategy):
    rng = np.random.default_rng(3)
    img = random_image(70, 100, seed=2)
    tiny_engine.set_image(img)
    x = tiny_engine.preprocess(tiny_engine.to_pil(img))[None]
    h = tiny_engine.num_heads
    for _ in range(4):
        selected = rng.random(h) < 0.5
        selected[rng.integers(h)] = True
        m = head_mask(selected, strategy)
        ref = vit.forward_with_head_mask(tiny_engine.model, x, torch.as_tensor(m), strategy)[0].numpy()
        _rel_close(tiny_engine.feature(m, strategy), ref)


def test_masks_change_the_feature(tiny_engine):
    tiny_engine.set_image(random_image(64, 64, seed=4))
    base = tiny_engine.feature()
    sel = np.zeros(tiny_engine.num_heads, bool)
    sel[0] = True
    assert np.abs(tiny_engine.feature(head_mask(sel)) - base).max() > 1e-3


def test_batched_qd_equals_single_path(tiny_engine):
    images = [random_image(40 + 10 * i, 50, seed=10 + i) for i in range(4)]
    batch = tiny_engine.encode_batch(images)
    h, dh = tiny_engine.num_heads, tiny_engine.head_dim
    assert batch.features.shape == (4, tiny_engine.feature_dim)
    assert batch.x_cls.shape == (4, tiny_engine.embed_dim) and batch.o_cls.shape == (4, h, dh)
    rng = np.random.default_rng(5)
    sel = rng.random(h) < 0.5
    sel[0] = True
    for strategy in ("before+scale", "identity", "after"):
        m = head_mask(sel, strategy)
        qd = tiny_engine.features_from_cache(batch.x_cls, batch.o_cls, m, strategy)
        for i, im in enumerate(images):
            tiny_engine.set_image(im)
            _rel_close(qd[i], tiny_engine.feature(m, strategy))
    # No mask: exactly the stored plain features, also from a float16 cache.
    _rel_close(tiny_engine.features_from_cache(batch.x_cls, batch.o_cls), batch.features)
    half = tiny_engine.features_from_cache(batch.x_cls.astype(np.float16), batch.o_cls.astype(np.float16))
    _rel_close(half, batch.features, tol=2e-2)


def _fa_full_forward(engine, x, prompt, fa: FAParams) -> np.ndarray:
    """A full forward with FALIP's additive mask on the [CLS] row of the last n blocks (timm blocks only)."""
    model = engine.model
    depth = len(model.blocks)
    bias = vit.fa_bias(engine.roi(prompt).token_box(), engine.grid, model.num_prefix_tokens, fa.alpha, fa.sigma)
    mask = vit.cls_row_bias(bias[None], bias.shape[0])
    for blk in model.blocks:
        blk.attn.fused_attn = False  # the reference uses the explicit softmax path everywhere
    with torch.no_grad():
        t = vit.embed(model, x)
        for i, blk in enumerate(model.blocks):
            t = blk(t, attn_mask=mask) if i >= depth - fa.blocks else blk(t)
        return model.forward_head(model.norm(t))[0].numpy()


@pytest.mark.parametrize("alpha,sigma", [(0.2, 100.0), (2.0, 1.0)])
def test_fa_through_cache_equals_full_forward(tiny_engine, alpha, sigma):
    img = random_image(80, 60, seed=6)
    tiny_engine.set_image(img)
    prompt = Prompt(box=Box(10, 5, 50, 40))
    fa = FAParams(alpha=alpha, sigma=sigma, blocks=min(3, len(tiny_engine.model.blocks)))
    got = _query(tiny_engine, prompt, method="fa", fa=fa).feature
    x = tiny_engine.preprocess(tiny_engine.to_pil(img))[None]
    _rel_close(got, _fa_full_forward(tiny_engine, x, prompt, fa))
    if alpha > 1:  # a strong mask must change the feature
        assert np.abs(got - tiny_engine.feature()).max() > 1e-4


def test_fa_bias_matches_falip_formula():
    b = vit.fa_bias((1, 2, 4, 6), (5, 7), num_prefix_tokens=2, alpha=0.5, sigma=1.0)
    assert b.shape == (2 + 35,)
    grid = b[2:].reshape(5, 7).numpy()
    assert np.all(b[:2].numpy() == 0) and grid[0].sum() == 0 and grid[:, :2].sum() == 0
    hh, ww = 3, 4
    i, j = np.mgrid[0:hh, 0:ww]
    r = np.exp(-((i - (hh - 1) / 2) ** 2 + (j - (ww - 1) / 2) ** 2) / 2.0)
    want = 0.5 * (r - r.min() + 1e-6) / (r.max() - r.min() + 1e-6)
    np.testing.assert_allclose(grid[1:4, 2:6], want, rtol=1e-5)
    assert np.isclose(grid.max(), 0.5, atol=1e-5)
    flat = vit.fa_bias((0, 0, 2, 2), (2, 2), 1, alpha=0.2, sigma=100.0).numpy()
    np.testing.assert_allclose(flat[1:], 0.2, atol=1e-4)  # sigma=100 is nearly flat


def test_prompt_edits_never_rerun_the_backbone(tiny_engine):
    img = random_image(60, 60, seed=7)
    tiny_engine.set_image(img)
    assert tiny_engine.counters.forwards == 1
    for x0 in range(0, 40, 5):
        p = Prompt(box=Box(x0, 10, x0 + 20, 50), points=(Point(5, 5, positive=False),))
        sel = tiny_engine.select_heads(p, h_on=2, roi="max" if x0 % 10 else "sum")
        tiny_engine.feature(sel.head_mask)
        _query(tiny_engine, p, method="attn-mask")
    tiny_engine.set_itae(0.5)
    tiny_engine.select_heads(Prompt.from_point(30, 30), h_on=1)
    tiny_engine.set_itae(None)
    assert tiny_engine.counters.forwards == 1 and tiny_engine.counters.blocks == 0
    # FA re-runs only the last fa_blocks blocks from cached tokens, once per distinct ROI box.
    p = Prompt.from_box(5, 5, 30, 30)
    _query(tiny_engine, p, method="fa")
    _query(tiny_engine, p, method="fa+phs", h_on=2)
    assert tiny_engine.counters.forwards == 1
    assert tiny_engine.counters.blocks == tiny_engine.fa_blocks
    # The same photo again comes from the cache.
    tiny_engine.set_image(img.copy())
    assert tiny_engine.counters.forwards == 1 and tiny_engine.counters.cache_hits == 1
    # Crop re-encodes (it is a different image), as it must.
    _query(tiny_engine, p, method="crop")
    assert tiny_engine.counters.forwards == 2


def test_selection_prefers_heads_looking_at_the_roi(tiny_engine):
    tiny_engine.set_image(random_image(64, 48, seed=8))
    attn = tiny_engine.attention_maps()
    h, gh, gw = attn.shape
    assert (h, gh, gw) == (tiny_engine.num_heads, *tiny_engine.grid)
    assert np.all(attn >= 0) and np.all(attn.reshape(h, -1).sum(1) <= 1 + 1e-5)
    # Pick the patch with the largest spread between heads and prompt it with a point.
    flat = attn.reshape(h, -1)
    p_idx = int(np.argmax(flat.max(0) - flat.min(0)))
    r, c = divmod(p_idx, gw)
    w, hh = tiny_engine.image_size
    prompt = Prompt.from_point((c + 0.5) * w / gw, (r + 0.5) * hh / gh)
    sel = tiny_engine.select_heads(prompt, h_on=1)
    assert sel.indices == [int(np.argmax(flat[:, p_idx]))]
    np.testing.assert_allclose(sel.scores, flat[:, p_idx], rtol=1e-6)
    # Max over a box equals the per-head maximum inside it.
    box = Prompt.from_box(0, 0, w, hh)
    np.testing.assert_allclose(tiny_engine.head_scores(box, "max"), flat.max(1), rtol=1e-6)
    np.testing.assert_allclose(tiny_engine.head_scores(box, "sum"), flat.sum(1), rtol=1e-5)


def test_force_on_off_and_negative_points(tiny_engine):
    tiny_engine.set_image(random_image(64, 64, seed=9))
    h = tiny_engine.num_heads
    p = Prompt.from_box(0, 0, 32, 32)
    sel = tiny_engine.select_heads(p, h_on=1, force_on=[h - 1])
    assert sel.selected[h - 1] and sel.selected.sum() == 1
    best = sel.ranking[0]
    sel2 = tiny_engine.select_heads(p, h_on=2, force_off=[best])
    assert not sel2.selected[best] and sel2.selected.sum() == 2
    np.testing.assert_allclose(sel2.head_mask[sel2.selected], h / 2)
    neg = Prompt(box=Box(0, 0, 32, 32), points=(Point(60, 60, positive=False),))
    attn = tiny_engine.attention_maps()
    gh, gw = tiny_engine.grid
    expected = tiny_engine.head_scores(p) - attn[:, gh - 1, gw - 1]
    np.testing.assert_allclose(tiny_engine.head_scores(neg), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(PromptError):
        tiny_engine.select_heads(p, h_on=1, force_on=[0], force_off=[0])


def test_attention_mask_baseline_attends_only_to_roi(tiny_engine):
    tiny_engine.set_image(random_image(64, 64, seed=11))
    prompt = Prompt.from_box(0, 0, 20, 20)
    f = _query(tiny_engine, prompt, method="attn-mask").feature
    assert f.shape == (tiny_engine.feature_dim,)
    assert np.abs(f - tiny_engine.feature()).max() > 1e-5
    # Whole-image ROI without prefix tokens differs from CBIR only by the prefix attention it drops.
    st = tiny_engine._last_block(tiny_engine._state.tokens_last, keep=torch.tensor(
        [[False] * tiny_engine.layout.num_prefix_tokens + list(tiny_engine.roi(prompt).positive.reshape(-1) > 0)]))
    outside = st.attn[0, :, tiny_engine.layout.num_prefix_tokens:].reshape(-1, *tiny_engine.grid)
    roi = tiny_engine.roi(prompt).positive > 0
    assert float(outside[:, ~torch.as_tensor(roi)].abs().max()) == 0.0
    torch.testing.assert_close(outside.sum(dim=(1, 2)), torch.ones(tiny_engine.num_heads))


def test_itae_replaces_artifact_logits_with_row_min(tiny_engine):
    tiny_engine.set_image(random_image(64, 64, seed=12))
    norms = tiny_engine.query_norms()
    assert norms.shape == (tiny_engine.grid[0] * tiny_engine.grid[1],)
    theta = float(np.quantile(norms, 0.7))
    tiny_engine.set_itae(theta)
    art = tiny_engine.artifact_map()
    assert art.sum() == (norms > theta).sum() > 0
    attn = tiny_engine.attention_maps()
    # Every artifact patch now gets the smallest patch attention of its head's row.
    for i in range(tiny_engine.num_heads):
        np.testing.assert_allclose(attn[i][art], attn[i].min(), rtol=1e-5)
    with_itae = tiny_engine.feature()
    tiny_engine.set_itae(None)
    assert not tiny_engine.artifact_map().any()
    assert np.abs(with_itae - tiny_engine.feature()).max() > 1e-6
    assert tiny_engine.fingerprint()["itae_theta"] is None


def test_every_method_returns_a_feature(tiny_engine):
    img = random_image(90, 70, seed=13)
    tiny_engine.set_image(img)
    prompt = Prompt(box=Box(10, 10, 60, 50))
    mask = np.zeros((70, 90), bool)
    mask[20:40, 30:70] = True
    feats = {}
    for method in ("cbir", "phs", "fa", "fa+phs", "attn-mask", "crop", "mask", "crop+phs"):
        r = _query(tiny_engine, prompt, method=method, h_on=2)
        assert r.feature.shape == (tiny_engine.feature_dim,) and np.isfinite(r.feature).all()
        assert (r.selection is not None) == method.endswith("phs")
        feats[method] = r.feature
    assert np.abs(feats["crop"] - feats["cbir"]).max() > 1e-5
    assert np.abs(feats["mask"] - feats["cbir"]).max() > 1e-5
    r = _query(tiny_engine, Prompt(mask=Mask(mask)), method="phs", h_on=1)
    assert r.selection.selected.sum() == 1
    crop_sel = _query(tiny_engine, prompt, method="crop+phs").selection
    assert crop_sel.selected.sum() == tiny_engine.num_heads - 1


def test_errors_before_image_and_bad_inputs(tiny_engine):
    tiny_engine.close()
    with pytest.raises(NotReadyError):
        tiny_engine.select_heads(Prompt.from_point(1, 1))
    tiny_engine.set_image(random_image(50, 40))
    with pytest.raises(PromptError):
        tiny_engine.select_heads(Prompt.from_point(51, 10))
    with pytest.raises(PromptError):
        tiny_engine.select_heads(Prompt.from_box(60, 50, 90, 80))
    with pytest.raises(PromptError):
        _query(tiny_engine, Prompt.from_point(1, 1), method="nope")
    with pytest.raises(PromptError):
        tiny_engine.features_from_cache(np.zeros((2, 3)), np.zeros((2, 1, 1)))


def test_fa_on_more_blocks_than_cached_is_refused():
    from core.method.engine import PHSEngine, load_engine

    deep = load_engine("test-vit", pretrained=False, device="cpu")  # 6 blocks
    engine = PHSEngine(deep.backbone, device="cpu", fa_blocks=2)
    engine.set_image(random_image(40, 40))
    _query(engine, Prompt.from_box(0, 0, 20, 20), method="fa", fa=FAParams(blocks=2))
    with pytest.raises(PromptError, match="at most the last 2 blocks"):
        _query(engine, Prompt.from_box(0, 0, 20, 20), method="fa", fa=FAParams(blocks=3))


def test_conv_stem_vit_is_supported_and_exact():
    """The demo model's convolutional stem keeps the token layout PHS relies on."""
    from timm.models.vision_transformer import VisionTransformer

    from core.method.engine import PHSEngine
    from core.models.backbones import Backbone, ModelSpec
    from core.models.convstem import ConvStem
    from tests.conftest import perturb_

    model = VisionTransformer(img_size=48, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=0,
                              embed_layer=ConvStem).eval()
    perturb_(model)
    engine = PHSEngine(Backbone(model, ModelSpec("stem", "stem", "stem", "test"), "random"), device="cpu")
    img = random_image(60, 40)
    engine.set_image(img)
    assert engine.grid == (6, 6) and engine.attention_maps().shape == (4, 6, 6)
    with torch.no_grad():
        ref = model(engine.preprocess(engine.to_pil(img))[None])[0].numpy()
    _rel_close(engine.feature(), ref)
