"""The photo index with a counting fake engine: incremental, read-only on photos, mark and sweep, search."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from core.errors import IndexMismatchError
from core.library import (
    IndexBusyError,
    IndexMissingError,
    PhotoIndex,
    index_folder,
    scan_folder,
)
from core.library import store as st
from core.library.store import Database, index_dir_for
from core.library.vectors import VectorIndex
from core.search import Searcher
from core.search.service import rank
from tests.index_fakes import FakeEngine, check_consistency, colour_image, make_folder, tree_hash
from tests.search_helpers import search


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    make_folder(folder, 20)
    return folder


def _done(folder, engine) -> dict[str, str]:
    with PhotoIndex.open(folder, engine) as idx:
        return {r.rel: r.hash for r in idx.db.records() if r.status == "done"}


# ------------------------------------------------------------------------------------------------- scan
def test_scan_skips_hidden_system_and_survives_symlink_loops(tmp_path):
    root = tmp_path / "lib"
    (root / "a" / "b").mkdir(parents=True)
    for rel in ["x.jpg", "a/y.PNG", "a/b/z.webp", ".hidden/h.jpg", "a/.h.jpg", "@eaDir/t.jpg", "a/notes.txt"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    os.symlink(root, root / "a" / "b" / "loop")  # a loop back to the root
    os.symlink(root / "a", root / "again")  # a second way into a folder already walked
    os.symlink(root / "x.jpg", root / "link.jpg")  # a file symlink: followed
    os.symlink(root / "gone.jpg", root / "broken.jpg")  # broken: skipped
    os.mkfifo(root / "fifo.jpg")  # would block a reader forever: skipped
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "o.jpg").write_bytes(b"xy")
    os.symlink(outside, root / "ext")
    found = [f.rel for f in scan_folder(root)]
    assert found == ["link.jpg", "x.jpg", "a/y.PNG", "a/b/z.webp", "ext/o.jpg"]


# --------------------------------------------------------------------------------------------- indexing
def test_index_then_incremental_skip_proven_by_counting(photos):
    engine = FakeEngine()
    seen = []
    report = index_folder(photos, engine, batch_size=4, progress=seen.append)
    assert (report.indexed, report.skipped, report.failed) == (20, 0, 0)
    assert engine.encoded == 20 and engine.calls == 5
    assert [p.done for p in seen] == list(range(21)) and seen[-1].total == 20
    assert seen[-1].eta_s == 0 and seen[-1].rate > 0
    check_consistency(photos, engine)

    again = index_folder(photos, engine, batch_size=4)
    assert (again.indexed, again.skipped) == (0, 20)
    assert engine.encoded == 20 and engine.preprocessed == 20  # nothing opened, decoded or encoded

    # One changed file is re-encoded, and only it.
    target = photos / "img002.png"
    colour_image(999).save(target)
    os.utime(target, ns=(1, 1_000_000_000))
    third = index_folder(photos, engine, batch_size=4)
    assert (third.indexed, third.skipped) == (1, 19)
    assert engine.encoded == 21
    check_consistency(photos, engine)
    with Searcher(photos, engine) as s:
        hit = search(s, engine.feature_of(colour_image(999)), 1)[0]
    assert hit.rel == "img002.png" and hit.score > 0.999


def test_rename_reuses_vectors_and_delete_is_swept(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    before = _done(photos, engine)
    os.rename(photos / "img004.jpg", photos / "album0" / "moved.jpg")
    shutil.copy2(photos / "img008.jpg", photos / "copy_of_8.jpg")
    (photos / "img012.jpg").unlink()
    report = index_folder(photos, engine, batch_size=4)
    assert engine.encoded == 20  # nothing re-encoded
    assert (report.reused, report.removed, report.indexed) == (2, 2, 0)
    after = _done(photos, engine)
    assert "img004.jpg" not in after and "img012.jpg" not in after
    assert after["album0/moved.jpg"] == before["img004.jpg"]
    stats = check_consistency(photos, engine)
    assert stats["ntotal"] == 20 == len(after)
    with Searcher(photos, engine) as s:
        hits = search(s, engine.feature_of(Image.open(photos / "album0" / "moved.jpg")), 2)
    assert hits[0].rel == "album0/moved.jpg" and hits[0].score > 0.999
    with Searcher(photos, engine) as s:
        dup = search(s, engine.feature_of(Image.open(photos / "img008.jpg")), 2)
    assert {h.rel for h in dup} == {"img008.jpg", "copy_of_8.jpg"}


def test_photo_folder_untouched_and_opened_read_only(photos):
    """Hash the tree before and after; also audit every open() under the folder for write modes."""
    before = tree_hash(photos)
    root = os.fspath(photos)
    writes: list[str] = []
    active = [True]

    def audit(event, args):
        if not active[0]:
            return
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0]) if not isinstance(args[0], os.PathLike) else os.fspath(args[0])
            mode, flags = (args[1] or ""), (args[2] or 0)
            writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if path.startswith(root) and writing:
                writes.append(path)
        elif event in ("os.remove", "os.rename", "os.mkdir", "os.chmod", "os.utime") and args:
            if os.fspath(args[0]).startswith(root):
                writes.append(f"{event} {args[0]}")
        elif event == "sqlite3.connect" and args and os.fspath(args[0]).startswith(root):
            writes.append(f"sqlite {args[0]}")

    sys.addaudithook(audit)
    try:
        engine = FakeEngine()
        index_folder(photos, engine, batch_size=3)
        with Searcher(photos, engine) as s:
            search(s, engine.feature_of(colour_image(3)), 5, mode="qd", head_mask=np.array([2.0, 0.0]))
        index_folder(photos, engine, batch_size=3)
    finally:
        active[0] = False
    assert writes == []
    assert tree_hash(photos) == before


def test_read_only_copy_of_folder(photos, tmp_path):
    ro = tmp_path / "ro"
    shutil.copytree(photos, ro)
    for dirpath, _dirnames, filenames in os.walk(ro):
        for n in filenames:
            os.chmod(os.path.join(dirpath, n), 0o444)
        os.chmod(dirpath, 0o555)
    try:
        before = tree_hash(ro)
        report = index_folder(ro, FakeEngine(), batch_size=4)
        assert report.indexed == 20 and report.failed == 0
        assert tree_hash(ro) == before
    finally:
        for dirpath, _, _ in os.walk(ro):
            os.chmod(dirpath, 0o755)


def test_bad_files_recorded_with_reason_and_run_completes(photos):
    (photos / "zero.jpg").write_bytes(b"")
    (photos / "text.png").write_text("not an image")
    buf = io.BytesIO()
    colour_image(5, (400, 300)).save(buf, "JPEG")
    (photos / "trunc.jpg").write_bytes(buf.getvalue()[:300])
    (photos / "bomb.png").write_bytes(_bomb())
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(photos / "cmyk.jpg")
    Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(photos / "g16.png")
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(photos / "pal.png", transparency=0)
    frames = [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(photos / "anim.gif", save_all=True, append_images=frames[1:])
    engine = FakeEngine()
    report = index_folder(photos, engine, batch_size=4)
    reasons = {f.rel: f.reason for f in report.failures}
    assert set(reasons) == {"zero.jpg", "text.png", "trunc.jpg", "bomb.png"}
    assert "empty" in reasons["zero.jpg"] and "not an image" in reasons["text.png"]
    assert "truncated" in reasons["trunc.jpg"] and "too large" in reasons["bomb.png"]
    assert all(r.endswith(".") and "\n" not in r for r in reasons.values())
    assert report.indexed == 24
    stats = check_consistency(photos, engine)
    assert stats == {"done": 24, "failed": 4, "ntotal": 24}
    # Unchanged failures are not retried; --retry-failed retries them.
    assert index_folder(photos, engine).failed == 0
    assert index_folder(photos, engine, retry_failed=True).failed == 4
    # The CMYK photo is indexed with its real colours: it ranks first for a red image.
    with Searcher(photos, engine) as s:
        assert search(s, engine.feature_of(Image.new("RGB", (40, 30), (255, 0, 0))), 1)[0].rel in (
            "cmyk.jpg",
            "anim.gif",
        )


def _bomb() -> bytes:
    from tests.bad_inputs import png_header_only as _png_header_only

    return _png_header_only(100_000, 100_000)


def test_mismatched_fingerprint_refused_with_what_to_do(photos):
    index_folder(photos, FakeEngine("a"), batch_size=8)
    other = FakeEngine("b")  # same model name, other preprocessing
    with pytest.raises(IndexMismatchError) as info:
        Searcher(photos, other)
    msg = str(info.value)
    assert "variant" in msg and "--rebuild" in msg and "phs index" in msg
    with pytest.raises(IndexMismatchError):
        index_folder(photos, other)
    report = index_folder(photos, other, rebuild=True)
    assert report.indexed == 20
    Searcher(photos, other).close()


def test_missing_index_and_other_model(photos, tmp_path):
    with pytest.raises(IndexMissingError, match="phs index"):
        Searcher(photos, FakeEngine())
    index_folder(photos, FakeEngine(), batch_size=8)

    class Other(FakeEngine):
        def fingerprint(self):
            return {**super().fingerprint(), "model": "other"}

    with pytest.raises(IndexMismatchError, match="--model fake"):
        Searcher(photos, Other())


def test_one_writer_at_a_time(photos):
    engine = FakeEngine()
    with PhotoIndex.open(photos, engine, writable=True), pytest.raises(IndexBusyError):
        index_folder(photos, engine)


def test_qd_rerank_equals_exact_recomputation(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=5)
    mask = np.array([2.0, 0.0], np.float32)
    q = engine.feature_of(colour_image(7), mask)
    with Searcher(photos, engine) as s:
        hits = search(s, q, 20, mode="qd", head_mask=mask, candidates=20)
        qo = search(s, q, 20, mode="qo")
    # Exact QD by re-encoding every photo with the mask.
    exact = {}
    for p in photos.rglob("*.*"):
        f = engine.feature_of(Image.open(p), mask)
        exact[p.relative_to(photos).as_posix()] = float(f @ q / np.linalg.norm(f) / np.linalg.norm(q))
    order = sorted(exact, key=lambda r: -exact[r])
    assert [h.rel for h in hits][:5] == order[:5]
    for h in hits:
        assert abs(h.score - exact[h.rel]) < 2e-3  # float16 cache
    assert hits[0].rel == "album1/img007.png"
    assert [h.rel for h in qo] != [h.rel for h in hits]  # QO ranks by the plain DB features: another order
    assert all(h1.score >= h2.score for h1, h2 in zip(hits, hits[1:]))


def test_ivf_past_threshold_recorded_in_sidecar_and_removal_is_incremental(photos, monkeypatch):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=8, approx_threshold=10)
    with PhotoIndex.open(photos, engine, approx_threshold=10) as idx:
        assert idx.sidecar["faiss"]["kind"] == "ivfpq"
        assert idx.vectors().kind == "ivfpq"
    builds = []
    real_build = VectorIndex.build.__func__
    monkeypatch.setattr(VectorIndex, "build", classmethod(lambda cls, *a: builds.append(a[1]) or real_build(cls, *a)))
    (photos / "album1" / "img001.png").unlink()  # removed from the inverted lists, no rebuild
    index_folder(photos, engine, approx_threshold=10)
    assert builds == []
    with Searcher(photos, engine, approx_threshold=10) as s:
        assert s.size == 19 and s.index.vectors().kind == "ivfpq"
        assert search(s, engine.feature_of(colour_image(3)), 1)[0].rel == "album0/img003.png"
    check_consistency(photos, engine)



def test_an_open_searcher_follows_removals_in_query_db_mode(photos):
    """A searcher kept open while a run removes photos: the Query-DB re-rank (candidates from the inverted
    file, looked-up rows kept between queries of one database generation) never shows a removed photo."""
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=8, approx_threshold=10)
    mask = np.ones(engine.num_heads, np.float32)
    q = engine.feature_of(colour_image(3))
    with Searcher(photos, engine, approx_threshold=10) as s:
        first = s.hits(*rank(engine, s, q, k=20, mode="qd", head_mask=mask, candidates=20))
        assert first[0].rel == "album0/img003.png" and len(first) == 20
        (photos / "album0" / "img003.png").unlink()
        (photos / "album1" / "img001.png").unlink()
        index_folder(photos, engine, approx_threshold=10)
        again = s.hits(*rank(engine, s, q, k=20, mode="qd", head_mask=mask, candidates=20))
        rels = [h.rel for h in again]
        assert len(rels) == 18 and "album0/img003.png" not in rels and "album1/img001.png" not in rels
        x, _ = s.states(np.array([h.id for h in first[:1]] + [again[0].id]))  # a removed photo's row: NaN
        assert np.isnan(x[0]).all() and np.isfinite(x[1]).all()

def test_an_index_from_an_earlier_version_with_an_ivf_float16_file_is_rebuilt(photos):
    import faiss

    engine = FakeEngine()
    index_folder(photos, engine, batch_size=8, approx_threshold=10)
    with PhotoIndex.open(photos, engine, approx_threshold=10) as idx:
        directory, dim = idx.directory, idx.dims.feature_dim
    sidecar = json.loads((directory / st.SIDECAR).read_text())
    old = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, 1, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
    )
    old.train(np.eye(dim, dtype=np.float32))
    faiss.write_index(old, str(directory / st.FAISS_FILE))  # what the earlier kind "ivf" wrote
    sidecar["faiss"]["kind"] = "ivf"
    (directory / st.SIDECAR).write_text(json.dumps(sidecar))
    with Searcher(photos, engine, approx_threshold=10) as s:  # a reader rebuilds it in memory
        assert s.size == 20 and s.index.vectors().kind == "ivfpq"
        assert search(s, engine.feature_of(colour_image(3)), 1)[0].rel == "album0/img003.png"
    index_folder(photos, engine, approx_threshold=10)  # the next run writes the new kind
    assert json.loads((directory / st.SIDECAR).read_text())["faiss"]["kind"] == "ivfpq"


def test_cancel_keeps_committed_batches_and_resumes(photos):
    engine = FakeEngine()
    stop = threading.Event()

    def progress(p):
        if p.done >= 9:
            stop.set()

    report = index_folder(photos, engine, batch_size=4, progress=progress, cancel=stop)
    assert report.cancelled and report.removed == 0
    done_first = check_consistency(photos, engine)["done"]
    assert 8 <= done_first <= 12
    encoded_first = engine.encoded
    rest = index_folder(photos, engine, batch_size=4)
    assert not rest.cancelled and rest.indexed == 20 - done_first
    assert engine.encoded - encoded_first == 20 - done_first
    assert check_consistency(photos, engine)["done"] == 20


def test_search_while_indexing_sees_committed_batches(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    make_folder(photos, 12, start=100, sub=False)
    sizes = []
    searcher = Searcher(photos, engine)

    def progress(p):
        if p.done in (1, 6, 11):
            sizes.append(searcher.size)
            assert search(searcher, engine.feature_of(colour_image(3)), 1)[0].rel == "album0/img003.png"

    index_folder(photos, engine, batch_size=4, progress=progress)
    sizes.append(searcher.size)
    searcher.close()
    assert sizes[0] == 20 and sizes[-1] == 32 and sizes == sorted(sizes) and len(set(sizes)) >= 3


def test_faiss_file_lost_or_stale_is_rebuilt_from_sqlite(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    d = index_dir_for(photos, engine.fingerprint())
    (d / "vectors.faiss").write_bytes(b"garbage")
    assert check_consistency(photos, engine)["ntotal"] == 20
    (d / "vectors.faiss").unlink()
    assert check_consistency(photos, engine)["ntotal"] == 20


def test_empty_looking_folder_does_not_wipe_the_index(photos):
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=8)
    for p in list(photos.rglob("*.*")):
        p.unlink()
    report = index_folder(photos, engine)
    assert report.removed == 0 and report.scan_errors
    assert check_consistency(photos, engine)["done"] == 20


def test_non_utf8_and_long_names(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("macOS file systems refuse non-UTF-8 names")
    folder = tmp_path / "names"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9.png")
    colour_image(1).save(os.path.join(folder, odd))
    colour_image(2).save(folder / ("x" * 240 + ".png"))
    engine = FakeEngine()
    assert index_folder(folder, engine).indexed == 2
    with Searcher(folder, engine) as s:
        hit = search(s, engine.feature_of(colour_image(1)), 1)[0]
    assert hit.rel == odd and os.path.exists(hit.path)
    db = Database(index_dir_for(folder, engine.fingerprint()) / "files.sqlite", writable=False)
    assert sorted(r.rel for r in db.records()) == sorted([odd, "x" * 240 + ".png"])
    db.close()


def test_file_changing_while_indexed_is_redone_next_run(photos, monkeypatch):
    from core.library.indexer import Indexer

    target = photos / "img000.jpg"
    original = Indexer._prepare

    def prepare_then_change(self, f, known):
        item = original(self, f, known)
        if f.rel == "img000.jpg" and not target.with_suffix(".flag").exists():
            target.with_suffix(".flag").write_text("")  # once: someone saves a new version meanwhile
            colour_image(777).save(target, quality=95)
            os.utime(target, ns=(5, 5_000_000_000))
        return item

    monkeypatch.setattr(Indexer, "_prepare", prepare_then_change)
    engine = FakeEngine()
    index_folder(photos, engine, batch_size=4)
    report = index_folder(photos, engine, batch_size=4)
    assert report.indexed == 1 and report.skipped == 19  # the stored stat was the old one: redone
    with Searcher(photos, engine) as s:
        hit = search(s, engine.feature_of(Image.open(target)), 1)[0]
    assert hit.rel == "img000.jpg" and hit.score > 0.999


def test_qd_cache_grows_and_keeps_rows(tmp_path):
    from core.library.store import QDCache

    qd = QDCache(tmp_path / "qd.f16", 6, 2, 3, writable=True)
    rng = np.random.default_rng(0)
    x, o = rng.normal(size=(3000, 6)), rng.normal(size=(3000, 2, 3))
    for start in range(0, 3000, 700):  # several growths past the first 1,024 slots
        sl = np.arange(start, min(start + 700, 3000))
        qd.write(sl, QDCache.pack(x[sl], o[sl]))
        qd.flush()
    reader = QDCache(tmp_path / "qd.f16", 6, 2, 3, writable=False)
    xr, orr = reader.read(np.array([0, 1023, 1024, 2999]))
    np.testing.assert_allclose(xr, x[[0, 1023, 1024, 2999]], atol=2e-3)
    np.testing.assert_allclose(orr, o[[0, 1023, 1024, 2999]], atol=2e-3)
    big = QDCache.pack(np.full((1, 6), 1e6), np.zeros((1, 2, 3)))
    assert np.isfinite(big.astype(np.float32)).all()  # clipped to the float16 range, never inf
