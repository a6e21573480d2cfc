"""Learned visual prompts (seed 004) and the red-circle marker: markers pasted on the model's input.

A *marker* is drawn on the photo at the prompt's place so that the ViT's [CLS] attends there; the query is
then the feature of the marked photo (method ``lvp`` / ``red-circle``), or PHS on the marked photo
(``lvp+phs``, a combination none of the seed papers tries).

The learned prompt (seed 004, Fig. 2): a fixed random-noise *patch prior* passes through a *neural prior*
(a small convolutional auto-encoder, the only trainable part) to give the patch ``P``; a *shape mask*
(hollow circle or hollow square, inner-to-outer ratio ``lambda``) lets it cover the image only partly; the
masked patch is pasted at a random position on a training image and the frozen ViT runs; the last layer's
[CLS] attention over the patch tokens (averaged over heads, as a distribution) is pulled towards a Gaussian
``G(x, y)`` centred on the token under the patch by minimising ``KL(G || A)`` (the paper's one equation,
``L_KL``). Training lives in :mod:`core.method.lvp_train`; this module is the method and its file format.

The red circle (Shtedritski et al., the manual marker seed 004 compares with): a red ellipse outline drawn
around the prompt, no training. It, the placement and the pasting live in :mod:`core.method.markers`, the
protocol the engine draws markers with (re-exported here).

Coordinate conventions: those of :mod:`core.method.markers` (model-input pixels of the ``S x S`` input,
patches ``(3, n, n)`` RGB in ``[0, 1]`` pasted into normalised images). Besides:

* The token grid is ``(gh, gw)``, row-major; the token under input pixel ``(x, y)`` is
  ``(floor(y / p), floor(x / p))`` for patch side ``p`` (clamped to the grid).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from core.errors import PromptError, UnsupportedModelError, WeightsError, WeightsNotFoundError
from core.fileio import atomic_replace, atomic_write_text
from core.method import vit
from core.method.lvp_config import SHAPES, check_shape  # noqa: F401 (SHAPES re-exported)
from core.method.markers import (  # noqa: F401 (re-exported: the markers' public home before the engine drew them)
    Marker,
    Placement,
    RedCircle,
    ellipse_outline,
    mark_input,
    normalise_rgb,
    paste,
    patch_origin,
    prompt_extent,
)
from core.method.prompts import Prompt

if TYPE_CHECKING:
    from core.method.engine import PHSEngine

PROMPTS_FOLDER = "prompts"
"""Learned prompts live in ``<data dir>/prompts/``, one per model (see :func:`prompt_path`)."""

DEMO_PROMPT = "lvp_demo.safetensors"
"""The demo model's learned prompt, shipped in ``resources/`` next to the demo weights."""

FORMAT_VERSION = 1

# Fingerprint fields that identify the model a prompt was trained for. ITAE's threshold changes only the last
# block's attention at query time, not the tokens a pasted patch produces, so it is left out.
_IDENTITY_KEYS = ("model", "timm_name", "arch_overrides", "weights", "input_size", "mean", "std", "resize")


# --------------------------------------------------------------------------------------------------------
# the shape mask (placement, pasting and the red circle: core.method.markers)


def shape_mask(shape: str, size: int, ratio: float) -> torch.Tensor:
    """The hollow shape mask of seed 004 (Fig. 3): which pixels of an ``n x n`` patch are pasted.

    Circle: pixels whose centre lies at distance ``d`` from the patch centre with ``lambda n/2 <= d <= n/2``.
    Square: the same with the Chebyshev distance (a square frame). ``lambda = 0`` gives a filled shape.

    Args:
        shape: ``"circle"`` or ``"square"``.
        size: side ``n`` in input pixels.
        ratio: ``lambda`` in ``[0, 1)``, inner to outer size.

    Returns:
        ``(n, n)`` float32, 1 where the patch is pasted, 0 where the image shows through.
    """
    check_shape(shape, ratio)
    if size < 1:
        raise PromptError(f"The prompt size must be at least 1 pixel, not {size}.")
    c = (torch.arange(size, dtype=torch.float64) + 0.5) - size / 2.0  # pixel centres relative to the centre
    dy, dx = c[:, None], c[None, :]
    d = torch.sqrt(dx**2 + dy**2) if shape == "circle" else torch.maximum(dx.abs(), dy.abs())
    outer = size / 2.0
    return ((d <= outer + 1e-9) & (d >= ratio * outer - 1e-9)).float()


