"""``phs eval``: the paper's retrieval benchmark (MP@k / MAP@k) on synthetic scenes, COCO or PASCAL VOC."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.cli import plural

NAME = "eval"
HELP = "Benchmark visual-prompt retrieval (MP@k, MAP@k) on synthetic scenes, COCO or PASCAL VOC."

DEFAULT_METHODS = "cbir,crop,mask,attn-mask,fa,phs-qo,phs-qd,fa+phs"
_METHOD_HELP = (
    "comma-separated methods: cbir, crop, mask, attn-mask, fa, phs-qo, phs-qd (the shipped two-stage "
    "Query-DB, always reported with phs-qd-exact and their overlap), fa+phs, crop+phs, lvp (the model's "
    "learned visual prompt), red-circle, lvp+phs, or 'all' "
    "(default: cbir,crop,mask,attn-mask,fa,phs-qo,phs-qd,fa+phs)"
)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from err


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phs eval``."""
    from core.defaults import DEFAULT_CANDIDATES, FA_ALPHA, FA_SIGMA

    d = parser.add_argument_group("data")
    d.add_argument("--dataset", choices=("synthetic", "coco", "voc"), default="synthetic")
    d.add_argument("--annotations", type=Path, help="COCO instances JSON, or the VOC20xx folder")
    d.add_argument("--images", type=Path, help="COCO image folder (default: next to the JSON)")
    d.add_argument("--image-set", help="VOC list in ImageSets/Main, e.g. val")
    d.add_argument("--seed", type=int, default=0, help="scene seed (synthetic) or split seed (COCO, VOC)")
    d.add_argument("--queries", type=int, default=None, help="query images (synthetic default 300)")
    d.add_argument("--database", type=int, default=None, help="database images (synthetic default 2000)")
    d.add_argument("--min-objects", type=int, default=None,
                   help="least objects per query image (default 2 for synthetic, 1 for COCO/VOC)")
    d.add_argument("--scene-size", type=int, default=128, help="synthetic scene side in pixels")
    m = parser.add_argument_group("model and methods")
    m.add_argument("--model", default="demo", help="backbone name (default: demo); see `phs models`")
    m.add_argument("--weights", type=Path, help="local weights file (.safetensors / .pth)")
    m.add_argument("--device", default="auto")
    m.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    m.add_argument("--methods", default=DEFAULT_METHODS, help=_METHOD_HELP)
    m.add_argument("--roi", choices=("sum", "max"), default="sum", help="ROI attention (Table A4)")
    m.add_argument("--strategy", default="before+scale",
                   choices=("identity", "after", "before", "after+scale", "before+scale"),
                   help="head-mask strategy (Table A5)")
    m.add_argument("--h-on", type=int, default=None,
                   help="heads kept by PHS (default: the demo model's recommended value, else 5)")
    m.add_argument("--itae", type=float, default=None, metavar="THETA", help="ITAE threshold (off by default)")
    m.add_argument("--prompt", choices=("box", "point", "mask"), default="box")
    m.add_argument("--noise", type=float, nargs="?", const=40.0, default=None, metavar="M",
                   help="also run noisy box prompts (Eqs. A9-A10) with magnitude M pixels (default 40, the paper's)")
    m.add_argument("--noise-scale", choices=("absolute", "image"), default=None,
                   help="absolute: M pixels on every image (the paper; default for coco and voc); image: M at a "
                        "640 px side, scaled to each image (default for synthetic scenes)")
    m.add_argument("--noise-absolute", action="store_const", const="absolute", dest="noise_scale",
                   help=argparse.SUPPRESS)
    m.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                   help="K': Query-Only candidates re-ranked by the shipped Query-DB")
    m.add_argument("--h-on-sweep", type=_int_list, default=[], metavar="1,2,...", help="h_on sweep (Fig. A1)")
    m.add_argument("--fa-alpha", type=float, default=FA_ALPHA, help="FA strength alpha")
    m.add_argument("--fa-sigma", type=float, default=FA_SIGMA, help="FA Gaussian width sigma")
    m.add_argument("--k", type=int, default=100, help="cut-off of MP@k and MAP@k")
    m.add_argument("--objects", type=int, default=None, metavar="N",
                   help="prompt N objects of different categories per query (methods cbir, phs-qo, phs-objects, "
                        "phs-objects-qd; default cbir,phs-qo,phs-objects)")
    m.add_argument("--combine", choices=("and", "or", "not"), default="and",
                   help="with --objects: correct photos hold every prompted category (and), any (or), or the "
                        "first and none of the others (not)")
    m.add_argument("--object-candidates", type=int, default=200, metavar="K",
                   help="with --objects: nearest neighbours of each object scored for every object (default 200)")
    m.add_argument("--localize", action="store_true",
                   help="also measure the proposed boxes on the correct top-k results: kept heads (phs) vs all heads")
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    o = parser.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, help="report folder (default: eval-<dataset>-<model>-s<seed>)")
    o.add_argument("--json", type=Path, default=None, help="also write the summary JSON here")
    o.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the markdown table."""
    import torch

    from core.evaluation.protocol import (
        METHODS,
        EvalConfig,
        evaluate,
        load_split,
        markdown_table,
        write_report,
    )
    from core.method.engine import FAParams, load_engine

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.objects is not None:
        return _run_objects(args)
    methods = list(METHODS) if args.methods.strip() == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    min_objects = args.min_objects if args.min_objects is not None else (2 if args.dataset == "synthetic" else 1)
    t0 = time.time()
    queries, database = load_split(
        args.dataset, args.queries, args.database, seed=args.seed, min_query_objects=min_objects,
        annotations=args.annotations, images=args.images, image_set=args.image_set, size=args.scene_size,
    )
    noise_scale = args.noise_scale or ("image" if args.dataset == "synthetic" else "absolute")
    engine = load_engine(args.model, weights=args.weights, device=args.device, precision=args.precision,
                         itae_theta=args.itae)
    config = EvalConfig(
        methods=methods, k=args.k, h_on=args.h_on, roi=args.roi, strategy=args.strategy, prompt=args.prompt,
        noise=args.noise, noise_absolute=noise_scale == "absolute", h_on_sweep=args.h_on_sweep,
        candidates=args.candidates, localize=args.localize,
        fa=FAParams(alpha=args.fa_alpha, sigma=args.fa_sigma), seed=args.seed, batch_size=args.batch_size,
    )
    if args.methods.strip() == "all":
        from core.defaults import LEARNED_METHODS
        from core.method.lvp import find_prompt

        if find_prompt(engine) is None:
            methods = [m for m in methods if m not in LEARNED_METHODS]
            print(f"phs eval: no learned prompt for {args.model}, so 'all' leaves out lvp and lvp+phs "
                  f"(train one with `phs lvp train --model {args.model} --images DIR`).", file=sys.stderr)
            config.methods = methods
    if not args.quiet:
        print(f"phs eval: {engine.describe()}; {plural(len(queries), 'query image')}, "
              f"{plural(len(database), 'database image')}",
              file=sys.stderr)
    result = evaluate(engine, queries, database, config, progress=not args.quiet,
                      info={"dataset": args.dataset, "seed": args.seed, "min_query_objects": min_objects})
    result.info["seconds"] = round(time.time() - t0, 1)
    out = args.out or Path(f"eval-{args.dataset}-{args.model}-s{args.seed}")
    paths = write_report(result, out, args.dataset)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(paths["json"].read_text())
    print(markdown_table(result, args.dataset))
    print(f"Report: {out} ({', '.join(p.name for p in paths.values())}); {result.info['seconds']} s",
          file=sys.stderr)
    return 0


def _run_objects(args: argparse.Namespace) -> int:
    """``--objects N``: the several-object protocol of :mod:`core.evaluation.objects`."""
    from core.evaluation.objects import ObjectsConfig, evaluate_objects, markdown_table, write_objects_report
    from core.evaluation.protocol import load_split
    from core.method.engine import load_engine

    text = "cbir,phs-qo,phs-objects" if args.methods == DEFAULT_METHODS else args.methods
    config = ObjectsConfig(methods=[m.strip() for m in text.split(",") if m.strip()], objects=args.objects,
                           combine=args.combine, k=args.k, h_on=args.h_on, candidates=args.object_candidates,
                           batch_size=args.batch_size)  # fmt: skip
    config.validate(10**6)  # the options, before loading anything; h_on is checked again against the model
    t0 = time.time()
    min_objects = max(args.min_objects or 0, args.objects)
    queries, database = load_split(
        args.dataset, args.queries, args.database, seed=args.seed, min_query_objects=min_objects,
        annotations=args.annotations, images=args.images, image_set=args.image_set, size=args.scene_size,
    )  # fmt: skip
    engine = load_engine(args.model, weights=args.weights, device=args.device, precision=args.precision,
                         itae_theta=args.itae)  # fmt: skip
    result = evaluate_objects(engine, queries, database, config, progress=not args.quiet,
                              info={"dataset": args.dataset, "seed": args.seed})  # fmt: skip
    result.info["seconds"] = round(time.time() - t0, 1)
    out = args.out or Path(f"eval-objects-{args.combine}-{args.dataset}-{args.model}-s{args.seed}")
    paths = write_objects_report(result, out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(paths["json"].read_text())
    print(markdown_table(result))
    print(f"Report: {out} ({', '.join(p.name for p in paths.values())}); {result.info['seconds']} s", file=sys.stderr)
    return 0
