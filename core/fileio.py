"""Atomic file replacement, the one way PHS desktop writes a file that must never be half-written.

A temporary file in the target's folder is written, fsynced, renamed over the target (``os.replace``) and the
folder is fsynced, so a crash leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(path: Path, write: Callable[[str], None]) -> None:
    """Replace ``path`` atomically with what ``write(tmp_path)`` writes.

    The temporary file lives in the same folder; it is fsynced, renamed over ``path`` and the folder is
    fsynced. On any error (a full disk included) the temporary file is removed and ``path`` is unchanged.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_replace`)."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, compact: bool = False) -> None:
    """Write ``obj`` as JSON atomically: indented and key-sorted, or ``compact`` (no spaces, keys as given)."""
    if compact:
        text = json.dumps(obj, separators=(",", ":"))
    else:
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text)