class NeuralPrior(nn.Module):
    """The neural prior of seed 004 (Fig. 2): a small convolutional auto-encoder on a fixed noise prior.

    ``P = sigmoid(Dec(Enc(z)))`` with ``z ~ N(0, 1)`` drawn once (a buffer, part of the saved state) and
    only the auto-encoder trained; the convolutional structure biases ``P`` towards smooth, image-like
    patterns (a deep image prior) rather than per-pixel adversarial noise.

    Args:
        size: patch side ``n`` in input pixels.
        channels: noise channels and the width of the first layer.
        seed: seeds the noise prior and the initial weights.
    """

    def __init__(self, size: int, channels: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.size = int(size)
        self.register_buffer("noise", torch.randn(1, channels, self.size, self.size, generator=g))
        w = 2 * channels
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 3, 3, padding=1),
        )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    m.reset_parameters()

    def forward(self) -> torch.Tensor:
        """The patch ``P``: ``(3, n, n)`` RGB in ``[0, 1]``."""
        y = self.decoder(self.encoder(self.noise))
        if y.shape[-1] != self.size:  # odd sides: the stride-2 pair returns n + 1
            y = y[..., : self.size, : self.size]
        return torch.sigmoid(y)[0]


@dataclass(frozen=True, eq=False)
class LearnedPrompt:
    """A trained visual prompt (seed 004) for one model.

    Attributes:
        patch: ``(3, n, n)`` float32 RGB in ``[0, 1]`` (the neural prior's output, frozen).
        shape: ``"circle"`` or ``"square"``.
        ratio: ``lambda``, inner to outer size of the hollow shape.
        meta: the JSON sidecar (model identity, training settings, final loss, attention gain).
    """

    patch: torch.Tensor
    shape: str
    ratio: float
    meta: dict[str, Any] = field(default_factory=dict)

    name = "lvp"

    def __post_init__(self) -> None:
        p = torch.as_tensor(self.patch, dtype=torch.float32).detach().cpu()
        if p.dim() != 3 or p.shape[0] != 3 or p.shape[1] != p.shape[2]:
            raise WeightsError(f"A learned prompt's patch must be a (3, n, n) image, not {tuple(p.shape)}.")
        object.__setattr__(self, "patch", p)
        shape_mask(self.shape, int(p.shape[-1]), self.ratio)  # validates shape and ratio

    @property
    def size(self) -> int:
        """The side ``n`` it was trained at, in input pixels."""
        return int(self.patch.shape[-1])

    def placement(self, prompt: Prompt, image_size: tuple[int, int], input_size: int) -> Placement:
        """See :meth:`core.method.markers.Marker.placement`: a point gets the trained size, a box the larger of its sides."""
        cx, cy, w, h = prompt_extent(prompt, image_size, input_size)
        n = float(self.size) if w is None or h is None else float(min(max(round(max(w, h)), 3), input_size))
        return Placement(cx, cy, n, n)

    def patch_at(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch and its shape mask at side ``size``: ``(3, size, size)`` RGB and ``(size, size)``."""
        p = self.patch
        if size != self.size:
            p = F.interpolate(p[None], size=(size, size), mode="bilinear", align_corners=False, antialias=size < self.size)[0]
        return p.clamp(0, 1), shape_mask(self.shape, size, self.ratio)

    def apply(self, x: torch.Tensor, placements: Sequence[Placement], mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
        """Paste on ``(B, 3, S, S)`` normalised images, one placement per image."""
        out = []
        for img, pl in zip(x, placements):
            p, m = self.patch_at(int(round(pl.width)))
            p = normalise_rgb(p, mean, std).to(x.device, x.dtype)
            out.append(paste(img[None], p, m.to(x.device), [[pl.cx, pl.cy]])[0])
        return torch.stack(out)

    # ---- file format: <stem>.safetensors (the patch and the prior's state) + <stem>.json (the sidecar)

    def save(self, path: str | Path, prior: NeuralPrior | None = None) -> Path:
        """Write ``path`` (safetensors) and its JSON sidecar atomically; returns the safetensors path."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"patch": self.patch.contiguous()}
        if prior is not None:
            tensors |= {f"prior.{k}": v.detach().cpu().contiguous() for k, v in prior.state_dict().items()}
        meta = {"format_version": FORMAT_VERSION, "shape": self.shape, "ratio": self.ratio, "size": self.size} | {
            k: v for k, v in self.meta.items() if k not in ("shape", "ratio", "size", "format_version")
        }
        atomic_replace(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "kind": "phs-learned-prompt"}))
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, engine: PHSEngine | None = None) -> LearnedPrompt:
        """Read a learned prompt; with ``engine``, refuse one trained for another model.

        Raises:
            WeightsNotFoundError: no such file.
            WeightsError: unreadable, or trained for another model (one sentence saying what to do).
        """
        from safetensors.torch import load_file

        path = Path(path).expanduser().with_suffix(".safetensors")
        side = path.with_suffix(".json")
        if not path.is_file() or not side.is_file():
            raise WeightsNotFoundError(f"No learned prompt at {path} (it needs {path.name} and {side.name}).")
        try:
            tensors = load_file(str(path))
            meta = json.loads(side.read_text())
            prompt = cls(tensors["patch"], str(meta["shape"]), float(meta["ratio"]), meta)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
            raise WeightsError(f"The learned prompt {path.name} cannot be read ({err}); train it again.") from err
        if engine is not None:
            prompt.check(engine)
        return prompt

    def check(self, engine: PHSEngine) -> None:
        """Refuse a prompt trained for another model (weights, input size or preprocessing).

        Raises:
            WeightsError: with one sentence naming both models and the command that trains a prompt.
        """
        mine = model_identity(self.meta.get("fingerprint", {}))
        theirs = model_identity(engine.fingerprint())
        if mine != theirs:
            raise WeightsError(
                f"This learned prompt was trained for the model '{mine.get('model', '?')}' "
                f"({mine.get('weights', '?')}), not for '{theirs['model']}' ({theirs['weights']}); train one "
                f"for it with `phs lvp train --model {theirs['model']} --images DIR`."
            )



