"""Several objects in one query: the combination rules, exact per-object scores, the query service."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import PromptError
from core.method.engine import load_engine
from core.method.phs import l2_normalize
from core.method.prompts import Prompt
from core.search import MemoryGallery, QueryService, QuerySpec
from core.search.objects import (
    ObjectQuery,
    ObjectSpec,
    combine_scores,
    object_cosines,
    rank_objects,
    score_stats,
    soft_min,
)
from core.synthetic.scenes import generate_scene


@pytest.fixture(scope="module")
def demo():
    return load_engine("demo", device="cpu")


@pytest.fixture(scope="module")
def scenes():
    """Synthetic scenes with their objects' boxes and categories: 60 for the gallery, the 61st the query."""
    return [generate_scene(7, i, (128, 128)) for i in range(61)]


@pytest.fixture(scope="module")
def gallery(demo, scenes):
    enc = demo.encode_batch([Image.fromarray(s.image) for s in scenes[:60]])
    return MemoryGallery(l2_normalize(enc.features), enc.x_cls, enc.o_cls)


def _two_objects(scene):
    """The first two objects of different categories of a scene, as box prompts."""
    objs = scene.objects
    a = objs[0]
    b = next(o for o in objs[1:] if o.category_id != a.category_id)
    box = lambda o: Prompt.from_box(*[float(v) for v in o.bbox])  # noqa: E731
    return (box(a), a.category_id), (box(b), b.category_id)


def _query_scene(scenes):
    return next(s for s in scenes[60:] + scenes[:60] if len({o.category_id for o in s.objects}) >= 2)


# ------------------------------------------------------------------------------------------- rules


def test_soft_min_lies_between_the_minimum_and_the_mean():
    s = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    soft = soft_min(s, 0.1)
    assert np.all(soft >= s.min(axis=1) - 1e-12) and np.all(soft <= s.mean(axis=1) + 1e-12)
    np.testing.assert_allclose(soft[1], 0.5)
    np.testing.assert_allclose(soft_min(s, 0.0), s.min(axis=1))
    np.testing.assert_allclose(soft_min(s, 1e4), s.mean(axis=1), atol=1e-4)


def test_and_asks_for_every_object_or_for_any_and_an_excluded_object_lowers():
    # photo 0 holds both objects moderately, photo 1 only the first strongly, photo 2 only the second.
    s = np.array([[0.6, 0.6], [0.95, 0.1], [0.1, 0.9]])
    both = combine_scores(s, [False, False], "and", temperature=0.05)
    assert int(np.argmax(both)) == 0
    anyof = combine_scores(s, [False, False], "or", temperature=0.05)
    assert int(np.argmin(anyof)) == 0 and anyof[1] > anyof[0] and anyof[2] > anyof[0]
    without = combine_scores(s, [False, True], "and", exclude_weight=0.5)
    assert without[1] > without[0] > without[2]  # the photos that hold the excluded object drop


def test_z_scores_keep_one_object_from_deciding_or_alone():
    # Object 0's cosines run high everywhere, object 1's low; photo 1 is far above object 1's usual.
    sample = np.column_stack([np.linspace(0.7, 0.9, 50), np.linspace(0.0, 0.2, 50)])
    stats = score_stats(sample)
    s = np.array([[0.85, 0.1], [0.8, 0.6]])
    raw = combine_scores(s, [False, False], "or", temperature=0)
    z = combine_scores(s, [False, False], "or", stats=stats, temperature=0)
    assert raw[0] > raw[1] and z[1] > z[0]


