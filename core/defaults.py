"""Defaults shared by the CLI, the GUI and the library, importable without loading torch."""

DEFAULT_MODEL = "dinov2-b14"
"""The model for people who have the weights (DINOv2 ViT-B/14)."""

DEFAULT_H_ON = 5
"""Heads kept by PHS (seed 001: about 5 for base and large models)."""

MARKER_METHODS = frozenset({"lvp", "red-circle", "lvp+phs"})
"""Query methods that paste a marker on the photo at the prompt and encode the marked photo (seed 004)."""

LEARNED_METHODS = frozenset({"lvp", "lvp+phs"})
"""Query methods that need a learned visual prompt trained for the model."""
