"""The indexer's read-and-decode step: one photo read once (bounded, non-blocking, regular files only),
hashed and decoded, in daemon threads that can never keep a cancelled run alive."""

from __future__ import annotations

import errno
import hashlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from core.errors import ImageLoadError, PHSError
from core.imageio import decode_image_bytes, read_regular_bytes
from core.library.scan import ScannedFile

#: Read errors of a file that may pass on their own (a permission that returns, a flaky disk or share, a
#: file replaced while it was read): the photo is retried by every plain run and an indexed version stays.
TRANSIENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT, errno.EAGAIN, errno.EBUSY, errno.EINTR,
     errno.ETIMEDOUT, errno.ENOTCONN, errno.EHOSTDOWN, errno.ENXIO, getattr(errno, "ESTALE", errno.EIO)}
)  # fmt: skip


@dataclass
class Prepared:
    """A file read (and maybe decoded) by a pool thread."""

    file: ScannedFile
    hash: str | None = None
    tensor: Any = None
    error: str | None = None
    transient: bool = False  # the error may pass: keep what was indexed, retry next run
    vanished: bool = False  # the photo folder is gone: not a property of the photo, nothing is recorded
    gone: bool = False  # its sub-folder is gone: the photo is deleted, like any photo no longer there


def content_hash(data: bytes) -> str:
    """BLAKE2b-128 hex digest of a file's bytes (how renamed and duplicated photos are recognised)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare(
    f: ScannedFile,
    known: set[str] | frozenset[str],
    *,
    max_bytes: int,
    draft_size: int | None,
    preprocess: Callable[[Any], Any],
    folder_gone: Callable[[], bool],
) -> Prepared:
    """Read, hash and (unless the content is ``known``) decode + preprocess one file."""
    item = Prepared(f)
    name = f.rel
    try:
        data = read_regular_bytes(f.path, name=name, max_bytes=max_bytes)
    except ImageLoadError as err:  # not a regular file, larger than the limit
        item.error = str(err)
        return item
    except OSError as err:
        if folder_gone():
            item.vanished = True
        elif err.errno == errno.ENOENT and not f.path.parent.is_dir():
            item.gone = True
        else:
            reason = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
            item.error = f"Cannot read {name}: {reason}."
            item.transient = err.errno in TRANSIENT_ERRNOS
        return item
    item.hash = content_hash(data)
    if item.hash in known:
        return item
    try:
        img = decode_image_bytes(data, name=name, draft_size=draft_size)
        del data
        item.tensor = preprocess(img)
    except ImageLoadError as err:
        item.error = str(err)
    except PHSError as err:
        item.error = f"Cannot index {name}: {err}"
    except MemoryError:
        item.error = f"Cannot index {name}: it is too large to decode in the available memory."
    except Exception as err:  # a preprocessing bug must not stop the run: record it with the file
        item.error = f"Cannot index {name}: {type(err).__name__}: {err}."
    return item


class DaemonPool:
    """Worker threads that never keep the process alive.

    A worker stuck in a read (a hung network share, a device that never answers) cannot stop Ctrl+C,
    SIGTERM or a cancel from ending the run: :meth:`shutdown` does not wait for it and, being a daemon,
    it does not hold the interpreter at exit.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in a worker; its :class:`Future` holds the result or the exception."""
        fut: Future[Any] = Future()
        self._jobs.put((fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as err:  # handed to the waiting thread
                fut.set_exception(err)

    def shutdown(self) -> None:
        """Let the workers end once their current job is done, without waiting for them."""
        for _ in self._threads:
            self._jobs.put(None)


def next_result(fut: Future[Any], cancelled: Callable[[], bool], poll_s: float = 0.2) -> Any:
    """Wait for ``fut``, checking ``cancelled`` every ``poll_s``; ``None`` once cancelled."""
    while True:
        if cancelled():
            return None
        try:
            return fut.result(timeout=poll_s)
        except TimeoutError:
            continue
