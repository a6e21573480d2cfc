"""What an indexing run reports: progress while it runs, the outcome when it ends, and its failures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import PHSError


@dataclass(frozen=True)
class IndexProgress:
    """Progress of an indexing run, reported after every processed photo.

    Attributes:
        done: Photos processed so far in this run (indexed, reused or failed).
        total: Photos this run has to process (new or changed; unchanged ones are not counted).
        rate: Photos per second so far.
        eta_s: Estimated seconds left, ``None`` until a rate is known.
        current: Relative path of the photo just processed.
        indexed: Photos encoded by the model.
        reused: Photos whose vectors were copied from identical content (renamed, duplicated).
        failed: Photos recorded as failed.
        skipped: Unchanged photos skipped.
    """

    done: int
    total: int
    rate: float
    eta_s: float | None
    current: str | None
    indexed: int
    reused: int
    failed: int
    skipped: int


@dataclass(frozen=True)
class FailedFile:
    """A photo that could not be indexed.

    Attributes:
        rel: Path relative to the photo folder.
        reason: One sentence.
        retry: The reason may pass (permission, input/output error, a vanished file): every plain run
            tries the photo again.
        kept: The photo was indexed before and its last good version stays searchable.
    """

    rel: str
    reason: str
    retry: bool = False
    kept: bool = False


@dataclass(frozen=True)
class IndexReport:
    """The outcome of :func:`core.library.indexer.index_folder`.

    Attributes:
        folder: The photo folder.
        index_dir: The index directory.
        seen: Photo files found by the scan.
        indexed: Encoded by the model in this run.
        reused: Copied from identical content in this run.
        skipped: Unchanged, not opened.
        failed: Recorded as failed in this run (those in ``failures``).
        removed: Rows swept because their files are gone (a deleted sub-album included).
        cancelled: The run was cancelled (nothing swept).
        seconds: Wall time.
        failures: The failures of this run.
        scan_errors: Folders or files the scan could not read, as ``(path, reason)``.
        notes: Sentences about repairs the run made (a damaged database moved aside, a sidecar rebuilt,
            damaged Query-DB cache rows re-encoded).
        waiting: Photos of the index whose last read failed for a reason that may pass, to be retried by
            the next plain run (after this run).
        settling: Files changed less than ``settle_s`` before the scan (probably still being written): left
            for a later run, neither read nor swept.
        done_total: Photos searchable in the index after this run.
    """

    folder: Path
    index_dir: Path
    seen: int
    indexed: int
    reused: int
    skipped: int
    failed: int
    removed: int
    cancelled: bool
    seconds: float
    failures: tuple[FailedFile, ...] = ()
    scan_errors: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    waiting: int = 0
    done_total: int = 0
    settling: int = 0


class FolderVanishedError(PHSError):
    """The photo folder disappeared during a run (an unplugged drive, a dropped network share, a move)."""
