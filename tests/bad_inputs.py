"""A generator of bad and odd photo files: what a real personal library holds besides clean JPEGs.

:func:`make_corpus` writes one or more files of every kind into a folder and returns a :class:`Corpus`
whose manifest says, per kind and relative path, whether a correct indexer must index the file
(``"indexed"``) or record it as failed with a one-sentence reason (``"failed"``), and which words that
reason must contain. Everything is small (a few KB per file) except in what it declares: the PNG bomb
declares 10^10 pixels in 100 bytes, the panorama is 20000 x 10 pixels in a few hundred bytes.

Some kinds need the indexing run to cooperate:

* ``unreadable``: mode 000; only a process that is not root is refused (run the indexer unprivileged).
* ``changes_while_indexed`` and ``vanishes_mid_run``: :func:`mid_run_events` rewrites / deletes them between
  the scan (which stat'ed them) and the read.
* ``heic_without_plugin``: indexed where pillow-heif is installed, failed with the install hint where its
  import is blocked (:attr:`Entry.expect_no_heif`).

EXIF-rotated JPEGs (orientations 2-8) each have an upright PNG twin elsewhere in the folder
(:attr:`Corpus.twins`) whose pixels are the rotated file's raw decoded pixels transposed by the EXIF rule,
computed here with Pillow's transpose operations and not with the code under test.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

INDEXED = "indexed"
FAILED = "failed"

#: EXIF orientation -> the transpose that makes the stored pixels upright (EXIF 2.3, tag 0x0112).
EXIF_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Entry:
    """One file of the corpus.

    Attributes:
        kind: What is odd about it (e.g. ``truncated_jpeg``).
        rel: Path relative to the corpus folder, ``/`` separators (may hold surrogate escapes).
        expect: ``"indexed"`` or ``"failed"``.
        words: Lower-case words the failure reason must contain.
        expect_no_heif: The expectation where pillow-heif cannot be imported.
    """

    kind: str
    rel: str
    expect: str
    words: tuple[str, ...] = ()
    expect_no_heif: str | None = None

    def expected(self, *, heif: bool = True) -> str:
        """The expectation with or without the HEIC plugin."""
        return self.expect if heif or self.expect_no_heif is None else self.expect_no_heif


@dataclass
class Corpus:
    """What :func:`make_corpus` wrote.

    Attributes:
        folder: The corpus folder.
        entries: Every file with its expectation.
        twins: Relative path of each EXIF-rotated JPEG -> relative path of its upright twin.
        change_rel: The file rewritten while it is indexed.
        vanish_rel: The file deleted while the run is going on.
    """

    folder: Path
    entries: list[Entry] = field(default_factory=list)
    twins: dict[str, str] = field(default_factory=dict)
    change_rel: str | None = None
    vanish_rel: str | None = None

    @property
    def kinds(self) -> list[str]:
        """The distinct kinds, in the order written."""
        return list(dict.fromkeys(e.kind for e in self.entries))

    def manifest(self, *, heif: bool = True) -> dict[str, dict[str, str]]:
        """``kind -> rel -> "indexed" | "failed"``."""
        out: dict[str, dict[str, str]] = {}
        for e in self.entries:
            out.setdefault(e.kind, {})[e.rel] = e.expected(heif=heif)
        return out

    def expectations(self, *, heif: bool = True) -> dict[str, Entry]:
        """``rel -> Entry``."""
        return {e.rel: e for e in self.entries}


def smooth_image(w: int, h: int, seed: int) -> np.ndarray:
    """A ``(h, w, 3)`` uint8 image of smooth coloured blobs with an asymmetric layout per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(5):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.35) * max(w, h)
        img += rng.uniform(0, 255, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))[..., None]
    img[: h // 3, : w // 4] += rng.uniform(20, 90, 3)  # a corner block breaks every symmetry
    return np.clip(img / 2 + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares ``w x h`` RGB pixels but carries almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _jpeg_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def _with_broken_exif(jpeg: bytes) -> bytes:
    """Insert an APP1 Exif segment whose TIFF header points past its end (a damaged camera file)."""
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\x05\x00\xff\xff" + b"\x00" * 6
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + seg + jpeg[2:]


def make_corpus(folder: str | Path, *, kinds: set[str] | None = None, seed: int = 0) -> Corpus:
    """Write the bad-input corpus into ``folder`` (created) and return its manifest.

    Args:
        folder: Where to write (must be empty or missing).
        kinds: Write only these kinds (all when ``None``).
        seed: Varies the pixels.

    Returns:
        The :class:`Corpus`.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(root)
    counter = iter(range(10_000))

    def want(kind: str) -> bool:
        return kinds is None or kind in kinds

    def rgb(w: int = 64, h: int = 48) -> Image.Image:
        return Image.fromarray(smooth_image(w, h, seed * 1000 + next(counter)), "RGB")

    def add(kind: str, rel: str, expect: str, *words: str, no_heif: str | None = None) -> Path:
        corpus.entries.append(Entry(kind, rel, expect, tuple(words), no_heif))
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(kind: str, rel: str, data: bytes, expect: str, *words: str) -> None:
        add(kind, rel, expect, *words).write_bytes(data)

    # --- damaged or not images at all
    if want("truncated_jpeg"):
        write("truncated_jpeg", "broken/truncated.jpg", _jpeg_bytes(rgb(160, 120))[:400], FAILED, "truncated")
    if want("truncated_png"):
        buf = io.BytesIO()
        rgb(120, 90).save(buf, "PNG")
        write("truncated_png", "broken/truncated.png", buf.getvalue()[: len(buf.getvalue()) // 2], FAILED,
              "truncated")  # fmt: skip
    if want("zero_bytes"):
        write("zero_bytes", "broken/empty.jpg", b"", FAILED, "empty")
    if want("text_named_jpg"):
        write(
            "text_named_jpg", "broken/notes.jpg", b"Shopping list: milk, eggs\n" * 4, FAILED, "not an image"
        )
    if want("png_bomb"):
        write("png_bomb", "broken/bomb.png", png_header_only(100_000, 100_000), FAILED, "too large")
    # --- unusual but valid encodings
    if want("cmyk_jpeg"):
        rgb().convert("CMYK").save(add("cmyk_jpeg", "modes/cmyk.jpg", INDEXED), quality=92)
    if want("png_16bit"):
        arr = (smooth_image(64, 48, seed + 7)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
        Image.fromarray(arr).save(add("png_16bit", "modes/gray16.png", INDEXED))
    if want("grayscale"):
        rgb().convert("L").save(add("grayscale", "modes/gray.jpg", INDEXED), quality=92)
    if want("palette_transparency"):
        pal = rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        pal.save(add("palette_transparency", "modes/palette.png", INDEXED), transparency=0)
    if want("animated_gif"):
        frames = [rgb() for _ in range(3)]
        frames[0].save(add("animated_gif", "modes/anim.gif", INDEXED), save_all=True,
                       append_images=frames[1:], duration=100, loop=0)  # fmt: skip
    if want("animated_webp"):
        frames = [rgb() for _ in range(3)]
        frames[0].save(add("animated_webp", "modes/anim.webp", INDEXED), save_all=True,
                       append_images=frames[1:], duration=100)  # fmt: skip
    if want("webp_lossless"):
        rgb().save(add("webp_lossless", "modes/lossless.webp", INDEXED), lossless=True)
    if want("bmp"):
        rgb().save(add("bmp", "modes/photo.bmp", INDEXED))
    if want("tiff_multipage"):
        pages = [rgb() for _ in range(2)]
        pages[0].save(
            add("tiff_multipage", "modes/pages.tiff", INDEXED), save_all=True, append_images=pages[1:]
        )
    if want("progressive_jpeg"):
        rgb().save(add("progressive_jpeg", "modes/progressive.JPG", INDEXED), quality=90, progressive=True)
    if want("png_named_jpg"):
        rgb().save(add("png_named_jpg", "modes/really_a_png.jpg", INDEXED), format="PNG")
    if want("jpeg_broken_exif"):
        write("jpeg_broken_exif", "modes/broken_exif.jpg", _with_broken_exif(_jpeg_bytes(rgb())), INDEXED)
    # --- HEIC with the plugin, and a second one checked with the plugin's import blocked
    if want("heic") or want("heic_without_plugin"):
        import pillow_heif  # type: ignore[import-not-found]

        for kind, rel in (("heic", "heic/photo.heic"), ("heic_without_plugin", "heic/other.heic")):
            if want(kind):
                p = add(kind, rel, INDEXED, "pillow-heif", no_heif=FAILED)
                pillow_heif.from_pillow(rgb()).save(str(p), quality=90)
    # --- extreme sizes
    if want("tiny_1x1"):
        Image.new("RGB", (1, 1), (200, 40, 40)).save(add("tiny_1x1", "sizes/one_pixel.png", INDEXED))
    if want("panorama_20000x10"):
        strip = np.tile(np.linspace(0, 255, 20000, dtype=np.uint8)[None, :, None], (10, 1, 3))
        Image.fromarray(strip, "RGB").save(add("panorama_20000x10", "sizes/strip_20000x10.png", INDEXED))
    # --- EXIF orientations with upright twins elsewhere
    for o, method in EXIF_TRANSPOSE.items():
        kind = f"exif_orientation_{o}"
        if not want(kind):
            continue
        stored = rgb(72, 44)
        exif = Image.Exif()
        exif[0x0112] = o
        rel = f"rotated/orient{o}.jpg"
        p = add(kind, rel, INDEXED)
        p.write_bytes(_jpeg_bytes(stored, exif=exif.tobytes()))
        with Image.open(p) as raw:  # the raw decode, orientation not applied
            upright = raw.convert("RGB").transpose(method)
        twin = f"upright/twin_of_orient{o}.png"
        upright.save(add("exif_upright_twin", twin, INDEXED))
        corpus.twins[rel] = twin
    # --- file system oddities
    if want("unreadable"):
        p = add("unreadable", "fs/locked.jpg", FAILED, "permission denied")
        rgb().save(p, quality=90)
        os.chmod(p, 0o000)
    if want("symlink_loop"):
        p = add("symlink_loop", "loop/inside.png", INDEXED)
        rgb().save(p)
        os.symlink("..", root / "loop" / "back_to_root")
        os.symlink(".", root / "loop" / "self")
    if want("non_utf8_name"):
        rgb().save(add("non_utf8_name", "names/" + os.fsdecode(b"caf\xe9_\xff\xfe.jpg"), INDEXED), quality=90)
    if want("long_name"):
        rgb().save(add("long_name", "names/" + "l" * 246 + ".png", INDEXED))
    if want("changes_while_indexed"):
        corpus.change_rel = "fs/being_edited.jpg"
        rgb().save(add("changes_while_indexed", corpus.change_rel, INDEXED), quality=90)
    if want("vanishes_mid_run"):
        corpus.vanish_rel = "fs/deleted_meanwhile.jpg"
        rgb().save(add("vanishes_mid_run", corpus.vanish_rel, FAILED, "no such file"), quality=90)
    return corpus


@contextlib.contextmanager
def mid_run_events(corpus: Corpus, *, seed: int = 99) -> Iterator[list[str]]:
    """While active, an indexing run sees ``change_rel`` rewritten and ``vanish_rel`` deleted after its scan.

    The indexer's per-file read step (``Indexer._prepare``, run in its decode pool after the scan stat'ed
    the file) is wrapped so that the file is changed or deleted just before it is read, as when a person
    saves an edit or deletes a photo while the library is being indexed.

    Yields:
        The events that happened, e.g. ``["changed fs/being_edited.jpg"]``.
    """
    from core.library.indexer import Indexer

    original = Indexer._prepare
    events: list[str] = []

    def prepare(self: Indexer, f, known):  # noqa: ANN001 - same signature as the wrapped method
        if f.rel == corpus.change_rel and not any(e.startswith("changed") for e in events):
            Image.fromarray(smooth_image(80, 60, seed), "RGB").save(f.path, quality=85)
            os.utime(f.path, ns=(f.mtime_ns + 7_000_000_000, f.mtime_ns + 7_000_000_000))
            events.append(f"changed {f.rel}")
        elif f.rel == corpus.vanish_rel and os.path.exists(f.path):
            os.unlink(f.path)
            events.append(f"deleted {f.rel}")
        return original(self, f, known)

    Indexer._prepare = prepare  # type: ignore[method-assign]
    try:
        yield events
    finally:
        Indexer._prepare = original  # type: ignore[method-assign]
