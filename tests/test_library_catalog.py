"""One library: every indexed folder listed, removed from disk, and searched at once as one gallery."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import main as phs
from core.errors import PHSError
from core.library import index_folder
from core.library import store as st
from core.library.catalog import library_folders, remove_folder
from core.paths import data_dir
from core.search.multi import MultiGallery
from core.search.searcher import Searcher
from core.search.service import rank
from tests.index_fakes import FakeEngine, make_folder, tree_hash


@pytest.fixture
def two_folders(tmp_path):
    a, b = tmp_path / "A", tmp_path / "trips B"
    make_folder(a, 7)
    make_folder(b, 5, start=40)
    engine = FakeEngine()
    index_folder(a, engine)
    index_folder(b, engine)
    return a, b, engine


def _files_naming(root: Path, text: str) -> list[Path]:
    needle = os.fsencode(text)
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_library_lists_every_indexed_folder(two_folders):
    a, b, _ = two_folders
    entries = library_folders()
    assert [(e.folder, e.photos, e.failed, e.present) for e in entries] == [
        (str(a.resolve()), 7, 0, True), (str(b.resolve()), 5, 0, True),
    ]  # fmt: skip
    assert all(e.bytes_on_disk > 0 and e.last_change > 0 for e in entries)
    assert library_folders(model="no such model") == []


def test_remove_deletes_the_index_and_nothing_names_the_folder(two_folders, capsys):
    a, b, _ = two_folders
    before = tree_hash(b)
    assert phs(["library", "remove", str(b)]) == 0
    assert "Removed" in capsys.readouterr().out
    assert [e.folder for e in library_folders()] == [str(a.resolve())]
    assert _files_naming(data_dir(), str(b.resolve())) == []
    assert tree_hash(b) == before  # the photos are never touched
    assert phs(["library", "list"]) == 0
    out = capsys.readouterr().out
    assert str(a.resolve()) in out and str(b.resolve()) not in out
    assert phs(["library", "remove", str(b)]) == 2
    assert "has no index" in capsys.readouterr().err


def test_remove_refuses_while_a_run_updates_the_index(two_folders):
    a, _, _ = two_folders
    entry = next(e for e in library_folders() if e.folder == str(a.resolve()))
    lock = st.WriterLock(entry.directory / st.LOCK_FILE)
    lock.acquire()
    try:
        with pytest.raises(PHSError, match="Another indexing run"):
            remove_folder(a)
    finally:
        lock.release()
    assert entry.directory.is_dir()


def test_list_json_and_a_vanished_folder(two_folders, capsys):
    a, b, _ = two_folders
    shutil.rmtree(b)
    assert phs(["library", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["folder"], r["present"]) for r in rows} == {(str(a.resolve()), True), (str(b.resolve()), False)}
    assert remove_folder(b)[0].photos == 5  # an index of a folder that is gone can still be removed


@pytest.mark.parametrize("mode", ["qo", "qd"])
def test_folders_searched_together_rank_as_one_folder_would(two_folders, tmp_path, mode):
    a, b, engine = two_folders
    both = tmp_path / "both"
    shutil.copytree(a, both / "A")
    shutil.copytree(b, both / "B")
    index_folder(both, engine)
    query = engine.feature_of(Image.open(sorted(both.rglob("*.png"))[0]))
    mask = np.array([1.0, 0.0], np.float32) * 2
    with Searcher(both, engine) as one, MultiGallery([Searcher(a, engine), Searcher(b, engine)]) as many:
        assert many.size == one.size == 12
        for k in (1, 5, 12):
            s1, i1 = rank(engine, one, query, k=k, mode=mode, head_mask=mask, candidates=3)
            s2, i2 = rank(engine, many, query, k=k, mode=mode, head_mask=mask, candidates=3)
            names1 = [h.rel.split("/", 1)[1] for h in one.hits(s1, i1)]
            names2 = [h.rel for h in many.hits(s2, i2)]
            np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-6)
            assert names1 == names2


@pytest.mark.slow
def test_phs_search_all_with_the_demo_model(tmp_path, capsys):
    a, b = tmp_path / "A", tmp_path / "B"
    make_folder(a, 4, sub=False)
    make_folder(b, 3, sub=False, start=20)
    assert phs(["index", str(a), "--model", "demo", "--quiet"]) == 0
    assert phs(["index", str(b), "--model", "demo", "--quiet"]) == 0
    capsys.readouterr()
    query = sorted(b.iterdir())[0]
    assert phs(["search", "--all", "--image", str(query), "--json", "--k", "10"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 7 and hits[0]["path"] == str(query.resolve())
    assert {Path(h["path"]).parent for h in hits} == {a.resolve(), b.resolve()}
    assert phs(["search", "--image", str(query)]) == 2
    assert "--all" in capsys.readouterr().err


def test_list_escapes_control_characters_in_folder_names(tmp_path, capsys):
    folder = tmp_path / "evil\x1b[31mname"
    make_folder(folder, 2)
    index_folder(folder, FakeEngine())
    assert phs(["library", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31mname" in out
