"""Train the offline demo ViT on generated scenes: ``python -m core.synthetic.train_demo [--out resources] [--seed 0]``.

The demo model is a small timm ``VisionTransformer`` trained from scratch on :mod:`core.synthetic.scenes`. Plain
multi-label training leaves its last-block heads interchangeable (every head carries everything), so the
recipe adds a **PHS-consistent objective**: for every annotated object, the heads whose [CLS] attention
falls most inside the object's box are selected exactly as PHS does at query time (hard top-``h_on``, no
gradient through the choice), the *Before+Scale* feature of those heads is computed with
:func:`core.method.vit.cls_feature`, and that feature must name the object's category. The model is therefore
*trained to have per-object heads*: results on it test the machinery (prompts, ROI mapping, selection,
search), not the paper's claim that large pretrained ViTs have such heads.

Losses (``C`` categories, cosine prototypes ``P (C, D)`` and scale ``s`` kept outside the ViT):

* A (plain, keeps CBIR fair): soft-target softmax cross-entropy of ``s cos(f_plain, P)`` against the
  uniform distribution over the categories present in the image.
* B (PHS): cross-entropy of ``s cos(f_phs(o), P)`` against the category of object ``o``.
* Attention: ``-log`` of the selected heads' [CLS] attention mass inside the object's box.
* Patch: per-patch category (or background) cross-entropy on the tokens entering the last block, so the
  value vectors a head attends to carry what is there.
* Contrastive (query-only retrieval is ``cos(f_phs(query), f_plain(db))``): InfoNCE of each object's
  PHS feature against the plain features of the other images of the batch; positives are the images that
  contain the object's category.

Writes ``demo_model.safetensors`` (the ViT's state dict only, fp16, head = Identity),
``demo_model.json`` (``vit_kwargs`` for :class:`timm.models.vision_transformer.VisionTransformer`,
categories, recipe, seed, steps, time, recommended ``h_on``) and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

from core.method import vit
from core.method.prompts import Box, Mask, box_cells, mask_fractions
from core.synthetic.demo_card import ATTEMPTS, STAGES, STAGES_TIME, STATUS, write_model_card  # noqa: F401 (re-exported)
from core.synthetic.scenes import CATEGORIES, generate_scene

# The engine normalises with what timm resolves for a bare VisionTransformer: the ImageNet statistics.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class Recipe:
    """Everything that determines the demo model (recorded in ``demo_model.json``)."""

    img_size: int = 96
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 3.0
    scene_size: int = 128
    n_scenes: int = 10000
    mixed_counts: bool = True  # scene i has at most 1 + i % 6 objects: many large single objects
    scene_seed_offset: int = 100000  # training scenes use seed + offset, never the evaluation seeds' streams
    steps: int = 700
    batch: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30
    scale: float = 16.0
    h_on_train: tuple[int, ...] = (1, 2, 3)
    w_plain: float = 1.0
    w_phs: float = 1.0
    w_attn: float = 0.5
    w_patch: float = 1.0
    w_patch_background: float = 0.2
    w_contrast: float = 0.5
    w_pool: float = 1.0
    temperature: float = 0.1
    h_on_recommended: int = 2
    stem: str = "patch"  # "conv": core.models.convstem.ConvStem (three stride-2 convolutions) instead of the 8x8 projection
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def vit_kwargs(self) -> dict[str, Any]:
        """JSON-able keyword arguments of timm's ``VisionTransformer`` for this recipe."""
        return {
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "num_classes": 0,
            "global_pool": "token",
            "class_token": True,
            "qkv_bias": True,
        }


# --------------------------------------------------------------------------------------------------------
# data


@dataclass
class TrainSet:
    """Pre-generated training scenes at the model's input size.

    Attributes:
        images: ``(N, 3, S, S)`` uint8.
        labels: ``(N, C)`` float32 multi-hot categories present.
        patch_labels: ``(N, gh, gw)`` int64, category of the object covering most of each patch, ``C`` for
            background.
        obj_image: ``(J,)`` int64 image index of each object.
        obj_cat: ``(J,)`` int64 category of each object.
        obj_roi: ``(J, gh, gw)`` bool, patches the object's box overlaps (:func:`core.method.prompts.box_cells`).
        obj_frac: ``(J, gh, gw)`` float32, fraction of each patch covered by the object's visible mask.
    """

    images: torch.Tensor
    labels: torch.Tensor
    patch_labels: torch.Tensor
    obj_image: torch.Tensor
    obj_cat: torch.Tensor
    obj_roi: torch.Tensor
    obj_frac: torch.Tensor


