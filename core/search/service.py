"""The one query service: a :class:`QuerySpec` in, an :class:`Outcome` out.

The app's session, ``phs search`` and ``phs eval`` all go through this module; nothing else ranks photos.

* :func:`query_feature` turns the current photo of an engine and a spec into the query feature (every method
  of seed 000 Tables A1-A7: ``cbir``, ``crop``, ``mask``, ``attn-mask``, ``fa``, ``phs``, ``fa+phs``,
  ``crop+phs``; the markers of seed 004: ``lvp`` a learned visual prompt and ``red-circle`` pasted at the
  prompt, and ``lvp+phs``, heads selected on the photo with the learned prompt) and, for the PHS methods,
  the head selection.
* :func:`rank` ranks a :class:`Gallery` for that feature: Query-Only (one nearest-neighbour search of the
  plain database features), or Query-DB: the Query-Only top ``candidates`` (K', default 1,000, as shipped)
  re-ranked with database features recomputed for the query's head mask from the Query-DB cache
  (``X_cls``, ``O[CLS]``; no image decoded, no backbone run). ``candidates=None`` re-ranks the whole
  database (the exact Query-DB of the paper, which the evaluation reports beside the shipped two-stage one).
* :class:`QueryService` holds an engine and an optional gallery and answers :meth:`QueryService.run`.
* Several objects (``QuerySpec.objects``): each its own :func:`query_feature` (on its own photo), ranked
  together by :func:`core.search.objects.rank_objects`, the only other code that orders photos.

Without a prompt every method is the plain [CLS] feature of the whole photo (CBIR): there is nothing to
point at.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.defaults import DEFAULT_CANDIDATES, LEARNED_METHODS, MARKER_METHODS, METHODS, MODES  # noqa: F401 (re-exported)
from core.errors import NotReadyError, PHSError, PromptError, WeightsNotFoundError
from core.method.engine import FAParams, PHSEngine
from core.method.phs import (
    HeadSelection,
    HeadStrategy,
    RoiReduce,
    head_mask,
    l2_normalize,
    roi_attention,
    select_heads,
)
from core.method.prompts import Prompt, Roi, prompt_pixel_mask
from core.method.transforms import ImageLike
from core.search.gallery import Gallery, MemoryGallery, SearchHit  # noqa: F401 (re-exported)
from core.search.objects import OBJECT_CANDIDATES, ObjectQuery, ObjectSpec, check_objects, rank_objects

PHS_METHODS = frozenset({"phs", "fa+phs", "crop+phs", "lvp+phs"})
"""Methods that select heads (and so give a head mask for Query-DB)."""

FA_METHODS = frozenset({"fa", "fa+phs"})
"""Methods that run FALIP's foveal attention."""


#: Query-DB re-rank: the candidates whose bf16 score ranks among the best ``max(REFINE_MIN, REFINE_FACTOR * k)``
#: are recomputed in fp32, so the returned order and scores are the fp32 ones (measured by bench_scale.py).
REFINE_FACTOR = 2
REFINE_MIN = 32


