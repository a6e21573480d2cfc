"""User preferences: defaults in the package, one human-readable JSON file in the data directory.

``QSettings`` holds only the window geometry (binary, per machine); everything a person chooses (model,
device, search options, folders, recent photos) lives in ``data_dir() / "settings.json"`` so it can be read,
edited or deleted by hand. A missing, unreadable or partly wrong file never stops the app: every bad entry
falls back to its default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.defaults import DEFAULT_H_ON
from core.library.store import atomic_write_bytes
from core.paths import data_dir

SETTINGS_FILE = "settings.json"
MAX_RECENT = 10


@dataclass
class Preferences:
    """Everything remembered between runs except the window geometry.

    Attributes:
        model: registry name of the backbone (:func:`core.models.backbones.list_models`).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        method: the query method, ``phs``, ``lvp`` (learned prompt), ``red-circle`` or ``lvp+phs``.
        h_on: heads kept by PHS.
        mode: ``qo`` (Query-Only) or ``qd`` (Query-DB).
        roi: ``sum`` or ``max``.
        fa_on, fa_blocks, fa_alpha, fa_sigma: FALIP foveal attention and its parameters.
        itae_on, itae_theta: ITAE artifact suppression and its query-norm threshold.
        top_k: number of results shown.
        folders: photo folders the person added (absolute paths).
        current_folder: the folder searched now, or ``""``.
        recent_files: query photos opened recently, newest first.
        last_photo: the query photo open when the app was closed.
        hide_query: leave the query photo itself out of the results (else it is marked "query photo").
        thumb_px: side of the result thumbnails.
    """

    model: str = "dinov2-b14"
    device: str = "auto"
    method: str = "phs"
    h_on: int = DEFAULT_H_ON
    mode: str = "qo"
    roi: str = "sum"
    fa_on: bool = False
    fa_blocks: int = 4
    fa_alpha: float = 0.2
    fa_sigma: float = 100.0
    itae_on: bool = False
    itae_theta: float = 0.0
    top_k: int = 24
    folders: list[str] = field(default_factory=list)
    current_folder: str = ""
    recent_files: list[str] = field(default_factory=list)
    last_photo: str = ""
    hide_query: bool = False
    thumb_px: int = 132

    def add_recent(self, path: str | Path) -> None:
        """Put a photo at the top of the recent files (at most :data:`MAX_RECENT`)."""
        p = str(path)
        self.recent_files = [p, *[r for r in self.recent_files if r != p]][:MAX_RECENT]

    def add_folder(self, folder: str | Path) -> None:
        """Remember a photo folder (once)."""
        f = str(folder)
        if f not in self.folders:
            self.folders.append(f)


_CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda", "mps"),
    "method": ("phs", "lvp", "red-circle", "lvp+phs"),
    "mode": ("qo", "qd"),
    "roi": ("sum", "max"),
}


def settings_path() -> Path:
    """The preferences file, ``data_dir() / "settings.json"``."""
    return data_dir() / SETTINGS_FILE


def _coerce(name: str, default: Any, value: Any) -> Any:
    """``value`` converted to the type of ``default``, or ``default`` when it does not fit."""
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else default
        if isinstance(default, int):
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
        if isinstance(default, float):
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
        if isinstance(default, str):
            if not isinstance(value, str):
                return default
            return value if name not in _CHOICES or value in _CHOICES[name] else default
        if isinstance(default, list):
            return [str(v) for v in value if isinstance(v, str)] if isinstance(value, list) else default
    except (TypeError, ValueError, OverflowError):
        return default
    return default


def load_preferences(path: Path | None = None) -> Preferences:
    """Read the preferences file; anything missing or wrong takes its default."""
    prefs = Preferences()
    try:
        raw = json.loads((path or settings_path()).read_text("utf-8"))
    except (OSError, ValueError):
        return prefs
    if not isinstance(raw, dict):
        return prefs
    for f in fields(Preferences):
        if f.name in raw:
            setattr(prefs, f.name, _coerce(f.name, getattr(prefs, f.name), raw[f.name]))
    prefs.h_on = max(1, prefs.h_on)
    prefs.top_k = min(max(1, prefs.top_k), 500)
    prefs.fa_blocks = max(1, prefs.fa_blocks)
    prefs.thumb_px = min(max(64, prefs.thumb_px), 256)
    if prefs.fa_sigma <= 0:
        prefs.fa_sigma = Preferences.fa_sigma
    return prefs


def save_preferences(prefs: Preferences, path: Path | None = None) -> None:
    """Write the preferences atomically as indented JSON.

    A temporary file of its own (two windows may save at the same moment), fsync, ``os.replace``: a reader
    or a process killed at any point sees the old file or the new one, never a mix or an empty file.
    """
    data = (json.dumps(asdict(prefs), indent=2, sort_keys=True) + "\n").encode("utf-8")
    atomic_write_bytes(path or settings_path(), data)
