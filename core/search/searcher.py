"""Search a photo index with a (prompted) query feature: Query-Only and two-stage Query-DB.

* **Query-Only (QO)**: the database holds plain [CLS] features; the query is the PHS feature computed with
  the query's head mask. One FAISS search.
* **Query-DB (QD)**, two stages: the QO top ``candidates`` (K', default 1,000) are re-ranked by recomputing
  *their* features with the query's head mask from the QD cache (``X_cls``, ``O[CLS]``) through
  :meth:`core.method.engine.PHSEngine.features_from_cache`: one projection and one MLP per candidate, no image
  decoded, no model run. K' is raised to ``k`` when smaller, so every returned photo is re-ranked.

A :class:`Searcher` can be used while an indexing run commits batches (SQLite WAL readers do not block the
writer): it loads the FAISS file once (atomically replaced by the indexer, so never torn), and before each
query brings its in-memory copy up to date with the rows committed since (``core.library.vectors.sync_vectors``)
whenever the database generation moved; results whose rows were removed meanwhile are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import PHSError
from core.library.photo_index import EngineLike, PhotoIndex, path_of
from core.library.vectors import APPROX_THRESHOLD

MODES = ("qo", "qd")
DEFAULT_CANDIDATES = 1000


@dataclass(frozen=True)
class SearchHit:
    """One result.

    Attributes:
        path: Absolute path of the photo.
        rel: Path relative to the photo folder.
        score: Cosine similarity to the query (higher is better).
        id: SQLite row id = FAISS id.
    """

    path: Path
    rel: str
    score: float
    id: int

    def as_dict(self) -> dict[str, Any]:
        """``{"path": str, "score": float}`` for JSON output."""
        return {"path": str(self.path), "score": round(float(self.score), 6)}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Normalise rows (or a vector) of ``x`` to unit L2 norm, float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


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

    @property
    def size(self) -> int:
        """Number of searchable photos now."""
        return self.index.vectors().ntotal

    def search(
        self,
        query: np.ndarray,
        k: int = 20,
        *,
        mode: str = "qo",
        head_mask: np.ndarray | None = None,
        candidates: int = DEFAULT_CANDIDATES,
        strategy: str | None = None,
    ) -> list[SearchHit]:
        """Rank the indexed photos by similarity to ``query``.

        Args:
            query: (Dout,) query feature, raw or normalised.
            k: Number of hits.
            mode: ``"qo"`` (Query-Only) or ``"qd"`` (Query-DB: re-rank with ``head_mask``).
            head_mask: (h,) the query's head mask, needed for ``"qd"``; with ``None`` QD equals QO.
            candidates: K', the number of QO results re-ranked in QD (raised to ``k`` if smaller).
            strategy: Head-mask strategy passed to ``features_from_cache`` (the engine default if ``None``).

        Returns:
            Up to ``k`` hits, best first.
        """
        if mode not in MODES:
            raise PHSError(f"The search mode must be one of {', '.join(MODES)}, not {mode!r}.")
        if k < 1:
            raise PHSError("The number of results k must be at least 1.")
        q = l2_normalize(np.asarray(query, dtype=np.float32).reshape(-1))
        if q.shape[0] != self.index.dims.feature_dim:
            raise PHSError(
                f"The query feature has {q.shape[0]} dimensions but the index has {self.index.dims.feature_dim}."
            )
        vi = self.index.vectors()
        db = self.index.db
        rerank = mode == "qd" and head_mask is not None
        k1 = max(k, int(candidates)) if rerank else k
        scores, ids = vi.search(q[None], k1)
        scores, ids = scores[0], ids[0]
        keep = ids >= 0
        scores, ids = scores[keep], ids[keep]
        db.conn.execute("BEGIN")
        try:
            info = db.lookup(ids)  # id -> (rel, slot); ids deleted since the FAISS sync drop out here
        finally:
            db.conn.execute("COMMIT")
        sel = np.array([i in info for i in ids.tolist()], dtype=bool)
        scores, ids = scores[sel], ids[sel]
        if rerank and len(ids):
            slots = np.array([info[int(i)][1] for i in ids], dtype=np.int64)
            x_cls, o_cls = self.index.qd.read(slots)
            mask = np.asarray(head_mask, dtype=np.float32).reshape(-1)
            if strategy is None:
                feats = self.engine.features_from_cache(x_cls, o_cls, mask)
            else:
                feats = self.engine.features_from_cache(x_cls, o_cls, mask, strategy=strategy)
            scores = l2_normalize(feats) @ q
            order = np.argsort(-scores, kind="stable")
            scores, ids = scores[order], ids[order]
        out = []
        for s, i in zip(scores[:k].tolist(), ids[:k].tolist()):
            rel = info[i][0]
            out.append(SearchHit(path_of(self.index.folder, rel), rel, float(s), int(i)))
        return out

    def close(self) -> None:
        """Close the index."""
        self.index.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def query_feature(
    engine: Any,
    image: Any,
    prompt: Any = None,
    *,
    h_on: int = 5,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Encode a query photo and compute its PHS feature.

    Args:
        engine: A :class:`core.method.engine.PHSEngine`.
        image: A path, bytes or PIL image (see :func:`core.imageio.load_image`).
        prompt: A :class:`core.method.prompts.Prompt`, or ``None`` for the plain [CLS] feature (CBIR).
        h_on: Heads kept by PHS.

    Returns:
        The (Dout,) raw query feature and the (h,) head mask (``None`` without a prompt).
    """
    engine.set_image(image)
    if prompt is None:
        return np.asarray(engine.feature(None), dtype=np.float32), None
    selection = engine.select_heads(prompt, h_on=h_on)
    mask = np.asarray(selection.head_mask, dtype=np.float32)
    return np.asarray(engine.feature(mask), dtype=np.float32), mask


def search_folder(
    folder: str | Path,
    engine: Any,
    image: Any,
    prompt: Any = None,
    *,
    k: int = 20,
    mode: str = "qo",
    h_on: int = 5,
    candidates: int = DEFAULT_CANDIDATES,
) -> list[SearchHit]:
    """Search the index of ``folder`` with a query photo and an optional prompt (the ``phs search`` path).

    Returns:
        Up to ``k`` hits, best first.
    """
    with Searcher(folder, engine) as searcher:
        feature, mask = query_feature(engine, image, prompt, h_on=h_on)
        return searcher.search(feature, k, mode=mode, head_mask=mask, candidates=candidates)
