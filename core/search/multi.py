"""Several indexed folders searched as one library (``phs search --all``, the app's checked folders).

A :class:`MultiGallery` answers :func:`core.search.service.rank`'s questions (the :class:`Gallery` protocol)
over several galleries at once: the nearest photos of each, merged by score; the Query-DB cache rows of each
candidate from its own gallery. Since each folder's nearest search is exact (or as exact as its index kind),
the merged top ``k`` is the top ``k`` of the union, so results from different folders rank together exactly
as they would in one folder holding all the photos.

Ids: a gallery's own id ``i`` of gallery number ``g`` is ``(g << ID_BITS) | i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Bits of a gallery's own ids (SQLite row ids of one folder's index stay far below 2**40).
ID_BITS = 40
_LOCAL = (1 << ID_BITS) - 1


class MultiGallery:
    """The union of galleries (e.g. one :class:`core.search.searcher.Searcher` per folder).

    Args:
        galleries: The members, each answering the Gallery protocol (and ``hits``, for paths). Closed by
            :meth:`close` when they have a ``close``.
    """

    def __init__(self, galleries: Sequence[Any]) -> None:
        self.galleries = list(galleries)

    def set_filter(self, photo_filter: Any) -> None:
        """Give every member the same :class:`core.library.filters.PhotoFilter` (``None``: no filter)."""
        for g in self.galleries:
            g.set_filter(photo_filter)

    @property
    def warnings(self) -> list[str]:
        """Every member's warnings (a stale read, Query-DB rows left out), each naming its folder."""
        out = []
        for g in self.galleries:
            for w in getattr(g, "warnings", []):
                folder = getattr(g, "folder", None)
                out.append(f"{folder}: {w}" if folder is not None and str(folder) not in w else w)
        return out

    @property
    def size(self) -> int:
        """Photos searchable now, in all members."""
        return sum(int(g.size) for g in self.galleries)

    @staticmethod
    def _split(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        return ids >> ID_BITS, ids & _LOCAL

    def nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Query-Only: the ``k`` best of every member's ``k`` best, merged, best first."""
        scores, ids = [], []
        for g, gallery in enumerate(self.galleries):
            n = int(gallery.size)
            if n == 0:
                continue
            s, i = gallery.nearest(query, min(int(k), n))
            scores.append(np.asarray(s, np.float32))
            ids.append((np.int64(g) << ID_BITS) | np.asarray(i, np.int64))
        if not scores:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        s, i = np.concatenate(scores), np.concatenate(ids)
        order = np.argsort(-s, kind="stable")[: int(k)]
        return s[order], i[order]

    def all_ids(self) -> np.ndarray:
        """``(N,)`` ids of every searchable photo of every member."""
        parts = [(np.int64(g) << ID_BITS) | np.asarray(m.all_ids(), np.int64) for g, m in enumerate(self.galleries)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def states(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Query-DB cache rows of ``ids`` (any mix of members), in the order of ``ids``:
        ``(n, D)`` ``X_cls`` and ``(n, h, d_h)`` ``O[CLS]``."""
        which, local = self._split(ids)
        x_cls: np.ndarray | None = None
        o_cls: np.ndarray | None = None
        for g in np.unique(which).tolist():
            sel = np.flatnonzero(which == g)
            x, o = self.galleries[g].states(local[sel])
            if x_cls is None:
                x_cls = np.empty((len(ids), *np.shape(x)[1:]), dtype=np.asarray(x).dtype)
                o_cls = np.empty((len(ids), *np.shape(o)[1:]), dtype=np.asarray(o).dtype)
            x_cls[sel], o_cls[sel] = x, o  # type: ignore[index]
        if x_cls is None or o_cls is None:
            raise ValueError("states() needs at least one id")
        return x_cls, o_cls

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Any]:
        """The ranked ids as each member's hits (paths from the member that holds them), in rank order."""
        which, local = self._split(ids)
        scores = np.asarray(scores, np.float32)
        out: list[Any] = [None] * len(local)
        for g in np.unique(which).tolist():
            sel = np.flatnonzero(which == g)
            for j, hit in zip(sel.tolist(), self.galleries[g].hits(scores[sel], local[sel])):
                out[j] = hit
        return out

    def close(self) -> None:
        """Close every member that can be closed."""
        for g in self.galleries:
            close = getattr(g, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> MultiGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
