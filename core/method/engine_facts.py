"""What the engine's model is, apart from what it computes: its shape, normalisation and fingerprint.

:class:`ModelFacts` is the part of :class:`core.method.engine.PHSEngine` that only reads the backbone, its
layout (:func:`core.method.vit.check_supported`) and its input transform; the small data the engine takes and
returns (:class:`FAParams`, :class:`EncodedBatch`, :class:`EngineCounters`) live here too. Everything is
re-exported by :mod:`core.method.engine`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.defaults import FA_ALPHA, FA_BLOCKS, FA_SIGMA
from core.errors import PromptError
from core.method import vit
from core.method.transforms import SquashResize
from core.models.backbones import Backbone, ModelSpec, recommended_h_on


@dataclass(frozen=True)
class FAParams:
    """FALIP foveal attention (seed 002): ``alpha``, ``sigma`` and the number of last blocks it acts on."""

    alpha: float = FA_ALPHA
    sigma: float = FA_SIGMA
    blocks: int = FA_BLOCKS

    def __post_init__(self) -> None:
        if not (np.isfinite(self.alpha) and np.isfinite(self.sigma) and self.sigma > 0 and self.blocks >= 1):
            raise PromptError("FA needs a finite alpha, a positive sigma and at least one block.")


@dataclass(frozen=True, eq=False)
class EncodedBatch:
    """Output of :meth:`PHSEngine.encode_batch` for ``B`` images.

    Attributes:
        features: ``(B, feature_dim)`` float32 plain [CLS] features (not normalised).
        x_cls: ``(B, D)`` float32 last-block residual input at [CLS].
        o_cls: ``(B, h, d_h)`` float32 per-head [CLS] outputs of the last block.
    """

    features: np.ndarray
    x_cls: np.ndarray
    o_cls: np.ndarray


@dataclass
class EngineCounters:
    """How much work the engine did; tests use it to prove that prompt edits never re-run the backbone.

    Attributes:
        forwards: images pushed through the whole backbone.
        blocks: transformer blocks re-run from cached tokens (FA), counted per image.
        cache_hits: :meth:`PHSEngine.set_image` calls answered from the encoded-image cache.
    """

    forwards: int = 0
    blocks: int = 0
    cache_hits: int = 0


class ModelFacts:
    """The read-only facts of an engine's model (its subclass :class:`core.method.engine.PHSEngine` sets them).

    Attributes:
        backbone: the loaded backbone.
        layout: its last-block layout.
        transform: the squash resize and normalisation of the model input.
        precision: what photos are encoded in.
        itae_theta: the ITAE threshold the index features are computed with, ``None`` for off.
    """

    backbone: Backbone
    layout: vit.ViTLayout
    transform: SquashResize
    precision: str
    itae_theta: float | None
    device: torch.device

    @property
    def spec(self) -> ModelSpec:
        """The registry entry of the backbone."""
        return self.backbone.spec

    @property
    def num_heads(self) -> int:
        """``h``, heads in the last block."""
        return self.layout.num_heads

    @property
    def head_dim(self) -> int:
        """``d_h``."""
        return self.layout.head_dim

    @property
    def embed_dim(self) -> int:
        """``D``."""
        return self.layout.embed_dim

    @property
    def feature_dim(self) -> int:
        """Length of the output feature."""
        return self.layout.feature_dim

    @property
    def grid(self) -> tuple[int, int]:
        """``(gh, gw)`` patch grid."""
        return self.layout.grid

    @property
    def input_size(self) -> int:
        """Square input side ``S`` in pixels."""
        return self.layout.input_size

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel normalisation mean of the model input."""
        return self.transform.mean

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel normalisation std of the model input."""
        return self.transform.std

    @property
    def interpolation(self) -> str:
        """Resampling of the squash resize, ``bicubic`` or ``bilinear``."""
        return self.transform.interpolation

    @property
    def recommended_h_on(self) -> int:
        """``h_on`` to use when none is chosen (see :func:`core.models.backbones.recommended_h_on`)."""
        return recommended_h_on(self.spec, self.num_heads)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines database features; indexes record it and refuse a mismatch."""
        weights = self.backbone.weights_id
        if weights == "random":
            # Random weights differ from model to model: identify them by their values.
            digest = hashlib.sha1()
            for t in self.model.state_dict().values():
                digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            weights = f"random:{digest.hexdigest()[:16]}"
        return {
            "model": self.spec.name,
            "timm_name": self.spec.timm_name,
            "arch_overrides": dict(sorted(self.backbone.model_kwargs.items())),
            "weights": weights,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": f"squash-{self.interpolation}",
            "itae_theta": self.itae_theta,
            "precision": self.precision,
            "feature_dim": self.feature_dim,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "embed_dim": self.embed_dim,
        }

    def describe(self) -> str:
        """A one-line description for status bars and logs."""
        demo = " [demo model, synthetic shapes only]" if self.spec.is_demo else ""
        return f"{self.spec.label}{demo} on {self.device.type}, {self.precision}"
