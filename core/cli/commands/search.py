"""``phs search``: find the photos of an indexed folder that contain what you mark on a query photo.

Coordinates are in pixels of the query photo as displayed (EXIF orientation applied), ``x`` to the right,
``y`` down; a box is ``x0,y0,x1,y1`` (XYXY); a mask is an image of the query's size, white inside.
Without a point, box or mask the whole photo is the query (plain [CLS], CBIR). Identical files are listed
once, with the others as its copies (``+N copies``; ``copies`` in JSON), as the app shows them.

Several objects (``--object`` and ``--exclude``, each ``box:X0,Y0,X1,Y1``, ``point:X,Y`` or ``mask:FILE``,
optionally ``@PHOTO`` for a mark on another photo) each get their own heads and a score per photo, combined
with ``--combine and|or``; an excluded object lowers the photos that hold it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from core.cli import plural
from core.defaults import query_method
from core.errors import PromptError

NAME = "search"
HELP = "Search an indexed folder with a query photo and a point, box or mask on it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phs search`` (the app's search options, named as in the app)."""
    from core.defaults import DEFAULT_CANDIDATES, FA_ALPHA, FA_BLOCKS, FA_SIGMA, METHODS, OBJECT_CANDIDATES

    parser.add_argument("--folder", type=Path, default=None, help="the indexed photo folder (or --all)")
    parser.add_argument("--all", action="store_true",
                        help="search every indexed folder of the model at once (see `phs library list`)")
    parser.add_argument("--image", type=Path, required=True, help="the query photo")
    parser.add_argument(
        "--model", default=None,
        help="model the folder was indexed with (default: the one its index was built with; "
             "the command lists them when there are several)",
    )  # fmt: skip
    parser.add_argument(
        "--weights", type=Path, default=None, help="the local weights file used for indexing, if any"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p = parser.add_argument_group("prompt (pixels of the query photo, x right, y down)")
    p.add_argument("--point", action="append", default=[], metavar="X,Y", help="a click on the object (repeatable)")
    p.add_argument("--negative-point", action="append", default=[], metavar="X,Y",
                   help="a click on what is not wanted (repeatable)")
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object (XYXY pixels; may be negative)")
    p.add_argument("--mask", type=Path, help="a mask image, white (non-zero) on the object")
    o = parser.add_argument_group("several objects (instead of --point/--box/--mask)")
    o.add_argument("--object", action="append", default=[], metavar="SPEC",
                   help="a wanted object, each with its own heads (repeatable): box:X0,Y0,X1,Y1, point:X,Y or "
                        "mask:FILE, optionally followed by @PHOTO for a mark on another photo")
    o.add_argument("--exclude", action="append", default=[], metavar="SPEC",
                   help="an object whose photos are lowered (repeatable; same SPEC as --object)")
    o.add_argument("--combine", choices=("and", "or"), default="and",
                   help="and: photos holding every wanted object (default); or: any of them")
    o.add_argument("--object-candidates", type=int, default=OBJECT_CANDIDATES, metavar="K",
                   help=f"nearest neighbours of each object scored for every object (default {OBJECT_CANDIDATES})")
    m = parser.add_argument_group("method")
    m.add_argument("--method", choices=METHODS, default="phs",
                   help="how the prompt shapes the query (default phs; fa+phs = heads scored under FA)")
    m.add_argument("--fa", action="store_true", help="foveal attention (FALIP): same as --method fa+phs")
    m.add_argument("--h-on", type=int, default=None, help="heads kept (default: the model's recommended value)")
    m.add_argument("--roi", choices=("sum", "max"), default="sum", help="ROI attention: Sum or Max (default sum)")
    m.add_argument("--strategy", default="before+scale",
                   choices=("identity", "after", "before", "after+scale", "before+scale"),
                   help="where the head mask applies (default before+scale)")
    m.add_argument("--fa-layers", type=int, default=FA_BLOCKS, help="last blocks FA acts on")
    m.add_argument("--fa-alpha", type=float, default=FA_ALPHA, help="FA strength alpha")
    m.add_argument("--fa-sigma", type=float, default=FA_SIGMA, help="FA Gaussian width sigma")
    m.add_argument("--itae", type=float, default=None, metavar="THETA",
                   help="ITAE: attenuate patches whose query norm exceeds THETA, on the query photo")
    m.add_argument("--force-on", type=int, action="append", default=[], metavar="I",
                   help="always keep head I (repeatable)")
    m.add_argument("--force-off", type=int, action="append", default=[], metavar="I",
                   help="never keep head I (repeatable)")
    f = parser.add_argument_group("filters (in the search: the top k are the best of the photos that pass)")
    f.add_argument("--after", metavar="DATE", help="taken on or after DATE (YYYY, YYYY-MM or YYYY-MM-DD; the EXIF "
                   "date, else the file's time)")
    f.add_argument("--before", metavar="DATE", help="taken before DATE (same forms)")
    f.add_argument("--under", metavar="SUBFOLDER", help="only photos under this subfolder of the photo folder(s)")
    f.add_argument("--type", metavar="EXT[,EXT]", help="only these file types, e.g. jpg,heic")
    r = parser.add_argument_group("results")
    r.add_argument("--k", type=int, default=20, help="number of results (default 20)")
    r.add_argument("--mode", choices=("qo", "qd"), default="qo", help="qo: Query-Only; qd: Query-DB re-rank")
    r.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                   help=f"Query-Only candidates re-ranked in qd mode (default {DEFAULT_CANDIDATES})")
    r.add_argument("--json", action="store_true",
                   help='print [{"path": ..., "score": ..., "copies": [...], "is_query": ...}, ...] best first')
    r.add_argument("--propose", action="store_true",
                   help="also propose where the marked object is in each result: its box (x0,y0,x1,y1 pixels of "
                        "that photo), from the query's kept heads")


