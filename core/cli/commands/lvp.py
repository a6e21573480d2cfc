"""``phs lvp train``: learn a visual prompt (seed 004) for a model; ``phs lvp info``: list the prompts found.

A learned prompt is trained for one model on any photo folder (or on generated scenes with ``--images
synthetic``) and kept in the data directory per model; a killed run resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import plural
from core.errors import PHSError

NAME = "lvp"
HELP = "Learned visual prompts (seed 004): train one for a model (`phs lvp train`) or list them (`phs lvp info`)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``phs lvp train`` and ``phs lvp info``."""
    from core.method.lvp_config import TrainConfig

    sub = parser.add_subparsers(dest="lvp_command", metavar="ACTION")
    t = sub.add_parser("train", formatter_class=parser.formatter_class, help="train a learned prompt for a model", description="Train a learned visual "
                       "prompt for a model: a patch that draws the last layer's [CLS] attention to where it is pasted.")
    t.add_argument("--model", required=True, help="model name (see `phs models`)")
    t.add_argument("--weights", type=Path, default=None, help="a local weights file (.safetensors or .pth)")
    t.add_argument("--images", required=True, metavar="DIR",
                   help="a photo folder to train on (read only), or `synthetic` for generated scenes")
    t.add_argument("--steps", type=int, default=TrainConfig.steps, help=f"optimisation steps (default {TrainConfig.steps})")
    t.add_argument("--shape", choices=("circle", "square"), default=TrainConfig.shape,
                   help=f"hollow shape of the patch (default {TrainConfig.shape})")
    t.add_argument("--ratio", type=float, default=TrainConfig.ratio,
                   help=f"inner to outer size of the hollow shape, 0 = filled (default {TrainConfig.ratio})")
    t.add_argument("--size", type=int, default=None,
                   help="patch side in pixels of the model input (default three tokens, e.g. 24 for the demo model)")
    t.add_argument("--out", type=Path, default=None,
                   help="output .safetensors (default: the model's prompt in the data directory)")
    t.add_argument("--batch", type=int, default=TrainConfig.batch, help=f"images per step (default {TrainConfig.batch})")
    t.add_argument("--lr", type=float, default=TrainConfig.lr, help=f"learning rate (default {TrainConfig.lr})")
    t.add_argument("--sigma", type=float, default=TrainConfig.sigma,
                   help=f"width of the Gaussian target in tokens (default {TrainConfig.sigma})")
    t.add_argument("--seed", type=int, default=TrainConfig.seed, help="seed of the prior, images and positions (default 0)")
    t.add_argument("--scenes", type=int, default=TrainConfig.scenes,
                   help=f"generated scenes with --images synthetic (default {TrainConfig.scenes})")
    t.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every,
                   help=f"steps between checkpoints (default {TrainConfig.checkpoint_every})")
    t.add_argument("--gain-images", type=int, default=TrainConfig.gain_images,
                   help="held-out images for the attention gain written with the prompt, 0 to skip "
                   f"(default {TrainConfig.gain_images})")
    t.add_argument("--fresh", action="store_true", help="ignore a checkpoint of an earlier run and start over")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    i = sub.add_parser("info", formatter_class=parser.formatter_class, help="list the learned prompts found", description="List the learned prompts on "
                       "this machine (data directory and the shipped demo prompt).")
    i.add_argument("--model", default=None, help="only the prompts of this model")


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``train`` or ``info``."""
    if args.lvp_command == "train":
        return _train(args)
    if args.lvp_command == "info":
        return _info(args.model)
    raise PHSError("Say what to do: `phs lvp train ...` or `phs lvp info`.")


def _train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from core.method import lvp
    from core.method.engine import load_engine
    from core.method.lvp_train import (
        TrainConfig,
        TrainProgress,
        checkpoint_path,
        engine_resample,
        train_prompt,
    )
    from core.synthetic.training_images import training_pools

    if args.threads is not None:
        if args.threads < 1:
            raise PHSError(f"--threads must be at least 1, got {args.threads}.")
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(shape=args.shape, ratio=args.ratio, size=args.size, steps=args.steps, batch=args.batch,
                      lr=args.lr, sigma=args.sigma, seed=args.seed, scenes=args.scenes,
                      checkpoint_every=args.checkpoint_every, gain_images=args.gain_images)
    cfg.check()
    synthetic = str(args.images) == "synthetic"
    if not synthetic and not Path(args.images).expanduser().is_dir():
        raise PHSError(f"The image folder {args.images} does not exist or is not a folder (or say `synthetic`).")
    engine = load_engine(args.model, weights=args.weights, device=args.device, precision="fp32")
    out = (args.out or lvp.prompt_path(engine)).with_suffix(".safetensors")
    pool, eval_pool, label = training_pools(args.images, cfg, engine.input_size, engine_resample(engine))
    if checkpoint_path(out).is_file() and not args.fresh and not args.quiet:
        print(f"Resuming from {checkpoint_path(out)} if it matches these settings.", file=sys.stderr)
    bar = None

    def progress(p: TrainProgress) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=p.steps, initial=p.resumed_from, unit="step", desc="Training prompt", dynamic_ncols=True)
        bar.set_postfix(loss=f"{p.loss:.3f}", attn_on_target=f"{p.attn_on_target:.3f}", refresh=False)
        bar.update(p.step - bar.n)

    try:
        prompt = train_prompt(engine, pool, cfg, out, progress=progress, resume=not args.fresh,
                              eval_pool=eval_pool, images_label=label)
    except OSError as err:
        raise PHSError(f"Cannot write the prompt to {out}: {err.strerror or err}.") from err
    finally:
        if bar is not None:
            bar.close()
    m = prompt.meta
    print(f"Wrote {out} and {out.with_suffix('.json').name}: {plural(m['steps'], 'step')} in {m['train_seconds']} s, "
          f"final loss {m['final_loss']}, attention on target {m['final_attn_on_target']} ({engine.describe()}).")
    if "attention_gain" in m:
        g = m["attention_gain"]
        print("Attention gain per layer, learned prompt: " + ", ".join(f"{v:+.2f}" for v in g["lvp"]))
        print("Attention gain per layer, red circle:     " + ", ".join(f"{v:+.2f}" for v in g["red-circle"]))
    return 0


def _info(model: str | None) -> int:
    from core.method.lvp import list_prompts

    found = list_prompts(model)
    if not found:
        which = f" for the model '{model}'" if model else ""
        raise PHSError(f"No learned prompt{which} yet; train one with `phs lvp train --model M --images DIR`.")
    for path, meta in found:
        fp = meta.get("fingerprint", {})
        print(f"{path}")
        print(f"  model {fp.get('model', '?')} ({fp.get('weights', '?')}), {meta.get('shape')} ratio {meta.get('ratio')}, "
              f"{meta.get('size')} px, {plural(int(meta.get('steps') or 0), 'step')} on {meta.get('images', '?')}")
        print(f"  final loss {meta.get('final_loss')}, attention on target {meta.get('final_attn_on_target')}")
        gain = meta.get("attention_gain")
        if gain:
            print("  attention gain per layer: learned " + ", ".join(f"{v:+.2f}" for v in gain["lvp"])
                  + "; red circle " + ", ".join(f"{v:+.2f}" for v in gain["red-circle"]))
    return 0
