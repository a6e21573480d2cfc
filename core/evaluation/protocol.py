"""The paper's evaluation protocol (seed 000, A2-A3): focus-oriented retrieval with visual prompts.

Every annotated object of every query image is one query (a prompt: its box, a point on it, or its mask).
The database is encoded once with :meth:`core.method.engine.PHSEngine.encode_batch`, keeping the Query-DB cache
(``X_cls``, ``O[CLS]``), as a :class:`core.search.service.MemoryGallery`. Each query image is encoded once
(:meth:`~core.method.engine.PHSEngine.set_image`) and every prompt and method is one
:meth:`core.search.service.QueryService.run` of a :class:`~core.search.service.QuerySpec`, the call the app and
``phs search`` make, so the figures are those of the shipped search. MP@k and MAP@k (Eqs. A1-A8) and the per-number-of-objects
breakdown (Fig. A2) come from :func:`core.evaluation.metrics.foir_metrics`.

Methods (column names of the tables):

========== ===================================================================================
cbir        plain [CLS] feature of the whole query image (ignores the prompt)
crop        the prompt's bounding box cropped, resized and encoded
mask        pixels outside the prompt blacked out, encoded
attn-mask   last block: [CLS] attends only to the ROI patches (Table A6)
fa          FALIP foveal attention (Tables A1-A3)
phs-qo      PHS, Query-Only: query feature with the selected heads vs plain database features
phs-qd      PHS, Query-DB as shipped: the Query-Only top K' (1,000) re-ranked with the query's head mask
phs-qd-exact PHS, Query-DB over the whole database (the paper's QD); reported with phs-qd, with overlap@k
fa+phs      heads selected on the FA-modified attention, FA feature with the head mask (Table A1)
crop+phs    noise-reduction mode of Table A7: cropped query, ``h - 1`` heads kept, plain database
lvp         the model's learned visual prompt (seed 004) pasted at the prompt, the marked photo's feature
red-circle  a red ellipse outline drawn at the prompt (seed 004's manual marker)
lvp+phs     the learned prompt pasted, then heads selected on the marked photo
========== ===================================================================================

With ``noise`` set, every method that uses the prompt is also run with a noisy box (Eqs. A9-A10, seed
000 A3), reported as ``<method>-N`` (Table A3). With a marker method, the attention gain per layer of the
learned prompt and the red circle (seed 004, Fig. 4) is measured on the query images at random places.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.defaults import LEARNED_METHODS, MARKER_METHODS
from core.errors import PHSError
from core.evaluation.datasets import Dataset, ImageRecord, synthetic_dataset
from core.evaluation.metrics import FOIRMetrics, foir_metrics
from core.evaluation.noise import noise_magnitude, noisy_box
from core.evaluation.results import LABELS, EvalResult
from core.evaluation.splits import QueryObject, filter_min_objects, query_objects, split_query_database
from core.method.engine import FAParams, PHSEngine
from core.method.phs import HeadStrategy, RoiReduce, database_features
from core.method.prompts import Box, Mask, Prompt
from core.search.service import DEFAULT_CANDIDATES, MemoryGallery, QueryService, QuerySpec

METHODS: tuple[str, ...] = (
    "cbir", "crop", "mask", "attn-mask", "fa", "phs-qo", "phs-qd", "phs-qd-exact", "fa+phs", "crop+phs",
    "lvp", "red-circle", "lvp+phs",
)
"""Method names accepted by :func:`evaluate` and ``phs eval --methods``, in table order."""


PROMPT_KINDS = ("box", "point", "mask")
_PROMPTLESS = ("cbir",)
_SERVICE_METHOD = {"phs-qo": "phs", "phs-qd": "phs", "phs-qd-exact": "phs"}
_H_ON_METHODS = ("phs-qo", "phs-qd", "phs-qd-exact", "fa+phs", "lvp+phs")
_MARKERS = ("lvp", "red-circle")


class EvalError(PHSError):
    """An evaluation that cannot run as asked (unknown method, too few images, no masks ...)."""


@dataclass
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        methods: names from :data:`METHODS`.
        k: cut-off of MP@k / MAP@k.
        h_on: heads kept by the PHS methods; ``None`` = the model's recommended value (demo) or 5.
        roi: ROI reduction, ``sum`` or ``max`` (Table A4).
        strategy: head-mask strategy (Table A5).
        prompt: ``box``, ``point`` (a point on the object, the visible pixel nearest its centroid) or
            ``mask`` (the object's segmentation).
        noise: noise magnitude ``m`` in pixels at COCO scale (640 px side) for the ``-N`` columns, or
            ``None``; scaled to each image by :func:`core.evaluation.noise.noise_magnitude` unless ``noise_absolute``.
        noise_absolute: use ``noise`` pixels on every image, as the paper does on real photos (seed 000 A3:
            "we set m to 40 pixels"); the CLI makes it the default for COCO and VOC.
        h_on_sweep: values of ``h_on`` for the Fig. A1 sweep of ``phs-qo`` and ``phs-qd`` (empty: none).
        fa: FALIP parameters.
        seed: seed of the noise draws.
        batch_size: database encoding batch.
        candidates: K' of the shipped two-stage Query-DB (``phs-qd``).
        localize: also measure the proposals of the kept heads against all heads (:mod:`core.evaluation.localize`).
    """

    methods: Sequence[str] = ("cbir", "phs-qo")
    k: int = 100
    h_on: int | None = None
    roi: str = "sum"
    strategy: str = "before+scale"
    prompt: str = "box"
    noise: float | None = None
    noise_absolute: bool = False
    h_on_sweep: Sequence[int] = ()
    fa: FAParams = field(default_factory=FAParams)
    seed: int = 0
    batch_size: int = 64
    candidates: int = DEFAULT_CANDIDATES
    localize: bool = False

    def validate(self, num_heads: int) -> None:
        """Raise :class:`EvalError` with a sentence when an option cannot work."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise EvalError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
        if not self.methods:
            raise EvalError("Name at least one method.")
        if self.k < 1:
            raise EvalError("k must be at least 1.")
        if self.prompt not in PROMPT_KINDS:
            raise EvalError(f"The prompt kind must be one of {', '.join(PROMPT_KINDS)}, not '{self.prompt}'.")
        RoiReduce(self.roi)
        HeadStrategy(self.strategy)
        for h in [*self.h_on_sweep, *([self.h_on] if self.h_on is not None else [])]:
            if not 1 <= int(h) <= num_heads:
                raise EvalError(f"h_on must be between 1 and {num_heads} for this model, not {h}.")
        if self.noise is not None and self.noise < 0:
            raise EvalError("The noise magnitude must be zero or positive.")
        if self.candidates < 1:
            raise EvalError("The Query-DB candidates K' must be at least 1.")


# --------------------------------------------------------------------------------------------------------
# datasets


def synthetic_split(
    n_query: int,
    n_database: int,
    seed: int = 0,
    size: int = 128,
    min_query_objects: int = 2,
) -> tuple[Dataset, Dataset]:
    """Disjoint synthetic query and database sets (scenes of one ``seed``, disjoint index ranges).

    The database is scenes ``0 .. n_database - 1`` (1 to 6 objects); the queries are scenes
    ``n_database ..`` generated with at least ``min_query_objects`` objects. The demo model is trained
    on scenes of seed ``train_seed + 100000`` (see :mod:`core.synthetic.train_demo`), so evaluation seeds below
    100000 never see training images.

    Args:
        size: scene side in pixels.
    """
    db = synthetic_dataset(n_database, seed, (size, size), start=0, name="synthetic-db")
    q = synthetic_dataset(n_query, seed, (size, size), start=n_database, name="synthetic-query",
                          min_objects=min_query_objects)
    return q, db


def load_split(
    dataset: str,
    n_query: int | None,
    n_database: int | None,
    seed: int = 0,
    min_query_objects: int = 1,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    image_set: str | None = None,
    size: int = 128,
) -> tuple[Dataset, Dataset]:
    """Query and database sets for ``synthetic``, ``coco`` (instances json + image folder) or ``voc``.

    Args:
        dataset: ``synthetic``, ``coco`` or ``voc``.
        n_query, n_database: sizes (``None``: half of the eligible images / all the rest).
        annotations: COCO instances JSON, or the VOC root (with ``Annotations/``, ``JPEGImages/``).
        images: COCO image folder (default: next to the JSON).
        image_set: VOC list in ``ImageSets/Main`` (``val``, ``trainval``).
        size: synthetic scene side.
    """
    from core.evaluation.datasets import load_coco, load_voc

    if dataset == "synthetic":
        return synthetic_split(n_query or 300, n_database or 2000, seed, size, min_query_objects)
    if annotations is None:
        raise EvalError(f"The {dataset} dataset needs --annotations (the instances JSON or the VOC folder).")
    if dataset == "coco":
        data = load_coco(annotations, images)
    elif dataset == "voc":
        data = load_voc(annotations, image_set)
    else:
        raise EvalError(f"Unknown dataset '{dataset}'; choose synthetic, coco or voc.")
    try:
        return split_query_database(data, n_query, n_database, seed=seed, min_query_objects=min_query_objects)
    except ValueError as err:
        raise EvalError(str(err)) from err


# --------------------------------------------------------------------------------------------------------
# prompts


def object_point(mask: np.ndarray | None, bbox: np.ndarray) -> tuple[float, float]:
    """A point on the object: the visible pixel nearest the mask's centroid (box centre without a mask).

    Returns:
        ``(x, y)`` pixel centre in image coordinates.
    """
    if mask is None or not mask.any():
        return float((bbox[0] + bbox[2]) / 2), float((bbox[1] + bbox[3]) / 2)
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return float(xs[i]) + 0.5, float(ys[i]) + 0.5


def make_prompt(kind: str, bbox: np.ndarray, mask: np.ndarray | None) -> Prompt:
    """The prompt of one object.

    Args:
        kind: ``box``, ``point`` or ``mask``.
        bbox: ``(4,)`` XYXY.
        mask: ``(H, W)`` bool or ``None``.
    """
    if kind == "box":
        return Prompt.from_box(*[float(v) for v in bbox])
    if kind == "point":
        return Prompt.from_point(*object_point(mask, bbox))
    if mask is None:
        raise EvalError("Mask prompts need segmentation masks; this dataset has boxes only (use --prompt box).")
    return Prompt(mask=Mask(mask))


# --------------------------------------------------------------------------------------------------------
# the runner


@dataclass
class _Database:
    features: np.ndarray  # (Ndb, F) normalised plain features
    x_cls: np.ndarray  # (Ndb, D)
    o_cls: np.ndarray  # (Ndb, h, d_h)
    categories: list[frozenset[int]]


def encode_database(engine: PHSEngine, database: Dataset, batch_size: int = 64,
                    progress: Callable[[int], None] | None = None) -> _Database:
    """Encode every database image once: plain features plus the Query-DB cache."""
    feats, xs, os_ = [], [], []
    for i in range(0, len(database), batch_size):
        recs = database.images[i : i + batch_size]
        enc = engine.encode_batch([Image.fromarray(r.load()) for r in recs])
        feats.append(enc.features)
        xs.append(enc.x_cls)
        os_.append(enc.o_cls)
        if progress:
            progress(len(recs))
    return _Database(database_features(np.concatenate(feats)), np.concatenate(xs), np.concatenate(os_),
                     database.image_categories())


def _padded(ids: np.ndarray, k: int) -> np.ndarray:
    """``(k,)`` ids, ``-1`` padded when the database is smaller than ``k``."""
    out = -np.ones(k, np.int64)
    out[: len(ids)] = ids[:k]
    return out


def _columns(config: EvalConfig) -> tuple[list[str], list[str], list[str]]:
    """``(methods, noisy, sweep)``: the methods in table order (``phs-qd`` with ``phs-qd-exact`` beside it), the
    ones also run with noisy boxes, and the ones of the ``h_on`` sweep."""
    methods = [m for m in METHODS if m in config.methods]
    if "phs-qd" in methods and "phs-qd-exact" not in methods:
        methods.insert(methods.index("phs-qd") + 1, "phs-qd-exact")  # the shipped QD is reported beside the exact one
    noisy = [m for m in methods if m not in _PROMPTLESS] if config.noise is not None else []
    sweep = [m for m in ("phs-qo", "phs-qd") if config.h_on_sweep and m in methods]
    return methods, noisy, sweep


def method_spec(method: str, prompt: Prompt, h_on: int, config: EvalConfig, fa: FAParams,
                itae: float | None) -> QuerySpec:
    """The query spec of one evaluation method (a column name of :data:`METHODS`) for one prompt."""
    return QuerySpec(
        prompt=None if method in _PROMPTLESS else prompt,
        method=_SERVICE_METHOD.get(method, method),
        h_on=h_on if method in _H_ON_METHODS else None,
        roi=config.roi,
        strategy=HeadStrategy(config.strategy).value,
        fa=fa,
        itae_theta=itae,
        mode="qd" if method.startswith("phs-qd") else "qo",
        k=config.k,
        candidates=None if method == "phs-qd-exact" else config.candidates,
    )


def evaluate(
    engine: PHSEngine,
    queries: Dataset,
    database: Dataset,
    config: EvalConfig,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> EvalResult:
    """Run the protocol: every prompted object of every query image, every method, one ranking each.

    Every ranking is one :meth:`core.search.service.QueryService.run`, the shipped path.

    Args:
        engine: the model; its ITAE setting applies to the database and the queries.
        queries, database: disjoint sets (see :func:`load_split`).
        config: methods and options.
        progress: show tqdm progress bars on stderr.
        info: extra facts for the JSON (dataset name, seed ...).

    Returns:
        The :class:`EvalResult`.
    """
    from tqdm import tqdm

    config.validate(engine.num_heads)
    h_on = config.h_on if config.h_on is not None else engine.recommended_h_on
    methods, noisy, sweep_methods = _columns(config)
    objs = query_objects(queries)
    if not objs:
        raise EvalError("The query set has no annotated objects.")
    if LEARNED_METHODS & set(methods):
        from core.search.service import marker_for

        marker_for(engine, "lvp")  # no learned prompt for this model: say so before encoding anything

    bar = tqdm(total=len(database), desc="database", unit="img", disable=not progress)
    db = encode_database(engine, database, config.batch_size, bar.update)
    bar.close()

    columns = [c for m in methods for c in ([m, f"{m}-N"] if m in noisy else [m])]  # Table A3 layout
    ranked: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    sweep_ranked: dict[str, dict[int, list[np.ndarray]]] = {
        m: {int(h): [] for h in config.h_on_sweep} for m in sweep_methods
    }
    rng = np.random.default_rng(config.seed)
    fa = FAParams(config.fa.alpha, config.fa.sigma, min(config.fa.blocks, engine.fa_blocks))
    service = QueryService(engine, MemoryGallery(db.features, db.x_cls, db.o_cls))
    itae = engine.itae_theta  # the database was encoded with it; the queries use the same

    def run_method(method: str, prompt: Prompt, hk: int) -> np.ndarray:
        out = service.run(method_spec(method, prompt, hk, config, fa, itae))  # the app's and `phs search`'s path
        return _padded(np.array([i for _, i in out.hits], np.int64), config.k)

    qbar = tqdm(total=len(objs), desc="queries", unit="prompt", disable=not progress)
    for rec, o in _prompted_objects(engine, queries, objs):
        prompt = make_prompt(config.prompt, o.bbox, rec.objects[o.object_index].mask() if config.prompt != "box" else None)
        for m in methods:
            ranked[m].append(run_method(m, prompt, h_on))
        for m in sweep_methods:
            for hk in config.h_on_sweep:
                sweep_ranked[m][int(hk)].append(run_method(m, prompt, int(hk)))
        if noisy:
            nprompt = _noisy_prompt(config, o.bbox, engine.image_size, rng)
            for m in noisy:
                ranked[f"{m}-N"].append(run_method(m, nprompt, h_on))
        qbar.update(1)
    qbar.close()

    def metrics_of(rows: list[np.ndarray]) -> FOIRMetrics:
        return foir_metrics([o.category_id for o in objs], [o.image_id for o in objs], [o.n_cat for o in objs],
                            [o.n_objects for o in objs], np.stack(rows), db.categories, config.k)  # fmt: skip

    result_info = _result_info(engine, queries, database, config, methods, h_on, ranked, info)
    if config.localize:
        result_info["localization"] = _localization(engine, queries, database, service.gallery, config, h_on)
    return EvalResult(
        metrics={c: metrics_of(ranked[c]) for c in columns},
        sweep={m: {h: metrics_of(r) for h, r in d.items()} for m, d in sweep_ranked.items()},
        info=result_info,
    )


def _prompted_objects(engine: PHSEngine, queries: Dataset, objs: Sequence[QueryObject]
                      ) -> Iterator[tuple[ImageRecord, QueryObject]]:
    """Each query object with its image, the image set on the engine (encoded once for all its objects)."""
    by_image: dict[int, list[int]] = {}
    for j, o in enumerate(objs):
        by_image.setdefault(o.image_index, []).append(j)
    for ii, js in by_image.items():
        rec = queries[ii]
        engine.set_image(rec.load())
        for j in js:
            yield rec, objs[j]


def _noisy_prompt(config: EvalConfig, bbox: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Prompt:
    """The noisy box prompt of Eqs. A9-A10 for an object's ``(4,)`` XYXY box in a ``(W, H)`` image."""
    w, h = size
    mag = int(round(config.noise)) if config.noise_absolute else noise_magnitude(w, h, m_ref=config.noise)
    nb = noisy_box(bbox, w, h, rng, m=mag)
    return Prompt(box=Box(*[float(v) for v in nb]))


