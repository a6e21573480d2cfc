"""An opened photo index: the SQLite database, the Query-DB cache and the FAISS vectors of one folder and model.

:class:`PhotoIndex` is shared by the indexer (one writer, holding ``writer.lock``) and by searchers (any
number, read-only, also while an indexing run commits). See :mod:`core.library.store` for the files and the
crash-safety invariant.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import IndexMismatchError
from core.library import repair
from core.library import store as st
from core.library.vector_sync import sync_vectors
from core.library.vectors import APPROX_THRESHOLD, VectorIndex


class EngineLike(Protocol):
    """What the index needs from :class:`core.method.engine.PHSEngine` (see there for the full contract)."""

    feature_dim: int
    embed_dim: int
    num_heads: int
    head_dim: int
    input_size: int

    def fingerprint(self) -> dict[str, Any]: ...  # noqa: D102

    def preprocess(self, img: Any) -> Any: ...  # noqa: D102

    def encode_batch(self, batch: Any) -> Any: ...  # noqa: D102

    def features_from_cache(  # noqa: D102
        self, x_cls: np.ndarray, o_cls: np.ndarray, head_mask: np.ndarray, strategy: str = ...
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class IndexDims:
    """Array sizes of an index.

    Attributes:
        feature_dim: ``Dout``, the stored global feature.
        embed_dim: ``D``, the width of ``X_cls``.
        num_heads: ``h``.
        head_dim: ``d_h``; ``O[CLS]`` is ``(h, d_h)``.
    """

    feature_dim: int
    embed_dim: int
    num_heads: int
    head_dim: int

    @classmethod
    def of(cls, engine: EngineLike) -> IndexDims:
        """The dims of an engine."""
        return cls(
            int(engine.feature_dim), int(engine.embed_dim), int(engine.num_heads), int(engine.head_dim)
        )


def _sidecar_dims(sidecar: dict[str, Any]) -> IndexDims | None:
    """The dims a sidecar records, or ``None`` when they are missing or not four positive integers."""
    d = sidecar.get("dims")
    try:
        dims = IndexDims(*(int(d[k]) for k in ("feature_dim", "embed_dim", "num_heads", "head_dim")))
    except (TypeError, KeyError, ValueError):
        return None
    return dims if min(asdict(dims).values()) > 0 else None


class PhotoIndex:
    """One index opened for writing (the indexer) or reading (searchers).

    Use :meth:`open`; close with :meth:`close` or a ``with`` block.

    Attributes:
        folder: The photo folder (absolute real path).
        directory: The index directory.
        sidecar: The sidecar as read or written.
        dims: Array sizes.
        db: The SQLite database.
        qd: The Query-DB cache.
        writable: Whether this handle holds the writer lock.
    """

    def __init__(
        self,
        folder: Path,
        directory: Path,
        sidecar: dict[str, Any],
        *,
        writable: bool,
        lock: st.WriterLock | None = None,
        approx_threshold: int = APPROX_THRESHOLD,
    ) -> None:
        self.folder = folder
        self.directory = directory
        self.sidecar = sidecar
        self.writable = writable
        self._lock = lock
        self.approx_threshold = int(approx_threshold)
        #: Sentences about the repairs opening made (a damaged database or an odd file moved aside, a lost
        #: sidecar rebuilt from the database).
        self.notes: list[str] = []
        dims = _sidecar_dims(sidecar)
        if dims is None:
            raise st.IndexDamagedError(
                f"The index description {directory / st.SIDECAR} lacks the array sizes (dims): run "
                f"`phs index {folder}` to repair it."
            )
        self.dims = dims
        self.db = st.Database(directory / st.DB_FILE, writable=writable, folder=folder)
        try:
            with st.storage_errors(directory, folder):
                self.qd = st.QDCache(
                    directory / st.QD_FILE,
                    self.dims.embed_dim,
                    self.dims.num_heads,
                    self.dims.head_dim,
                    writable=writable,
                )
        except BaseException:
            self.db.close()
            raise
        self.qd.repair_hint = f"run `phs index {folder}` to repair it"
        self._vectors: VectorIndex | None = None
        self._vectors_gen = -1
        self._counted_gen = -2

    # ------------------------------------------------------------------------------------------ open
    @classmethod
    def open(
        cls,
        folder: str | Path,
        engine: EngineLike,
        *,
        writable: bool = False,
        rebuild: bool = False,
        approx_threshold: int = APPROX_THRESHOLD,
    ) -> PhotoIndex:
        """Open the index of ``folder`` for the engine's model.

        Args:
            folder: The photo folder.
            engine: Supplies the fingerprint and dims.
            writable: Open for indexing (creates the index, takes the writer lock).
            rebuild: With ``writable``: discard any existing index of this folder and model first.
            approx_threshold: Vector count from which FAISS is HNSW instead of exact.

        Raises:
            IndexMissingError: Not writable and no index exists yet.
            IndexMismatchError: The index was built with another model, preprocessing or a newer schema
                (the message says how to rebuild it).
            IndexBusyError: Writable and another indexing run holds the index.
            IndexReadOnlyError: Writable and the data directory cannot be written.
        """
        fingerprint = st.normalize_fingerprint(engine.fingerprint())
        folder_abs = Path(st.folder_key(folder))
        directory = st.index_dir_for(folder_abs, fingerprint)
        model = st.model_label(fingerprint)
        with st.storage_errors(directory, folder_abs):
            return cls._open(folder_abs, directory, fingerprint, model, engine, writable, rebuild, approx_threshold)

    @classmethod
    def _open(
        cls,
        folder_abs: Path,
        directory: Path,
        fingerprint: dict[str, Any],
        model: str,
        engine: EngineLike,
        writable: bool,
        rebuild: bool,
        approx_threshold: int,
    ) -> PhotoIndex:
        if not writable:
            return cls._open_reader(folder_abs, directory, fingerprint, model, approx_threshold)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a read-only or full disk: its sentence; anything else (PHS_DATA_DIR in /proc)
            mapped = st.storage_error(err, directory, folder_abs)
            if mapped is not None and not isinstance(mapped, st.IndexStorageError):
                raise mapped from err
            raise st.IndexStorageError(
                f"The index folder {directory} cannot be created ({err.strerror or err}): set PHS_DATA_DIR to a "
                "folder on a writable disk."
            ) from err
        lock = st.WriterLock(directory / st.LOCK_FILE)
        lock.acquire()
        try:
            st.remove_stale_temps(directory)
            notes = repair.move_odd_files_aside(directory)
            if rebuild:  # asked for: the user discards this index
                for name in repair.INDEX_FILES:
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()
            sidecar = _writer_sidecar(folder_abs, directory, fingerprint, model, engine, notes)
            index = cls._construct_writer(folder_abs, directory, sidecar, lock, approx_threshold, notes)
            repair.record_sidecar(index.db, sidecar)
            return index
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_reader(
        cls, folder_abs: Path, directory: Path, fingerprint: dict[str, Any], model: str, approx_threshold: int
    ) -> PhotoIndex:
        again = f"`phs index {folder_abs} --model {model}`"
        odd = repair.odd_files(directory)
        if odd:
            path, kind = odd[0]
            raise st.IndexDamagedError(
                f"{path.name} in the index of {folder_abs} is {kind}, not a file: run {again} to move it aside "
                "and repair the index."
            )
        sidecar, state = st.sidecar_state(directory)
        if state in ("garbage", "foreign"):
            raise st.IndexDamagedError(
                f"The index description {directory / st.SIDECAR} is damaged: run {again} to rebuild it from the "
                "index database (nothing indexed is lost)."
            )
        if sidecar is None and repair.recorded_sidecar(directory) is not None:
            raise st.IndexDamagedError(
                f"The index description {directory / st.SIDECAR} is missing: run {again} to rebuild it from the "
                "index database (nothing indexed is lost)."
            )
        if sidecar is None:
            others = [s for _, s in st.list_indexes(folder_abs)]
            if others:
                names = ", ".join(sorted({st.model_label(s.get("fingerprint", {})) for s in others}))
                raise IndexMismatchError(
                    f"The folder {folder_abs} has no index for model {model} (it has one for {names}); search "
                    f"with --model {names.split(', ')[0]}, or run {again}."
                )
            raise st.IndexMissingError(
                f"The folder {folder_abs} has not been indexed with model {model} yet; run {again} first."
            )
        st.check_sidecar(sidecar, fingerprint, folder_abs)
        return cls(folder_abs, directory, sidecar, writable=False, approx_threshold=approx_threshold)

    @classmethod
    def _construct_writer(
        cls, folder_abs: Path, directory: Path, sidecar: dict[str, Any], lock: st.WriterLock,
        approx_threshold: int, notes: list[str],
    ) -> PhotoIndex:  # fmt: skip
        try:
            index = cls(folder_abs, directory, sidecar, writable=True, lock=lock, approx_threshold=approx_threshold)
        except st.IndexDamagedError as err:
            if not isinstance(err.__cause__, sqlite3.DatabaseError):
                raise
            # The database is the only copy of what was indexed but cannot be read: keep it for a
            # person to look at, and rebuild (the photos are re-encoded by this run).
            aside = repair.move_database_aside(directory)
            index = cls(folder_abs, directory, sidecar, writable=True, lock=lock, approx_threshold=approx_threshold)
            notes.append(
                f"The index database of {folder_abs} was damaged, so it was moved aside to {aside.name} and the "
                "index rebuilt."
            )
        index.notes = notes
        return index

    # --------------------------------------------------------------------------------------- vectors
    def vectors(self) -> VectorIndex:
        """The FAISS index, loaded on first use and brought up to date with SQLite whenever it changed."""
        with st.storage_errors(self.directory, self.folder):
            return self._vectors_now()

    def _vectors_now(self) -> VectorIndex:
        dim = self.dims.feature_dim
        if self._vectors is None:
            info = (st.read_sidecar(self.directory) or {}).get("faiss") or {}
            if info.get("db_uuid") == self.db.db_uuid and info.get("kind"):
                self._vectors = VectorIndex.load(self.directory / st.FAISS_FILE, dim, info["kind"])
                self._vectors_gen = int(info.get("generation", -1)) if self._vectors is not None else -1
        stale = self._vectors is None or self.db.generation != self._vectors_gen
        if not stale and self._counted_gen != self._vectors_gen:
            # paranoia, once per generation (a count scans the table: ~100 ms at 100k photos): a file that
            # disagrees with SQLite is reconciled, never trusted
            n_done = self.db.conn.execute("SELECT count(*) FROM files WHERE status = 'done'").fetchone()[0]
            stale = self._vectors.ntotal != n_done
            self._counted_gen = -1 if stale else self._vectors_gen
        if stale:
            self._vectors, res = sync_vectors(
                self._vectors, max(self._vectors_gen, 0), self.db, dim, threshold=self.approx_threshold
            )
            self._vectors_gen = res.generation
        return self._vectors

    def save_vectors(self) -> None:
        """Write the FAISS file (atomic), then record its generation in the sidecar (writer only)."""
        with st.storage_errors(self.directory, self.folder):
            self._save_vectors()

    def _save_vectors(self) -> None:
        vi = self.vectors()
        vi.save(self.directory / st.FAISS_FILE)
        self.sidecar["faiss"] = {
            "file": st.FAISS_FILE,
            "kind": vi.kind,
            "approx_threshold": self.approx_threshold,
            "generation": self._vectors_gen,
            "db_uuid": self.db.db_uuid,
            "ntotal": vi.ntotal,
        }
        self.sidecar["updated_at"] = time.time()
        st.atomic_write_json(self.directory / st.SIDECAR, self.sidecar)

    # ------------------------------------------------------------------------------------------ info
    @property
    def stale_warning(self) -> str | None:
        """One sentence when this read-only index cannot see the newest committed changes, else None."""
        return self.db.stale_warning

    def disk_bytes(self) -> dict[str, int]:
        """Bytes on disk per file of the index (the QD cache counts its allocated capacity)."""
        out = {}
        for p in (self.directory / n for n in repair.INDEX_FILES):
            with contextlib.suppress(FileNotFoundError):
                out[p.name] = p.stat().st_size
        return out

    def failures(self) -> list[tuple[str, str]]:
        """``(rel, reason)`` of every file recorded as failed, sorted by path."""
        return sorted((r.rel, r.error or "") for r in self.db.records() if r.status == "failed")

    def close(self) -> None:
        """Close the database and the cache and release the writer lock."""
        self.qd.close()
        self.db.close()
        self._vectors = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> PhotoIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fresh_sidecar(folder_abs: Path, model: str, fingerprint: dict[str, Any], dims: IndexDims) -> dict[str, Any]:
    return {
        "format": st.FORMAT,
        "schema": st.SCHEMA_VERSION,
        "folder": str(folder_abs),
        "model": model,
        "fingerprint": fingerprint,
        "dims": asdict(dims),
        "metric": st.METRIC,
        "normalized": True,
        "qd_cache": {
            "file": st.QD_FILE,
            "dtype": "float16",
            "layout": "row = [X_cls (D,), O_cls (h, d_h) row-major]",
            "row_dim": dims.embed_dim + dims.num_heads * dims.head_dim,
        },
        "faiss": None,
        "created_at": time.time(),
    }


def _writer_sidecar(
    folder_abs: Path, directory: Path, fingerprint: dict[str, Any], model: str, engine: EngineLike, notes: list[str]
) -> dict[str, Any]:
    """The sidecar the indexer works with: the one on disk (upgraded), else rebuilt from what the database
    records, else a new one; a database that cannot be told apart from another model's is moved aside."""
    dims = IndexDims.of(engine)
    sidecar, state = st.sidecar_state(directory)
    if sidecar is None and (directory / st.DB_FILE).exists():
        sidecar = repair.recorded_sidecar(directory)
        what = "was missing" if state == "missing" else "was damaged"
        if sidecar is not None:
            sidecar["faiss"] = None  # the FAISS file is checked against the database and rebuilt if needed
            notes.append(f"The index description of {folder_abs} {what}; it was rebuilt from the index database.")
        else:
            aside = repair.move_database_aside(directory, with_cache=True)
            notes.append(
                f"The index description of {folder_abs} {what} and its database does not record which model "
                f"built it, so the database was moved aside to {aside.name} and the folder is indexed again."
            )
    if sidecar is None:
        for name in (st.QD_FILE, st.FAISS_FILE):  # belong to no database
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        sidecar = _fresh_sidecar(folder_abs, model, fingerprint, dims)
        st.atomic_write_json(directory / st.SIDECAR, sidecar)
        return sidecar
    st.check_sidecar(sidecar, fingerprint, folder_abs)
    _adopt_precision(engine, sidecar)
    if int(sidecar.get("schema", 0)) < st.SCHEMA_VERSION:
        sidecar["schema"] = st.SCHEMA_VERSION  # the database migrates itself on open
    if _sidecar_dims(sidecar) != dims:  # lost or damaged; the fingerprint matched, so the engine's
        sidecar["dims"] = asdict(dims)
    if sidecar != st.read_sidecar(directory):
        st.atomic_write_json(directory / st.SIDECAR, sidecar)
    return sidecar


def _adopt_precision(engine: EngineLike, sidecar: dict[str, Any]) -> None:
    """Encode new photos in the precision the index was built in, so that all its rows agree.

    An index records the precision of its engine (``fingerprint["precision"]``, e.g. bf16 where the CPU has
    it natively); an engine in another precision extends it in the index's one (``--rebuild`` re-encodes
    the whole folder in the engine's own). Searching needs nothing of the kind: queries in either precision
    search either index.
    """
    stored = (sidecar.get("fingerprint") or {}).get("precision")
    set_precision = getattr(engine, "set_precision", None)
    if stored and set_precision is not None and getattr(engine, "precision", stored) != stored:
        set_precision(stored)


def path_of(folder: Path, rel: str) -> Path:
    """Absolute path of a photo from its stored relative path."""
    return folder / Path(*rel.split("/")) if os.sep != "/" else folder / rel