@dataclass(frozen=True)
class QuerySpec:
    """Everything that decides one search.

    Attributes:
        photo: the query photo (path, bytes, PIL image or ``(H, W, 3)`` uint8 array), or ``None`` for the
            photo already set on the service's engine.
        prompt: the marked object in the photo's pixels (EXIF orientation applied), or ``None`` for the
            whole photo.
        method: one of :data:`METHODS`.
        h_on: heads kept; ``None`` = the model's recommended value (``h - 1`` for ``crop+phs``, Table A7).
        roi: ``sum`` or ``max`` (Table A4).
        strategy: head-mask strategy (Table A5), default Before+Scale.
        fa: FALIP parameters for ``fa`` and ``fa+phs``.
        itae_theta: ITAE threshold on the query photo, ``None`` for off.
        force_on, force_off: head indices toggled by hand.
        mode: ``qo`` or ``qd``.
        k: hits wanted (clipped to the gallery size).
        candidates: K' for Query-DB; ``None`` re-ranks the whole gallery (exact Query-DB).
        with_maps: also return the ``(h, gh, gw)`` attention maps (for display).
        fallback: the method that answers when ``method`` needs a learned prompt and the model has none
            (the app falls back to ``phs`` and offers to train one); ``None``: refuse with the sentence that
            says how to train one (``phs search``, ``phs eval``).
        objects: several objects instead of ``prompt`` (:class:`core.search.objects.ObjectSpec`, each its own
            heads and score; the spec's method and head settings are their defaults). One wanted object on
            the query photo ranks exactly as ``prompt`` would.
        combine: ``and`` or ``or`` over the wanted objects.
        object_candidates: nearest neighbours of each wanted object scored for every object; ``None`` scores
            the whole gallery.
    """

    photo: ImageLike | None = None
    prompt: Prompt | None = None
    method: str = "phs"
    h_on: int | None = None
    roi: str = "sum"
    strategy: str = "before+scale"
    fa: FAParams = field(default_factory=FAParams)
    itae_theta: float | None = None
    force_on: tuple[int, ...] = ()
    force_off: tuple[int, ...] = ()
    mode: str = "qo"
    k: int = 20
    candidates: int | None = DEFAULT_CANDIDATES
    with_maps: bool = False
    fallback: str | None = None
    objects: tuple[ObjectSpec, ...] = ()
    combine: str = "and"
    object_candidates: int | None = OBJECT_CANDIDATES

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        check_objects(self.objects, self.combine)
        if self.objects and self.prompt is not None:
            raise PromptError("A query has either one prompt or several objects, not both.")
        for method in [self.method, *(o.method for o in self.objects if o.method is not None)]:
            if method not in METHODS:
                raise PromptError(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")
        if self.fallback is not None and (self.fallback not in METHODS or self.fallback in LEARNED_METHODS):
            raise PromptError(f"A method without a learned prompt must be the fallback, not '{self.fallback}'.")
        if self.mode not in MODES:
            raise PromptError(f"The search mode must be qo or qd, not '{self.mode}'.")
        RoiReduce(self.roi)
        HeadStrategy(self.strategy)
        if self.h_on is not None and int(self.h_on) < 1:
            raise PromptError(f"The number of heads kept must be at least 1, not {self.h_on}.")
        if int(self.k) < 1:
            raise PromptError(f"The number of results must be at least 1, not {self.k}.")
        if self.candidates is not None and int(self.candidates) < 1:
            raise PromptError(f"The number of Query-DB candidates must be at least 1, not {self.candidates}.")
        if self.object_candidates is not None and int(self.object_candidates) < 1:
            raise PromptError(f"The candidates per object must be at least 1, not {self.object_candidates}.")
        if self.itae_theta is not None and not np.isfinite(self.itae_theta):
            raise PromptError("The ITAE threshold must be a finite number.")
        object.__setattr__(self, "force_on", tuple(int(i) for i in self.force_on))
        object.__setattr__(self, "force_off", tuple(int(i) for i in self.force_off))

    @property
    def effective_method(self) -> str:
        """The method that runs: ``cbir`` without a prompt."""
        return "cbir" if self.prompt is None else self.method


@dataclass(frozen=True, eq=False)
class QueryFeature:
    """The query side of a search.

    Attributes:
        feature: ``(feature_dim,)`` float32, not normalised.
        method: the method that ran (``cbir`` when there was no prompt).
        selection: the head selection of the PHS methods, else ``None``.
        placement: where a marker method pasted its marker, ``(cx, cy, width, height)`` in pixels of the
            photo (EXIF orientation applied), else ``None``.
        fell_back: the spec's fallback ran because its method needs a learned prompt the model lacks.
    """

    feature: np.ndarray
    method: str
    selection: HeadSelection | None = None
    placement: tuple[float, float, float, float] | None = None
    fell_back: bool = False

    @property
    def head_mask(self) -> np.ndarray | None:
        """``(h,)`` the query's head mask ``m`` (``None`` for methods that keep every head)."""
        return None if self.selection is None else self.selection.head_mask


# ------------------------------------------------------------------------------------------------------
# the query side


def resolved_h_on(engine: PHSEngine, spec: QuerySpec) -> int:
    """``h_on`` a spec runs with: its own, else ``h - 1`` for ``crop+phs`` (Table A7) or the model's recommendation."""
    if spec.h_on is not None:
        return int(min(int(spec.h_on), engine.num_heads))
    if spec.method == "crop+phs":
        return max(engine.num_heads - 1, 1)
    return engine.recommended_h_on


def query_feature(engine: PHSEngine, spec: QuerySpec) -> QueryFeature:
    """The query feature of the engine's current photo for ``spec`` (``spec.photo`` is not read here).

    ``cbir`` plain [CLS]; ``phs`` head selection; ``fa`` FALIP; ``fa+phs`` heads selected on the FA attention
    and the FA feature with the head mask; ``attn-mask`` the last block's [CLS] attends only to ROI patches;
    ``crop`` the prompt's bounding box cropped and encoded; ``mask`` pixels outside the prompt blacked out and
    encoded; ``crop+phs`` the crop encoded, heads scored over the whole crop (Table A7). Only ``crop``,
    ``mask`` and ``crop+phs`` run the backbone again (on an edited photo); FA re-runs its last blocks.

    Raises:
        NotReadyError: no photo is set.
        PromptError: a prompt or head choice the engine refuses (one sentence).
    """
    if not engine.is_image_set:
        raise NotReadyError("Open a photo first: no image is set.")
    method, fell_back = runnable_method(engine, spec)
    query = _query_feature(engine, spec, method)
    return replace(query, fell_back=True) if fell_back else query


def _query_feature(engine: PHSEngine, spec: QuerySpec, method: str) -> QueryFeature:
    """:func:`query_feature` for the method that runs."""
    theta = spec.itae_theta  # an argument of this query: the engine's own setting (the index's) stays
    prompt = spec.prompt
    if method == "cbir" or prompt is None:
        return QueryFeature(engine.feature(itae_theta=theta), "cbir")
    strategy = HeadStrategy(spec.strategy)
    fa = spec.fa
    h_on = resolved_h_on(engine, spec)
    heads = {"h_on": h_on, "roi": spec.roi, "strategy": strategy, "force_on": spec.force_on,
             "force_off": spec.force_off, "itae_theta": theta}  # fmt: skip
    if method == "phs":
        sel = engine.select_heads(prompt, **heads)
        return QueryFeature(engine.feature(sel.head_mask, strategy, itae_theta=theta), method, sel)
    if method == "fa":
        return QueryFeature(engine.feature(None, prompt=prompt, fa=fa, itae_theta=theta), method)
    if method == "fa+phs":
        sel = engine.select_heads(prompt, fa=fa, **heads)
        return QueryFeature(engine.feature(sel.head_mask, strategy, prompt=prompt, fa=fa, itae_theta=theta), method,
                            sel)  # fmt: skip
    if method == "attn-mask":
        return QueryFeature(engine.attn_mask_feature(prompt, itae_theta=theta), method)
    if method in MARKER_METHODS:
        marker = marker_for(engine, method)
        where = engine.placement(prompt, marker).in_image(engine.image_size, engine.input_size)
        if method != "lvp+phs":
            return QueryFeature(engine.feature(prompt=prompt, marker=marker, itae_theta=theta), method,
                                placement=where)  # fmt: skip
        sel = engine.select_heads(prompt, marker=marker, **heads)
        feature = engine.feature(sel.head_mask, strategy, prompt=prompt, marker=marker, itae_theta=theta)
        return QueryFeature(feature, method, sel, where)
    image = engine.current_image()
    w, h = image.size
    if method == "mask":
        keep = prompt_pixel_mask(prompt, (w, h), engine.grid)
        arr = np.asarray(image).copy()
        arr[~keep] = 0
        from PIL import Image

        return QueryFeature(engine.encode_batch([Image.fromarray(arr)], itae_theta=theta).features[0], method)
    b = prompt.bounding_box(w, h)
    crop = image.crop((int(b.x0), int(b.y0), max(int(np.ceil(b.x1)), int(b.x0) + 1),
                       max(int(np.ceil(b.y1)), int(b.y0) + 1)))  # fmt: skip
    if method == "crop":
        return QueryFeature(engine.encode_batch([crop], itae_theta=theta).features[0], method)
    # crop+phs: encode the crop, score heads over the whole crop, keep h - 1 (Table A7).
    enc, maps = engine.encode_with_maps(crop, itae_theta=theta)
    scores = roi_attention(maps, Roi(np.ones(engine.grid, np.float32)), spec.roi)
    selected = select_heads(scores, h_on, spec.force_on, spec.force_off)
    sel = HeadSelection(scores, selected, head_mask(selected, strategy), strategy, h_on)
    feature = engine.features_from_cache(enc.x_cls, enc.o_cls, sel.head_mask, strategy)[0]
    return QueryFeature(feature, method, sel)


_LEARNED: weakref.WeakKeyDictionary[PHSEngine, Any] = weakref.WeakKeyDictionary()


def runnable_method(engine: PHSEngine, spec: QuerySpec) -> tuple[str, bool]:
    """The method a spec runs, and whether its fallback stands in.

    The fallback stands in when the spec's method needs a learned prompt that the engine's model does not have
    and the spec names one (whether or not there is a prompt yet); without a prompt the method is ``cbir``.
    A missing learned prompt without a fallback raises when the marker is needed
    (:class:`core.errors.WeightsNotFoundError`, the sentence says how to train one).
    """
    method, fell_back = spec.method, False
    if method in LEARNED_METHODS and spec.fallback is not None:
        try:
            marker_for(engine, method)
        except WeightsNotFoundError:
            method, fell_back = spec.fallback, True
    return ("cbir" if spec.prompt is None else method), fell_back


def marker_for(engine: PHSEngine, method: str) -> Any:
    """The marker a marker method pastes: the red circle, or the engine's model's learned prompt (loaded once).

    Raises:
        WeightsNotFoundError: no learned prompt exists for this model (the sentence says how to train one).
    """
    from core.method import lvp

    if method == "red-circle":
        return lvp.RedCircle()
    prompt = _LEARNED.get(engine)
    if prompt is None:
        prompt = _LEARNED[engine] = lvp.require_prompt(engine)
    return prompt


def forget_learned_prompt(engine: PHSEngine) -> None:
    """Look the engine's learned prompt up again on next use (after training a new one)."""
    _LEARNED.pop(engine, None)


def attention_maps(engine: PHSEngine, spec: QuerySpec, query: QueryFeature) -> np.ndarray:
    """``(h, gh, gw)`` last-block maps of what the query looked at: under FA for the FA methods, on the
    marked photo for the marker methods, else on the photo."""
    method, prompt, theta = query.method, spec.prompt, spec.itae_theta
    if method in FA_METHODS and prompt is not None:
        return engine.attention_maps(prompt, spec.fa, itae_theta=theta)
    if method in MARKER_METHODS and prompt is not None:
        return engine.attention_maps(prompt, marker=marker_for(engine, method), itae_theta=theta)
    return engine.attention_maps(itae_theta=theta)


# ------------------------------------------------------------------------------------------------------
# the database side


def cosines(features: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``(n,)`` cosine of each row of ``features`` ``(n, F)`` with a unit ``query`` ``(F,)``.

    Without BLAS on purpose: numpy's multi-threaded BLAS leaves its threads spinning after a small product,
    and they took the cores from the re-rank's next matrix products (figures: README, "Measured figures";
    bench/bench_scale.py).
    """
    return np.einsum("ij,j->i", l2_normalize(features), query)


def rank(
    engine: PHSEngine,
    gallery: Gallery,
    query: QueryFeature | np.ndarray,
    *,
    k: int,
    mode: str = "qo",
    candidates: int | None = DEFAULT_CANDIDATES,
    strategy: HeadStrategy | str = HeadStrategy.BEFORE_SCALE,
    head_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank a gallery for a query feature: the only code that orders photos.

    Args:
        engine: recomputes database features for Query-DB (its backbone's last block).
        gallery: the photos.
        query: a :class:`QueryFeature`, or a raw ``(F,)`` feature with ``head_mask`` given separately.
        k: hits wanted (clipped to the gallery size).
        mode: ``qo`` or ``qd``; Query-DB without a head mask (non-PHS methods) equals Query-Only.
        candidates: K', Query-Only candidates re-ranked by Query-DB (raised to ``k``); ``None`` re-ranks all.
        strategy: the head-mask strategy of the query.
        head_mask: ``(h,)`` with a raw feature.

    Returns:
        ``(scores, ids)``: cosine similarities and gallery ids, best first, at most ``k`` of each.
    """
    if mode not in MODES:
        raise PHSError(f"The search mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if isinstance(query, QueryFeature):
        head_mask = query.head_mask
        query = query.feature
    q = l2_normalize(np.asarray(query, dtype=np.float32).reshape(-1))
    empty = (np.zeros(0, np.float32), np.zeros(0, np.int64))
    n = gallery.size  # an index answers it from SQLite: ask once
    if n == 0:
        return empty
    k = int(min(max(int(k), 1), n))
    rerank = mode == "qd" and head_mask is not None
    if rerank and candidates is None:
        ids = gallery.all_ids()
    else:
        k1 = max(k, int(candidates)) if (rerank and candidates is not None) else k
        scores, ids = gallery.nearest(q, min(k1, n))
        if not rerank:
            ok = np.isfinite(scores)
            return scores[ok][:k].astype(np.float32), ids[ok][:k].astype(np.int64)
    if len(ids) == 0:
        return empty
    ids = np.asarray(ids)
    x_cls, o_cls = gallery.states(ids)
    m = np.asarray(head_mask, np.float32).reshape(-1)
    fast = getattr(engine, "rerank_precision", "fp32")
    if fast == "fp32":
        scores = cosines(engine.features_from_cache(x_cls, o_cls, m, strategy), q)
    else:
        # Two passes: every candidate in the fast precision (bf16 where native, much cheaper than fp32 on the
        # CPU), then the best of them again in fp32, so the returned order and scores are fp32's.
        scores = cosines(engine.features_from_cache(x_cls, o_cls, m, strategy, precision=fast), q)
        n_refine = min(len(ids), max(REFINE_MIN, REFINE_FACTOR * k))
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        best = np.argpartition(-scores, n_refine - 1)[:n_refine] if n_refine < len(ids) else np.arange(len(ids))
        exact = cosines(engine.features_from_cache(x_cls[best], o_cls[best], m, strategy), q)
        scores = np.full(len(ids), -np.inf, np.float32)
        scores[best] = exact
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])][:k]  # a damaged cache row cannot be ranked
    return scores[order].astype(np.float32), ids[order].astype(np.int64)


