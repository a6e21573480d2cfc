"""Defaults shared by the CLI, the GUI and the library, importable without loading torch.

Each default is decided here once; the engine, the query service, the evaluation, ``phs search``, ``phs eval``
and the app read it from here.
"""

DEFAULT_MODEL = "dinov2-b14"
"""The model for people who have the weights (DINOv2 ViT-B/14)."""

DEFAULT_H_ON = 5
"""Heads kept by PHS when a model records no recommendation (seed 001: about 5 for base and large models);
a model's own value (:attr:`core.models.backbones.ModelSpec.h_on`, the demo model's card) wins."""

FA_ALPHA = 0.2
"""FALIP's strength ``alpha`` (seed 002)."""

FA_SIGMA = 100.0
"""FALIP's Gaussian width ``sigma`` in tokens (seed 002: nearly flat over the box)."""

FA_BLOCKS = 4
"""The last blocks FALIP's mask acts on (seed 002)."""

DEFAULT_CANDIDATES = 1000
"""K': Query-Only candidates re-ranked by Query-DB in the shipped search."""

OBJECT_CANDIDATES = 200
"""Query-Only neighbours taken per wanted object of a several-object query (each then scored for every object)."""

METHODS: tuple[str, ...] = (
    "cbir", "crop", "mask", "attn-mask", "fa", "phs", "fa+phs", "crop+phs", "lvp", "red-circle", "lvp+phs",
)
"""Query methods, in the order of the papers' tables (seed 000, then seed 004's markers)."""

MODES: tuple[str, ...] = ("qo", "qd")
"""``qo`` Query-Only, ``qd`` Query-DB (two-stage re-rank of the Query-Only candidates)."""

MARKER_METHODS = frozenset({"lvp", "red-circle", "lvp+phs"})
"""Query methods that paste a marker on the photo at the prompt and encode the marked photo (seed 004)."""

LEARNED_METHODS = frozenset({"lvp", "lvp+phs"})
"""Query methods that need a learned visual prompt trained for the model."""


def query_method(method: str, fa: bool) -> str:
    """The query method of a surface's choice: ``method`` with the FA switch on is FA's variant of it.

    PHS with FA is ``fa+phs`` (heads scored under FALIP); every other method keeps its own name (FA does not
    combine with a marker or a crop). The app's FA check box and ``phs search --fa`` both map through here.
    """
    return "fa+phs" if fa and method in ("phs", "fa+phs") else method
