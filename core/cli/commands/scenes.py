"""``phs scenes OUT_DIR``: write synthetic scenes (JPEG) and their COCO ``annotations.json``.

The folder serves as the offline demo gallery and as an evaluation set that :func:`core.evaluation.datasets.load_coco`
or :func:`core.evaluation.datasets.load_synthetic` reads back.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.cli import plural
from core.errors import PHSError

NAME = "scenes"
HELP = "Write N synthetic multi-object scenes (JPEG) and a COCO annotations.json into a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``phs scenes``."""
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", type=Path, help="folder to write (new, empty or a previous output)"
    )
    parser.add_argument("--n", type=int, default=200, help="number of scenes (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="image size (default 320 240)")
    parser.add_argument("--width", type=int, help="image width (alternative to --size)")
    parser.add_argument("--height", type=int, help="image height (alternative to --size)")
    parser.add_argument("--min-objects", type=int, default=1, help="least objects per scene (default 1)")
    parser.add_argument("--max-objects", type=int, default=6, help="most objects per scene (default 6)")
    parser.add_argument(
        "--min-visible",
        type=float,
        default=0.3,
        help="least visible fraction of an object's area; more hidden objects are not drawn (default 0.3)",
    )
    parser.add_argument("--quality", type=int, default=92, help="JPEG quality 1-95 (default 92)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _size(args: argparse.Namespace) -> tuple[int, int]:
    if args.size is not None and (args.width is not None or args.height is not None):
        raise PHSError("Give the image size either with --size W H or with --width/--height, not both.")
    w, h = args.size if args.size is not None else (args.width or 320, args.height or 240)
    if w < 32 or h < 32 or w > 8192 or h > 8192:
        raise PHSError(f"The image size must be between 32 and 8192 pixels per side, got {w}x{h}.")
    return int(w), int(h)


def run(args: argparse.Namespace) -> int:
    """Generate the scenes; user errors raise :class:`core.errors.PHSError`."""
    from core.synthetic.scene_folder import write_scene_folder

    size = _size(args)
    if args.n < 1:
        raise PHSError(f"--n must be at least 1, got {args.n}.")
    if args.seed < 0:
        raise PHSError(f"--seed must be non-negative, got {args.seed}.")
    if not 1 <= args.min_objects <= args.max_objects:
        raise PHSError(
            f"Need 1 <= --min-objects <= --max-objects, got {args.min_objects} and {args.max_objects}."
        )
    if not 0.0 < args.min_visible <= 1.0:
        raise PHSError(f"--min-visible must be in (0, 1], got {args.min_visible}.")
    if not 1 <= args.quality <= 95:
        raise PHSError(f"--quality must be between 1 and 95, got {args.quality}.")

    tty = sys.stderr.isatty() and not args.quiet

    def progress(done: int, total: int) -> None:
        if tty and (done == total or done % 25 == 0):
            print(f"\r{done}/{total} scenes", end="\n" if done == total else "", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        ann = write_scene_folder(
            args.out_dir,
            args.n,
            args.seed,
            size,
            min_objects=args.min_objects,
            max_objects=args.max_objects,
            min_visible=args.min_visible,
            quality=args.quality,
            progress=progress,
        )
    except ValueError as err:  # e.g. the objects do not fit into a tiny image
        raise PHSError(str(err)) from err
    except OSError as err:
        raise PHSError(f"Cannot write into {args.out_dir}: {err.strerror or err}.") from err
    if not args.quiet:
        print(
            f"Wrote {plural(args.n, 'scene')} ({size[0]}x{size[1]}) and {ann.name} to {ann.parent} in {time.perf_counter() - t0:.1f} s."
        )
    return 0
