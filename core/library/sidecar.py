"""Locating an index, its JSON sidecar (``index.json``) and the writer lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from core.errors import IndexMismatchError
from core.library.errors import IndexBusyError, IndexDamagedError
from core.paths import data_dir

SCHEMA_VERSION = 2
FORMAT = "phs-desktop photo index"
SIDECAR = "index.json"
DB_FILE = "files.sqlite"
QD_FILE = "qd_cache.f16"
FAISS_FILE = "vectors.faiss"
LOCK_FILE = "writer.lock"
METRIC = "inner_product"  # on L2-normalised features, i.e. cosine similarity

#: Fingerprint keys that name *which* model an index belongs to (its directory); every other key
#: (preprocessing, dims, ITAE...) must also match, else the index is refused with a sentence.
IDENTITY_KEYS: tuple[str, ...] = ("model", "name", "timm_name", "weights", "weights_id")

#: Fingerprint keys an index may differ in from the engine that opens it. ``precision`` (what the photos
#: were encoded in): a bf16 index answers fp32 queries and the reverse (features agree to a cosine of about
#: 0.999, measured by bench/bench_scale.py); an indexer extends an index in the index's own precision
#: (see :meth:`core.library.photo_index.PhotoIndex.open`).
COMPATIBLE_KEYS: tuple[str, ...] = ("precision",)


# --------------------------------------------------------------------------------------------- atomic I/O
# The writers live in core.fileio (one implementation for every file PHS desktop replaces).
def remove_stale_temps(directory: Path) -> None:
    """Delete temporary files left by an interrupted atomic write."""
    for p in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


# ------------------------------------------------------------------------------------------ locating
def normalize_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Return the fingerprint as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def model_identity(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The part of a fingerprint that names the model and weights (the whole one if no key is known)."""
    fp = normalize_fingerprint(fingerprint)
    ident = {k: fp[k] for k in IDENTITY_KEYS if k in fp}
    return ident or fp


def model_label(fingerprint: dict[str, Any]) -> str:
    """A short human name of the model in a fingerprint, for messages."""
    for key in ("model", "name", "timm_name"):
        if key in fingerprint:
            return str(fingerprint[key])
    return "an unnamed model"


def folder_key(folder: str | Path) -> str:
    """The canonical form of a photo folder: its absolute real path."""
    return os.path.realpath(os.path.abspath(os.fspath(folder)))


def indexes_root() -> Path:
    """The folder holding every index (``data_dir()/indexes``)."""
    return data_dir() / "indexes"


def index_dir_for(folder: str | Path, fingerprint: dict[str, Any]) -> Path:
    """The directory of the index of ``folder`` for the model named in ``fingerprint``."""
    blob = json.dumps({"folder": folder_key(folder), "model": model_identity(fingerprint)}, sort_keys=True)
    return indexes_root() / hashlib.sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def sidecar_state(directory: Path) -> tuple[dict[str, Any] | None, str]:
    """The sidecar of an index directory and its state.

    Returns:
        ``(sidecar, "ok")``, or ``(None, state)`` with ``state`` one of ``"missing"``, ``"odd"`` (a folder,
        FIFO or device in its place; never opened, so never blocks), ``"garbage"`` (unreadable or not JSON)
        and ``"foreign"`` (JSON, but not a PHS desktop index description).
    """
    path = Path(directory) / SIDECAR
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None, "missing"
    except OSError:
        return None, "garbage"
    if not stat.S_ISREG(mode):
        return None, "odd"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None, "garbage"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None, "foreign"
    return data, "ok"


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    """Return the sidecar of an index directory, or ``None`` when it is missing, unreadable or not ours."""
    return sidecar_state(directory)[0]


def list_indexes(folder: str | Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """List ``(directory, sidecar)`` of every index, or of those of one photo folder."""
    root = indexes_root()
    if not root.is_dir():
        return []
    want = folder_key(folder) if folder is not None else None
    found = []
    for d in sorted(root.iterdir()):
        side = read_sidecar(d)
        if side is None or side.get("format") != FORMAT:
            continue
        if want is None or side.get("folder") == want:
            found.append((d, side))
    return found


def fingerprint_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the fingerprint entries that differ between an index and an engine (but :data:`COMPATIBLE_KEYS`)."""
    a, b = normalize_fingerprint(stored), normalize_fingerprint(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in COMPATIBLE_KEYS)


def check_sidecar(sidecar: dict[str, Any], fingerprint: dict[str, Any], folder: str | Path) -> None:
    """Refuse an index built by another format, schema, model or preprocessing.

    Raises:
        IndexMismatchError: A sentence saying what differs and how to rebuild the index.
    """
    model = model_label(fingerprint)
    rebuild = f"rebuild it with `phs index {folder_key(folder)} --model {model} --rebuild`"
    if sidecar.get("format") != FORMAT:
        raise IndexMismatchError(f"The index for {folder_key(folder)} is not a PHS desktop index; {rebuild}.")
    schema = int(sidecar.get("schema", -1))
    if schema > SCHEMA_VERSION:
        raise IndexMismatchError(
            f"The index for {folder_key(folder)} was written by a newer PHS desktop (schema {schema}, this "
            f"version reads up to {SCHEMA_VERSION}); upgrade PHS desktop or {rebuild}."
        )
    diff = fingerprint_differences(sidecar.get("fingerprint", {}), fingerprint)
    if diff:
        raise IndexMismatchError(
            f"The index for {folder_key(folder)} was built with another model or preprocessing "
            f"({', '.join(diff)} differ from {model}); {rebuild}."
        )


# --------------------------------------------------------------------------------------------- lock
class WriterLock:
    """An exclusive, non-blocking lock on ``writer.lock`` that the OS drops when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            IndexBusyError: Another process (or another indexer in this one) holds it.
        """
        try:
            fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        except IsADirectoryError:
            # Not ours to keep: a folder where the lock file belongs (left by a tool or a bad copy).
            # An empty one is removed; anything else is refused with a sentence.
            try:
                os.rmdir(self.path)
            except OSError:
                raise IndexDamagedError(
                    f"The lock file {self.path} is a folder that is not empty: move it away, then try again."
                ) from None
            fh = open(self.path, "a+b")  # noqa: SIM115
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise IndexBusyError(
                "Another indexing run is updating this index; wait for it to finish (searching works meanwhile)."
            ) from None
        self._fh = fh

    def release(self) -> None:
        """Release the lock (closing the file releases it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
