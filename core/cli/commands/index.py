"""``phs index PATH``: build or update the index of a photo folder (incremental, resumable, read-only on photos).

``phs index --status [PATH]`` shows the indexes (of a folder, or all of them) and the files that could not be
indexed, with their reasons, without loading a model; ``--clean-damaged`` with it removes the copies of
damaged index files that repairs moved aside.

Exit status: 0 when every photo is indexed, 1 when some photos failed (the summary names them and why),
2 for an error that stopped the run (one sentence).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from core.cli import plural
from core.errors import PHSError

NAME = "index"
HELP = "Index a photo folder (only new or changed photos are processed); --status shows the indexes' state."
#: Failed files named one by one in the summary (the rest are counted; `--status` lists them all).
NAMED_FAILURES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phs index``."""
    from core.defaults import DEFAULT_MODEL

    parser.add_argument("path", type=Path, nargs="?", help="the photo folder (never written to)")
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
        "--max-file-size", type=float, default=512, metavar="MB",
        help="largest photo file read, in megabytes (default 512); larger files are recorded as failed",
    )  # fmt: skip
    parser.add_argument(
        "--rebuild", action="store_true", help="discard this folder's index for the model first"
    )
    parser.add_argument(
        "--retry-failed", action="store_true",
        help="retry every failed file, even unchanged (files that failed to be read are retried anyway)",
    )  # fmt: skip
    parser.add_argument(
        "--status", action="store_true",
        help="show the indexes (of PATH, or all) and their failed files instead of indexing",
    )  # fmt: skip
    parser.add_argument(
        "--clean-damaged", action="store_true",
        help="with --status: delete the copies of damaged index files that repairs moved aside",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    w = parser.add_argument_group("watching (keep the index current while the folder changes)")
    w.add_argument("--watch", action="store_true",
                   help="after indexing, keep watching the folder and index what changes until Ctrl+C or SIGTERM")
    w.add_argument("--settle", type=float, default=2.0, metavar="S",
                   help="quiet seconds before a run, and the age a photo must reach before it is read (default 2)")
    w.add_argument("--rescan", type=float, default=600.0, metavar="S",
                   help="a full stat pass this often, for changes no event reports, e.g. on network drives; "
                        "0 = never (default 600)")
    w.add_argument("--poll", action="store_true",
                   help="poll the folder instead of asking the system for change events (network drives)")


_PREFIX = re.compile(r"^Cannot (?:open|read|index) .*?: ")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\n``...), so a file name cannot drive the
    terminal; undecodable bytes of a name (surrogate escapes) are shown as ``\\xNN`` too."""
    s = str(text)
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def failure_kind(reason: str) -> str:
    """The reason of a failure without the file name (for grouping), e.g. ``the file is truncated or damaged``."""
    return _PREFIX.sub("", reason, count=1).rstrip(".")


def run(args: argparse.Namespace) -> int:
    """Index the folder, or print the status; 0 all indexed, 1 some photos failed."""
    if args.status:
        return _status(args.path, args.model, clean=args.clean_damaged)
    if args.clean_damaged:
        raise PHSError("--clean-damaged goes with --status: `phs index --status [PATH] --clean-damaged`.")
    if args.path is None:
        raise PHSError("Name the photo folder to index: `phs index PATH` (or `phs index --status` for every index).")
    if not args.path.exists():
        raise PHSError(f"The photo folder {printable(args.path)} does not exist.")
    if not args.path.is_dir():
        raise PHSError(f"{printable(args.path)} is a file, not a folder: name the folder that holds the photos.")
    if args.workers is not None and args.workers < 1:  # before loading a model
        raise PHSError(f"The number of decoding workers must be at least 1 (got {args.workers}).")
    if args.batch_size < 1:
        raise PHSError("The batch size must be at least 1.")
    if not 0 < args.max_file_size < 1e9:
        raise PHSError(f"--max-file-size must be a positive number of megabytes (got {args.max_file_size:g}).")
    if args.watch and not (args.settle >= 0 and args.rescan >= 0):  # also refuses NaN
        raise PHSError("--settle and --rescan take a number of seconds, 0 or more.")
    if args.watch:
        from core.cli.commands._watching import watch
        from core.method.engine import load_engine

        return watch(args, load_engine(args.model or _default_model(), weights=args.weights, device=args.device))
    return _summary(*_index(args))


def _index(args: argparse.Namespace) -> tuple:  # (core.library.IndexReport, engine description)
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
            args.path, engine, batch_size=args.batch_size, workers=args.workers, rebuild=args.rebuild,
            retry_failed=args.retry_failed, progress=progress, max_file_bytes=int(args.max_file_size * 1e6),
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    return report, engine.describe()


def _summary(report, engine: str) -> int:  # report: core.library.IndexReport
    print(
        f"Indexed {plural(report.indexed, 'photo')}, reused {report.reused} by content (touched, renamed or copied photos), skipped "
        f"{report.skipped} unchanged, failed {report.failed}, removed {report.removed} deleted, "
        f"in {report.seconds:.1f} s ({engine}); {plural(report.done_total, 'photo')} searchable."
    )
    for note in report.notes:
        print(printable(note))
    failures = report.failures
    if failures:
        for f in failures[:NAMED_FAILURES]:
            kept = " (its indexed version stays searchable)" if f.kept else ""
            print(f"  failed  {printable(f.rel)}: {printable(failure_kind(f.reason))}{kept}")
        if len(failures) > NAMED_FAILURES:
            kinds = Counter(failure_kind(f.reason) for f in failures[NAMED_FAILURES:])
            for kind, n in kinds.most_common():
                print(f"  {n} more x {printable(kind)}")
        print(f"See every failed file with `phs index --status {printable(report.folder)}`.")
    if report.waiting:
        print(
            f"{plural(report.waiting, 'photo')} could not be read this time (permission, input/output error or "
            "a vanished file) and will be retried by the next `phs index`."
        )
    for path, reason in report.scan_errors:
        print(f"  could not read {printable(path)}: {printable(reason)}")
    return 1 if failures else 0


def _default_model() -> str:
    from core.defaults import DEFAULT_MODEL

    return DEFAULT_MODEL


def _status(folder: Path | None, model: str | None, *, clean: bool) -> int:
    from core.library.store import model_label

    found = [(d, s) for d, s in _indexes(folder) if model is None or model_label(s.get("fingerprint", {})) == model]
    if not found:
        if folder is None:
            print("No index yet; index a photo folder with `phs index PATH`.")
            return 0
        raise PHSError(f"The folder {printable(folder)} has no index yet; run `phs index {printable(folder)}` first.")
    if folder is None:
        print(f"{plural(len(found), 'index', 'indexes')}:")
    for directory, side in found:
        _status_one(directory, side, full=folder is not None, clean=clean)
    return 0


def _indexes(folder: Path | None) -> list[tuple[Path, dict]]:
    """``(directory, sidecar)`` of every index (of ``folder``), also those whose sidecar is lost or damaged but
    whose database records it (marked with ``"lost_sidecar"``)."""
    from core.library import list_indexes, repair
    from core.library.store import folder_key, indexes_root

    found = list_indexes(folder)
    known = {d for d, _ in found}
    root = indexes_root()
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        side = None if d in known else repair.recorded_sidecar(d)
        if side is not None and (folder is None or side.get("folder") == folder_key(folder)):
            found.append((d, {**side, "lost_sidecar": True}))
    return found


def _status_one(directory: Path, side: dict, *, full: bool, clean: bool) -> None:
    from core.library import repair
    from core.library.store import DB_FILE, Database, model_label

    try:
        db = Database(directory / DB_FILE, writable=False, folder=side.get("folder"))
        try:
            counts, records, warning = db.counts(), db.records(), db.stale_warning
        finally:
            db.close()
    except PHSError as err:
        if full:
            raise
        print(f"{printable(side.get('folder'))}  model {printable(model_label(side.get('fingerprint', {})))}: {err}")
        return
    failed = sorted((r.rel, r.error or "") for r in records if r.status == "failed")
    waiting = sorted((r.rel, r.error or "", r.status == "done") for r in records if r.retry)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file() and ".damaged-" not in p.name)
    faiss = side.get("faiss") or {}
    print(
        f"{printable(side.get('folder'))}  model {printable(model_label(side.get('fingerprint', {})))}: "
        f"{plural(counts.get('done', 0), 'photo')} indexed, {counts.get('failed', 0)} failed, "
        f"{len(waiting)} waiting to be retried; FAISS {faiss.get('kind', 'not saved yet')}; "
        f"{size / 1e6:.1f} MB in {directory}"
    )
    if warning:
        print(f"  note: {warning}")
    if side.get("lost_sidecar"):
        print("  note: its description (index.json) is missing or damaged: `phs index` rebuilds it from the database")
    for path, kind in repair.odd_files(directory):
        print(f"  note: {path.name} in the index is {kind}, not a file: `phs index` moves it aside and repairs it")
    if full:
        for rel, reason in failed:
            print(f"  failed  {printable(rel)}: {printable(failure_kind(reason))}")
        for rel, reason, searchable in waiting:
            if searchable:
                print(f"  retry   {printable(rel)}: {printable(failure_kind(reason))} (indexed version searchable)")
    copies = repair.damaged_copies(directory)
    if copies and clean:
        total = sum(repair.copy_bytes(p) for p in copies)
        repair.remove_damaged_copies(directory)
        print(f"  removed {plural(len(copies), 'damaged copy', 'damaged copies')} ({total / 1e6:.1f} MB)")
    elif copies:
        for p in copies:
            print(f"  damaged copy  {printable(p.name)} ({repair.copy_bytes(p) / 1e6:.1f} MB)")
        print(f"  remove them with `phs index --status {printable(side.get('folder'))} --clean-damaged`")
