"""Noisy box prompts (seed 000, Eqs. A9-A10)."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.noise import noise_magnitude, noisy_box, noisy_boxes


def test_magnitude_scales_with_image_size():
    assert noise_magnitude(640, 480) == 40
    assert noise_magnitude(480, 640) == 40
    assert noise_magnitude(320, 240) == 20
    assert noise_magnitude(160, 160) == 10
    assert noise_magnitude(500, 375, m_ref=40, ref_side=500) == 40
    assert noise_magnitude(128, 128, m_ref=0) == 0


def test_interior_boxes_follow_eqs_a9_a10_and_cover_the_range():
    # Big box far from the borders: no clipping, so the draws can be read back exactly.
    w, h, m = 400, 300, 5
    box = np.array([150.0, 100.0, 250.0, 200.0])
    out = noisy_boxes(np.repeat(box[None], 4000, axis=0), w, h, np.random.default_rng(1), m=m)
    c = (out[:, :2] + out[:, 2:] - box[:2] - box[2:]) / 2  # shift (c_x, c_y)
    grow = ((out[:, 2:] - out[:, :2]) - (box[2:] - box[:2])) / 2  # resize (l_x, l_y)
    for v in (c[:, 0], c[:, 1], grow[:, 0], grow[:, 1]):
        assert np.array_equal(v, np.round(v))  # integers
        assert set(v.astype(int).tolist()) == set(range(-m, m + 1))  # every value of [-m, m], no other
        assert abs(v.mean()) < 0.3
    assert np.abs(out - box).max() <= 2 * m
    assert np.abs(out - box).max() == 2 * m  # a corner does move by 2m when c and l agree


def test_bounds_positive_area_inside_image():
    rng = np.random.default_rng(2)
    w, h = 96, 64
    m = noise_magnitude(w, h)  # round(40 * 96 / 640) = 6
    assert m == 6
    x0 = rng.uniform(0, w - 1, 3000)
    y0 = rng.uniform(0, h - 1, 3000)
    boxes = np.stack([x0, y0, x0 + rng.uniform(0.5, w - x0), y0 + rng.uniform(0.5, h - y0)], axis=1)
    boxes = np.minimum(boxes, [w, h, w, h])
    out = noisy_boxes(boxes, w, h, rng, min_size=1.0)
    assert (out[:, [0, 2]] >= 0).all() and (out[:, [0, 2]] <= w).all()
    assert (out[:, [1, 3]] >= 0).all() and (out[:, [1, 3]] <= h).all()
    assert (out[:, 2] - out[:, 0] >= 1.0 - 1e-9).all() and (out[:, 3] - out[:, 1] >= 1.0 - 1e-9).all()
    assert np.abs(out - boxes).max() <= 2 * m + 1.0 + 1e-9
    # boxes that stayed non-degenerate moved at most 2m
    ok = ((out[:, 2] - out[:, 0]) > 1.0) & ((out[:, 3] - out[:, 1]) > 1.0)
    assert ok.mean() > 0.5
    assert np.abs(out[ok] - boxes[ok]).max() <= 2 * m + 1e-9


def test_degenerate_box_is_repaired_around_the_noisy_centre():
    # A 2 px box with m = 20: most draws shrink it past zero; the result is a min_size box.
    w = h = 200
    box = np.array([[99.0, 99.0, 101.0, 101.0]])
    out = noisy_boxes(np.repeat(box, 500, axis=0), w, h, 3, m=20, min_size=4.0)
    size = out[:, 2:] - out[:, :2]
    assert (size >= 4.0 - 1e-9).all()
    assert np.isclose(size, 4.0).any()
    centre = (out[:, :2] + out[:, 2:]) / 2
    assert np.abs(centre - 100.0).max() <= 20  # the repair keeps the shift (c), which is at most m


def test_box_pushed_off_the_image_stays_inside():
    out = noisy_boxes(np.array([[0.0, 0.0, 3.0, 3.0]] * 300), 50, 50, 4, m=10)
    assert (out >= 0).all() and (out <= 50).all()
    assert ((out[:, 2:] - out[:, :2]) >= 1.0 - 1e-9).all()


def test_deterministic_and_single_box():
    a = noisy_box((10, 10, 40, 30), 64, 64, 7)
    b = noisy_box((10, 10, 40, 30), 64, 64, 7)
    assert a.shape == (4,) and np.array_equal(a, b)
    assert np.array_equal(noisy_box((10, 10, 40, 30), 64, 64, 7, m=0), [10, 10, 40, 30])


def test_invalid_arguments():
    with pytest.raises(ValueError):
        noisy_boxes(np.zeros((2, 3)), 10, 10, 0)
    with pytest.raises(ValueError):
        noisy_boxes(np.zeros((1, 4)), 10, 10, 0, min_size=0)
    with pytest.raises(ValueError):
        noise_magnitude(0, 10)