def make_trainset(recipe: Recipe, seed: int, log: bool = True) -> TrainSet:
    """Generate the training scenes once (generation inside the loop was a bottleneck).

    Args:
        recipe: sizes and counts.
        seed: the training seed; scenes come from ``seed + recipe.scene_seed_offset``.
    """
    s = recipe.img_size
    g = s // recipe.patch_size
    grid = (g, g)
    n = recipe.n_scenes
    c = len(CATEGORIES)
    size = (recipe.scene_size, recipe.scene_size)
    images = np.empty((n, 3, s, s), np.uint8)
    labels = np.zeros((n, c), np.float32)
    patch_labels = np.empty((n, g, g), np.int64)
    oi: list[int] = []
    oc: list[int] = []
    rois: list[np.ndarray] = []
    fracs: list[np.ndarray] = []
    t0 = time.time()
    for i in range(n):
        kw = {"max_objects": 1 + i % 6} if recipe.mixed_counts else {}
        sc = generate_scene(seed + recipe.scene_seed_offset, i, size, **kw)
        pil = Image.fromarray(sc.image).resize((s, s), Image.Resampling.BICUBIC)
        images[i] = np.asarray(pil).transpose(2, 0, 1)
        frac = np.zeros((c + 1, g, g), np.float32)
        for o in sc.objects:
            labels[i, o.category_id] = 1.0
            f = mask_fractions(Mask(o.mask), size, grid)
            frac[o.category_id] = np.maximum(frac[o.category_id], f)
            oi.append(i)
            oc.append(o.category_id)
            rois.append(box_cells(Box(*o.bbox.tolist()), size, grid))
            fracs.append(f)
        frac[c] = 0.5  # background unless an object covers at least half of the patch
        patch_labels[i] = frac.argmax(0)
        if log and (i + 1) % 2000 == 0:
            print(f"  scenes {i + 1}/{n} ({time.time() - t0:.0f} s)", flush=True)
    return TrainSet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        patch_labels=torch.from_numpy(patch_labels),
        obj_image=torch.as_tensor(oi),
        obj_cat=torch.as_tensor(oc),
        obj_roi=torch.from_numpy(np.stack(rois)),
        obj_frac=torch.from_numpy(np.stack(fracs).astype(np.float32)),
    )


