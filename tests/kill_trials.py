"""SIGKILL trials shared by ``tests/test_reliability.py`` and ``bench/reliability_report.py``.

* :func:`index_kill_trial`: start the indexer in a child (``tests.index_crash_worker`` with the counting
  fake engine), kill it at a random point of its run, check the index (FAISS = SQLite, no duplicate, no
  orphan, every done row's QD cache gives back its stored feature), resume to completion and count what was
  redone.
* :func:`settings_kill_trial`: kill a child that saves the preferences file in a tight loop, then check that
  the file parses to a complete, internally consistent preferences object.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
N_PHOTOS = 36
BATCH = 4


@contextlib.contextmanager
def data_dir_at(path: Path) -> Iterator[Path]:
    """Point ``PHS_DATA_DIR`` (this process and its children) at ``path`` for the block."""
    old = os.environ.get("PHS_DATA_DIR")
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PHS_DATA_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("PHS_DATA_DIR", None)
        else:
            os.environ["PHS_DATA_DIR"] = old


@dataclass
class IndexTrial:
    """What one indexer kill trial saw.

    Attributes:
        killed: The child was killed by SIGKILL (not finished before the kill).
        kill_after_batches: The kill came this many committed-or-encoded batches into the run (and a random
            fraction of the next one).
        encoded_before_kill: Images the killed run had encoded.
        done_after_kill: Done rows found after the kill.
        lost: Encoded images that were not committed (redone by the restart).
        batches_redone: ``ceil(lost / batch)``.
        redone_exactly_missing: The restart encoded exactly the photos missing after the kill.
        consistent_after_kill: FAISS/SQLite/QD checks passed after the kill.
        final_done: Done rows after the restart.
        error: The failed check, if any.
    """

    killed: bool
    kill_after_batches: int
    encoded_before_kill: int
    done_after_kill: int
    lost: int
    batches_redone: int
    redone_exactly_missing: bool
    consistent_after_kill: bool
    final_done: int
    error: str = ""

    @property
    def survived(self) -> bool:
        """Consistent after the kill, complete after the restart, at most one batch redone."""
        return (self.consistent_after_kill and not self.error and self.final_done == N_PHOTOS
                and self.redone_exactly_missing and 0 <= self.lost <= BATCH)  # fmt: skip


def _encoded(log: Path) -> int:
    lines = log.read_text().split() if log.exists() else []
    return int(lines[-1]) if lines else 0


def index_kill_trial(workdir: Path, seed: int) -> IndexTrial:
    """One trial in a fresh ``workdir``: photos, a fresh index, a kill at a random point, a restart."""
    from core.library import index_folder
    from tests.index_fakes import FakeEngine, check_consistency, make_folder

    rng = random.Random(seed)
    folder = workdir / "photos"
    if not folder.exists():
        make_folder(folder, N_PHOTOS)
    log = workdir / "encoded.log"
    log.unlink(missing_ok=True)
    n_batches = N_PHOTOS // BATCH
    after = rng.randrange(0, n_batches)  # 0: during start-up, scan or the first batch
    with data_dir_at(workdir / "data"):
        cmd = [
            sys.executable,
            "-m",
            "tests.index_crash_worker",
            str(folder),
            str(log),
            "none",
            "0",
            str(BATCH),
        ]
        proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _encoded(log) < after * BATCH and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))  # inside the next batch (the fake engine sleeps 20 ms per batch)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        killed = proc.returncode == -signal.SIGKILL
        if not killed and proc.returncode != 0:
            raise RuntimeError(f"the indexer child failed: {err.decode()[-2000:]}")
        engine = FakeEngine()
        encoded = _encoded(log)
        try:
            after_kill = check_consistency(folder, engine)
            consistent, error = True, ""
        except Exception as exc:  # an index that cannot even be opened counts as inconsistent
            if not killed or encoded:
                after_kill, consistent, error = {"done": 0}, False, f"{type(exc).__name__}: {exc}"
            else:  # killed before the index existed: nothing to check
                after_kill, consistent, error = {"done": 0}, True, ""
        lost = encoded - after_kill["done"]
        report = index_folder(folder, engine, batch_size=BATCH)
        exact = engine.encoded == N_PHOTOS - after_kill["done"]
        try:
            final = check_consistency(folder, engine)
        except AssertionError as exc:
            final, error = {"done": -1}, error or f"after restart: {exc}"
        if report.cancelled or report.failed:
            error = error or "the restart did not complete"
    return IndexTrial(killed, after, encoded, after_kill["done"], lost, -(-max(lost, 0) // BATCH), exact,
                      consistent, final["done"], error)  # fmt: skip


@dataclass
class SettingsTrial:
    """What one settings-file kill trial saw.

    Attributes:
        killed: The saving child was killed (it never finishes on its own).
        saves_seen: Whether the file existed when the kill came.
        valid: The file parsed as JSON to a complete, internally consistent preferences object.
        detail: What was wrong, if anything.
    """

    killed: bool
    saves_seen: bool
    valid: bool
    detail: str = ""


def check_settings_file(path: Path) -> str:
    """Return ``""`` if ``path`` holds a complete, consistent preferences file, else what is wrong."""
    from phs_gui.settings import Preferences, load_preferences

    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return f"does not parse: {exc}"
    names = {f.name for f in fields(Preferences)}
    if not isinstance(raw, dict) or set(raw) != names:
        return "not a complete preferences object"
    prefs = load_preferences(path)
    prefix = prefs.current_folder.rsplit("/", 1)[0] + "/"
    if not prefs.folders or not all(f.startswith(prefix) for f in prefs.folders):
        return "mixes two saves"
    i = int(prefix.split("/")[2])
    if prefs.search.top_k != i % 400 + 1:
        return "top_k does not belong to the save"
    return ""


def settings_kill_trial(workdir: Path, seed: int, *, writers: int = 1) -> SettingsTrial:
    """Kill ``writers`` children that save the same preferences file in tight loops; check the file."""
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "settings.json"
    path.unlink(missing_ok=True)
    procs = []
    for w in range(writers):
        args = json.dumps({"path": str(path), "start": w * 1_000_000})
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.reliability_worker", "settings_loop", args],
                                      cwd=REPO, env=os.environ.copy(), stderr=subprocess.PIPE))  # fmt: skip
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.005)
    problems = []
    stop = time.monotonic() + rng.uniform(0.05, 0.4)
    while time.monotonic() < stop:  # read while they write: a reader must never see a torn file
        problem = check_settings_file(path)
        if problem:
            problems.append(problem)
            break
    seen = path.exists()
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    errs = [p.communicate(timeout=30)[1].decode() for p in procs]
    killed = all(p.returncode == -signal.SIGKILL for p in procs)
    if not killed:
        problems.append("a writer stopped by itself: " + " | ".join(e[-500:] for e in errs))
    problem = check_settings_file(path)
    if problem:
        problems.append(f"after the kill: {problem}")
    return SettingsTrial(killed, seen, not problems, "; ".join(problems))
