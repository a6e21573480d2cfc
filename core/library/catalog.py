"""The library: every indexed folder, whoever indexed it (the app or ``phs index``), and removing one.

Each index directory under ``data_dir()/indexes/`` holds one folder's index for one model (see
:mod:`core.library.store`); the library of a model is all of them. Nothing here loads a model.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import PHSError
from core.library import store as st


@dataclass(frozen=True)
class LibraryFolder:
    """One indexed folder (for one model).

    Attributes:
        folder: The photo folder (absolute, as indexed).
        model: The model's name (``model_label`` of the index's fingerprint).
        photos: Photos indexed and searchable.
        failed: Files that could not be indexed.
        bytes_on_disk: Size of the index directory's files.
        last_change: When the index last changed (seconds since the epoch, the newest file's mtime).
        directory: The index directory.
        present: Whether the photo folder is there now (an unplugged drive is not).
    """

    folder: str
    model: str
    photos: int
    failed: int
    bytes_on_disk: int
    last_change: float
    directory: Path
    present: bool


def _size_and_time(directory: Path) -> tuple[int, float]:
    size, newest = 0, 0.0
    for p in directory.iterdir():
        with contextlib.suppress(OSError):
            s = p.stat()
            if p.is_file():
                size += s.st_size
                newest = max(newest, s.st_mtime)
    return size, newest


def library_folders(model: str | None = None) -> list[LibraryFolder]:
    """Every indexed folder (of ``model``, or of every model), sorted by folder then model.

    An index whose database cannot be read now (locked, damaged) is listed with zero counts rather than
    hiding it: removing it must stay possible.
    """
    out = []
    for directory, side in st.list_indexes():
        label = st.model_label(side.get("fingerprint", {}))
        if model is not None and label != model:
            continue
        folder = str(side.get("folder", ""))
        counts: dict[str, int] = {}
        with contextlib.suppress(PHSError, OSError):
            db = st.Database(directory / st.DB_FILE, writable=False, folder=folder)
            try:
                counts = db.counts()
            finally:
                db.close()
        size, newest = _size_and_time(directory)
        out.append(LibraryFolder(folder, label, counts.get("done", 0), counts.get("failed", 0), size, newest,
                                 directory, Path(folder).is_dir()))  # fmt: skip
    return sorted(out, key=lambda e: (e.folder, e.model))


def remove_folder(folder: str | Path, model: str | None = None) -> list[LibraryFolder]:
    """Delete the index (every file of it) of ``folder`` for ``model``, or for every model.

    The photo folder itself is never touched; it may be gone already.

    Returns:
        What was removed.

    Raises:
        PHSError: The folder has no index (of that model), or an indexing run is using it now.
    """
    key = st.folder_key(folder)
    found = [e for e in library_folders(model) if e.folder == key]
    if not found:
        which = f" for the model {model}" if model else ""
        raise PHSError(f"The folder {key} has no index{which}; `phs library list` shows the indexed folders.")
    for entry in found:
        lock = st.WriterLock(entry.directory / st.LOCK_FILE)
        lock.acquire()  # IndexBusyError while a run (or a watcher) updates it
        try:
            shutil.rmtree(entry.directory)
        except OSError as err:
            raise PHSError(f"Could not remove the index in {entry.directory}: {err.strerror or err}.") from None
        finally:
            lock.release()
    return found
