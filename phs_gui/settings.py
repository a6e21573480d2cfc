"""User preferences: defaults in the package, one human-readable JSON file in the data directory.

``QSettings`` holds only the window geometry (binary, per machine); everything a person chooses (model,
device, search options, folders, recent photos) lives in ``data_dir() / "settings.json"`` so it can be read,
edited or deleted by hand. A missing, unreadable or partly wrong file never stops the app: every bad entry
falls back to its default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.errors import PHSError
from core.library.store import atomic_write_bytes
from core.paths import data_dir
from phs_gui.session import SearchOptions

SETTINGS_FILE = "settings.json"
MAX_RECENT = 10


@dataclass
class Preferences:
    """Everything remembered between runs except the window geometry.

    Attributes:
        model: registry name of the backbone (:func:`core.models.backbones.list_models`).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        search: the search options (method, h_on, mode, roi, FA, ITAE, top_k), their one home.
        folders: photo folders the person added (absolute paths).
        current_folder: the folder chosen in the Library list (the one indexed, whose failures are listed), or
            ``""``.
        not_searched: library folders whose check box is off; every other folder listed (added here, indexed
            from the command line, the demo gallery) is searched, so a folder new to the list is searched.
        recent_files: query photos opened recently, newest first.
        last_photo: the query photo open when the app was closed.
        hide_query: leave the query photo itself out of the results (else it is marked "query photo").
        thumb_px: side of the result thumbnails.
        brush_px: brush diameter in screen pixels.
        marks: the last photo's prompt (``points``, ``box``, ``mask_png`` base64, ``force_on``, ``force_off``),
            restored with it on the next launch; ``{}`` when nothing was marked.
        keep_current: watch the library's folders and bring their indexes up to date in the background while
            the app runs, and check them for changes at start (File › Keep folders up to date).
    """

    model: str = "dinov2-b14"
    device: str = "auto"
    search: SearchOptions = field(default_factory=SearchOptions)
    folders: list[str] = field(default_factory=list)
    current_folder: str = ""
    not_searched: list[str] = field(default_factory=list)
    recent_files: list[str] = field(default_factory=list)
    last_photo: str = ""
    hide_query: bool = False
    thumb_px: int = 132
    brush_px: int = 24
    marks: dict = field(default_factory=dict)
    keep_current: bool = True

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


def _coerced(cls: type, raw: dict) -> dict:
    """The fields of the dataclass ``cls`` found in ``raw``, each converted to its default's type."""
    default = cls()
    return {f.name: _coerce(f.name, getattr(default, f.name), raw[f.name]) for f in fields(cls) if f.name in raw}


def load_preferences(path: Path | None = None) -> Preferences:
    """Read the preferences file; anything missing or wrong takes its default.

    Search options are read from ``"search"``, or from the top level where files of earlier versions kept
    them."""
    try:
        raw = json.loads((path or settings_path()).read_text("utf-8"))
    except (OSError, ValueError):
        return Preferences()
    if not isinstance(raw, dict):
        return Preferences()
    top = {k: v for k, v in _coerced(Preferences, raw).items() if k not in ("search", "marks")}
    prefs = Preferences(**top)
    nested = raw.get("search") if isinstance(raw.get("search"), dict) else raw
    o = SearchOptions(**_coerced(SearchOptions, nested))
    sigma = o.fa_sigma if o.fa_sigma > 0 else SearchOptions.fa_sigma
    prefs.search = replace(o, h_on=max(1, o.h_on), top_k=min(max(1, o.top_k), 500), fa_blocks=max(1, o.fa_blocks),
                           fa_sigma=sigma)
    try:
        prefs.search.photo_filter()
    except PHSError:  # a filter edited by hand into something that is not one: search everything
        prefs.search = replace(prefs.search, after="", before="", under="", types="")
    prefs.marks = raw["marks"] if isinstance(raw.get("marks"), dict) else {}
    prefs.thumb_px = min(max(64, prefs.thumb_px), 256)
    prefs.brush_px = min(max(2, prefs.brush_px), 200)
    return prefs


def save_preferences(prefs: Preferences, path: Path | None = None) -> None:
    """Write the preferences atomically as indented JSON.

    A temporary file of its own (two windows may save at the same moment), fsync, ``os.replace``: a reader
    or a process killed at any point sees the old file or the new one, never a mix or an empty file.
    """
    data = (json.dumps(asdict(prefs), indent=2, sort_keys=True) + "\n").encode("utf-8")
    atomic_write_bytes(path or settings_path(), data)
