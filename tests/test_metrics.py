"""MP@k and MAP@k (seed 000, Eqs. A1-A8) on hand-computed rankings."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from core.evaluation.metrics import correctness, foir_metrics, per_query_scores

# Database: 5 images. Category 3 occurs only in the database (no query asks for it).
DB = [frozenset({1}), frozenset({2}), frozenset({1, 2}), frozenset({3}), frozenset()]


def _hand_case(extra_columns: bool = False):
    # Query image "A" has two objects of category 1 and one of category 2; image "B" one of category 1.
    retrieved = np.array(
        [
            [0, 1, 2],  # A, cat 1: S = 1 0 1 -> P~ = 2/3, AP~ = (1/1 + 2/3) / 2 = 5/6
            [3, 4, 0],  # A, cat 1: S = 0 0 1 -> P~ = 1/3, AP~ = (1/3) / 1 = 1/3
            [1, 2, 3],  # A, cat 2: S = 1 1 0 -> P~ = 2/3, AP~ = (1 + 1) / 2 = 1
            [3, 4, 1],  # B, cat 1: S = 0 0 0 -> P~ = 0,   AP~ = 0 (no correct image)
        ]
    )
    if extra_columns:  # positions beyond k must not count
        retrieved = np.concatenate([retrieved, np.array([[0, 2]] * 4)], axis=1)
    return dict(
        query_categories=[1, 1, 2, 1],
        query_image_ids=["A", "A", "A", "B"],
        query_n_cat=[2, 2, 1, 1],
        query_n_objects=[3, 3, 3, 1],
        retrieved=retrieved,
        db_categories=DB,
        k=3,
    )


def test_per_query_scores_by_hand():
    s = correctness([1, 1, 2, 1], _hand_case()["retrieved"], DB, 3)
    assert s.tolist() == [
        [True, False, True],
        [False, False, True],
        [True, True, False],
        [False, False, False],
    ]
    p, ap = per_query_scores(s)
    np.testing.assert_allclose(p, [2 / 3, 1 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(ap, [5 / 6, 1 / 3, 1.0, 0.0])


@pytest.mark.parametrize("extra_columns", [False, True])
def test_mp_map_by_hand(extra_columns):
    m = foir_metrics(**_hand_case(extra_columns))
    # Eq. A3: P@3(1) = 1/|{A, B}| * ((2/3)/2 + (1/3)/2 + 0/1) = 1/4 ; P@3(2) = 2/3
    assert set(m.per_category) == {1, 2}  # category 3 has no query: not in C
    assert m.per_category[1].p == pytest.approx(25.0)
    assert m.per_category[2].p == pytest.approx(200 / 3)
    assert m.mp == pytest.approx((25.0 + 200 / 3) / 2)
    # Eq. A7: AP@3(1) = 1/2 * ((5/6)/2 + (1/3)/2 + 0) = 7/24 ; AP@3(2) = 1
    assert m.per_category[1].ap == pytest.approx(700 / 24)
    assert m.per_category[2].ap == pytest.approx(100.0)
    assert m.map == pytest.approx((700 / 24 + 100.0) / 2)
    assert (m.per_category[1].n_queries, m.per_category[1].n_images) == (3, 2)
    assert (m.n_queries, m.n_images, m.k) == (4, 2, 3)


def test_breakdown_by_number_of_objects():
    m = foir_metrics(**_hand_case())
    # exactly 3 objects (image A): P(1) = ((2/3)/2 + (1/3)/2) / 1 = 1/2, P(2) = 2/3
    assert m.by_num_objects[3].mp == pytest.approx((50.0 + 200 / 3) / 2)
    assert m.by_num_objects[3].n_queries == 3
    # exactly 1 object (image B): only category 1, P = 0, AP = 0
    assert m.by_num_objects[1].mp == pytest.approx(0.0)
    assert m.by_num_objects[1].map == pytest.approx(0.0)
    assert set(m.by_num_objects) == {1, 3}
    # at least n objects (Fig. A2): n = 1 is everything, n = 2 and 3 are image A alone
    assert m.min_num_objects[1].mp == pytest.approx(m.mp)
    assert m.min_num_objects[2].mp == pytest.approx(m.by_num_objects[3].mp)
    assert m.min_num_objects[3].map == pytest.approx(m.by_num_objects[3].map)
    assert set(m.min_num_objects) == {1, 2, 3}


def test_eq_a3_is_literal_when_not_every_object_is_prompted():
    # Image with two objects of category 1 but only one prompted: it contributes P~ / 2.
    m = foir_metrics([1], ["A"], [2], [2], np.array([[0, 2]]), DB, k=2)
    assert m.per_category[1].p == pytest.approx(50.0)


def test_k_one_and_padding():
    m = foir_metrics([2, 2], ["A", "B"], [1, 1], [1, 1], np.array([[1, 0], [-1, 1]]), DB, k=1)
    assert m.mp == pytest.approx(50.0)  # (1 + 0) / 2, the padded slot is incorrect
    m2 = foir_metrics([2], ["A"], [1], [1], np.array([[-1, 1, 4]]), DB, k=3)
    assert m2.mp == pytest.approx(100 / 3)
    assert m2.map == pytest.approx(50.0)  # correct at rank 2 only: P~@2 = 1/2


def test_errors():
    case = _hand_case()
    with pytest.raises(ValueError):
        foir_metrics(**{**case, "k": 4})  # fewer columns than k
    with pytest.raises(ValueError):
        foir_metrics(**{**case, "query_n_cat": [1, 1, 1, 1]})  # two queries of (A, 1) but n_c = 1
    with pytest.raises(ValueError):
        foir_metrics(**{**case, "query_n_cat": [2, 3, 1, 1]})  # inconsistent n_c
    with pytest.raises(ValueError):
        foir_metrics(**{**case, "retrieved": case["retrieved"] + 5})  # outside the database
    with pytest.raises(ValueError):
        foir_metrics(**{**case, "query_image_ids": ["A"]})


def _reference(cats, images, n_cat, retrieved, db, k):
    """Eqs. A1-A8 written as plain loops."""
    p_sum, ap_sum, imgs = defaultdict(float), defaultdict(float), defaultdict(set)
    for q in range(len(cats)):
        s = [1.0 if cats[q] in db[j] else 0.0 for j in retrieved[q][:k]]
        p = sum(s) / k
        hits = [sum(s[: kk + 1]) / (kk + 1) for kk in range(k) if s[kk]]
        ap = sum(hits) / len(hits) if hits else 0.0
        p_sum[cats[q]] += p / n_cat[q]
        ap_sum[cats[q]] += ap / n_cat[q]
        imgs[cats[q]].add(images[q])
    mp = np.mean([p_sum[c] / len(imgs[c]) for c in imgs]) * 100
    mapk = np.mean([ap_sum[c] / len(imgs[c]) for c in imgs]) * 100
    return mp, mapk


def test_matches_plain_loops_on_random_data():
    rng = np.random.default_rng(0)
    n_db, k = 40, 7
    db = [frozenset(rng.choice(6, size=rng.integers(0, 3), replace=False).tolist()) for _ in range(n_db)]
    cats, images, n_cat, n_obj = [], [], [], []
    for img in range(15):
        objs = rng.integers(0, 6, size=rng.integers(1, 5)).tolist()
        for c in objs:
            cats.append(c)
            images.append(img)
            n_cat.append(objs.count(c))
            n_obj.append(len(objs))
    retrieved = np.stack([rng.permutation(n_db)[:10] for _ in cats])
    m = foir_metrics(cats, images, n_cat, n_obj, retrieved, db, k=k)
    mp, mapk = _reference(cats, images, n_cat, retrieved.tolist(), db, k)
    assert m.mp == pytest.approx(mp)
    assert m.map == pytest.approx(mapk)
    assert 0.0 < m.mp < 100.0
