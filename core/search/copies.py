"""Identical files folded into one result: the app's "+N copies" and ``phs search``'s ``copies``.

Identical files have identical features, hence exactly equal scores: only hits with an equal score and an
equal file size are hashed, so a normal result list reads no file. Qt-free; the app runs it in a worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ResultRow:
    """One shown result: the hit, the identical files folded into it, and whether it is the query photo.

    Attributes:
        path, score: the photo and its similarity.
        copies: other paths with the same content (shown once, "+N copies").
        is_query: the file is the query photo itself (same path or same content).
        objects: with several objects, each object's ``(cosine, colour number, excluded)`` for this photo.
    """

    path: str
    score: float
    copies: tuple[str, ...] = ()
    is_query: bool = False
    objects: tuple[tuple[float, int, bool], ...] = ()


def _digest(path: str) -> str | None:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def group_hits(hits: list, query_path: str | None) -> list[ResultRow]:
    """Fold identical files into one row and mark the query photo (Qt-free; run it in a worker).

    Identical files have identical features, hence exactly equal scores: only hits with an equal score and an
    equal file size are hashed, so a normal result list reads no file.

    Args:
        hits: ranked hits (``path``, ``score``), best first.
        query_path: the query photo, or ``None``.
    """
    def size(p: str) -> int:
        try:
            return Path(p).stat().st_size
        except OSError:
            return -1

    q_size = size(query_path) if query_path else -2
    q_real = str(Path(query_path).resolve()) if query_path else None
    digests: dict[str, str | None] = {}

    def digest(p: str) -> str | None:
        if p not in digests:
            digests[p] = _digest(p)
        return digests[p]

    rows: list[dict] = []
    for hit in hits:
        path, score = str(hit.path), float(hit.score)
        sz = size(path)
        is_query = q_real is not None and (
            str(Path(path).resolve()) == q_real or (sz == q_size and digest(path) == digest(query_path)))
        for r in rows:
            if r["score"] == score and r["size"] == sz and sz >= 0 and digest(r["path"]) == digest(path):
                if q_real is not None and str(Path(path).resolve()) == q_real:  # the query's own path leads
                    r["copies"].append(r["path"])
                    r["path"] = path
                else:
                    r["copies"].append(path)
                r["is_query"] = r["is_query"] or is_query
                break
        else:
            rows.append({"path": path, "score": score, "size": sz, "copies": [], "is_query": is_query})
    return [ResultRow(r["path"], r["score"], tuple(r["copies"]), r["is_query"]) for r in rows]
