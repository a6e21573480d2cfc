"""Reliability and security (issue 6): bad inputs, kill -9 trials, untouched and read-only folders, offline.

File permissions only mean something to a process that is not root, so the permission and read-only cases
run in a child that drops to ``nobody`` (``tests/reliability_worker.py``) in a world-readable temp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.library import PhotoIndex, index_folder
from core.library.indexer import content_hash
from core.search import Searcher
from tests.bad_inputs import EXIF_TRANSPOSE, FAILED, INDEXED, make_corpus
from tests.index_fakes import check_consistency, tree_hash
from tests.kill_trials import BATCH, index_kill_trial, settings_kill_trial
from tests.reliability_worker import CANNOT_DROP, NOBODY, tiny_engine
from tests.search_helpers import search

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


@pytest.fixture
def world_tmp():
    """A temp folder that ``nobody`` can enter (pytest's own tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="phs-rel-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _worker(action: str, args: dict, env: dict | None = None, timeout: int = 120) -> tuple[int, dict, str]:
    """Run the worker; return its exit code, its RESULT object (or ``{"stdout": ...}``) and its stderr."""
    proc = subprocess.run([sys.executable, "-m", "tests.reliability_worker", action, json.dumps(args)],
                          cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if proc.returncode == CANNOT_DROP:
        pytest.skip(f"cannot drop privileges to nobody here: {proc.stderr.strip()}")
    result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")),
                  {"stdout": proc.stdout})  # fmt: skip
    return proc.returncode, result, proc.stderr


def _chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, n), uid, uid)
    os.lchown(root, uid, uid)


def _one_sentence(reason: str, rel: str) -> None:
    assert reason.endswith(".") and "\n" not in reason and "Traceback" not in reason, reason
    assert os.path.basename(rel) in reason or rel in reason, (rel, reason)


# ------------------------------------------------------------------------------------------- bad inputs
def test_bad_input_corpus_every_file_indexed_correctly_or_failed_with_a_reason(world_tmp, engine):
    corpus = make_corpus(world_tmp / "photos")
    assert len(corpus.kinds) >= 20 and len(corpus.twins) == 7
    data = world_tmp / "data"
    data.mkdir(mode=0o777)
    os.chmod(data, 0o777)
    if os.geteuid() == 0:  # the library belongs to the person who runs the indexer, not to root
        _chown_tree(corpus.folder, NOBODY)
    rc, res, err = _worker("index", {"folder": str(corpus.folder), "engine": "tiny", "as_nobody": True,
                                     "events": True, "change_rel": corpus.change_rel,
                                     "vanish_rel": corpus.vanish_rel}, env={"PHS_DATA_DIR": str(data)})  # fmt: skip
    assert rc == 0 and "Traceback" not in err, err[-3000:]
    assert res["uid"] != 0
    assert sorted(res["events"]) == sorted([f"changed {corpus.change_rel}", f"deleted {corpus.vanish_rel}"])
    assert res["scan_errors"] == []

    os.environ["PHS_DATA_DIR"] = str(data)  # the autouse fixture restores it
    with PhotoIndex.open(corpus.folder, engine) as idx:
        rows = {r.rel: r for r in idx.db.records()}
    expect = corpus.expectations()
    assert set(rows) == set(expect)  # nothing lost, nothing extra (the symlink loop adds no second copy)
    for rel, e in expect.items():
        row = rows[rel]
        assert (INDEXED if row.status == "done" else FAILED) == e.expect, (e.kind, rel, row.error)
        if row.status == "failed":
            _one_sentence(row.error, rel)
            assert all(w in row.error.lower() for w in e.words), (e.kind, row.error)
        else:
            assert row.error is None
    reported = dict(map(tuple, res["failures"]))
    assert reported == {rel: rows[rel].error for rel in rows if rows[rel].status == "failed"}
    # The file edited while indexed holds the hash of the content read, which is the content now.
    changed = corpus.folder / corpus.change_rel
    assert rows[corpus.change_rel].hash == content_hash(changed.read_bytes())
    check_consistency(corpus.folder, engine)  # FAISS = SQLite, QD cache gives back every stored feature

    # EXIF-rotated photos: their upright twin (elsewhere in the folder) ranks first.
    with Searcher(corpus.folder, engine) as s:
        for rotated, twin in corpus.twins.items():
            engine.set_image(corpus.folder / rotated)
            hits = [h for h in search(s, engine.feature(None), 5) if h.rel != rotated]
            assert hits[0].rel == twin and hits[0].score > 0.999, (rotated, [(h.rel, h.score) for h in hits])
            assert hits[1].score < 0.99
            # The test can fail: the stored pixels, not turned upright, do not match the twin.
            with Image.open(corpus.folder / rotated) as raw:
                raw_rgb = raw.convert("RGB")
            o = int(rotated.split("orient")[1][0])
            assert o in EXIF_TRANSPOSE
            engine.set_image(Image.fromarray(np.asarray(raw_rgb)))  # pixels only, no EXIF: as stored
            wrong = search(s, engine.feature(None), 10)
            assert not any(h.rel == twin and h.score > 0.999 for h in wrong)


