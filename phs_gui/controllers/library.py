"""The library: the photo folders, which of them are searched (one search over all checked folders), opening
their indexes (a worker job, never the GUI thread), indexing, and the demo gallery."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from core.library import IndexProgress, IndexReport
from core.synthetic.gallery import demo_gallery_dir, demo_gallery_ready, gallery_categories
from phs_gui.jobs import (
    OpenedFolder,
    demo_job,
    index_job,
    index_summary,
    indexed_folders,
    open_library_job,
    remove_index_job,
)
from phs_gui.result_rows import shown
from phs_gui.session import SearchSession
from phs_gui.settings import Preferences
from phs_gui.workers import SerialLane, Worker, WorkerPool

DEMO_LABEL = "Demo gallery (synthetic)"
REOPEN_S = 3.0
"""While a searched folder is indexed, what the run has committed is opened for searching this often."""


def demo_first_marks(photo: str) -> dict:
    """The first query's marks on a demo scene: a box around its largest object, from the gallery's COCO
    annotations (``{}`` when they cannot be read), with the object's category as ``label``."""
    import json

    try:
        coco = json.loads((Path(photo).parent / "annotations.json").read_text("utf-8"))
        image = next(im for im in coco["images"] if im["file_name"] == Path(photo).name)
        objs = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        best = max(objs, key=lambda a: a["bbox"][2] * a["bbox"][3])
        x, y, w, h = (float(v) for v in best["bbox"])
        label = next((c["name"] for c in coco["categories"] if c["id"] == best["category_id"]), "object")
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return {}
    return {"photo": photo, "box": [x, y, x + w, y + h], "label": str(label)}


def demo_query_photo() -> str:
    """A demo scene with several objects, as the first query photo (``""`` without the gallery)."""
    folder = demo_gallery_dir()
    cats = gallery_categories(folder)
    for name in sorted(cats):
        if len(cats[name]) >= 3 and (folder / name).is_file():
            return str(folder / name)
    files = sorted(folder.glob("*.jpg"))
    return str(files[0]) if files else ""


