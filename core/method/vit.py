"""Reaching inside a timm ``VisionTransformer``: the last block's [CLS] row, head masks, FA and ITAE.

All functions here are torch code (differentiable, batched) on timm's own modules; nothing re-implements
a ViT. Token order: ``[CLS]``, the registers (if any), then the ``gh x gw`` patches in row-major order, so
``num_prefix_tokens = 1 + registers``.

Last block, pre-norm (seed 001)::

    Hn  = LN1(X)
    A_i = softmax(Q_i K_i^T / sqrt(d_h))             # only the [CLS] row is needed
    O_i = A_i V_i
    y   = X_cls + LS1(W_o concat_i(m_i O_i[CLS]) + b_o)
    z   = y + LS2(MLP(LN2(y)))
    f   = head(LN_final(z))                          # head: CLIP's projection, else identity

The attention probabilities do not depend on ``m``, and ``m = 1`` gives the model's own [CLS] feature, so
caching ``X_cls`` and ``O_i[CLS]`` (``2 D`` numbers per image) is enough to recompute the feature for any
head mask (:func:`cls_feature`).

Decisions recorded here:

* The last block is never run through timm's ``Attention.forward``: we compute its [CLS] row from its
  ``qkv``, ``q_norm``/``k_norm`` and ``proj`` modules, because we need the probabilities, which timm's fused
  attention (``scaled_dot_product_attention``) never materialises. All other blocks keep fused attention.
* FA (FALIP, seed 002) adds a bias to the [CLS] row of the attention logits of the last ``n`` blocks; the
  first ``n - 1`` of them go through timm's ``Block.forward`` with an additive ``attn_mask`` (supported by
  both the fused and the plain path).
* ITAE (seed 003) acts in the last block only: patches whose query vector has an L2 norm above ``theta``
  are artifacts; in each head's [CLS] row their pre-softmax logits are replaced by the row minimum over
  patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from core.errors import UnsupportedModelError
from core.method.phs import HeadStrategy


@dataclass(frozen=True)
class ViTLayout:
    """Shapes of a supported ViT.

    Attributes:
        num_heads: ``h`` in the last block.
        head_dim: ``d_h``.
        embed_dim: ``D`` (the residual width; equals ``h * d_h`` for supported models).
        feature_dim: length of the output feature (after the projection head, if any).
        num_prefix_tokens: [CLS] plus registers.
        grid: ``(gh, gw)`` patch grid at the model's input size.
        patch_size: patch side in input pixels.
        input_size: the square input side ``S`` in pixels.
        depth: number of blocks ``L``.
    """

    num_heads: int
    head_dim: int
    embed_dim: int
    feature_dim: int
    num_prefix_tokens: int
    grid: tuple[int, int]
    patch_size: int
    input_size: int
    depth: int


def check_supported(model: nn.Module) -> ViTLayout:
    """Check that PHS can run on ``model`` and return its layout.

    Raises:
        UnsupportedModelError: not a timm ``VisionTransformer`` with a [CLS] token, token pooling, and a
            plain multi-head attention in the last block.
    """
    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(f"PHS needs a timm VisionTransformer, not a {type(model).__name__}.")
    if model.cls_token is None or model.global_pool != "token" or model.attn_pool is not None:
        raise UnsupportedModelError("PHS needs a ViT whose feature is its [CLS] token (global_pool='token').")
    last = model.blocks[-1]
    if type(last) is not Block or type(last.attn) is not Attention:
        raise UnsupportedModelError("PHS needs a plain timm Block with multi-head Attention as the last block.")
    attn = last.attn
    if not isinstance(attn.norm, nn.Identity) or getattr(attn, "gate", None) is not None:
        raise UnsupportedModelError("PHS cannot mask heads in an attention with output norm or gating.")
    if attn.attn_dim != model.embed_dim:
        raise UnsupportedModelError("PHS needs the attention width to equal the embedding width.")
    gh, gw = model.patch_embed.grid_size
    img = model.patch_embed.img_size
    feat = model.head.out_features if isinstance(model.head, nn.Linear) else model.embed_dim
    return ViTLayout(
        num_heads=attn.num_heads,
        head_dim=attn.head_dim,
        embed_dim=model.embed_dim,
        feature_dim=int(feat),
        num_prefix_tokens=model.num_prefix_tokens,
        grid=(int(gh), int(gw)),
        patch_size=int(model.patch_embed.patch_size[0]),
        input_size=int(img[0]),
        depth=len(model.blocks),
    )


def embed(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Patch embedding, prefix tokens and position embedding, as timm's ``forward_features`` does.

    Args:
        x: ``(B, 3, S, S)`` normalised images.

    Returns:
        ``(B, N, D)`` tokens entering block 0, ``N = prefix + gh * gw``.
    """
    t = model.patch_embed(x)
    t = model._pos_embed(t)
    t = model.patch_drop(t)
    return model.norm_pre(t)


