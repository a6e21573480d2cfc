"""Worker bodies: the functions the window's workers run off the GUI thread, and what they hand back.

Each takes its inputs by value plus ``report`` and ``cancel`` (the :class:`phs_gui.workers.Worker` contract)
and returns a plain value the GUI thread only has to draw. Nothing here touches a widget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtGui import QImage

from core.imageio import load_image
from core.library import IndexReport, index_folder
from core.synthetic.gallery import write_demo_gallery
from phs_gui.heads import TILE_PX, render_maps
from phs_gui.render import dimmed_grey, shrink, to_qimage
from phs_gui.results import ResultRow, group_hits
from phs_gui.session import SearchOptions, SearchSession

if TYPE_CHECKING:  # torch loads in the worker that loads the model, so the window shows first
    from core.method.engine import PHSEngine
    from core.search import Outcome

EngineLoader = Callable[[str, str], "PHSEngine"]


def default_engine_loader(name: str, device: str) -> PHSEngine:
    """Load a registry model on a device (weights from resources or the Hugging Face cache, never random)."""
    from core.method.engine import load_engine

    return load_engine(name, device=device)


@dataclass(frozen=True, eq=False)
class EncodedPhoto:
    """What the encode worker hands the window: everything display-sized, prepared off the GUI thread.

    Attributes:
        path: the photo file.
        size: ``(W, H)`` of the photo (EXIF orientation applied), the prompt coordinate frame.
        display: the photo for the canvas, longer side at most :data:`DISPLAY_MAX_SIDE`.
        small: ``(h, w, 3)`` uint8 copy for the heads panel.
        norms: ``(gh * gw,)`` query norms for the ITAE histogram.
        encode_ms: time the engine took.
        backdrops: ``(tile, big)`` dimmed grey copies the head maps are drawn over.
    """

    path: str
    size: tuple[int, int]
    display: QImage
    small: np.ndarray
    norms: np.ndarray
    encode_ms: float
    backdrops: tuple[np.ndarray, np.ndarray] | None = None


DISPLAY_MAX_SIDE = 2560


def load_and_encode(session: SearchSession, path: str, *, report: object, cancel: object) -> EncodedPhoto:
    """Worker body: decode the photo once, encode it, and prepare what the window shows."""
    img = load_image(path)
    session.encode(path)  # decoded from the file exactly as the library decodes it
    disp = img.copy()
    disp.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    small = img.copy()
    small.thumbnail((224, 224))
    rgb = np.asarray(small)
    backdrops = (dimmed_grey(shrink(rgb, TILE_PX)), dimmed_grey(shrink(rgb, 224)))
    return EncodedPhoto(path, img.size, to_qimage(np.asarray(disp)), rgb, session.query_norms(),
                        session.last_encode_ms or 0.0, backdrops)


@dataclass(frozen=True, eq=False)
class QueryAnswer:
    """What the query worker hands the window: the outcome and its maps already coloured.

    Attributes:
        gen: the request's number (an answer older than the one drawn is dropped).
        outcome: heads, maps and hits from the query service.
        force_on, force_off: heads forced by hand in the request.
        tiles: one coloured map per head; combined: the kept heads' map.
        ms: milliseconds from the request to the answer, in the worker.
        rows: the results grouped for the grid.
        marker: how the marker looks on the photo (``ellipse``, ``circle``, ``square``) when a marker method
            ran, else ``None``; where it sits is ``outcome.query.placement``.
        missing_prompt: a learned prompt was asked for but none exists for the model (PHS ran instead).
        idle_forced: ``(on, off)`` heads forced by hand that are not in effect (nothing is marked).
        passing: photos that pass the search's filter, ``None`` when no filter is set.
        subfolders: the open folder's subfolders (relative, POSIX separators), for the filter bar.
        warnings: sentences about the searched indexes (see :meth:`SearchSession.warnings`).
    """

    gen: int
    outcome: Outcome
    force_on: tuple[int, ...]
    force_off: tuple[int, ...]
    tiles: list
    combined: QImage | None
    ms: float
    rows: list[ResultRow] = field(default_factory=list)
    marker: str | None = None
    missing_prompt: bool = False
    idle_forced: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    passing: int | None = None
    subfolders: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def query_job(session: SearchSession, gen: int, prompt: object, options: SearchOptions,
               force_on: tuple[int, ...], force_off: tuple[int, ...], backdrops: tuple | None,
               query_path: str | None = None, *, report: object, cancel: object) -> QueryAnswer | None:
    """Worker body: heads, maps and results for one request, maps coloured for the heads panel."""
    if cancel.is_set():  # type: ignore[attr-defined]
        return None
    t0 = time.perf_counter()
    out = session.run(prompt, options, force_on, force_off)  # type: ignore[arg-type]
    passing, subfolders = session.apply_filter(options), tuple(session.subfolders())  # type: ignore[arg-type]
    missing = out.fell_back  # no learned prompt to paste yet: PHS answered, the window offers to train one
    marker = session.marker_shape(out.query.method) if out.query.placement is not None else None
    tiles, big = ([], None) if backdrops is None else render_maps(backdrops[0], backdrops[1], out.maps,
                                                                 out.combined_map())
    rows = group_hits(list(out.hits), query_path)
    return QueryAnswer(gen, out, force_on, force_off, tiles, big, (time.perf_counter() - t0) * 1000, rows,
                       marker, missing, passing=passing, subfolders=subfolders, warnings=session.warnings())


def train_job(name: str, device: str, source: str, settings: dict, *, report: Callable,
               cancel: object) -> object:
    """Worker body: train a learned prompt for the model ``name`` on a photo folder or generated scenes
    (``source == "synthetic"``), as ``phs lvp train`` does, and write it where the app looks for it.

    A model of its own in fp32 (the one the window searches with stays free); progress is reported as
    ``("scenes", done, total)`` while scenes are generated, then one :class:`TrainProgress` per step; a
    cancel stops after the current step (a checkpoint keeps the progress; training again resumes).
    """
    from core.method import lvp
    from core.method.engine import load_engine
    from core.method.lvp_train import TrainCancelled, TrainConfig, engine_resample, train_prompt
    from core.synthetic.training_images import training_pools

    cfg = TrainConfig(**settings)
    cfg.check()
    engine = load_engine(name, device=device, precision="fp32")
    try:
        s, resample = engine.input_size, engine_resample(engine)

        def scenes(done: int, total: int) -> None:
            if cancel.is_set():  # type: ignore[attr-defined]
                raise TrainCancelled("Training stopped before the first step.")
            report(("scenes", done, total))

        pool, eval_pool, label = training_pools(source, cfg, s, resample,
                                                progress=scenes if source == "synthetic" else None)
        return train_prompt(engine, pool, cfg, lvp.prompt_path(engine),
                            progress=lambda p: report(p, force=p.step == p.steps),
                            cancel=cancel.is_set, eval_pool=eval_pool, images_label=label)  # type: ignore[attr-defined]
    finally:
        engine.close()


def where_job(session: SearchSession, path: str, selected: np.ndarray | None, *, report: object,
               cancel: object) -> tuple[str, np.ndarray | None]:
    """Worker body: the query's kept heads over a result photo (``None`` when cancelled)."""
    if cancel.is_set():  # type: ignore[attr-defined]
        return path, None
    return path, session.where_map(path, selected)


