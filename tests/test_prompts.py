"""ROI mapping of points, boxes and masks on non-square images, against hand-computed token sets."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import PromptError
from core.method.phs import head_mask, roi_attention, select_heads
from core.method.prompts import Box, Mask, Point, Prompt, Roi, prompt_pixel_mask, prompt_to_roi

# A 300 x 120 photo on a 4 x 5 grid: patches are 60 px wide and 30 px tall.
SIZE, GRID = (300, 120), (4, 5)


def cells(roi: Roi) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(roi.positive))}


def test_point_maps_to_the_patch_under_it():
    assert cells(prompt_to_roi(Prompt.from_point(0, 0), SIZE, GRID)) == {(0, 0)}
    assert cells(prompt_to_roi(Prompt.from_point(59.9, 29.9), SIZE, GRID)) == {(0, 0)}
    assert cells(prompt_to_roi(Prompt.from_point(60, 30), SIZE, GRID)) == {(1, 1)}
    assert cells(prompt_to_roi(Prompt.from_point(299, 119), SIZE, GRID)) == {(3, 4)}
    assert cells(prompt_to_roi(Prompt.from_point(300, 120), SIZE, GRID)) == {(3, 4)}  # the far edge
    assert cells(prompt_to_roi(Prompt.from_point(170, 65), SIZE, GRID)) == {(2, 2)}


def test_box_selects_every_overlapped_patch():
    # x 50..130 touches columns 0,1,2 (60-px columns); y 25..31 touches rows 0 and 1.
    assert cells(prompt_to_roi(Prompt.from_box(50, 25, 130, 31), SIZE, GRID)) == {
        (r, c) for r in (0, 1) for c in (0, 1, 2)
    }
    # Ending exactly on a patch boundary does not spill into the next patch.
    assert cells(prompt_to_roi(Prompt.from_box(60, 30, 120, 60), SIZE, GRID)) == {(1, 1)}
    # Partly outside: clipped.
    assert cells(prompt_to_roi(Prompt.from_box(250, 100, 400, 200), SIZE, GRID)) == {(3, 4)}
    # Inverted corners are the same box.
    a = prompt_to_roi(Prompt.from_box(130, 31, 50, 25), SIZE, GRID)
    assert cells(a) == {(r, c) for r in (0, 1) for c in (0, 1, 2)}


def test_mask_weights_by_covered_fraction_and_threshold():
    m = np.zeros((120, 300), bool)
    m[0:30, 0:60] = True  # all of patch (0, 0)
    m[30:45, 60:120] = True  # half of patch (1, 1)
    m[90:120, 240:255] = True  # a quarter of patch (3, 4)
    roi = prompt_to_roi(Prompt(mask=Mask(m)), SIZE, GRID)
    want = np.zeros(GRID, np.float32)
    want[0, 0], want[1, 1], want[3, 4] = 1.0, 0.5, 0.25
    np.testing.assert_allclose(roi.positive, want, atol=1e-6)
    thr = prompt_to_roi(Prompt(mask=Mask(m)), SIZE, GRID, mask_threshold=0.5)
    assert cells(thr) == {(0, 0), (1, 1)}


def test_mask_on_grid_that_does_not_divide_the_image():
    # 100 x 70 on a 3 x 3 grid: patch boundaries at x = 33.3, 66.7 and y = 23.3, 46.7.
    m = np.zeros((70, 100), bool)
    m[:, :50] = True
    roi = prompt_to_roi(Prompt(mask=Mask(m)), (100, 70), (3, 3))
    np.testing.assert_allclose(roi.positive[:, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(roi.positive[:, 1], (50 - 100 / 3) / (100 / 3), atol=1e-4)
    np.testing.assert_allclose(roi.positive[:, 2], 0.0, atol=1e-6)


def test_negative_points_and_union():
    p = Prompt(points=(Point(10, 10), Point(100, 10), Point(70, 40, positive=False)), box=Box(0, 60, 60, 90))
    roi = prompt_to_roi(p, SIZE, GRID)
    assert cells(roi) == {(0, 0), (0, 1), (2, 0)}
    assert {(int(r), int(c)) for r, c in zip(*np.nonzero(roi.negative))} == {(1, 1)}


@pytest.mark.parametrize(
    "make",
    [
        lambda: Prompt.from_box(10, 10, 10, 50),  # zero width
        lambda: Prompt.from_box(0, 5, 20, 5),  # zero height
        lambda: Prompt(mask=Mask(np.zeros((120, 300), bool))),  # empty mask
        lambda: Prompt.from_point(float("nan"), 3),
        lambda: Prompt.from_box(0, 0, float("inf"), 3),
        lambda: Prompt(points=(Point(3, 3, positive=False),)),  # nothing positive
        lambda: Prompt(),
        lambda: Mask(np.ones((2, 2, 2), bool)),
    ],
)
def test_invalid_prompts_raise_prompt_error(make):
    with pytest.raises(PromptError):
        make()


@pytest.mark.parametrize(
    "prompt",
    [
        Prompt.from_box(400, 0, 500, 50),  # entirely right of the image
        Prompt.from_box(-50, -50, -1, -1),  # entirely above-left
        Prompt.from_point(-1, 5),
        Prompt.from_point(5, 121),
        Prompt(mask=Mask(np.ones((10, 10), bool))),  # another size
    ],
)
def test_prompts_outside_the_image_raise(prompt):
    with pytest.raises(PromptError):
        prompt_to_roi(prompt, SIZE, GRID)


def test_pixel_mask_for_the_mask_baseline():
    pm = prompt_pixel_mask(Prompt.from_box(10.5, 20, 30, 40.2), SIZE, GRID)
    assert pm.shape == (120, 300)
    ys, xs = np.nonzero(pm)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 29, 20, 40)
    pt = prompt_pixel_mask(Prompt.from_point(70, 40), SIZE, GRID)
    ys, xs = np.nonzero(pt)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (60, 119, 30, 59)


def test_phs_math_on_hand_made_attention():
    attn = np.zeros((4, 2, 2))
    attn[0, 0, 0] = 0.5
    attn[1, 0, 0], attn[1, 1, 1] = 0.3, 0.6
    attn[2] = 0.2
    attn[3, 1, 1] = 0.9
    roi = Roi(np.array([[1, 0], [0, 0]], np.float32))
    np.testing.assert_allclose(roi_attention(attn, roi, "sum"), [0.5, 0.3, 0.2, 0.0])
    whole = Roi(np.ones((2, 2), np.float32))
    np.testing.assert_allclose(roi_attention(attn, whole, "max"), [0.5, 0.6, 0.2, 0.9])
    np.testing.assert_allclose(roi_attention(attn, whole, "sum"), [0.5, 0.9, 0.8, 0.9])
    sel = select_heads(roi_attention(attn, roi), h_on=2)
    assert sel.tolist() == [True, True, False, False]
    np.testing.assert_allclose(head_mask(sel, "before+scale"), [2, 2, 0, 0])
    np.testing.assert_allclose(head_mask(sel, "after"), [1, 1, 0, 0])
    # Ties go to the lower index.
    assert select_heads(np.array([0.1, 0.5, 0.5, 0.5]), 2).tolist() == [False, True, True, False]
    with pytest.raises(PromptError):
        select_heads(np.zeros(4), 0)
    with pytest.raises(PromptError):
        select_heads(np.zeros(4), 5)
