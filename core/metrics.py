"""Public name of the retrieval metrics (``from core.metrics import foir_metrics``): :mod:`core.evaluation.metrics`,
re-exported."""

from core.evaluation.metrics import (
    CategoryScore,
    FOIRMetrics,
    GroupScore,
    correctness,
    foir_metrics,
    per_query_scores,
)

__all__ = ["CategoryScore", "FOIRMetrics", "GroupScore", "correctness", "foir_metrics", "per_query_scores"]
