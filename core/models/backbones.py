"""Supported backbones, where their weights come from, and safe loading.

A model is named by a short registry name (``dinov2-b14``, ``clip-b16``, ``demo`` ...) or by a timm model
name. Weights come from, in order:

1. a local file passed explicitly (``.safetensors``; ``.pth``/``.pt``/``.bin`` loaded with
   ``torch.load(weights_only=True)``, so a pickle that would run code is refused), converted by timm's
   checkpoint filter (official DINOv2 and OpenAI CLIP layouts, position-embedding resampling);
2. the project's own file in ``resources/`` (the demo model);
3. the Hugging Face cache (``$HF_HUB_CACHE``), downloaded with a progress bar when online.

``pretrained=False`` builds a randomly initialised model, and only then: without weights and offline the
loader raises :class:`core.errors.WeightsNotFoundError` with a sentence that says how to get them. It never
silently returns a random model.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.defaults import DEFAULT_H_ON, DEFAULT_MODEL
from core.errors import PHSError, UnsupportedModelError, WeightsError, WeightsNotFoundError
from core.paths import resources_dir

if TYPE_CHECKING:  # torch and timm load when a model does (the app shows its window before that)
    import torch
    from timm.models.vision_transformer import VisionTransformer

WEIGHTS_FILE = "model.safetensors"
DEMO_WEIGHTS = "demo_model.safetensors"
DEMO_CONFIG = "demo_model.json"


@dataclass(frozen=True)
class ModelSpec:
    """A supported backbone.

    Attributes:
        name: short registry name used by the CLI and the GUI.
        timm_name: timm architecture name with its pretrained tag (``arch.tag``).
        label: human-readable name shown in the GUI.
        family: ``dinov2``, ``clip``, ``deit3``, ``demo`` or ``test``.
        keep_head: keep the model's own head (CLIP's visual projection); otherwise ``num_classes=0``.
        timm_kwargs: extra arguments for ``timm.create_model`` (e.g. the input size).
        hf_repo: Hugging Face repository holding ``model.safetensors`` (``None``: no download).
        resource: file name in ``resources/`` for weights shipped with the project.
        is_demo: a project-trained demo model, labelled as such everywhere.
    """

    name: str
    timm_name: str
    label: str
    family: str
    keep_head: bool = False
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    hf_repo: str | None = None
    resource: str | None = None
    is_demo: bool = False

    @property
    def arch(self) -> str:
        """timm architecture name without the pretrained tag."""
        return self.timm_name.split(".")[0]


def _hf(timm_name: str) -> str:
    return f"timm/{timm_name}"


_SPECS: list[ModelSpec] = []
for _size, _label in (("small", "S"), ("base", "B"), ("large", "L"), ("giant", "g")):
    for _reg in ("", "reg4_"):
        _t = f"vit_{_size}_patch14_{_reg}dinov2.lvd142m"
        _SPECS.append(
            ModelSpec(
                name=f"dinov2-{_label.lower()}14{'-reg4' if _reg else ''}",
                timm_name=_t,
                label=f"DINOv2 ViT-{_label}/14{' + 4 registers' if _reg else ''}",
                family="dinov2",
                timm_kwargs={"img_size": 224},
                hf_repo=_hf(_t),
            )
        )
_SPECS += [
    ModelSpec(
        "clip-b16",
        "vit_base_patch16_clip_quickgelu_224.openai",
        "OpenAI CLIP ViT-B/16",
        "clip",
        keep_head=True,
        hf_repo=_hf("vit_base_patch16_clip_quickgelu_224.openai"),
    ),
    ModelSpec(
        "clip-l14",
        "vit_large_patch14_clip_quickgelu_224.openai",
        "OpenAI CLIP ViT-L/14",
        "clip",
        keep_head=True,
        hf_repo=_hf("vit_large_patch14_clip_quickgelu_224.openai"),
    ),
]
for _size, _label in (("small", "S"), ("base", "B"), ("large", "L")):
    _t = f"deit3_{_size}_patch16_224.fb_in22k_ft_in1k"
    _SPECS.append(ModelSpec(f"deit3-{_label.lower()}16", _t, f"DeiT III ViT-{_label}/16", "deit3", hf_repo=_hf(_t)))
_SPECS += [
    ModelSpec(
        "demo",
        "vit_demo.phs",
        "demo (synthetic shapes)",
        "demo",
        resource=DEMO_WEIGHTS,
        is_demo=True,
    ),
    ModelSpec("test-vit", "test_vit.r160_in1k", "timm test ViT (tiny)", "test", hf_repo=_hf("test_vit.r160_in1k")),
]

REGISTRY: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
__all__ = ["DEFAULT_MODEL", "REGISTRY", "Backbone", "ModelSpec", "get_spec", "list_models", "load_backbone"]


def list_models() -> list[ModelSpec]:
    """All registered backbones, in display order."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    """Look up a registry name, a timm name (with or without tag) or an alias.

    Unregistered timm ViT names are accepted as-is (loaded through the Hugging Face ``timm/`` repository
    of the same name).

    Raises:
        WeightsNotFoundError: if the name is neither registered nor a timm model.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    for spec in _SPECS:
        if name in (spec.timm_name, spec.arch):
            return spec
    import timm

    arch = name.split(".")[0]
    if timm.is_model(arch):
        return ModelSpec(name, name, name, "timm", hf_repo=_hf(name) if "." in name else None)
    known = ", ".join(s.name for s in _SPECS)
    raise WeightsNotFoundError(f"Unknown model '{name}'; choose one of: {known}.")