def preview_job(path: str, *, report: object, cancel: object) -> tuple[str, np.ndarray]:
    """Worker body: a result photo decoded display-sized for the preview."""
    img = load_image(path)
    img.thumbnail((1600, 1600))
    return path, np.asarray(img)


INDEX_WRITER = threading.Lock()
"""One indexing run at a time in the window: the Library panel's run waits here for a background run that keeps
the folders current (which is asked to stop when the panel's run starts and ends after its current photo)
instead of finding the index's file lock taken."""


def index_job(folder: str, engine: PHSEngine, *, report: Callable, cancel: object) -> IndexReport:
    """Worker body: index a folder incrementally, reporting progress after every photo."""
    with INDEX_WRITER:
        return index_folder(folder, engine, batch_size=8, workers=2, progress=report, cancel=cancel)  # type: ignore[arg-type]


def demo_job(n: int, *, report: Callable, cancel: object) -> Path:
    """Worker body: write the demo gallery (a few seconds; not cancellable)."""
    try:
        return write_demo_gallery(n, progress=lambda d, t: report((d, t)))
    except OSError as err:  # a read-only or full data folder: say where and what to do
        from core.errors import PHSError
        from core.synthetic.gallery import demo_gallery_dir

        reason = (err.strerror or str(err)).lower()
        raise PHSError(f"The demo gallery cannot be written in {demo_gallery_dir()} ({reason}): set PHS_DATA_DIR "
                       "to a folder you can write to, or add a photo folder of your own under Library.") from None


def index_summary(n: int, report: IndexReport) -> str:
    """One line that adds up: the photos searchable now and what this run did with every photo it saw."""
    parts = [f"{report.indexed} new"]
    if report.reused:
        parts.append(f"{report.reused} identical to one already indexed")
    parts.append(f"{report.skipped} unchanged")
    parts.append(f"{report.failed} failed")
    if report.removed:
        parts.append(f"{report.removed} gone from the folder")
    return (f"{n} photos searchable; of {report.seen} photos in the folder: {', '.join(parts)} "
            f"({report.seconds:.1f} s).")




