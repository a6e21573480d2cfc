"""The paper's evaluation protocol (seed 000, A2-A3): focus-oriented retrieval with visual prompts.

Every annotated object of every query image is one query (a prompt: its box, a point on it, or its mask).
The database is encoded once with :meth:`core.method.engine.PHSEngine.encode_batch`, keeping the Query-DB cache
(``X_cls``, ``O[CLS]``), as a :class:`core.search.service.MemoryGallery`. Each query image is encoded once
(:meth:`~core.method.engine.PHSEngine.set_image`) and every prompt and method goes through the query service the
app and ``phs search`` use (:func:`core.search.service.query_feature` and :func:`core.search.service.rank`), so
the figures are those of the shipped search. MP@k and MAP@k (Eqs. A1-A8) and the per-number-of-objects
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

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.defaults import LEARNED_METHODS, MARKER_METHODS
from core.errors import PHSError
from core.evaluation.datasets import (
    Dataset,
    filter_min_objects,
    query_objects,
    split_query_database,
    synthetic_dataset,
)
from core.evaluation.metrics import FOIRMetrics, foir_metrics
from core.evaluation.noise import noise_magnitude, noisy_box
from core.method.engine import FAParams, PHSEngine
from core.method.phs import HeadStrategy, RoiReduce, l2_normalize
from core.method.prompts import Box, Mask, Prompt
from core.search.service import DEFAULT_CANDIDATES, MemoryGallery, QuerySpec, query_feature, rank

METHODS: tuple[str, ...] = (
    "cbir", "crop", "mask", "attn-mask", "fa", "phs-qo", "phs-qd", "phs-qd-exact", "fa+phs", "crop+phs",
    "lvp", "red-circle", "lvp+phs",
)
"""Method names accepted by :func:`evaluate` and ``phs eval --methods``, in table order."""

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


def default_h_on(engine: PHSEngine) -> int:
    """``h_on`` to use when none is given: :attr:`core.method.engine.PHSEngine.recommended_h_on`."""
    return engine.recommended_h_on


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
    return _Database(l2_normalize(np.concatenate(feats)), np.concatenate(xs), np.concatenate(os_),
                     database.image_categories())


def _padded(ids: np.ndarray, k: int) -> np.ndarray:
    """``(k,)`` ids, ``-1`` padded when the database is smaller than ``k``."""
    out = -np.ones(k, np.int64)
    out[: len(ids)] = ids[:k]
    return out


def evaluate(
    engine: PHSEngine,
    queries: Dataset,
    database: Dataset,
    config: EvalConfig,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> EvalResult:
    """Run the protocol: every prompted object of every query image, every method, one ranking each.

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
    h_on = config.h_on if config.h_on is not None else default_h_on(engine)
    k = config.k
    methods = [m for m in METHODS if m in config.methods]
    if "phs-qd" in methods and "phs-qd-exact" not in methods:
        methods.insert(methods.index("phs-qd") + 1, "phs-qd-exact")  # the shipped QD is reported beside the exact one
    noisy = [m for m in methods if m not in _PROMPTLESS] if config.noise is not None else []
    sweep_methods = [m for m in ("phs-qo", "phs-qd") if config.h_on_sweep and m in methods]
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
    strategy = HeadStrategy(config.strategy)
    fa = FAParams(config.fa.alpha, config.fa.sigma, min(config.fa.blocks, engine.fa_blocks))
    gallery = MemoryGallery(db.features, db.x_cls, db.o_cls)
    itae = engine.itae_theta  # the database was encoded with it; the queries use the same

    def run_method(method: str, prompt: Prompt, hk: int) -> np.ndarray:
        spec = QuerySpec(
            prompt=None if method in _PROMPTLESS else prompt,
            method=_SERVICE_METHOD.get(method, method),
            h_on=hk if method in _H_ON_METHODS else None,
            roi=config.roi,
            strategy=strategy.value,
            fa=fa,
            itae_theta=itae,
            mode="qd" if method.startswith("phs-qd") else "qo",
            k=k,
            candidates=None if method == "phs-qd-exact" else config.candidates,
        )
        _, ids = rank(engine, gallery, query_feature(engine, spec), k=k, mode=spec.mode,
                      candidates=spec.candidates, strategy=strategy)  # fmt: skip
        return _padded(ids, k)

    by_image: dict[int, list[int]] = {}
    for j, o in enumerate(objs):
        by_image.setdefault(o.image_index, []).append(j)
    qbar = tqdm(total=len(objs), desc="queries", unit="prompt", disable=not progress)
    for ii, js in by_image.items():
        rec = queries[ii]
        pixels = rec.load()
        engine.set_image(pixels)
        w, h = engine.image_size
        for j in js:
            o = objs[j]
            ann = rec.objects[o.object_index]
            mask = ann.mask() if config.prompt != "box" else None
            prompt = make_prompt(config.prompt, o.bbox, mask)
            for m in methods:
                ranked[m].append(run_method(m, prompt, h_on))
            for m in sweep_methods:
                for hk in config.h_on_sweep:
                    sweep_ranked[m][int(hk)].append(run_method(m, prompt, int(hk)))
            if noisy:
                mag = int(round(config.noise)) if config.noise_absolute else noise_magnitude(w, h, m_ref=config.noise)
                nb = noisy_box(o.bbox, w, h, rng, m=mag)
                nprompt = Prompt(box=Box(*[float(v) for v in nb]))
                for m in noisy:
                    ranked[f"{m}-N"].append(run_method(m, nprompt, h_on))
            qbar.update(1)
    qbar.close()

    overlap = None
    if "phs-qd" in ranked and ranked["phs-qd"]:
        shipped, exact = np.stack(ranked["phs-qd"]), np.stack(ranked["phs-qd-exact"])
        kk = min(k, len(database))
        overlap = float(np.mean([len(set(a[:kk]) & set(b[:kk])) / kk for a, b in zip(shipped, exact)])) * 100

    def metrics_of(rows: list[np.ndarray]) -> FOIRMetrics:
        return foir_metrics(
            [o.category_id for o in objs],
            [o.image_id for o in objs],
            [o.n_cat for o in objs],
            [o.n_objects for o in objs],
            np.stack(rows),
            db.categories,
            k,
        )

    result_info = {
        "k": k,
        "model": engine.spec.name,
        "model_label": engine.spec.label,
        "is_demo": engine.spec.is_demo,
        "h_on": h_on,
        "roi": config.roi,
        "strategy": strategy.value,
        "prompt": config.prompt,
        "noise": config.noise,
        "noise_scale": None if config.noise is None else ("absolute" if config.noise_absolute else "image"),
        "itae_theta": engine.itae_theta,
        "qd_candidates": config.candidates,
        f"qd_overlap@{k}": None if overlap is None else round(overlap, 2),
        "n_database": len(database),
        "num_heads": engine.num_heads,
        "methods": methods,
    } | (info or {})
    gain = None
    if MARKER_METHODS & set(methods):
        gain = marker_attention_gain(engine, queries, seed=config.seed)
        result_info["attention_gain"] = {name: layers[-1] for name, layers in gain["attention_gain"].items()
                                         if name in _MARKERS}  # fmt: skip
        result_info["attention_gain_per_layer"] = {name: gain["attention_gain"][name] for name in _MARKERS
                                                   if name in gain["attention_gain"]}  # fmt: skip
        result_info["attention_gain_images"] = gain["eval_images"]
    if config.localize:
        from core.evaluation.localize import localize

        def prompt_of(o, ann):  # a QueryObject and its ObjectAnnotation
            return make_prompt(config.prompt, o.bbox, ann.mask() if config.prompt != "box" else None)

        result_info["localization"] = localize(engine, queries, database, gallery, k=k, h_on=h_on, make_prompt=prompt_of,
                                               roi=config.roi, strategy=strategy.value).summary()  # fmt: skip
    return EvalResult(
        metrics={c: metrics_of(ranked[c]) for c in columns},
        sweep={m: {h: metrics_of(r) for h, r in d.items()} for m, d in sweep_ranked.items()},
        info=result_info,
    )


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