def normalise(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` uint8 -> float normalised with :data:`MEAN`, :data:`STD` (timm's defaults)."""
    x = images.float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------------------------------------
# model and losses


class TrainHeads(nn.Module):
    """Training-only parameters kept outside the ViT's state dict: cosine prototypes and a patch classifier."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        self.patch_norm = nn.LayerNorm(dim)
        self.patch_cls = nn.Linear(dim, num_classes + 1)

    def cos_logits(self, f: torch.Tensor, scale: float) -> torch.Tensor:
        """``s cos(f, P)``: ``(B, D) -> (B, C)``."""
        return scale * F.normalize(f, dim=-1) @ F.normalize(self.prototypes, dim=-1).T


def build_vit(recipe: Recipe, seed: int) -> VisionTransformer:
    """The demo architecture with a seeded random initialisation."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = recipe.vit_kwargs()
    if recipe.stem == "conv":
        from core.models.convstem import ConvStem

        kwargs["embed_layer"] = ConvStem
    return VisionTransformer(**kwargs)


def phs_masks(attn_patches: torch.Tensor, roi: torch.Tensor, h_on: torch.Tensor) -> torch.Tensor:
    """PHS selection as at query time (Sum ROI attention, top ``h_on``, *Before+Scale*), no gradient.

    Args:
        attn_patches: ``(J, h, P)`` [CLS]->patch attention of each object's image.
        roi: ``(J, P)`` float ROI weights.
        h_on: ``(J,)`` heads to keep per object.

    Returns:
        ``(J, h)`` masks ``m_i = h / h_on`` for kept heads, else 0.
    """
    with torch.no_grad():
        scores = torch.einsum("jhp,jp->jh", attn_patches, roi)
        h = scores.shape[1]
        order = scores.argsort(dim=1, descending=True)
        ranks = order.argsort(dim=1)
        keep = ranks < h_on[:, None]
        return keep.float() * (h / h_on.float())[:, None]


def losses(
    model: VisionTransformer,
    heads: TrainHeads,
    recipe: Recipe,
    x: torch.Tensor,
    labels: torch.Tensor,
    patch_labels: torch.Tensor,
    obj_img: torch.Tensor,
    obj_cat: torch.Tensor,
    obj_roi: torch.Tensor,
    obj_frac: torch.Tensor,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """All training losses for one batch.

    Args:
        x: ``(B, 3, S, S)`` normalised images.
        labels: ``(B, C)`` multi-hot.
        patch_labels: ``(B, gh, gw)``.
        obj_img: ``(J,)`` index into the batch; obj_cat: ``(J,)``; obj_roi: ``(J, gh, gw)`` bool;
        obj_frac: ``(J, gh, gw)`` visible-mask fraction per patch.
    """
    depth = len(model.blocks)
    prefix = model.num_prefix_tokens
    t = vit.run_blocks(model, vit.embed(model, x), 0, depth - 1)  # (B, N, D)
    st = vit.last_block_cls(model, t)
    f_plain = vit.cls_feature(model, st.x_cls, st.o_cls)  # (B, D)
    out: dict[str, torch.Tensor] = {}
    # A: plain [CLS], soft-target multi-label softmax over the prototypes.
    target = labels / labels.sum(1, keepdim=True)
    out["plain"] = -(target * heads.cos_logits(f_plain, recipe.scale).log_softmax(-1)).sum(-1).mean()
    # Patch tokens entering the last block name what they show.
    tn = heads.patch_norm(t[:, prefix:])  # (B, P, D)
    pt = heads.patch_cls(tn)  # (B, P, C + 1)
    cw = torch.ones(pt.shape[-1])
    cw[-1] = recipe.w_patch_background  # objects cover a minority of patches: do not let background dominate
    out["patch"] = F.cross_entropy(pt.reshape(-1, pt.shape[-1]), patch_labels.reshape(-1), weight=cw)
    # The tokens of an object, pooled over its mask, name it (a fast path for learning shapes).
    w = obj_frac.reshape(obj_frac.shape[0], -1)
    pooled = torch.einsum("jp,jpd->jd", w, tn[obj_img]) / w.sum(1, keepdim=True).clamp_min(1e-6)
    out["pool"] = F.cross_entropy(heads.patch_cls(pooled), obj_cat)
    # B: PHS feature per object.
    roi = obj_roi.reshape(obj_roi.shape[0], -1).float()
    attn_p = st.attn[obj_img, :, prefix:]  # (J, h, P)
    choices = torch.as_tensor(recipe.h_on_train)
    h_on = choices[torch.randint(len(choices), (obj_img.shape[0],), generator=gen)]
    m = phs_masks(attn_p.detach(), roi, h_on)
    f_phs = vit.cls_feature(model, st.x_cls[obj_img], st.o_cls[obj_img], m)  # (J, D)
    out["phs"] = F.cross_entropy(heads.cos_logits(f_phs, recipe.scale), obj_cat)
    # Selected heads look inside the object's box.
    mass = torch.einsum("jhp,jp->jh", attn_p, roi).clamp_min(1e-6)
    sel = (m > 0).float()
    out["attn"] = (-(mass.log()) * sel).sum() / sel.sum()
    # Query-only retrieval: PHS feature of the object vs plain features of the other images.
    sim = F.normalize(f_phs, dim=-1) @ F.normalize(f_plain, dim=-1).T / recipe.temperature  # (J, B)
    own = F.one_hot(obj_img, x.shape[0]).bool()
    pos = labels[:, obj_cat].T.bool() & ~own  # (J, B)
    sim = sim.masked_fill(own, float("-inf"))
    logp = sim.log_softmax(-1)
    has = pos.any(1)
    if has.any():
        lp = logp.masked_fill(~pos, 0.0)
        out["contrast"] = -(lp.sum(1)[has] / pos.sum(1)[has]).mean()
    else:
        out["contrast"] = f_phs.sum() * 0.0
    return out


# --------------------------------------------------------------------------------------------------------
# training


def _optimizer(model: VisionTransformer, heads: TrainHeads, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices of the ViT only (not on position embeddings, tokens, biases,
    norms or the training heads)."""
    def decays(n: str, p: torch.Tensor) -> bool:
        return p.dim() >= 2 and "pos_embed" not in n and "token" not in n

    params = [
        {"params": [p for n, p in model.named_parameters() if decays(n, p)], "weight_decay": recipe.weight_decay},
        {"params": [p for n, p in model.named_parameters() if not decays(n, p)], "weight_decay": 0.0},
        {"params": list(heads.parameters()), "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(params, lr=recipe.lr, betas=(0.9, 0.98))


def _lr_at(recipe: Recipe, step: int) -> float:
    """Linear warm-up, then cosine decay to 2 % of the peak learning rate."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    p = (step - recipe.warmup) / max(recipe.steps - recipe.warmup, 1)
    return recipe.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def _flipped_batch(data: TrainSet, idx: torch.Tensor, starts: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, ...]:
    """The images ``idx`` with their objects, each image mirrored with probability 1/2 (labels with it).

    Returns:
        ``(x, patch_labels, obj_ids, obj_img, roi, frac)``: ``(B, 3, S, S)`` normalised images, their patch
        labels, the ids of their objects in ``data``, the batch row of each object, and each object's ROI and
        area fractions on the token grid.
    """
    x = normalise(data.images[idx])
    pl = data.patch_labels[idx]
    obj_ids = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in idx.tolist()])
    obj_img = torch.repeat_interleave(torch.arange(len(idx)), starts[idx + 1] - starts[idx])
    roi = data.obj_roi[obj_ids]
    frac = data.obj_frac[obj_ids]
    flip = torch.rand(len(idx), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pl = torch.where(flip[:, None, None], pl.flip(-1), pl)
    roi = torch.where(flip[obj_img][:, None, None], roi.flip(-1), roi)
    frac = torch.where(flip[obj_img][:, None, None], frac.flip(-1), frac)
    return x, pl, obj_ids, obj_img, roi, frac


def train(recipe: Recipe, seed: int, out_dir: Path, log_every: int = 25, write_card: bool = True,
          save_every: int = 0, init: Path | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Train the demo model and write the weights, the JSON config and (optionally) the model card.

    Returns:
        The JSON config written to ``demo_model.json``.
    """
    torch.set_num_threads(recipe.threads)
    t_start = time.time()
    print(f"Generating {recipe.n_scenes} training scenes ...", flush=True)
    data = make_trainset(recipe, seed)
    t_data = time.time() - t_start
    print(f"  done in {t_data:.0f} s, {len(data.obj_cat)} objects", flush=True)

    model = build_vit(recipe, seed)
    if init is not None:
        # Continue from an earlier stage's weights (prototypes and patch classifier start afresh).
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(str(init)).items()}, strict=True)
    heads = TrainHeads(recipe.embed_dim, len(CATEGORIES))
    opt = _optimizer(model, heads, recipe)

    gen = torch.Generator().manual_seed(seed)
    n = data.images.shape[0]
    # objects grouped by image for batch assembly
    starts = torch.zeros(n + 1, dtype=torch.long)
    starts[1:] = torch.bincount(data.obj_image, minlength=n).cumsum(0)
    weights = {"plain": recipe.w_plain, "phs": recipe.w_phs, "attn": recipe.w_attn, "patch": recipe.w_patch,
               "contrast": recipe.w_contrast, "pool": recipe.w_pool}
    model.train()
    t_train = time.time()
    running: dict[str, float] = {}
    perm = torch.randperm(n, generator=gen)
    cursor = 0
    for step in range(min(stop_at or recipe.steps, recipe.steps)):
        if cursor + recipe.batch > n:
            perm = torch.randperm(n, generator=gen)
            cursor = 0
        idx = perm[cursor : cursor + recipe.batch]
        cursor += recipe.batch
        x, pl, obj_ids, obj_img, roi, frac = _flipped_batch(data, idx, starts, gen)
        for gp in opt.param_groups:
            gp["lr"] = _lr_at(recipe, step)
        parts = losses(model, heads, recipe, x, data.labels[idx], pl, obj_img, data.obj_cat[obj_ids], roi, frac, gen)
        loss = sum(weights[k] * v for k, v in parts.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(heads.parameters()), 1.0)
        opt.step()
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if (step + 1) % log_every == 0 or step == recipe.steps - 1:
            el = time.time() - t_train
            msg = " ".join(f"{k} {v / log_every:.3f}" for k, v in running.items())
            print(f"step {step + 1}/{recipe.steps} {el:.0f} s ({el / (step + 1):.2f} s/step) {msg}", flush=True)
            running = {}
        if save_every and (step + 1) % save_every == 0 and step + 1 < recipe.steps:
            model.eval()
            write_model(model, recipe, seed, out_dir / f"step{step + 1}", {"data_s": round(t_data, 1),
                        "train_s": round(time.time() - t_train, 1), "total_s": round(time.time() - t_start, 1)})
            model.train()
    train_s = time.time() - t_train
    model.eval()
    cfg = write_model(model, recipe, seed, out_dir, {"data_s": round(t_data, 1), "train_s": round(train_s, 1),
                                                      "total_s": round(time.time() - t_start, 1)})
    if write_card:
        write_model_card(cfg, out_dir)
    return cfg


def write_model(model: VisionTransformer, recipe: Recipe, seed: int, out_dir: Path,
                timing: dict[str, float]) -> dict[str, Any]:
    """Write ``demo_model.safetensors`` (fp16) and ``demo_model.json``; returns the JSON config."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out_dir / "demo_model.safetensors"), metadata={"format": "pt", "seed": str(seed)})
    cfg = {
        "vit_kwargs": recipe.vit_kwargs(),
        "mean": list(MEAN),
        "std": list(STD),
        "categories": list(CATEGORIES),
        "scene_size": recipe.scene_size,
        "recipe": {k: v for k, v in asdict(recipe).items() if k != "extra"} | recipe.extra,
        "seed": seed,
        "steps": recipe.steps,
        "training_time_s": timing,
        "torch_threads": recipe.threads,
        "h_on": recipe.h_on_recommended,
        "objective": "phs-consistent (trained to have per-object heads)",
    }
    if recipe.stem != "patch":
        cfg["stem"] = recipe.stem  # read by core.models.backbones.build_model
    (out_dir / "demo_model.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m core.synthetic.train_demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("resources"), help="output folder (default: resources)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=Recipe.steps)
    p.add_argument("--scenes", type=int, default=Recipe.n_scenes, help="pre-generated training scenes")
    p.add_argument("--batch", type=int, default=Recipe.batch)
    p.add_argument("--lr", type=float, default=Recipe.lr)
    p.add_argument("--depth", type=int, default=Recipe.depth)
    p.add_argument("--embed-dim", type=int, default=Recipe.embed_dim)
    p.add_argument("--heads", type=int, default=Recipe.num_heads)
    p.add_argument("--threads", type=int, default=Recipe.threads)
    p.add_argument("--w-phs", type=float, default=Recipe.w_phs)
    p.add_argument("--w-attn", type=float, default=Recipe.w_attn)
    p.add_argument("--w-patch", type=float, default=Recipe.w_patch)
    p.add_argument("--w-contrast", type=float, default=Recipe.w_contrast)
    p.add_argument("--w-pool", type=float, default=Recipe.w_pool)
    p.add_argument("--h-on", type=int, default=Recipe.h_on_recommended, help="recommended h_on to record")
    p.add_argument("--stem", choices=("patch", "conv"), default=Recipe.stem,
                   help="patch embedding: timm's 8x8 projection or core.models.convstem.ConvStem")
    p.add_argument("--no-mixed-counts", action="store_true", help="all scenes with 1-6 objects")
    p.add_argument("--save-every", type=int, default=0, help="also write checkpoints to OUT/stepN every N steps")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these ViT weights (a demo_model.safetensors of an earlier stage)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop after this many steps of the --steps schedule (the weights written are that step's)")
    p.add_argument("--stage", default="", help="free-text note recorded in the JSON (e.g. 'stage 2 of 2')")
    p.add_argument("--card-only", action="store_true",
                   help="only rewrite MODEL_CARD.md from demo_model.json and --eval-md tables")
    p.add_argument("--eval-md", type=Path, nargs="*", default=[], help="evaluation tables for the model card")
    a = p.parse_args(argv)
    if a.card_only:
        cfg = json.loads((a.out / "demo_model.json").read_text())
        print(write_model_card(cfg, a.out, a.eval_md))
        return 0
    recipe = Recipe(steps=a.steps, n_scenes=a.scenes, batch=a.batch, lr=a.lr, depth=a.depth,
                    embed_dim=a.embed_dim, num_heads=a.heads, threads=a.threads, w_phs=a.w_phs,
                    w_attn=a.w_attn, w_patch=a.w_patch, w_contrast=a.w_contrast, w_pool=a.w_pool, h_on_recommended=a.h_on,
                    mixed_counts=not a.no_mixed_counts, stem=a.stem)
    if a.init is not None:
        recipe.extra["init"] = str(a.init)
    if a.stage:
        recipe.extra["stage"] = a.stage
    if a.stop_at:
        recipe.extra["stop_at"] = a.stop_at
    cfg = train(recipe, a.seed, a.out, save_every=a.save_every, init=a.init, stop_at=a.stop_at)
    print(json.dumps(cfg["training_time_s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
