"""Prompt-guided attention Head Selection (PHS): the method, written to be checked against the paper.

Notation (seed 001 "Method Summary", seed 000 A1.5-A1.6): a ViT's last block has ``h`` heads of width
``d_h`` (``D = h * d_h``). ``A_i`` is head ``i``'s attention, ``A_i[CLS, p]`` the weight the [CLS] query gives
patch ``p``.

1. ROI attention per head (A1.5)::

       Sum (default): s_i = sum_{p in ROI} w_p * A_i[CLS, p]
       Max:           s_i = max_{p in ROI} A_i[CLS, p]

   ``w_p`` is the ROI weight of patch ``p`` (1 for points and boxes, the covered fraction for masks). With
   negative prompts (ours, beyond the paper) the same reduction over the negative ROI is subtracted.
2. Keep the top ``h_on`` heads (default 5).
3. Head mask before the output projection (A1.6, *Before+Scale*)::

       m_i = h / h_on  if head i is kept, else 0

   The other strategies of Table A5 are offered as ablations: *Before* (``m_i = 1`` if kept), *After* and
   *After+Scale* (the same factors applied to the ``h`` chunks of ``d_h`` channels of the projection's
   output instead of to the heads' outputs), *Identity* (a dropped head's attention matrix is replaced by
   the identity, so its [CLS] output is its own value vector ``V_i[CLS]``).
4. The feature is the [CLS] row of the last block recomputed with the mask (see :mod:`core.method.vit`).

This module holds steps 1-3 in numpy; step 4 is torch code in :func:`core.method.vit.cls_feature`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from core.errors import PromptError
from core.method.prompts import Roi


class RoiReduce(StrEnum):
    """How a head's attention inside the ROI is reduced to one score (Table A4)."""

    SUM = "sum"
    MAX = "max"


class HeadStrategy(StrEnum):
    """Where and how the head mask is applied (Table A5)."""

    IDENTITY = "identity"
    AFTER = "after"
    BEFORE = "before"
    AFTER_SCALE = "after+scale"
    BEFORE_SCALE = "before+scale"

    @property
    def scaled(self) -> bool:
        """Whether kept heads are multiplied by ``h / h_on``."""
        return self in (HeadStrategy.AFTER_SCALE, HeadStrategy.BEFORE_SCALE)

    @property
    def after_projection(self) -> bool:
        """Whether the mask acts on the projection's output channels rather than the heads' outputs."""
        return self in (HeadStrategy.AFTER, HeadStrategy.AFTER_SCALE)


def roi_attention(attn: np.ndarray, roi: Roi, reduce: RoiReduce | str = RoiReduce.SUM) -> np.ndarray:
    """Per-head ROI attention ``s_i`` (step 1).

    Args:
        attn: ``(h, gh, gw)`` [CLS]->patch attention of the last block (prefix tokens excluded).
        roi: ROI weights on the same ``(gh, gw)`` grid.
        reduce: ``"sum"`` (default, the paper's) or ``"max"`` (the ablation).

    Returns:
        ``(h,)`` float64 scores; higher means the head looks more at the marked region.
    """
    attn = np.asarray(attn, dtype=np.float64)
    if attn.ndim != 3 or attn.shape[1:] != roi.grid:
        raise PromptError(f"The ROI grid {roi.grid} does not match the attention maps {attn.shape[1:]}.")
    reduce = RoiReduce(reduce)
    flat = attn.reshape(attn.shape[0], -1)
    pos = roi.positive.reshape(-1).astype(np.float64)
    neg = roi.negative.reshape(-1).astype(np.float64)
    if reduce is RoiReduce.SUM:
        scores = flat @ pos
        if neg.any():
            scores = scores - flat @ neg
    else:
        scores = np.where(pos > 0, flat, -np.inf).max(axis=1)
        if neg.any():
            scores = scores - np.where(neg > 0, flat, -np.inf).max(axis=1)
    return scores