def cls_row_bias(bias: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Turn a per-token bias of the [CLS] row into timm's additive ``attn_mask``.

    Args:
        bias: ``(B, N)`` additive logits for the [CLS] query row.
        num_tokens: ``N``.

    Returns:
        ``(B, 1, N, N)`` mask, zero except row 0.
    """
    mask = bias.new_zeros(bias.shape[0], 1, num_tokens, num_tokens)
    mask[:, 0, 0, :] = bias
    return mask


def run_blocks(
    model: VisionTransformer,
    tokens: torch.Tensor,
    start: int,
    stop: int,
    cls_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``model.blocks[start:stop]`` with timm's own ``Block.forward``.

    Args:
        tokens: ``(B, N, D)`` tokens entering block ``start``.
        cls_bias: optional ``(B, N)`` bias added to the [CLS] row of every block's attention logits (FA).

    Returns:
        ``(B, N, D)`` tokens leaving block ``stop - 1``.
    """
    if cls_bias is None:
        for blk in model.blocks[start:stop]:
            tokens = blk(tokens)
        return tokens
    mask = cls_row_bias(cls_bias.to(tokens.dtype), tokens.shape[1])
    for blk in model.blocks[start:stop]:
        tokens = blk(tokens, attn_mask=mask)
    return tokens


@dataclass
class ClsState:
    """What the last block computes for the [CLS] token (batched).

    Attributes:
        x_cls: ``(B, D)`` residual input of the last block at [CLS] (``X_cls``).
        o_cls: ``(B, h, d_h)`` each head's output at [CLS] (``O_i[CLS]``) before the projection.
        attn: ``(B, h, N)`` the [CLS] row of each head's attention over all ``N`` tokens.
        q_norms: ``(B, N)`` L2 norms of the last block's query vectors (all heads concatenated), for ITAE.
        artifacts: ``(B, N - prefix)`` bool, the patches ITAE treated as artifacts (all False if off).
    """

    x_cls: torch.Tensor
    o_cls: torch.Tensor
    attn: torch.Tensor
    q_norms: torch.Tensor
    artifacts: torch.Tensor


def last_block_cls(
    model: VisionTransformer,
    tokens: torch.Tensor,
    cls_bias: torch.Tensor | None = None,
    itae_theta: float | None = None,
    keep: torch.Tensor | None = None,
) -> ClsState:
    """The last block's [CLS] row: attention probabilities and per-head outputs.

    Args:
        tokens: ``(B, N, D)`` tokens entering the last block.
        cls_bias: ``(B, N)`` additive logits for the [CLS] row (FA), or ``None``.
        itae_theta: ITAE threshold on query norms, or ``None`` for off.
        keep: ``(B, N)`` bool; where ``False`` the [CLS] row's logit is ``-inf`` (the *Attention Mask*
            baseline), or ``None``.

    Returns:
        The :class:`ClsState`.
    """
    blk = model.blocks[-1]
    attn: Attention = blk.attn
    b, n, _ = tokens.shape
    h, dh = attn.num_heads, attn.head_dim
    prefix = model.num_prefix_tokens
    hn = blk.norm1(tokens)
    qkv = attn.qkv(hn).reshape(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, h, N, d_h)
    q, k = attn.q_norm(q), attn.k_norm(k)
    q_norms = q.transpose(1, 2).reshape(b, n, h * dh).float().norm(dim=-1)  # (B, N)
    logits = torch.einsum("bhd,bhnd->bhn", q[:, :, 0] * attn.scale, k)  # Q_i[CLS] K_i^T / sqrt(d_h)
    artifacts = torch.zeros(b, n - prefix, dtype=torch.bool, device=tokens.device)
    if itae_theta is not None:
        # ITAE (seed 003): logits to artifact patches <- the row minimum over patches, per head.
        artifacts = q_norms[:, prefix:] > itae_theta
        patch_logits = logits[:, :, prefix:]
        row_min = patch_logits.min(dim=-1, keepdim=True).values
        patch_logits = torch.where(artifacts[:, None, :], row_min, patch_logits)
        logits = torch.cat([logits[:, :, :prefix], patch_logits], dim=-1)
    if cls_bias is not None:
        logits = logits + cls_bias[:, None, :].to(logits.dtype)
    if keep is not None:
        logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
    a = logits.softmax(dim=-1)  # (B, h, N): A_i[CLS, :]
    o_cls = torch.einsum("bhn,bhnd->bhd", a.to(v.dtype), v)  # O_i[CLS] = A_i[CLS, :] V_i
    return ClsState(x_cls=tokens[:, 0], o_cls=o_cls, attn=a, q_norms=q_norms, artifacts=artifacts)


def _value_cls(model: VisionTransformer, x_cls: torch.Tensor) -> torch.Tensor:
    """``V_i[CLS]`` from ``X_cls`` alone (for the *Identity* strategy): ``(B, D) -> (B, h, d_h)``."""
    blk = model.blocks[-1]
    attn: Attention = blk.attn
    qkv = attn.qkv(blk.norm1(x_cls))
    return qkv[:, 2 * attn.attn_dim :].reshape(x_cls.shape[0], attn.num_heads, attn.head_dim)


def cls_feature(
    model: VisionTransformer,
    x_cls: torch.Tensor,
    o_cls: torch.Tensor,
    head_mask: torch.Tensor | None = None,
    strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
) -> torch.Tensor:
    """Recompute the output feature from the cached [CLS] state with a head mask (seed 001, step 5).

    Args:
        x_cls: ``(B, D)`` residual input of the last block at [CLS].
        o_cls: ``(B, h, d_h)`` per-head [CLS] outputs.
        head_mask: ``(h,)`` or ``(B, h)`` mask ``m`` (see :func:`core.method.phs.head_mask`); ``None`` means all
            ones, which gives exactly the model's own [CLS] feature.
        strategy: where the mask acts (Table A5).

    Returns:
        ``(B, feature_dim)`` features, not normalised.
    """
    blk = model.blocks[-1]
    attn: Attention = blk.attn
    b, h, dh = o_cls.shape
    strategy = HeadStrategy(strategy)
    o = o_cls
    m = None
    if head_mask is not None:
        m = head_mask.to(device=o.device, dtype=o.dtype)
        m = m.expand(b, h) if m.dim() == 1 else m
        if strategy is HeadStrategy.IDENTITY:
            # Dropped heads see only their own token: A_i = I, so O_i[CLS] = V_i[CLS].
            o = torch.where(m[:, :, None] > 0, o, _value_cls(model, x_cls).to(o.dtype))
        elif not strategy.after_projection:
            o = o * m[:, :, None]  # concat_i(m_i O_i[CLS])
    out = attn.proj(o.reshape(b, h * dh))  # W_o (.) + b_o
    if m is not None and strategy.after_projection:
        out = (out.reshape(b, h, dh) * m[:, :, None]).reshape(b, h * dh)
    y = x_cls + blk.ls1(out)
    z = y + blk.ls2(blk.mlp(blk.norm2(y)))
    f = model.norm(z)
    f = model.fc_norm(f)
    return model.head(model.head_drop(f))


def fa_bias(
    token_box: tuple[int, int, int, int],
    grid: tuple[int, int],
    num_prefix_tokens: int,
    alpha: float = 0.2,
    sigma: float = 100.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """FALIP's foveal attention row (seed 002, Eqs. 1-2) over a box in token space.

    ``R_ij = exp(-((i - (H'-1)/2)^2 + (j - (W'-1)/2)^2) / (2 sigma^2))`` over the ``H' x W'`` box tokens,
    min-max normalised and scaled by ``alpha``: ``alpha (R - min R + eps) / (max R - min R + eps)``; every
    other token (prefix tokens included) gets 0.

    Args:
        token_box: ``(row0, col0, row1, col1)`` exclusive ends, on the ``(gh, gw)`` grid.
        grid: ``(gh, gw)``.
        num_prefix_tokens: [CLS] and registers in front of the patches.

    Returns:
        ``(N,)`` float32 additive logits for the [CLS] row.
    """
    r0, c0, r1, c1 = token_box
    hh, ww = r1 - r0, c1 - c0
    i = torch.arange(hh, dtype=torch.float64)[:, None]
    j = torch.arange(ww, dtype=torch.float64)[None, :]
    r = torch.exp(-(((i - (hh - 1) / 2) ** 2) + ((j - (ww - 1) / 2) ** 2)) / (2 * sigma**2))
    r = alpha * (r - r.min() + eps) / (r.max() - r.min() + eps)
    grid_bias = torch.zeros(grid, dtype=torch.float64)
    grid_bias[r0:r1, c0:c1] = r
    return torch.cat([torch.zeros(num_prefix_tokens, dtype=torch.float64), grid_bias.reshape(-1)]).float()


@torch.no_grad()
def forward_with_head_mask(
    model: VisionTransformer,
    x: torch.Tensor,
    head_mask: torch.Tensor,
    strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
) -> torch.Tensor:
    """Reference path: a full forward that applies the head mask *inside* the last block's attention.

    Written against timm's ``Attention.forward`` semantics (explicit attention matrix for all tokens), it
    exists so tests can check the cached path of :func:`cls_feature`.

    Args:
        x: ``(B, 3, S, S)``; head_mask: ``(h,)``.

    Returns:
        ``(B, feature_dim)``.
    """
    strategy = HeadStrategy(strategy)
    t = run_blocks(model, embed(model, x), 0, len(model.blocks) - 1)
    blk = model.blocks[-1]
    attn = blk.attn
    b, n, c = t.shape
    qkv = attn.qkv(blk.norm1(t)).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    a = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    m = head_mask.to(t.dtype)
    if strategy is HeadStrategy.IDENTITY:
        eye = torch.eye(n, dtype=a.dtype).expand_as(a)
        a = torch.where(m[None, :, None, None] > 0, a, eye)
    heads = a @ v  # (B, h, N, d_h)
    if not strategy.after_projection and strategy is not HeadStrategy.IDENTITY:
        heads = heads * m[None, :, None, None]
    out = attn.proj(heads.transpose(1, 2).reshape(b, n, c))
    if strategy.after_projection:
        out = (out.reshape(b, n, attn.num_heads, attn.head_dim) * m[None, None, :, None]).reshape(b, n, c)
    t = t + blk.ls1(out)
    t = t + blk.ls2(blk.mlp(blk.norm2(t)))
    return model.forward_head(model.norm(t))
