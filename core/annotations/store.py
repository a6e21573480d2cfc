"""Annotations kept: labelled shapes on photos, in SQLite in the data directory (never in a photo folder).

Layout: ``data_dir()/annotations/annotations.sqlite``, WAL journal, ``synchronous=FULL``, ``PRAGMA
user_version`` = schema version. Table ``labels`` (name, colour) and ``annotations``: one row per mark with
the photo's folder (resolved path), its path relative to the folder (POSIX), its content hash (BLAKE2b-128
of the file's bytes, as the index computes it), its size ``(W, H)``, the label, the shape (kind, geometry JSON,
mask PNG), origin (``drawn``, ``proposed``, ``imported``), score (proposals) and creation time.

Every write is one transaction, so a crash (even ``kill -9``) loses at most the write in flight. A photo is
found by content first: a moved or renamed photo keeps its annotations (their path is updated on sight),
and an annotation whose path holds other bytes now is reported ``stale`` (the photo changed).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from core.annotations.shapes import Shape
from core.errors import PHSError
from core.paths import data_dir

SCHEMA_VERSION = 1
DB_NAME = "annotations.sqlite"
ORIGINS = ("drawn", "proposed", "imported")
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")  # fmt: skip
_SCHEMA = """
CREATE TABLE labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, color TEXT NOT NULL);
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY, folder TEXT NOT NULL, path TEXT NOT NULL, content_hash TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, label_id INTEGER NOT NULL REFERENCES labels(id),
    kind TEXT NOT NULL, geometry TEXT NOT NULL, mask BLOB, origin TEXT NOT NULL, score REAL,
    created REAL NOT NULL);
CREATE INDEX annotations_photo ON annotations(folder, path);
CREATE INDEX annotations_hash ON annotations(content_hash);
CREATE INDEX annotations_label ON annotations(label_id);
"""
BUSY_TIMEOUT_S = 30.0


class AnnotationStoreError(PHSError):
    """The annotation database cannot be opened or written (damaged, a newer schema, a read-only disk)."""


def content_hash(data: bytes) -> str:
    """BLAKE2b-128 hex digest of a file's bytes (the same digest the photo index keeps)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class Photo:
    """A photo as annotations refer to it.

    Attributes:
        folder: the library folder (resolved absolute path).
        path: the photo's path relative to ``folder``, POSIX separators.
        content_hash: see :func:`content_hash`.
        size: ``(W, H)`` in pixels, EXIF orientation applied.
    """

    folder: str
    path: str
    content_hash: str
    size: tuple[int, int]

    @classmethod
    def open(cls, folder: str | Path, image: str | Path) -> Photo:
        """Read a photo of ``folder`` (``image`` absolute or relative to the folder) for its hash and size.

        Raises:
            AnnotationStoreError: the photo is not inside the folder.
            core.errors.ImageLoadError: it cannot be read or decoded.
        """
        from core.imageio import load_image, read_photo_bytes

        root = Path(folder).expanduser().resolve()
        p = Path(image).expanduser()
        p = (p if p.is_absolute() else root / p).resolve()
        try:
            rel = p.relative_to(root).as_posix()
        except ValueError:
            raise AnnotationStoreError(f"The photo {p} is not inside the folder {root}.") from None
        data = read_photo_bytes(p)
        w, h = load_image(p).size
        return cls(str(root), rel, content_hash(data), (int(w), int(h)))

    @property
    def file(self) -> Path:
        """The photo's absolute path."""
        return Path(self.folder) / self.path


@dataclass(frozen=True, eq=False)
class Annotation:
    """A labelled mark on a photo.

    Attributes:
        id: row id (``None`` before it is stored).
        photo: the photo it was made on.
        label: the label's name.
        shape: the :class:`~core.annotations.shapes.Shape`.
        origin: ``drawn``, ``proposed`` (a search proposal accepted) or ``imported``.
        score: the proposal's score, else ``None``.
        created: Unix time.
        stale: the photo at this path has other bytes now (it was edited after the mark).
    """

    id: int | None
    photo: Photo
    label: str
    shape: Shape
    origin: str = "drawn"
    score: float | None = None
    created: float = 0.0
    stale: bool = False

    def to_json(self) -> dict:
        """A JSON-ready summary (``bbox`` XYXY pixels)."""
        return {"id": self.id, "folder": self.photo.folder, "image": self.photo.path, "label": self.label,
                "width": self.photo.size[0], "height": self.photo.size[1], "origin": self.origin,
                "score": self.score, "created": self.created, "stale": self.stale} | self.shape.to_json()  # fmt: skip


@dataclass(frozen=True)
class Label:
    """A label: its name, ``#rrggbb`` colour and how many annotations carry it."""

    name: str
    color: str
    count: int = 0


def default_path() -> Path:
    """``data_dir()/annotations/annotations.sqlite``."""
    return data_dir() / "annotations" / DB_NAME


