"""Result rows and what the grid loads for them off the GUI thread: grouping identical files, photo facts,
thumbnails, the thumbnail cache and the exported list (Qt only for the cached pixmaps)."""

from __future__ import annotations

import csv
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter, QPixmap

from core.errors import ImageLoadError
from core.imageio import load_image
from core.search.copies import ResultRow, group_hits  # noqa: F401 (one fold of identical files for the app and phs search)
from phs_gui.render import to_qimage

THUMB_MIN, THUMB_MAX = 64, 256  # the thumbnail slider's range


def shown(path: str) -> str:
    """``path`` as text Qt can hold: bytes that are not UTF-8 (kept by Python as lone surrogates) and control
    characters escaped (``\\xff``, ``\\n``). For display only: the real path stays a Python ``str``."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def real_path(text: str) -> str:
    """The path on disk that Qt's ``text`` of it stands for: Qt decodes a file name that is not UTF-8 with
    replacement characters, so each part that does not exist is matched against its folder's entries decoded
    the same way. Returns ``text`` itself when it exists or nothing matches."""
    if not text or os.path.exists(text):
        return text
    parts = Path(text).parts
    cur = parts[0]
    for part in parts[1:]:
        nxt = os.path.join(cur, part)
        if not os.path.exists(nxt):
            try:
                names = os.listdir(os.fsencode(cur))
            except OSError:
                return text
            match = [n for n in names if n.decode("utf-8", "replace") == part]
            if len(match) != 1:
                return text
            nxt = os.path.join(cur, os.fsdecode(match[0]))
        cur = nxt
    return cur


def file_url_bytes(path: str) -> bytes:
    """A ``file://`` URL of ``path`` with its exact bytes percent-encoded (for ``QUrl.fromEncoded``)."""
    from urllib.parse import quote

    return b"file://" + quote(os.fsencode(os.path.abspath(path)), safe="/").encode("ascii")


def photo_facts(path: str) -> str:
    """Pixel size, file size and date taken (EXIF, else the file's date) of a photo, one line."""
    parts = []
    try:
        from PIL import Image

        with Image.open(path) as im:
            parts.append(f"{im.width}x{im.height} px")
            exif = im.getexif()
            taken = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
    except Exception:  # noqa: BLE001 - facts are best effort
        taken = None
    try:
        st = Path(path).stat()
        parts.append(f"{st.st_size / 1e6:.1f} MB" if st.st_size >= 1e5 else f"{st.st_size / 1e3:.0f} kB")
        if not taken:
            taken = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime)) + " (file date)"
    except OSError:
        pass
    if taken:
        taken = str(taken).strip()
        if len(taken) >= 10 and taken[4] == ":" and taken[7] == ":":
            taken = taken[:4] + "-" + taken[5:7] + "-" + taken[8:]
        parts.append(f"taken {taken}")
    return " · ".join(parts)


def load_thumbnail(path: str, *, report: object = None, cancel: object = None) -> tuple[str, np.ndarray | None, str]:
    """Decode a photo small (``(h, w, 3)`` uint8, longer side :data:`THUMB_MAX`), or ``None`` if it fails;
    and its facts for the tooltip."""
    facts = photo_facts(path)
    try:
        img = load_image(path, draft_size=THUMB_MAX)
    except ImageLoadError:
        return path, None, facts
    img.thumbnail((THUMB_MAX, THUMB_MAX))
    return path, np.asarray(img), facts


def export_list(rows: list[ResultRow], path: str | Path, ranks: list[int] | None = None) -> None:
    """Write results to ``path``: CSV (rank, score, path, copies, query) for ``.csv``, else one path a line.

    Args:
        rows: the results, best first.
        path: the file to write (never inside a photo folder unless the person chose it).
        ranks: each row's rank among all results shown (default 1, 2, 3...).
    """
    path = Path(path)
    ranks = ranks or list(range(1, len(rows) + 1))
    if path.suffix.lower() == ".csv":
        # A file name that is not UTF-8 is written as its own bytes, so the list names the real files.
        with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            w = csv.writer(f)
            w.writerow(["rank", "score", "path", "copies", "is_query"])
            for i, r in zip(ranks, rows, strict=True):
                w.writerow([i, f"{r.score:.6f}", r.path, ";".join(r.copies), int(r.is_query)])
    else:
        path.write_text("".join(f"{r.path}\n" for r in rows), encoding="utf-8", errors="surrogateescape")


class ThumbnailCache:
    """An LRU of decoded thumbnails keyed by path and modification time."""

    def __init__(self, capacity: int = 512) -> None:
        self._items: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self.capacity = capacity

    @staticmethod
    def key(path: str) -> tuple[str, int]:
        """``(path, mtime_ns)`` (0 when the file cannot be read)."""
        try:
            return path, Path(path).stat().st_mtime_ns
        except OSError:
            return path, 0

    def get(self, path: str) -> QPixmap | None:
        """The cached thumbnail, or ``None``."""
        k = self.key(path)
        pm = self._items.get(k)
        if pm is not None:
            self._items.move_to_end(k)
        return pm

    def put(self, path: str, pm: QPixmap) -> None:
        """Remember a thumbnail."""
        self._items[self.key(path)] = pm
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _placeholder() -> QPixmap:
    pm = QPixmap(THUMB_MAX, THUMB_MAX)
    pm.fill(QColor(60, 62, 66))
    return pm


def square_thumbnail(rgb: np.ndarray) -> QPixmap:
    """A ``THUMB_MAX`` square pixmap with the whole photo (``(h, w, 3)`` uint8) centred in it: every tile then
    has the same icon shape, so a grid laid out from one tile shows every photo of any aspect whole."""
    pm = QPixmap(THUMB_MAX, THUMB_MAX)
    pm.fill(Qt.GlobalColor.transparent)
    img = QPixmap.fromImage(to_qimage(rgb)).scaled(THUMB_MAX, THUMB_MAX, Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.SmoothTransformation)
    p = QPainter(pm)
    p.drawPixmap((THUMB_MAX - img.width()) // 2, (THUMB_MAX - img.height()) // 2, img)
    p.end()
    return pm


def tile_name(path: str, roots: list[str]) -> str:
    """A result tile's name line: the file's name, after the name of its library folder when several folders
    are searched (``Pictures 2019: img3.jpg``), so that two folders' files of the same name tell apart."""
    name = Path(path).name
    if len(roots) < 2:
        return shown(name)
    parents = Path(path).parents
    inside = [r for r in roots if Path(r) in parents]
    return shown(f"{Path(max(inside, key=len)).name}: {name}" if inside else name)
