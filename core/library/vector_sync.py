"""Bringing a FAISS index up to date with SQLite: :func:`sync_vectors`, the only way an index changes.

It compares the FAISS ids with the done rows of SQLite and the generation the FAISS data reflects, and adds,
removes or rebuilds accordingly (see :mod:`core.library.vectors`), for the indexer and for searchers alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.library.store import Database
from core.library.vectors import APPROX_THRESHOLD, VectorIndex, choose_kind


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_vectors` did.

    Attributes:
        generation: The SQLite generation the index now reflects.
        added: Vectors added.
        removed: Vectors removed.
        rebuilt: Whether the index was rebuilt from scratch.
    """

    generation: int
    added: int
    removed: int
    rebuilt: bool


def sync_vectors(
    vi: VectorIndex | None,
    vi_generation: int,
    db: Database,
    dim: int,
    *,
    threshold: int = APPROX_THRESHOLD,
) -> tuple[VectorIndex, SyncResult]:
    """Bring a FAISS index up to date with the done rows of SQLite.

    Reads one consistent snapshot of SQLite (a read transaction), so it is safe while an indexer commits.

    Args:
        vi: The index as loaded (or ``None``).
        vi_generation: The SQLite generation ``vi`` is known to contain at least (rows written later are
            re-added).
        db: The database.
        dim: Feature dimension.
        threshold: Vector count from which the index is an inverted file.

    Returns:
        The updated (or rebuilt) index and what was done.
    """
    conn = db.conn
    conn.execute("BEGIN")
    try:
        generation = db.generation
        db_ids = db.done_ids()
        kind = choose_kind(len(db_ids), threshold)
        rebuild = vi is None or vi.kind != kind or vi.dim != dim or vi_generation > generation
        rebuild = rebuild or (vi is not None and vi.needs_retraining(len(db_ids)))
        if not rebuild:
            assert vi is not None
            f_ids = vi.ids()
            if len(np.unique(f_ids)) != len(f_ids):
                rebuild = True
        if not rebuild:
            assert vi is not None
            stale = np.setdiff1d(f_ids, db_ids, assume_unique=True)
            ch_ids, ch_feats = db.features(since_gen=vi_generation)
            updated = np.intersect1d(ch_ids, f_ids, assume_unique=True)
            missing = np.setdiff1d(db_ids, f_ids, assume_unique=True)
            extra = np.setdiff1d(missing, ch_ids, assume_unique=True)
            to_remove = np.union1d(stale, updated)  # both kinds remove and add incrementally
            if len(extra):  # rows the file should hold but lacks (damaged file): fetch them too
                ex_ids, ex_feats = db.features(extra)
                ch_ids = np.concatenate([ch_ids, ex_ids])
                ch_feats = np.concatenate([ch_feats.reshape(-1, dim), ex_feats.reshape(-1, dim)])
            vi.remove(to_remove)
            vi.add(ch_ids, ch_feats.reshape(-1, dim))
            return vi, SyncResult(generation, len(ch_ids), len(to_remove), False)
        ids, feats = db.features()
        new = VectorIndex.build(dim, kind, ids, feats.reshape(-1, dim))
        return new, SyncResult(generation, len(ids), 0, True)
    finally:
        conn.execute("COMMIT")
