"""Per-query settings are arguments of a query, never engine state: one engine serves queries and index reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.method.engine import load_engine
from core.method.markers import RedCircle
from core.method.prompts import Prompt
from core.search import MemoryGallery, QueryService, QuerySpec
from core.synthetic.scenes import generate_scene


@pytest.fixture(scope="module")
def demo():
    return load_engine("demo", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def photo():
    return generate_scene(11, 3, (160, 128)).image


def test_an_itae_argument_equals_the_engine_setting_and_leaves_it_alone(demo, photo):
    demo.set_image(photo)
    prompt = Prompt.from_box(20, 20, 90, 80)
    theta = float(np.percentile(demo.query_norms(), 60))
    plain = demo.feature()
    sel = demo.select_heads(prompt, 2, itae_theta=theta)
    by_arg = demo.feature(sel.head_mask, itae_theta=theta)
    maps_arg = demo.attention_maps(itae_theta=theta)
    assert demo.itae_theta is None
    np.testing.assert_array_equal(demo.feature(), plain)  # the engine's own setting answers as before
    demo.set_itae(theta)
    try:
        sel_state = demo.select_heads(prompt, 2)
        np.testing.assert_array_equal(sel.scores, sel_state.scores)
        np.testing.assert_array_equal(by_arg, demo.feature(sel_state.head_mask))
        np.testing.assert_array_equal(maps_arg, demo.attention_maps())
    finally:
        demo.set_itae(None)
    assert demo.artifact_map(itae_theta=theta).any() and not demo.artifact_map().any()


def test_a_marker_argument_equals_the_marked_photo_and_keeps_the_photo(demo, photo):
    demo.set_image(photo)
    prompt = Prompt.from_box(30, 10, 110, 90)
    red = RedCircle()
    plain, plain_maps = demo.feature(), demo.attention_maps()
    marked = demo.feature(prompt=prompt, marker=red)
    marked_maps = demo.attention_maps(prompt, marker=red)
    sel = demo.select_heads(prompt, 2, marker=red)
    np.testing.assert_array_equal(demo.feature(), plain)  # the current photo is still the unmarked one
    np.testing.assert_array_equal(demo.attention_maps(), plain_maps)
    assert not np.allclose(marked, plain)
    placement = demo.set_marked_image(prompt, red)  # the photo with the marker, made current on purpose
    assert placement == demo.placement(prompt, red)
    np.testing.assert_array_equal(demo.feature(), marked)
    np.testing.assert_array_equal(demo.attention_maps(), marked_maps)
    np.testing.assert_array_equal(demo.select_heads(prompt, 2).scores, sel.scores)
    demo.set_image(photo)


def test_queries_with_itae_leave_the_index_reads_of_the_same_engine_unchanged(demo, photo):
    batch = [generate_scene(11, i, (120, 96)).image for i in range(4)]
    before = demo.encode_batch(batch)
    gallery = MemoryGallery(before.features, before.x_cls, before.o_cls)
    theta = 1.0
    for method in ("phs", "fa+phs", "red-circle", "crop", "attn-mask"):
        out = QueryService(demo, gallery).run(QuerySpec(photo=photo, prompt=Prompt.from_box(10, 10, 80, 70),
                                                        method=method, itae_theta=theta, k=4, with_maps=True))
        assert len(out.hits) == 4 and out.maps is not None
        assert demo.itae_theta is None
    after = demo.encode_batch(batch)
    torch.testing.assert_close(torch.from_numpy(after.features), torch.from_numpy(before.features), rtol=0, atol=0)


def test_a_missing_learned_prompt_falls_back_where_the_spec_says_and_refuses_otherwise(photo):
    from core.errors import WeightsNotFoundError
    from tests.conftest import tiny_random_engine

    engine = tiny_random_engine("dinov2", seed=3)  # no learned prompt was ever trained for it
    service = QueryService(engine)
    prompt = Prompt.from_box(20, 20, 90, 80)
    out = service.run(QuerySpec(photo=photo, prompt=prompt, method="lvp+phs", h_on=2, fallback="phs"))
    assert out.fell_back and out.query.method == "phs"
    phs = service.run(QuerySpec(prompt=prompt, method="phs", h_on=2))
    np.testing.assert_array_equal(out.query.feature, phs.query.feature)
    assert not phs.fell_back
    # Without a prompt the whole photo answers, and the missing prompt is still reported.
    assert service.run(QuerySpec(method="lvp", fallback="phs")).fell_back
    with pytest.raises(WeightsNotFoundError, match="phs lvp train"):
        service.run(QuerySpec(prompt=prompt, method="lvp"))
    with pytest.raises(Exception, match="fallback"):
        QuerySpec(method="lvp", fallback="lvp+phs")
