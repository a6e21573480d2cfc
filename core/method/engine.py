"""The PHS engine: encode a photo once, then answer every prompt edit from a small cache.

Shaped like segment-anything's ``SamPredictor``: :meth:`PHSEngine.set_image` runs the ViT once and caches
the last blocks' state; :meth:`PHSEngine.select_heads` and :meth:`PHSEngine.feature` then cost
microseconds, numpy in and out. For indexing, :meth:`PHSEngine.encode_batch` returns per image the plain
feature plus the Query-DB cache (``X_cls``, ``O[CLS]``), and :meth:`PHSEngine.features_from_cache`
recomputes database features for a query's head mask without touching the backbone.

Input geometry: the whole photo (EXIF orientation applied) is squash-resized to the model's square input,
no centre crop, so every prompt location maps to a token (see :mod:`core.method.prompts`).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import resolve_model_data_config

from core.defaults import FA_BLOCKS
from core.errors import NotReadyError, PromptError
from core.method import precision as _precision
from core.method import vit
from core.method.engine_facts import EncodedBatch, EngineCounters, FAParams, ModelFacts  # noqa: F401 (re-exported)
from core.method.markers import Marker, Placement, mark_input
from core.method.phs import HeadSelection, HeadStrategy, RoiReduce, head_mask, roi_attention, select_heads
from core.method.prompts import Prompt, Roi, prompt_to_roi
from core.method.querydb import QueryDB
from core.method.transforms import ImageLike, SquashResize, read_for_model, to_pil
from core.models.backbones import Backbone, load_backbone, resolve_device


class _EngineSetting(enum.Enum):
    ITAE = "the engine's ITAE threshold"


ENGINE_ITAE = _EngineSetting.ITAE
"""Default of every per-query ``itae_theta`` argument: the engine's own threshold (:attr:`PHSEngine.itae_theta`,
the one its index features are computed with). A query passes its own threshold, or ``None`` for off, without
changing the engine, so one engine serves a person's queries and the index's reads."""

ItaeArg = float | None | _EngineSetting


@dataclass
class _ImageState:
    image_size: tuple[int, int]  # (W, H) of the original image, upright
    tokens_fa: torch.Tensor  # (1, N, D) entering block L - fa_blocks
    tokens_last: torch.Tensor  # (1, N, D) entering the last block
    base: dict[float | None, vit.ClsState] = field(default_factory=dict)  # by ITAE threshold
    fa_cache: dict[tuple, vit.ClsState] = field(default_factory=dict)  # by (token box, FA, ITAE threshold)


class PHSEngine(ModelFacts):
    """Prompt-guided attention Head Selection on a timm ViT, "encode once, prompt many".

    Example::

        engine = load_engine("dinov2-b14")
        engine.set_image("photo.jpg")
        sel = engine.select_heads(Prompt.from_box(40, 60, 200, 220), h_on=5)
        f = engine.feature(sel.head_mask)       # (feature_dim,)

    Args:
        backbone: a loaded :class:`core.models.backbones.Backbone`.
        device: ``auto`` (CUDA, MPS, CPU), or a torch device string.
        precision: what photos are encoded in: ``auto`` (see :func:`core.method.precision.resolve_precision`: bf16 on CUDA when
            supported, fp16 on other GPUs, bf16 on CPUs with native bf16, else fp32), ``fp32``, ``bf16`` or
            ``fp16``. The backbone runs under autocast; results are float32. Prompt edits (one token) always
            run in fp32, the fastest for them; the Query-DB re-rank runs in :attr:`rerank_precision` and
            refines its best candidates in fp32. Part of the index fingerprint.
        fa_blocks: how many last blocks the query cache covers for FA (FALIP uses 4).
        itae_theta: ITAE threshold on last-block query norms, ``None`` for off: what :meth:`encode_batch`
            computes index features with, so part of the index fingerprint. Every per-image method takes its
            own ``itae_theta`` for one query (default :data:`ENGINE_ITAE`, this one).
        cache_size: how many encoded images to keep (keyed by content hash).
    """

    def __init__(
        self,
        backbone: Backbone,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        fa_blocks: int = FA_BLOCKS,
        itae_theta: float | None = None,
        cache_size: int = 8,
    ) -> None:
        self.backbone = backbone
        self.layout = vit.check_supported(backbone.model)
        self.device = resolve_device(device)
        self.model = backbone.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.precision = self._resolve_precision(precision)
        self.fa_blocks = int(min(max(fa_blocks, 1), self.layout.depth))
        self.itae_theta = itae_theta
        cfg = resolve_model_data_config(self.model)
        interpolation = "bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear"
        self.transform = SquashResize(
            self.layout.input_size,
            tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
            tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
            interpolation,
        )
        self.counters = EngineCounters()
        self._cache: OrderedDict[str, _ImageState] = OrderedDict()
        self._cache_size = max(int(cache_size), 1)
        self._state: _ImageState | None = None
        self._source: ImageLike | None = None
        self._model_image: Image.Image | None = None  # the photo as decoded for the model (JPEG draft)
        self._image: Image.Image | None = None
        self._querydb: QueryDB | None = None

    # ----------------------------------------------------------------------------------------------------
    # the current image

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` has been called."""
        return self._state is not None

    @property
    def image_size(self) -> tuple[int, int]:
        """``(W, H)`` of the current image (after EXIF orientation)."""
        return self._require().image_size

    # ----------------------------------------------------------------------------------------------------
    # preprocessing

    def _resolve_precision(self, precision: str) -> str:
        return _precision.resolve_precision(precision, self.device)

    def set_precision(self, precision: str) -> None:
        """Encode in another precision from now on (an index built in another precision is extended in its own)."""
        self.precision = self._resolve_precision(precision)
        self._cache.clear()
        self._state = None

    @property
    def rerank_precision(self) -> str:
        """Precision of the Query-DB re-rank's first pass: bf16 where it is native (CUDA, CPUs with AVX-512
        BF16 or AMX), else fp32. The best candidates are then recomputed in fp32 (see :data:`REFINE_FACTOR`)."""
        if self.device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if self.device.type == "cpu" and _precision.cpu_has_native_bf16():
            return "bf16"
        return "fp32"

    def _autocast(self, precision: str | None = None) -> contextlib.AbstractContextManager:
        precision = self.precision if precision is None else precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    to_pil = staticmethod(to_pil)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Squash-resize to ``S x S`` (no crop) and normalise: RGB PIL image -> ``(3, S, S)`` float32 on the CPU."""
        return self.transform(image)

    # ----------------------------------------------------------------------------------------------------
    # encoding

    @torch.no_grad()
    def _encode_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run blocks ``0 .. L-2``; return tokens entering block ``L - fa_blocks`` and the last block."""
        depth = self.layout.depth
        fa_start = depth - self.fa_blocks
        with self._autocast():
            t = vit.embed(self.model, x.to(self.device))
            t_fa = vit.run_blocks(self.model, t, 0, fa_start)
            t_last = vit.run_blocks(self.model, t_fa, fa_start, depth - 1)
        self.counters.forwards += x.shape[0]
        return t_fa.float(), t_last.float()

    @torch.no_grad()
    def _last_block(self, tokens: torch.Tensor, theta: ItaeArg = ENGINE_ITAE, **kwargs: Any) -> vit.ClsState:
        with self._autocast():
            st = vit.last_block_cls(self.model, tokens, itae_theta=self._theta(theta), **kwargs)
        return vit.ClsState(
            st.x_cls.float(), st.o_cls.float(), st.attn.float(), st.q_norms.float(), st.artifacts
        )

    def set_image(self, image: ImageLike) -> None:
        """Encode one photo and cache what every later prompt needs.

        Runs the backbone once (unless the same image is in the cache), keeping the tokens entering the
        FA blocks and the last block, and the last block's [CLS] state. A path or file bytes is decoded
        exactly as the indexer decodes a library photo (:func:`core.method.transforms.read_for_model`), so
        a photo used as its own query gives its stored feature.

        Args:
            image: PIL image, ``(H, W, 3)`` uint8 RGB array, path, or encoded bytes.
        """
        pil, size = read_for_model(image, self.input_size)
        self._set_input(self.preprocess(pil), size)
        self._source = image
        self._model_image = pil
        self._image = pil if pil.size == size else None  # a draft-decoded photo is re-read at full size on demand

    def _set_input(self, x: torch.Tensor, size: tuple[int, int]) -> None:
        """Make the ``(3, S, S)`` input of a photo of ``size`` = ``(W, H)`` the current image, from the cache if seen."""
        self._state = self._encoded(x, size)

    def _encoded(self, x: torch.Tensor, size: tuple[int, int]) -> _ImageState:
        """The cached state of the ``(3, S, S)`` input of a photo of ``size`` = ``(W, H)``, encoded if not seen."""
        key = hashlib.sha1(x.numpy().tobytes() + repr(size).encode()).hexdigest()
        state = self._cache.get(key)
        if state is not None:
            self._cache.move_to_end(key)
            self.counters.cache_hits += 1
        else:
            t_fa, t_last = self._encode_tokens(x[None])
            state = _ImageState(image_size=size, tokens_fa=t_fa, tokens_last=t_last)
            self._cache[key] = state
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return state

    def set_marked_image(self, prompt: Prompt, marker: Marker) -> Placement:
        """Make the current photo with a marker drawn at ``prompt`` the encoded state (to inspect it alone).

        A query does not need this: :meth:`feature`, :meth:`select_heads` and :meth:`attention_maps` take the
        marker as an argument and leave the current photo as it is. :meth:`set_image` with the photo returns
        to it (from the cache).

        Returns:
            The :class:`core.method.markers.Placement` in input pixels.
        """
        state, placement = self._marked(prompt, marker)
        self._state = state
        return placement

    def placement(self, prompt: Prompt, marker: Marker) -> Placement:
        """Where ``marker`` is drawn for ``prompt`` on the current photo, in input pixels (nothing is encoded)."""
        return marker.placement(prompt, self.image_size, self.input_size)

    def _marked(self, prompt: Prompt, marker: Marker) -> tuple[_ImageState, Placement]:
        """The current photo with ``marker`` drawn at ``prompt`` (:func:`core.method.markers.mark_input`),
        encoded once and cached like any photo (keyed by its content, so the same placement is free the second
        time); the photo's size stays that of the unmarked photo."""
        st = self._require()
        assert self._model_image is not None
        x, placement = mark_input(self.preprocess(self._model_image), prompt, st.image_size, marker, self.mean,
                                  self.std)  # fmt: skip
        return self._encoded(x, st.image_size), placement

    def _theta(self, itae_theta: ItaeArg) -> float | None:
        """A per-query ITAE argument as a threshold (:data:`ENGINE_ITAE`: the engine's own)."""
        if itae_theta is ENGINE_ITAE:
            return self.itae_theta
        if itae_theta is not None and not np.isfinite(itae_theta):
            raise PromptError("The ITAE threshold must be a finite number.")
        return None if itae_theta is None else float(itae_theta)

    def _require(self) -> _ImageState:
        if self._state is None:
            raise NotReadyError("Open a photo first: no image is set.")
        return self._state

    def _base(self, theta: ItaeArg = ENGINE_ITAE, state: _ImageState | None = None) -> vit.ClsState:
        st = state or self._require()
        theta = self._theta(theta)
        base = st.base.get(theta)
        if base is None:
            base = st.base[theta] = self._last_block(st.tokens_last, theta)
        return base

    def _view(self, prompt: Prompt | None, marker: Marker | None) -> _ImageState:
        """The current photo's state, or with ``marker`` drawn at ``prompt``."""
        if marker is None:
            return self._require()
        if prompt is None:
            raise PromptError("A marker is drawn at a prompt: give the prompt with the marker.")
        return self._marked(prompt, marker)[0]

    def set_itae(self, theta: float | None) -> None:
        """Set the engine's ITAE threshold (``None``: off): what :meth:`encode_batch` encodes index photos with
        and what a per-image call uses when it is given no ``itae_theta`` of its own."""
        if theta is not None and not np.isfinite(theta):
            raise PromptError("The ITAE threshold must be a finite number.")
        self.itae_theta = None if theta is None else float(theta)

    @torch.no_grad()
    def encode_batch(self, images: Sequence[ImageLike] | torch.Tensor, *,
                     itae_theta: ItaeArg = ENGINE_ITAE) -> EncodedBatch:
        """Encode a batch for the index: plain features plus the Query-DB cache.

        Args:
            images: a sequence of images, or an already preprocessed ``(B, 3, S, S)`` tensor.
            itae_theta: ITAE threshold for these images (default: the engine's, the index's).

        Returns:
            :class:`EncodedBatch` with ``(B, feature_dim)``, ``(B, D)`` and ``(B, h, d_h)`` arrays.
        """
        if isinstance(images, torch.Tensor):
            x = images
        else:
            x = torch.stack([self.preprocess(read_for_model(im, self.input_size)[0]) for im in images])
        depth = self.layout.depth
        with self._autocast():
            t = vit.run_blocks(self.model, vit.embed(self.model, x.to(self.device)), 0, depth - 1)
            st = vit.last_block_cls(self.model, t, itae_theta=self._theta(itae_theta))
        # The feature comes from the [CLS] state in fp32, exactly as a query's feature() and the fp32 pass of
        # the Query-DB re-rank compute it, so a stored photo and the same photo as a query agree.
        x_cls, o_cls = st.x_cls.float(), st.o_cls.float()
        feats = vit.cls_feature(self.model, x_cls, o_cls)
        self.counters.forwards += x.shape[0]
        return EncodedBatch(
            features=feats.float().cpu().numpy(),
            x_cls=x_cls.cpu().numpy(),
            o_cls=o_cls.cpu().numpy(),
        )

    @torch.no_grad()
    def features_from_cache(
        self,
        x_cls: np.ndarray,
        o_cls: np.ndarray,
        head_mask: np.ndarray | None = None,
        strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
        chunk: int = 4096,
        precision: str = "fp32",
    ) -> np.ndarray:
        """Query-DB: database features recomputed with the query's head mask, no re-encoding
        (:class:`core.method.querydb.QueryDB`).

        Args:
            x_cls: ``(B, D)`` cached residual inputs (float16 or float32).
            o_cls: ``(B, h, d_h)`` cached per-head [CLS] outputs.
            head_mask: ``(h,)`` the query's mask ``m``; ``None`` gives the plain features.
            strategy: the strategy the mask was made for.
            precision: ``fp32`` (exact; the default) or :attr:`rerank_precision` for a fast first pass.

        Returns:
            ``(B, feature_dim)`` float32, not normalised.
        """
        if self._querydb is None:
            self._querydb = QueryDB(self.model, self.device, self.feature_dim, self._autocast)
        precision = _precision.resolve_precision(precision, self.device)
        return self._querydb.features(x_cls, o_cls, head_mask, strategy, precision, chunk)

    # ----------------------------------------------------------------------------------------------------
    # prompts and heads

    def roi(self, prompt: Prompt, mask_threshold: float | None = None) -> Roi:
        """The prompt's ROI on the patch grid of the current image (see :func:`core.method.prompts.prompt_to_roi`)."""
        return prompt_to_roi(prompt, self.image_size, self.grid, mask_threshold)

    def _attn_maps(self, state: vit.ClsState) -> np.ndarray:
        gh, gw = self.grid
        a = state.attn[0, :, self.layout.num_prefix_tokens :]
        return a.reshape(self.num_heads, gh, gw).cpu().numpy()

    def _state_for(self, prompt: Prompt | None, fa: FAParams | None, marker: Marker | None,
                   itae_theta: ItaeArg) -> vit.ClsState:
        """The last block's [CLS] state a query reads: under FA, on the marked photo, or plain."""
        theta = self._theta(itae_theta)
        if fa is not None and prompt is not None:
            if marker is not None:
                raise PromptError("FA does not combine with a marker; choose one of them.")
            return self._fa_state(prompt, fa, theta)
        return self._base(theta, self._view(prompt, marker))

    def attention_maps(self, prompt: Prompt | None = None, fa: FAParams | None = None, *,
                       marker: Marker | None = None, itae_theta: ItaeArg = ENGINE_ITAE) -> np.ndarray:
        """Each head's [CLS]->patch attention in the last block (prefix tokens excluded).

        Args:
            prompt, fa: with both given, the maps under FA for that prompt.
            marker: the maps of the photo with this marker drawn at ``prompt``.
            itae_theta: ITAE threshold of this query (default: the engine's).

        Returns:
            ``(h, gh, gw)`` float32; each map sums to at most 1 (the rest went to prefix tokens).
        """
        return self._attn_maps(self._state_for(prompt, fa, marker, itae_theta))

    def query_norms(self) -> np.ndarray:
        """L2 norms of the last block's patch query vectors for the current image, ``(gh * gw,)`` (ITAE histogram)."""
        return self._base(self.itae_theta).q_norms[0, self.layout.num_prefix_tokens :].cpu().numpy()

    def artifact_map(self, *, itae_theta: ItaeArg = ENGINE_ITAE) -> np.ndarray:
        """``(gh, gw)`` bool: patches ITAE treats as artifacts at the threshold (all False if off)."""
        return self._base(self._theta(itae_theta)).artifacts[0].reshape(self.grid).cpu().numpy()

    def head_scores(self, prompt: Prompt, roi: RoiReduce | str = RoiReduce.SUM, fa: FAParams | None = None,
                    mask_threshold: float | None = None, *, marker: Marker | None = None,
                    itae_theta: ItaeArg = ENGINE_ITAE) -> np.ndarray:
        """ROI attention ``s_i`` per head for a prompt, ``(h,)``."""
        maps = self.attention_maps(prompt, fa, marker=marker, itae_theta=itae_theta)
        return roi_attention(maps, self.roi(prompt, mask_threshold), roi)

    def select_heads(
        self,
        prompt: Prompt,
        h_on: int | None = None,
        roi: RoiReduce | str = RoiReduce.SUM,
        strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
        force_on: Iterable[int] = (),
        force_off: Iterable[int] = (),
        fa: FAParams | None = None,
        mask_threshold: float | None = None,
        *,
        marker: Marker | None = None,
        itae_theta: ItaeArg = ENGINE_ITAE,
    ) -> HeadSelection:
        """Score every head on the prompt's ROI and keep the best ``h_on`` (no backbone run).

        Args:
            prompt: points / box / mask in original-image pixels.
            h_on: heads to keep, clipped to ``[1, h]``; ``None`` = :attr:`recommended_h_on`.
            roi: ``"sum"`` or ``"max"``.
            strategy: head-mask strategy (default *Before+Scale*).
            force_on, force_off: head indices toggled by hand.
            fa: score on the FA-modified attention (FA+PHS).
            mask_threshold: see :func:`core.method.prompts.prompt_to_roi`.
            marker: score on the photo with this marker drawn at ``prompt`` (``lvp+phs``).
            itae_theta: ITAE threshold of this query (default: the engine's).
        """
        h_on = self.recommended_h_on if h_on is None else int(min(max(int(h_on), 1), self.num_heads))
        scores = self.head_scores(prompt, roi, fa, mask_threshold, marker=marker, itae_theta=itae_theta)
        selected = select_heads(scores, h_on, force_on, force_off)
        strategy = HeadStrategy(strategy)
        return HeadSelection(scores, selected, head_mask(selected, strategy), strategy, h_on)

    @torch.no_grad()
    def feature(
        self,
        head_mask: np.ndarray | None = None,
        strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
        prompt: Prompt | None = None,
        fa: FAParams | None = None,
        *,
        marker: Marker | None = None,
        itae_theta: ItaeArg = ENGINE_ITAE,
    ) -> np.ndarray:
        """The current image's feature for a head mask, from the cache.

        Args:
            head_mask: ``(h,)`` mask ``m``; ``None`` = the plain [CLS] feature (CBIR).
            strategy: the strategy the mask was made for.
            prompt, fa: with both given, start from the FA-modified state (FA, FA+PHS).
            marker: the feature of the photo with this marker drawn at ``prompt`` (``lvp``, ``red-circle``).
            itae_theta: ITAE threshold of this query (default: the engine's).

        Returns:
            ``(feature_dim,)`` float32, not normalised.
        """
        st = self._state_for(prompt, fa, marker, itae_theta)
        m = None if head_mask is None else torch.as_tensor(np.asarray(head_mask, dtype=np.float32), device=self.device)
        # One token: fp32 is the fastest here (bf16 autocast costs more in casts than it saves).
        f = vit.cls_feature(self.model, st.x_cls, st.o_cls, m, strategy)
        return f[0].float().cpu().numpy()

    # ----------------------------------------------------------------------------------------------------
    # baselines

    def _fa_state(self, prompt: Prompt, fa: FAParams, theta: float | None) -> vit.ClsState:
        st = self._require()
        box = self.roi(prompt).token_box()
        key = (box, fa, theta)
        cached = st.fa_cache.get(key)
        if cached is not None:
            return cached
        n = min(fa.blocks, self.layout.depth)  # "the last 4 blocks" of a 3-block model are all of them
        if n > self.fa_blocks:
            raise PromptError(
                f"FA can act on at most the last {self.fa_blocks} blocks with this engine; choose fewer layers."
            )
        bias = vit.fa_bias(box, self.grid, self.layout.num_prefix_tokens, fa.alpha, fa.sigma)[None].to(self.device)
        depth = self.layout.depth
        with torch.no_grad(), self._autocast():
            start = depth - self.fa_blocks
            t = vit.run_blocks(self.model, st.tokens_fa, start, depth - n)  # FA-free blocks in the cached span
            t = vit.run_blocks(self.model, t, depth - n, depth - 1, cls_bias=bias)
        self.counters.blocks += self.fa_blocks  # fa_blocks - 1 whole blocks + the last block's [CLS] row
        state = self._last_block(t.float(), theta, cls_bias=bias)
        if len(st.fa_cache) > 32:
            st.fa_cache.clear()
        st.fa_cache[key] = state
        return state

    @torch.no_grad()
    def attn_mask_feature(self, prompt: Prompt, *, itae_theta: ItaeArg = ENGINE_ITAE) -> np.ndarray:
        """Attention Mask baseline (Table A6): the last block's [CLS] attends only to the ROI patches.

        Args:
            prompt: the ROI's prompt.
            itae_theta: ITAE threshold of this query (default: the engine's).

        Returns:
            ``(feature_dim,)`` float32, not normalised.
        """
        st = self._require()
        roi = self.roi(prompt)
        keep = np.concatenate([np.zeros(self.layout.num_prefix_tokens, bool), roi.positive.reshape(-1) > 0])
        keep_t = torch.as_tensor(keep, device=self.device)[None]
        state = self._last_block(st.tokens_last, self._theta(itae_theta), keep=keep_t)
        f = vit.cls_feature(self.model, state.x_cls, state.o_cls)  # one token: fp32, as feature()
        return f[0].float().cpu().numpy()

    def current_image(self) -> Image.Image:
        """The current photo at full resolution, upright RGB (re-read from its source when it was draft-decoded)."""
        self._require()
        if self._image is None:
            self._image = to_pil(self._source)  # type: ignore[arg-type]
        return self._image

    @torch.no_grad()
    def encode_with_maps(self, image: Image.Image, *,
                         itae_theta: ItaeArg = ENGINE_ITAE) -> tuple[EncodedBatch, np.ndarray]:
        """Encode another image without changing the current one: its Query-DB state and attention maps.

        Used by the crop-then-select mode of Table A7.

        Args:
            image: RGB PIL image (any size; squash-resized).
            itae_theta: ITAE threshold of this query (default: the engine's).

        Returns:
            ``(encoded, maps)``: an :class:`EncodedBatch` of one image and its ``(h, gh, gw)`` last-block maps.
        """
        _, t_last = self._encode_tokens(self.preprocess(image)[None])
        state = self._last_block(t_last, self._theta(itae_theta))
        f = vit.cls_feature(self.model, state.x_cls, state.o_cls)  # fp32, as encode_batch
        enc = EncodedBatch(f.float().cpu().numpy(), state.x_cls.cpu().numpy(), state.o_cls.cpu().numpy())
        return enc, self._attn_maps(state)

    def close(self) -> None:
        """Drop cached images and the current state."""
        self._cache.clear()
        self._state = None
        self._source = None
        self._image = None


def load_engine(
    name: str = "dinov2-b14",
    weights: str | Path | None = None,
    device: str | torch.device | None = "auto",
    pretrained: bool = True,
    precision: str = "auto",
    itae_theta: float | None = None,
    model_kwargs: dict[str, Any] | None = None,
    download: bool = True,
) -> PHSEngine:
    """Load a backbone by name and wrap it in a :class:`PHSEngine`.

    Args:
        name: registry name (``dinov2-b14``, ``clip-b16``, ``demo`` ...) or timm name.
        weights: local weights file (``.safetensors``, ``.pth``), overriding the default source.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        pretrained: ``False`` = random weights, explicitly (tests, timing).
        precision: see :class:`PHSEngine`.
        itae_theta: ITAE threshold or ``None``.
        model_kwargs: architecture overrides for ``timm.create_model``.
        download: allow downloading weights into the Hugging Face cache.
    """
    backbone = load_backbone(name, weights=weights, pretrained=pretrained, download=download, model_kwargs=model_kwargs)
    return PHSEngine(backbone, device=device, precision=precision, itae_theta=itae_theta)