class LibraryController(QObject):
    """Owns the folder list and which folders are searched (in the preferences) and the runs over them.

    The current folder (chosen in the list) is the one indexed, whose progress and failed files are shown; the
    search runs over every checked folder with a usable index.

    Signals:
        folders_changed(list, str, dict, list): folders, the current one, labels for special ones, and the
            folders searched (checked).
        left_out(dict): checked folders that are not searched now, each with one sentence saying why.
        status(str): the library panel's one line.
        progress(object): an :class:`IndexProgress`, or ``(done, total)`` while the demo gallery is written.
        finished_bar(): the bar is full (the folder is searchable as a whole).
        running(bool): an indexing or demo-gallery run starts or ends.
        failures(list): the failed files of the current folder.
        count(int, list): photos searched now and the folders they are in (none: no folder is searched).
        searchable_changed(): what a search sees changed: ask again.
        first_photo(str, dict): a photo to open when none is shown (the demo gallery's query) and the marks it
            opens with (a box around one of its objects).
        message(str, str, object, str): a sentence, its level, an optional ``(label, slot)``, its kind.
        message_withdrawn(str): the message of that kind no longer holds.
    """

    folders_changed = Signal(list, str, dict, list)
    left_out = Signal(dict)
    message_withdrawn = Signal(str)
    status = Signal(str)
    progress = Signal(object)
    finished_bar = Signal()
    running = Signal(bool)
    failures = Signal(list)
    count = Signal(int, list)
    searchable_changed = Signal()
    first_photo = Signal(object, dict)
    message = Signal(str, str, object, str)

    def __init__(self, prefs: Preferences, pool: WorkerPool, lane: SerialLane, demo_count: int,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.pool = pool
        self.lane = lane
        self.demo_count = demo_count
        self.session: SearchSession | None = None
        self._indexing: Worker | None = None
        self._indexing_folder = ""
        self._report: IndexReport | None = None  # the run whose summary waits for the folder to reopen
        self._reopening = False  # a run ended; its folder is being opened again
        self._added_seen, self._reopened_at = 0, 0.0  # photos a run added, when they were last opened
        self._opening = 0  # open jobs submitted and not answered
        self._open_seq = 0
        self._demo: Worker | None = None
        self._searched: tuple[tuple[str, ...], int] | None = None  # (folders, photos) the last answer searched
        self._listed: list[str] = []  # the folders of the list, in order
        self._left_out: dict[str, str] = {}  # the checked folders not searched, as last said
        self._removing: set[str] = set()  # folders whose index is being deleted

    @property
    def indexing(self) -> bool:
        """An indexing run is in progress, or its folder is being opened again to search what it added."""
        return self._indexing is not None or self._reopening

    @property
    def busy(self) -> bool:
        """Indexing, writing the demo gallery, or opening a folder's index."""
        return self.indexing or self._demo is not None or self._opening > 0

    def refresh(self) -> None:
        """Tell the panel the folder list again: the folders added here, then every other folder indexed with
        this model (from the command line too), which are listed but not remembered in the settings."""
        folders = list(self.prefs.folders)
        folders += [f for f in indexed_folders(self.session) if f not in folders]
        self._listed = folders
        self.folders_changed.emit(folders, self.prefs.current_folder, {str(demo_gallery_dir()): DEMO_LABEL},
                                  self.searched_folders())

    def searched_folders(self) -> list[str]:
        """The folders of the list whose check box is on (every folder new to the list is)."""
        return [f for f in self._listed if f not in self.prefs.not_searched and f not in self._removing]

    def set_searched(self, folder: str, on: bool) -> None:
        """Search ``folder`` (``on``) or stop searching it; the search reruns over the folders checked now."""
        unchecked = [f for f in self.prefs.not_searched if f != folder]
        self.prefs.not_searched = unchecked if on else [*unchecked, folder]
        self.open_current(index_if_missing=False, during_run=True)

    def set_session(self, session: SearchSession, is_demo: bool) -> None:
        """A model was loaded: open the current folder's index for it (the demo gallery on the demo model)."""
        self.session = session
        self._searched = None
        if is_demo and not demo_gallery_ready():
            self._make_demo_gallery()
            return
        if is_demo:
            if str(demo_gallery_dir()) not in self.prefs.folders:
                self.add_folder(str(demo_gallery_dir()), select=True)
            if not self.prefs.last_photo or not Path(self.prefs.last_photo).is_file():
                self._emit_first_photo()
        self.refresh()  # the folders indexed with this model
        self.open_current(index_if_missing=is_demo)

    # ------------------------------------------------------------------------------------------ folders
    def add_folder(self, folder: str, select: bool) -> None:
        """Remember a folder (and search it from now on when ``select``)."""
        self.prefs.add_folder(folder)
        if select:
            self.prefs.current_folder = folder
        self.refresh()

    def select_folder(self, folder: str) -> None:
        """Search ``folder`` from now on (indexing it first if it has no index for this model)."""
        self.prefs.current_folder = folder
        self.refresh()
        self.open_current(index_if_missing=True)

    def remove_folder(self, folder: str) -> None:
        """Remove a folder from the library: off the list, and its index for this model deleted from disk in
        the engine lane (after the index is closed); its photos are never touched."""
        if self._indexing is not None and self._indexing_folder == folder:
            self.message.emit("That folder is being indexed; cancel the run first, then remove it.", "info", None, "")
            return
        if self.session is not None:
            w = Worker(remove_index_job, self.session, folder, doing=f"removing the index of {folder}")
            w.signals.result.connect(lambda freed, f=folder: self._on_removed(f, freed))
            w.signals.error.connect(lambda text, f=folder: (self._removing.discard(f),
                                                            self.message.emit(text, "error", None, ""), self.refresh()))
            self._open_seq += 1
            self.lane.submit(f"remove:{self._open_seq}", w)
        self.prefs.folders = [f for f in self.prefs.folders if f != folder]
        self.prefs.not_searched = [f for f in self.prefs.not_searched if f != folder]
        self._removing.add(folder)  # listed until its index is deleted, no longer searched
        if self.prefs.current_folder == folder:
            self.prefs.current_folder = self.prefs.folders[0] if self.prefs.folders else ""
            self.failures.emit([])
            if not self.prefs.current_folder:
                self.status.emit("No folder yet: add one to search your photos.")
        self.refresh()
        self.open_current(index_if_missing=False, during_run=True)

    def _on_removed(self, folder: str, freed: int) -> None:
        self._removing.discard(folder)
        if freed:
            self.message.emit(f"Removed {shown(folder)} from the library: its index ({freed / 1e6:.1f} MB) is "
                              "deleted; the photos are untouched.", "info", None, "")  # fmt: skip
        self.refresh()

    def open_current(self, index_if_missing: bool, during_run: bool = False, reopen: str = "") -> None:
        """Search the checked folders and read the current folder's failures, in the engine lane; ``during_run``:
        only what is searched changes (counts and results), the current folder's line stays; ``reopen``: a
        folder whose index is opened again (what a run committed)."""
        if self.session is None:
            return
        self._opening += 1
        if self.prefs.current_folder and not self.indexing and not during_run:
            self.status.emit(f"Opening the index of {shown(Path(self.prefs.current_folder).name)}…")
        w = Worker(open_library_job, self.session, self.prefs.current_folder, self.searched_folders(), reopen,
                   doing="opening the indexes")
        w.signals.result.connect(lambda out, i=index_if_missing, r=during_run: self._on_opened(out, i, r))
        w.signals.error.connect(lambda text, r=during_run: self._on_open_error(text, r))
        self._open_seq += 1
        self.lane.submit(f"open:{self._open_seq}", w)  # each its own kind: none replaces another

    def _on_open_error(self, text: str, during_run: bool) -> None:
        self._opening -= 1
        if not during_run:
            self._report, self._reopening = None, False
        self.message.emit(text, "error", None, "")
        self._emit_count()
        self._maybe_idle()

    def _on_opened(self, out: OpenedFolder, index_if_missing: bool, during_run: bool = False) -> None:
        self._opening -= 1
        self._show_left_out(out, index_if_missing)
        if during_run:  # what is searched changed (checks, a run's commits): counts and results only
            self._emit_count()
            self._notify_searchable(out)
            self._maybe_idle()
            return
        report, self._report, self._reopening = self._report, None, False
        if out.folder != self.prefs.current_folder:
            return  # another folder was chosen meanwhile; its own open follows
        if out.missing and out.folder:
            if index_if_missing:
                self.start_indexing(out.folder)
            else:
                self.status.emit("This folder is not indexed with this model yet: press Index.")
        elif out.error:
            self.message.emit(out.error, "error", None, "")
        elif out.folder:
            self._show_opened(out, report)
        self._emit_count()
        self._maybe_idle()
        self._notify_searchable(out)

    def refresh_searched(self, folder: str) -> None:
        """The index of ``folder`` changed in the background: when it is searched, open it again so that counts
        and results say so (and search again even if the number of photos is the same)."""
        if self.session is None or folder not in self.searched_folders() or self.indexing:
            return
        self._searched = None
        self.open_current(index_if_missing=False, during_run=True, reopen=folder)

    def _notify_searchable(self, out: OpenedFolder) -> None:
        if (out.searched, out.searched_count) != self._searched:  # the same photos: the answer shown holds
            self._searched = (out.searched, out.searched_count)
            self.searchable_changed.emit()

    def _show_left_out(self, out: OpenedFolder, index_if_missing: bool) -> None:
        """Say which checked folders are not searched (one sentence), except one that is being indexed or is
        about to be."""
        skip = {self._indexing_folder} if self._indexing is not None else set()
        if index_if_missing and out.missing:
            skip.add(out.folder)
        problems = {f: why for f, why in out.left_out.items() if f not in skip}
        self.left_out.emit(problems)
        if problems == self._left_out:
            return
        self._left_out = problems
        if not problems:
            self.message_withdrawn.emit("left-out")
            return
        first = next(iter(problems.values()))
        more = f" ({len(problems) - 1} more checked folders are not searched; see Library)" \
            if len(problems) > 1 else ""
        self.message.emit(f"{first.rstrip('.')}{more}.", "info", None, "left-out")  # not withdrawn by a search

    def _show_opened(self, out: OpenedFolder, report: IndexReport | None) -> None:
        if report is None:
            self.status.emit(f"{out.count} photos indexed. Press Index to add new or changed photos.")
        elif report.cancelled:
            self.status.emit(f"Cancelled after {report.indexed + report.reused} new photos; press Index to "
                             "resume.")
        else:
            self.status.emit(index_summary(out.count, report))
        if report is None or not report.cancelled:  # a cancelled run keeps its bar where it stopped
            self.finished_bar.emit()
        self.failures.emit(out.failures)

    def _emit_count(self) -> None:
        s = self.session
        self.count.emit(s.indexed_count if s is not None else 0, [str(f) for f in s.folders] if s else [])

    # ----------------------------------------------------------------------------------------- indexing
    def start_indexing(self, folder: str) -> None:
        """Index ``folder`` in a worker (new and changed photos only; an interrupted run resumes)."""
        if self.session is None or self._indexing is not None:
            return
        if not Path(folder).is_dir():
            self.message.emit(f"The folder {folder} is not available (moved, deleted or on an unplugged drive).",
                              "error", None, "")
            return
        self._indexing_folder = folder
        self._added_seen, self._reopened_at = 0, time.monotonic()
        self.failures.emit([])  # the list belongs to the folder being indexed now
        self.running.emit(True)
        self.status.emit("Scanning the folder…")
        w = Worker(index_job, folder, self.session.index_engine, doing=f"indexing {folder}",
                   progress_interval_s=0.1)
        w.signals.progress.connect(self._on_progress)
        w.signals.result.connect(self._on_indexed)
        w.signals.error.connect(self._on_index_error)
        w.signals.finished.connect(self._index_finished)
        self._indexing = self.pool.start(w)

    def cancel_indexing(self) -> None:
        """Ask the indexing run to stop after the current photo (what it did is kept; Index resumes)."""
        if self._indexing is not None:
            self._indexing.cancel()
            self.status.emit("Cancelling…")

    def _on_progress(self, p: IndexProgress) -> None:
        self.progress.emit(p)
        added = p.indexed + p.reused
        if (self._indexing_folder in self.searched_folders() and added > self._added_seen
                and time.monotonic() - self._reopened_at >= REOPEN_S and self._opening == 0):
            # What the run committed is searchable now: open it, so results and counts say so.
            self._added_seen, self._reopened_at = added, time.monotonic()
            self.open_current(index_if_missing=False, during_run=True, reopen=self._indexing_folder)

    def _on_indexed(self, report: IndexReport) -> None:
        if report.failures:
            first = report.failures[0]
            more = f" ({len(report.failures)} photos could not be indexed; see Failed files)" \
                if len(report.failures) > 1 else ""
            self.message.emit(f"{first.reason.rstrip('.')}{more}.", "error", None, "")
        elif report.notes:  # a repair the run made (a damaged index rebuilt): worth knowing, not an error
            self.message.emit(report.notes[0], "info", None, "")
        if report.cancelled:
            self.status.emit(f"Cancelled after {report.indexed + report.reused} new photos; press Index to resume.")
        if self.prefs.current_folder == self._indexing_folder:
            self._report = report  # summarised once the folder is open again with what the run added
            self._reopening = True
            self.open_current(index_if_missing=False, reopen=self._indexing_folder)
        else:
            self.open_current(index_if_missing=False, during_run=True, reopen=self._indexing_folder)

    def _on_index_error(self, text: str) -> None:
        # A full disk, a vanished folder, a locked or damaged index: what was committed stays searchable.
        self.message.emit(text, "error", None, "")
        self.status.emit("Indexing stopped.")
        if self.prefs.current_folder == self._indexing_folder:
            self._reopening = True
            self.open_current(index_if_missing=False, reopen=self._indexing_folder)

    def _index_finished(self) -> None:
        self._indexing = None
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.indexing and self._demo is None:
            self.running.emit(False)

    # ------------------------------------------------------------------------------------- demo gallery
    def _make_demo_gallery(self) -> None:
        self.running.emit(True)
        self.status.emit("Writing the demo gallery of synthetic scenes…")
        w = Worker(demo_job, self.demo_count, doing="writing the demo gallery")
        w.signals.progress.connect(self._on_demo_progress)
        w.signals.result.connect(self._on_demo_written)
        w.signals.error.connect(lambda t: self.message.emit(t, "error", None, ""))
        w.signals.finished.connect(self._demo_finished)
        self._demo = self.pool.start(w)

    def _demo_finished(self) -> None:
        self._demo = None
        self._maybe_idle()

    def _on_demo_progress(self, p: tuple[int, int]) -> None:
        self.progress.emit(p)
        self.status.emit(f"Writing the demo gallery: {p[0]} of {p[1]} scenes")

    def _emit_first_photo(self) -> None:
        photo = demo_query_photo()
        self.first_photo.emit(photo, demo_first_marks(photo) if photo else {})

    def _on_demo_written(self, folder: Path) -> None:
        self._demo = None
        self.add_folder(str(folder), select=True)
        self.start_indexing(str(folder))
        self._emit_first_photo()
