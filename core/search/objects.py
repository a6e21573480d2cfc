"""Several objects in one query: each object its own heads and score, the scores combined.

A query of several objects asks for the photos that hold all the wanted objects (``and``), any of them
(``or``), and lowers the photos that hold an excluded object (NOT). Every object is a mark on a photo (the
query photo or another one) with its own head selection and feature; every library photo gets one score per
object, Query-Only (the plain database feature) or Query-DB (the database feature recomputed with that
object's head mask), and the scores are combined by the rules below.

Candidates are the union of each wanted object's nearest neighbours (Query-Only, ``candidates`` each), and
every candidate is scored exactly for every object, excluded ones included: a photo that is the 900th
neighbour of one object and the 3rd of the other still gets both of its true scores.

The rules were chosen by measurement on synthetic scenes (``bench/objects_rules.py``; the figures are in the
README). Each object's cosines are first put on one scale, the z-score against that object's cosines over
the library (estimated on a fixed sample of ``STATS_SAMPLE`` photos): objects differ in how high their
cosines run, and the raw maximum for ``or`` let the object with the higher cosines decide alone. Then ``and``
takes a soft minimum of the wanted objects' z-scores (the minimum asks that every object be there; the soft
one lets the other objects break ties), ``or`` a soft maximum, and an excluded object subtracts
``EXCLUDE_WEIGHT`` times its z-score.

This module is below :mod:`core.search.service` (which imports it): it holds the object specs, the
combination rules and :func:`rank_objects`; the service turns each object's mark into its query feature.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.defaults import OBJECT_CANDIDATES  # noqa: F401 (re-exported)
from core.errors import PromptError
from core.method.phs import HeadStrategy, l2_normalize
from core.method.prompts import Prompt
from core.method.transforms import ImageLike

COMBINES: tuple[str, ...] = ("and", "or")
"""``and``: photos that hold every wanted object; ``or``: photos that hold at least one."""

#: Temperature of the soft minimum (``and``) and soft maximum (``or``) in z-score units
#: (``-t log(mean(exp(-z / t)))``): at 0 the plain minimum, large the mean.
TEMPERATURE = 0.5

#: How much of an excluded object's z-score is subtracted from the wanted score.
EXCLUDE_WEIGHT = 0.5

#: Library photos whose cosines give each object's mean and spread (the z-score of its scores).
STATS_SAMPLE = 1024

# OBJECT_CANDIDATES: Query-Only neighbours taken per wanted object as candidates (each is then scored for every
# object); decided in core.defaults with the other defaults.


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a query: a mark on a photo, wanted or excluded, optionally with its own head settings.

    Attributes:
        prompt: the mark, in pixels of its photo (EXIF orientation applied).
        photo: the photo the mark is on (path, bytes, PIL image or ``(H, W, 3)`` uint8 array); ``None`` for
            the query's photo.
        excluded: ``True`` for an object whose photos are lowered (NOT).
        method: the query method of this object (a name of :data:`core.search.service.METHODS`); ``None``
            for the query's.
        h_on: heads kept for this object; ``None`` for the query's.
        force_on, force_off: head indices toggled by hand for this object.
        feature: this object's query feature computed before (a
            :class:`core.search.service.QueryFeature` of the same mark and settings): used as it is, so an object
            kept from another photo is not decoded and encoded again on every search.
    """

    prompt: Prompt
    photo: ImageLike | None = None
    excluded: bool = False
    method: str | None = None
    h_on: int | None = None
    force_on: tuple[int, ...] = ()
    force_off: tuple[int, ...] = ()
    feature: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, Prompt):
            raise PromptError("Each object needs a mark: a point, a box or a mask.")
        if self.h_on is not None and int(self.h_on) < 1:
            raise PromptError(f"The number of heads kept must be at least 1, not {self.h_on}.")
        object.__setattr__(self, "force_on", tuple(int(i) for i in self.force_on))
        object.__setattr__(self, "force_off", tuple(int(i) for i in self.force_off))


def check_objects(objects: Sequence[ObjectSpec], combine: str) -> None:
    """Refuse, in one sentence, a set of objects that cannot be searched.

    Raises:
        PromptError: an unknown combination, or no wanted object.
    """
    if combine not in COMBINES:
        raise PromptError(f"Objects combine with 'and' or 'or', not '{combine}'.")
    if objects and all(o.excluded for o in objects):
        raise PromptError("Mark at least one wanted object: excluded objects alone select nothing.")


