"""When each indexed photo was taken: EXIF DateTimeOriginal, else the file's modification time.

Dates are wall-clock times ("2023-07-14 18:02", no time zone, as cameras write them), kept as seconds since
1970-01-01 00:00 of that wall clock (``calendar.timegm`` of the naive date), so a photo taken at 18:02 is
"18:02" wherever it is searched from. A file time is converted to the same scale through the local time zone.

They live in the index database's ``photo_dates`` table, a cache derived from the photos like the FAISS file:
``(id, mtime_ns, taken)``, one row per done photo, ``taken`` NULL when the photo has no EXIF date (then the
file time counts) and ``mtime_ns`` the file time the row was read at (a changed photo is read again). Every
indexing run fills what is missing after its last commit: for an index made before dates existed that is a
stat-and-read-EXIF pass over the photos, never a re-encode. Photos are opened read-only, non-blocking, and
only regular files; only their header is parsed.
"""

from __future__ import annotations

import calendar
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from core.imageio import HEIF_SUFFIXES, heif_available

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS photo_dates (id INTEGER PRIMARY KEY, mtime_ns INTEGER NOT NULL, taken REAL)"
)
#: EXIF tags: the Exif sub-IFD pointer, DateTimeOriginal inside it.
EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
#: Rows written per transaction while filling.
FILL_BATCH = 500

_EXIF_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def parse_exif_date(text: Any) -> float | None:
    """``"2023:07:14 18:02:05"`` -> wall-clock seconds; ``None`` for a blank or impossible date."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = _EXIF_DATE.match(str(text or ""))
    if not m:
        return None
    y, mo, d, h, mi, s = (int(v) for v in m.groups())
    if not (1800 <= y <= 2200 and 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    try:
        return float(calendar.timegm((y, mo, d, h, mi, min(s, 59), 0, 0, 0)))
    except (OverflowError, ValueError):
        return None


def wall_clock(mtime_ns: int) -> float:
    """A file time (ns since the epoch) as wall-clock seconds of this machine's time zone."""
    t = mtime_ns / 1e9
    try:
        return float(calendar.timegm(time.localtime(t))) + (t % 1.0)
    except (OverflowError, OSError, ValueError):
        return t


def exif_taken(path: str | Path) -> float | None:
    """The EXIF DateTimeOriginal of a photo file (wall-clock seconds), ``None`` when it has none or cannot be
    read. Opens only regular files, non-blocking (a FIFO swapped in never hangs), and parses only the header."""
    if Path(path).suffix.lower() in HEIF_SUFFIXES and not heif_available():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh, Image.open(fh) as img:
            exif = img.getexif()
            return parse_exif_date(exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL))
    except Exception:  # any undecodable header: no date, the file time counts
        return None
    finally:
        os.close(fd)


def table_exists(conn: Any) -> bool:
    """Whether the database has the ``photo_dates`` table (an index written before dates has not)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'photo_dates'").fetchone() is not None


def fill_dates(
    db: Any,
    folder: str | Path,
    cancel: threading.Event | Callable[[], bool] | None = None,
) -> int:
    """Read the date of every done photo that has none yet, or whose file changed since (writable ``db``).

    Also drops the dates of photos no longer indexed. Stops early (keeping what it wrote) when ``cancel`` is set.

    Returns:
        How many photos were read.
    """
    conn = db.conn
    with db.transaction() as c:
        c.execute(TABLE_SQL)
        c.execute("DELETE FROM photo_dates WHERE id NOT IN (SELECT id FROM files WHERE status = 'done')")
    rows = conn.execute(
        "SELECT f.id, f.path, f.mtime_ns FROM files f LEFT JOIN photo_dates d ON d.id = f.id "
        "WHERE f.status = 'done' AND (d.id IS NULL OR d.mtime_ns != f.mtime_ns)"
    ).fetchall()
    done = 0
    for start in range(0, len(rows), FILL_BATCH):
        if cancel is not None and (cancel.is_set() if isinstance(cancel, threading.Event) else cancel()):
            break
        batch = [(i, mt, exif_taken(Path(folder) / os.fsdecode(bytes(rel)))) for i, rel, mt in rows[start : start + FILL_BATCH]]
        with db.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO photo_dates (id, mtime_ns, taken) VALUES (?, ?, ?)", batch)
        done += len(batch)
    return done


def photo_dates(conn: Any) -> dict[int, float]:
    """Wall-clock date of every done photo (EXIF where known, else the file time), by row id."""
    if table_exists(conn):
        cur = conn.execute(
            "SELECT f.id, f.mtime_ns, d.taken FROM files f LEFT JOIN photo_dates d "
            "ON d.id = f.id AND d.mtime_ns = f.mtime_ns WHERE f.status = 'done'"
        )
    else:
        cur = conn.execute("SELECT id, mtime_ns, NULL FROM files WHERE status = 'done'")
    out = {}
    for i, mt, taken in cur:
        out[int(i)] = float(taken) if taken is not None else wall_clock(int(mt))
    return out

