"""Several objects in one query, as immutable values the prompt history keeps.

The object the canvas edits now is the :class:`phs_gui.prompt_state.PromptState` itself; the others ride on it
in ``PromptState.objects`` (an :class:`ObjectSet`), so every change (an object started, removed, wanted or
excluded, pinned, all/any) is one state in the same undo history as a mark. ``objects is None`` is a query of
one object: the window then searches exactly as with one mark.

The functions here take the state shown now and the photo shown, and return the next state (or ``None`` when
the action changes nothing). Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from phs_gui.prompt_state import PromptState, state_from_dict, state_to_dict

PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 214, 0), (0, 200, 255), (255, 90, 200), (255, 140, 0), (140, 230, 60), (150, 130, 255))
"""RGB of each object, by its colour number; the first is the colour of a single mark."""

MAX_OBJECTS = len(PALETTE)


@dataclass(frozen=True, eq=False)
class QueryObject:
    """One object of the query.

    Attributes:
        state: its mark (and heads forced by hand), in pixels of ``photo``; its ``objects`` is ``None``.
        photo: the photo it is marked on.
        excluded: photos that hold it are lowered (NOT) instead of wanted.
        pinned: it stays in the query when another photo is opened.
        colour: index into :data:`PALETTE`.
    """

    state: PromptState
    photo: str
    excluded: bool = False
    pinned: bool = False
    colour: int = 0

    def same_as(self, other: QueryObject) -> bool:
        """Same photo, flags, colour and mark."""
        return (self.photo, self.excluded, self.pinned, self.colour) == (
            other.photo, other.excluded, other.pinned, other.colour) and self.state.same_as(other.state)


@dataclass(frozen=True, eq=False)
class ObjectSet:
    """The objects other than the one edited now, and how the edited one sits among them.

    Attributes:
        others: the other objects, in list order.
        active: the edited object's place in the whole list (``0 <= active <= len(others)``).
        excluded, pinned, colour: the edited object's flags and colour.
        combine: ``and`` (photos that hold every wanted object) or ``or`` (any of them).
    """

    others: tuple[QueryObject, ...] = ()
    active: int = 0
    excluded: bool = False
    pinned: bool = False
    colour: int = 0
    combine: str = "and"

    def same_as(self, other: object) -> bool:
        """Value equality (marks compared by content)."""
        if not isinstance(other, ObjectSet) or len(other.others) != len(self.others):
            return False
        if (self.active, self.excluded, self.pinned, self.colour, self.combine) != (
                other.active, other.excluded, other.pinned, other.colour, other.combine):
            return False
        return all(a.same_as(b) for a, b in zip(self.others, other.others))


def entries(st: PromptState, photo: str) -> tuple[list[QueryObject], int, str]:
    """The whole list of objects (the edited one included, on ``photo``), its place, and the combination."""
    s = st.objects if isinstance(st.objects, ObjectSet) else ObjectSet()
    me = QueryObject(replace(st, objects=None), photo, s.excluded, s.pinned, s.colour)
    items = list(s.others)
    items.insert(s.active, me)
    return items, s.active, s.combine


def compose(items: list[QueryObject], active: int, combine: str) -> PromptState:
    """The state that edits ``items[active]`` with the others riding on it (``objects`` is ``None`` for one
    plain object: the one-mark search)."""
    me = items[active]
    others = tuple(o for i, o in enumerate(items) if i != active)
    if not others and not me.excluded and not me.pinned:
        return me.state
    return replace(me.state, objects=ObjectSet(others, active, me.excluded, me.pinned, me.colour, combine))


def new_object(st: PromptState, photo: str) -> PromptState | None:
    """Start the next object on the photo shown (``None`` while the edited one has no mark, or the list is full)."""
    items, _, combine = entries(st, photo)
    if not st.has_positive or len(items) >= MAX_OBJECTS:
        return None
    used = {o.colour for o in items}
    colour = next(c for c in range(len(PALETTE)) if c not in used)
    items.append(QueryObject(PromptState(st.image_size), photo, colour=colour))
    return compose(items, len(items) - 1, combine)


def select(st: PromptState, photo: str, k: int) -> PromptState | None:
    """Edit object ``k`` from now on (``None``: it is the edited one, or it lies on another photo)."""
    items, active, combine = entries(st, photo)
    if k == active or not 0 <= k < len(items) or items[k].photo != photo:
        return None
    return compose(items, k, combine)


def remove(st: PromptState, photo: str, k: int) -> PromptState | None:
    """Remove object ``k``; removing the edited one edits the last other object on this photo (or a new one)."""
    items, active, combine = entries(st, photo)
    if not 0 <= k < len(items) or len(items) == 1:
        return None
    del items[k]
    if k != active:
        return compose(items, active - (k < active), combine)
    here = [i for i, o in enumerate(items) if o.photo == photo]
    if here:
        return compose(items, here[-1], combine)
    used = {o.colour for o in items}
    items.append(QueryObject(PromptState(st.image_size), photo, colour=min(set(range(len(PALETTE))) - used)))
    return compose(items, len(items) - 1, combine)


def toggled(st: PromptState, photo: str, k: int, flag: str) -> PromptState | None:
    """Object ``k`` with ``flag`` (``excluded`` or ``pinned``) switched."""
    items, active, combine = entries(st, photo)
    if not 0 <= k < len(items):
        return None
    items[k] = replace(items[k], **{flag: not getattr(items[k], flag)})
    return compose(items, active, combine)


def forced_of(st: PromptState, photo: str, k: int, on: set[int], off: set[int]) -> PromptState | None:
    """Object ``k`` with these heads forced on and off by hand."""
    items, active, combine = entries(st, photo)
    if not 0 <= k < len(items):
        return None
    items[k] = replace(items[k], state=items[k].state.with_forced(on, off))
    return compose(items, active, combine)


def with_combine(st: PromptState, photo: str, combine: str) -> PromptState | None:
    """All wanted objects (``and``) or any (``or``)."""
    items, active, old = entries(st, photo)
    return None if combine == old else compose(items, active, combine)


def carried(st: PromptState | None, photo: str | None, size: tuple[int, int], new_photo: str) -> PromptState | None:
    """The state of a newly opened photo: the pinned objects stay and a new object starts on it (``None``:
    nothing is pinned, the photo starts empty)."""
    if st is None or photo is None:
        return None
    items, _, combine = entries(st, photo)
    kept = [o for o in items if o.pinned and o.state.has_positive]
    if not kept:
        return None
    used = {o.colour for o in kept}
    colour = min(set(range(len(PALETTE))) - used) if len(used) < len(PALETTE) else 0
    kept.append(QueryObject(PromptState(size), new_photo, colour=colour))
    return compose(kept, len(kept) - 1, combine)


def objects_to_dict(st: PromptState, photo: str) -> dict:
    """The objects riding on ``st`` as JSON (``{}`` for one plain object), for the next launch."""
    if not isinstance(st.objects, ObjectSet):
        return {}
    items, active, combine = entries(st, photo)
    return {"objects": [{"photo": o.photo, "excluded": o.excluded, "pinned": o.pinned, "colour": o.colour,
                         **state_to_dict(o.state)} for o in items], "active": active, "combine": combine}


def objects_from_dict(d: dict, edited: PromptState, photo: str, num_heads: int) -> PromptState:
    """``edited`` (the restored mark on ``photo``) with the objects :func:`objects_to_dict` wrote; objects that no
    longer fit (a damaged entry, another photo size) are left out."""
    try:
        raw, active, combine = list(d["objects"]), int(d["active"]), str(d.get("combine", "and"))
        if combine not in ("and", "or") or not 0 <= active < len(raw):
            return edited
        items: list[QueryObject] = []
        for i, o in enumerate(raw):
            size = edited.image_size if i == active else tuple(o["size"])
            sub = edited if i == active else state_from_dict(o, size, num_heads)
            if sub is None:
                return edited
            items.append(QueryObject(replace(sub, objects=None), photo if i == active else str(o["photo"]),
                                     bool(o["excluded"]), bool(o["pinned"]), int(o["colour"]) % len(PALETTE)))
    except (KeyError, TypeError, ValueError):
        return edited
    return compose(items, active, combine)
