"""Walk a photo folder: a generator of candidate photo files, read-only, robust to odd trees.

* Hidden entries (name starting with ``.``) and system folders (recycle bins, NAS thumbnail folders,
  macOS resource forks, ``lost+found``) are skipped.
* Folder symlinks are followed, but every real folder is visited once (keyed by ``(st_dev, st_ino)``), so
  symlink loops and links back into the tree end the walk instead of recursing forever.
* File symlinks are followed only to regular files: a link to a FIFO, a device or a folder, and a broken
  link are skipped (reading a FIFO would block the indexer forever).
* Folders that cannot be listed are reported through ``on_error`` and skipped.

Paths are yielded relative to the root in POSIX form with ``/`` separators (:attr:`ScannedFile.rel`), in a
deterministic order (sorted names, depth first).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.imageio import SUPPORTED_SUFFIXES

#: Folder names skipped wherever they appear (compared case-insensitively).
SYSTEM_FOLDERS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        "$RECYCLE.BIN",
        "System Volume Information",
        "lost+found",
        "@eaDir",  # Synology thumbnails
        "#recycle",
        "#snapshot",
        "__MACOSX",
        "RECYCLER",
        ".Trashes",
    )
)


@dataclass(frozen=True)
class ScannedFile:
    """A photo file found by :func:`scan_folder`.

    Attributes:
        path: Absolute path as reached from the root (symlinks not resolved).
        rel: Path relative to the root, POSIX separators; the file's key in the index.
        size: Size in bytes of the (symlink target) file.
        mtime_ns: Modification time in nanoseconds of the (symlink target) file.
    """

    path: Path
    rel: str
    size: int
    mtime_ns: int


def is_skipped_name(name: str) -> bool:
    """Return whether a file or folder name is hidden or a known system folder."""
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def scan_folder(
    root: str | Path,
    *,
    suffixes: frozenset[str] = SUPPORTED_SUFFIXES,
    on_error: Callable[[Path, OSError], None] | None = None,
) -> Iterator[ScannedFile]:
    """Yield the photo files under ``root`` (recursively), in a deterministic order.

    Args:
        root: The photo folder.
        suffixes: Lower-case file suffixes (with the dot) to yield.
        on_error: Called with a folder or file path and the error when it cannot be listed or stat'ed;
            the walk goes on.

    Yields:
        One :class:`ScannedFile` per regular file with a supported suffix.
    """
    root = Path(root)
    try:
        st = root.stat()
    except OSError as err:
        if on_error:
            on_error(root, err)
        return
    visited: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            if on_error:
                on_error(folder, err)
            continue
        subfolders: list[tuple[Path, str]] = []
        for entry in entries:
            name = entry.name
            if is_skipped_name(name):
                continue
            rel = f"{rel_folder}{name}"
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as err:  # broken symlink, permission denied, vanished meanwhile
                if on_error and not (isinstance(err, FileNotFoundError) and entry.is_symlink()):
                    on_error(Path(entry.path), err)
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in visited:  # a symlink loop, or a second link to a folder already walked
                    continue
                visited.add(key)
                subfolders.append((Path(entry.path), rel + "/"))
                continue
            if not stat.S_ISREG(st.st_mode):  # FIFO, socket, device (possibly through a symlink)
                continue
            if os.path.splitext(name)[1].lower() not in suffixes:
                continue
            yield ScannedFile(Path(entry.path), rel, int(st.st_size), int(st.st_mtime_ns))
        stack.extend(reversed(subfolders))
