"""Prompt fuzzing: any point, box or mask either works (with a correct ROI) or raises PromptError."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.errors import PromptError
from core.method.engine import load_engine
from core.method.prompts import Box, Mask, Point, Prompt, prompt_to_roi
from core.search.service import QuerySpec, query_feature
from tests.conftest import TINY, perturb_, random_image


def _query(engine, prompt, method="phs", **kwargs):
    """The query service's feature for the engine's current photo."""
    return query_feature(engine, QuerySpec(prompt=prompt, method=method, **kwargs))


W, H = 90, 50
GRID = (5, 7)

coords = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-20, max_value=120),
    st.integers(min_value=-(10**12), max_value=10**12),
)


def _build(kind: str, vals: list, mask_arr: np.ndarray | None, positive: bool) -> Prompt:
    if kind == "point":
        return Prompt(points=(Point(vals[0], vals[1], positive=positive),))
    if kind == "box":
        return Prompt(box=Box(*vals[:4]))
    return Prompt(mask=Mask(mask_arr))


def _check_roi(prompt: Prompt) -> None:
    roi = prompt_to_roi(prompt, (W, H), GRID)
    pos = roi.positive
    assert pos.shape == GRID and np.all(np.isfinite(pos))
    assert np.all(pos >= 0) and np.all(pos <= 1) and pos.max() > 0
    if prompt.box is not None:
        b = prompt.box
        # Every selected cell overlaps the box (clipped to the image) with positive area.
        for r, c in zip(*np.nonzero(pos)):
            x0, x1 = c * W / GRID[1], (c + 1) * W / GRID[1]
            y0, y1 = r * H / GRID[0], (r + 1) * H / GRID[0]
            assert min(x1, b.x1, W) > max(x0, b.x0, 0) and min(y1, b.y1, H) > max(y0, b.y0, 0)
    for p in prompt.points:
        r, c = min(int(math.floor(p.y * GRID[0] / H)), GRID[0] - 1), min(int(math.floor(p.x * GRID[1] / W)), GRID[1] - 1)
        assert pos[r, c] == 1.0


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["point", "box", "mask"]),
    vals=st.lists(coords, min_size=4, max_size=4),
    mask_arr=st.one_of(
        arrays(bool, st.tuples(st.integers(0, 60), st.integers(0, 100))),
        arrays(np.float64, st.just((H, W)), elements=st.floats(allow_nan=True, allow_infinity=True)),
        arrays(bool, st.just((H, W))),
        arrays(np.uint8, st.just((H, W, 1))),
    ),
    positive=st.booleans(),
)
def test_any_prompt_maps_or_raises_prompt_error(kind, vals, mask_arr, positive):
    try:
        prompt = _build(kind, vals, mask_arr, positive)
        _check_roi(prompt)
    except PromptError:
        pass


@pytest.fixture(scope="module")
def engine():
    name, kw = TINY["dinov2"]
    e = load_engine(name, pretrained=False, model_kwargs=kw, device="cpu")
    perturb_(e.model)
    e.set_image(random_image(W, H, seed=1))
    return e


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    vals=st.lists(coords, min_size=4, max_size=4),
    h_on=st.integers(-3, 10),
    method=st.sampled_from(["phs", "fa", "fa+phs", "attn-mask", "crop", "mask", "crop+phs", "cbir"]),
    roi=st.sampled_from(["sum", "max"]),
)
def test_engine_never_crashes_on_any_box(engine, vals, h_on, method, roi):
    try:
        prompt = Prompt(box=Box(*vals))
        r = _query(engine, prompt, method=method, h_on=h_on, roi=roi)
    except PromptError:
        return
    assert r.feature.shape == (engine.feature_dim,) and np.all(np.isfinite(r.feature))
    if r.selection is not None:
        assert 1 <= r.selection.selected.sum() <= engine.num_heads