@dataclass(frozen=True)
class OpenedFolder:
    """What opening the library's indexes hands back.

    Attributes:
        folder: the current folder (the one indexed, whose failures are listed), ``""`` for none.
        count: photos indexed in the current folder.
        failures: the current folder's failed files (``(path, reason)`` rows as the library panel lists them).
        missing: the current folder has no index for this model yet.
        error: one sentence when the current folder's index could not be opened, else ``""``.
        searched: the folders searched now (their indexes open), in the library's order.
        left_out: the folders to search that are not, each with one sentence saying why.
        searched_count: photos searchable in all the folders searched.
    """

    folder: str
    count: int
    failures: list = field(default_factory=list)
    missing: bool = False
    error: str = ""
    searched: tuple[str, ...] = ()
    left_out: dict[str, str] = field(default_factory=dict)
    searched_count: int = 0


def left_out_sentence(folder: str, err: Exception) -> str:
    """Why a folder to search is not searched, in one sentence that names it."""
    from core.library import IndexMissingError

    name = Path(folder).name or folder
    if not Path(folder).is_dir():
        return f"{name} is not searched: the folder is not there now (moved, deleted or on an unplugged drive)."
    if isinstance(err, IndexMissingError):
        return f"{name} is not searched: it has no index for this model; choose it and press Index, or uncheck it."
    return f"{name} is not searched: {str(err).rstrip('.')}."


def open_library_job(session: SearchSession, current: str, searched: list[str], reopen: str = "", *,
                     report: object, cancel: object) -> OpenedFolder:
    """Worker body: search the folders ``searched`` (opening their indexes reads SQLite and loads FAISS: never on
    the GUI thread), ``reopen`` opened again; read the ``current`` folder's failures (from its index, opened for
    that alone when it is not searched). A folder whose index cannot be opened is left out with a sentence."""
    from core.errors import PHSError
    from core.library import IndexMissingError
    from core.library.photo_index import PhotoIndex

    gone = [f for f in searched if not Path(f).is_dir()]  # unplugged: left out, as `phs search --all` does
    problems = session.search_folders([f for f in searched if f not in gone], reopen=reopen)
    problems.update({f: FileNotFoundError(f) for f in gone})
    open_now = tuple(f for f in searched if f not in problems)
    left_out = {f: left_out_sentence(f, err) for f, err in problems.items()}
    failures: list = []
    count, missing, error = 0, False, ""
    if current:
        try:
            s = session.searchers.get(current)
            if s is not None:
                failures, count = s.index.failures(), int(s.index.vectors().ntotal)
            else:
                index = PhotoIndex.open(current, session.index_engine, writable=False)
                try:
                    failures, count = index.failures(), int(index.db.counts().get("done", 0))
                finally:
                    index.close()
        except IndexMissingError:
            missing = True
        except PHSError as err:
            error = str(err)
    return OpenedFolder(current, count, list(failures), missing, error, open_now, left_out, session.indexed_count)


def remove_index_job(session: SearchSession, folder: str, *, report: object, cancel: object) -> int:
    """Worker body: delete ``folder``'s index for the session's model from disk (closing it first when it is
    the one searched); returns the bytes freed, 0 for a folder that was never indexed with this model."""
    from core.library import store as st
    from core.library.catalog import remove_folder

    model = st.model_label(st.normalize_fingerprint(session.index_engine.fingerprint()))
    if not st.list_indexes(folder):
        return 0
    session.close_folder(folder)  # when it is searched
    # A background run of it, asked to stop when it left the list, ends after its current photo: wait for it
    # (a run of another folder in the Library panel may hold the writer turn for long: then go on without it).
    writer = INDEX_WRITER.acquire(timeout=REMOVE_WAIT_S)
    try:
        return sum(e.bytes_on_disk for e in remove_folder(folder, model))
    finally:
        if writer:
            INDEX_WRITER.release()


REMOVE_WAIT_S = 2.0
"""Longest wait of Remove for the window's indexing run to give up its turn (seconds)."""


def indexed_folders(session: SearchSession | None) -> list[str]:
    """Every folder indexed with the session's model, whoever indexed it (the app or ``phs index``): read from
    the index descriptions only, so it is cheap enough for the GUI thread."""
    if session is None:
        return []
    from core.library import store as st

    model = st.model_label(st.normalize_fingerprint(session.index_engine.fingerprint()))
    return [str(side.get("folder")) for _, side in st.list_indexes()
            if side.get("folder") and st.model_label(side.get("fingerprint", {})) == model]  # fmt: skip

