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
around the prompt, no training.

Coordinate conventions:

* Everything here is in **model-input pixels** of the ``S x S`` input: ``x`` right, ``y`` down, pixel
  ``(c, r)`` covers ``[c, c+1) x [r, r+1)``, its centre is ``(c + 0.5, r + 0.5)``. The photo is
  squash-resized to ``S x S``, so ``(x, y)`` in a ``W x H`` photo is ``(x S / W, y S / H)`` here.
* A square patch of side ``n`` centred at ``(cx, cy)`` covers columns ``x0 .. x0 + n - 1`` with
  ``x0 = floor(cx - n / 2 + 1/2)`` (rows alike); the part outside ``[0, S)`` is clipped away.
* Images are ``(B, 3, S, S)`` (or ``(3, S, S)``) float tensors **normalised** with the model's mean and std;
  patches are ``(3, n, n)`` RGB in ``[0, 1]`` and are normalised when pasted. Pasting is a per-pixel convex
  combination, so pasting then normalising equals normalising then pasting.
* The token grid is ``(gh, gw)``, row-major; the token under input pixel ``(x, y)`` is
  ``(floor(y / p), floor(x / p))`` for patch side ``p`` (clamped to the grid).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from core.errors import PromptError, UnsupportedModelError, WeightsError, WeightsNotFoundError
from core.fileio import atomic_replace, atomic_write_text
from core.method import vit
from core.method.prompts import Prompt

if TYPE_CHECKING:
    from core.method.engine import PHSEngine

SHAPES = ("circle", "square")
"""Shape masks of seed 004, Fig. 3: hollow circle and hollow square."""

PROMPTS_FOLDER = "prompts"
"""Learned prompts live in ``<data dir>/prompts/``, one per model (see :func:`prompt_path`)."""

DEMO_PROMPT = "lvp_demo.safetensors"
"""The demo model's learned prompt, shipped in ``resources/`` next to the demo weights."""

FORMAT_VERSION = 1

# Fingerprint fields that identify the model a prompt was trained for. ITAE's threshold changes only the last
# block's attention at query time, not the tokens a pasted patch produces, so it is left out.
_IDENTITY_KEYS = ("model", "timm_name", "arch_overrides", "weights", "input_size", "mean", "std", "resize")


# --------------------------------------------------------------------------------------------------------
# shapes, placement and pasting


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
    if shape not in SHAPES:
        raise PromptError(f"The prompt shape must be circle or square, not '{shape}'.")
    if not (0.0 <= ratio < 1.0):
        raise PromptError(f"The shape ratio must be at least 0 and below 1, not {ratio}.")
    if size < 1:
        raise PromptError(f"The prompt size must be at least 1 pixel, not {size}.")
    c = (torch.arange(size, dtype=torch.float64) + 0.5) - size / 2.0  # pixel centres relative to the centre
    dy, dx = c[:, None], c[None, :]
    d = torch.sqrt(dx**2 + dy**2) if shape == "circle" else torch.maximum(dx.abs(), dy.abs())
    outer = size / 2.0
    return ((d <= outer + 1e-9) & (d >= ratio * outer - 1e-9)).float()


def patch_origin(centre: float, size: int) -> int:
    """First pixel (column or row) of a patch of side ``size`` centred at ``centre`` (may be negative)."""
    return int(math.floor(centre - size / 2.0 + 0.5))


