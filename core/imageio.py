"""Open a photo the way every part of PHS desktop needs it: RGB, upright, decoded no larger than needed.

:func:`load_image` is the one entry point (the engine's ``set_image``, the indexer and the GUI all call it):

* EXIF orientation is applied before anything else, so prompt coordinates given on the displayed photo are
  the coordinates of the returned image.
* A JPEG much larger than ``draft_size`` is decoded at a reduced scale by libjpeg's DCT scaling
  (:meth:`PIL.Image.Image.draft`): a 12-megapixel photo headed for a 224 px model decodes at 1/8 scale,
  several times faster and with a fraction of the memory. The result is never smaller than ``draft_size``
  on either side (the squash resize to the model input still does the final resampling).
* Every mode becomes 8-bit RGB correctly: CMYK (including Adobe's inverted CMYK) through Pillow's
  conversion, 16-bit and 32-bit grayscale scaled (not clipped) to 8 bits, palette and alpha images
  composited over white, animated GIF/WebP reduced to their first frame.
* HEIC/HEIF through ``pillow-heif`` when it is installed (``pip install 'phs-desktop[heic]'``); AVIF through
  Pillow itself when built with it, else through ``pillow-heif``.
* Anything that cannot be decoded raises :class:`core.errors.ImageLoadError` with one sentence naming the
  file and the reason; decompression bombs (more than :data:`MAX_PIXELS` pixels) are refused before any
  pixel is decoded.

Files are only ever opened for reading.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL import features as _pil_features

from core.errors import ImageLoadError

#: File name suffixes (lower case) that the scanner offers to :func:`load_image`. HEIC/HEIF are listed even
#: without ``pillow-heif`` so that such photos are recorded with a reason instead of silently ignored.
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif",
        ".png", ".webp", ".bmp", ".dib",
        ".tif", ".tiff", ".gif",
        ".heic", ".heif", ".hif", ".avif",
    }
)  # fmt: skip

HEIF_SUFFIXES: frozenset[str] = frozenset({".heic", ".heif", ".hif"})

#: Largest image (width * height) that is decoded; larger declared sizes are refused as decompression
#: bombs. Pillow's own default (about 179 million pixels before an error), enough for large panoramas.
MAX_PIXELS: int = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 178_956_970

_HEIF_HINT = "install pillow-heif (pip install 'phs-desktop[heic]') to read HEIC/HEIF photos"
_heif_lock = threading.Lock()
_heif_state: bool | None = None


def heif_available() -> bool:
    """Return whether HEIC/HEIF photos can be decoded, registering pillow-heif's opener on first call."""
    global _heif_state
    with _heif_lock:
        if _heif_state is None:
            try:
                import pillow_heif  # type: ignore[import-not-found]

                pillow_heif.register_heif_opener()
                _heif_state = True
            except Exception:  # ImportError, or a broken binary wheel: both mean "not available"
                _heif_state = False
        return _heif_state


def avif_available() -> bool:
    """Return whether AVIF photos can be decoded (Pillow built with AVIF, or pillow-heif)."""
    try:
        if _pil_features.check("avif"):
            return True
    except (ValueError, OSError):
        pass
    return heif_available()


def _display_name(source: object) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name or str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the image data"
    return "the image"


def _suffix(source: object) -> str:
    return Path(source).suffix.lower() if isinstance(source, (str, Path)) else ""


def _reason(err: BaseException) -> str:
    """Turn a Pillow / OS exception into a short lower-case reason without a trailing period."""
    if isinstance(err, Image.DecompressionBombError):
        return f"it is too large to decode safely (more than {MAX_PIXELS:,} pixels)"
    if isinstance(err, UnidentifiedImageError):
        return "it is not an image in a format PHS desktop can read"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, FileNotFoundError):
        return "the file does not exist"
    if isinstance(err, IsADirectoryError):
        return "it is a folder, not a file"
    text = " ".join(str(err).split()).rstrip(".")
    if "truncated" in text.lower() or isinstance(err, EOFError):
        return "the file is truncated or damaged"
    return (
        f"the file is damaged or unsupported ({type(err).__name__}: {text})"
        if text
        else (f"the file is damaged or unsupported ({type(err).__name__})")
    )


