"""Narrowing a search to some photos: taken after / before a date, under a subfolder, of some file types.

A :class:`PhotoFilter` is applied *in* the search, not to the shown results: the matching photos' ids are read
once from the index database (and again only when the database changed), and the nearest-neighbour search
runs among them (:meth:`core.library.vectors.VectorIndex.search_among`), so a narrow filter still fills the
top ``k`` exactly.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import PHSError
from core.library.dates import photo_dates
from core.library.store import decode_rel

_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


def parse_date(text: str) -> float:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` -> wall-clock seconds of its first moment (so ``--after 2023``
    means from 2023-01-01 on, ``--before 2023-07`` before 2023-07-01).

    Raises:
        PHSError: Not such a date.
    """
    m = _DATE.match(str(text).strip())
    if not m:
        raise PHSError(f"A date is YYYY, YYYY-MM or YYYY-MM-DD, not '{text}'.")
    y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
        raise PHSError(f"There is no such date as '{text}'.")
    return float(calendar.timegm((y, mo, d, 0, 0, 0, 0, 0, 0)))


@dataclass(frozen=True)
class PhotoFilter:
    """Which photos a search may return (every field optional; all given ones must hold).

    Attributes:
        after: Taken at or after this wall-clock time (seconds, see :mod:`core.library.dates`).
        before: Taken before this wall-clock time.
        under: A subfolder of the photo folder, relative, POSIX separators (``"trips/2023"``).
        types: File suffixes, lower case with the dot (``{".jpg", ".heic"}``).
    """

    after: float | None = None
    before: float | None = None
    under: str | None = None
    types: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.after is not None and self.before is not None and self.after >= self.before:
            raise PHSError("The filter's start date must come before its end date.")
        if self.under is not None:
            under = self.under.strip().replace("\\", "/").strip("/")
            if under in ("", ".") or ".." in under.split("/"):
                raise PHSError(f"The subfolder to search under must lie inside the photo folder, not '{self.under}'.")
            object.__setattr__(self, "under", under)
        object.__setattr__(self, "types", frozenset("." + t.lower().lstrip(".") for t in self.types))

    @property
    def active(self) -> bool:
        """Whether the filter leaves anything out at all."""
        return self.after is not None or self.before is not None or self.under is not None or bool(self.types)

    @classmethod
    def from_text(cls, after: str | None = None, before: str | None = None, under: str | None = None,
                  types: str | None = None) -> PhotoFilter:  # fmt: skip
        """From the command line's words: dates as :func:`parse_date` reads them, ``types`` comma-separated."""
        return cls(
            after=parse_date(after) if after else None,
            before=parse_date(before) if before else None,
            under=under or None,
            types=frozenset(t for t in (types or "").replace(" ", "").split(",") if t),
        )

    def matching_ids(self, conn: Any) -> np.ndarray:
        """``(n,)`` sorted int64 ids of the done photos of an index database that pass the filter."""
        rows = conn.execute("SELECT id, path FROM files WHERE status = 'done' ORDER BY id").fetchall()
        dates = photo_dates(conn) if self.after is not None or self.before is not None else {}
        prefix = self.under + "/" if self.under else None
        keep = []
        for i, blob in rows:
            if prefix is not None or self.types:
                rel = decode_rel(blob)
                if prefix is not None and not rel.startswith(prefix):
                    continue
                dot = rel.rfind(".")
                if self.types and (dot < 0 or rel[dot:].lower() not in self.types):
                    continue
            if dates:
                t = dates.get(int(i))
                if t is None or (self.after is not None and t < self.after) or (self.before is not None and t >= self.before):
                    continue
            keep.append(int(i))
        return np.asarray(keep, dtype=np.int64)
