"""Repairs of an index directory that never throw away what was indexed.

A file that cannot be used (a damaged database, a folder or FIFO where an index file belongs, a database
whose description was lost and cannot be told apart from another model's) is *moved aside* as
``<name>.damaged-<time>``, never deleted; :func:`damaged_copies` lists those copies and
:func:`remove_damaged_copies` removes them when the user asks (``phs index --status --clean-damaged``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from core.library import store as st

#: Every file of an index directory but the lock.
INDEX_FILES: tuple[str, ...] = (
    st.SIDECAR, st.DB_FILE, st.DB_FILE + "-wal", st.DB_FILE + "-shm", st.QD_FILE, st.FAISS_FILE,
)  # fmt: skip
#: ``meta`` key under which the database keeps a copy of its sidecar's description of the index.
META_SIDECAR = "sidecar"
#: The sidecar entries the database keeps (what the index *is*, not the state of the FAISS file).
IDENTITY_ENTRIES: tuple[str, ...] = (
    "format", "schema", "folder", "model", "fingerprint", "dims", "metric", "normalized", "qd_cache", "created_at",
)  # fmt: skip


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while os.path.lexists(target):
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return target


def move_aside(path: Path) -> Path:
    """Rename ``path`` (any kind of file) to ``<name>.damaged-<time>`` in its folder; return the new path."""
    target = _aside_name(path)
    os.replace(path, target)
    return target


def move_database_aside(directory: Path, *, with_cache: bool = False) -> Path:
    """Move the database (and its WAL and shared memory, and with ``with_cache`` the Query-DB cache it
    references) aside; the FAISS file, derived from it, is removed. Return where the database went."""
    target = move_aside(directory / st.DB_FILE)
    for suffix in ("-wal", "-shm"):
        p = directory / (st.DB_FILE + suffix)
        if os.path.lexists(p):
            os.replace(p, Path(f"{target}{suffix}"))
    qd = directory / st.QD_FILE
    if with_cache and os.path.lexists(qd):
        os.replace(qd, Path(str(target).replace(st.DB_FILE, st.QD_FILE, 1)))
    for name in (st.QD_FILE, st.FAISS_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    return target


def odd_files(directory: Path) -> list[tuple[Path, str]]:
    """Index files that exist but are not regular files, as ``(path, what it is)``."""
    out = []
    for name in INDEX_FILES:
        p = directory / name
        try:
            mode = os.stat(p).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISREG(mode):
            out.append((p, "a folder" if stat.S_ISDIR(mode) else "a pipe, socket or device"))
    return out


def move_odd_files_aside(directory: Path) -> list[str]:
    """Move every index file that is not a regular file aside; one sentence per file moved."""
    notes = []
    for path, kind in odd_files(directory):
        target = move_aside(path)
        notes.append(f"{path.name} in {directory} was {kind}, not a file: it was moved aside to {target.name}.")
    return notes


def recorded_sidecar(directory: Path) -> dict[str, Any] | None:
    """The description of the index that its database keeps (``meta``), or ``None`` when it has none."""
    path = directory / st.DB_FILE
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_SIDECAR,)).fetchone()
        finally:
            conn.close()
        data = json.loads(row[0]) if row else None
    except (sqlite3.Error, ValueError, OSError):
        return None
    return data if isinstance(data, dict) and data.get("format") == st.FORMAT else None


def record_sidecar(db: st.Database, sidecar: dict[str, Any]) -> None:
    """Keep the description of the index in its database, so a lost sidecar can be rebuilt from it."""
    ident = json.dumps({k: sidecar[k] for k in IDENTITY_ENTRIES if k in sidecar}, sort_keys=True)
    if db.meta(META_SIDECAR) != ident:
        db.set_meta(META_SIDECAR, ident)


def damaged_copies(directory: Path) -> list[Path]:
    """The ``*.damaged-*`` copies in an index directory, sorted."""
    try:
        return sorted(p for p in Path(directory).iterdir() if ".damaged-" in p.name)
    except OSError:
        return []


def copy_bytes(path: Path) -> int:
    """Bytes a file or folder holds (0 when it cannot be read)."""
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.lstat().st_size for p in path.rglob("*"))
        return path.lstat().st_size
    except OSError:
        return 0


def remove_damaged_copies(directory: Path) -> list[Path]:
    """Delete the ``*.damaged-*`` copies of an index directory; return what was removed."""
    removed = []
    for p in damaged_copies(directory):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(p)
    return removed