def _check_size(img: Image.Image) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ValueError(f"invalid size {w}x{h}")
    if w * h > MAX_PIXELS:
        raise Image.DecompressionBombError(f"{w * h} pixels")


def _apply_draft(img: Image.Image, draft_size: int | None) -> None:
    """Ask the JPEG decoder for a DCT-scaled image no smaller than ``draft_size`` on each side."""
    if not draft_size or img.format != "JPEG":
        return
    w, h = img.size
    if min(w, h) < 2 * draft_size:  # no reduction possible without going below draft_size
        return
    # draft() keeps the mode when asked for the current one; it picks the largest scale 1/2, 1/4 or 1/8
    # whose result is still at least (draft_size, draft_size).
    img.draft(img.mode, (draft_size, draft_size))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited over white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            arr = arr.astype(np.float64)
            finite = arr[np.isfinite(arr)]
            hi = float(finite.max()) if finite.size else 1.0
            scale = 255.0 if hi <= 1.0 else (255.0 / 65535.0 if hi > 255.0 else 1.0)
            arr = np.nan_to_num(arr) * scale
        elif mode.startswith("I;16") or (arr.size and int(arr.max()) > 255):
            arr = arr.astype(np.float64) * (255.0 / 65535.0)  # 16-bit samples, also 16-bit PNGs read as "I"
        out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(out, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK (incl. Adobe inverted), YCbCr, LAB, HSV, RGBX


def _decode(img: Image.Image, draft_size: int | None) -> Image.Image:
    _check_size(img)
    if getattr(img, "is_animated", False):
        img.seek(0)
    _apply_draft(img, draft_size)
    img.load()
    img = ImageOps.exif_transpose(img)
    return _to_rgb(img)


def load_image(
    source: str | Path | bytes | bytearray | memoryview | Image.Image,
    *,
    draft_size: int | None = None,
) -> Image.Image:
    """Open a photo as an upright 8-bit RGB image.

    Args:
        source: A file path, the encoded bytes of a file, or an already opened :class:`PIL.Image.Image`
            (not modified; EXIF orientation is applied to a copy if the image still carries it).
        draft_size: When given, a JPEG at least twice this size on its shorter side is decoded at a
            reduced scale (1/2, 1/4 or 1/8) that keeps both sides at least ``draft_size`` pixels.
            Pass the model's input side; ``None`` decodes at full resolution.

    Returns:
        A loaded RGB image, EXIF orientation applied; size ``(W, H)`` in its own pixels (the original
        size, or the draft-reduced one).

    Raises:
        ImageLoadError: The file cannot be read or decoded; the message is one sentence naming the file
            and the reason.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image_bytes(source, draft_size=draft_size)
    name = _display_name(source)
    heif_available()  # registers pillow-heif's opener when it is installed
    if isinstance(source, Image.Image):
        try:
            source.load()
            out = _to_rgb(ImageOps.exif_transpose(source))
            return source.copy() if out is source else out
        except Exception as err:
            raise ImageLoadError(f"Cannot open {name}: {_reason(err)}.") from err
    path = Path(source)
    _check_suffix(name, path.suffix.lower())
    try:
        with _open_regular(path, name) as fh:  # read-only, never anything else
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise ImageLoadError(f"Cannot open {name}: it is empty (0 bytes).")
            if size > MAX_FILE_BYTES:
                raise ImageLoadError(
                    f"Cannot open {name}: it is {_megabytes(size)}, larger than the "
                    f"{_megabytes(MAX_FILE_BYTES)} limit for a photo file."
                )
            try:
                with Image.open(fh) as img:
                    return _decode(img, draft_size)
            except UnidentifiedImageError:
                fh.seek(0)
                if fh.read(4) not in (b"II*\x00", b"MM\x00*"):
                    raise
                fh.seek(0)
                return _float64_tiff(fh.read(), name)  # a TIFF Pillow cannot identify: 64-bit float samples?
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(
            f"Cannot open {name}: it is too large to decode in the available memory."
        ) from None
    except Exception as err:  # Pillow raises many types (OSError, ValueError, SyntaxError, struct.error...)
        raise ImageLoadError(f"Cannot open {name}: {_reason(err)}.") from err


def _open_regular(path: Path, name: str) -> io.BufferedReader:
    """Open ``path`` for reading, refusing anything but a regular file.

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor (no race with a
    rename): opening a FIFO for reading would otherwise wait forever for a writer, and a device could
    stream without end.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageLoadError(f"Cannot open {name}: it is a folder, not a file.")
        if not stat.S_ISREG(mode):
            raise ImageLoadError(f"Cannot open {name}: it is not a regular file (a pipe, socket or device).")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def decode_image_bytes(
    data: bytes | bytearray | memoryview,
    *,
    name: str = "the image data",
    draft_size: int | None = None,
) -> Image.Image:
    """Decode the bytes of a photo file as :func:`load_image` does for a path.

    The indexer reads each file once, hashes the bytes and decodes the same bytes, so a file that changes
    while it is read can never be stored with a hash of other content.

    Args:
        data: The encoded file content.
        name: The file name used in error messages; its suffix selects the HEIC/AVIF checks.
        draft_size: As in :func:`load_image`.

    Returns:
        A loaded upright RGB image.

    Raises:
        ImageLoadError: One sentence naming ``name`` and the reason.
    """
    heif_available()
    _check_suffix(name, Path(name).suffix.lower())
    if len(data) == 0:
        raise ImageLoadError(f"Cannot open {name}: it is empty (0 bytes).")
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            return _decode(img, draft_size)
    except UnidentifiedImageError as err:
        if bytes(data[:4]) in (b"II*\x00", b"MM\x00*"):  # a TIFF Pillow cannot identify: 64-bit float samples?
            return _float64_tiff(bytes(data), name)
        raise ImageLoadError(f"Cannot open {name}: {_reason(err)}.") from err
    except MemoryError:
        raise ImageLoadError(
            f"Cannot open {name}: it is too large to decode in the available memory."
        ) from None
    except Exception as err:
        raise ImageLoadError(f"Cannot open {name}: {_reason(err)}.") from err


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8


def _tiff_tags(data: bytes) -> tuple[str, dict[int, tuple[int, ...]]]:
    """The byte order and the tags of a TIFF's first IFD (integer tags only; others are skipped)."""
    import struct

    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    (n,) = struct.unpack_from(order + "H", data, offset)
    tags: dict[int, tuple[int, ...]] = {}
    for i in range(n):
        tag, typ, count = struct.unpack_from(order + "HHI", data, offset + 2 + 12 * i)
        fmt = _TIFF_TYPES.get(typ)
        if fmt is None or count > 1 << 20:
            continue
        size = struct.calcsize(fmt) * count
        where = offset + 2 + 12 * i + 8
        if size > 4:
            (where,) = struct.unpack_from(order + "I", data, where)
        tags[tag] = struct.unpack_from(f"{order}{count}{fmt}", data, where)
    return order, tags


def _float64_tiff(data: bytes, name: str) -> Image.Image:
    """Open a TIFF with 64-bit floating-point samples (which Pillow cannot read) as 8-bit: uncompressed,
    interleaved, 1 (gray) or 3+ (RGB, extra samples dropped) samples per pixel, scaled like Pillow's own
    32-bit float images (values in [0, 1] times 255, else the finite range stretched to [0, 255]).

    Raises:
        ImageLoadError: it is not such a TIFF; the sentence says what about it cannot be read.
    """
    try:
        order, tags = _tiff_tags(data)
        w, h = tags[256][0], tags[257][0]
        bits, fmt = tags.get(258, (1,)), tags.get(339, (1,))[0]
        spp, comp, planar = tags.get(277, (1,))[0], tags.get(259, (1,))[0], tags.get(284, (1,))[0]
        offsets, counts = tags[273], tags[279]
    except Exception as err:  # struct.error, KeyError, IndexError: not a TIFF we can read
        raise ImageLoadError(f"Cannot open {name}: it is not an image in a format PHS desktop can read.") from err
    if bits[0] != 64 or fmt != 3:
        raise ImageLoadError(f"Cannot open {name}: it is not an image in a format PHS desktop can read.")
    if comp != 1 or planar != 1:
        raise ImageLoadError(
            f"Cannot open {name}: it is a TIFF with 64-bit floating-point samples that is compressed or stored in "
            "separate planes, which PHS desktop cannot read; save it with 8- or 16-bit samples."
        )
    if w * h > MAX_PIXELS:
        raise ImageLoadError(f"Cannot open {name}: {_reason(Image.DecompressionBombError(''))}.")
    raw = b"".join(data[o : o + c] for o, c in zip(offsets, counts))
    need = w * h * spp * 8
    if len(raw) < need:
        raise ImageLoadError(f"Cannot open {name}: the file is truncated or damaged.")
    arr = np.frombuffer(raw[:need], dtype=order + "f8").reshape(h, w, spp)
    arr = arr[..., :3] if spp >= 3 else arr[..., :1]
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    scaled = (np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo) - lo) * (255.0 / max(hi - lo, 1e-300))
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(out[..., 0], "L").convert("RGB") if out.shape[2] == 1 else Image.fromarray(out, "RGB")


