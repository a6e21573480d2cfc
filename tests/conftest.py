"""Shared fixtures: no network, a private data directory, offscreen Qt, tiny random ViTs."""

from __future__ import annotations

import gc
import os

# Before anything imports huggingface_hub or Qt.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch

TINY = {
    # DINOv2-style: LayerScale, 4 registers, no_embed_class.
    "dinov2": ("dinov2-s14-reg4", {"img_size": 56, "depth": 3, "embed_dim": 64, "num_heads": 4}),
    # CLIP-style: pre-norm (norm_pre), QuickGELU, projection head.
    "clip": ("clip-b16", {"img_size": 64, "depth": 3, "embed_dim": 64, "num_heads": 4}),
    # DeiT III-style: LayerScale, no_embed_class, no registers.
    "deit3": ("deit3-s16", {"img_size": 64, "depth": 3, "embed_dim": 48, "num_heads": 6}),
}


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Every test writes app data into its own temporary PHS_DATA_DIR and a private HF cache."""
    monkeypatch.setenv("PHS_DATA_DIR", str(tmp_path_factory.mktemp("phs-data")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fp32_unless_asked(monkeypatch):
    """Engines on ``auto`` compute in fp32 in tests on every CPU (bf16 where the CPU has it is the product's
    default): exact comparisons then hold on any machine; tests of bf16 ask for it or fake the CPU."""
    from core.method import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: False if flags is None else
                        bool(frozenset(flags) & precision.NATIVE_BF16_FLAGS))  # fmt: skip


def perturb_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give a randomly initialised model weights with non-trivial scale everywhere.

    timm initialises LayerScale to 1e-5 and biases to 0, which would hide mistakes in the residual
    branches; tests need every term to matter.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
                p.copy_(1.0 + 0.2 * noise)
            elif p.dim() >= 2:
                p.copy_(noise / np.sqrt(p.shape[-1]) * (2.0 if "qkv" in name else 1.0))
            else:
                p.copy_(0.1 * noise)
    return model


def tiny_random_engine(style: str, seed: int):
    """A tiny random engine of a :data:`TINY` style, weights perturbed with ``seed``, on the CPU."""
    from core.method.engine import load_engine

    name, kwargs = TINY[style]
    engine = load_engine(name, pretrained=False, model_kwargs=kwargs, device="cpu")
    perturb_(engine.model, seed=seed)
    return engine


@pytest.fixture(params=sorted(TINY))
def tiny_engine(request):
    """A tiny random engine of each style, weights perturbed, on the CPU in fp32."""
    return tiny_random_engine(request.param, seed=hash(request.param) % 1000)


def random_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A ``(h, w, 3)`` uint8 image of smooth random blobs (so attention is not uniform)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.4) * max(w, h)
        img += rng.uniform(0, 255, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))[..., None]
    return np.clip(img / 2 + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_main_thread():
    """What a test left in reference cycles (Qt objects among it) is collected here, on the main thread, and
    not later in whichever thread happens to allocate (a worker building a model)."""
    yield
    gc.collect()