# --------------------------------------------------------------------------------------------------------
# reports


def _label(col: str) -> str:
    if col.endswith("-N"):
        return LABELS[col[:-2]] + "-N"
    return LABELS[col]


def markdown_table(result: EvalResult, dataset: str | None = None) -> str:
    """The results laid out like the seed's tables: one row per dataset/model, one column per method.

    Includes MP@k and MAP@k, and (when present) the ``h_on`` sweep (Fig. A1) and the relative gain over
    CBIR by number of objects (Fig. A2).
    """
    k = result.k
    info = result.info
    ds = dataset or str(info.get("dataset", ""))
    model = str(info.get("model_label", info.get("model", "")))
    cols = list(result.metrics)
    lines = []
    for name, attr in ((f"MP@{k}", "mp"), (f"MAP@{k}", "map")):
        lines.append("| Dataset | Model | " + " | ".join(_label(c) for c in cols) + " |")
        lines.append("|---|---|" + "---:|" * len(cols))
        lines.append(f"| {ds} | {model} | " + " | ".join(f"{getattr(result.metrics[c], attr):.1f}" for c in cols) + " |")
        lines.append("")
        lines.append(
            f"Metric: {name} (%). {result.metrics[cols[0]].n_queries} prompted objects in "
            f"{result.metrics[cols[0]].n_images} query images, database {info.get('n_database')} images; "
            f"prompt {info.get('prompt')}, h_on {info.get('h_on')}, ROI {info.get('roi')}, "
            f"strategy {info.get('strategy')}"
            + (f", noise m = {info.get('noise')} px ("
               + ("absolute, as the paper" if info.get("noise_scale") == "absolute" else "scaled from a 640 px side")
               + ")" if info.get("noise") is not None else "")
            + (f"; PHS (QD) re-ranks the Query-Only top {info.get('qd_candidates')} as shipped, top-{k} overlap "
               f"with the exact whole-database QD {info.get(f'qd_overlap@{k}')}%"
               if info.get(f"qd_overlap@{k}") is not None else "")
            + (f", ITAE theta {info.get('itae_theta')}" if info.get("itae_theta") is not None else "")
            + "."
        )
        lines.append("")
    gain = info.get("attention_gain_per_layer")
    if gain:
        layers = len(next(iter(gain.values())))
        lines.append("| marker | " + " | ".join(f"layer {i + 1}" for i in range(layers)) + " |")
        lines.append("|---|" + "---:|" * layers)
        for name, gains in gain.items():
            lines.append(f"| {LABELS[name]} | " + " | ".join(f"{100 * g:+.0f}%" for g in gains) + " |")
        lines.append("")
        lines.append(f"Relative attention gain on the marked tokens per layer (seed 004, Fig. 4), "
                     f"{info.get('attention_gain_images')}.")
        lines.append("")
    if info.get("localization"):
        from core.evaluation.localize import markdown

        lines.append(markdown(info["localization"]))
    if result.sweep:
        hs = sorted({h for d in result.sweep.values() for h in d})
        lines.append("| h_on | " + " | ".join(str(h) for h in hs) + " |")
        lines.append("|---|" + "---:|" * len(hs))
        for meth, d in result.sweep.items():
            lines.append(f"| {LABELS[meth]} | " + " | ".join(f"{d[h].mp:.1f}" if h in d else "" for h in hs) + " |")
        lines.append("")
        lines.append(f"MP@{k} (%) against the number of selected heads (Fig. A1).")
        lines.append("")
    if "cbir" in result.metrics:
        base = result.metrics["cbir"].min_num_objects
        ns = [n for n, g in base.items() if g.n_queries]
        others = [c for c in cols if c != "cbir"]
        if ns and others:
            lines.append("| objects >= | " + " | ".join(str(n) for n in ns) + " |")
            lines.append("|---|" + "---:|" * len(ns))
            lines.append("| CBIR MP | " + " | ".join(f"{base[n].mp:.1f}" for n in ns) + " |")
            for c in others:
                g = result.metrics[c].min_num_objects
                cells = [f"{100.0 * (g[n].mp / base[n].mp - 1.0):+.1f}%" if base[n].mp > 0 else "" for n in ns]
                lines.append(f"| {_label(c)} | " + " | ".join(cells) + " |")
            lines.append("")
            lines.append(f"Relative MP@{k} gain over CBIR for query images with at least n objects (Fig. A2).")
            lines.append("")
    return "\n".join(lines)


