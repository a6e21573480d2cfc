"""The objects of a query as values of the prompt history: one object is a plain mark, every action is one
state, the next launch gets them back."""

from __future__ import annotations

import numpy as np

from phs_gui.objects_state import (
    MAX_OBJECTS,
    ObjectSet,
    carried,
    entries,
    new_object,
    objects_from_dict,
    objects_to_dict,
    remove,
    select,
    toggled,
    with_combine,
)
from phs_gui.prompt_state import History, PromptState, state_from_dict, state_to_dict

A, B = "/photos/a.jpg", "/photos/b.jpg"


def boxed(box=(10, 10, 50, 40), size=(100, 80)) -> PromptState:
    return PromptState(size).with_box(box)


def test_one_object_is_a_plain_mark_and_the_next_needs_a_mark_first():
    assert new_object(PromptState((100, 80)), A) is None
    two = new_object(boxed(), A)
    assert isinstance(two.objects, ObjectSet) and two.is_empty
    items, active, combine = entries(two, A)
    assert len(items) == 2 and active == 1 and combine == "and" and items[0].state.box == (10, 10, 50, 40)
    assert [o.colour for o in items] == [0, 1]
    one = remove(two, A, 1)
    assert one.objects is None and one.box == (10, 10, 50, 40)  # back to the one-mark state


def test_choosing_excluding_and_all_or_any_are_states_of_one_history():
    s1 = boxed()
    s2 = new_object(s1, A).with_box((60, 20, 90, 70))
    h = History(s1)
    s3 = toggled(s2, A, 1, "excluded")
    s4 = with_combine(s3, A, "or")
    s5 = select(s4, A, 0)
    for s in (s2, s3, s4, s5):
        assert h.push(s)
    assert not h.push(select(s5, A, 0) or s5)  # the same state again records nothing
    assert s5.box == (10, 10, 50, 40) and s5.objects.active == 0 and s5.objects.combine == "or"
    assert entries(s5, A)[0][1].excluded
    assert h.undo() is s4 and h.undo() is s3 and entries(h.undo(), A)[0][1].excluded is False


def test_pinned_objects_go_with_the_next_photo_others_stay_behind():
    s = new_object(boxed(), A).with_box((60, 20, 90, 70))
    assert carried(s, A, (64, 48), B) is None
    pinned = toggled(s, A, 0, "pinned")
    nxt = carried(pinned, A, (64, 48), B)
    items, active, _ = entries(nxt, B)
    assert [o.photo for o in items] == [A, B] and active == 1 and nxt.image_size == (64, 48)
    assert items[0].pinned and items[0].state.box == (10, 10, 50, 40) and items[1].colour != items[0].colour


def test_the_objects_survive_a_relaunch_and_damaged_entries_are_left_out():
    mask = np.zeros((80, 100), bool)
    mask[5:20, 5:30] = True
    s = new_object(boxed().with_forced({1}, set()), A).with_mask(mask)
    s = toggled(carried(toggled(s, A, 0, "pinned"), A, (100, 80), B) or s, B, 0, "excluded")
    d = {"photo": B, **state_to_dict(s), **objects_to_dict(s, B)}
    back = objects_from_dict(d, state_from_dict(d, (100, 80), 8), B, 8)
    assert back.same_as(s)
    assert entries(back, B)[0][0].state.force_on == frozenset({1})
    del d["objects"][0]["photo"]  # a damaged entry: the objects are left out, the mark stays
    plain = state_from_dict(d, (100, 80), 8)
    assert objects_from_dict(d, plain, B, 8) is plain


def test_at_most_as_many_objects_as_colours():
    s = boxed()
    for _ in range(MAX_OBJECTS - 1):
        s = new_object(s, A).with_box((1, 1, 9, 9))
    assert len(entries(s, A)[0]) == MAX_OBJECTS and new_object(s, A) is None