def available_devices() -> list[str]:
    """The devices this machine can run on: ``auto`` and ``cpu``, then ``cuda`` and ``mps`` where present."""
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else is passed to ``torch.device``."""
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise WeightsError(f"'{device}' is not a device; use auto, cpu, cuda or mps.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeightsError("CUDA was asked for but no CUDA GPU is available; use --device cpu or auto.")
    return dev


# ---------------------------------------------------------------------------------------------------------
# Building and loading


def _demo_config() -> dict[str, Any]:
    path = resources_dir() / DEMO_CONFIG
    if not path.is_file():
        raise WeightsNotFoundError(
            f"The demo model is missing ({path} not found); reinstall PHS desktop or run "
            "`python -m core.synthetic.train_demo` to train it."
        )
    return json.loads(path.read_text())


def recommended_h_on(spec: ModelSpec, num_heads: int) -> int:
    """``h_on`` to use when none is chosen, clipped to ``[1, num_heads]``.

    The demo model's value recorded at training (``resources/demo_model.json``), else the paper's
    :data:`core.defaults.DEFAULT_H_ON`.
    """
    h_on = DEFAULT_H_ON
    if spec.is_demo:
        with contextlib.suppress(PHSError, OSError, ValueError, TypeError):
            h_on = int(_demo_config().get("h_on", DEFAULT_H_ON))
    return int(min(max(h_on, 1), num_heads))


def build_model(spec: ModelSpec, model_kwargs: dict[str, Any] | None = None) -> VisionTransformer:
    """Create the architecture with random weights (no download ever happens here).

    Args:
        model_kwargs: overrides for ``timm.create_model`` (e.g. a tiny ``depth`` in tests).
    """
    import timm
    from timm.models.vision_transformer import VisionTransformer

    if spec.is_demo:
        cfg = _demo_config()
        kwargs = {**cfg["vit_kwargs"], **(model_kwargs or {})}
        if cfg.get("stem") == "conv":
            from core.models.convstem import ConvStem

            kwargs["embed_layer"] = ConvStem
        model = VisionTransformer(**kwargs)
    else:
        kwargs = {**spec.timm_kwargs, **(model_kwargs or {})}
        if not spec.keep_head:
            kwargs["num_classes"] = 0
        model = timm.create_model(spec.arch, pretrained=False, **kwargs)
    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(f"'{spec.name}' is not a Vision Transformer; PHS needs one.")
    return model


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file without ever running code from it.

    ``.safetensors`` files are read by safetensors; anything else by ``torch.load(weights_only=True)``,
    which refuses pickles that construct arbitrary objects.

    Raises:
        WeightsNotFoundError: the file does not exist.
        WeightsError: the file is damaged, not a weights file, or unsafe.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"The weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"The weights file {path.name} is damaged or not a safetensors file ({err}).") from err
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise WeightsError(
                f"Refused to load {path.name}: it contains Python objects other than tensors, which could run "
                "code; convert it to .safetensors or use a weights-only checkpoint."
            ) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
            raise WeightsError(f"The weights file {path.name} is damaged or not a PyTorch checkpoint ({err}).") from err
    if isinstance(sd, dict):
        for key in ("model", "state_dict", "teacher", "model_ema"):
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"The file {path.name} does not hold a state dict of tensors.")
    return sd


def apply_state_dict(model: VisionTransformer, state_dict: dict[str, torch.Tensor], source: str, name: str) -> None:
    """Convert a checkpoint with timm's filter (DINOv2 / CLIP layouts, pos-embed resampling) and load it strictly.

    Raises:
        WeightsError: the checkpoint belongs to another architecture.
    """
    import torch.nn as nn
    from timm.models.vision_transformer import checkpoint_filter_fn

    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    try:
        sd = checkpoint_filter_fn(sd, model)
    except Exception as err:  # timm raises assorted errors on foreign layouts
        raise WeightsError(f"The checkpoint {source} does not fit the model '{name}' ({err}).") from err
    if isinstance(model.head, nn.Identity):
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        missing = set(model.state_dict()) - set(sd)
        unexpected = set(sd) - set(model.state_dict())
        detail = f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
        if not missing and not unexpected:
            detail = "tensor shapes differ"
        example = sorted(missing or unexpected)[:2]
        raise WeightsError(
            f"The checkpoint {source} is for another architecture than '{name}' ({detail}"
            f"{', e.g. ' + ', '.join(example) if example else ''}); pick the matching --model."
        ) from err


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def how_to_get_weights(spec: ModelSpec) -> str:
    """One sentence on how to obtain a model's weights."""
    return (
        f"No weights for '{spec.name}' ({spec.label}) are on this machine; on a computer with internet run "
        f"`phs download {spec.name}` (it fills the Hugging Face cache, which you can copy to "
        f"{_hf_cache_hint()}), or pass a local file with --weights, or use --model demo."
    )