def write_csv(result: EvalResult, path: Path) -> None:
    """One row per column (method) with MP@k, MAP@k and the query counts; the sweep as extra rows."""
    k = result.k
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "h_on", f"MP@{k}", f"MAP@{k}", "n_prompts", "n_query_images", "qd_candidates",
                    f"qd_overlap@{k}"])
        overlap = result.info.get(f"qd_overlap@{k}")

        def qd_cells(method: str) -> list[Any]:
            if method == "phs-qd":
                return [result.info.get("qd_candidates"), overlap]
            return ["all", overlap] if method == "phs-qd-exact" else ["", ""]

        for c, m in result.metrics.items():
            w.writerow([c, result.info.get("h_on"), f"{m.mp:.4f}", f"{m.map:.4f}", m.n_queries, m.n_images,
                        *qd_cells(c)])
        for meth, d in result.sweep.items():
            for h, m in d.items():
                w.writerow([meth, h, f"{m.mp:.4f}", f"{m.map:.4f}", m.n_queries, m.n_images, *qd_cells(meth)])


def write_plots(result: EvalResult, out_dir: Path) -> list[Path]:
    """matplotlib plots: ``h_on`` sweep (Fig. A1), noise robustness (Table A3), gain vs objects (Fig. A2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.k
    written: list[Path] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        written.append(out_dir / f"{name}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    if result.sweep:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for meth, d in result.sweep.items():
            hs = sorted(d)
            ax.plot(hs, [d[h].mp for h in hs], marker="o", label=LABELS[meth])
        if "cbir" in result.metrics:
            ax.axhline(result.metrics["cbir"].mp, color="grey", ls="--", label="CBIR")
        ax.set_xlabel("h_on (selected heads)")
        ax.set_ylabel(f"MP@{k} (%)")
        ax.legend()
        save(fig, "h_on_sweep")
    noisy = [c[:-2] for c in result.metrics if c.endswith("-N")]
    if noisy:
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(noisy)), 3.5))
        x = np.arange(len(noisy))
        ax.bar(x - 0.2, [result.metrics[m].mp for m in noisy], 0.4, label="clean")
        ax.bar(x + 0.2, [result.metrics[f"{m}-N"].mp for m in noisy], 0.4, label="noisy")
        ax.set_xticks(x, [LABELS[m] for m in noisy], rotation=20)
        ax.set_ylabel(f"MP@{k} (%)")
        ax.legend()
        save(fig, "noise_robustness")
    if "cbir" in result.metrics and len(result.metrics) > 1:
        base = result.metrics["cbir"].min_num_objects
        ns = [n for n, g in base.items() if g.n_queries and g.mp > 0]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for c, m in result.metrics.items():
            if c == "cbir" or c.endswith("-N"):
                continue
            ax.plot(ns, [100.0 * (m.min_num_objects[n].mp / base[n].mp - 1.0) for n in ns], marker="o",
                    label=_label(c))
        ax.axhline(0.0, color="grey", ls="--")
        ax.set_xlabel("query images with at least n objects")
        ax.set_ylabel(f"relative MP@{k} vs CBIR (%)")
        ax.legend(fontsize=7)
        save(fig, "gain_vs_objects")
    per_layer = result.info.get("attention_gain_per_layer")
    if per_layer:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, gains in per_layer.items():
            ax.plot(range(1, len(gains) + 1), [100.0 * g for g in gains], marker="o", label=LABELS[name])
        ax.axhline(0.0, color="grey", ls="--")
        ax.set_xlabel("layer")
        ax.set_ylabel("relative attention gain on the marked tokens (%)")
        ax.legend()
        save(fig, "attention_gain")
    return written


def write_report(result: EvalResult, out_dir: Path, dataset: str | None = None) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv``, ``results.json`` and the plots into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    paths["markdown"].write_text(markdown_table(result, dataset) + "\n")
    write_csv(result, paths["csv"])
    paths["json"].write_text(json.dumps(result.to_json(), indent=2, default=_json_default) + "\n")
    for p in write_plots(result, out_dir):
        paths[p.stem] = p
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(float(o)) else float(o)
    if isinstance(o, FAParams):
        return {"alpha": o.alpha, "sigma": o.sigma, "blocks": o.blocks}
    return str(o)


__all__ = [
    "EvalConfig",
    "EvalError",
    "EvalResult",
    "LABELS",
    "METHODS",
    "default_h_on",
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