def _localization(engine: PHSEngine, queries: Dataset, database: Dataset, gallery: Any, config: EvalConfig,
                  h_on: int) -> dict[str, Any]:
    """The proposals of the kept heads against all heads (:mod:`core.evaluation.localize`), summarised."""
    from core.evaluation.localize import localize

    def prompt_of(o, ann):  # a QueryObject and its ObjectAnnotation
        return make_prompt(config.prompt, o.bbox, ann.mask() if config.prompt != "box" else None)

    return localize(engine, queries, database, gallery, k=config.k, h_on=h_on, make_prompt=prompt_of,
                    roi=config.roi, strategy=HeadStrategy(config.strategy).value).summary()  # fmt: skip


def _result_info(engine: PHSEngine, queries: Dataset, database: Dataset, config: EvalConfig, methods: list[str],
                 h_on: int, ranked: dict[str, list[np.ndarray]], extra: dict[str, Any] | None) -> dict[str, Any]:
    """The facts of a run for the JSON and the captions (``extra``: the caller's, such as the dataset), with
    the QD overlap and the markers' attention gain."""
    k = config.k
    overlap = None
    if "phs-qd" in ranked and ranked["phs-qd"]:
        shipped, exact = np.stack(ranked["phs-qd"]), np.stack(ranked["phs-qd-exact"])
        kk = min(k, len(database))
        overlap = float(np.mean([len(set(a[:kk]) & set(b[:kk])) / kk for a, b in zip(shipped, exact)])) * 100
    info = {
        "k": k,
        "model": engine.spec.name,
        "model_label": engine.spec.label,
        "is_demo": engine.spec.is_demo,
        "h_on": h_on,
        "roi": config.roi,
        "strategy": HeadStrategy(config.strategy).value,
        "prompt": config.prompt,
        "noise": config.noise,
        "noise_scale": None if config.noise is None else ("absolute" if config.noise_absolute else "image"),
        "itae_theta": engine.itae_theta,
        "qd_candidates": config.candidates,
        f"qd_overlap@{k}": None if overlap is None else round(overlap, 2),
        "n_database": len(database),
        "num_heads": engine.num_heads,
        "methods": methods,
    } | (extra or {})
    if MARKER_METHODS & set(methods):
        gain = marker_attention_gain(engine, queries, seed=config.seed)
        info["attention_gain"] = {name: layers[-1] for name, layers in gain["attention_gain"].items()
                                  if name in _MARKERS}  # fmt: skip
        info["attention_gain_per_layer"] = {name: gain["attention_gain"][name] for name in _MARKERS
                                            if name in gain["attention_gain"]}  # fmt: skip
        info["attention_gain_images"] = gain["eval_images"]
    return info


