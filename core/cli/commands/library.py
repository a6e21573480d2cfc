"""``phs library``: the indexed folders, whoever indexed them, and removing one's index from disk.

``phs library list`` prints one line per indexed folder and model (photos, failed, size on disk, last change);
``phs library remove F`` deletes F's index (the photo folder is never touched). Neither loads a model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

NAME = "library"
HELP = "List the indexed folders (`phs library list`) or delete a folder's index (`phs library remove F`)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``list`` and ``remove``."""
    sub = parser.add_subparsers(dest="library_command", metavar="{list,remove}", required=True)
    ls = sub.add_parser("list", help="every indexed folder: model, photos, failed, size on disk, last change")
    ls.add_argument("--model", default=None, help="only this model's indexes (default: every model)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    rm = sub.add_parser("remove", help="delete a folder's index from disk (the photos are not touched)")
    rm.add_argument("folder", type=Path, help="the photo folder whose index goes (it may be gone already)")
    rm.add_argument("--model", default=None, help="only this model's index (default: every model's)")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def run(args: argparse.Namespace) -> int:
    """List or remove."""
    from core.cli import plural
    from core.cli.commands.index import printable
    from core.library.catalog import library_folders, remove_folder

    if args.library_command == "remove":
        for entry in remove_folder(args.folder, args.model):
            print(f"Removed the {entry.model} index of {printable(entry.folder)} ({_size(entry.bytes_on_disk)}).")
        return 0
    entries = library_folders(args.model)
    if args.json:
        print(json.dumps([
            {"folder": e.folder, "model": e.model, "photos": e.photos, "failed": e.failed,
             "bytes": e.bytes_on_disk, "last_change": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.last_change)),
             "present": e.present}
            for e in entries
        ], indent=1))  # fmt: skip
        return 0
    if not entries:
        print("No folder is indexed yet; `phs index FOLDER` indexes one.")
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_change))
        gone = "" if e.present else "  (folder not there now)"
        print(f"{printable(e.folder)}  {e.model}: {plural(e.photos, 'photo')}, {e.failed} failed, "
              f"{_size(e.bytes_on_disk)}, changed {when}{gone}")  # fmt: skip
    return 0
