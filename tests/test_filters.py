"""Filters in the search: date taken (EXIF, else file time), subfolder and file type, over one folder or the
whole library; a narrow filter still fills the top k exactly, on both FAISS index kinds."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

from core.cli import main as phs
from core.errors import PHSError
from core.library import index_folder
from core.library import store as st
from core.library import vectors as vec
from core.library.dates import exif_taken, parse_exif_date, photo_dates, wall_clock
from core.library.filters import PhotoFilter, parse_date
from core.library.vectors import VectorIndex
from core.search.multi import MultiGallery
from core.search.searcher import Searcher
from core.search.service import rank
from tests.index_fakes import FakeEngine, colour_image
from tests.test_vectors import clustered


def _photo(path: Path, seed: int, taken: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = colour_image(seed)
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    img.save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.fixture
def dated(tmp_path):
    """Folder A: 2019 photos at the top, 2023 photos under trips/; folder B: 2023 and one without EXIF."""
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(4):
        _photo(a / f"old{i}.jpg", i, f"2019:05:0{i + 1} 10:00:00")
        _photo(a / "trips" / f"sea{i}.jpg", 10 + i, f"2023:07:1{i} 18:02:05")
    _photo(b / "b0.jpg", 20, "2023:01:02 09:00:00")
    _photo(b / "trips" / "b1.jpg", 21, "2023:12:31 23:59:59")
    plain = _photo(b / "noexif.jpg", 22, None)
    t = time.mktime((2021, 3, 3, 12, 0, 0, 0, 0, -1))
    os.utime(plain, (t, t))
    engine = FakeEngine()
    index_folder(a, engine)
    index_folder(b, engine)
    return a, b, engine


def test_exif_dates_are_read_as_wall_clock(tmp_path):
    p = _photo(tmp_path / "x.jpg", 1, "2023:07:14 18:02:05")
    assert exif_taken(p) == parse_exif_date("2023:07:14 18:02:05") == parse_date("2023-07-14") + 18 * 3600 + 125
    assert exif_taken(_photo(tmp_path / "y.jpg", 1, None)) is None
    assert parse_exif_date("0000:00:00 00:00:00") is None and parse_exif_date("garbage") is None
    os.mkfifo(tmp_path / "fifo.jpg")
    assert exif_taken(tmp_path / "fifo.jpg") is None  # never blocks on a FIFO


def test_indexing_stores_dates_and_fills_an_older_index(dated):
    a, _, engine = dated
    (directory, _), = st.list_indexes(a)
    conn = sqlite3.connect(directory / st.DB_FILE)
    try:
        dates = photo_dates(conn)
        assert sorted(time.gmtime(t).tm_year for t in dates.values()) == [2019] * 4 + [2023] * 4
        # An index written before dates existed: the next plain run reads them (no re-encode).
        conn.execute("DROP TABLE photo_dates")
        conn.commit()
    finally:
        conn.close()
    encoded = engine.encoded
    report = index_folder(a, engine)
    assert report.indexed == 0 and engine.encoded == encoded
    conn = sqlite3.connect(directory / st.DB_FILE)
    try:
        assert sorted(time.gmtime(t).tm_year for t in photo_dates(conn).values()) == [2019] * 4 + [2023] * 4
    finally:
        conn.close()


def test_file_time_counts_without_exif(dated):
    _, b, _ = dated
    (directory, _), = st.list_indexes(b)
    conn = sqlite3.connect(directory / st.DB_FILE)
    try:
        rows = dict(conn.execute("SELECT path, id FROM files").fetchall())
        t = photo_dates(conn)[rows[st.encode_rel("noexif.jpg")]]
    finally:
        conn.close()
    assert time.gmtime(t)[:4] == (2021, 3, 3, 12)
    assert abs(t - wall_clock((b / "noexif.jpg").stat().st_mtime_ns)) < 1


def _names(gallery, engine, flt: PhotoFilter | None, k: int = 20) -> list[str]:
    gallery.set_filter(flt)
    q = engine.feature_of(colour_image(11))
    scores, ids = rank(engine, gallery, q, k=k, mode="qo")
    return [h.rel for h in gallery.hits(scores, ids)]


def test_filters_in_the_search_over_the_library(dated):
    a, b, engine = dated
    with MultiGallery([Searcher(a, engine), Searcher(b, engine)]) as lib:
        every = _names(lib, engine, None)
        assert len(every) == 11
        after = _names(lib, engine, PhotoFilter.from_text(after="2022-01-01"))
        assert sorted(after) == sorted(["trips/sea0.jpg", "trips/sea1.jpg", "trips/sea2.jpg", "trips/sea3.jpg",
                                        "b0.jpg", "trips/b1.jpg"])  # fmt: skip
        assert _names(lib, engine, PhotoFilter.from_text(before="2020")) == [n for n in every if n.startswith("old")]
        assert sorted(_names(lib, engine, PhotoFilter.from_text(under="trips"))) == sorted(
            n for n in every if n.startswith("trips/"))
        assert _names(lib, engine, PhotoFilter.from_text(after="2021-03", before="2021-04")) == ["noexif.jpg"]
        assert _names(lib, engine, PhotoFilter.from_text(types="png")) == []
        # The order among the photos that pass is the unfiltered order: filtering happens in the search.
        assert after == [n for n in every if n in set(after)]
        # Narrow filter, k = 1: still the best photo that passes.
        trips = [n for n in every if n.startswith("trips/")]
        assert _names(lib, engine, PhotoFilter.from_text(under="trips"), k=1) == trips[:1]


def test_bad_filters_are_one_sentence():
    for kwargs, words in [({"after": "2023-02-30"}, "no such date"), ({"after": "July"}, "YYYY"),
                          ({"after": "2024", "before": "2023"}, "come before"), ({"under": "../x"}, "inside")]:  # fmt: skip
        with pytest.raises(PHSError, match=words):
            PhotoFilter.from_text(**kwargs)


@pytest.fixture(scope="module")
def vectors():
    n, d = 6_000, 32
    x = clustered(n, d, clusters=60)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # training with every core's OpenMP threads beside torch's crawls on a busy machine
    try:
        return x, ids, {kind: VectorIndex.build(d, kind, ids, x) for kind in ("flat", "ivfpq")}
    finally:
        faiss.omp_set_num_threads(threads)


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
@pytest.mark.parametrize("share", [0.01, 0.3, 1.0])
def test_search_among_is_exact(vectors, kind, share, monkeypatch):
    """Narrow filters are scanned exactly; wide ones go through the inverted file among the allowed ids."""
    monkeypatch.setattr(vec, "EXACT_AMONG_MAX", 500)
    x, ids, indexes = vectors
    index = indexes[kind]
    rng = np.random.default_rng(1)
    allowed = np.sort(rng.choice(ids, size=int(len(ids) * share), replace=False))
    hit = 0
    for _ in range(20):
        q = x[rng.integers(len(x))]  # a query near the library
        s, i = index.search_among(q, 10, allowed)
        rows = (allowed - 3) // 7
        exact = allowed[np.argsort(-(x[rows] @ q), kind="stable")[:10]]
        assert len(i) == 10 and set(i.tolist()) <= set(allowed.tolist())
        np.testing.assert_allclose(s, x[(i - 3) // 7] @ q, atol=2e-3)  # exact (float16) scores, best first
        assert np.all(np.diff(s) <= 1e-6)
        hit += len(set(i.tolist()) & set(exact.tolist()))
    recall = hit / 200
    assert recall == 1.0 if kind == "flat" or len(allowed) <= 500 else recall >= 0.9, recall


def test_phs_search_filters_with_the_demo_model(tmp_path, capsys):
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(3):
        _photo(a / f"old{i}.jpg", i, "2019:05:01 10:00:00")
        _photo(b / "trips" / f"sea{i}.jpg", 10 + i, "2023:07:14 18:02:05")
    _photo(b / "home.jpg", 30, "2023:01:01 08:00:00")
    for folder in (a, b):
        assert phs(["index", str(folder), "--model", "demo", "--quiet"]) == 0
    capsys.readouterr()
    query = str(a / "old0.jpg")
    assert phs(["search", "--all", "--image", query, "--after", "2022-01-01", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 4 and all(h["path"].startswith(str(b.resolve())) for h in hits)
    assert phs(["search", "--all", "--image", query, "--under", "trips", "--json", "--k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and all("/trips/sea" in h["path"] for h in hits)
    assert phs(["search", "--all", "--image", query, "--after", "2022-13-01"]) == 2
    assert "no such date" in capsys.readouterr().err


def test_query_db_candidates_of_an_inverted_file_pass_the_filter(tmp_path, monkeypatch):
    """The Query-DB re-rank takes its candidates from the inverted file without exact re-scoring; a filter
    holds there too, also where the inverted file itself applies it (many photos pass)."""
    import core.search.searcher as searcher_mod

    folder = tmp_path / "lib"
    for i in range(24):
        _photo(folder / ("trips" if i % 3 == 0 else "home") / f"p{i:02d}.jpg", i, None)
    engine = FakeEngine()
    index_folder(folder, engine, approx_threshold=10)
    flt = PhotoFilter.from_text(under="trips")
    for exact_max in (20_000, 0):  # an exact scan of the few that pass, or the inverted file's selector
        monkeypatch.setattr(searcher_mod, "EXACT_AMONG_MAX", exact_max)
        with Searcher(folder, engine, approx_threshold=10) as s:
            assert s.index.vectors().kind == "ivfpq"
            s.set_filter(flt)
            q = engine.feature_of(colour_image(3))
            cand = s.candidates(q / np.linalg.norm(q), 20)
            assert len(cand) and {h.rel.split("/")[0] for h in s.hits(np.zeros(len(cand)), cand)} == {"trips"}
            mask = np.ones(engine.num_heads, np.float32)
            scores, ids = rank(engine, s, q, k=5, mode="qd", head_mask=mask, candidates=20)
            assert len(ids) == 5 and all(h.rel.startswith("trips/") for h in s.hits(scores, ids))