def marker_attention_gain(engine: PHSEngine, images: Dataset, count: int = 200, seed: int = 0) -> dict[str, Any]:
    """Seed 004 Fig. 4 on evaluation images: per-layer attention gain of the learned prompt and the red circle.

    Both markers are pasted at the same random places (the learned prompt's size) on the first ``count``
    images; see :func:`core.method.lvp_train.evaluate_prompt`. Without a learned prompt for the model, the
    red circle's alone (a quarter of the input side).

    Returns:
        ``{"attention_gain": {marker: [per layer]}, "eval_images": str}``.
    """
    import torch

    from core.method import lvp, lvp_train

    s = engine.input_size
    resample = lvp_train.engine_resample(engine)
    n = min(count, len(images))
    pool = lvp_train.ImagePool(
        s, n, lambda i: lvp_train.to_input(Image.fromarray(images[i].load()), s, resample),
        f"{n} query images of {images.name}",
    )  # fmt: skip
    prompt = lvp.find_prompt(engine)
    if prompt is not None:
        return lvp_train.evaluate_prompt(engine, prompt, pool, n, seed=seed)
    red = lvp.RedCircle()
    size = red.size or max(s // 4, 3)
    centres = torch.rand(n, 2, generator=torch.Generator().manual_seed(10_007 + seed), dtype=torch.float64) * s
    placements = [lvp.Placement(float(c[0]), float(c[1]), size, size) for c in centres]
    x = lvp_train.normalise(pool.batch(torch.arange(n)), engine)
    gain = lvp.attention_gain(engine, red, x, placements)
    return {"attention_gain": {"red-circle": gain["gain"]},
            "eval_images": f"{pool.description}, random centres (seed {10_007 + seed})"}  # fmt: skip


from core.evaluation.report import markdown_table, write_csv, write_plots, write_report  # noqa: E402 (re-exported)

__all__ = [
    "EvalConfig",
    "EvalError",
    "EvalResult",
    "LABELS",
    "METHODS",
    "encode_database",
    "evaluate",
    "filter_min_objects",
    "load_split",
    "make_prompt",
    "markdown_table",
    "object_point",
    "synthetic_split",
    "write_csv",
    "write_plots",
    "write_report",
]
