"""The FAISS side of an index: the index kind by size, adds and removals on every kind, recall of the IVF."""

from __future__ import annotations

import numpy as np
import pytest

from core.library.vectors import (
    APPROX_THRESHOLD,
    KINDS,
    VectorIndex,
    choose_kind,
    ivf_nlist,
    ivf_nprobe,
    refine_count,
)


def clustered(n: int, dim: int = 64, clusters: int = 200, seed: int = 0, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres (noise as large as the centre: in-cluster cosine ~0.5)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    noise = spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    x = centers[rng.integers(0, clusters, n)] + noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_kind_by_size():
    assert choose_kind(APPROX_THRESHOLD - 1) == "flat"
    assert choose_kind(APPROX_THRESHOLD) == "ivfpq"
    assert choose_kind(5, threshold=5) == "ivfpq"
    assert 10_000 <= APPROX_THRESHOLD <= 25_000  # the exact scan stays within ~2.5 ms below it (one core)
    assert (ivf_nlist(100_000), ivf_nprobe(ivf_nlist(100_000))) == (1265, 127)
    assert (ivf_nlist(1_000_000), ivf_nprobe(ivf_nlist(1_000_000))) == (4000, 400)
    assert ivf_nlist(10) == 1 and ivf_nprobe(1) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_add_remove_search_save_load_on_every_kind(kind, tmp_path):
    x = clustered(3000)
    ids = np.arange(1000, 4000, dtype=np.int64)
    vi = VectorIndex.build(64, kind, ids, x)
    assert vi.kind == kind and vi.ntotal == 3000
    assert np.array_equal(np.sort(vi.ids()), ids)
    _, got = vi.search(x[:3], 1)
    assert got[:, 0].tolist() == [1000, 1001, 1002]

    vi.remove(np.array([1000, 1001], np.int64))
    assert vi.ntotal == 2998 and 1000 not in set(vi.ids().tolist())
    _, got = vi.search(x[:2], 5)
    assert not ({1000, 1001} & set(got.ravel().tolist()))

    vi.add(np.array([7], np.int64), x[:1])  # an update: the row comes back under a new id
    _, got = vi.search(x[:1], 1)
    assert got[0, 0] == 7 and vi.ntotal == 2999

    vi.save(tmp_path / "v.faiss")
    back = VectorIndex.load(tmp_path / "v.faiss", 64, kind)
    assert back is not None and back.ntotal == 2999 and np.array_equal(np.sort(back.ids()), np.sort(vi.ids()))
    other = "flat" if kind == "ivfpq" else "ivfpq"
    assert VectorIndex.load(tmp_path / "v.faiss", 64, other) is None
    data = (tmp_path / "v.faiss").read_bytes()
    (tmp_path / "torn.faiss").write_bytes(data[: len(data) // 2])  # a file cut short: rebuilt, not an error
    assert VectorIndex.load(tmp_path / "torn.faiss", 64, kind) is None
    assert VectorIndex.load(tmp_path / "v.faiss", 32, kind) is None
    assert VectorIndex.load(tmp_path / "v.faiss", 64, "hnsw") is None  # an older kind is rebuilt


def test_ivfpq_returns_exact_scores_and_fills_small_indexes():
    x = clustered(30_000, seed=3)
    ids = np.arange(5, 30_005, dtype=np.int64)
    vi = VectorIndex.build(64, "ivfpq", ids, x)
    q = x[:20]
    scores, got = vi.search(q, 50)
    assert (got >= 0).all() and scores.dtype == np.float32
    want = np.einsum("qd,qkd->qk", q, x[got - 5])  # the float32 inner products of the returned ids
    assert np.abs(scores - want).max() < 2e-3  # re-scored with the float16 copy, not the 4-bit codes
    assert (np.diff(scores, axis=1) <= 0).all()
    assert refine_count(100) == 300 and refine_count(1) == 64 and refine_count(1000) == 1300
    for n in (0, 6, 300):  # too few points for 16 codes per sub-quantiser: still trained and searchable
        tiny = VectorIndex.build(64, "ivfpq", ids[:n], x[:n])
        assert tiny.ntotal == n
        if n:
            assert tiny.search(x[:1], 3)[1][0, 0] == 5


def test_an_earlier_ivf_file_is_not_loaded(tmp_path):
    import faiss

    old = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(64), 64, 4, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
    )
    x = clustered(400)
    old.train(x)
    old.add_with_ids(x, np.arange(400, dtype=np.int64))
    faiss.write_index(old, str(tmp_path / "v.faiss"))
    assert VectorIndex.load(tmp_path / "v.faiss", 64, "ivf") is None
    assert VectorIndex.load(tmp_path / "v.faiss", 64, "ivfpq") is None


def test_ivf_recall_at_100_on_clustered_features():
    x = clustered(20_000, seed=1)
    rng = np.random.default_rng(2)
    q = x[rng.choice(len(x), 50, replace=False)] + 0.3 / 8 * rng.standard_normal((50, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = np.arange(len(x), dtype=np.int64)
    exact = VectorIndex.build(64, "flat", ids, x)
    ivf = VectorIndex.build(64, "ivfpq", ids, x)
    assert ivf.nlist == ivf_nlist(20_000) == 500 and ivf.nprobe == 50
    _, gt = exact.search(q, 100)
    _, got = ivf.search(q, 100)
    recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(gt.tolist(), got.tolist())])
    assert recall >= 0.95, recall
    # an index whose cells were trained on far fewer vectors than it now holds gets re-trained
    small = VectorIndex.build(64, "ivfpq", ids[:2000], x[:2000])
    assert not small.needs_retraining(3000) and small.needs_retraining(8000)


def test_faiss_builds_are_alternatives():
    import tomllib
    from pathlib import Path

    from core.errors import PHSError
    from core.library.vectors import check_faiss_install, installed_faiss

    check_faiss_install(["faiss-cpu"])
    check_faiss_install(["faiss-gpu-cu12"])
    with pytest.raises(PHSError, match="install_faiss_gpu.sh"):
        check_faiss_install(["faiss-cpu", "faiss-gpu-cu12"])
    assert len(installed_faiss()) == 1  # this environment
    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    every = [*meta["dependencies"], *(d for ds in meta["optional-dependencies"].values() for d in ds)]
    assert [d for d in every if d.startswith("faiss")] == ["faiss-cpu>=1.8"]  # no extra pulls in a second build


def test_a_full_disk_while_writing_an_ivfpq_file_raises_its_oserror_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import core.library.vectors as vectors

    x = clustered(2000)
    vi = VectorIndex.build(64, "ivfpq", np.arange(2000, dtype=np.int64), x)
    vi.save(tmp_path / "v.faiss")
    before = (tmp_path / "v.faiss").read_bytes()

    class FullDisk:
        def __init__(self, room: int) -> None:
            self.room = room

        def write(self, data: bytes) -> int:
            self.room -= len(data)
            if self.room < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

    with pytest.raises(OSError) as info:
        vectors._write_index(vi.index, FullDisk(10_000))
    assert info.value.errno == errno.ENOSPC  # not FAISS's RuntimeError: the store maps it to one sentence

    real = vectors._write_index
    monkeypatch.setattr(vectors, "_write_index", lambda index, fh: real(index, fh) if index is vi.index else
                        (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))  # fmt: skip
    vi.remove(np.array([0], np.int64))
    with pytest.raises(OSError):
        vi.save(tmp_path / "v.faiss")
    assert (tmp_path / "v.faiss").read_bytes() == before and list(tmp_path.iterdir()) == [tmp_path / "v.faiss"]
    assert VectorIndex.load(tmp_path / "v.faiss", 64, "ivfpq").ntotal == 2000


def test_a_query_unlike_any_photo_searches_more_cells(monkeypatch):
    """A query farther from every cell's centre than the library's photos are from theirs has its nearest
    neighbours spread over many cells: it searches UNLIKE_PROBE_FACTOR times the cells, and finds them."""
    from core.library import vectors as vec

    x = clustered(20000, dim=64, clusters=200, seed=0)
    ids = np.arange(len(x), dtype=np.int64)
    vi = VectorIndex.build(64, "ivfpq", ids, x)
    flat = VectorIndex.build(64, "flat", ids, x)
    rng = np.random.default_rng(5)
    near = x[rng.choice(len(x), 20)] + 0.3 * rng.standard_normal((20, 64)).astype(np.float32) / 8
    far = rng.standard_normal((20, 64)).astype(np.float32)
    near, far = (q / np.linalg.norm(q, axis=1, keepdims=True) for q in (near, far))
    assert {vi.probes(q[None])[0] for q in near} == {vi.nprobe}
    assert {vi.probes(q[None])[0] for q in far} == {min(vi.nlist, vec.UNLIKE_PROBE_FACTOR * vi.nprobe)}

    def recall(qs: np.ndarray) -> float:
        return float(np.mean([len(set(vi.search(q[None], 50)[1][0]) & set(flat.search(q[None], 50)[1][0])) / 50
                              for q in qs]))  # fmt: skip

    adaptive = recall(far)
    monkeypatch.setattr(vec, "UNLIKE_PROBE_FACTOR", 1)
    assert recall(far) < adaptive - 0.05 and adaptive >= 0.95
    assert recall(near) >= 0.95
    # a filtered search of an unlike query covers the same cells (the inverted file, not an exact scan)
    monkeypatch.setattr(vec, "EXACT_AMONG_MAX", 0)
    sel_ids = ids[::2]
    s, got = vi.search_among(far[0], 20, sel_ids)
    assert set(got.tolist()) <= set(sel_ids.tolist()) and len(got) == 20
