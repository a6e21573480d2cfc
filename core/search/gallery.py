"""What the query service ranks: a :class:`Gallery` (an on-disk index or arrays in memory) and its hits.

:class:`core.search.searcher.Searcher` is the gallery of an indexed folder; :class:`MemoryGallery` holds the
evaluation's database in arrays. Both are re-exported by :mod:`core.search.service`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SearchHit:
    """One result.

    Attributes:
        path: absolute path of the photo.
        rel: path relative to the photo folder.
        score: cosine similarity to the query (higher is better).
        id: SQLite row id = FAISS id.
    """

    path: Any
    rel: str
    score: float
    id: int

    def as_dict(self) -> dict[str, Any]:
        """``{"path": str, "score": float}`` for JSON output."""
        return {"path": str(self.path), "score": round(float(self.score), 6)}


class Gallery(Protocol):
    """What :func:`rank` needs of a set of database photos (an on-disk index or arrays in memory)."""

    @property
    def size(self) -> int:
        """Photos searchable now."""

    def nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Query-Only: ``(scores, ids)`` of the ``k`` best plain features for a unit ``(F,)`` query, best first."""

    def all_ids(self) -> np.ndarray:
        """``(N,)`` int64 ids of every searchable photo."""

    def states(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Query-DB cache of ``ids``: ``(n, D)`` ``X_cls`` and ``(n, h, d_h)`` ``O[CLS]``."""

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> Sequence[Any]:
        """The ranked ``(n,)`` ``scores`` and ``ids`` as the gallery's results, best first (one per id)."""

    # Optional: ``candidates(query, n) -> (<= n,) ids`` near a unit query, in no particular order, for a caller
    # that scores every one itself (several objects); an approximate index answers it more cheaply than
    # :meth:`nearest`. Without it :meth:`nearest` is used.


@dataclass(frozen=True, eq=False)
class MemoryGallery:
    """A gallery held in arrays (the evaluation's database).

    Attributes:
        features: ``(N, F)`` plain features as a gallery keeps them (:func:`core.method.phs.database_features`).
        x_cls: ``(N, D)`` Query-DB cache ``X_cls``.
        o_cls: ``(N, h, d_h)`` Query-DB cache ``O[CLS]``.
    """

    features: np.ndarray
    x_cls: np.ndarray
    o_cls: np.ndarray

    @property
    def size(self) -> int:
        """Number of photos."""
        return int(self.features.shape[0])

    def nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine top ``k`` (ids are row indices)."""
        s = self.features @ query
        kk = min(int(k), s.shape[0])
        idx = np.argpartition(-s, kk - 1)[:kk]
        idx = idx[np.argsort(-s[idx], kind="stable")]
        return s[idx], idx.astype(np.int64)

    def features_of(self, ids: np.ndarray) -> np.ndarray:
        """``(n, F)`` plain features of ``ids`` (several objects score every candidate for every object)."""
        return self.features[ids]

    def all_ids(self) -> np.ndarray:
        """Row indices ``0 .. N-1``."""
        return np.arange(self.size, dtype=np.int64)

    def states(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the Query-DB cache."""
        return self.x_cls[ids], self.o_cls[ids]

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[tuple[float, int]]:
        """``(score, row index)`` pairs, best first."""
        return list(zip(scores.tolist(), ids.tolist()))
