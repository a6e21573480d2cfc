"""Retrieval metrics for visual-prompt queries: MP@k and MAP@k (seed 000, section A2, Eqs. A1-A8).

A *query* is one prompted object ``o_i`` of a query image ``x_Q``. A retrieved database image is correct
when it contains an object of the prompted object's category ``c(o_i)`` (Eq. A1). Per query:

* ``P~@k = (1/k) * sum_{k'<=k} S(x_k')`` (Eq. A2);
* ``AP~@k = (1/|K|) * sum_{k' in K} P~@k'`` with ``K`` the correct positions among the top ``k``
  (Eqs. A5, A6); ``AP~@k = 0`` when no image of the top ``k`` is correct (``K`` empty).

Per category ``c``, with ``I_{Q,c}`` the query images that have at least one query of category ``c``:

* ``P@k(c) = 1/|I_{Q,c}| * sum_{x_Q in I_{Q,c}} sum_{i: c(o_i)=c} P~@k(x_Q, o_i) / n_c(x_Q)`` (Eq. A3),
  and ``AP@k(c)`` the same with ``AP~@k`` (Eq. A7);
* ``MP@k`` and ``MAP@k`` are the means over the categories ``C`` (Eqs. A4, A8).

``C`` is the set of categories that have at least one query; a category with no query has no defined
``P@k(c)`` and is not part of the mean (so a database-only category does not pull the mean down). Eq. A3
is implemented literally: ``n_c(x_Q)`` is what the caller passes, so an image whose objects of category
``c`` are not all prompted weighs less than 1 in ``P@k(c)``; more queries of ``(x_Q, c)`` than ``n_c``
is an error.

All results are reported in percent (0-100), as in the paper's tables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CategoryScore", "FOIRMetrics", "GroupScore", "correctness", "foir_metrics", "per_query_scores"]


@dataclass(frozen=True)
class CategoryScore:
    """``P@k(c)`` and ``AP@k(c)`` (percent) of one category, with how many queries and images it has."""

    p: float
    ap: float
    n_queries: int
    n_images: int


@dataclass(frozen=True)
class GroupScore:
    """MP@k and MAP@k (percent) over a subset of the queries, with its size."""

    mp: float
    map: float
    n_queries: int
    n_images: int
    n_categories: int


@dataclass(frozen=True)
class FOIRMetrics:
    """Result of :func:`foir_metrics`.

    Attributes:
        k: The cut-off.
        mp: MP@k in percent (Eq. A4).
        map: MAP@k in percent (Eq. A8).
        n_queries: Number of queries (prompted objects).
        n_images: Number of distinct query images.
        per_category: ``{c: CategoryScore}`` for every ``c`` in ``C``.
        by_num_objects: ``{n: GroupScore}`` over the queries whose image has exactly ``n`` objects.
        min_num_objects: ``{n: GroupScore}`` over the queries whose image has ``n`` or more objects
            (the horizontal axis of Fig. A2 of seed 000), for every ``n`` from 1 to the largest count.
        precision: ``(P,)`` float64, ``P~@k`` of each query (fraction, not percent).
        average_precision: ``(P,)`` float64, ``AP~@k`` of each query (fraction).
    """

    k: int
    mp: float
    map: float
    n_queries: int
    n_images: int
    per_category: dict[int, CategoryScore]
    by_num_objects: dict[int, GroupScore]
    min_num_objects: dict[int, GroupScore]
    precision: np.ndarray = field(repr=False)
    average_precision: np.ndarray = field(repr=False)


def correctness(
    query_categories: Sequence[int],
    retrieved: np.ndarray,
    db_categories: Sequence[frozenset[int] | set[int]],
    k: int,
) -> np.ndarray:
    """``S`` of Eq. A1 for the top ``k`` of every query.

    Args:
        query_categories: ``(P,)`` category of each query's prompted object.
        retrieved: ``(P, >=k)`` int database indices, best first; ``-1`` marks "no image" (incorrect).
        db_categories: Per database image, the set of category ids it contains.
        k: Cut-off.

    Returns:
        ``(P, k)`` bool, ``True`` where the retrieved image contains the query's category.
    """
    retrieved = np.asarray(retrieved)
    if retrieved.ndim != 2 or retrieved.shape[0] != len(query_categories):
        raise ValueError(f"retrieved must be (P, k) with P = {len(query_categories)}, got {retrieved.shape}.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if retrieved.shape[1] < k:
        raise ValueError(
            f"retrieved has {retrieved.shape[1]} columns, fewer than k={k}; pass a smaller k or pad with -1."
        )
    top = retrieved[:, :k].astype(np.int64)
    n_db = len(db_categories)
    if top.size and (top.max() >= n_db or top.min() < -1):
        raise ValueError(f"retrieved holds indices outside [-1, {n_db - 1}].")
    cats = sorted({int(c) for s in db_categories for c in s} | {int(c) for c in query_categories})
    col = {c: j for j, c in enumerate(cats)}
    has = np.zeros((n_db + 1, len(cats)), dtype=bool)  # last row: the "no image" padding
    for i, s in enumerate(db_categories):
        for c in s:
            has[i, col[int(c)]] = True
    qcol = np.array([col[int(c)] for c in query_categories], dtype=np.int64)
    rows = np.where(top < 0, n_db, top)
    return has[rows, qcol[:, None]]


def per_query_scores(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P~@k`` (Eq. A2) and ``AP~@k`` (Eqs. A5, A6) of every query from ``S``.

    Args:
        correct: ``(P, k)`` bool, ``S`` of the top ``k`` of each query.

    Returns:
        ``(P,)`` float64 precision and ``(P,)`` float64 average precision (0 where nothing is correct).
    """
    correct = np.asarray(correct, dtype=bool)
    k = correct.shape[1]
    hits = np.cumsum(correct, axis=1)
    precision = hits[:, -1] / k if k else np.zeros(len(correct))
    p_at = hits / np.arange(1, k + 1)  # P~@k' for k' = 1..k
    n_hits = hits[:, -1]
    ap = np.where(n_hits > 0, (p_at * correct).sum(axis=1) / np.maximum(n_hits, 1), 0.0)
    return precision.astype(np.float64), ap.astype(np.float64)