def select_heads(
    scores: np.ndarray,
    h_on: int,
    force_on: Iterable[int] = (),
    force_off: Iterable[int] = (),
) -> np.ndarray:
    """Keep the top ``h_on`` heads by score (step 2), honouring heads forced on or off by hand.

    Heads forced on are always kept, heads forced off never; the remaining places up to ``h_on`` go to the
    best-scoring free heads (ties broken by the lower head index). If more heads are forced on than
    ``h_on``, all forced heads are kept.

    Args:
        scores: ``(h,)`` ROI attention scores.
        h_on: number of heads to keep, ``1 <= h_on <= h``.
        force_on: head indices always kept.
        force_off: head indices never kept.

    Returns:
        ``(h,)`` boolean array, ``True`` for kept heads (at least one).
    """
    scores = np.asarray(scores, dtype=np.float64)
    h = scores.shape[0]
    if not 1 <= int(h_on) <= h:
        raise PromptError(f"h_on must be between 1 and {h} (the number of heads), not {h_on}.")
    on, off = set(map(int, force_on)), set(map(int, force_off))
    if not on.isdisjoint(off):
        raise PromptError("A head cannot be forced both on and off.")
    if any(not 0 <= i < h for i in on | off):
        raise PromptError(f"Head indices must be between 0 and {h - 1}.")
    selected = np.zeros(h, dtype=bool)
    selected[list(on)] = True
    free = [i for i in np.lexsort((np.arange(h), -scores)) if i not in on and i not in off]
    for i in free[: max(int(h_on) - len(on), 0)]:
        selected[i] = True
    if not selected.any():
        raise PromptError("Every head is forced off: let at least one head through.")
    return selected


def head_mask(selected: np.ndarray, strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE) -> np.ndarray:
    """The head mask ``m`` (step 3).

    Args:
        selected: ``(h,)`` boolean, kept heads.
        strategy: a :class:`HeadStrategy`; for *Identity* the mask is the keep flag (1 kept, 0 replaced).

    Returns:
        ``(h,)`` float32: ``h / h_on`` for kept heads with a *Scale* strategy, 1 without, 0 for dropped.
    """
    selected = np.asarray(selected, dtype=bool)
    strategy = HeadStrategy(strategy)
    k = int(selected.sum())
    if k == 0:
        raise PromptError("At least one head must be kept.")
    value = selected.shape[0] / k if strategy.scaled else 1.0
    return np.where(selected, value, 0.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class HeadSelection:
    """The outcome of scoring and selecting heads for one prompt.

    Attributes:
        scores: ``(h,)`` ROI attention per head.
        selected: ``(h,)`` bool, the kept heads.
        head_mask: ``(h,)`` float32 mask ``m`` for :attr:`strategy`.
        strategy: the head-selection strategy the mask was made for.
        h_on: the number of heads asked for.
    """

    scores: np.ndarray
    selected: np.ndarray
    head_mask: np.ndarray
    strategy: HeadStrategy
    h_on: int

    @property
    def indices(self) -> list[int]:
        """Kept head indices, best score first."""
        idx = np.flatnonzero(self.selected)
        return [int(i) for i in idx[np.argsort(-self.scores[idx], kind="stable")]]

    @property
    def ranking(self) -> list[int]:
        """All head indices, best score first."""
        return [int(i) for i in np.argsort(-self.scores, kind="stable")]


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Divide by the L2 norm along ``axis`` (cosine similarity = dot product of normalised features)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def database_features(features: np.ndarray) -> np.ndarray:
    """The form every gallery keeps plain features in (an index, the evaluation's database, a search's query).

    Args:
        features: ``(N, F)`` (or ``(F,)``) features as :meth:`core.method.engine.PHSEngine.encode_batch` returns them.

    Returns:
        The same shape, float32, each row of unit L2 norm, so a dot product is the cosine similarity.
    """
    return l2_normalize(features)
