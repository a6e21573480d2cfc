"""Precision: bf16 where the CPU has it, fp32 prompt edits, the Query-DB re-rank, the index fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import PromptError
from core.method import precision as precision_mod
from core.method.engine import PHSEngine, load_engine
from core.method.precision import cpu_flags, cpu_has_native_bf16, resolve_precision
from core.search.service import MemoryGallery, rank
from tests.conftest import TINY, perturb_, random_image
from tests.search_helpers import search

NAME, KW = TINY["dinov2"]
CPU = torch.device("cpu")


def test_native_bf16_detection_from_flags():
    assert cpu_has_native_bf16(["fpu", "avx2", "avx512f", "avx512_bf16"])
    assert cpu_has_native_bf16(["fpu", "amx_tile", "amx_bf16"])
    assert not cpu_has_native_bf16(["fpu", "avx2", "avx512f", "avx512_vnni"])
    assert not cpu_has_native_bf16([])
    text = "processor\t: 0\nflags\t\t: fpu sse avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert cpu_flags(text) == frozenset({"fpu", "sse", "avx512_bf16"})
    assert isinstance(cpu_has_native_bf16(), bool)  # this machine, whatever it has


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_follows_the_hardware(native, expected, monkeypatch):
    assert resolve_precision("auto", CPU, native_cpu_bf16=native) == expected
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda flags=None: native)
    assert resolve_precision("auto", CPU) == expected
    bb = load_engine(NAME, pretrained=False, model_kwargs=KW, device="cpu").backbone
    eng = PHSEngine(bb, device="cpu")
    assert eng.precision == expected and eng.fingerprint()["precision"] == expected
    assert eng.rerank_precision == expected
    assert resolve_precision("fp32", CPU, native_cpu_bf16=True) == "fp32"
    with pytest.raises(PromptError):
        resolve_precision("int8", CPU)


def _pair():
    fp32 = load_engine(NAME, pretrained=False, model_kwargs=KW, device="cpu", precision="fp32")
    perturb_(fp32.model, seed=3)
    return fp32, PHSEngine(fp32.backbone, device="cpu", precision="bf16")


def test_bf16_encoding_close_to_fp32_and_prompt_edits_in_fp32():
    fp32, bf16 = _pair()
    imgs = [random_image(48, 40, seed=s) for s in range(4)]
    a, b = fp32.encode_batch(imgs), bf16.encode_batch(imgs)
    cos = np.sum(a.features * b.features, 1) / np.linalg.norm(a.features, axis=1) / np.linalg.norm(b.features, axis=1)
    assert cos.min() > 0.98 and b.features.dtype == np.float32
    # the stored feature is the fp32 feature of the stored (bf16-computed) state, as a query computes it
    again = bf16.features_from_cache(b.x_cls, b.o_cls)
    np.testing.assert_allclose(again, b.features, rtol=1e-5, atol=1e-5)
    # a prompt edit runs in fp32 whatever the encoding precision: same state -> same feature as fp32
    bf16.set_image(imgs[0])
    m = np.array([4 / 3, 4 / 3, 4 / 3, 0], np.float32)
    st = bf16._base()
    exact = fp32.features_from_cache(st.x_cls.numpy(), st.o_cls.numpy(), m)[0]
    np.testing.assert_allclose(bf16.feature(m), exact, rtol=1e-5, atol=1e-5)


def test_qd_rerank_fast_pass_then_fp32_gives_the_fp32_order():
    fp32, bf16 = _pair()
    rng = np.random.default_rng(0)
    n = 400
    x_cls = rng.standard_normal((n, fp32.embed_dim)).astype(np.float16)
    o_cls = rng.standard_normal((n, fp32.num_heads, fp32.head_dim)).astype(np.float16)
    feats = fp32.features_from_cache(x_cls, o_cls)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    gallery = MemoryGallery(feats, x_cls, o_cls)
    m = np.array([2, 2, 0, 0], np.float32)
    q = feats[5]
    ref_s, ref_i = rank(fp32, gallery, q, k=20, mode="qd", candidates=300, head_mask=m)
    calls = []
    real = PHSEngine.features_from_cache

    def spy(self, *a, **kw):
        calls.append((len(a[0]), kw.get("precision", "fp32")))
        return real(self, *a, **kw)

    PHSEngine.features_from_cache = spy
    try:
        fast = PHSEngine(fp32.backbone, device="cpu", precision="fp32")
        fast.__class__ = type("Bf16Rerank", (PHSEngine,), {"rerank_precision": "bf16"})
        got_s, got_i = rank(fast, gallery, q, k=20, mode="qd", candidates=300, head_mask=m)
    finally:
        PHSEngine.features_from_cache = real
    assert calls == [(300, "bf16"), (40, "fp32")]
    assert got_i.tolist() == ref_i.tolist()
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-6, atol=1e-6)


def test_index_across_precisions(tmp_path):
    """A bf16 index answers fp32 queries (and the reverse); an indexer extends an index in its own precision."""
    from PIL import Image

    from core.library import PhotoIndex, index_folder
    from core.search import Searcher

    fp32, bf16 = _pair()
    folder = tmp_path / "photos"
    folder.mkdir()
    for s in range(6):
        Image.fromarray(random_image(48, 40, seed=10 + s)).save(folder / f"p{s}.png")
    index_folder(folder, bf16, batch_size=4)
    with PhotoIndex.open(folder, bf16) as idx:
        assert idx.sidecar["fingerprint"]["precision"] == "bf16"
    for engine in (fp32, bf16):  # searching: either precision, same index
        with Searcher(folder, engine) as s:
            engine.set_image(folder / "p2.png")
            assert search(s, engine.feature(), 1)[0].rel == "p2.png"
    Image.fromarray(random_image(48, 40, seed=99)).save(folder / "new.png")
    index_folder(folder, fp32, batch_size=4)  # an fp32 engine adds the new photo in bf16, the index's precision
    assert fp32.precision == "bf16"
    with PhotoIndex.open(folder, fp32) as idx:
        assert idx.sidecar["fingerprint"]["precision"] == "bf16"
        ids, feats = idx.db.features()
    stored = {int(i): f for i, f in zip(ids, feats)}
    want = bf16.encode_batch([folder / "new.png"]).features[0]
    assert any(np.allclose(f, want / np.linalg.norm(want), atol=1e-4) for f in stored.values())