# ------------------------------------------------------------------------------------------------------
# the service


@dataclass(frozen=True, eq=False)
class Outcome:
    """What one query produced.

    Attributes:
        spec: the spec that ran.
        query: the query feature, method and head selection.
        hits: ranked photos (empty without a gallery), as the gallery's :meth:`Gallery.hits` gives them:
            :class:`SearchHit` for an index, ``(score, row index)`` for a :class:`MemoryGallery`.
        maps: ``(h, gh, gw)`` last-block [CLS]->patch attention (under FA for the FA methods) when asked.
        timings_ms: ``{"encode": ..., "query": ..., "search": ..., "total": ...}`` in milliseconds.
        objects: with ``spec.objects``, each object's query feature and heads, in their order (``query`` is
            the first's).
        object_scores: with ``spec.objects``, ``(len(hits), J)`` each hit's cosine with each object.
    """

    spec: QuerySpec
    query: QueryFeature
    hits: Sequence[Any] = ()
    maps: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    objects: tuple[QueryFeature, ...] = ()
    object_scores: np.ndarray | None = None

    @property
    def fell_back(self) -> bool:
        """Whether the spec's fallback answered (its method needs a learned prompt the model does not have)."""
        return self.query.fell_back

    @property
    def selection(self) -> HeadSelection | None:
        """The head selection (``None`` for methods that keep every head)."""
        return self.query.selection

    @property
    def head_scores(self) -> np.ndarray | None:
        """``(h,)`` ROI attention per head, or ``None``."""
        return None if self.selection is None else self.selection.scores

    def combined_map(self) -> np.ndarray:
        """The mean map of the selected heads (all heads without a selection), ``(gh, gw)``, for display."""
        if self.maps is None:
            raise PHSError("This outcome was computed without attention maps.")
        if self.selection is None:
            return self.maps.mean(axis=0)
        return self.maps[self.selection.selected].mean(axis=0)


