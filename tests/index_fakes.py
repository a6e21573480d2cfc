"""Helpers for the index tests: a tiny counting fake engine, photo folders, tree hashes, consistency checks.

The fake engine follows the :class:`core.method.engine.PHSEngine` contract that the index uses (``fingerprint``,
dims, ``preprocess``, ``encode_batch``, ``features_from_cache``) with features that are a deterministic
function of the pixels, and counts every image it encodes so tests can prove what was (not) re-encoded.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.library.photo_index import PhotoIndex

S = 32  # fake input side
H, DH = 2, 4
D = H * DH


@dataclass(frozen=True, eq=False)
class FakeEncoded:
    """Same fields as :class:`core.method.engine.EncodedBatch`."""

    features: np.ndarray
    x_cls: np.ndarray
    o_cls: np.ndarray


class FakeEngine:
    """Deterministic, counting stand-in for the PHS engine.

    ``X_cls`` and ``O[CLS]`` are fixed random projections of 2x2-pooled colour means; the feature for a head
    mask ``m`` is ``X_cls + concat_i(m_i O_i)`` (so the plain feature is the mask of ones).

    Args:
        variant: Goes into the fingerprint (a different variant = a different preprocessing).
        delay_s: Sleep per encoded batch (crash tests).
        log_path: If set, the total number of images encoded so far is appended to this file after every
            batch (fsynced), so that a parent process knows how much work a killed run did.
    """

    feature_dim = D
    embed_dim = D
    num_heads = H
    head_dim = DH
    input_size = S

    def __init__(self, variant: str = "a", delay_s: float = 0.0, log_path: str | None = None) -> None:
        self.variant = variant
        self.delay_s = delay_s
        self.log_path = log_path
        rng = np.random.default_rng(1234)
        self.wx = rng.normal(size=(12, D)).astype(np.float32)
        self.wo = rng.normal(size=(12, H * DH)).astype(np.float32)
        self.encoded = 0  # images encoded
        self.calls = 0  # encode_batch calls
        self.preprocessed = 0

    def fingerprint(self) -> dict:
        return {"model": "fake", "weights": "none", "input_size": S, "variant": self.variant}

    def preprocess(self, img: Image.Image) -> np.ndarray:
        self.preprocessed += 1
        arr = (
            np.asarray(img.convert("RGB").resize((S, S), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        )
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def _stats(self, x: np.ndarray) -> np.ndarray:
        b = x.shape[0]
        q = x.reshape(b, 3, 2, S // 2, 2, S // 2).mean(axis=(3, 5))  # (B, 3, 2, 2)
        return (q.reshape(b, 12) - 0.5) * 4.0

    def encode_batch(self, batch: np.ndarray) -> FakeEncoded:
        x = np.asarray(batch)
        st = self._stats(x)
        x_cls = st @ self.wx
        o_cls = np.tanh(st @ self.wo).reshape(-1, H, DH)
        feats = self.features_from_cache(x_cls, o_cls, np.ones(H, np.float32))
        self.calls += 1
        self.encoded += len(x)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.log_path:
            with open(self.log_path, "a") as fh:
                fh.write(f"{self.encoded}\n")
                fh.flush()
                os.fsync(fh.fileno())
        return FakeEncoded(feats.astype(np.float32), x_cls.astype(np.float32), o_cls.astype(np.float32))

    def features_from_cache(self, x_cls, o_cls, head_mask=None, strategy="before+scale") -> np.ndarray:
        x_cls = np.asarray(x_cls, np.float32)
        o_cls = np.asarray(o_cls, np.float32)
        m = np.ones(H, np.float32) if head_mask is None else np.asarray(head_mask, np.float32)
        return x_cls + (o_cls * m[None, :, None]).reshape(len(x_cls), -1)

    def feature_of(self, img: Image.Image, head_mask=None) -> np.ndarray:
        """The (D,) raw feature of one image, without counting."""
        enc_before, calls_before = self.encoded, self.calls
        log, self.log_path = self.log_path, None
        e = self.encode_batch(self.preprocess(img)[None])
        self.encoded, self.calls, self.log_path = enc_before, calls_before, log
        self.preprocessed -= 1
        return self.features_from_cache(e.x_cls, e.o_cls, head_mask)[0]


def colour_image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A distinct image per seed: four coloured quadrants plus noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    for i, (ys, xs) in enumerate(
        [(slice(0, h // 2), slice(0, w // 2)), (slice(0, h // 2), slice(w // 2, w)),
         (slice(h // 2, h), slice(0, w // 2)), (slice(h // 2, h), slice(w // 2, w))]
    ):  # fmt: skip
        arr[ys, xs] = rng.integers(0, 256, 3)
        del i
    arr = np.clip(arr.astype(np.int16) + rng.integers(-6, 7, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_folder(root: Path, n: int, *, sub: bool = True, start: int = 0) -> list[Path]:
    """Write ``n`` distinct small photos (PNG and JPEG, some in sub-folders) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        folder = root / f"album{i % 3}" if sub and i % 2 else root
        folder.mkdir(exist_ok=True)
        p = folder / (f"img{i:03d}.png" if i % 4 else f"img{i:03d}.jpg")
        colour_image(i).save(p, quality=95) if p.suffix == ".jpg" else colour_image(i).save(p)
        paths.append(p)
    return paths


def touch(paths) -> None:
    """Move every file of ``paths`` one second later (content unchanged), so the next run stats it as changed."""
    for p in paths:
        os.utime(p, ns=(1, p.stat().st_mtime_ns + 10**9))


def tree_hash(root: Path) -> str:
    """Hash of every path, type, mode, size, mtime and content under ``root`` (symlinks not followed)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(os.fsencode(os.path.relpath(p, root)))
            h.update(f"{st.st_mode}:{st.st_size}:{st.st_mtime_ns}".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    h.update(fh.read())
            elif os.path.islink(p):
                h.update(os.fsencode(os.readlink(p)))
    return h.hexdigest()


def check_consistency(folder: Path, engine: FakeEngine) -> dict[str, int]:
    """Assert the index invariants; return counts.

    FAISS count = done rows, FAISS ids = done ids without duplicates, QD slots unique and inside the cache,
    and every done row's QD cache recomputes its stored feature (so no crash left torn QD rows).
    """
    with PhotoIndex.open(folder, engine) as idx:
        vi = idx.vectors()
        ids = vi.ids()
        done = idx.db.done_ids()
        assert vi.ntotal == len(done), (vi.ntotal, len(done))
        assert len(np.unique(ids)) == len(ids), "duplicate FAISS ids"
        assert np.array_equal(np.sort(ids), done), "FAISS ids differ from the done rows"
        rows = idx.db.conn.execute(
            "SELECT id, slot, feature FROM files WHERE status = 'done' ORDER BY id"
        ).fetchall()
        slots = np.array([r[1] for r in rows], dtype=np.int64)
        assert len(np.unique(slots)) == len(slots)
        if len(rows):
            x, o = idx.qd.read(slots)
            f = engine.features_from_cache(x, o, None)
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            stored = np.stack([np.frombuffer(r[2], np.float32) for r in rows])
            np.testing.assert_allclose(f, stored, atol=5e-3)
        counts = idx.db.counts()
        # Searching for each stored vector finds itself.
        if len(rows):
            top, _ = vi.search(stored[:5], 1)
            assert (top[:, 0] > 0.999).all()
        return {"done": counts.get("done", 0), "failed": counts.get("failed", 0), "ntotal": vi.ntotal}