def test_heic_without_the_plugin_is_recorded_with_the_install_hint(tmp_path):
    corpus = make_corpus(tmp_path / "photos", kinds={"heic", "heic_without_plugin", "grayscale"})
    rc, res, err = _worker("index", {"folder": str(corpus.folder), "engine": "fake", "block_heif": True})
    assert rc == 0, err[-2000:]
    failures = dict(map(tuple, res["failures"]))
    expected_failed = {e.rel for e in corpus.entries if e.expected(heif=False) == FAILED}
    assert set(failures) == expected_failed == {"heic/photo.heic", "heic/other.heic"}
    for rel, reason in failures.items():
        _one_sentence(reason, rel)
        assert "pip install" in reason and "pillow-heif" in reason
    assert res["indexed"] == 1  # the grayscale JPEG


# ------------------------------------------------------------------------------------------ kill trials
def test_indexer_killed_at_random_points_resumes_with_at_most_one_batch_redone(tmp_path):
    trials = [index_kill_trial(tmp_path / f"trial{s}", seed=100 + s) for s in range(5)]
    killed = [t for t in trials if t.killed]
    assert len(killed) >= 4, trials  # a run that finishes before its kill is a rare, valid outcome
    for t in trials:
        assert t.consistent_after_kill and not t.error, t
        assert 0 <= t.lost <= BATCH and t.batches_redone <= 1, t
        assert t.redone_exactly_missing and t.final_done == 36, t
    assert len({t.kill_after_batches for t in killed}) >= 2  # the kills land at different points


def test_settings_file_survives_kills_and_concurrent_saves(tmp_path):
    trials = [settings_kill_trial(tmp_path / "one", seed=s) for s in range(5)]
    trials += [settings_kill_trial(tmp_path / "two", seed=10 + s, writers=2) for s in range(3)]
    for t in trials:
        assert t.killed and t.saves_seen and t.valid, t.detail


# ---------------------------------------------------------------------------------- untouched folder, GUI
@pytest.mark.gui
def test_gui_open_index_box_search_leaves_the_folder_byte_identical(qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    from phs_gui.main_window import MainWindow
    from phs_gui.settings import Preferences
    from tests.test_gui import drag_box

    corpus = make_corpus(tmp_path / "photos", kinds={"truncated_jpeg", "zero_bytes", "cmyk_jpeg", "grayscale",
                                                     "animated_gif", "exif_orientation_6", "exif_orientation_3",
                                                     "symlink_loop", "non_utf8_name", "png_16bit"})  # fmt: skip
    folder = corpus.folder
    before = tree_hash(folder)
    w = MainWindow(Preferences(model="tiny"), engine_loader=lambda n, d: tiny_engine(), check_weights=False)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    try:
        w.load_model("tiny", "cpu")
        qtbot.waitUntil(lambda: w.session is not None, timeout=30000)
        w.prefs.folders = [str(folder)]
        w.library.select_folder(str(folder))  # not indexed yet: the window indexes it
        qtbot.waitUntil(lambda: not w.indexing and w.session.indexed_count > 0, timeout=30000)
        assert w.session.indexed_count == sum(e.expect == INDEXED for e in corpus.entries)
        photo = str(folder / "rotated" / "orient6.jpg")
        w.query.open_photo(photo)
        qtbot.waitUntil(lambda: w.photo_path == photo and w.query._encoding is None, timeout=30000)
        drag_box(qtbot, w, [5, 5, 40, 60])
        qtbot.waitUntil(lambda: w.outcome is not None and w.outcome.selection is not None, timeout=30000)
        assert w.outcome.hits and Path(w.outcome.hits[0].path).name in ("orient6.jpg", "twin_of_orient6.png")
    finally:
        w.close()
    assert tree_hash(folder) == before


# ----------------------------------------------------------------------------- read-only folder and index
@pytest.fixture
def tiny_weights(world_tmp):
    import torch
    from safetensors.torch import save_file

    from core.method.engine import load_engine
    from tests.conftest import perturb_

    torch.manual_seed(0)
    eng = load_engine("test-vit", pretrained=False, device="cpu")
    perturb_(eng.model, seed=1)
    path = world_tmp / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in eng.model.state_dict().items()}, str(path))
    os.chmod(path, 0o644)
    return path


