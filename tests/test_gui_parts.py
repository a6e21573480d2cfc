"""Qt-free parts of the desktop app: canvas geometry, prompt states and undo history, preferences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phs_gui.geometry import Handle, clamp_box, drag_box, fit_scale, hit_box, stamp_segment
from phs_gui.prompt_state import History, PromptState
from phs_gui.session import SearchOptions
from phs_gui.settings import Preferences, load_preferences, save_preferences


def test_hit_box_finds_corners_edges_and_inside():
    box = (10.0, 20.0, 110.0, 220.0)
    assert hit_box(box, 11, 21, 4) is Handle.TOP_LEFT
    assert hit_box(box, 110, 120, 4) is Handle.RIGHT
    assert hit_box(box, 60, 219, 4) is Handle.BOTTOM
    assert hit_box(box, 50, 100, 4) is Handle.INSIDE
    assert hit_box(box, 300, 300, 4) is None
    assert hit_box(None, 1, 1, 4) is None


def test_drag_box_moves_one_edge_or_all_and_sorts_corners():
    box = (10.0, 20.0, 110.0, 220.0)
    assert drag_box(box, Handle.RIGHT, 5, 99) == (10, 20, 115, 220)
    assert drag_box(box, Handle.INSIDE, 5, -5) == (15, 15, 115, 215)
    # Dragging the left edge past the right one flips the box instead of making it negative.
    assert drag_box(box, Handle.LEFT, 150, 0) == (110, 20, 160, 220)


def test_clamp_box_clips_and_refuses_outside():
    assert clamp_box((-10, -10, 50, 50), 40, 30) == (0, 0, 40, 30)
    assert clamp_box((50, 50, 60, 60), 40, 30) is None


def test_stamp_segment_paints_a_capsule_and_erases():
    m = np.zeros((50, 80), bool)
    region = stamp_segment(m, (10, 25), (70, 25), 5, True)
    assert region is not None
    assert m[25, 10:70].all() and not m[25, 0:4].any() and not m[10, 40]
    assert m.sum() == pytest.approx(60 * 10 + np.pi * 25, rel=0.1)
    stamp_segment(m, (40, 25), (40, 25), 3, False)
    assert not m[25, 39] and m[25, 30]
    assert stamp_segment(m, (500, 500), (600, 600), 3, True) is None


def test_fit_scale_shows_the_whole_photo():
    s = fit_scale(1000, 500, 416, 416, margin=8)
    assert 1000 * s <= 400 + 1e-6 and 500 * s <= 400


def test_prompt_state_to_prompt_keeps_image_pixels():
    st = PromptState((200, 100)).with_box((150, 80, 10, 5)).with_point(20, 30).with_point(5, 5, positive=False)
    p = st.to_prompt()
    assert p is not None and p.box.xyxy == (10, 5, 150, 80)
    assert [(q.x, q.y, q.positive) for q in p.points] == [(20, 30, True), (5, 5, False)]
    assert PromptState((200, 100)).with_point(5, 5, positive=False).to_prompt() is None
    mask = np.zeros((100, 200), bool)
    mask[10:20, 30:40] = True
    pm = PromptState((200, 100)).with_mask(mask).to_prompt()
    assert pm is not None and pm.mask.mask.sum() == 100
    with pytest.raises(ValueError):
        PromptState((200, 100)).with_mask(np.ones((5, 5), bool))


def test_history_undo_redo_and_branching():
    s0 = PromptState((10, 10))
    s1 = s0.with_point(1, 1)
    s2 = s1.with_box((2, 2, 8, 8))
    h = History(s0)
    assert h.push(s1) and h.push(s2)
    assert not h.push(s2.with_box((2, 2, 8, 8)))  # no change, no step
    assert h.undo() is s1 and h.undo() is s0 and h.undo() is None
    assert h.redo() is s1
    s3 = s1.with_point(3, 3)
    h.push(s3)
    assert not h.can_redo and h.current is s3


def test_preferences_round_trip_and_bad_values_fall_back(tmp_path):
    p = Preferences(model="demo", search=SearchOptions(h_on=3, mode="qd", fa_on=True))
    p.add_recent("/a.jpg")
    p.add_recent("/b.jpg")
    p.add_recent("/a.jpg")
    path = tmp_path / "settings.json"
    save_preferences(p, path)
    q = load_preferences(path)
    assert (q.model, q.search.h_on, q.search.mode, q.search.fa_on, q.recent_files) == ("demo", 3, "qd", True, ["/a.jpg", "/b.jpg"])
    path.write_text(json.dumps({"mode": "sideways", "h_on": "many", "top_k": -4, "fa_sigma": 0}), "utf-8")
    r = load_preferences(path)
    assert (r.search.mode, r.search.h_on, r.search.top_k, r.search.fa_sigma) == ("qo", 5, 1, 100.0)
    path.write_text("{not json", "utf-8")
    assert load_preferences(path) == Preferences()
