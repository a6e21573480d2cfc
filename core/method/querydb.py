"""Query-DB: database features recomputed from their cached last-block [CLS] state with a query's head mask.

The cache of a photo is ``X_cls`` (the residual stream entering the last block at [CLS], ``(D,)``) and
``O[CLS]`` (each head's attention output at [CLS], ``(h, d_h)``); with them the last block's projection, MLP,
final norm and head give the photo's feature under any head mask without running the backbone (seed 001,
step 5; :func:`core.method.vit.cls_feature`).

On a CPU with bf16 in hardware (AVX-512 BF16, AMX) a first pass over many candidates runs on a bf16 copy of
those parts (``bench/bench_scale.py`` prints the re-rank beside the bare matrix-product chain). The cached rows
may come as float16 (as the cache stores them): they are converted to the pass's precision once, by torch.
"""

from __future__ import annotations

import contextlib
import copy
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.errors import PromptError
from core.method import vit
from core.method.phs import HeadStrategy


class QueryDB:
    """Recomputes database features from Query-DB cache rows for one model.

    Args:
        model: the timm ViT (its last block, norms and head are used, never changed).
        device: where the model lives.
        feature_dim: length of a feature.
        autocast: ``autocast(precision)`` gives the context the full-precision model runs a pass in.
    """

    def __init__(
        self,
        model: Any,
        device: torch.device,
        feature_dim: int,
        autocast: Callable[[str], contextlib.AbstractContextManager],
    ) -> None:
        self.model = model
        self.device = device
        self.feature_dim = int(feature_dim)
        self.autocast = autocast
        self._bf16: Any = None
        self.num_heads = int(model.blocks[-1].attn.num_heads)

    def features(
        self,
        x_cls: np.ndarray,
        o_cls: np.ndarray,
        head_mask: np.ndarray | None,
        strategy: HeadStrategy | str,
        precision: str,
        chunk: int = 4096,
    ) -> np.ndarray:
        """Database features under ``head_mask``.

        Args:
            x_cls: ``(B, D)`` cached residual inputs (float16 or float32).
            o_cls: ``(B, h, d_h)`` cached per-head [CLS] outputs.
            head_mask: ``(h,)`` the query's mask ``m``; ``None`` gives the plain features.
            strategy: the strategy the mask was made for.
            precision: ``fp32`` (exact), ``bf16`` or ``fp16`` (already resolved for the device).
            chunk: rows computed at a time.

        Returns:
            ``(B, feature_dim)`` float32, not normalised.
        """
        x_cls = np.asarray(x_cls)
        o_cls = np.asarray(o_cls)
        if x_cls.ndim != 2 or o_cls.ndim != 3 or o_cls.shape[:2] != (x_cls.shape[0], self.num_heads):
            raise PromptError("Cached states must be (B, D) and (B, h, d_h) arrays for this model.")
        m = None if head_mask is None else torch.as_tensor(np.asarray(head_mask, dtype=np.float32), device=self.device)
        if precision == "bf16" and self.device.type == "cpu":
            # Pure bf16 on a bf16 copy: autocast would re-cast the weights on every call and keep the norms in
            # fp32 (measured 1.3x slower for 1,000 rows of ViT-B).
            lite, dtype, ctx = self._bf16_parts(), torch.bfloat16, "fp32"
        else:
            lite, dtype, ctx = self.model, torch.float32, precision
        out = np.empty((x_cls.shape[0], self.feature_dim), dtype=np.float32)
        for i in range(0, x_cls.shape[0], chunk):
            xc = torch.as_tensor(x_cls[i : i + chunk], device=self.device).to(dtype)
            oc = torch.as_tensor(o_cls[i : i + chunk], device=self.device).to(dtype)
            with torch.inference_mode(), self.autocast(ctx):
                f = vit.cls_feature(lite, xc, oc, m, strategy)  # type: ignore[arg-type]
            out[i : i + chunk] = f.float().cpu().numpy()
        return out

    def _bf16_parts(self) -> Any:
        """A bf16 copy of what :func:`core.method.vit.cls_feature` uses (last block, norms, head), made once."""
        if self._bf16 is None:
            m = self.model
            parts = {n: copy.deepcopy(getattr(m, n)).to(torch.bfloat16) for n in ("norm", "fc_norm", "head")}
            block = copy.deepcopy(m.blocks[-1]).to(torch.bfloat16)
            self._bf16 = types.SimpleNamespace(blocks=[block], head_drop=m.head_drop, **parts)
        return self._bf16