def test_read_only_folder_and_index_search_works_indexing_says_so(world_tmp, tiny_weights, engine):
    """Root indexes; ``nobody`` (who can write neither the folder nor the index) searches and tries to index."""
    from core.cli import main

    folder = world_tmp / "photos"
    corpus = make_corpus(folder, kinds={"cmyk_jpeg", "grayscale", "exif_orientation_6", "bmp", "webp_lossless",
                                        "tiny_1x1", "zero_bytes"})  # fmt: skip
    data = world_tmp / "data"
    data.mkdir()
    os.environ["PHS_DATA_DIR"] = str(data)  # owned by root, 0755: read-only to nobody
    common = ["--model", "test-vit", "--weights", str(tiny_weights), "--device", "cpu"]
    assert main(["index", str(folder), *common, "--quiet"]) == 1  # the zero-byte file failed
    index_folder(folder, engine, batch_size=4)  # the window's model, for the GUI below
    query = str(folder / "rotated" / "orient6.jpg")
    search = ["search", "--folder", str(folder), "--image", query, *common, "--k", "3", "--json"]
    assert main(search) == 0  # root searches once, so the index is as any reader leaves it
    before, before_index = tree_hash(folder), tree_hash(data)
    env = {
        "PHS_DATA_DIR": str(data),
        "MPLCONFIGDIR": str(world_tmp / "mpl"),
        "XDG_RUNTIME_DIR": str(world_tmp),
    }
    rc, out, err = _worker("cli", {"argv": search, "as_nobody": True}, env=env)
    assert rc == 0, err[-2000:]
    hits = json.loads(out["stdout"][out["stdout"].index("[") :])
    assert len(hits) == 3 and Path(hits[0]["path"]).name in ("orient6.jpg", "twin_of_orient6.png")

    rc, _, err = _worker(
        "cli", {"argv": ["index", str(folder), *common, "--quiet"], "as_nobody": True}, env=env
    )
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "read-only" in lines[0] and "searching works" in lines[0]

    rc, res, err = _worker(
        "gui_readonly", {"folder": str(folder), "photo": query, "as_nobody": True}, env=env
    )
    assert rc == 0, err[-3000:]
    assert res["uid"] != 0 and len(res["hits"]) == sum(e.expect == INDEXED for e in corpus.entries)
    assert res["level"] == "error" and "read-only" in res["banner"] and "searching works" in res["banner"]
    assert "\n" not in res["banner"] and "Traceback" not in res["banner"]
    assert tree_hash(folder) == before and tree_hash(data) == before_index


# ---------------------------------------------------------------------------------------- offline, no weights
@pytest.mark.parametrize("command", ["search", "index"])
def test_offline_cli_without_weights_is_one_sentence(tmp_path, command):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "a.png")
    argv = (["search", "--folder", str(folder), "--image", str(folder / "a.png")] if command == "search"
            else ["index", str(folder)])  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub"),
           "HF_HOME": str(tmp_path / "empty-home"), "PHS_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "core.cli", *argv, "--model", "dinov2-b14", "--device", "cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "phs download dinov2-b14" in err and "demo" in err and err.endswith(".")


@pytest.mark.gui
def test_gui_without_weights_says_one_sentence_and_runs_the_demo_model(qtbot, tmp_path, monkeypatch):
    pytest.importorskip("pytestqt")
    from core.errors import WeightsNotFoundError
    from core.method.engine import load_engine
    from phs_gui.main_window import MainWindow
    from phs_gui.settings import Preferences

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(WeightsNotFoundError):
        load_engine("dinov2-b14")  # really no weights here
    asked: list[str] = []

    def loader(name: str, device: str):
        asked.append(name)
        if name != "demo":
            return load_engine(name, device="cpu")  # raises: the window must never ask for it
        return tiny_engine()  # stands in for the demo weights, which tests do not require

    w = MainWindow(Preferences(model="dinov2-b14"), engine_loader=loader, demo_count=4)
    qtbot.addWidget(w)
    w.show()
    try:
        w.start()
        text = w.banner.text
        assert w.banner.level == "demo" and "under Model" in text and "demo model" in text
        assert "DINOv2 ViT-B/14" in text and "--" not in text and "`" not in text  # the app's words, not the CLI's
        assert text.endswith(".") and "\n" not in text and text.count(". ") == 0
        qtbot.waitUntil(lambda: w.session is not None and not w.indexing, timeout=30000)
        assert asked == ["demo"] and w.is_demo and "demo" in w.windowTitle()
    finally:
        w.shutdown()