def hub_reachable(timeout_s: float = 1.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection within ``timeout_s``.

    Checked before a download so that a machine without network says so at once instead of spending half a
    minute in huggingface_hub's retries. Name resolution runs in a daemon thread because it has no timeout.
    """
    import socket
    import threading
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                ok.append(True)
        except OSError:
            ok.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout_s)
    return bool(ok and ok[0])


def _hf_cache_hint() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


def hf_weights_path(spec: ModelSpec, download: bool = True) -> Path:
    """The local path of a model's ``model.safetensors`` in the Hugging Face cache.

    Args:
        download: fetch it (with huggingface_hub's progress bar) when missing and online.

    Raises:
        WeightsNotFoundError: not cached and cannot be downloaded.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if spec.hf_repo is None:
        raise WeightsNotFoundError(how_to_get_weights(spec))
    cache = os.environ.get("HF_HUB_CACHE") or None  # read now, not at import time
    try:
        return Path(hf_hub_download(spec.hf_repo, WEIGHTS_FILE, local_files_only=True, cache_dir=cache))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if not download or _offline() or not hub_reachable():
        raise WeightsNotFoundError(how_to_get_weights(spec))
    try:
        return Path(hf_hub_download(spec.hf_repo, WEIGHTS_FILE, cache_dir=cache))
    except Exception as err:  # network errors come in many types
        raise WeightsNotFoundError(how_to_get_weights(spec)) from err


@dataclass
class Backbone:
    """A loaded backbone: the timm module, its spec, and where its weights came from.

    Attributes:
        model: the timm ``VisionTransformer`` in eval mode.
        spec: the registry entry.
        weights_id: ``"random"`` for ``pretrained=False``, else the weights file name and size, recorded in
            index sidecars so that features from other weights are never mixed.
        model_kwargs: architecture overrides the model was built with (part of the index fingerprint).
    """

    model: VisionTransformer
    spec: ModelSpec
    weights_id: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def load_backbone(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    pretrained: bool = True,
    download: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> Backbone:
    """Build a backbone and load its weights (see the module docstring for the order).

    Args:
        name: registry name or timm name.
        weights: a local weights file; overrides every other source.
        pretrained: ``False`` gives random weights, explicitly (tests, timing).
        download: allow downloading into the Hugging Face cache when online.
        model_kwargs: architecture overrides passed to ``timm.create_model``.

    Raises:
        WeightsNotFoundError, WeightsError, UnsupportedModelError: each with a sentence for the user.
    """
    spec = get_spec(name)
    model = build_model(spec, model_kwargs)
    if weights is not None:
        path = Path(weights).expanduser()
        apply_state_dict(model, load_state_dict_file(path), path.name, spec.name)
        weights_id = f"file:{path.name}:{path.stat().st_size}"
    elif spec.resource is not None:
        path = resources_dir() / spec.resource
        if not path.is_file():
            raise WeightsNotFoundError(
                f"The demo model weights are missing ({path}); reinstall PHS desktop or run "
                "`python -m core.synthetic.train_demo` to train them."
            )
        apply_state_dict(model, load_state_dict_file(path), path.name, spec.name)
        weights_id = f"resource:{path.name}:{path.stat().st_size}"
    elif not pretrained:
        weights_id = "random"
    else:
        path = hf_weights_path(spec, download=download)
        apply_state_dict(model, load_state_dict_file(path), spec.hf_repo or path.name, spec.name)
        weights_id = f"hf:{spec.hf_repo}:{path.stat().st_size}"
    model.eval()
    return Backbone(model=model, spec=spec, weights_id=weights_id, model_kwargs=dict(model_kwargs or {}))


def weights_available(spec: ModelSpec) -> bool:
    """Whether the weights are on this machine now (shipped resource or in the Hugging Face cache)."""
    if spec.resource is not None:
        return (resources_dir() / spec.resource).is_file()
    try:
        hf_weights_path(spec, download=False)
    except WeightsNotFoundError:
        return False
    return True
