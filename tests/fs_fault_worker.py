"""Child process of the full-disk trial (:func:`tests.fs_faults.disk_full_trial`).

Usage: ``python -m tests.fs_fault_worker index_until_full JSON_ARGS``. It indexes ``folder`` with the fake
engine the way ``phs index`` does and, after ``at`` photos, fills the disk holding ``fill`` (a real tmpfs),
or with ``inject`` makes every later write of the index fail with ``ENOSPC``. A :class:`PHSError` is
printed as ``phs: <sentence>`` on stderr with exit code 2, as the CLI does; anything else is a traceback.
The result (``RESULT {json}``) says how many photos had been committed when the disk filled.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path


def _no_space(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def index_until_full(args: dict) -> int:
    """Index, filling the disk mid-run."""
    import core.library.store as store
    from core.errors import PHSError
    from core.library import index_folder
    from tests.fs_faults import BATCH, fill
    from tests.index_fakes import FakeEngine

    state = {"committed": None}
    engine = FakeEngine()

    def progress(p) -> None:  # noqa: ANN001
        if p.done == args["at"] and state["committed"] is None:
            state["committed"] = p.indexed + p.reused
            if args["inject"]:
                store.QDCache.write = _no_space  # type: ignore[method-assign]
            else:
                fill(Path(args["fill"]))

    result: dict = {}
    try:
        index_folder(args["folder"], engine, batch_size=BATCH, progress=progress)
        rc = 0
    except PHSError as err:
        print(f"phs: {err}", file=sys.stderr)
        result["error"] = str(err)
        rc = 2
    result["committed_before_fill"] = state["committed"] or 0
    print("RESULT " + json.dumps(result), flush=True)
    return rc


if __name__ == "__main__":
    action, raw = sys.argv[1], sys.argv[2]
    sys.exit({"index_until_full": index_until_full}[action](json.loads(raw)))
