"""Run the indexer in a child process and SIGKILL it at a chosen point (used by ``test_index_crash.py``).

Usage: ``python -m tests.index_crash_worker FOLDER LOG MODE N BATCH``. ``MODE`` picks where the process kills
itself on the ``N``-th occurrence (``before_commit``: QD rows flushed, SQLite not committed; ``after_commit``:
batch committed, nothing after; ``faiss_save``: FAISS temp file written, not renamed; ``sidecar``: FAISS file
replaced, sidecar not; ``sweep``: deletions committed, FAISS not saved) or ``none`` to let the parent kill it
at a random moment. ``LOG`` receives the running count of encoded images after every batch.
"""

from __future__ import annotations

import os
import signal
import sys

import faiss

import core.library.indexer as indexer_mod
import core.library.store as store_mod
from core.library.indexer import Indexer
from core.library.photo_index import PhotoIndex
from tests.index_fakes import FakeEngine


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    folder, log, mode, n, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    count = [0]

    def hit() -> None:
        count[0] += 1
        if count[0] >= n:
            _die()

    if mode == "before_commit":
        flush = store_mod.QDCache.flush

        def patched_flush(self):
            flush(self)
            hit()

        store_mod.QDCache.flush = patched_flush
    elif mode == "after_commit":
        commit = indexer_mod.Indexer._commit

        def patched_commit(self, *a, **k):
            commit(self, *a, **k)
            hit()

        indexer_mod.Indexer._commit = patched_commit
    elif mode == "faiss_save":
        write = faiss.write_index

        def patched_write(index, path):
            write(index, path)
            hit()

        faiss.write_index = patched_write
    elif mode == "sidecar":
        atomic = store_mod.atomic_write_json

        def patched_atomic(path, obj):
            if obj.get("faiss"):
                hit()
            atomic(path, obj)

        store_mod.atomic_write_json = patched_atomic
    elif mode == "sweep":
        PhotoIndex.save_vectors = lambda self: _die()
    engine = FakeEngine(delay_s=0.02 if mode == "none" else 0.0, log_path=log)
    save_every = 0.0 if mode in ("faiss_save", "sidecar") else 60.0
    Indexer(folder, engine, batch_size=batch, workers=2, save_interval_s=save_every).run()


if __name__ == "__main__":
    main()