class AnnotationStore:
    """Every annotation of every folder. Open, use, :meth:`close` (or ``with``); one per thread.

    Args:
        path: the database file (default :func:`default_path`).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
            self.conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if self.conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            self._migrate()
        except (sqlite3.Error, OSError) as err:
            self.close()
            raise AnnotationStoreError(
                f"The annotation database {self.path} cannot be used ({_reason(err)}): move it aside to start "
                "a new one, or free the disk."
            ) from None

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise AnnotationStoreError(
                f"The annotation database {self.path} was written by a newer PHS desktop; upgrade PHS desktop."
            )
        if version == 0:
            with self.transaction() as c:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any error, which is raised as one sentence."""
        if self.conn is None:
            raise AnnotationStoreError("The annotation database is closed.")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as err:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise AnnotationStoreError(
                    f"The annotation database {self.path} could not be written ({_reason(err)}); nothing was changed."
                ) from None
            raise

    # ---------------------------------------------------------------------------------------------
    # labels

    def _label_id(self, c: sqlite3.Connection, name: str, color: str | None = None) -> int:
        name = _label_name(name)
        row = c.execute("SELECT id FROM labels WHERE name = ?", (name,)).fetchone()
        if row:
            if color:
                c.execute("UPDATE labels SET color = ? WHERE id = ?", (_color(color), row[0]))
            return int(row[0])
        n = c.execute("SELECT count(*) FROM labels").fetchone()[0]
        cur = c.execute("INSERT INTO labels(name, color) VALUES (?, ?)", (name, _color(color or PALETTE[n % len(PALETTE)])))
        return int(cur.lastrowid)

    def set_label(self, name: str, color: str | None = None) -> Label:
        """Create a label (a palette colour unless given) or change its colour."""
        with self.transaction() as c:
            self._label_id(c, name, color)
        return next(lb for lb in self.labels() if lb.name == name.strip())

    def labels(self) -> list[Label]:
        """Every label with its colour and annotation count, by name."""
        rows = self.conn.execute(
            "SELECT l.name, l.color, count(a.id) FROM labels l LEFT JOIN annotations a ON a.label_id = l.id "
            "GROUP BY l.id ORDER BY l.name"
        ).fetchall()
        return [Label(n, c, int(k)) for n, c, k in rows]

    def rename_label(self, old: str, new: str) -> None:
        """Rename a label; its annotations follow. Raises when ``old`` is unknown or ``new`` exists."""
        new = _label_name(new)
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM labels WHERE name = ?", (new,)).fetchone():
                raise AnnotationStoreError(f"A label named '{new}' exists already; relabel its annotations instead.")
            if c.execute("UPDATE labels SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise AnnotationStoreError(f"There is no label named '{old}'.")

    def delete_label(self, name: str) -> list[Annotation]:
        """Delete a label and its annotations; returns them (:meth:`restore` puts them back)."""
        removed = self.list(label=name)
        with self.transaction() as c:
            c.execute("DELETE FROM annotations WHERE label_id = (SELECT id FROM labels WHERE name = ?)", (name,))
            if c.execute("DELETE FROM labels WHERE name = ?", (name,)).rowcount == 0:
                raise AnnotationStoreError(f"There is no label named '{name}'.")
        return removed

    # ---------------------------------------------------------------------------------------------
    # annotations

    def add(self, photo: Photo, shape: Shape, label: str, origin: str = "drawn", score: float | None = None) -> Annotation:
        """Store one annotation (one transaction) and return it with its id."""
        return self.add_many([Annotation(None, photo, label, shape, origin, score)])[0]

    def add_many(self, annotations: Iterable[Annotation]) -> list[Annotation]:
        """Store annotations in one transaction: all of them or, on any error, none. Ids given are kept."""
        out = []
        now = time.time()
        with self.transaction() as c:
            for a in annotations:
                if a.origin not in ORIGINS:
                    raise AnnotationStoreError(f"An annotation comes from {', '.join(ORIGINS)}, not '{a.origin}'.")
                geometry, blob = a.shape.to_record()
                created = a.created or now
                cur = c.execute(
                    "INSERT INTO annotations(id, folder, path, content_hash, width, height, label_id, kind, "
                    "geometry, mask, origin, score, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (a.id, a.photo.folder, a.photo.path, a.photo.content_hash, a.photo.size[0], a.photo.size[1],
                     self._label_id(c, a.label), a.shape.kind, geometry, blob, a.origin, a.score, created),
                )  # fmt: skip
                out.append(replace(a, id=int(cur.lastrowid), label=a.label.strip(), created=created))
        return out

    def restore(self, annotations: Sequence[Annotation]) -> list[Annotation]:
        """Put back what :meth:`remove` or :meth:`delete_label` returned (same ids): the undo of a removal."""
        return self.add_many(annotations)

    def remove(self, ids: Iterable[int]) -> list[Annotation]:
        """Remove annotations by id; returns those removed (unknown ids are ignored)."""
        ids = sorted({int(i) for i in ids})
        marks = ",".join("?" * len(ids))
        removed = [self._row(r) for r in self.conn.execute(f"{_SELECT} WHERE a.id IN ({marks})", ids)] if ids else []
        with self.transaction() as c:
            c.executemany("DELETE FROM annotations WHERE id = ?", [(i,) for i in ids])
        return removed

    def relabel(self, ids: Iterable[int], label: str) -> int:
        """Give annotations another label (created if new); returns how many changed."""
        with self.transaction() as c:
            lid = self._label_id(c, label)
            return sum(c.execute("UPDATE annotations SET label_id = ? WHERE id = ?", (lid, int(i))).rowcount for i in ids)

    def list(self, folder: str | Path | None = None, path: str | None = None, label: str | None = None) -> list[Annotation]:
        """Annotations, optionally of one folder, one photo path (relative, POSIX) and one label, by id."""
        sql, args = [], []
        if folder is not None:
            sql.append("a.folder = ?")
            args.append(str(Path(folder).expanduser().resolve()))
        if path is not None:
            sql.append("a.path = ?")
            args.append(path)
        if label is not None:
            sql.append("l.name = ?")
            args.append(label)
        where = f"WHERE {' AND '.join(sql)}" if sql else ""
        return [self._row(r) for r in self.conn.execute(f"{_SELECT} {where} ORDER BY a.id", args)]

    def for_photo(self, photo: Photo) -> list[Annotation]:
        """A photo's annotations, following its content.

        Rows with the photo's content hash belong to it wherever they were made (a moved or renamed photo:
        their folder and path are updated to the photo's now); rows at its path with another hash are
        returned with ``stale=True`` (the photo changed since).
        """
        elsewhere = self.conn.execute(
            "SELECT DISTINCT folder, path FROM annotations WHERE content_hash = ? AND (folder != ? OR path != ?)",
            (photo.content_hash, photo.folder, photo.path)).fetchall()  # fmt: skip
        moved = [(f, p) for f, p in elsewhere if not _same_bytes(Path(f) / p, photo.content_hash)]  # not a duplicate
        if moved:
            with self.transaction() as c:
                c.executemany("UPDATE annotations SET folder = ?, path = ? WHERE content_hash = ? AND folder = ? AND path = ?",
                              [(photo.folder, photo.path, photo.content_hash, f, p) for f, p in moved])  # fmt: skip
        rows = self.conn.execute(f"{_SELECT} WHERE a.folder = ? AND a.path = ? ORDER BY a.id",
                                 (photo.folder, photo.path)).fetchall()  # fmt: skip
        return [replace(a, stale=a.photo.content_hash != photo.content_hash) for a in map(self._row, rows)]

    def photos_of(self, label: str) -> list[tuple[str, str]]:
        """``(folder, path)`` of the photos holding an annotation with ``label``, sorted."""
        rows = self.conn.execute(
            "SELECT DISTINCT a.folder, a.path FROM annotations a JOIN labels l ON l.id = a.label_id "
            "WHERE l.name = ? ORDER BY a.folder, a.path", (label,)).fetchall()  # fmt: skip
        return [(f, p) for f, p in rows]

    def count(self) -> int:
        """How many annotations are stored."""
        return int(self.conn.execute("SELECT count(*) FROM annotations").fetchone()[0])

    @staticmethod
    def _row(r: tuple) -> Annotation:
        (aid, folder, path, h, w, ht, label, kind, geometry, blob, origin, score, created) = r
        photo = Photo(folder, path, h, (int(w), int(ht)))
        return Annotation(int(aid), photo, label, Shape.from_record(kind, geometry, blob), origin, score, created)


_SELECT = ("SELECT a.id, a.folder, a.path, a.content_hash, a.width, a.height, l.name, a.kind, a.geometry, a.mask, "
           "a.origin, a.score, a.created FROM annotations a JOIN labels l ON l.id = a.label_id")  # fmt: skip


def _label_name(name: str) -> str:
    name = str(name).strip()
    if not name or len(name) > 200 or any(ch in name for ch in "\n\r\t"):
        raise AnnotationStoreError("A label is a name of 1 to 200 characters on one line.")
    return name


def _color(color: str) -> str:
    c = str(color).strip().lower()
    if len(c) != 7 or c[0] != "#" or any(ch not in "0123456789abcdef" for ch in c[1:]):
        raise AnnotationStoreError(f"A label colour is written #rrggbb, not '{color}'.")
    return c


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.rstrip(".").lower()


def _same_bytes(path: Path, digest: str) -> bool:
    """Whether ``path`` is a file whose content hash is ``digest`` (a duplicate of the photo, not its old place)."""
    try:
        return path.is_file() and content_hash(path.read_bytes()) == digest
    except OSError:
        return False
