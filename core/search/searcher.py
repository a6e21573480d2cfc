"""An on-disk photo index as a :class:`core.search.service.Gallery`: Query-Only search and the Query-DB cache.

The ranking itself is :func:`core.search.service.rank`; this module only answers its questions about one
folder's index: the nearest plain features (FAISS), the Query-DB cache rows (``X_cls``, ``O[CLS]``) of the
candidates, and the paths of the hits.

A :class:`Searcher` can be used while an indexing run commits batches (SQLite WAL readers do not block the
writer): it loads the FAISS file once (atomically replaced by the indexer, so never torn), and before each
query brings its in-memory copy up to date with the rows committed since (``core.library.vector_sync.sync_vectors``)
whenever the database generation moved; results whose rows were removed meanwhile are dropped.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import faiss
import numpy as np

from core.errors import PHSError
from core.library.filters import PhotoFilter
from core.library.photo_index import EngineLike, PhotoIndex, path_of
from core.library.vectors import APPROX_THRESHOLD, EXACT_AMONG_MAX, SINGLE_QUERY_THREADS, gpu_available
from core.search.service import SearchHit

#: Looked-up rows (id -> path, slot, checksum) a searcher keeps between queries; past it it starts over.
INFO_MAX = 100_000


class Searcher:
    """Read-only search over the index of one folder.

    Args:
        folder: The photo folder.
        engine: The engine the index was built with (fingerprint checked) and that re-ranks for QD.
        approx_threshold: As for the indexer (only matters when the FAISS file must be rebuilt).

    Raises:
        IndexMissingError: The folder has not been indexed with this model.
        IndexMismatchError: The index was built with another model or preprocessing.
    """

    def __init__(
        self, folder: str | Path, engine: EngineLike, *, approx_threshold: int = APPROX_THRESHOLD
    ) -> None:
        self.engine = engine
        self.index = PhotoIndex.open(folder, engine, writable=False, approx_threshold=approx_threshold)
        self._info: dict[int, tuple[str, int, int | None]] = {}  # id -> (rel, slot, checksum) at _info_gen
        self._info_gen = -1
        self._paths: dict[int, Path] = {}  # id -> absolute path of the hits shown, with _info
        self._filter: PhotoFilter | None = None
        self._allowed: tuple[int, np.ndarray, object] | None = None  # (generation, ids, FAISS selector)

    # ------------------------------------------------------------------------------------------ filter
    def set_filter(self, photo_filter: PhotoFilter | None) -> None:
        """Search only the photos ``photo_filter`` lets through (``None`` or an inactive filter: all)."""
        self._filter = photo_filter if photo_filter is not None and photo_filter.active else None
        self._allowed = None

    def _allowed_ids(self) -> tuple[np.ndarray, object] | None:
        """The ids the filter lets through (read again only when the database changed) and their selector."""
        if self._filter is None:
            return None
        gen = self.index.db.generation
        if self._allowed is None or self._allowed[0] != gen:
            import faiss

            ids = self._filter.matching_ids(self.index.db.conn)
            self._allowed = (gen, ids, faiss.IDSelectorBatch(ids))
        return self._allowed[1], self._allowed[2]

    @property
    def folder(self) -> Path:
        """The photo folder."""
        return self.index.folder

    @property
    def size(self) -> int:
        """Number of searchable photos now (those the filter lets through, when one is set)."""
        n = self.index.vectors().ntotal
        allowed = self._allowed_ids()
        return n if allowed is None else min(n, len(allowed[0]))

    # ------------------------------------------------------------------------------ Gallery protocol
    def _fresh_info(self) -> None:
        """Forget the looked-up rows when the database changed since (a commit, a sweep), or when there are
        many: between commits a row's path, slot and checksum stand, so a prompt edit looks up only the
        candidates the previous ones did not have."""
        gen = self.index.db.generation
        if gen != self._info_gen or len(self._info) > INFO_MAX:
            self._info, self._info_gen, self._paths = {}, gen, {}

    def _known(self, ids: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: which ``ids`` are done rows now, looking up (once per generation) those not known yet."""
        ids_list = np.asarray(ids, np.int64).reshape(-1).tolist()
        missing = [i for i in ids_list if i not in self._info]
        if missing:
            db = self.index.db
            db.conn.execute("BEGIN")
            try:  # id -> (rel, slot, checksum); ids deleted since the FAISS sync drop out here
                self._info.update(db.lookup_checked(missing))
            finally:
                db.conn.execute("COMMIT")
        return np.array([i in self._info for i in ids_list], dtype=bool)

    def nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Query-Only: ``(scores, ids)`` of the ``k`` nearest plain features of a unit ``(F,)`` query."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.index.dims.feature_dim:
            raise PHSError(
                f"The query feature has {q.shape[0]} dimensions but the index has {self.index.dims.feature_dim}."
            )
        vectors = self.index.vectors()  # brought up to date first, so the filter reads the same generation
        self._fresh_info()
        self.index.qd.last_mismatched = 0  # a new search: what the last one left out is no longer news
        allowed = self._allowed_ids()
        if allowed is None:
            scores, ids = vectors.search(q[None], int(k))
            scores, ids = scores[0], ids[0]
        else:
            scores, ids = vectors.search_among(q, int(k), allowed[0], allowed[1])
        keep = ids >= 0
        scores, ids = scores[keep], ids[keep].astype(np.int64)
        live = self._known(ids)
        return scores[live], ids[live]

    def candidates(self, query: np.ndarray, n: int) -> np.ndarray:
        """``(<= n,)`` ids near a unit ``(F,)`` query, for a caller that scores every one exactly itself
        (several objects): an ``ivfpq`` index answers from its inverted file without the exact re-scoring
        of :meth:`nearest`, which would only be repeated; ids removed meanwhile drop out of :meth:`hits`."""
        vi = self.index.vectors()
        self._fresh_info()
        allowed = self._allowed_ids()
        if vi.kind != "ivfpq" or gpu_available() or (allowed is not None and len(allowed[0]) <= EXACT_AMONG_MAX):
            return self.nearest(query, n)[1]
        q = np.ascontiguousarray(np.asarray(query, np.float32).reshape(1, -1))
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(SINGLE_QUERY_THREADS)
        try:
            ids = vi.approximate(q, n, None if allowed is None else allowed[1])
        finally:
            faiss.omp_set_num_threads(before)
        return ids.astype(np.int64)

    def sample_ids(self, n: int) -> np.ndarray:
        """``(min(n, N),)`` ids spread evenly over the searchable photos (from the FAISS ids: no SQLite scan)."""
        ids = np.sort(self.index.vectors().ids())
        if len(ids) > n:
            ids = ids[np.linspace(0, len(ids) - 1, int(n)).round().astype(np.int64)]
        return ids.astype(np.int64)

    def features_of(self, ids: np.ndarray) -> np.ndarray:
        """``(n, F)`` float32 stored plain features of ``ids`` (from the FAISS file's exact vectors)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.index.dims.feature_dim), np.float32)
        by_id = self.index.vectors()._by_id
        try:
            return np.asarray(by_id.reconstruct_batch(ids), np.float32)
        except RuntimeError:  # an id removed since it was found: its row is NaN, so it is never ranked
            out = np.full((len(ids), self.index.dims.feature_dim), np.nan, np.float32)
            for r, i in enumerate(ids.tolist()):
                with contextlib.suppress(RuntimeError):
                    out[r] = by_id.reconstruct(int(i))
            return out

    def all_ids(self) -> np.ndarray:
        """Ids of every done photo."""
        allowed = self._allowed_ids()
        if allowed is not None:
            ids = allowed[0]
        else:
            rows = self.index.db.conn.execute("SELECT id FROM files WHERE status = 'done'").fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
        self._fresh_info()
        self._known(ids)
        return ids

    def states(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Query-DB cache rows of ``ids`` (ids from :meth:`nearest`, :meth:`candidates` or :meth:`all_ids`).

        Rows come as float16, as the cache stores them. A row that does not match its checksum comes back as
        NaN, so the re-rank leaves that photo out (:attr:`qd_mismatched` says how many for the last call); so
        does the row of a photo removed from the index since its id was found.
        """
        ids = np.asarray(ids, np.int64).reshape(-1)
        live = self._known(ids)
        if live.all():
            info = [self._info[i] for i in ids.tolist()]
            slots = np.array([x[1] for x in info], dtype=np.int64)
            # float16 as stored: the re-rank converts them to its own precision once
            return self.index.qd.read(slots, [x[2] for x in info], [x[0] for x in info], dtype=np.float16)
        x, o = self.states(ids[live])
        x_all = np.full((len(ids), *x.shape[1:]), np.nan, x.dtype)
        o_all = np.full((len(ids), *o.shape[1:]), np.nan, o.dtype)
        x_all[live], o_all[live] = x, o
        return x_all, o_all

    @property
    def qd_mismatched(self) -> int:
        """Photos the last Query-DB re-rank left out because their cache rows failed their checksum."""
        return self.index.qd.last_mismatched

    @property
    def warnings(self) -> list[str]:
        """Sentences about this search's index to show the user (e.g. the newest changes could not be read)."""
        out = [self.index.db.stale_warning] if self.index.db.stale_warning else []
        if self.qd_mismatched:
            n = self.qd_mismatched
            out.append(
                f"{n} photo{'s' if n != 1 else ''} left out of the Query-DB re-rank: {'their' if n != 1 else 'its'} "
                f"Query-DB cache rows did not match their checksums; run `phs index {self.folder}` to repair them."
            )
        return out

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[SearchHit]:
        """The ranked ids as :class:`SearchHit` (path, relative path, score, id)."""
        live = self._known(ids)  # ids found by an earlier search of the same query (several objects) too
        out = []
        for s, i, ok in zip(scores.tolist(), np.asarray(ids, np.int64).tolist(), live.tolist()):
            if not ok:  # removed from the library meanwhile
                continue
            rel = self._info[i][0]
            path = self._paths.get(i)
            if path is None:
                path = self._paths[i] = path_of(self.index.folder, rel)
            out.append(SearchHit(path, rel, float(s), int(i)))
        return out

    def close(self) -> None:
        """Close the index."""
        self.index.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