def paste(x: torch.Tensor, patch: torch.Tensor, mask: torch.Tensor, centres: torch.Tensor | Sequence) -> torch.Tensor:
    """Paste a masked patch on each image at its centre, clipped at the borders (differentiable in ``patch``).

    ``x'[y, x] = x[y, x] (1 - M) + P M`` over the pixels the patch covers.

    Args:
        x: ``(B, 3, S, S)`` normalised images (not modified).
        patch: ``(3, n, n)`` normalised patch, or ``(B, 3, n, n)`` one per image.
        mask: ``(n, n)`` shape mask in ``[0, 1]``.
        centres: ``(B, 2)`` ``(cx, cy)`` in input pixels.

    Returns:
        ``(B, 3, S, S)`` marked images.
    """
    b, _, s_h, s_w = x.shape
    n = int(mask.shape[-1])
    centres = torch.as_tensor(centres, dtype=torch.float64).reshape(b, 2)
    mask = mask.to(x.dtype)
    rows = []
    for i in range(b):
        x0, y0 = patch_origin(float(centres[i, 0]), n), patch_origin(float(centres[i, 1]), n)
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + n, s_w), min(y0 + n, s_h)
        img = x[i]
        if cx1 <= cx0 or cy1 <= cy0:
            rows.append(img)
            continue
        p = patch[i] if patch.dim() == 4 else patch
        ps = p[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        ms = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        region = img[:, cy0:cy1, cx0:cx1] * (1 - ms) + ps * ms
        # Rebuild the image around the region (no in-place write, so autograd reaches the patch).
        mid = torch.cat([img[:, cy0:cy1, :cx0], region, img[:, cy0:cy1, cx1:]], dim=2)
        rows.append(torch.cat([img[:, :cy0], mid, img[:, cy1:]], dim=1))
    return torch.stack(rows)


def ellipse_outline(input_size: int, cx: float, cy: float, rx: float, ry: float, thickness: float) -> torch.Tensor:
    """The red circle's pixels: between the ellipse ``(rx, ry)`` and the one ``thickness`` pixels inside it.

    Args:
        input_size: ``S``.
        cx, cy, rx, ry: centre and radii in input pixels.
        thickness: line width in input pixels.

    Returns:
        ``(S, S)`` bool, ``True`` on the outline (pixel centres tested).
    """
    c = torch.arange(input_size, dtype=torch.float64) + 0.5
    u, v = c[None, :] - cx, c[:, None] - cy
    rx, ry = max(rx, 0.5), max(ry, 0.5)
    outer = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    ix, iy = rx - thickness, ry - thickness
    if ix <= 0 or iy <= 0:
        return outer
    inner = (u / ix) ** 2 + (v / iy) ** 2 < 1.0
    return outer & ~inner


def normalise_rgb(rgb: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(3, ...)`` RGB in ``[0, 1]`` -> normalised with the model's mean and std."""
    shape = (3,) + (1,) * (rgb.dim() - 1)
    m = torch.as_tensor(mean, dtype=rgb.dtype, device=rgb.device).view(shape)
    s = torch.as_tensor(std, dtype=rgb.dtype, device=rgb.device).view(shape)
    return (rgb - m) / s


def to_rgb_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``(3, S, S)`` input back to an ``(S, S, 3)`` uint8 RGB array (to show the marked input)."""
    m = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (x.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Placement:
    """Where a marker goes, in input pixels: centre ``(cx, cy)`` and extent ``width x height``.

    A learned prompt is a square (``width == height``, its side); the red circle is an ellipse with
    diameters ``width`` and ``height``.
    """

    cx: float
    cy: float
    width: float
    height: float

    def in_image(self, image_size: tuple[int, int], input_size: int) -> tuple[float, float, float, float]:
        """The same placement in original-image pixels ``(cx, cy, width, height)`` (for drawing it on the photo).

        Args:
            image_size: ``(W, H)`` of the photo.
            input_size: ``S``.
        """
        sx, sy = image_size[0] / input_size, image_size[1] / input_size
        return self.cx * sx, self.cy * sy, self.width * sx, self.height * sy

    def pixel_box(self, input_size: int) -> tuple[int, int, int, int]:
        """The clipped pixel rectangle the marker can touch, ``(x0, y0, x1, y1)`` exclusive ends."""
        w, h = int(round(self.width)), int(round(self.height))
        x0, y0 = patch_origin(self.cx, w), patch_origin(self.cy, h)
        return max(x0, 0), max(y0, 0), min(x0 + w, input_size), min(y0 + h, input_size)


def prompt_extent(prompt: Prompt, image_size: tuple[int, int], input_size: int) -> tuple[float, float, float | None, float | None]:
    """The prompt's centre and size in input pixels: ``(cx, cy, w, h)``, ``w = h = None`` for a point.

    A box (or else a mask's bounding box) gives its centre and size; otherwise the first positive point.

    Args:
        prompt: in original-image pixels.
        image_size: ``(W, H)`` of the photo.
        input_size: ``S``.
    """
    w, h = image_size
    sx, sy = input_size / w, input_size / h
    box = prompt.box.clipped(w, h) if prompt.box is not None else (prompt.mask.bbox() if prompt.mask is not None else None)
    if box is not None:
        return (box.x0 + box.x1) / 2 * sx, (box.y0 + box.y1) / 2 * sy, (box.x1 - box.x0) * sx, (box.y1 - box.y0) * sy
    p = next(p for p in prompt.points if p.positive)
    if not (0.0 <= p.x <= w and 0.0 <= p.y <= h):
        raise PromptError(f"The point ({p.x:g}, {p.y:g}) is outside the {w}x{h} image.")
    return p.x * sx, p.y * sy, None, None


# --------------------------------------------------------------------------------------------------------
# markers


@dataclass(frozen=True)
class RedCircle:
    """The manual marker: a red ellipse outline (no training).

    Attributes:
        size: diameter in input pixels for a point prompt (``None``: a quarter of ``S``); a box gets the
            ellipse through its corners' midpoints (diameters = the box's width and height).
        thickness: line width in input pixels (``None``: ``S / 48``, at least 1).
        colour: RGB in ``[0, 1]``.
    """

    size: int | None = None
    thickness: float | None = None
    colour: tuple[float, float, float] = (1.0, 0.0, 0.0)

    name = "red-circle"

    def placement(self, prompt: Prompt, image_size: tuple[int, int], input_size: int) -> Placement:
        """See :func:`marker_placement`."""
        cx, cy, w, h = prompt_extent(prompt, image_size, input_size)
        if w is None or h is None:
            w = h = float(self.size or max(input_size // 4, 3))
        return Placement(cx, cy, max(w, 3.0), max(h, 3.0))

    def apply(self, x: torch.Tensor, placements: Sequence[Placement], mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
        """Draw the outline on ``(B, 3, S, S)`` normalised images, one placement per image."""
        s = x.shape[-1]
        t = self.thickness if self.thickness is not None else max(1.0, round(s / 48))
        red = normalise_rgb(torch.tensor(self.colour, dtype=x.dtype), mean, std).view(3, 1, 1)
        out = []
        for img, pl in zip(x, placements):
            ring = ellipse_outline(s, pl.cx, pl.cy, pl.width / 2, pl.height / 2, t).to(x.device)
            out.append(torch.where(ring[None], red.to(x.device), img))
        return torch.stack(out)


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
        """See :func:`marker_placement`: a point gets the trained size, a box the larger of its sides."""
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


Marker = LearnedPrompt | RedCircle


def marker_placement(prompt: Prompt, image_size: tuple[int, int], input_size: int, marker: Marker) -> Placement:
    """Where ``marker`` is drawn for ``prompt``, in input pixels (the app draws it from this).

    A point prompt puts the marker's centre on the point, at the learned prompt's trained side (or the red
    circle's default diameter). A box (or a mask's bounding box) puts it at the box's centre, scaled to the
    box: a learned prompt's side becomes the box's larger side, the red circle becomes the ellipse inscribed
    in the box. Map back to the photo with :meth:`Placement.in_image`.

    Args:
        prompt: in original-image pixels.
        image_size: ``(W, H)`` of the photo.
        input_size: ``S``.
        marker: a :class:`LearnedPrompt` or :class:`RedCircle`.
    """
    return marker.placement(prompt, image_size, input_size)


def mark_input(x: torch.Tensor, prompt: Prompt, image_size: tuple[int, int], marker: Marker,
               mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, Placement]:
    """The photo's model input with ``marker`` drawn at ``prompt``.

    Args:
        x: ``(3, S, S)`` normalised input of the photo (squash-resized).
        prompt: in original-image pixels of the ``image_size`` photo.
        image_size: ``(W, H)``.
        marker: learned prompt or red circle.
        mean, std: the model's normalisation.

    Returns:
        ``(3, S, S)`` marked input and the :class:`Placement` used.
    """
    pl = marker_placement(prompt, image_size, int(x.shape[-1]), marker)
    return marker.apply(x[None], [pl], mean, std)[0], pl


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