def test_non_finite_scores_and_bad_shapes():
    s = np.array([[0.5, np.nan], [0.4, 0.3]])
    out = combine_scores(s, [False, False])
    assert np.isnan(out[0]) and np.isfinite(out[1])
    with pytest.raises(PromptError, match="wanted"):
        combine_scores(s, [True, True])
    with pytest.raises(PromptError, match=r"\(n, 3\)"):
        combine_scores(s, [False, False, True])
    with pytest.raises(PromptError, match="'and' or 'or'"):
        QuerySpec(objects=(ObjectSpec(Prompt.from_box(1, 1, 9, 9)),), combine="xor")
    with pytest.raises(PromptError, match="wanted"):
        QuerySpec(objects=(ObjectSpec(Prompt.from_box(1, 1, 9, 9), excluded=True),))
    with pytest.raises(PromptError, match="not both"):
        QuerySpec(prompt=Prompt.from_box(1, 1, 9, 9), objects=(ObjectSpec(Prompt.from_box(1, 1, 9, 9)),))
    with pytest.raises(PromptError, match="Unknown method"):
        QuerySpec(objects=(ObjectSpec(Prompt.from_box(1, 1, 9, 9), method="nope"),))


# ------------------------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("mode", ["qo", "qd"])
def test_every_candidate_is_scored_exactly_for_every_object(demo, gallery, scenes, mode):
    (pa, _), (pb, _) = _two_objects(_query_scene(scenes))
    demo.set_image(_query_scene(scenes).image)
    qs = []
    for p, ex in ((pa, False), (pb, True)):
        sel = demo.select_heads(p, 2)
        qs.append(ObjectQuery(demo.feature(sel.head_mask), sel.head_mask, ex))
    ids = np.arange(gallery.size)
    per = object_cosines(demo, gallery, qs, ids, mode=mode)
    for j, q in enumerate(qs):
        db = gallery.features if mode == "qo" else l2_normalize(
            demo.features_from_cache(gallery.x_cls, gallery.o_cls, q.head_mask))
        np.testing.assert_allclose(per[:, j], db @ l2_normalize(q.feature), atol=1e-5)
    # Candidates: the union of the wanted objects' neighbours; with few of them, the top still agrees with
    # scoring the whole gallery wherever the whole-gallery winners were among the candidates.
    full = rank_objects(demo, gallery, qs, k=5, mode=mode, candidates=None)
    part = rank_objects(demo, gallery, qs, k=5, mode=mode, candidates=30)
    assert part.n_candidates == 30 and full.n_candidates == gallery.size
    np.testing.assert_allclose(full.object_scores, per[full.ids], atol=1e-6)
    in_part = [i for i in full.ids if i in set(part.ids)]
    assert in_part and list(part.ids[: len(in_part)]) == in_part[: len(part.ids)]


def test_one_object_is_the_one_prompt_search_bit_for_bit(demo, gallery, scenes):
    scene = _query_scene(scenes)
    (pa, _), _ = _two_objects(scene)
    service = QueryService(demo, gallery)
    for mode in ("qo", "qd"):
        one = service.run(QuerySpec(photo=scene.image, prompt=pa, k=10, mode=mode, candidates=20))
        obj = service.run(QuerySpec(photo=scene.image, objects=(ObjectSpec(pa),), k=10, mode=mode, candidates=20))
        assert [i for _, i in obj.hits] == [i for _, i in one.hits]
        assert [s for s, _ in obj.hits] == [s for s, _ in one.hits]
        np.testing.assert_array_equal(obj.object_scores[:, 0], np.array([s for s, _ in one.hits], np.float32))
        np.testing.assert_array_equal(obj.query.feature, one.query.feature)


def test_two_objects_each_get_their_own_heads_and_scores(demo, gallery, scenes):
    scene = _query_scene(scenes)
    (pa, _), (pb, _) = _two_objects(scene)
    service = QueryService(demo, gallery)
    out = service.run(QuerySpec(photo=scene.image, objects=(ObjectSpec(pa), ObjectSpec(pb, h_on=3)), k=8))
    assert len(out.objects) == 2 and out.object_scores.shape == (len(out.hits), 2) == (8, 2)
    assert int(out.objects[0].selection.selected.sum()) == demo.recommended_h_on
    assert int(out.objects[1].selection.selected.sum()) == 3
    for o, p in zip(out.objects, (pa, pb)):
        one = service.run(QuerySpec(prompt=p, h_on=o.selection.h_on, k=1))
        np.testing.assert_array_equal(one.query.selection.selected, o.selection.selected)
    scores = [s for s, _ in out.hits]
    assert scores == sorted(scores, reverse=True)
    ids = np.array([i for _, i in out.hits])
    for j, o in enumerate(out.objects):
        np.testing.assert_allclose(out.object_scores[:, j], gallery.features[ids] @ l2_normalize(o.feature), atol=1e-5)


