"""The search session behind the window: one engine, one open index, prompt -> heads -> results.

Qt-free and free of tensor math: it only calls :mod:`core`. The window keeps one :class:`SearchSession`
and calls :meth:`SearchSession.run` on the GUI thread for every prompt edit (microseconds to milliseconds:
the photo was encoded once by a worker); loading the model and encoding the photo run in workers.

ITAE and the index: the library index is built with ITAE off (its fingerprint records the threshold). The
session therefore keeps a second :class:`core.method.engine.PHSEngine` over the same model weights for indexing and
for the database side of search, and applies ITAE to the query photo only, so the toggle answers at once
instead of asking for a re-index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import NotReadyError
from core.method.engine import FAParams, PHSEngine
from core.method.phs import HeadSelection
from core.method.prompts import Prompt
from core.search import Searcher, SearchHit


@dataclass(frozen=True)
class SearchOptions:
    """The knobs of one search, as the controls dock shows them.

    Attributes:
        h_on: heads kept.
        mode: ``qo`` (Query-Only) or ``qd`` (Query-DB).
        roi: ``sum`` or ``max``.
        fa_on, fa_blocks, fa_alpha, fa_sigma: FALIP foveal attention.
        itae_on, itae_theta: ITAE on the query photo.
        top_k: results wanted.
    """

    h_on: int = 5
    mode: str = "qo"
    roi: str = "sum"
    fa_on: bool = False
    fa_blocks: int = 4
    fa_alpha: float = 0.2
    fa_sigma: float = 100.0
    itae_on: bool = False
    itae_theta: float = 0.0
    top_k: int = 24

    def fa(self) -> FAParams | None:
        """The FA parameters, or ``None`` when FA is off."""
        return FAParams(self.fa_alpha, self.fa_sigma, self.fa_blocks) if self.fa_on else None


@dataclass(frozen=True, eq=False)
class Outcome:
    """What one prompt edit produced.

    Attributes:
        maps: ``(h, gh, gw)`` last-block [CLS]->patch attention per head (under FA when FA is on).
        selection: the head selection, or ``None`` without a prompt (plain [CLS] search).
        hits: the ranked photos (empty when no folder is open).
        timings_ms: ``{"heads": ..., "search": ..., "total": ...}`` in milliseconds.
    """

    maps: np.ndarray
    selection: HeadSelection | None
    hits: list[SearchHit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def combined_map(self) -> np.ndarray:
        """The mean map of the selected heads (all heads without a selection), ``(gh, gw)``, for display."""
        if self.selection is None:
            return self.maps.mean(axis=0)
        return self.maps[self.selection.selected].mean(axis=0)


class SearchSession:
    """An engine plus the open photo index.

    Args:
        engine: the loaded engine (its ITAE setting is driven by :class:`SearchOptions`).
    """

    def __init__(self, engine: PHSEngine) -> None:
        self.engine = engine
        self.index_engine = PHSEngine(
            engine.backbone, device=engine.device, precision=engine.precision, fa_blocks=engine.fa_blocks
        )
        self.searcher: Searcher | None = None
        self.folder: Path | None = None
        self.last_encode_ms: float | None = None

    # ------------------------------------------------------------------------------------------- folder
    def open_folder(self, folder: str | Path) -> int:
        """Search ``folder`` from now on; returns the number of indexed photos.

        Raises:
            IndexMissingError, IndexMismatchError: the folder has no usable index for this model.
        """
        self.close_folder()
        self.searcher = Searcher(folder, self.index_engine)
        self.folder = Path(folder)
        return self.searcher.size

    def close_folder(self) -> None:
        """Stop searching the open folder."""
        if self.searcher is not None:
            self.searcher.close()
        self.searcher = None
        self.folder = None

    @property
    def indexed_count(self) -> int:
        """Photos searchable now (0 without a folder)."""
        return 0 if self.searcher is None else self.searcher.size

    # ------------------------------------------------------------------------------------------- query
    def encode(self, image: object) -> None:
        """Encode the query photo (heavy: call it from a worker) and warm the caches prompts need."""
        t0 = time.perf_counter()
        self.engine.set_image(image)  # type: ignore[arg-type]
        self.engine.attention_maps()
        self.last_encode_ms = (time.perf_counter() - t0) * 1000

    def query_norms(self) -> np.ndarray:
        """``(gh * gw,)`` last-block query-vector norms of the query photo (the ITAE histogram)."""
        return self.engine.query_norms()

    def run(
        self,
        prompt: Prompt | None,
        options: SearchOptions,
        force_on: tuple[int, ...] = (),
        force_off: tuple[int, ...] = (),
    ) -> Outcome:
        """Heads, feature and results for a prompt (no backbone run; FA re-runs the last blocks only).

        Args:
            prompt: the marked object, or ``None`` for a plain [CLS] search of the whole photo.
            options: the search knobs.
            force_on, force_off: heads toggled by hand.

        Raises:
            NotReadyError: no photo is encoded yet.
            PHSError: a prompt or head choice the engine refuses (one sentence).
        """
        if not self.engine.is_image_set:
            raise NotReadyError("Open a photo first: no image is set.")
        t0 = time.perf_counter()
        self.engine.set_itae(options.itae_theta if options.itae_on else None)
        fa = options.fa()
        if prompt is None:
            selection = None
            maps = self.engine.attention_maps()
            feature = self.engine.feature()
            head_mask = None
        else:
            method = "fa+phs" if fa is not None else "phs"
            res = self.engine.query(
                prompt, method, h_on=options.h_on, roi=options.roi, fa=fa, force_on=force_on, force_off=force_off
            )
            selection = res.selection
            feature = res.feature
            head_mask = None if selection is None else selection.head_mask
            maps = self.engine.attention_maps(prompt, fa)
        t1 = time.perf_counter()
        hits: list[SearchHit] = []
        if self.searcher is not None and self.searcher.size > 0:
            hits = self.searcher.search(feature, options.top_k, mode=options.mode, head_mask=head_mask)
        t2 = time.perf_counter()
        timings = {"heads": (t1 - t0) * 1000, "search": (t2 - t1) * 1000, "total": (t2 - t0) * 1000}
        return Outcome(maps=maps, selection=selection, hits=hits, timings_ms=timings)

    def close(self) -> None:
        """Close the index and drop the engines' caches."""
        self.close_folder()
        self.engine.close()
        self.index_engine.close()
