"""Errors a person can act on.

Every exception the core raises on purpose derives from :class:`PHSError`. Its message is one sentence
that says what went wrong and what to do; the CLI and the GUI show it as it is, never a traceback.
"""

from __future__ import annotations


class PHSError(Exception):
    """Base class: ``str(err)`` is a complete sentence meant for the user."""


class WeightsNotFoundError(PHSError):
    """Model weights are not available locally and cannot be downloaded (offline, or no such file)."""


class WeightsError(PHSError):
    """A weights file exists but cannot be used (unsafe pickle, truncated, another architecture)."""


class UnsupportedModelError(PHSError):
    """The model is not a ViT with a [CLS] token and a plain multi-head attention in its last block."""


class PromptError(PHSError, ValueError):
    """A point, box or mask is invalid (outside the image, zero area, empty, not finite)."""


class ImageLoadError(PHSError):
    """A photo cannot be opened or decoded."""


class IndexMismatchError(PHSError):
    """An index on disk was built with another model or preprocessing, or another schema."""


class NotReadyError(PHSError, RuntimeError):
    """A method was called before what it needs (e.g. a prompt before ``set_image``)."""