def soft_min(scores: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """Row-wise soft minimum ``-t log(mean(exp(-s / t)))`` of ``(n, J)`` scores, ``(n,)``.

    Equal scores give that score; ``t -> 0`` is the minimum, ``t -> inf`` the mean.
    """
    s = np.asarray(scores, np.float64)
    if temperature <= 0:
        return s.min(axis=1)
    lo = s.min(axis=1, keepdims=True)  # shifted for stability: exp of non-positive numbers only
    return (lo[:, 0] - temperature * np.log(np.mean(np.exp(-(s - lo) / temperature), axis=1)))


def score_stats(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each object's mean and spread over library photos: ``(J,)`` and ``(J,)`` from ``(n, J)`` cosines.

    Non-finite rows (damaged cache rows) are left out; a spread below ``1e-6`` (or no sample) counts as 1.
    """
    s = np.asarray(sample, np.float64)
    s = s[np.isfinite(s).all(axis=1)] if s.ndim == 2 else s.reshape(0, 1)
    if len(s) < 2:
        j = s.shape[1]
        return np.zeros(j), np.ones(j)
    sd = s.std(axis=0)
    return s.mean(axis=0), np.where(sd > 1e-6, sd, 1.0)


def combine_scores(
    scores: np.ndarray,
    excluded: Sequence[bool],
    combine: str = "and",
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    temperature: float = TEMPERATURE,
    exclude_weight: float = EXCLUDE_WEIGHT,
) -> np.ndarray:
    """One score per photo from its per-object cosines.

    Args:
        scores: ``(n, J)`` cosine of each of ``n`` photos with each of the ``J`` objects.
        excluded: ``(J,)`` which objects are excluded.
        combine: ``and`` (soft minimum of the wanted objects) or ``or`` (soft maximum).
        stats: ``(mean, spread)``, each ``(J,)``, of each object's cosines over the library
            (:func:`score_stats`); the scores are combined as z-scores. ``None`` combines raw cosines.
        temperature: of the soft minimum and maximum (0: the minimum and maximum).
        exclude_weight: the share of the largest excluded score subtracted.

    Returns:
        ``(n,)`` float32, higher is better; NaN where any object's score is not finite.
    """
    s = np.asarray(scores, np.float64)
    ex = np.asarray(excluded, bool)
    if s.ndim != 2 or s.shape[1] != ex.shape[0]:
        raise PromptError(f"Per-object scores must be (n, {ex.shape[0]}), not {s.shape}.")
    if ex.all():
        raise PromptError("Mark at least one wanted object: excluded objects alone select nothing.")
    if combine not in COMBINES:
        raise PromptError(f"Objects combine with 'and' or 'or', not '{combine}'.")
    if stats is not None:
        s = (s - np.asarray(stats[0], np.float64)) / np.asarray(stats[1], np.float64)
    want = s[:, ~ex]
    with np.errstate(invalid="ignore"):
        out = soft_min(want, temperature) if combine == "and" else -soft_min(-want, temperature)
        if ex.any():
            out = out - exclude_weight * s[:, ex].max(axis=1)
    out[~np.isfinite(s).all(axis=1)] = np.nan
    return out.astype(np.float32)


def library_sample(engine: Any, gallery: Any, n: int = STATS_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """Photos spread evenly over the gallery and their unit plain features, ``(m,)`` ids and ``(m, F)``,
    ``m = min(n, N)``; kept per gallery while its size stays the same (a prompt edit reads nothing)."""
    size = gallery.size
    hit = _SAMPLES.get(gallery)
    if hit is not None and hit[0] == size:
        return hit[1], hit[2]
    pick = getattr(gallery, "sample_ids", None)  # an index picks them without reading every row
    ids = np.asarray(pick(n) if pick is not None else gallery.all_ids(), np.int64)
    if len(ids) > n:
        ids = ids[np.linspace(0, len(ids) - 1, n).round().astype(np.int64)]
    plain = _plain_features(engine, gallery, ids)
    with contextlib.suppress(TypeError):  # a gallery that cannot be weakly referenced is sampled every time
        _SAMPLES[gallery] = (size, ids, plain)
    return ids, plain


_SAMPLES: weakref.WeakKeyDictionary[Any, tuple[int, np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class ObjectQuery:
    """The query side of one object: its feature and, for the PHS methods, its head mask.

    Attributes:
        feature: ``(F,)`` query feature (not necessarily normalised).
        head_mask: ``(h,)`` the object's head mask for Query-DB, or ``None``.
        excluded: whether the object is excluded.
    """

    feature: np.ndarray
    head_mask: np.ndarray | None
    excluded: bool = False


@dataclass(frozen=True, eq=False)
class ObjectRanking:
    """What :func:`rank_objects` returns.

    Attributes:
        scores: ``(k,)`` combined scores, best first.
        ids: ``(k,)`` gallery ids.
        object_scores: ``(k, J)`` each hit's cosine with each object (the order of the objects).
        n_candidates: photos scored exactly (the union of the neighbours).
        stats: ``(mean, spread)`` of each object's cosines over the library sample, ``(J,)`` each.
    """

    scores: np.ndarray
    ids: np.ndarray
    object_scores: np.ndarray
    n_candidates: int
    stats: tuple[np.ndarray, np.ndarray] | None = None


def _plain_features(engine: Any, gallery: Any, ids: np.ndarray) -> np.ndarray:
    """``(n, F)`` unit plain features of ``ids``: read from the gallery, else recomputed from its Query-DB cache."""
    read = getattr(gallery, "features_of", None)
    if read is not None:
        return l2_normalize(np.asarray(read(ids), np.float32))
    x_cls, o_cls = gallery.states(ids)
    return l2_normalize(engine.features_from_cache(x_cls, o_cls, None))


def object_cosines(
    engine: Any,
    gallery: Any,
    queries: Sequence[ObjectQuery],
    ids: np.ndarray,
    *,
    mode: str = "qo",
    strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
    plain: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, J)`` cosine of each gallery photo ``ids`` with each object, exactly.

    Query-Only compares with the plain database features (``plain``, ``(n, F)`` unit rows, when already
    read); Query-DB recomputes each photo's feature with each object's head mask from the Query-DB cache
    (objects without a head mask use the plain feature).
    """
    out = np.empty((len(ids), len(queries)), np.float32)
    qs = [l2_normalize(np.asarray(q.feature, np.float32).reshape(-1)) for q in queries]
    need_plain = mode == "qo" or any(q.head_mask is None for q in queries)
    if need_plain and plain is None:
        plain = _plain_features(engine, gallery, ids)
    states = gallery.states(ids) if mode == "qd" and any(q.head_mask is not None for q in queries) else None
    for j, (q, qn) in enumerate(zip(queries, qs)):
        if states is not None and q.head_mask is not None:
            f = l2_normalize(engine.features_from_cache(states[0], states[1], q.head_mask, strategy))
        else:
            f = plain
        out[:, j] = np.einsum("ij,j->i", f, qn)
    return out


def _memo(gallery: Any) -> OrderedDict[tuple, Any]:
    """A small per-gallery memory of what an unchanged object gave (its neighbours, its library statistics):
    a mark edit changes one object, and the others' answers are reused while the gallery's size holds."""
    memo = _MEMO.get(gallery)
    if memo is None:
        memo = OrderedDict()
        with contextlib.suppress(TypeError):
            _MEMO[gallery] = memo
    return memo


def _remember(memo: OrderedDict[tuple, Any], key: tuple, value: Any) -> Any:
    memo[key] = value
    while len(memo) > MEMO_SIZE:
        memo.popitem(last=False)
    return value


_MEMO: weakref.WeakKeyDictionary[Any, OrderedDict[tuple, Any]] = weakref.WeakKeyDictionary()

#: Answers of objects kept per gallery (a few objects, a few recent marks each).
MEMO_SIZE = 32


def candidate_ids(gallery: Any, queries: Sequence[ObjectQuery], per_object: int) -> np.ndarray:
    """The union of each wanted object's ``per_object`` nearest neighbours (Query-Only), ``(n,)`` int64, sorted."""
    found = []
    near = getattr(gallery, "candidates", None)  # an index's cheaper search: its order is not needed here
    memo, size = _memo(gallery), gallery.size
    for q in queries:
        if q.excluded:
            continue
        qn = l2_normalize(np.asarray(q.feature, np.float32).reshape(-1))
        key = ("near", qn.tobytes(), int(per_object), size)
        ids = memo.get(key)
        if ids is None:
            ids = near(qn, per_object) if near is not None else gallery.nearest(qn, per_object)[1]
            ids = _remember(memo, key, np.asarray(ids, np.int64))
        found.append(ids)
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def library_stats(engine: Any, gallery: Any, queries: Sequence[ObjectQuery], *, mode: str = "qo",
                  strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Each object's mean and spread of cosines over the library sample, ``(J,)`` each (:func:`score_stats`),
    computed only for objects not seen with this gallery size."""
    memo, size = _memo(gallery), gallery.size
    keys = [("stats", mode, str(strategy), np.asarray(q.feature, np.float32).tobytes(),
             None if q.head_mask is None else np.asarray(q.head_mask, np.float32).tobytes(), size) for q in queries]
    todo = [j for j, key in enumerate(keys) if key not in memo]
    if todo:
        sample, plain = library_sample(engine, gallery)
        mean, spread = score_stats(object_cosines(engine, gallery, [queries[j] for j in todo], sample, mode=mode,
                                                  strategy=strategy, plain=plain))  # fmt: skip
        for i, j in enumerate(todo):
            _remember(memo, keys[j], (mean[i], spread[i]))
    pairs = [memo[key] for key in keys]
    return np.array([m for m, _ in pairs]), np.array([sd for _, sd in pairs])


def rank_objects(
    engine: Any,
    gallery: Any,
    queries: Sequence[ObjectQuery],
    *,
    k: int,
    combine: str = "and",
    mode: str = "qo",
    candidates: int | None = OBJECT_CANDIDATES,
    strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
    normalise: bool = True,
    temperature: float = TEMPERATURE,
    exclude_weight: float = EXCLUDE_WEIGHT,
) -> ObjectRanking:
    """Rank a gallery for several objects: candidates from every wanted object, scored for all, combined.

    Args:
        engine: recomputes database features (Query-DB; plain ones when the gallery cannot give them).
        gallery: a :class:`core.search.service.Gallery`.
        queries: the objects, wanted and excluded, in their order.
        k: hits wanted (clipped to the gallery size).
        combine: ``and`` or ``or`` over the wanted objects.
        mode: ``qo`` or ``qd`` for every object's score.
        candidates: neighbours per wanted object (raised to ``k``); ``None`` scores the whole gallery.
        strategy: the head-mask strategy of the queries.
        normalise: combine z-scores against each object's cosines over a library sample (the shipped rule);
            ``False`` combines raw cosines (for the measurements).
        temperature, exclude_weight: see :func:`combine_scores`.

    Returns:
        The hits with their combined and per-object scores; a damaged cache row is never ranked.
    """
    if combine not in COMBINES:
        raise PromptError(f"Objects combine with 'and' or 'or', not '{combine}'.")
    excluded = [q.excluded for q in queries]
    if not queries or all(excluded):
        raise PromptError("Mark at least one wanted object: excluded objects alone select nothing.")
    n = gallery.size
    if n == 0:
        return ObjectRanking(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros((0, len(queries)), np.float32), 0)
    k = int(min(max(int(k), 1), n))
    if candidates is None:
        ids = np.asarray(gallery.all_ids(), np.int64)
    else:
        ids = candidate_ids(gallery, queries, min(max(int(candidates), k), n))
    if len(ids) == 0:
        return ObjectRanking(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros((0, len(queries)), np.float32), 0)
    per = object_cosines(engine, gallery, queries, ids, mode=mode, strategy=strategy)
    stats = None
    if normalise:
        stats = library_stats(engine, gallery, queries, mode=mode, strategy=strategy)
    total = combine_scores(per, excluded, combine, stats=stats, temperature=temperature,
                           exclude_weight=exclude_weight)  # fmt: skip
    order = np.argsort(-np.where(np.isfinite(total), total, -np.inf), kind="stable")
    order = order[np.isfinite(total[order])][:k]
    return ObjectRanking(total[order], ids[order], per[order], len(ids), stats)
