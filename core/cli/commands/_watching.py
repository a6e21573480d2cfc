"""``phs index F --watch``: index, then keep the index current while the folder changes (see
:mod:`core.library.watch`). One line per run; Ctrl+C or SIGTERM end it cleanly (exit 0) after the run in
progress has committed what it has."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any

#: How much lower than normal the watching process runs (``nice``): indexing in the background must not
#: slow down the person's searches or other programs.
WATCH_NICENESS = 10


def _line(report: Any) -> str:
    parts = [f"{report.indexed} indexed"]
    if report.reused:
        parts.append(f"{report.reused} reused")
    if report.removed:
        parts.append(f"{report.removed} removed")
    if report.failed:
        parts.append(f"{report.failed} failed (`phs index --status {report.folder}`)")
    if report.settling:
        parts.append(f"{report.settling} still being written")
    return f"{time.strftime('%H:%M:%S')}  {', '.join(parts)}, {report.skipped} unchanged ({report.seconds:.1f} s)"


def watch(args: argparse.Namespace, engine: Any) -> int:
    """Index ``args.path`` and keep it current until a stop signal; returns the exit code."""
    from core.library import index_folder
    from core.library.watch import keep_current

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    with contextlib.suppress(AttributeError, OSError):
        os.nice(WATCH_NICENESS)

    def run_once() -> Any:
        report = index_folder(args.path, engine, batch_size=args.batch_size, workers=args.workers,
                              retry_failed=args.retry_failed, cancel=stop, settle_s=args.settle,
                              max_file_bytes=int(args.max_file_size * 1e6))  # fmt: skip
        print(_line(report), flush=True)
        return report

    print(f"Watching {args.path} (Ctrl+C to stop).", flush=True)
    try:
        keep_current(args.path, run_once, stop, settle_s=args.settle, rescan_s=args.rescan, polling=args.poll,
                     say=lambda s: print(s, file=sys.stderr, flush=True))  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Stopped watching; the index is saved.", flush=True)
    return 0
