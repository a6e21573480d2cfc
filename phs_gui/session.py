"""The search session behind the window: the query service over one engine and the folders searched.

Qt-free and free of tensor math: it only calls :mod:`core`; every search is a
:class:`core.search.service.QuerySpec` answered by :class:`core.search.service.QueryService`, the same path
as ``phs search`` and ``phs eval``. Encoding a photo and answering a spec run in worker threads, one at a
time (the service is not thread-safe).

ITAE and the index: the library index is built with ITAE off (its fingerprint records the threshold). The
session therefore keeps a second :class:`core.method.engine.PHSEngine` over the same model weights for indexing
and for opening indexes, and applies ITAE to the query photo only, so the toggle answers at once instead of
asking for a re-index.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.defaults import DEFAULT_H_ON, FA_ALPHA, FA_BLOCKS, FA_SIGMA, MARKER_METHODS, query_method

if TYPE_CHECKING:  # the engine and the service import torch: they load with the model, after the window shows
    from core.library.filters import PhotoFilter
    from core.method.engine import FAParams, PHSEngine
    from core.method.prompts import Prompt
    from core.search import Outcome, QuerySpec, Searcher

__all__ = ["METHOD_LABELS", "SearchOptions", "SearchSession"]

METHOD_LABELS: dict[str, str] = {
    "phs": "PHS",
    "lvp": "Learned prompt",
    "red-circle": "Red circle",
    "lvp+phs": "Learned prompt + PHS",
}
"""The query methods the app offers, by :class:`core.search.service.QuerySpec` method name (FA is a check box:
with PHS it makes ``fa+phs``)."""



@dataclass(frozen=True)
class SearchOptions:
    """The knobs of one search, as the controls dock shows them.

    Attributes:
        method: ``phs``, ``lvp``, ``red-circle`` or ``lvp+phs`` (:data:`METHOD_LABELS`).
        h_on: heads kept.
        mode: ``qo`` (Query-Only) or ``qd`` (Query-DB).
        roi: ``sum`` or ``max``.
        fa_on, fa_blocks, fa_alpha, fa_sigma: FALIP foveal attention.
        itae_on, itae_theta: ITAE on the query photo.
        top_k: results wanted.
        after, before, under, types: the filter, as typed (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; a subfolder
            of every folder searched; comma-separated suffixes); ``""`` leaves nothing out
            (:meth:`core.library.filters.PhotoFilter.from_text`).
    """

    method: str = "phs"
    h_on: int = DEFAULT_H_ON
    mode: str = "qo"
    roi: str = "sum"
    fa_on: bool = False
    fa_blocks: int = FA_BLOCKS
    fa_alpha: float = FA_ALPHA
    fa_sigma: float = FA_SIGMA
    itae_on: bool = False
    itae_theta: float = 0.0
    top_k: int = 24
    after: str = ""
    before: str = ""
    under: str = ""
    types: str = ""

    def photo_filter(self) -> PhotoFilter | None:
        """The filter the search runs under, or ``None`` when nothing is left out.

        Raises:
            PHSError: a date or subfolder that is not one (one sentence).
        """
        from core.library.filters import PhotoFilter

        f = PhotoFilter.from_text(self.after, self.before, self.under, self.types)
        return f if f.active else None

    def fa(self) -> FAParams | None:
        """The FA parameters, or ``None`` when FA is off or a marker method runs."""
        from core.method.engine import FAParams

        if self.method in MARKER_METHODS:
            return None
        return FAParams(self.fa_alpha, self.fa_sigma, self.fa_blocks) if self.fa_on else None


def _subfolders(root: Path, depth: int) -> list[str]:
    """``root``'s subfolders down to ``depth`` levels, relative, POSIX separators (hidden ones left out)."""
    import os

    out: list[str] = []
    level = [("", str(root))]
    for _ in range(depth):
        nxt = []
        for rel, path in level:
            try:
                with os.scandir(path) as it:
                    dirs = [e for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
            except OSError:
                continue
            for e in dirs:
                sub = f"{rel}/{e.name}" if rel else e.name
                out.append(sub)
                nxt.append((sub, e.path))
        level = nxt
    return out


class SearchSession:
    """An engine plus the open photo indexes of the folders searched.

    Args:
        engine: the loaded engine (its ITAE setting is driven by :class:`SearchOptions`).
    """

    def __init__(self, engine: PHSEngine) -> None:
        from core.method.engine import PHSEngine
        from core.search import QueryService

        self.engine = engine
        self.index_engine = PHSEngine(
            engine.backbone, device=engine.device, precision=engine.precision, fa_blocks=engine.fa_blocks
        )
        self.service = QueryService(engine)
        self.searchers: dict[str, Searcher] = {}  # the folders searched (those open), in the library's order
        self._filter: PhotoFilter | None = None  # the filter set on the gallery
        self._subfolders: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # (roots, their subfolders)
        # The service is not thread-safe: the window's engine lane and the GUI thread (opening a folder)
        # take turns through this lock.
        self.lock = threading.RLock()

    # ------------------------------------------------------------------------------------------ folders
    @property
    def folders(self) -> list[Path]:
        """The folders searched now (those with an open index), in the library's order."""
        return [s.folder for s in self.searchers.values()]

    @property
    def folder(self) -> Path | None:
        """The folder searched, when exactly one is (else ``None``)."""
        return next(iter(self.searchers.values())).folder if len(self.searchers) == 1 else None

    @property
    def searcher(self) -> Searcher | None:
        """The open index, when exactly one folder is searched (else ``None``)."""
        return next(iter(self.searchers.values())) if len(self.searchers) == 1 else None

    def search_folders(self, folders: list[str], reopen: str = "") -> dict[str, Exception]:
        """Search ``folders`` from now on, as one gallery (reads SQLite and loads FAISS: call it from a worker).

        Folders already open stay open (a :class:`core.search.searcher.Searcher` follows what an indexing run
        commits), except ``reopen``, which is opened again; folders not listed are closed. One folder is
        searched through its searcher, several through a :class:`core.search.multi.MultiGallery`, the same
        gallery ``phs search --all`` ranks.

        Returns:
            The folders left out, each with why (:class:`IndexMissingError`, :class:`IndexMismatchError` or
            another :class:`PHSError`, one sentence each); the others are searched.
        """
        from core.errors import PHSError
        from core.search import Searcher

        problems: dict[str, Exception] = {}
        with self.lock:
            wanted = list(dict.fromkeys(str(f) for f in folders))
            for f in [f for f in self.searchers if f not in wanted or f == reopen]:
                self.searchers.pop(f).close()
            opened: dict[str, Searcher] = {}
            for f in wanted:
                s = self.searchers.get(f)
                if s is None:
                    try:
                        s = Searcher(f, self.index_engine)
                    except PHSError as err:
                        problems[f] = err
                        continue
                opened[f] = s
            self.searchers = opened
            self._use_gallery()
        return problems

    def _use_gallery(self) -> None:
        """Point the query service at the open searchers; the filter is set on them again on the next search."""
        from core.search.multi import MultiGallery

        members = list(self.searchers.values())
        self.service.gallery = None if not members else members[0] if len(members) == 1 else MultiGallery(members)
        self._filter, self._subfolders = None, None

    def open_folder(self, folder: str | Path) -> int:
        """Search ``folder`` alone from now on; returns the number of indexed photos.

        Raises:
            IndexMissingError, IndexMismatchError: the folder has no usable index for this model.
        """
        with self.lock:
            problems = self.search_folders([str(folder)], reopen=str(folder))
            if problems:
                raise next(iter(problems.values()))
            return self.indexed_count

    def close_folder(self, folder: str | Path | None = None) -> None:
        """Stop searching ``folder`` (``None``: every folder)."""
        from core.library.store import folder_key

        with self.lock:
            for f in list(self.searchers):
                if folder is None or folder_key(f) == folder_key(folder):
                    self.searchers.pop(f).close()
            self._use_gallery()

    def apply_filter(self, options: SearchOptions) -> int | None:
        """Search among the photos that pass ``options``' filter from now on, in every folder searched (reads the
        index databases: call it from a worker); returns how many pass, or ``None`` when no filter is set.

        Raises:
            PHSError: a date or subfolder that is not one (one sentence).
        """
        wanted = options.photo_filter()
        with self.lock:
            gallery = self.service.gallery
            if gallery is None:
                return None
            if wanted != self._filter:
                gallery.set_filter(wanted)
                self._filter = wanted
            return None if wanted is None else int(gallery.size)

    def subfolders(self, depth: int = 2) -> list[str]:
        """The subfolders of the folders searched, down to ``depth`` levels: relative, POSIX separators, each
        name once (the filter's "under" applies to every folder searched, as ``phs search --all --under``
        does), sorted, hidden ones left out (lists directories: call it from a worker)."""
        roots = tuple(self.searchers)
        if self._subfolders is not None and self._subfolders[0] == roots:
            return list(self._subfolders[1])
        found: set[str] = set()
        for root in roots:
            found.update(_subfolders(Path(root), depth))
        out = sorted(found, key=str.lower)
        self._subfolders = (roots, tuple(out))
        return out

    @property
    def indexed_count(self) -> int:
        """Photos indexed in the folders searched, whatever the filter lets through (0 without a folder); which
        photos pass is read from the index databases, in the engine lane only (:meth:`apply_filter`)."""
        return sum(int(s.index.vectors().ntotal) for s in list(self.searchers.values()))

    @property
    def last_encode_ms(self) -> float | None:
        """Milliseconds the last photo took to encode."""
        return self.service.last_encode_ms

    # ------------------------------------------------------------------------------------------- query
    def encode(self, photo: object) -> None:
        """Encode the query photo (heavy: call it from a worker) and warm the caches prompts need.

        Args:
            photo: the photo's path (decoded exactly as the library decodes it), bytes, or a PIL image.
        """
        with self.lock:
            self.service.set_photo(photo)  # type: ignore[arg-type]
            self.engine.attention_maps()

    def where_map(self, path: str, selected: np.ndarray | None) -> np.ndarray:
        """Where the query's kept heads look in another photo (heavy: call it from a worker).

        The photo is encoded beside the query (the query photo's cache stays), decoded as the library
        decodes it.

        Args:
            path: the result photo.
            selected: ``(h,)`` bool, the query's kept heads; ``None`` averages every head.

        Returns:
            ``(gh, gw)`` the mean last-block [CLS] attention of those heads over the photo.
        """
        from core.method.transforms import read_for_model

        img, _ = read_for_model(path, self.engine.input_size)  # JPEG draft, as the indexer decodes it
        with self.lock:
            _, maps = self.engine.encode_with_maps(img)
        heads = maps if selected is None or not np.any(selected) else maps[np.asarray(selected, bool)]
        return heads.mean(axis=0)

    def has_learned_prompt(self) -> bool:
        """Whether a learned prompt exists for the model (loaded once and kept; see :meth:`forget_learned_prompt`)."""
        from core.errors import WeightsNotFoundError
        from core.search.service import marker_for

        with self.lock:
            try:
                marker_for(self.engine, "lvp")
            except WeightsNotFoundError:
                return False
            return True

    def marker_shape(self, method: str) -> str:
        """How the marker of ``method`` looks on the photo: ``ellipse`` (red circle), ``circle`` or ``square``."""
        from core.search.service import marker_for

        if method == "red-circle":
            return "ellipse"
        with self.lock:
            return str(marker_for(self.engine, "lvp").shape)

    def forget_learned_prompt(self) -> None:
        """Look for the model's learned prompt again on the next search (after one was trained)."""
        from core.search.service import forget_learned_prompt

        with self.lock:
            forget_learned_prompt(self.engine)

    def query_norms(self) -> np.ndarray:
        """``(gh * gw,)`` last-block query-vector norms of the query photo (the ITAE histogram)."""
        return self.engine.query_norms()

    def spec(
        self,
        prompt: Prompt | None,
        options: SearchOptions,
        force_on: tuple[int, ...] = (),
        force_off: tuple[int, ...] = (),
    ) -> QuerySpec:
        """The query spec of what the window shows: prompt, controls and heads toggled by hand.

        The method is the controls' choice; PHS with FA on is ``fa+phs`` (FA does not combine with a marker).
        """
        from core.method.engine import FAParams
        from core.search import QuerySpec

        fa = options.fa()
        method = query_method(options.method if options.method in METHOD_LABELS else "phs", fa is not None)
        return QuerySpec(
            prompt=prompt,
            method=method,
            h_on=options.h_on,
            roi=options.roi,
            fa=fa or FAParams(),
            itae_theta=options.itae_theta if options.itae_on else None,
            force_on=force_on,
            force_off=force_off,
            mode=options.mode,
            k=options.top_k,
            with_maps=True,
            fallback="phs",  # no learned prompt yet: PHS answers, and the window offers to train one
        )

    def run(
        self,
        prompt: Prompt | None,
        options: SearchOptions,
        force_on: tuple[int, ...] = (),
        force_off: tuple[int, ...] = (),
    ) -> Outcome:
        """Heads, maps and results for a prompt (no backbone run; FA re-runs the last blocks only).

        Args:
            prompt: the marked object, or ``None`` for a plain [CLS] search of the whole photo.
            options: the search knobs.
            force_on, force_off: heads toggled by hand.

        Raises:
            NotReadyError: no photo is encoded yet.
            PHSError: a prompt or head choice the engine refuses (one sentence).
        """
        with self.lock:
            self.apply_filter(options)
            return self.service.run(self.spec(prompt, options, force_on, force_off))

    def warnings(self) -> tuple[str, ...]:
        """Sentences about the last search's indexes (the newest changes could not be read, Query-DB cache rows
        that failed their checksums and were left out), as the command line prints them."""
        with self.lock:
            gallery = self.service.gallery
            return tuple(getattr(gallery, "warnings", ())) if gallery is not None else ()

    def close(self) -> None:
        """Close the index and drop the engines' caches."""
        with self.lock:
            self.close_folder()
            self.engine.close()
            self.index_engine.close()
