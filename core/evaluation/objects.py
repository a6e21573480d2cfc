"""The evaluation protocol extended to several objects per query (``phs eval --objects N --combine ...``).

Seed 000's protocol prompts one object and counts a retrieved photo correct when it holds that object's
category. Here a query prompts ``N`` objects of different categories of one query image, and a database
photo is correct when it holds

* ``and``: every prompted category;
* ``or``: at least one of them;
* ``not``: the first category and none of the others (the others are marked as excluded).

Every group of ``N`` objects of pairwise different categories of a query image is one query (for ``not``,
each object of the group in turn is the wanted one); per query image the precision is averaged over its
queries and then over the query images, so an image with many objects weighs as much as one with two.
Beside MP@k and MAP@k per method the report gives the base rate (the share of database photos that are
correct, averaged like the precision) and the best attainable precision at k (``min(k, correct) / k``).

Methods:

=============== =================================================================================
cbir            the whole query photo's plain [CLS] feature (ignores the marks)
phs-qo          one PHS query with every mark as one region, as a single prompt does today: the
                union of the boxes (``and``, ``or``); for ``not`` the first box with a negative point
                at the centre of each other box
phs-objects     an object per mark, each with its own heads, Query-Only scores, combined by the
                shipped rule (:mod:`core.search.objects`)
phs-objects-qd  the same with Query-DB per object (each database photo recomputed with each object's
                head mask)
=============== =================================================================================

Every ranking goes through :class:`core.search.service.QueryService`, the path of the app and ``phs search``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.evaluation.datasets import Dataset, ObjectAnnotation
from core.evaluation.metrics import per_query_scores
from core.evaluation.protocol import EvalError, encode_database, make_prompt
from core.method.engine import PHSEngine
from core.method.prompts import Box, Mask, Point, Prompt, box_cells
from core.search.objects import OBJECT_CANDIDATES, ObjectSpec
from core.search.service import MemoryGallery, QueryService, QuerySpec

COMBINATIONS: tuple[str, ...] = ("and", "or", "not")
METHODS: tuple[str, ...] = ("cbir", "phs-qo", "phs-objects", "phs-objects-qd")
LABELS = {"cbir": "CBIR", "phs-qo": "PHS (QO, one region)", "phs-objects": "PHS objects",
          "phs-objects-qd": "PHS objects (QD)"}  # fmt: skip
#: At most this many object groups of one query image are queries (the first ones, in object order).
MAX_GROUPS_PER_IMAGE = 12


@dataclass
class ObjectsConfig:
    """What to evaluate.

    Attributes:
        methods: names from :data:`METHODS`.
        objects: ``N``, objects prompted per query (at least 2).
        combine: ``and``, ``or`` or ``not``.
        k: cut-off of MP@k / MAP@k.
        h_on: heads kept per object (and by ``phs-qo``); ``None`` = the model's recommended value.
        candidates: Query-Only neighbours per object scored exactly by ``phs-objects``.
        batch_size: database encoding batch.
    """

    methods: Sequence[str] = ("cbir", "phs-qo", "phs-objects")
    objects: int = 2
    combine: str = "and"
    k: int = 20
    h_on: int | None = None
    candidates: int = OBJECT_CANDIDATES
    batch_size: int = 64

    def validate(self, num_heads: int) -> None:
        """Raise :class:`EvalError` with one sentence when an option cannot work."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise EvalError(f"With --objects choose methods from {', '.join(METHODS)}"
                            + (f", not {', '.join(unknown)}." if unknown else "."))  # fmt: skip
        if self.objects < 2:
            raise EvalError(f"--objects needs at least 2 objects per query, not {self.objects}.")
        if self.combine not in COMBINATIONS:
            raise EvalError(f"--combine must be one of {', '.join(COMBINATIONS)}, not '{self.combine}'.")
        if self.k < 1 or self.candidates < 1:
            raise EvalError("k and the candidates per object must be at least 1.")
        if self.h_on is not None and not 1 <= self.h_on <= num_heads:
            raise EvalError(f"h_on must be between 1 and {num_heads} for this model, not {self.h_on}.")


