"""The evaluation protocol's data steps (seed 000, A2): disjoint query and database sets, queries with at
least N objects, and one prompt per object with the counts the metrics weigh it by.

Boxes are XYXY float in continuous pixel coordinates, as everywhere in :mod:`core.evaluation.datasets`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from core.evaluation.datasets import Dataset


def filter_min_objects(dataset: Dataset, min_objects: int) -> Dataset:
    """Keep the images with at least ``min_objects`` (non-crowd) objects (Fig. A2 of seed 000)."""
    return Dataset(
        dataset.name, dict(dataset.categories), tuple(im for im in dataset if im.n_objects >= min_objects)
    )


def split_query_database(
    dataset: Dataset,
    n_query: int | None = None,
    n_database: int | None = None,
    *,
    seed: int = 0,
    min_query_objects: int = 1,
) -> tuple[Dataset, Dataset]:
    """Split into disjoint query and database sets.

    The images are shuffled with ``np.random.default_rng(seed)``. Queries are the first ``n_query`` of the
    shuffled images that have at least ``min_query_objects`` (non-crowd) objects; the database is the first
    ``n_database`` of all the remaining images (images without objects included: they are negatives).
    Both keep the shuffled order.

    Args:
        dataset: The images to split.
        n_query: Number of query images; ``None``: half of the eligible images (rounded down).
        n_database: Number of database images; ``None``: all the rest.
        seed: Shuffle seed.
        min_query_objects: Least number of objects of a query image (at least 1).

    Returns:
        ``(queries, database)``, named ``"<name>-query"`` and ``"<name>-db"``.

    Raises:
        ValueError: When the dataset has too few (eligible) images for the requested sizes.
    """
    if min_query_objects < 1:
        raise ValueError("A query image needs at least one object.")
    order = np.random.default_rng(seed).permutation(len(dataset))
    eligible = [int(i) for i in order if dataset[int(i)].n_objects >= min_query_objects]
    if n_query is None:
        n_query = len(eligible) // 2
    if n_query < 1 or n_query > len(eligible):
        raise ValueError(f"Cannot take {n_query} query images: {len(eligible)} images have enough objects.")
    q = eligible[:n_query]
    taken = set(q)
    rest = [int(i) for i in order if int(i) not in taken]
    if n_database is None:
        n_database = len(rest)
    if n_database < 1 or n_database > len(rest):
        raise ValueError(
            f"Cannot take {n_database} database images: {len(rest)} images are left after the queries."
        )
    db = rest[:n_database]
    return dataset.subset(q, f"{dataset.name}-query"), dataset.subset(db, f"{dataset.name}-db")


@dataclass(frozen=True)
class QueryObject:
    """One visual-prompt query: an object of a query image.

    Attributes:
        image_index: Index of the image in the query dataset.
        object_index: Index of the object in the image's ``objects``.
        image_id: The image's id.
        category_id: ``c(o_i)``.
        bbox: ``(4,)`` float64 XYXY box of the object (the box prompt).
        n_cat: ``n_c(x_Q)``: number of objects of that category in the image.
        n_objects: ``n(x_Q)``: number of objects in the image.
    """

    image_index: int
    object_index: int
    image_id: int | str
    category_id: int
    bbox: np.ndarray = field(repr=False)
    n_cat: int
    n_objects: int


def query_objects(queries: Dataset) -> list[QueryObject]:
    """One query per non-crowd object of every query image, in image then object order.

    ``n_cat`` counts the non-crowd objects of the category in the image, so that summing ``1 / n_cat``
    over an image's prompts of a category gives 1, as Eq. A3 of seed 000 intends.
    """
    out = []
    for ii, im in enumerate(queries):
        cats = Counter(o.category_id for o in im.objects if not o.iscrowd)
        n = sum(cats.values())
        for oi, o in enumerate(im.objects):
            if o.iscrowd:
                continue
            out.append(QueryObject(ii, oi, im.image_id, o.category_id, o.bbox, cats[o.category_id], n))
    return out