def _aggregate(
    idx: np.ndarray,
    cats: np.ndarray,
    images: list[Hashable],
    n_cat: np.ndarray,
    prec: np.ndarray,
    ap: np.ndarray,
) -> tuple[dict[int, CategoryScore], int]:
    """Eqs. A3 and A7 over the queries ``idx``: ``{c: CategoryScore}`` and the number of distinct images."""
    p_sum: dict[int, float] = defaultdict(float)
    ap_sum: dict[int, float] = defaultdict(float)
    n_q: dict[int, int] = defaultdict(int)
    imgs: dict[int, set] = defaultdict(set)
    for i in idx:
        c = int(cats[i])
        p_sum[c] += prec[i] / n_cat[i]
        ap_sum[c] += ap[i] / n_cat[i]
        n_q[c] += 1
        imgs[c].add(images[i])
    per_cat = {
        c: CategoryScore(
            p=100.0 * p_sum[c] / len(imgs[c]),
            ap=100.0 * ap_sum[c] / len(imgs[c]),
            n_queries=n_q[c],
            n_images=len(imgs[c]),
        )
        for c in sorted(n_q)
    }
    return per_cat, len({images[i] for i in idx})


def _group(idx: np.ndarray, *args) -> GroupScore:
    per_cat, n_img = _aggregate(idx, *args)
    if not per_cat:
        return GroupScore(float("nan"), float("nan"), 0, 0, 0)
    return GroupScore(
        mp=float(np.mean([s.p for s in per_cat.values()])),
        map=float(np.mean([s.ap for s in per_cat.values()])),
        n_queries=len(idx),
        n_images=n_img,
        n_categories=len(per_cat),
    )


def foir_metrics(
    query_categories: Sequence[int],
    query_image_ids: Sequence[Hashable],
    query_n_cat: Sequence[int],
    query_n_objects: Sequence[int],
    retrieved: np.ndarray,
    db_categories: Sequence[frozenset[int] | set[int]],
    k: int = 100,
) -> FOIRMetrics:
    """MP@k and MAP@k of visual-prompt queries (seed 000, Eqs. A1-A8), per category and per object count.

    Args:
        query_categories: ``(P,)`` category ``c(o_i)`` of each query's prompted object.
        query_image_ids: ``(P,)`` id of each query's image (queries of one image share it).
        query_n_cat: ``(P,)`` ``n_c(x_Q)``: objects of the query's category in its image (at least 1).
        query_n_objects: ``(P,)`` ``n(x_Q)``: objects in the query's image (for the breakdowns).
        retrieved: ``(P, >=k)`` int database indices, best first, query images excluded (the query and
            database sets are disjoint); ``-1`` pads a short list and counts as incorrect.
        db_categories: Per database image, the set of category ids it contains.
        k: Cut-off (100 in the paper).

    Returns:
        The metrics; see :class:`FOIRMetrics` and the module doc for ``C`` and edge cases.

    Raises:
        ValueError: Inconsistent lengths, ``n_c < 1``, more queries of one ``(image, category)`` than its
            ``n_c``, different ``n_c`` for one ``(image, category)``, or too few retrieved columns.
    """
    n = len(query_categories)
    if not (len(query_image_ids) == len(query_n_cat) == len(query_n_objects) == n):
        raise ValueError(
            "query_categories, query_image_ids, query_n_cat and query_n_objects must have one length."
        )
    if n == 0:
        raise ValueError("There are no queries to evaluate.")
    cats = np.asarray(query_categories, dtype=np.int64)
    n_cat = np.asarray(query_n_cat, dtype=np.int64)
    n_obj = np.asarray(query_n_objects, dtype=np.int64)
    images = list(query_image_ids)
    if (n_cat < 1).any():
        raise ValueError("n_c of every query must be at least 1 (its own object).")
    if (n_obj < n_cat).any():
        raise ValueError("n(x_Q) of every query must be at least its n_c(x_Q).")
    seen: dict[tuple[Hashable, int], list[int]] = defaultdict(list)
    for i in range(n):
        seen[(images[i], int(cats[i]))].append(int(n_cat[i]))
    for (img, c), ncs in seen.items():
        if len(set(ncs)) != 1:
            raise ValueError(
                f"Image {img!r} has queries of category {c} with different n_c values {sorted(set(ncs))}."
            )
        if len(ncs) > ncs[0]:
            raise ValueError(f"Image {img!r} has {len(ncs)} queries of category {c} but n_c = {ncs[0]}.")

    correct = correctness(cats.tolist(), retrieved, db_categories, k)
    prec, ap = per_query_scores(correct)
    args = (cats, images, n_cat, prec, ap)
    all_idx = np.arange(n)
    per_cat, n_img = _aggregate(all_idx, *args)
    overall = _group(all_idx, *args)
    by_n = {int(v): _group(np.flatnonzero(n_obj == v), *args) for v in np.unique(n_obj)}
    at_least = {v: _group(np.flatnonzero(n_obj >= v), *args) for v in range(1, int(n_obj.max()) + 1)}
    return FOIRMetrics(
        k=k,
        mp=overall.mp,
        map=overall.map,
        n_queries=n,
        n_images=n_img,
        per_category=per_cat,
        by_num_objects=by_n,
        min_num_objects=at_least,
        precision=prec,
        average_precision=ap,
    )