# --------------------------------------------------------------------------------------------------------
# the objective (seed 004, Fig. 2 and L_KL)


def token_under(centres: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """The ``(row, col)`` token under each centre: ``(B, 2)`` xy input pixels -> ``(B, 2)`` int64, clamped."""
    c = torch.as_tensor(centres, dtype=torch.float64)
    col = torch.floor(c[:, 0] / patch_size).clamp(0, grid[1] - 1)
    row = torch.floor(c[:, 1] / patch_size).clamp(0, grid[0] - 1)
    return torch.stack([row, col], dim=1).long()


def gaussian_target(tokens: torch.Tensor, grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """The target attention ``G(x, y)`` of seed 004: a Gaussian on the token grid, normalised to sum 1.

    ``G_b(i, j) = exp(-((i - r_b)^2 + (j - c_b)^2) / (2 sigma^2)) / Z_b`` with ``(r_b, c_b)`` the token under
    the patch of image ``b``.

    Args:
        tokens: ``(B, 2)`` ``(row, col)`` centres on the grid.
        grid: ``(gh, gw)``.
        sigma: standard deviation in tokens (> 0).

    Returns:
        ``(B, gh * gw)`` float32, row-major like the patch tokens.
    """
    if not sigma > 0:
        raise PromptError(f"The target's sigma must be positive, not {sigma}.")
    gh, gw = grid
    i = torch.arange(gh, dtype=torch.float32)[None, :, None]
    j = torch.arange(gw, dtype=torch.float32)[None, None, :]
    t = torch.as_tensor(tokens, dtype=torch.float32)
    d2 = (i - t[:, 0, None, None]) ** 2 + (j - t[:, 1, None, None]) ** 2
    g = torch.exp(-d2 / (2 * sigma**2)).reshape(t.shape[0], gh * gw)
    return g / g.sum(dim=1, keepdim=True)


def kl_loss(attn: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``L_KL = KL(G || A) = sum_p G_p (log G_p - log A_p)``, averaged over the batch (seed 004, Eq. 1).

    Args:
        attn: ``(B, P)`` attention distribution over the patch tokens (rows sum to 1).
        target: ``(B, P)`` target ``G`` (rows sum to 1).

    Returns:
        Scalar loss (0 when ``A == G``).
    """
    return (torch.xlogy(target, target) - target * torch.log(attn.clamp_min(eps))).sum(dim=1).mean()


def cls_patch_attention(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """The last layer's [CLS] attention over the patch tokens, averaged over heads, as a distribution.

    Differentiable in ``x`` (timm's blocks, then :func:`core.method.vit.last_block_cls`).

    Args:
        x: ``(B, 3, S, S)`` normalised images.

    Returns:
        ``(B, gh * gw)``; each row sums to 1 (prefix tokens dropped, then renormalised).
    """
    depth = len(model.blocks)
    t = vit.run_blocks(model, vit.embed(model, x), 0, depth - 1)
    a = vit.last_block_cls(model, t).attn[:, :, model.num_prefix_tokens :].float().mean(dim=1)
    return a / a.sum(dim=1, keepdim=True).clamp_min(1e-12)


def overlaid_tokens(placement: Placement, grid: tuple[int, int], patch_size: int, input_size: int) -> torch.Tensor:
    """The tokens a marker overlays (its clipped pixel rectangle touches their cell): ``(gh, gw)`` bool."""
    x0, y0, x1, y1 = placement.pixel_box(input_size)
    out = torch.zeros(grid, dtype=torch.bool)
    if x1 > x0 and y1 > y0:
        out[y0 // patch_size : -(-y1 // patch_size), x0 // patch_size : -(-x1 // patch_size)] = True
    return out


def attention_on(attn: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Share of each row of ``attn`` ``(B, P)`` on ``regions`` ``(B, gh, gw)`` bool -> ``(B,)``."""
    return (attn * regions.reshape(regions.shape[0], -1).to(attn.dtype)).sum(dim=1)


def _block_cls_attention(blk: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A plain timm block's [CLS] attention row, averaged over heads: ``(B, N, D) -> (B, N)``."""
    if type(blk) is not Block or type(blk.attn) is not Attention:
        raise UnsupportedModelError("The attention gain needs plain timm Blocks with multi-head Attention.")
    attn: Attention = blk.attn
    b, n, _ = tokens.shape
    qkv = attn.qkv(blk.norm1(tokens)).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    logits = torch.einsum("bhd,bhnd->bhn", q[:, :, 0] * attn.scale, k)
    return logits.softmax(dim=-1).mean(dim=1)


@torch.no_grad()
def layer_cls_attention(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Every layer's [CLS] attention over the patch tokens, averaged over heads (raw probabilities).

    Args:
        x: ``(B, 3, S, S)`` normalised images.

    Returns:
        ``(B, L, gh * gw)``: layer ``l``'s head-averaged ``A[CLS, p]`` (prefix tokens dropped, not renormalised).
    """
    t = vit.embed(model, x)
    rows = []
    for blk in model.blocks:
        rows.append(_block_cls_attention(blk, t)[:, model.num_prefix_tokens :])
        t = blk(t)
    return torch.stack(rows, dim=1)


@torch.no_grad()
def attention_gain(engine: PHSEngine, marker: Marker, x: torch.Tensor, placements: Sequence[Placement],
                   batch: int = 32) -> dict[str, Any]:
    """Seed 004, Fig. 4: per layer, the relative gain of attention on the tokens the marker overlays.

    ``gain_l = (sum_b a_l(marked_b) - sum_b a_l(plain_b)) / sum_b a_l(plain_b)`` where ``a_l`` is layer
    ``l``'s head-averaged [CLS] attention summed over the overlaid tokens. Sums over the images (a ratio of
    means) rather than a mean of per-image ratios, which images with almost no attention there would dominate.

    Args:
        engine: the model (frozen).
        marker: learned prompt or red circle.
        x: ``(N, 3, S, S)`` normalised images.
        placements: one per image, in input pixels.

    Returns:
        ``{"gain": [L floats], "with": [L], "without": [L]}`` (``with``/``without``: mean attention share on
        the overlaid tokens per image).
    """
    s, grid, ps = engine.input_size, engine.grid, engine.layout.patch_size
    regions = torch.stack([overlaid_tokens(p, grid, ps, s) for p in placements]).reshape(len(placements), -1)
    with_sum = without_sum = None
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch].to(engine.device)
        pls = placements[i : i + batch]
        r = regions[i : i + batch].to(engine.device, torch.float32)[:, None, :]
        a0 = (layer_cls_attention(engine.model, xb).float() * r).sum(dim=(0, 2))
        a1 = (layer_cls_attention(engine.model, marker.apply(xb, pls, engine.mean, engine.std)).float() * r).sum(dim=(0, 2))
        with_sum = a1 if with_sum is None else with_sum + a1
        without_sum = a0 if without_sum is None else without_sum + a0
    n = x.shape[0]
    gain = (with_sum - without_sum) / without_sum.clamp_min(1e-12)
    return {
        "gain": [round(float(v), 4) for v in gain],
        "with": [round(float(v) / n, 5) for v in with_sum],
        "without": [round(float(v) / n, 5) for v in without_sum],
    }


# --------------------------------------------------------------------------------------------------------
# where prompts live


def model_identity(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fields of :meth:`PHSEngine.fingerprint` that a learned prompt depends on."""
    return {k: fingerprint.get(k) for k in _IDENTITY_KEYS}


def identity_digest(fingerprint: dict[str, Any]) -> str:
    """A short stable hash of :func:`model_identity` (part of the per-model file name)."""
    blob = json.dumps(model_identity(fingerprint), sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def prompt_path(engine: PHSEngine) -> Path:
    """Where the learned prompt for this engine's model lives: ``<data dir>/prompts/<model>-<digest>.safetensors``."""
    from core.paths import data_dir

    fp = engine.fingerprint()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(fp["model"]))
    return data_dir() / PROMPTS_FOLDER / f"{slug}-{identity_digest(fp)}.safetensors"


def demo_prompt_path() -> Path:
    """The shipped demo model's learned prompt in ``resources/``."""
    from core.paths import resources_dir

    return resources_dir() / DEMO_PROMPT


def find_prompt(engine: PHSEngine) -> LearnedPrompt | None:
    """The learned prompt for this engine's model: the user's own (data dir) first, then the shipped demo one.

    Returns ``None`` when there is none; a file for another model is never returned.
    """
    candidates = [prompt_path(engine)]
    if engine.spec.is_demo:
        candidates.append(demo_prompt_path())
    for path in candidates:
        if path.is_file() and path.with_suffix(".json").is_file():
            try:
                return LearnedPrompt.load(path, engine)
            except WeightsError:
                continue
    return None


def require_prompt(engine: PHSEngine) -> LearnedPrompt:
    """:func:`find_prompt`, or one sentence saying how to train a prompt for this model.

    Raises:
        WeightsNotFoundError: no learned prompt for this engine's model on this machine.
    """
    prompt = find_prompt(engine)
    if prompt is None:
        name = engine.spec.name
        raise WeightsNotFoundError(
            f"There is no learned prompt for the model '{name}' yet; train one with "
            f"`phs lvp train --model {name} --images DIR` (a folder of your photos, or `synthetic`)."
        )
    return prompt


def list_prompts(model: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every learned prompt on this machine (data dir, then the shipped demo one) with its sidecar.

    Args:
        model: keep only prompts whose fingerprint names this model (registry name).
    """
    from core.paths import data_dir

    found: list[tuple[Path, dict[str, Any]]] = []
    sides = sorted((data_dir() / PROMPTS_FOLDER).glob("*.json")) + [demo_prompt_path().with_suffix(".json")]
    for side in sides:
        if not side.is_file() or not side.with_suffix(".safetensors").is_file():
            continue
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        if model is None or meta.get("fingerprint", {}).get("model") == model:
            found.append((side.with_suffix(".safetensors"), meta))
    return found

