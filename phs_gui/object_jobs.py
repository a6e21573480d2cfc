"""The worker body of a query of several objects: each object's heads and score, the combined results, the
heads of the object chosen in the list drawn for the heads panel. Nothing here touches a widget."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from phs_gui.heads import render_maps
from phs_gui.jobs import QueryAnswer
from phs_gui.result_rows import group_hits
from phs_gui.session import SearchOptions, SearchSession

if TYPE_CHECKING:  # torch loads in the worker that loads the model, so the window shows first
    from core.search.objects import ObjectSpec


@dataclass(frozen=True)
class ObjectsRequest:
    """One search of several objects.

    Attributes:
        specs: the objects with a mark, in the order of the answer's per-object scores.
        colours: each spec's colour number (:data:`phs_gui.objects_state.PALETTE`).
        heads_of: the spec whose heads the panel shows.
        combine: ``and`` or ``or``.
    """

    specs: tuple[ObjectSpec, ...]
    colours: tuple[int, ...]
    heads_of: int
    combine: str


def objects_job(session: SearchSession, gen: int, req: ObjectsRequest, options: SearchOptions,
                backdrops: tuple | None, query_path: str | None, *, report: object,
                cancel: object) -> QueryAnswer | None:
    """Worker body: run the objects through the query service; the answer's ``outcome.query`` is the shown
    object's (its heads and kept-heads map), its rows carry every object's score. The heads panel's maps are
    always of the photo shown (for an object of another photo: where its heads look on this one)."""
    from core.search.service import attention_maps

    if cancel.is_set():  # type: ignore[attr-defined]
        return None
    t0 = time.perf_counter()
    spec = replace(session.spec(None, options), objects=req.specs, combine=req.combine)
    with session.lock:
        passing = session.apply_filter(options)
        out = session.service.run(spec)
        j = req.heads_of if 0 <= req.heads_of < len(out.objects) else 0
        here = next((i for i, o in enumerate(req.specs) if o.photo is None), None)
        if out.maps is None and here is not None and backdrops is not None:  # the first object is on another photo
            one = replace(spec, objects=(), prompt=req.specs[here].prompt)
            out = replace(out, maps=attention_maps(session.engine, one, out.objects[here]))
    view = replace(out, query=out.objects[j]) if out.objects else out
    tiles, big = [], None
    if backdrops is not None and view.maps is not None:
        tiles, big = render_maps(backdrops[0], backdrops[1], view.maps, view.combined_map())
    rows = group_hits(list(out.hits), query_path)
    per = {} if out.object_scores is None else {
        str(h.path): tuple(float(v) for v in s) for h, s in zip(out.hits, out.object_scores)}
    excluded = tuple(o.excluded for o in req.specs)
    rows = [replace(r, objects=tuple(zip(per[r.path], req.colours, excluded))) if r.path in per else r
            for r in rows]
    shown = req.specs[j] if req.specs else None
    on = () if shown is None else shown.force_on
    off = () if shown is None else shown.force_off
    return QueryAnswer(gen, view, on, off, tiles, big, (time.perf_counter() - t0) * 1000, rows, passing=passing,
                       subfolders=tuple(session.subfolders()))
