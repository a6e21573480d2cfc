"""``phs index PATH``: build or update the index of a photo folder (incremental, resumable, read-only on photos).

``phs index --status PATH`` shows the indexes of a folder and the files that could not be indexed, with
their reasons, without loading a model.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from core.errors import PHSError

NAME = "index"
HELP = "Index a photo folder (only new or changed photos are processed); --status shows an index's state."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phs index``."""
    from core.defaults import DEFAULT_MODEL

    parser.add_argument("path", type=Path, help="the photo folder (never written to)")
    parser.add_argument(
        "--model",
        default=None,
        help=f"model name (default {DEFAULT_MODEL}; see `phs models`); with --status, a filter",
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="a local weights file (.safetensors or .pth)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="photos per model call and per commit (default 32)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding threads (default: half the cores on the CPU, all on a GPU, at most 8)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="discard this folder's index for the model first"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="retry files that failed before, even if unchanged"
    )
    parser.add_argument(
        "--status", action="store_true", help="show the folder's indexes and failed files instead of indexing"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


_PREFIX = re.compile(r"^Cannot (?:open|read|index) .*?: ")


def failure_kind(reason: str) -> str:
    """The reason of a failure without the file name (for grouping), e.g. ``the file is truncated or damaged``."""
    return _PREFIX.sub("", reason, count=1).rstrip(".")


def run(args: argparse.Namespace) -> int:
    """Index the folder, or print its status."""
    if args.status:
        return _status(args.path, args.model)
    if not args.path.is_dir():
        raise PHSError(f"The photo folder {args.path} does not exist or is not a folder.")
    if args.workers is not None and args.workers < 1:  # before loading a model
        raise PHSError(f"The number of decoding workers must be at least 1 (got {args.workers}).")
    if args.batch_size < 1:
        raise PHSError("The batch size must be at least 1.")
    from tqdm import tqdm

    from core.library import IndexProgress, index_folder
    from core.method.engine import load_engine

    engine = load_engine(args.model or _default_model(), weights=args.weights, device=args.device)
    bar = None

    def progress(p: IndexProgress) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=p.total, unit="photo", desc="Indexing", dynamic_ncols=True)
        bar.set_postfix(failed=p.failed, reused=p.reused, refresh=False)
        bar.update(p.done - bar.n)  # tqdm throttles redraws and computes the rate and ETA

    try:
        report = index_folder(
            args.path,
            engine,
            batch_size=args.batch_size,
            workers=args.workers,
            rebuild=args.rebuild,
            retry_failed=args.retry_failed,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"Indexed {report.indexed} photos, reused {report.reused} (renamed or duplicated), skipped "
        f"{report.skipped} unchanged, failed {report.failed}, removed {report.removed} deleted, "
        f"in {report.seconds:.1f} s ({engine.describe()})."
    )
    for note in report.notes:
        print(note)
    if report.failures:
        kinds = Counter(failure_kind(f.reason) for f in report.failures)
        for kind, n in kinds.most_common():
            print(f"  {n} x {kind}")
        print(f"See every failed file with `phs index --status {report.folder}`.")
    for path, reason in report.scan_errors:
        print(f"  could not read {path}: {reason}")
    return 0


def _default_model() -> str:
    from core.defaults import DEFAULT_MODEL

    return DEFAULT_MODEL


def _status(folder: Path, model: str | None) -> int:
    from core.library.store import DB_FILE, Database, list_indexes, model_label

    found = [
        (d, s)
        for d, s in list_indexes(folder)
        if model is None or model_label(s.get("fingerprint", {})) == model
    ]
    if not found:
        raise PHSError(f"The folder {folder} has no index yet; run `phs index {folder}` first.")
    for directory, side in found:
        db = Database(directory / DB_FILE, writable=False, folder=side.get("folder"))
        try:
            counts = db.counts()
            failed = sorted((r.rel, r.error or "") for r in db.records() if r.status == "failed")
        finally:
            db.close()
        size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
        faiss = side.get("faiss") or {}
        print(
            f"{side.get('folder')}  model {model_label(side.get('fingerprint', {}))}: {counts.get('done', 0)} photos "
            f"indexed, {counts.get('failed', 0)} failed; FAISS {faiss.get('kind', 'not saved yet')}; "
            f"{size / 1e6:.1f} MB in {directory}"
        )
        for rel, reason in failed:
            print(f"  failed  {rel}: {failure_kind(reason)}")
    return 0
