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
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from timm.data import resolve_model_data_config

from core.errors import NotReadyError, PromptError
from core.method import precision as _precision
from core.method import vit
from core.method.phs import HeadSelection, HeadStrategy, RoiReduce, head_mask, roi_attention, select_heads
from core.method.prompts import Prompt, Roi, prompt_to_roi
from core.method.transforms import ImageLike, SquashResize, read_for_model, to_pil
from core.models.backbones import Backbone, ModelSpec, load_backbone, recommended_h_on, resolve_device

if TYPE_CHECKING:
    from core.method.lvp import Marker, Placement

@dataclass(frozen=True)
class FAParams:
    """FALIP foveal attention (seed 002): ``alpha``, ``sigma`` and the number of last blocks it acts on."""

    alpha: float = 0.2
    sigma: float = 100.0
    blocks: int = 4

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


@dataclass
class _ImageState:
    image_size: tuple[int, int]  # (W, H) of the original image, upright
    tokens_fa: torch.Tensor  # (1, N, D) entering block L - fa_blocks
    tokens_last: torch.Tensor  # (1, N, D) entering the last block
    base: vit.ClsState | None = None
    base_theta: float | None = None
    fa_cache: dict[tuple, vit.ClsState] = field(default_factory=dict)


class PHSEngine:
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
        itae_theta: ITAE threshold on last-block query norms, ``None`` for off. Part of the index
            fingerprint, since it changes database features.
        cache_size: how many encoded images to keep (keyed by content hash).
    """

    def __init__(
        self,
        backbone: Backbone,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        fa_blocks: int = 4,
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
        self._bf16: Any = None

    # ----------------------------------------------------------------------------------------------------
    # facts

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
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` has been called."""
        return self._state is not None

    @property
    def image_size(self) -> tuple[int, int]:
        """``(W, H)`` of the current image (after EXIF orientation)."""
        return self._require().image_size

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
    def _last_block(self, tokens: torch.Tensor, **kwargs: Any) -> vit.ClsState:
        with self._autocast():
            st = vit.last_block_cls(self.model, tokens, itae_theta=self.itae_theta, **kwargs)
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
        self._state = state

    def set_marked_image(self, prompt: Prompt, marker: Marker) -> Placement:
        """Make the current photo with a marker drawn at ``prompt`` the encoded state (``lvp``, ``red-circle``).

        The marker (a :class:`core.method.lvp.LearnedPrompt` or :class:`core.method.lvp.RedCircle`) is drawn
        on the model input (see :func:`core.method.lvp.marker_placement`), which is encoded once and cached
        like any photo (keyed by its content, so the same placement is free the second time). The photo and
        its size stay those of the unmarked photo, so :meth:`feature`, :meth:`select_heads` and
        :meth:`attention_maps` then answer for the marked photo; :meth:`set_image` with the photo returns to
        it (from the cache).

        Returns:
            The :class:`core.method.lvp.Placement` in input pixels.
        """
        from core.method.lvp import mark_input

        st = self._require()
        assert self._model_image is not None
        x, placement = mark_input(self.preprocess(self._model_image), prompt, st.image_size, marker, self.mean,
                                  self.std)  # fmt: skip
        self._set_input(x, st.image_size)
        return placement

    @contextlib.contextmanager
    def marked(self, prompt: Prompt, marker: Marker) -> Iterator[Placement]:
        """Within the block the current photo carries ``marker`` at ``prompt`` (:meth:`set_marked_image`);
        afterwards the unmarked photo is current again, without decoding or encoding anything.

        Yields:
            The :class:`core.method.lvp.Placement` in input pixels.
        """
        plain = self._require()
        try:
            yield self.set_marked_image(prompt, marker)
        finally:
            self._state = plain

    def _require(self) -> _ImageState:
        if self._state is None:
            raise NotReadyError("Open a photo first: no image is set.")
        return self._state

    def _base(self) -> vit.ClsState:
        st = self._require()
        if st.base is None or st.base_theta != self.itae_theta:
            st.base = self._last_block(st.tokens_last)
            st.base_theta = self.itae_theta
            st.fa_cache.clear()
        return st.base

    def set_itae(self, theta: float | None) -> None:
        """Turn ITAE on (``theta``) or off (``None``); the current image is re-scored from its cache."""
        if theta is not None and not np.isfinite(theta):
            raise PromptError("The ITAE threshold must be a finite number.")
        self.itae_theta = None if theta is None else float(theta)

    @torch.no_grad()
    def encode_batch(self, images: Sequence[ImageLike] | torch.Tensor) -> EncodedBatch:
        """Encode a batch for the index: plain features plus the Query-DB cache.

        Args:
            images: a sequence of images, or an already preprocessed ``(B, 3, S, S)`` tensor.

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
            st = vit.last_block_cls(self.model, t, itae_theta=self.itae_theta)
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
        """Query-DB: database features recomputed with the query's head mask, no re-encoding.

        Args:
            x_cls: ``(B, D)`` cached residual inputs (float16 or float32).
            o_cls: ``(B, h, d_h)`` cached per-head [CLS] outputs.
            head_mask: ``(h,)`` the query's mask ``m``; ``None`` gives the plain features.
            strategy: the strategy the mask was made for.
            precision: ``fp32`` (exact; the default) or :attr:`rerank_precision` for a fast first pass.

        Returns:
            ``(B, feature_dim)`` float32, not normalised.
        """
        precision = _precision.resolve_precision(precision, self.device)
        x_cls = np.asarray(x_cls)
        o_cls = np.asarray(o_cls)
        if x_cls.ndim != 2 or o_cls.shape != (x_cls.shape[0], self.num_heads, self.head_dim):
            raise PromptError("Cached states must be (B, D) and (B, h, d_h) arrays for this model.")
        m = None if head_mask is None else torch.as_tensor(np.asarray(head_mask, dtype=np.float32), device=self.device)
        out = np.empty((x_cls.shape[0], self.feature_dim), dtype=np.float32)
        if precision == "bf16" and self.device.type == "cpu":
            # Pure bf16 on a bf16 copy of the last block and the head: autocast would re-cast the weights on
            # every call and keep the norms in fp32 (measured 1.3x slower for 1,000 rows of ViT-B).
            lite, dtype = self._bf16_head(), torch.bfloat16
        else:
            lite, dtype = self.model, torch.float32
        for i in range(0, x_cls.shape[0], chunk):
            xc = torch.as_tensor(x_cls[i : i + chunk], device=self.device).to(dtype)
            oc = torch.as_tensor(o_cls[i : i + chunk], device=self.device).to(dtype)
            with self._autocast(precision if lite is self.model else "fp32"):
                f = vit.cls_feature(lite, xc, oc, m, strategy)  # type: ignore[arg-type]
            out[i : i + chunk] = f.float().cpu().numpy()
        return out

    def _bf16_head(self) -> Any:
        """A bf16 copy of what :func:`core.method.vit.cls_feature` uses (last block, norms, head), made once."""
        if self._bf16 is None:
            import copy
            import types

            m = self.model
            parts = {n: copy.deepcopy(getattr(m, n)).to(torch.bfloat16) for n in ("norm", "fc_norm", "head")}
            self._bf16 = types.SimpleNamespace(
                blocks=[copy.deepcopy(m.blocks[-1]).to(torch.bfloat16)], head_drop=m.head_drop, **parts
            )
        return self._bf16

    # ----------------------------------------------------------------------------------------------------
    # prompts and heads

    def roi(self, prompt: Prompt, mask_threshold: float | None = None) -> Roi:
        """The prompt's ROI on the patch grid of the current image (see :func:`core.method.prompts.prompt_to_roi`)."""
        return prompt_to_roi(prompt, self.image_size, self.grid, mask_threshold)

    def _attn_maps(self, state: vit.ClsState) -> np.ndarray:
        gh, gw = self.grid
        a = state.attn[0, :, self.layout.num_prefix_tokens :]
        return a.reshape(self.num_heads, gh, gw).cpu().numpy()

    def attention_maps(self, prompt: Prompt | None = None, fa: FAParams | None = None) -> np.ndarray:
        """Each head's [CLS]->patch attention in the last block (prefix tokens excluded).

        Args:
            prompt, fa: with both given, the maps under FA for that prompt.

        Returns:
            ``(h, gh, gw)`` float32; each map sums to at most 1 (the rest went to prefix tokens).
        """
        state = self._fa_state(prompt, fa) if (fa is not None and prompt is not None) else self._base()
        return self._attn_maps(state)

    def query_norms(self) -> np.ndarray:
        """L2 norms of the last block's patch query vectors for the current image, ``(gh * gw,)`` (ITAE histogram)."""
        return self._base().q_norms[0, self.layout.num_prefix_tokens :].cpu().numpy()

    def artifact_map(self) -> np.ndarray:
        """``(gh, gw)`` bool: patches ITAE treats as artifacts at the current threshold (all False if off)."""
        return self._base().artifacts[0].reshape(self.grid).cpu().numpy()

    def head_scores(self, prompt: Prompt, roi: RoiReduce | str = RoiReduce.SUM, fa: FAParams | None = None,
                    mask_threshold: float | None = None) -> np.ndarray:
        """ROI attention ``s_i`` per head for a prompt, ``(h,)``."""
        return roi_attention(self.attention_maps(prompt, fa), self.roi(prompt, mask_threshold), roi)

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
        """
        h_on = self.recommended_h_on if h_on is None else int(min(max(int(h_on), 1), self.num_heads))
        scores = self.head_scores(prompt, roi, fa, mask_threshold)
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
    ) -> np.ndarray:
        """The current image's feature for a head mask, from the cache.

        Args:
            head_mask: ``(h,)`` mask ``m``; ``None`` = the plain [CLS] feature (CBIR).
            strategy: the strategy the mask was made for.
            prompt, fa: with both given, start from the FA-modified state (FA, FA+PHS).

        Returns:
            ``(feature_dim,)`` float32, not normalised.
        """
        st = self._fa_state(prompt, fa) if (fa is not None and prompt is not None) else self._base()
        m = None if head_mask is None else torch.as_tensor(np.asarray(head_mask, dtype=np.float32), device=self.device)
        # One token: fp32 is the fastest here (bf16 autocast costs more in casts than it saves).
        f = vit.cls_feature(self.model, st.x_cls, st.o_cls, m, strategy)
        return f[0].float().cpu().numpy()

    # ----------------------------------------------------------------------------------------------------
    # baselines

    def _fa_state(self, prompt: Prompt, fa: FAParams) -> vit.ClsState:
        st = self._require()
        self._base()  # keeps the FA cache consistent with the ITAE setting
        box = self.roi(prompt).token_box()
        key = (box, fa)
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
        state = self._last_block(t.float(), cls_bias=bias)
        if len(st.fa_cache) > 32:
            st.fa_cache.clear()
        st.fa_cache[key] = state
        return state

    @torch.no_grad()
    def attn_mask_feature(self, prompt: Prompt) -> np.ndarray:
        """Attention Mask baseline (Table A6): the last block's [CLS] attends only to the ROI patches.

        Returns:
            ``(feature_dim,)`` float32, not normalised.
        """
        st = self._require()
        roi = self.roi(prompt)
        keep = np.concatenate([np.zeros(self.layout.num_prefix_tokens, bool), roi.positive.reshape(-1) > 0])
        keep_t = torch.as_tensor(keep, device=self.device)[None]
        state = self._last_block(st.tokens_last, keep=keep_t)
        f = vit.cls_feature(self.model, state.x_cls, state.o_cls)  # one token: fp32, as feature()
        return f[0].float().cpu().numpy()

    def current_image(self) -> Image.Image:
        """The current photo at full resolution, upright RGB (re-read from its source when it was draft-decoded)."""
        self._require()
        if self._image is None:
            self._image = to_pil(self._source)  # type: ignore[arg-type]
        return self._image

    @torch.no_grad()
    def encode_with_maps(self, image: Image.Image) -> tuple[EncodedBatch, np.ndarray]:
        """Encode another image without changing the current one: its Query-DB state and attention maps.

        Used by the crop-then-select mode of Table A7.

        Args:
            image: RGB PIL image (any size; squash-resized).

        Returns:
            ``(encoded, maps)``: an :class:`EncodedBatch` of one image and its ``(h, gh, gw)`` last-block maps.
        """
        _, t_last = self._encode_tokens(self.preprocess(image)[None])
        state = self._last_block(t_last)
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
