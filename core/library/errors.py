"""The one-sentence errors of a photo index and the mapping of storage failures (OSError, SQLite, FAISS) to them."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from core.errors import IndexMismatchError, NotReadyError, PHSError


class IndexMissingError(NotReadyError):
    """No index exists yet for a folder and model."""


class IndexBusyError(PHSError):
    """Another indexing run holds the index (one writer at a time)."""


class IndexReadOnlyError(PHSError):
    """The index directory cannot be written (search still works)."""


class IndexDiskFullError(PHSError):
    """The disk holding the index is full (what was committed before is kept)."""


class IndexStorageError(PHSError):
    """The disk holding the index failed (an input/output error)."""


class IndexDamagedError(IndexMismatchError):
    """A file of the index is damaged (not a database, malformed, a folder in its place, garbage rows)."""


#: Below this many free bytes an SQLite "disk I/O error" is reported as a full disk.
_NEARLY_FULL = 4 << 20
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _index_command(folder: str | Path | None) -> str:
    if folder is None:
        return "`phs index`"
    return f"`phs index {os.path.realpath(os.path.abspath(os.fspath(folder)))}`"


def storage_error(err: BaseException, directory: Path, folder: str | Path | None = None) -> PHSError | None:
    """The one-sentence error for a storage failure of the index in ``directory``, or ``None``.

    Recognises a full disk (``ENOSPC``, SQLite's "database or disk is full", FAISS's "No space left on
    device"), a read-only file system or folder, a database locked by another program, a damaged database
    and an input/output error, from :class:`OSError`, :class:`sqlite3.Error` and the ``RuntimeError`` FAISS
    raises for a failed write.
    """
    if isinstance(err, PHSError) or not isinstance(err, (OSError, sqlite3.Error, RuntimeError)):
        return None
    low = str(err).lower()
    code = err.errno if isinstance(err, OSError) else None
    again = _index_command(folder)
    if code in _NO_SPACE or any(w in low for w in ("no space left", "database or disk is full", "quota exceeded")):
        return IndexDiskFullError(
            f"The disk holding the index ({directory}) is full: free some space and run {again} again "
            "(the photos indexed so far are kept and searchable)."
        )
    if code in _READ_ONLY or "readonly database" in low or "read-only file system" in low:
        return IndexReadOnlyError(
            f"The index folder {directory} is read-only: searching works, indexing needs write access to it "
            "(or set PHS_DATA_DIR to a writable folder)."
        )
    if code in (errno.ENOENT, errno.ENOTDIR) and not Path(directory).is_dir():
        return IndexStorageError(
            f"The index folder {directory} disappeared during the run (deleted or moved): run {again} again to "
            "rebuild it."
        )
    if "database is locked" in low or "database table is locked" in low:
        return IndexBusyError(
            f"Another program holds the index database in {directory} locked: close it or wait for it to "
            "finish, then try again."
        )
    if isinstance(err, sqlite3.DatabaseError) and ("malformed" in low or "not a database" in low):
        return IndexDamagedError(
            f"The index database in {directory} is damaged ({err}): run {again} to move it aside and rebuild "
            "the index."
        )
    if "disk i/o error" in low or code == errno.EIO:
        try:
            full = shutil.disk_usage(directory).free < _NEARLY_FULL
        except OSError:
            full = False
        if full:
            return storage_error(OSError(errno.ENOSPC, "No space left on device"), directory, folder)
        return IndexStorageError(
            f"The disk holding the index ({directory}) reported an input/output error: check it, then run "
            f"{again} again."
        )
    return None


@contextlib.contextmanager
def storage_errors(directory: Path, folder: str | Path | None = None) -> Iterator[None]:
    """Turn the storage failures :func:`storage_error` knows into their one-sentence errors."""
    try:
        yield
    except (OSError, sqlite3.Error, RuntimeError) as err:
        mapped = storage_error(err, Path(directory), folder)
        if mapped is None:
            raise
        raise mapped from err
