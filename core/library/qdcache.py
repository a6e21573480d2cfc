"""The Query-DB cache file (``qd_cache.f16``): float16 rows addressed by slot, memory-mapped for reading."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.library.errors import _NO_SPACE, IndexDamagedError, IndexReadOnlyError

#: Rows whose checksum match is remembered by a reader (about 100 bytes each); past it the memo starts over.
VERIFIED_MAX = 200_000

_FLOAT16_MAX = float(np.finfo(np.float16).max)


# ------------------------------------------------------------------------------------------ QD cache
class QDCache:
    """The Query-DB cache: float16 rows ``[X_cls (D,) | O[CLS] (h*d_h,)]`` addressed by slot, memory-mapped.

    Args:
        path: The ``qd_cache.f16`` file.
        embed_dim: ``D``.
        num_heads: ``h``.
        head_dim: ``d_h`` (``h * d_h == D`` for a plain ViT, not assumed).
        writable: Open for writing (the indexer) or read-only (searchers).
    """

    def __init__(self, path: Path, embed_dim: int, num_heads: int, head_dim: int, *, writable: bool) -> None:
        self.path = Path(path)
        self.embed_dim, self.num_heads, self.head_dim = int(embed_dim), int(num_heads), int(head_dim)
        self.row_dim = self.embed_dim + self.num_heads * self.head_dim
        self.row_bytes = 2 * self.row_dim
        self.writable = writable
        self.repair_hint = "run `phs index` on the folder to repair it"
        self._mm: np.ndarray | None = None
        self._capacity = 0
        #: Rows of the last :meth:`read` left out because they did not match their checksum.
        self.last_mismatched = 0
        #: slot -> the checksum its row was found to match in this mapping, so the rows of the candidates a
        #: prompt edit shares with the previous one are not hashed again (cleared when the file is mapped anew).
        self._verified: dict[int, int] = {}
        # The writer writes through this descriptor (pwrite), never through the memory map: a store into
        # a mapped page the file system cannot back (a full disk) is a SIGBUS that kills the process,
        # where a write() fails with ENOSPC.
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644) if writable else None
        self._map()

    @property
    def capacity(self) -> int:
        """Number of slots the file holds now."""
        return self._capacity

    def _map(self) -> None:
        """(Re)map the file read-only through a descriptor, so a file deleted meanwhile (its folder removed
        during a run) stays readable and a FIFO or folder in its place is refused instead of blocking."""
        self._mm = None
        self._verified = {}
        own = self._fd is None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)) if own else self._fd
        except (FileNotFoundError, NotADirectoryError):
            self._capacity = 0
            return
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IndexDamagedError(
                    f"The Query-DB cache {self.path} is not a regular file: {self.repair_hint}."
                )
            self._capacity = info.st_size // self.row_bytes
            if self._capacity:
                mm = mmap.mmap(fd, self._capacity * self.row_bytes, access=mmap.ACCESS_READ)
                self._mm = np.frombuffer(mm, dtype=np.float16).reshape(self._capacity, self.row_dim)
        finally:
            if own:
                os.close(fd)

    def ensure_capacity(self, n_slots: int) -> None:
        """Grow the file so that slots ``0 .. n_slots-1`` exist, reserving the disk space for them.

        Raises:
            OSError: ``ENOSPC`` when the disk cannot hold even ``n_slots`` rows (the file keeps its size).
        """
        if n_slots <= self._capacity:
            return
        assert self._fd is not None
        old_size = self._capacity * self.row_bytes
        self._mm = None
        try:
            try:
                _reserve(self._fd, old_size, max(n_slots, 2 * self._capacity, 1024) * self.row_bytes)
            except OSError as err:
                if err.errno not in _NO_SPACE:
                    raise
                _reserve(self._fd, old_size, n_slots * self.row_bytes)  # no room to grow ahead: just enough
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, old_size)
            self._map()
            raise
        self._map()

    @staticmethod
    def pack(x_cls: np.ndarray, o_cls: np.ndarray) -> np.ndarray:
        """Pack ``x_cls`` (B, D) and ``o_cls`` (B, h, d_h) into float16 rows (B, D + h*d_h), clipped to range."""
        x = np.asarray(x_cls, dtype=np.float32)
        o = np.asarray(o_cls, dtype=np.float32).reshape(len(x), -1)
        rows = np.concatenate([x, o], axis=1)
        return np.clip(rows, -_FLOAT16_MAX, _FLOAT16_MAX).astype(np.float16)

    def write(self, slots: np.ndarray, rows: np.ndarray) -> None:
        """Write float16 ``rows`` (n, row_dim) into ``slots`` (n,); call :meth:`flush` before committing.

        Raises:
            OSError: ``ENOSPC`` and friends, as the file system reports them (never a signal).
        """
        if not self.writable or self._fd is None:
            raise IndexReadOnlyError("This index is open for searching only.")
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) == 0:
            return
        self.ensure_capacity(int(slots.max()) + 1)
        for slot in slots.tolist():
            self._verified.pop(slot, None)
        data = np.ascontiguousarray(rows, dtype=np.float16)
        for slot, row in zip(slots.tolist(), data):
            buf = memoryview(row.tobytes())
            offset = slot * self.row_bytes
            while buf:
                n = os.pwrite(self._fd, buf, offset)
                buf, offset = buf[n:], offset + n

    def flush(self) -> None:
        """Make written rows durable (fsync) before the SQLite commit that references them."""
        if self._fd is not None:
            os.fsync(self._fd)

    def valid_rows(
        self, slots: np.ndarray, checks: Sequence[int | None] | None = None, owners: Sequence[str] | None = None,
        chunk: int = 4096,
    ) -> np.ndarray:
        """Which ``slots`` hold their photo's row: inside the file, every value finite, not all zero, and
        matching its checksum where one is recorded.

        A lost or truncated file (slots past its end), a file regrown over a hole (zero rows), one
        overwritten with garbage (NaN and infinities) or with finite rows that are not the photos' own (a
        checksum mismatch) is found here, so the indexer re-encodes those photos.

        Args:
            slots: (n,) slot numbers.
            checks: (n,) the recorded checksums (:func:`core.library.database.qd_checksum`), None entries
                not checked.
            owners: (n,) the relative paths owning the rows (with ``checks``).

        Returns:
            (n,) bool, in the order of ``slots``.
        """
        slots = np.asarray(slots, dtype=np.int64)
        self._map()
        ok = (slots >= 0) & (slots < self._capacity)
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(slots[idx], kind="stable")]  # sequential reads
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            assert self._mm is not None
            rows = np.asarray(self._mm[slots[part]])
            ok[part] = np.isfinite(rows).all(axis=1) & (rows != 0).any(axis=1)
            if checks is not None and owners is not None:
                ok[part] &= _checks_match(rows, [checks[i] for i in part], [owners[i] for i in part])
        return ok

    def rows(self, slots: np.ndarray) -> np.ndarray:
        """The raw float16 rows of ``slots`` (n, row_dim), for checksums (slots must be inside the file)."""
        self._map()
        assert self._mm is not None
        return np.asarray(self._mm[np.asarray(slots, dtype=np.int64)])

    def read(
        self,
        slots: np.ndarray,
        checks: Sequence[int | None] | None = None,
        owners: Sequence[str] | None = None,
        dtype: type = np.float32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read slots, verifying each row against its recorded checksum when given.

        A row whose checksum does not match (finite but not its photo's own) is returned as NaN, so the
        Query-DB re-rank leaves that photo out; :attr:`last_mismatched` counts them for the caller to report.

        Args:
            slots: (n,) slot numbers.
            checks: (n,) recorded checksums (None entries are not checked).
            owners: (n,) relative paths owning the rows (with ``checks``).
            dtype: ``np.float32``, or ``np.float16`` (the rows as stored, no conversion: for a caller that
                converts them itself, e.g. to bf16).

        Returns:
            ``x_cls`` (n, D) and ``o_cls`` (n, h, d_h) of ``dtype``.
        """
        self.last_mismatched = 0
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) and int(slots.max()) >= self._capacity:
            self._map()  # the indexer grew the file since we mapped it
        if len(slots) and int(slots.max()) >= self._capacity:
            raise IndexDamagedError(
                f"The Query-DB cache of this index is shorter than its database: {self.repair_hint}."
            )
        if not len(slots):
            return (
                np.zeros((0, self.embed_dim), dtype),
                np.zeros((0, self.num_heads, self.head_dim), dtype),
            )
        assert self._mm is not None
        raw = np.asarray(self._mm[slots])  # a copy (fancy indexing)
        rows = raw if dtype == np.float16 else raw.astype(dtype)
        bad = np.zeros(len(rows), dtype=bool)
        if checks is not None and owners is not None:
            bad = ~self._verified_match(slots, raw, checks, owners)
            rows[bad] = np.nan  # after the checksums: ``rows`` may be ``raw`` itself
            self.last_mismatched = int(bad.sum())
        if not np.isfinite(rows[~bad]).all():
            raise IndexDamagedError(f"The Query-DB cache of this index holds damaged rows: {self.repair_hint}.")
        return rows[:, : self.embed_dim], rows[:, self.embed_dim :].reshape(-1, self.num_heads, self.head_dim)

    def _verified_match(
        self, slots: np.ndarray, rows: np.ndarray, checks: Sequence[int | None], owners: Sequence[str]
    ) -> np.ndarray:
        """(n,) bool: each float16 row matches its recorded checksum (rows without one pass).

        A row found to match is remembered with its checksum (at most :data:`VERIFIED_MAX` of them) until the
        file is mapped again; a slot written anew comes with a new checksum and is hashed again."""
        from core.library.database import qd_checksum

        ok = np.ones(len(rows), dtype=bool)
        memo = self._verified
        if len(memo) > VERIFIED_MAX:
            memo.clear()
        for j, (slot, c, owner) in enumerate(zip(slots.tolist(), checks, owners)):
            if c is None or memo.get(slot) == c:
                continue
            if qd_checksum(owner, rows[j]) == c:
                memo[slot] = c
            else:
                ok[j] = False
        return ok

    def close(self) -> None:
        """Drop the mapping and close the file."""
        self._mm = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None




def _checks_match(rows: np.ndarray, checks: Sequence[int | None], owners: Sequence[str]) -> np.ndarray:
    """(n,) bool: each float16 row matches its recorded checksum (rows without one pass)."""
    from core.library.database import qd_checksum

    return np.array(
        [c is None or qd_checksum(o, r) == c for r, c, o in zip(rows, checks, owners)], dtype=bool
    )


def _reserve(fd: int, old_size: int, size: int) -> None:
    """Make the file ``size`` bytes long with its blocks allocated (``posix_fallocate``), so later writes
    cannot run out of space; where the file system cannot allocate ahead, just set the size."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, old_size, size - old_size)
            return
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1), errno.ENOSYS):
                raise
    os.ftruncate(fd, size)