def _check_suffix(name: str, suffix: str) -> None:
    if suffix in HEIF_SUFFIXES and not heif_available():
        raise ImageLoadError(f"Cannot open {name}: {_HEIF_HINT}.")
    if suffix == ".avif" and not avif_available():
        raise ImageLoadError(f"Cannot open {name}: this Pillow cannot read AVIF; {_HEIF_HINT}.")


#: Largest photo file read (bytes): far above any camera's output, small enough that a worker never holds
#: more than this of one file. Larger files are refused with a sentence (``phs index --max-file-size``).
MAX_FILE_BYTES: int = 512 * 10**6


def _megabytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 10**9 else f"{n / 1e6:.0f} MB"


def read_regular_bytes(path: str | Path, *, name: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file's bytes, at most ``max_bytes`` (non-blocking open, checked before reading).

    Raises:
        ImageLoadError: Not a regular file (a folder, FIFO, socket or device), or larger than ``max_bytes``
            (the size is checked before anything is read, and the read stops at the limit if the file grows).
        OSError: The file cannot be opened or read (permission, input/output error, vanished), as the
            operating system reports it, so a caller can tell errors that may pass from those that will not.
    """
    path = Path(path)
    name = name or _display_name(path)
    with _open_regular(path, name) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise ImageLoadError(
                f"Cannot read {name}: it is {_megabytes(size)}, larger than the {_megabytes(max_bytes)} limit "
                "for a photo file."
            )
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageLoadError(
            f"Cannot read {name}: it grew past the {_megabytes(max_bytes)} limit for a photo file while it "
            "was read."
        )
    return data


def read_photo_bytes(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read a photo file's bytes (read-only), refusing anything that is not a regular file or is too large.

    Raises:
        ImageLoadError: one sentence naming the file and the reason.
    """
    path = Path(path)
    name = _display_name(path)
    try:
        data = read_regular_bytes(path, name=name, max_bytes=max_bytes)
    except ImageLoadError:
        raise
    except OSError as err:
        raise ImageLoadError(f"Cannot open {name}: {_reason(err)}.") from err
    if not data:
        raise ImageLoadError(f"Cannot open {name}: it is empty (0 bytes).")
    return data


_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


def upright_size(data: bytes, *, name: str = "the image data") -> tuple[int, int]:
    """``(W, H)`` of a photo after EXIF orientation, from its header only (no pixel decoded).

    Raises:
        ImageLoadError: the header cannot be read.
    """
    heif_available()
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as err:
        raise ImageLoadError(f"Cannot open {name}: {_reason(err)}.") from err
    return (h, w) if orientation in _TRANSPOSED_ORIENTATIONS else (w, h)
