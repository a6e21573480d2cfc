"""Ranking an opened index for a raw feature in tests, the way the query service ranks it.

The product has one entry that ranks photos, :meth:`core.search.service.QueryService.run`; index tests that
hold a raw feature (a fake engine's, or a stored one) rank through the same :func:`core.search.service.rank`
and the index's :meth:`core.search.searcher.Searcher.hits`.
"""

from __future__ import annotations

import numpy as np

from core.search.service import DEFAULT_CANDIDATES, SearchHit, rank


def search(searcher, query: np.ndarray, k: int = 20, *, mode: str = "qo", head_mask: np.ndarray | None = None,
           candidates: int | None = DEFAULT_CANDIDATES, strategy: str = "before+scale") -> list[SearchHit]:
    """Up to ``k`` hits of an opened :class:`core.search.searcher.Searcher` for an ``(F,)`` feature, best first."""
    scores, ids = rank(searcher.engine, searcher, query, k=k, mode=mode, candidates=candidates, strategy=strategy,
                       head_mask=head_mask)
    return searcher.hits(scores, ids)
