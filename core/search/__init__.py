"""The one query service: a query spec in, head scores, hits and timings out (see :mod:`core.search.service`).

The names below load their module on first use (PEP 562), so a light part of the package
(:mod:`core.search.copies`, the app's result rows) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "Searcher": "core.search.searcher",
    "DEFAULT_CANDIDATES": "core.search.service",
    "METHODS": "core.search.service",
    "MODES": "core.search.service",
    "Gallery": "core.search.service",
    "MemoryGallery": "core.search.service",
    "Outcome": "core.search.service",
    "QueryFeature": "core.search.service",
    "QueryService": "core.search.service",
    "QuerySpec": "core.search.service",
    "SearchHit": "core.search.service",
    "query_feature": "core.search.service",
    "rank": "core.search.service",
}

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
