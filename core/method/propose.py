"""Where is the query's object in a result photo: a proposed region from the kept heads.

A search keeps the heads whose [CLS] attention falls on the marked object of the query photo. Looking at a
result photo, the same heads' [CLS]->patch attention shows where the matched object is. Thresholding that
map alone gives poor boxes (the kept heads' map is sharp: a few patches of the object, not the object). So
the map only *seeds* the region and the patches' own last-block keys of the same heads *grow* it, in the
spirit of unsupervised object discovery on ViT patch features:

* LOST (Simeoni et al. 2021) seeds on one patch and expands over patches whose keys correlate positively
  with the seed's;
* TokenCut (Wang et al. 2022) bipartitions the patch-affinity graph (thresholded key cosine) by the
  second-smallest eigenvector of the normalised Laplacian.

Methods (``method`` of :func:`propose`):

``match`` (default)
    Candidates: ``grow`` regions seeded at the heads' highest attention, then at the highest attention outside
    the regions found so far (``candidates`` per ``tau``). Each candidate's feature is the model's own [CLS]
    feature with the last block attending only to the candidate's patches and the query's head mask
    (:func:`region_features`); the candidate most similar to the marked object's feature in the query photo
    (:func:`query_descriptor`) wins. The heads find objects; the feature says which one is the query's.
``grow``
    LOST-like. Seed: the patch of highest attention of the heads. Seed set: the seed and its ``seeds - 1``
    nearest patches in feature space among the patches of high attention. The region: patches whose mean
    cosine to the seed set is positive and at least ``tau`` times the seed set's own, the 4-connected part
    holding the seed. Features: the heads' keys and values of the last block, each head's unit vectors
    concatenated.
``cut``
    TokenCut on the same features; the side of the cut holding the seed, its connected part with the seed.
``threshold``
    The cells of the heads' mean map above ``frac`` of its peak, the connected part holding the peak.

Coordinates: ``(gh, gw)`` grids in row-major order over the model's squashed square input; a patch cell
``(r, c)`` covers ``[c * W / gw, (c + 1) * W / gw) x [r * H / gh, (r + 1) * H / gh)`` of the ``W x H`` photo
(squash resize, no crop). Boxes are XYXY in pixels of the photo (EXIF orientation applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("match", "grow", "cut", "threshold")
"""Proposal methods, best measured first (see the README's annotation section)."""


@dataclass(frozen=True, eq=False)
class PatchState:
    """What a proposal needs of one photo: the last block's maps and keys.

    Attributes:
        maps: ``(h, gh, gw)`` float32, each head's [CLS]->patch attention (prefix tokens excluded).
        keys: ``(h, gh * gw, d_h)`` float32, each head's patch keys (row-major patches).
        values: ``(h, gh * gw, d_h)`` float32, each head's patch values.
        tokens: ``(N, D)`` float32, the tokens entering the last block (prefix tokens first), for
            :func:`region_features`.
        image_size: ``(W, H)`` of the photo in pixels.
    """

    maps: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    tokens: np.ndarray
    image_size: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        """``(gh, gw)``."""
        return int(self.maps.shape[1]), int(self.maps.shape[2])


@dataclass(frozen=True, eq=False)
class Proposal:
    """A proposed region.

    Attributes:
        box: ``(x0, y0, x1, y1)`` float pixels of the photo.
        cells: ``(gh, gw)`` bool, the patches of the region.
        score: mean attention of the heads inside the region over the whole map's mean (>= 1 when the heads
            look there more than elsewhere), a ranking of proposals, not a probability.
        image_size: ``(W, H)`` of the photo.
    """

    box: tuple[float, float, float, float]
    cells: np.ndarray
    score: float
    image_size: tuple[int, int]

    def mask(self) -> np.ndarray:
        """The region as an ``(H, W)`` bool mask of the photo (each patch cell filled)."""
        gh, gw = self.cells.shape
        w, h = self.image_size
        rows = np.minimum((np.arange(h) + 0.5) * gh / h, gh - 1).astype(int)
        cols = np.minimum((np.arange(w) + 0.5) * gw / w, gw - 1).astype(int)
        return self.cells[rows][:, cols]


def patch_states(engine, images: Sequence) -> list[PatchState]:  # engine: core.method.engine.PHSEngine
    """Encode photos and return their :class:`PatchState` (the engine's current image is left alone).

    Args:
        engine: a :class:`core.method.engine.PHSEngine`.
        images: PIL images, ``(H, W, 3)`` uint8 arrays, paths or bytes (decoded as the indexer does).
    """
    import torch

    from core.method import vit
    from core.method.transforms import read_for_model

    if not images:
        return []
    pils, sizes = zip(*(read_for_model(im, engine.input_size) for im in images))
    x = torch.stack([engine.preprocess(p) for p in pils]).to(engine.device)
    model = engine.model
    prefix = model.num_prefix_tokens
    with torch.no_grad():
        with engine._autocast():  # the blocks in the engine's precision, as its photos are encoded
            tokens = vit.run_blocks(model, vit.embed(model, x), 0, len(model.blocks) - 1).float()
        state = vit.last_block_cls(model, tokens, itae_theta=engine.itae_theta)
        blk = model.blocks[-1]
        b, n, _ = tokens.shape
        h, dh = blk.attn.num_heads, blk.attn.head_dim
        qkv = blk.attn.qkv(blk.norm1(tokens)).reshape(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)
        k = blk.attn.k_norm(qkv[1])[:, :, prefix:]  # (B, h, gh*gw, d_h)
        v = qkv[2][:, :, prefix:]
    gh, gw = engine.grid
    maps = state.attn[:, :, prefix:].reshape(b, h, gh, gw).cpu().numpy()
    keys, values = k.float().cpu().numpy(), v.float().cpu().numpy()
    t = tokens.cpu().numpy()
    return [PatchState(maps[i], keys[i], values[i], t[i], tuple(sizes[i])) for i in range(b)]


def region_features(model, tokens: np.ndarray, regions: Sequence[np.ndarray], head_mask: np.ndarray | None = None,
                    strategy: str = "before+scale") -> np.ndarray:
    """The feature of each region as the model sees it: the last block's [CLS] attends only to its patches.

    This is the *Attention Mask* baseline's feature (Table A6) with the query's head mask, computed for many
    regions of one photo at once.

    Args:
        model: the engine's timm ViT (``engine.model``).
        tokens: ``(N, D)`` tokens entering the last block (:attr:`PatchState.tokens`).
        regions: ``(gh, gw)`` bool or float weights each (patches with weight > 0 are kept).
        head_mask: ``(h,)`` head mask ``m``, or ``None`` for every head.

    Returns:
        ``(len(regions), feature_dim)`` float32, L2-normalised.
    """
    import torch

    from core.method import vit

    prefix = model.num_prefix_tokens
    dev = next(model.parameters()).device
    keep = np.stack([np.concatenate([np.zeros(prefix, bool), np.asarray(r).reshape(-1) > 0]) for r in regions])
    t = torch.as_tensor(tokens, device=dev)[None].expand(len(regions), -1, -1)
    m = None if head_mask is None else torch.as_tensor(np.asarray(head_mask, np.float32), device=dev)
    with torch.no_grad():
        st = vit.last_block_cls(model, t, keep=torch.as_tensor(keep, device=dev))
        f = vit.cls_feature(model, st.x_cls, st.o_cls, m, strategy).float()
        f = torch.nn.functional.normalize(f, dim=-1)
    return f.cpu().numpy()


def current_patch_state(engine) -> PatchState:
    """The :class:`PatchState` of the engine's current image (a query photo as its own result)."""
    return patch_states(engine, [engine.current_image()])[0]


# ------------------------------------------------------------------------------------------------------
# region growing


def _component(cells: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected part of ``cells`` ``(gh, gw)`` bool holding ``seed`` (the seed is always in it)."""
    out = np.zeros_like(cells, dtype=bool)
    stack = [seed]
    gh, gw = cells.shape
    out[seed] = True
    while stack:
        r, c = stack.pop()
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < gh and 0 <= cc < gw and cells[rr, cc] and not out[rr, cc]:
                out[rr, cc] = True
                stack.append((rr, cc))
    return out


def _key_features(keys: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """``(gh*gw, len(heads) * d_h)``: the heads' keys, each head L2-normalised, concatenated, normalised."""
    k = keys[heads]
    k = k / (np.linalg.norm(k, axis=-1, keepdims=True) + 1e-8)
    f = np.concatenate(list(k), axis=-1)
    return f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-8)


def _space(state: PatchState, space: str) -> np.ndarray:
    if space == "keys":
        return state.keys
    if space == "values":
        return state.values
    if space == "kv":
        return np.concatenate([state.keys, state.values], axis=-1)
    raise ValueError(f"Unknown feature space '{space}'; choose keys, values or kv.")


def query_prototype(state: PatchState, weights: np.ndarray, space: str = "keys") -> np.ndarray:
    """Each head's key of the marked object in the query photo: the ROI-weighted mean of its unit patch keys.

    Args:
        state: the query photo's :class:`PatchState`.
        weights: ``(gh, gw)`` non-negative ROI weights (e.g. ``Roi.positive``).

    Returns:
        ``(h, d_h)`` float32, each row unit length.
    """
    k = _space(state, space)
    k = k / (np.linalg.norm(k, axis=-1, keepdims=True) + 1e-8)
    w = np.asarray(weights, np.float64).ravel()
    p = np.einsum("n,hnd->hd", w / max(w.sum(), 1e-12), k)
    return (p / (np.linalg.norm(p, axis=-1, keepdims=True) + 1e-8)).astype(np.float32)


def _seed(m: np.ndarray, feats: np.ndarray, proto: np.ndarray | None, seed_by: str) -> int:
    flat = m.ravel()
    if proto is None or seed_by == "map":
        return int(np.argmax(flat))
    sim = feats @ proto
    if seed_by == "proto":
        return int(np.argmax(sim))
    return int(np.argmax(np.clip(sim, 0, None) * flat))


def _grow(m: np.ndarray, feats: np.ndarray, seeds: int, tau: float, seed: int) -> np.ndarray:
    gh, gw = m.shape
    flat = m.ravel()
    sim = feats @ feats[seed]
    hot = np.flatnonzero(flat >= np.quantile(flat, 0.75))  # candidates for more seeds: where the heads look
    extra = hot[np.argsort(-sim[hot])][:seeds]
    s = (feats @ feats[np.union1d(extra, [seed])].T).mean(axis=1)  # (N,) mean cosine to the seed set
    ref = s[np.union1d(extra, [seed])].mean()
    cells = (s > 0) & (s >= tau * ref)
    return _component(cells.reshape(gh, gw), divmod(seed, gw))


def _cut(m: np.ndarray, feats: np.ndarray, tau: float, seed: int) -> np.ndarray:
    gh, gw = m.shape
    aff = feats @ feats.T
    w = np.where(aff > tau, 1.0, 1e-5)
    d = w.sum(axis=1)
    dm = 1.0 / np.sqrt(d)
    lap = np.eye(len(d)) - dm[:, None] * w * dm[None, :]  # normalised Laplacian
    _, vecs = np.linalg.eigh(lap)
    v = vecs[:, 1] * dm  # generalised eigenvector of (D - W) x = l D x
    side = v > v.mean()
    if not side[seed]:
        side = ~side
    return _component(side.reshape(gh, gw), divmod(seed, gw))


def _threshold(m: np.ndarray, frac: float) -> np.ndarray:
    gh, gw = m.shape
    seed = int(np.argmax(m.ravel()))
    return _component(m >= frac * m.max(), divmod(seed, gw))


def _candidates(m: np.ndarray, feats: np.ndarray, seeds: int, tau: float, count: int) -> list[np.ndarray]:
    """Up to ``count`` grown regions, each seeded at the highest attention outside the regions before."""
    used = np.zeros(m.shape, bool)
    out: list[np.ndarray] = []
    for _ in range(count):
        if used.all():
            break
        seed = int(np.argmax(np.where(used, -np.inf, m).ravel()))
        cells = _grow(m, feats, seeds, tau, seed)
        out.append(cells)
        used |= cells
    return out


def cells_box(cells: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The XYXY pixel box around the ``(gh, gw)`` bool cells on a ``(W, H)`` photo."""
    gh, gw = cells.shape
    w, h = image_size
    rows, cols = np.nonzero(cells)
    return (float(cols.min() * w / gw), float(rows.min() * h / gh),
            float((cols.max() + 1) * w / gw), float((rows.max() + 1) * h / gh))  # fmt: skip


def query_descriptor(model, state: PatchState, weights: np.ndarray, head_mask: np.ndarray | None = None) -> np.ndarray:
    """The marked object as the model sees it: the query photo's [CLS] attending only to the prompt's patches.

    Args:
        model: the engine's timm ViT.
        state: the query photo's :class:`PatchState`.
        weights: ``(gh, gw)`` ROI weights of the prompt (``Roi.positive``).
        head_mask: the query's head mask ``m`` (``None``: every head).

    Returns:
        ``(feature_dim,)`` float32, unit length.
    """
    return region_features(model, state.tokens, [weights], head_mask)[0]


def propose(
    state: PatchState,
    heads: np.ndarray | Sequence[int] | None = None,
    method: str = "match",
    *,
    model=None,
    descriptor: np.ndarray | None = None,
    head_mask: np.ndarray | None = None,
    taus: Sequence[float] = (0.5, 0.7),
    candidates: int = 2,
    seeds: int = 4,
    tau: float = 0.5,
    space: str = "kv",
    frac: float = 0.35,
    prototype: np.ndarray | None = None,
    seed_by: str = "map",
) -> Proposal:
    """Propose the region the heads look at in one photo.

    Args:
        state: the photo's maps, keys, values and tokens (:func:`patch_states`).
        heads: ``(h,)`` bool or head indices: the query's kept heads; ``None`` = every head.
        method: one of :data:`METHODS`.
        model, descriptor, head_mask: ``match``: the engine's model, the query's :func:`query_descriptor` and
            the head mask it was computed with (``None`` for every head).
        taus, candidates: ``match``: ``candidates`` regions grown at each ``tau`` of ``taus``.
        seeds: ``grow``, ``match``: size of the seed set.
        tau: ``grow``: share of the seed set's own cosine a patch needs; ``cut``: cosine threshold of the
            affinity graph.
        space: patch features of the heads: ``keys``, ``values`` or ``kv`` (both, concatenated per head).
        frac: ``threshold``: share of the peak.
        prototype: ``(h, d_h)`` the query object's keys (:func:`query_prototype`), for ``seed_by``.
        seed_by: ``grow``, ``cut``: ``map`` (the heads' attention peak), ``proto`` (the patch most like the
            prototype) or ``both`` (attention times positive prototype similarity).

    Returns:
        The :class:`Proposal`; its score is the cosine of the region's feature with the descriptor for
        ``match``, else the region's mean attention over the map's mean.
    """
    h = state.maps.shape[0]
    idx = np.arange(h) if heads is None else np.asarray(heads)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    if idx.size == 0:
        raise ValueError("A proposal needs at least one head.")
    m = state.maps[idx].mean(axis=0)
    feats = _key_features(_space(state, space), idx)
    score = None
    if method == "match":
        if model is None or descriptor is None:
            raise ValueError("The match method needs the model and the query's descriptor.")
        cands = [c for t in taus for c in _candidates(m, feats, seeds, t, candidates)]
        sims = region_features(model, state.tokens, cands, head_mask) @ np.asarray(descriptor, np.float32)
        best = int(np.argmax(sims))
        cells, score = cands[best], float(sims[best])
    elif method in ("grow", "cut"):
        proto = None if prototype is None else _key_features(prototype[:, None, :], idx)[0]
        seed = _seed(m, feats, proto, seed_by)
        cells = _grow(m, feats, seeds, tau, seed) if method == "grow" else _cut(m, feats, tau, seed)
    elif method == "threshold":
        cells = _threshold(m, frac)
    else:
        raise ValueError(f"Unknown proposal method '{method}'; choose from {', '.join(METHODS)}.")
    if score is None:
        score = float(m[cells].mean() / (m.mean() + 1e-12))
    return Proposal(cells_box(cells, state.image_size), cells, score, state.image_size)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two XYXY boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def prompt_descriptor(engine, prompt, head_mask: np.ndarray | None = None) -> np.ndarray:
    """The marked object's descriptor (:func:`query_descriptor`) on the engine's current image: compute it once
    for a query and pass it to :func:`propose_on` for every batch of result photos."""
    weights = engine.roi(prompt).positive
    return query_descriptor(engine.model, current_patch_state(engine), weights, head_mask)


def propose_on(engine, descriptor: np.ndarray, photos: Sequence, heads: np.ndarray | None = None,
               head_mask: np.ndarray | None = None) -> list[Proposal]:
    """One :class:`Proposal` per photo (encoded together, as one batch) for a query's ``descriptor``
    (``match``, with the query's kept ``heads`` and ``head_mask``); boxes in each photo's pixels."""
    return [propose(st, heads, "match", model=engine.model, descriptor=descriptor, head_mask=head_mask)
            for st in patch_states(engine, list(photos))]  # fmt: skip


def propose_results(engine, prompt, photos: Sequence, heads: np.ndarray | None = None,
                    head_mask: np.ndarray | None = None, batch_size: int = 16) -> list[Proposal]:
    """Proposals on result photos for the prompt on the engine's current image (the query photo).

    What ``phs search --propose`` runs: the query's descriptor once, then the result photos encoded in batches
    and :func:`propose` (``match``) with the query's kept heads.

    Args:
        engine: a :class:`core.method.engine.PHSEngine` whose current image is the query photo.
        prompt: the query's :class:`core.method.prompts.Prompt`.
        photos: result photos (paths, bytes, PIL images or ``(H, W, 3)`` uint8 arrays).
        heads: ``(h,)`` bool kept heads (``None``: every head).
        head_mask: the query's head mask ``m`` (``None``: every head).

    Returns:
        One :class:`Proposal` per photo, boxes in that photo's pixels.
    """
    descriptor = prompt_descriptor(engine, prompt, head_mask)
    out: list[Proposal] = []
    for s in range(0, len(photos), batch_size):
        out.extend(propose_on(engine, descriptor, photos[s : s + batch_size], heads, head_mask))
    return out
