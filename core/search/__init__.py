"""The one query service: a query spec in, head scores, hits and timings out (see :mod:`core.search.service`)."""

from core.search.searcher import Searcher, SearchHit

__all__ = ["SearchHit", "Searcher"]
