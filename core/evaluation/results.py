"""What an evaluation produced (:class:`EvalResult`) and the tables' column headings, shared by the runner
(:mod:`core.evaluation.protocol`) and the report writers (:mod:`core.evaluation.report`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.evaluation.metrics import FOIRMetrics

LABELS: dict[str, str] = {
    "cbir": "CBIR",
    "crop": "Crop",
    "mask": "Mask",
    "attn-mask": "Attention Mask",
    "fa": "FA",
    "phs-qo": "PHS (QO)",
    "phs-qd": "PHS (QD)",
    "phs-qd-exact": "PHS (QD, exact)",
    "fa+phs": "FA+PHS",
    "crop+phs": "Crop+PHS (h-1)",
    "lvp": "Learned prompt",
    "red-circle": "Red circle",
    "lvp+phs": "Learned prompt+PHS",
}
"""Column headings for the tables, following the paper's names."""


@dataclass
class EvalResult:
    """Everything one evaluation produced.

    Attributes:
        metrics: ``{column: FOIRMetrics}``; columns are method names, ``<method>-N`` for noisy prompts.
        sweep: ``{method: {h_on: FOIRMetrics}}`` for the ``h_on`` sweep.
        info: dataset, model and settings, for the JSON and the table captions.
    """

    metrics: dict[str, FOIRMetrics]
    sweep: dict[str, dict[int, FOIRMetrics]]
    info: dict[str, Any]

    @property
    def k(self) -> int:
        """The cut-off."""
        return int(self.info["k"])

    def to_json(self) -> dict[str, Any]:
        """``{"MP@k": {col: v}, "MAP@k": {col: v}, "n_prompts": N, ...}`` (percent, 2 decimals)."""
        k = self.k
        out: dict[str, Any] = {
            f"MP@{k}": {c: round(m.mp, 2) for c, m in self.metrics.items()},
            f"MAP@{k}": {c: round(m.map, 2) for c, m in self.metrics.items()},
            "n_prompts": next(iter(self.metrics.values())).n_queries,
            "n_query_images": next(iter(self.metrics.values())).n_images,
        }
        out["min_num_objects"] = {
            c: {str(n): round(g.mp, 2) for n, g in m.min_num_objects.items() if g.n_queries}
            for c, m in self.metrics.items()
        }
        if self.sweep:
            out["h_on_sweep"] = {
                meth: {str(h): {f"MP@{k}": round(m.mp, 2), f"MAP@{k}": round(m.map, 2)} for h, m in d.items()}
                for meth, d in self.sweep.items()
            }
        out.update(self.info)
        return out
