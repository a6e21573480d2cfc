"""``phs search``: find the photos of an indexed folder that contain what you mark on a query photo.

Coordinates are in pixels of the query photo as displayed (EXIF orientation applied), ``x`` to the right,
``y`` down; a box is ``x0,y0,x1,y1`` (XYXY); a mask is an image of the query's size, white inside.
Without a point, box or mask the whole photo is the query (plain [CLS], CBIR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from core.errors import PromptError

NAME = "search"
HELP = "Search an indexed folder with a query photo and a point, box or mask on it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phs search``."""
    from core.defaults import DEFAULT_MODEL

    parser.add_argument("--folder", type=Path, required=True, help="the indexed photo folder")
    parser.add_argument("--image", type=Path, required=True, help="the query photo")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model the folder was indexed with (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="the local weights file used for indexing, if any"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument(
        "--point", action="append", default=[], metavar="X,Y", help="a click on the object (repeatable)"
    )
    parser.add_argument(
        "--negative-point",
        action="append",
        default=[],
        metavar="X,Y",
        help="a click on what is not wanted (repeatable)",
    )
    parser.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object (XYXY pixels)")
    parser.add_argument("--mask", type=Path, help="a mask image, white (non-zero) on the object")
    parser.add_argument("--k", type=int, default=20, help="number of results (default 20)")
    parser.add_argument(
        "--mode", choices=("qo", "qd"), default="qo", help="qo: Query-Only; qd: Query-DB re-rank"
    )
    parser.add_argument(
        "--candidates", type=int, default=1000, help="QO candidates re-ranked in qd mode (default 1000)"
    )
    parser.add_argument("--h-on", type=int, default=5, help="heads kept by PHS (default 5)")
    parser.add_argument(
        "--json", action="store_true", help='print [{"path": ..., "score": ...}, ...] best first'
    )


def _numbers(text: str, n: int, what: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != n or not all(np.isfinite(values)):
        raise PromptError(f"{what} expects {n} comma-separated numbers, not '{text}'.")
    return values


def build_prompt(args: argparse.Namespace):  # -> core.method.prompts.Prompt | None
    """The prompt described by the command-line options, ``None`` when there is none."""
    from core.imageio import load_image
    from core.method.prompts import Box, Mask, Point, Prompt

    points = [Point(*_numbers(p, 2, "--point")) for p in args.point]
    points += [Point(*_numbers(p, 2, "--negative-point"), positive=False) for p in args.negative_point]
    box = Box(*_numbers(args.box, 4, "--box")) if args.box else None
    mask = None
    if args.mask is not None:
        img = load_image(args.mask)
        mask = Mask(np.asarray(img.convert("L")) > 127)
    if not points and box is None and mask is None:
        return None
    return Prompt(points=tuple(points), box=box, mask=mask)


def run(args: argparse.Namespace) -> int:
    """Search and print the ranked photos."""
    if args.k < 1:
        raise PromptError("--k must be at least 1.")
    from core.imageio import load_image
    from core.method.engine import load_engine
    from core.search.searcher import Searcher, query_feature

    prompt = build_prompt(args)  # validate the prompt before loading anything heavy
    query = load_image(args.image)
    engine = load_engine(args.model, weights=args.weights, device=args.device)
    with Searcher(args.folder, engine) as searcher:
        feature, mask = query_feature(engine, query, prompt, h_on=args.h_on)
        hits = searcher.search(feature, args.k, mode=args.mode, head_mask=mask, candidates=args.candidates)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:4d}  {h.score:.4f}  {h.path}")
    return 0