def _numbers(text: str, n: int, what: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise PromptError(f"{what} expects {n} comma-separated numbers, not '{text}'.")
    return values


def build_prompt(args: argparse.Namespace):  # -> core.method.prompts.Prompt | None
    """The prompt described by the command-line options, ``None`` when there is none."""
    import numpy as np

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


def parse_object(text: str, excluded: bool = False):  # -> core.search.objects.ObjectSpec
    """An object from ``KIND:VALUE[@PHOTO]`` (``box:X0,Y0,X1,Y1``, ``point:X,Y``, ``mask:FILE``).

    The last ``@`` starts the photo the mark is on (default: ``--image``); coordinates are its pixels.

    Raises:
        PromptError: a malformed SPEC, or a mask or photo file that cannot be read (one sentence).
    """
    import numpy as np

    from core.imageio import load_image, read_photo_bytes
    from core.method.prompts import Box, Mask, Point, Prompt
    from core.search.objects import ObjectSpec

    flag = "--exclude" if excluded else "--object"
    kind, sep, rest = str(text).partition(":")
    value, at, photo = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not sep or kind not in ("box", "point", "mask") or not value or (at and not photo):
        raise PromptError(f"{flag} expects box:X0,Y0,X1,Y1, point:X,Y or mask:FILE, optionally @PHOTO, not '{text}'.")
    if photo:
        read_photo_bytes(Path(photo))  # a missing photo is one sentence, before the model loads
    if kind == "box":
        prompt = Prompt(box=Box(*_numbers(value, 4, f"{flag} box")))
    elif kind == "point":
        prompt = Prompt(points=(Point(*_numbers(value, 2, f"{flag} point")),))
    else:
        prompt = Prompt(mask=Mask(np.asarray(load_image(Path(value)).convert("L")) > 127))
    return ObjectSpec(prompt, photo=Path(photo) if photo else None, excluded=excluded)


def indexed_model(folder: Path) -> str:
    """The name of the model that ``folder`` was indexed with.

    Raises:
        IndexMissingError: the folder has no index.
        PHSError: it has several; the sentence names them and asks for ``--model``.
    """
    from core.errors import PHSError
    from core.library.store import IndexMissingError, list_indexes

    found = list_indexes(folder)
    models = sorted({str(side.get("fingerprint", {}).get("model")) for _, side in found})
    if not models:
        raise IndexMissingError(f"{folder} has not been indexed yet; run `phs index {folder}` first.")
    if len(models) > 1:
        raise PHSError(f"{folder} is indexed with several models ({', '.join(models)}); choose one with --model.")
    return models[0]


def library_model() -> str:
    """The model of the indexed library (``--all`` without ``--model``); a sentence when there are several."""
    from core.errors import PHSError
    from core.library.catalog import library_folders
    from core.library.store import IndexMissingError

    models = sorted({e.model for e in library_folders()})
    if not models:
        raise IndexMissingError("No folder is indexed yet; run `phs index FOLDER` first.")
    if len(models) > 1:
        raise PHSError(f"The library is indexed with several models ({', '.join(models)}); choose one with --model.")
    return models[0]


def open_gallery(args: argparse.Namespace, engine, model: str):  # -> Searcher | MultiGallery
    """One folder's searcher, or with ``--all`` every present indexed folder of ``model`` as one gallery (a
    folder whose index cannot be opened now is left out with a sentence on stderr)."""
    import sys

    from core.errors import PHSError
    from core.library.catalog import library_folders
    from core.search.multi import MultiGallery
    from core.search.searcher import Searcher

    if not args.all:
        return Searcher(args.folder, engine)
    members = []
    for entry in library_folders(model):
        if not entry.present:
            print(f"phs: left out {entry.folder}: the folder is not there now.", file=sys.stderr)
            continue
        try:
            members.append(Searcher(entry.folder, engine))
        except PHSError as err:
            print(f"phs: left out {entry.folder}: {err}", file=sys.stderr)
    if not members:
        raise PHSError(f"No indexed folder of the model {model} can be searched now; see `phs library list`.")
    return MultiGallery(members)


def run(args: argparse.Namespace) -> int:
    """Search and print the ranked photos."""
    from core.search.service import QuerySpec

    if args.fa and args.method not in ("phs", "fa+phs"):
        raise PromptError("--fa combines with the phs method only; use --method fa for FA alone.")
    method = query_method(args.method, args.fa)
    from core.method.engine import FAParams

    if not (abs(args.fa_alpha) <= 100 and 0 < args.fa_sigma <= 1e5):  # NaN fails both
        raise PromptError(
            f"FA needs --fa-alpha between -100 and 100 and --fa-sigma above 0 and at most 100000 pixels "
            f"(got {args.fa_alpha:g} and {args.fa_sigma:g})."
        )
    prompt = build_prompt(args)  # validate everything cheap before loading anything heavy
    objects = [parse_object(t) for t in args.object] + [parse_object(t, True) for t in args.exclude]
    if objects and prompt is not None:
        raise PromptError("Mark with either --point/--box/--mask or --object/--exclude, not both.")
    if prompt is None and not objects and (args.force_on or args.force_off):
        print("phs search: --force-on/--force-off choose heads for a prompt; without a point, box or mask the "
              "whole photo is the query and they have no effect.", file=sys.stderr)
    from core.library.filters import PhotoFilter

    photo_filter = PhotoFilter.from_text(args.after, args.before, args.under, args.type)
    spec = QuerySpec(
        photo=args.image, prompt=prompt, method=method, h_on=args.h_on, roi=args.roi, strategy=args.strategy,
        fa=FAParams(args.fa_alpha, args.fa_sigma, args.fa_layers), itae_theta=args.itae,
        force_on=tuple(args.force_on), force_off=tuple(args.force_off), mode=args.mode, k=args.k,
        candidates=args.candidates, objects=tuple(objects), combine=args.combine,
        object_candidates=args.object_candidates,
    )  # fmt: skip
    if args.all == (args.folder is not None):
        raise PromptError("Say where to search: --folder F for one indexed folder, or --all for every one.")
    if not args.all and args.folder.exists() and not args.folder.is_dir():
        raise PromptError(f"--folder {args.folder} is a file, not a folder: name the folder that holds the photos.")
    if not args.all and not args.folder.is_dir():
        raise PromptError(f"The photo folder {args.folder} does not exist (moved, renamed or unplugged?).")
    from core.imageio import read_photo_bytes

    read_photo_bytes(args.image)  # a missing, empty or non-regular query file is one sentence, before the model
    model = args.model
    if model is None:
        model = library_model() if args.all else indexed_model(args.folder)
    from core.method.engine import load_engine
    from core.search.copies import group_hits
    from core.search.service import QueryService

    engine = load_engine(model, weights=args.weights, device=args.device, download=args.model is not None)
    with open_gallery(args, engine, model) as gallery:
        gallery.set_filter(photo_filter)
        outcome = QueryService(engine, gallery).run(spec)
        for warning in gallery.warnings:  # e.g. the newest changes could not be read
            print(f"phs: note: {warning}", file=sys.stderr)
        hits = list(outcome.hits)
        rows = [{"path": r.path, "score": round(float(r.score), 6), "copies": list(r.copies), "is_query": r.is_query}
                for r in group_hits(hits, str(args.image))]  # fmt: skip
        if objects and outcome.object_scores is not None:
            at = {str(h.path): i for i, h in enumerate(hits)}
            for row in rows:
                row["objects"] = [round(float(v), 6) for v in outcome.object_scores[at[row["path"]]].tolist()]
        if args.propose:
            _add_proposals(engine, outcome, rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        from core.cli.commands.index import printable

        for rank, row in enumerate(rows, 1):
            notes = ([f"+{plural(len(row['copies']), 'copy', 'copies')}"] if row["copies"] else []) + (
                ["the query photo"] if row["is_query"] else [])
            box = f"  box {','.join(f'{v:.0f}' for v in row['box'])}" if "box" in row else ""
            each = "  [" + " ".join(f"{v:.4f}" for v in row["objects"]) + "]" if "objects" in row else ""
            note = f"  ({'; '.join(notes)})" if notes else ""
            # A name cannot drive the terminal.
            print(f"{rank:4d}  {row['score']:.4f}  {printable(row['path'])}{box}{note}{each}")
    return 0


def _add_proposals(engine, outcome, rows: list[dict]) -> None:
    """Add each hit's proposed ``box`` (XYXY pixels of that photo) and ``proposal_score`` to its row."""
    from core.method.propose import propose_results

    if outcome.spec.prompt is None:
        raise PromptError("--propose needs a point, box or mask on the query photo.")
    sel = outcome.selection
    props = propose_results(engine, outcome.spec.prompt, [r["path"] for r in rows],
                            None if sel is None else sel.selected, None if sel is None else sel.head_mask)  # fmt: skip
    for row, p in zip(rows, props):
        row["box"] = [round(v, 1) for v in p.box]
        row["proposal_score"] = round(p.score, 4)
