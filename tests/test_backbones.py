"""Loading weights: local files, the Hugging Face cache, official layouts, and hostile files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.errors import UnsupportedModelError, WeightsError, WeightsNotFoundError
from core.method.engine import PHSEngine, load_engine
from core.models.backbones import (
    get_spec,
    list_models,
    load_backbone,
    load_state_dict_file,
    weights_available,
)
from tests.conftest import TINY, perturb_, random_image

NAME, KW = TINY["dinov2"]


def _reference():
    bb = load_backbone(NAME, pretrained=False, model_kwargs=KW)
    perturb_(bb.model, seed=42)
    return bb


def _same_outputs(a, b) -> None:
    x = torch.randn(2, 3, KW["img_size"], KW["img_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a.model(x), b.model(x))


def test_registry_has_the_design_models():
    names = {s.name for s in list_models()}
    for n in ("dinov2-s14", "dinov2-b14", "dinov2-l14", "dinov2-g14", "dinov2-b14-reg4", "clip-b16", "clip-l14",
              "deit3-s16", "deit3-b16", "deit3-l16", "demo", "test-vit"):
        assert n in names
    assert "quickgelu" in get_spec("clip-b16").timm_name
    assert get_spec("vit_base_patch14_dinov2").name == "dinov2-b14"
    with pytest.raises(WeightsNotFoundError, match="Unknown model"):
        get_spec("no-such-model")


def test_safetensors_round_trip(tmp_path):
    ref = _reference()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()}, str(path))
    got = load_backbone(NAME, weights=path, model_kwargs=KW)
    _same_outputs(ref, got)
    assert got.weights_id.startswith("file:w.safetensors")


def test_pth_round_trip_with_wrapping_key(tmp_path):
    ref = _reference()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": ref.model.state_dict()}, path)
    _same_outputs(ref, load_backbone(NAME, weights=path, model_kwargs=KW))


def test_official_dinov2_layout_is_converted(tmp_path):
    ref = _reference()
    sd = {k: v.clone() for k, v in ref.model.state_dict().items()}
    # Official DINOv2 (registers): cls_token and pos_embed[:, 0] add up to timm's cls_token.
    p0 = torch.randn(1, 1, KW["embed_dim"])
    official = {k: v for k, v in sd.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    official["register_tokens"] = sd["reg_token"]
    official["cls_token"] = sd["cls_token"] - p0
    official["pos_embed"] = torch.cat([p0, sd["pos_embed"]], dim=1)
    official["mask_token"] = torch.zeros(1, KW["embed_dim"])
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(official, path)
    _same_outputs(ref, load_backbone(NAME, weights=path, model_kwargs=KW))


def test_position_embedding_is_resampled(tmp_path):
    big = load_backbone(NAME, pretrained=False, model_kwargs={**KW, "img_size": 112})
    path = tmp_path / "big.safetensors"
    save_file({k: v.contiguous() for k, v in big.model.state_dict().items()}, str(path))
    small = load_backbone(NAME, weights=path, model_kwargs=KW)
    assert small.model.pos_embed.shape[1] == 16
    torch.testing.assert_close(small.model.blocks[0].attn.qkv.weight, big.model.blocks[0].attn.qkv.weight)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Evil(str(marker))}, f)
    with pytest.raises(WeightsError, match="Refused"):
        load_state_dict_file(path)
    assert not marker.exists()
    # Through torch.save's zip format too.
    path2 = tmp_path / "evil2.pt"
    torch.save({"w": _Evil(str(marker))}, path2)
    with pytest.raises(WeightsError):
        load_backbone(NAME, weights=path2, model_kwargs=KW)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path):
    ref = _reference()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()}, str(path))
    data = path.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="damaged"):
        load_backbone(NAME, weights=trunc, model_kwargs=KW)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(WeightsError):
        load_backbone(NAME, weights=text, model_kwargs=KW)
    # A CLIP checkpoint offered to a DINOv2 model.
    clip_name, clip_kw = TINY["clip"]
    clip = load_backbone(clip_name, pretrained=False, model_kwargs=clip_kw)
    other = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, str(other))
    with pytest.raises(WeightsError, match="another architecture"):
        load_backbone(NAME, weights=other, model_kwargs=KW)
    with pytest.raises(WeightsNotFoundError):
        load_backbone(NAME, weights=tmp_path / "missing.safetensors", model_kwargs=KW)


def test_offline_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError) as err:
        load_engine("dinov2-b14")
    msg = str(err.value)
    assert "phs download dinov2-b14" in msg and "--weights" in msg and "demo" in msg
    assert "\n" not in msg
    assert not weights_available(get_spec("dinov2-b14"))


def test_weights_from_a_hugging_face_cache(tmp_path, monkeypatch):
    """A cache laid out as huggingface_hub writes it (refs/main -> snapshot) is found offline."""
    spec = get_spec("test-vit")
    ref = load_backbone("test-vit", pretrained=False)
    perturb_(ref.model, seed=3)
    cache = tmp_path / "hub"
    repo = cache / ("models--" + spec.hf_repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    sd = {k: v.contiguous() for k, v in ref.model.state_dict().items()}
    sd["head.weight"] = torch.zeros(1000, 64)  # the hub file carries the classifier; it is dropped
    sd["head.bias"] = torch.zeros(1000)
    save_file(sd, str(snap / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert weights_available(spec)
    got = load_backbone("test-vit")
    assert got.weights_id.startswith("hf:timm/test_vit")
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(got.model(x), ref.model(x))


def test_engine_exposes_timm_module_and_fingerprint():
    engine = load_engine(NAME, pretrained=False, model_kwargs=KW, device="cpu")
    import timm.models.vision_transformer as tvt

    assert isinstance(engine.model, tvt.VisionTransformer)
    fp = engine.fingerprint()
    assert fp["weights"].startswith("random:") and fp["resize"] == "squash-bicubic" and fp["num_heads"] == 4
    assert fp["arch_overrides"] == dict(sorted(KW.items()))
    other = load_engine(NAME, pretrained=False, model_kwargs=KW, device="cpu")
    assert other.fingerprint()["weights"] != fp["weights"]  # two random models never share an index
    engine.set_image(random_image(30, 20))
    assert engine.image_size == (30, 20)
    assert "on cpu, fp32" in engine.describe()


def test_models_without_cls_token_are_refused():
    import timm

    from core.models.backbones import Backbone, ModelSpec

    model = timm.create_model("test_vit2", pretrained=False)
    with pytest.raises(UnsupportedModelError, match="CLS"):
        PHSEngine(Backbone(model, ModelSpec("x", "test_vit2", "x", "test"), "random"), device="cpu")


def test_bf16_autocast_is_close_to_fp32():
    fp32 = load_engine(NAME, pretrained=False, model_kwargs=KW, device="cpu")
    perturb_(fp32.model, seed=1)
    bf16 = PHSEngine(fp32.backbone, device="cpu", precision="bf16")
    img = random_image(40, 40, seed=2)
    fp32.set_image(img)
    a = fp32.feature()
    bf16.set_image(img)
    b = bf16.feature()
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.99 and b.dtype == np.float32