@dataclass
class ObjectsResult:
    """MP@k and MAP@k (percent) per method, with the base rate and the best attainable precision.

    Attributes:
        mp, map: ``{method: percent}``.
        base_rate: percent of database photos that are correct (mean over query images).
        best_mp: the best attainable MP@k in percent.
        info: counts and settings.
    """

    mp: dict[str, float]
    map: dict[str, float]
    base_rate: float
    best_mp: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"MP@k": {method: v}, "MAP@k": {...}, "base_rate": v, "best_MP@k": v, ...}`` (percent, 2 decimals)."""
        k = self.info["k"]
        return {f"MP@{k}": {m: round(v, 2) for m, v in self.mp.items()},
                f"MAP@{k}": {m: round(v, 2) for m, v in self.map.items()},
                "base_rate": round(self.base_rate, 2), f"best_MP@{k}": round(self.best_mp, 2)} | self.info  # fmt: skip


def object_groups(objs: Sequence[ObjectAnnotation], n: int, combine: str) -> list[tuple[int, ...]]:
    """The queries of one image: groups of ``n`` object indices of pairwise different categories.

    For ``not`` the first index of a group is the wanted object, so every object of a group leads once.
    At most :data:`MAX_GROUPS_PER_IMAGE`, in object order.
    """
    out: list[tuple[int, ...]] = []
    live = [i for i, o in enumerate(objs) if not o.iscrowd]
    for group in itertools.combinations(live, n):
        if len({objs[i].category_id for i in group}) < n:
            continue
        lead = group if combine == "not" else group[:1]
        out += [(i, *[g for g in group if g != i]) for i in lead]
    return out[:MAX_GROUPS_PER_IMAGE]


def correct_photos(db_categories: Sequence[frozenset[int]], cats: Sequence[int], combine: str) -> np.ndarray:
    """``(N_db,)`` bool: which database photos are correct for prompted categories ``cats`` (first = wanted)."""
    first, rest = cats[0], set(cats[1:])
    if combine == "and":
        return np.array([set(cats) <= s for s in db_categories])
    if combine == "or":
        return np.array([bool(set(cats) & s) for s in db_categories])
    return np.array([first in s and not (rest & s) for s in db_categories])


def one_region(boxes: Sequence[np.ndarray], image_size: tuple[int, int], grid: tuple[int, int],
               combine: str) -> Prompt:
    """Today's single prompt for several marks: the union of the boxes as one region (``and``, ``or``), or the
    first box with a negative point at the centre of every other box (``not``).

    Args:
        boxes: ``(4,)`` XYXY boxes in image pixels.
        image_size: ``(W, H)``.
        grid: ``(gh, gw)`` patch grid; the union is the patches any box overlaps, as a box prompt selects them.
    """
    if combine == "not":
        neg = tuple(Point((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, positive=False) for b in boxes[1:])
        return Prompt(points=neg, box=Box(*[float(v) for v in boxes[0]]))
    cells = np.zeros(grid, bool)
    for b in boxes:
        cells |= box_cells(Box(*[float(v) for v in b]), image_size, grid)
    w, h = image_size
    rows = np.minimum(((np.arange(h) + 0.5) * grid[0] / h).astype(int), grid[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * grid[1] / w).astype(int), grid[1] - 1)
    return Prompt(mask=Mask(cells[rows][:, cols]))


def evaluate_objects(
    engine: PHSEngine,
    queries: Dataset,
    database: Dataset,
    config: ObjectsConfig,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> ObjectsResult:
    """Run the several-object protocol (see the module doc) through the query service.

    Raises:
        EvalError: bad options, or no query image with ``N`` objects of different categories.
    """
    from tqdm import tqdm

    config.validate(engine.num_heads)
    bar = tqdm(total=len(database), desc="database", unit="img", disable=not progress)
    db = encode_database(engine, database, config.batch_size, bar.update)
    bar.close()
    service = QueryService(engine, MemoryGallery(db.features, db.x_cls, db.o_cls))
    h_on = config.h_on if config.h_on is not None else engine.recommended_h_on
    k = config.k
    base = dict(h_on=h_on, k=k, candidates=config.candidates)
    per_image: dict[str, list[tuple[float, float]]] = {m: [] for m in config.methods}
    rates: list[float] = []
    best: list[float] = []
    n_queries = 0
    qbar = tqdm(total=len(queries), desc="queries", unit="img", disable=not progress)
    for rec in queries:
        groups = object_groups(rec.objects, config.objects, config.combine)
        qbar.update(1)
        if not groups:
            continue
        service.set_photo(rec.load())
        size = engine.image_size
        rows: dict[str, list[np.ndarray]] = {m: [] for m in config.methods}
        rate, top = [], []
        for group in groups:
            objs = [rec.objects[i] for i in group]
            correct = correct_photos(db.categories, [o.category_id for o in objs], config.combine)
            rate.append(correct.mean())
            top.append(min(int(correct.sum()), k) / k)
            for m in config.methods:
                spec = _method_spec(m, objs, size, engine.grid, config.combine, base)
                ids = np.array([i for _, i in service.run(spec).hits], np.int64)
                hit = np.zeros(k, bool)
                hit[: len(ids)] = correct[ids[:k]]
                rows[m].append(hit)
        n_queries += len(groups)
        rates.append(float(np.mean(rate)))
        best.append(float(np.mean(top)))
        for m, hits in rows.items():
            p, ap = per_query_scores(np.stack(hits))
            per_image[m].append((float(p.mean()), float(ap.mean())))
    qbar.close()
    if not rates:
        raise EvalError(f"No query image has {config.objects} objects of different categories; "
                        "use more query images or fewer objects.")  # fmt: skip
    facts = {"k": k, "combine": config.combine, "objects": config.objects, "h_on": h_on,
             "candidates_per_object": config.candidates, "n_queries": n_queries, "n_query_images": len(rates),
             "n_database": len(database), "model": engine.spec.name, "model_label": engine.spec.label,
             "is_demo": engine.spec.is_demo, "methods": list(config.methods)}  # fmt: skip
    return ObjectsResult(
        mp={m: 100 * float(np.mean([p for p, _ in v])) for m, v in per_image.items()},
        map={m: 100 * float(np.mean([a for _, a in v])) for m, v in per_image.items()},
        base_rate=100 * float(np.mean(rates)), best_mp=100 * float(np.mean(best)), info=facts | (info or {}),
    )


def _method_spec(method: str, objs: Sequence[ObjectAnnotation], size: tuple[int, int], grid: tuple[int, int],
                 combine: str, base: dict[str, Any]) -> QuerySpec:
    """The service query of one method for one group of prompted objects (first = wanted for ``not``)."""
    if method == "cbir":
        return QuerySpec(method="cbir", k=base["k"])
    if method == "phs-qo":
        return QuerySpec(prompt=one_region([o.bbox for o in objs], size, grid, combine), method="phs",
                         h_on=base["h_on"], k=base["k"])  # fmt: skip
    specs = tuple(ObjectSpec(make_prompt("box", o.bbox, None), excluded=combine == "not" and j > 0)
                  for j, o in enumerate(objs))  # fmt: skip
    return QuerySpec(objects=specs, combine="or" if combine == "or" else "and", method="phs", h_on=base["h_on"],
                     k=base["k"], mode="qd" if method == "phs-objects-qd" else "qo",
                     object_candidates=base["candidates"])  # fmt: skip


def markdown_table(result: ObjectsResult) -> str:
    """One row per metric, one column per method, with the base rate and the best attainable precision."""
    i = result.info
    k = i["k"]
    cols = list(result.mp)
    lines = ["| metric | " + " | ".join(LABELS[c] for c in cols) + " | base rate | best attainable |",
             "|---|" + "---:|" * (len(cols) + 2)]  # fmt: skip
    lines.append(f"| MP@{k} | " + " | ".join(f"{result.mp[c]:.1f}" for c in cols)
                 + f" | {result.base_rate:.1f} | {result.best_mp:.1f} |")  # fmt: skip
    lines.append(f"| MAP@{k} | " + " | ".join(f"{result.map[c]:.1f}" for c in cols) + " | | |")
    lines.append("")
    lines.append(f"Percent. {i['objects']} objects per query combined with '{i['combine']}': {i['n_queries']} "
                 f"queries in {i['n_query_images']} query images, database {i['n_database']} images, model "
                 f"{i['model_label']}, box prompts, h_on {i['h_on']} per object, {i['candidates_per_object']} "
                 "candidates per object.")  # fmt: skip
    return "\n".join(lines)


def write_objects_report(result: ObjectsResult, out_dir: Path) -> dict[str, Path]:
    """Write ``results.md`` and ``results.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "results.md", "json": out_dir / "results.json"}
    paths["markdown"].write_text(markdown_table(result) + "\n")
    paths["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return paths


