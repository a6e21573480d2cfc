"""How well a search's proposals find the prompted object in its results (``phs eval --localize``).

For every prompted object of every query image, PHS (Query-Only, the shipped default) ranks the database;
each *correct* result in the top ``k`` (a photo holding an object of the prompted category) gets a proposal
(:func:`core.method.propose.propose`) from

* ``phs``: the query's kept heads, and
* ``all-heads``: every head, with the same method,

and its IoU is the best IoU of the proposed box with a ground-truth box of the prompted category in that
photo. Reported: the share of correct results with IoU >= 0.5 and the mean IoU, in percent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.evaluation.datasets import Dataset
from core.evaluation.splits import query_objects
from core.method.engine import PHSEngine
from core.method.propose import (
    PatchState,
    box_iou,
    current_patch_state,
    patch_states,
    propose,
    query_descriptor,
    query_prototype,
)
from core.search.service import Gallery, QuerySpec, query_feature, rank

VARIANTS = ("phs", "all-heads")


@dataclass(frozen=True, eq=False)
class Pair:
    """A correct result of one query.

    Attributes:
        db_index: index of the result in the database dataset.
        heads: ``(h,)`` bool, the query's kept heads.
        category_id: the prompted category.
        prototype: ``(h, d_h)`` the prompted object's keys in the query photo
            (:func:`core.method.propose.query_prototype`).
    """

    db_index: int
    heads: np.ndarray
    category_id: int
    prototype: np.ndarray
    descriptors: dict[str, np.ndarray]
    head_mask: np.ndarray


@dataclass
class Localization:
    """Results of :func:`localize`: ``{"phs": [iou, ...], "all-heads": [...]}`` and settings."""

    ious: dict[str, list[float]]
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """``{"phs": {"iou@0.5": %, "mean_iou": %}, "all-heads": {...}, "n_results": N, ...}``."""
        out: dict[str, Any] = {}
        for name, vals in self.ious.items():
            v = np.asarray(vals, dtype=np.float64)
            out[name] = {"iou@0.5": round(float((v >= 0.5).mean() * 100), 2) if v.size else 0.0,
                         "mean_iou": round(float(v.mean() * 100), 2) if v.size else 0.0}  # fmt: skip
        out["n_results"] = len(next(iter(self.ious.values()), []))
        return out | self.info


def collect_pairs(
    engine: PHSEngine,
    queries: Dataset,
    gallery: Gallery,
    db_categories: list[frozenset[int]],
    *,
    k: int,
    h_on: int,
    make_prompt: Callable[[Any, Any], Any],
    roi: str = "sum",
    strategy: str = "before+scale",
) -> list[Pair]:
    """Rank the database for every prompted object (PHS, Query-Only) and keep the correct top-``k`` results.

    Args:
        make_prompt: ``(query_object, annotation) -> Prompt`` (the evaluation's prompt kind).
    """
    objs = query_objects(queries)
    pairs: list[Pair] = []
    current = None
    for o in objs:
        rec = queries[o.image_index]
        if current != o.image_index:
            engine.set_image(rec.load())
            qstate = current_patch_state(engine)
            current = o.image_index
        prompt = make_prompt(o, rec.objects[o.object_index])
        weights = engine.roi(prompt).positive
        proto = query_prototype(qstate, weights)
        spec = QuerySpec(prompt=prompt, method="phs", h_on=h_on, roi=roi, strategy=strategy, mode="qo", k=k)
        q = query_feature(engine, spec)
        _, ids = rank(engine, gallery, q, k=k, mode="qo")
        heads = q.selection.selected.copy()
        hm = q.selection.head_mask
        desc = {"phs": query_descriptor(engine.model, qstate, weights, hm),
                "all-heads": query_descriptor(engine.model, qstate, weights, None)}
        pairs += [Pair(int(i), heads, o.category_id, proto, desc, hm) for i in ids if o.category_id in db_categories[int(i)]]
    return pairs


def database_states(engine: PHSEngine, database: Dataset, indices: list[int], batch_size: int = 64,
                    progress: Callable[[int], None] | None = None) -> dict[int, PatchState]:
    """The :class:`~core.method.propose.PatchState` of the database images ``indices``, encoded in batches."""
    out: dict[int, PatchState] = {}
    for s in range(0, len(indices), batch_size):
        chunk = indices[s : s + batch_size]
        imgs = [Image.fromarray(database[i].load()) for i in chunk]
        out.update(zip(chunk, patch_states(engine, imgs)))
        if progress:
            progress(len(chunk))
    return out


def score_pairs(database: Dataset, pairs: list[Pair], states: dict[int, PatchState], method: str = "match",
                model: Any = None, **params: Any) -> Localization:
    """The best IoU with a ground-truth box of the prompted category, per pair, for both variants."""
    ious: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for p in pairs:
        gts = [o.bbox for o in database[p.db_index].objects if o.category_id == p.category_id]
        st = states[p.db_index]
        for name, heads, hm in (("phs", p.heads, p.head_mask), ("all-heads", None, None)):
            box = propose(st, heads, method, prototype=p.prototype, model=model, descriptor=p.descriptors[name],
                          head_mask=hm, **params).box
            ious[name].append(max(box_iou(box, g) for g in gts))
    return Localization(ious, {"method": method} | params)


def localize(
    engine: PHSEngine,
    queries: Dataset,
    database: Dataset,
    gallery: Gallery,
    *,
    k: int,
    h_on: int,
    make_prompt: Callable[[Any, Any], Any],
    roi: str = "sum",
    strategy: str = "before+scale",
    method: str = "match",
    batch_size: int = 64,
) -> Localization:
    """Measure the proposals of the kept heads and of all heads on the correct top-``k`` results.

    Result photos are encoded in batches and dropped after use, so memory stays at one batch of states.
    """
    cats = database.image_categories()
    pairs = collect_pairs(engine, queries, gallery, cats, k=k, h_on=h_on, make_prompt=make_prompt, roi=roi,
                          strategy=strategy)  # fmt: skip
    by_image: dict[int, list[Pair]] = {}
    for p in pairs:
        by_image.setdefault(p.db_index, []).append(p)
    order = sorted(by_image)
    ious: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        states = database_states(engine, database, chunk, batch_size)
        part = score_pairs(database, [p for i in chunk for p in by_image[i]], states, method, model=engine.model)
        for v in VARIANTS:
            ious[v] += part.ious[v]
    return Localization(ious, {"method": method, "k": k, "h_on": h_on})


def markdown(summary: dict[str, Any]) -> str:
    """The localization table of an evaluation summary (:meth:`Localization.summary`)."""
    rows = [f"| {v} | {summary[v]['iou@0.5']:.1f} | {summary[v]['mean_iou']:.1f} |" for v in VARIANTS]
    return "\n".join([
        "| proposal from | IoU >= 0.5 | mean IoU |", "|---|---:|---:|", *rows, "",
        f"Localization (%): the proposed box ({summary.get('method')}) against the best-matching ground-truth box "
        f"of the prompted category, over the {summary.get('n_results')} correct results in the top {summary.get('k')} "
        "(phs: the query's kept heads; all-heads: every head, same method).", "",
    ])  # fmt: skip
