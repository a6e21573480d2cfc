"""The one query service: a query spec in, head scores, hits and timings out (see :mod:`core.search.service`)."""

from core.search.searcher import Searcher
from core.search.service import (
    DEFAULT_CANDIDATES,
    METHODS,
    MODES,
    Gallery,
    MemoryGallery,
    Outcome,
    QueryFeature,
    QueryService,
    QuerySpec,
    SearchHit,
    query_feature,
    rank,
)

__all__ = [
    "DEFAULT_CANDIDATES",
    "METHODS",
    "MODES",
    "Gallery",
    "MemoryGallery",
    "Outcome",
    "QueryFeature",
    "QueryService",
    "QuerySpec",
    "SearchHit",
    "Searcher",
    "query_feature",
    "rank",
]