def test_an_excluded_object_lowers_a_photo_that_holds_it(demo, gallery, scenes):
    scene = _query_scene(scenes)
    (pa, ca), (pb, cb) = _two_objects(scene)
    service = QueryService(demo, gallery)
    n = gallery.size
    want = service.run(QuerySpec(photo=scene.image, objects=(ObjectSpec(pa), ObjectSpec(pb)), combine="or", k=n,
                                 candidates=None))
    both = service.run(QuerySpec(photo=scene.image, objects=(ObjectSpec(pa), ObjectSpec(pb, excluded=True)),
                                 k=n, candidates=None))
    rank_with = {i: r for r, (_, i) in enumerate(want.hits)}
    rank_without = {i: r for r, (_, i) in enumerate(both.hits)}
    # the photo that looks most like the excluded object is lower when it is excluded
    top_b = int(np.argmax(want.object_scores[:, 1]))
    photo = want.hits[top_b][1]
    assert rank_without[photo] > rank_with[photo]
    holds_b = [i for i in range(n) if cb in {o.category_id for o in scenes[i].objects}]
    assert np.mean([rank_without[i] for i in holds_b]) > np.mean([rank_with[i] for i in holds_b])


def test_an_object_on_another_photo_and_the_query_photo_stays_current(demo, gallery, scenes):
    scene, other = _query_scene(scenes), scenes[3]
    (pa, _), _ = _two_objects(scene)
    (po, _), _ = _two_objects(other) if len({o.category_id for o in other.objects}) > 1 else ((
        Prompt.from_box(*[float(v) for v in other.objects[0].bbox]), 0), None)
    service = QueryService(demo, gallery)
    service.set_photo(scene.image)
    before = demo.feature()
    out = service.run(QuerySpec(objects=(ObjectSpec(pa), ObjectSpec(po, photo=other.image)), k=5))
    np.testing.assert_array_equal(demo.feature(), before)  # the query photo is current again
    alone = service.run(QuerySpec(photo=other.image, prompt=po, k=1))
    np.testing.assert_array_equal(out.objects[1].feature, alone.query.feature)


def test_a_mark_edit_searches_again_only_for_the_object_that_changed(demo, gallery, scenes):
    class Counting:
        """The gallery, counting nearest-neighbour searches."""

        def __init__(self, inner):
            self.inner, self.searches = inner, 0
            self.size = inner.size

        def nearest(self, q, k):
            self.searches += 1
            return self.inner.nearest(q, k)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    scene = _query_scene(scenes)
    (pa, _), (pb, _) = _two_objects(scene)
    counting = Counting(gallery)
    service = QueryService(demo, counting)
    service.set_photo(scene.image)
    first = service.run(QuerySpec(objects=(ObjectSpec(pa), ObjectSpec(pb)), k=5, object_candidates=10))
    assert counting.searches == 2
    again = service.run(QuerySpec(objects=(ObjectSpec(pa), ObjectSpec(pb)), k=5, object_candidates=10))
    assert counting.searches == 2 and again.hits == first.hits
    # a mark moved far enough to select other heads (the same heads give the same feature, and no search)
    moved = next(p for p in (Prompt.from_box(x, y, x + 30, y + 30) for x in range(0, 98, 14) for y in range(0, 98, 14))
                 if not np.array_equal(demo.select_heads(p, 2).selected, first.objects[0].selection.selected))
    out = service.run(QuerySpec(objects=(ObjectSpec(moved), ObjectSpec(pb)), k=5, object_candidates=10))
    assert counting.searches == 3  # only the moved object searched again
    np.testing.assert_array_equal(out.objects[1].feature, first.objects[1].feature)
