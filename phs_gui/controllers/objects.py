"""The objects of the query: start the next one, choose the one edited, want or exclude one, pin one to keep
it while another photo is opened, all or any. Every action is an edit of the query controller's prompt state
(:mod:`phs_gui.objects_state`), so undo, redo and the next launch cover it like a mark.

An object pinned from another photo keeps its query feature: it is computed once (its photo decoded and
encoded once) and handed to the service as it is on every later search, for the same mark and search options.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from phs_gui.controllers.query import QueryController
from phs_gui.jobs import QueryAnswer
from phs_gui.object_jobs import ObjectsRequest, objects_job
from phs_gui.objects_state import (
    QueryObject,
    entries,
    forced_of,
    new_object,
    remove,
    select,
    toggled,
    with_combine,
)
from phs_gui.prompt_state import PromptState, state_to_dict
from phs_gui.workers import Worker

FEATURES_KEPT = 32


@dataclass(frozen=True)
class ObjectsView:
    """What the Objects list shows.

    Attributes:
        items: every object, in order.
        edited: the object the canvas edits.
        shown: the object whose heads the heads panel shows.
        combine: ``and`` or ``or``.
        photo: the photo shown.
    """

    items: tuple[QueryObject, ...]
    edited: int
    shown: int
    combine: str
    photo: str


class ObjectsController(QObject):
    """Acts on the objects of :class:`QueryController`'s state and builds its searches of several objects.

    Signals:
        changed(ObjectsView): the objects to show (after any edit, undo, redo or another photo).
        message(str, str, object, str): as the other controllers'.
    """

    changed = Signal(object)
    message = Signal(str, str, object, str)

    def __init__(self, query: QueryController, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.query = query
        self.shown: int | None = None  # an object of another photo whose heads are shown (None: the edited one)
        self.features: OrderedDict[str, object] = OrderedDict()  # content key -> QueryFeature
        self._asked: dict[int, list[str]] = {}
        self.view: ObjectsView | None = None
        query.request_objects = self.request

    # ------------------------------------------------------------------------------------------ actions
    def _edit(self, fn: Callable[..., PromptState | None], *args: object) -> bool:
        st, photo = self.query.state, self.query.photo_path
        if st is None or photo is None:
            return False
        new = fn(st, photo, *args)
        if new is None:
            return False
        self.shown = None
        self.query.apply(new)
        return True

    def new_object(self) -> None:
        """Start the next object on the photo shown (the key N)."""
        if not self._edit(new_object):
            self.message.emit("Mark the current object first (click, box or brush); then start the next one.",
                              "info", None, "")

    def select(self, k: int) -> None:
        """Object ``k`` chosen in the list: edit it if it is on this photo, else show its heads."""
        if self.view is None or not 0 <= k < len(self.view.items):
            return
        if self.view.items[k].photo == self.view.photo:
            self._edit(select, k)
            return
        self.shown = k
        self.refresh()
        self.query.rescore()

    def remove(self, k: int) -> None:
        """Remove object ``k`` from the query."""
        self._edit(remove, k)

    def toggle_excluded(self, k: int) -> None:
        """Object ``k`` wanted or excluded."""
        self._edit(toggled, k, "excluded")

    def toggle_pinned(self, k: int) -> None:
        """Keep object ``k`` (or not) when another photo is opened."""
        self._edit(toggled, k, "pinned")

    def pin_edited(self) -> None:
        """"Pin this object": the edited object stays when another photo is opened."""
        if self.view is not None:
            self.toggle_pinned(self.view.edited)

    def toggle_head(self, i: int) -> None:
        """A click on head ``i`` in the heads panel: forced for the object whose heads are shown."""
        v, out = self.view, self.query.outcome
        if v is None or v.shown == v.edited or out is None or out.selection is None:
            self.query.toggle_head(i)
            return
        st = v.items[v.shown].state
        on, off = set(st.force_on), set(st.force_off)
        if i in on or i in off:
            on.discard(i)
            off.discard(i)
        else:
            (off if bool(out.selection.selected[i]) else on).add(i)
        shown = self.shown
        if self._edit(forced_of, v.shown, on, off):
            self.shown = shown  # still the pinned object's heads
            self.refresh()
            self.query.rescore()

    def set_combine(self, combine: str) -> None:
        """All wanted objects (``and``) or any (``or``)."""
        self._edit(with_combine, combine)

    def refresh(self, *_: object) -> None:
        """Say what the list shows now."""
        st, photo = self.query.state, self.query.photo_path
        if st is None or photo is None:
            return
        items, edited, combine = entries(st, photo)
        shown = self.shown if self.shown is not None and self.shown < len(items) else edited
        self.view = ObjectsView(tuple(items), edited, shown, combine, photo)
        self.changed.emit(self.view)

    # ------------------------------------------------------------------------------------------ search
    def _key(self, o: QueryObject) -> str:
        return json.dumps([o.photo, state_to_dict(o.state), repr(self.query.prefs.search)])

    def request(self, st: PromptState, gen: int) -> Worker:
        """The worker of a search of every marked object of ``st`` (objects of other photos by their kept
        feature when there is one)."""
        from core.search.objects import ObjectSpec

        photo = self.query.photo_path or ""
        items, edited, combine = entries(st, photo)
        shown = self.shown if self.shown is not None and self.shown < len(items) else edited
        specs, colours, keys, heads_of = [], [], [], 0
        for i, o in enumerate(items):
            prompt = o.state.to_prompt()
            if prompt is None:
                continue
            key = self._key(o)
            feature = self.features.get(key) if o.photo != photo else None
            heads_of = len(specs) if i == shown else heads_of
            specs.append(ObjectSpec(prompt, None if o.photo == photo else o.photo, o.excluded,
                                    force_on=tuple(sorted(o.state.force_on)),
                                    force_off=tuple(sorted(o.state.force_off)), feature=feature))
            colours.append(o.colour)
            keys.append(key)
        self._asked = {gen: keys}
        req = ObjectsRequest(tuple(specs), tuple(colours), heads_of, combine)
        return Worker(objects_job, self.query.session, gen, req, self.query.prefs.search, self.query.backdrops,
                      photo, doing="searching")

    def keep_features(self, ans: QueryAnswer) -> None:
        """Keep each object's feature from an answer, so that an object of another photo is not encoded again."""
        keys = self._asked.get(ans.gen)
        objs = ans.outcome.objects
        if keys is None or len(keys) != len(objs):
            return
        for key, feature in zip(keys, objs):
            self.features[key] = feature
            self.features.move_to_end(key)
        while len(self.features) > FEATURES_KEPT:
            self.features.popitem(last=False)

    def forget_features(self, *_: object) -> None:
        """Another model: the kept features belong to the old one."""
        self.features.clear()