class QueryService:
    """An engine and, optionally, the gallery it searches: ``run(spec)`` is every search of the product.

    Not thread-safe: one caller at a time (the app runs it in one worker thread).

    Args:
        engine: the model; each spec's ITAE threshold and marker are arguments of its query, so the engine's
            own settings (those of the index it also reads) never change.
        gallery: an opened index (:class:`core.search.searcher.Searcher`) or a :class:`MemoryGallery`.
    """

    def __init__(self, engine: PHSEngine, gallery: Gallery | None = None) -> None:
        self.engine = engine
        self.gallery = gallery
        self.last_encode_ms: float | None = None

    def set_photo(self, photo: ImageLike) -> float:
        """Encode the query photo (the heavy step, cached by content); returns the milliseconds it took."""
        t0 = time.perf_counter()
        self.engine.set_image(photo)
        self.last_encode_ms = (time.perf_counter() - t0) * 1000
        return self.last_encode_ms

    def run(self, spec: QuerySpec) -> Outcome:
        """Answer one spec: encode its photo if given, compute the query, rank the gallery.

        Raises:
            NotReadyError: no photo given or set.
            PHSError: a prompt, option or index problem, as one sentence.
        """
        if spec.objects:
            return self._run_objects(spec)
        t0 = time.perf_counter()
        if spec.photo is not None:
            self.set_photo(spec.photo)
        t1 = time.perf_counter()
        query = query_feature(self.engine, spec)
        maps = attention_maps(self.engine, spec, query) if spec.with_maps else None
        t2 = time.perf_counter()
        hits: Sequence[Any] = ()
        if self.gallery is not None:  # rank() answers an empty gallery with no hits
            scores, ids = rank(self.engine, self.gallery, query, k=spec.k, mode=spec.mode,
                               candidates=spec.candidates, strategy=spec.strategy)  # fmt: skip
            hits = self.gallery.hits(scores, ids)
        t3 = time.perf_counter()
        timings = {"encode": (t1 - t0) * 1000, "query": (t2 - t1) * 1000, "search": (t3 - t2) * 1000,
                   "total": (t3 - t0) * 1000}  # fmt: skip
        return Outcome(spec, query, hits, maps, timings)

    def _run_objects(self, spec: QuerySpec) -> Outcome:
        """Several objects: each its own query feature (on its own photo), one combined ranking."""
        objs = spec.objects
        single = [replace(spec, prompt=o.prompt, objects=(), method=o.method or spec.method,
                          h_on=o.h_on if o.h_on is not None else spec.h_on, force_on=o.force_on or spec.force_on,
                          force_off=o.force_off or spec.force_off) for o in objs]  # fmt: skip
        if len(objs) == 1 and not objs[0].excluded and objs[0].photo is None:
            out = self.run(single[0])  # one object is the one-prompt search, bit for bit
            scores = np.array([h.score if isinstance(h, SearchHit) else h[0] for h in out.hits], np.float32)
            return replace(out, spec=spec, objects=(out.query,), object_scores=scores[:, None])
        t0 = time.perf_counter()
        if spec.photo is not None:
            self.set_photo(spec.photo)
        main = getattr(self.engine, "_source", None)
        t1 = time.perf_counter()
        queries: list[QueryFeature | None] = [None] * len(objs)
        for j in sorted(range(len(objs)), key=lambda i: objs[i].photo is not None):  # the query photo's first
            if objs[j].feature is not None:  # computed before: no decode, no encode
                queries[j] = objs[j].feature
                continue
            if objs[j].photo is not None:
                self.engine.set_image(objs[j].photo)
            queries[j] = query_feature(self.engine, single[j])
        if any(o.photo is not None and o.feature is None for o in objs) and main is not None:
            self.engine.set_image(main)  # back to the query photo (from the engine's cache)
        feats = tuple(q for q in queries if q is not None)
        t2 = time.perf_counter()
        hits: Sequence[Any] = ()
        per = np.zeros((0, len(objs)), np.float32)
        if self.gallery is not None:
            r = rank_objects(self.engine, self.gallery, [ObjectQuery(q.feature, q.head_mask, o.excluded)
                             for q, o in zip(feats, objs)], k=spec.k, combine=spec.combine, mode=spec.mode,
                             candidates=spec.object_candidates, strategy=spec.strategy)  # fmt: skip
            hits = self.gallery.hits(r.scores, r.ids)
            row = {int(i): j for j, i in enumerate(r.ids.tolist())}
            per = r.object_scores[[row[int(h.id if isinstance(h, SearchHit) else h[1])] for h in hits]]
        t3 = time.perf_counter()
        maps = attention_maps(self.engine, single[0], feats[0]) if spec.with_maps and objs[0].photo is None else None
        timings = {"encode": (t1 - t0) * 1000, "query": (t2 - t1) * 1000, "search": (t3 - t2) * 1000,
                   "total": (t3 - t0) * 1000}  # fmt: skip
        return Outcome(spec, feats[0], hits, maps, timings, feats, per)
