"""core.imageio: every odd photo becomes an upright 8-bit RGB image, or one clear sentence."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import ImageLoadError
from core.imageio import SUPPORTED_SUFFIXES, decode_image_bytes, heif_available, load_image
from tests.bad_inputs import png_header_only


def _pattern(w: int = 60, h: int = 40) -> Image.Image:
    """An asymmetric upright image: red top-left block, blue bottom-right, gray elsewhere."""
    arr = np.full((h, w, 3), 128, np.uint8)
    arr[: h // 3, : w // 3] = (255, 0, 0)
    arr[-h // 3 :, -w // 3 :] = (0, 0, 255)
    return Image.fromarray(arr, "RGB")


# Orientation tag -> the transform that, applied to the upright image, gives the stored pixels.
_STORED = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


@pytest.mark.parametrize("orientation", sorted(_STORED))
def test_exif_orientation_applied(tmp_path, orientation):
    upright = _pattern()
    stored = _STORED[orientation](upright)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.jpg"
    stored.save(p, quality=95, exif=exif.tobytes())
    out = load_image(p)
    assert out.size == upright.size
    diff = np.abs(np.asarray(out, np.int16) - np.asarray(upright, np.int16)).mean()
    assert diff < 4, diff
    # Same through bytes and through an opened PIL image.
    assert load_image(p.read_bytes()).size == upright.size
    assert load_image(Image.open(p)).size == upright.size


def test_draft_decodes_large_jpeg_smaller_but_not_below_target(tmp_path):
    p = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(p, quality=90)
    full = load_image(p)
    small = load_image(p, draft_size=224)
    assert full.size == (4000, 3000)
    assert small.size == (500, 375)  # 1/8 DCT scaling, both sides still >= 224
    assert min(load_image(p, draft_size=400).size) >= 400
    assert np.abs(np.asarray(small, np.int16)[5, 5] - (10, 200, 30)).max() < 6
    # A photo not much larger than the target is decoded whole.
    q = tmp_path / "small.jpg"
    Image.new("RGB", (300, 300)).save(q)
    assert load_image(q, draft_size=224).size == (300, 300)


def test_cmyk_jpeg_colours(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(p, quality=95)  # pure red in CMYK
    px = load_image(p).getpixel((5, 5))
    assert px[0] > 230 and px[1] < 25 and px[2] < 25


def test_16bit_grayscale_scaled_not_clipped(tmp_path):
    p = tmp_path / "g16.png"
    Image.fromarray(np.full((20, 30), 32768, np.uint16)).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out.mode == "RGB" and out.getpixel((3, 3)) == (128, 128, 128)


def test_palette_transparency_and_la_over_white(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 5, 10))
    im.save(p, transparency=0)
    out = load_image(p)
    assert out.getpixel((1, 1)) == (255, 255, 255)  # transparent -> white
    assert out.getpixel((8, 1)) == (255, 0, 0)
    q = tmp_path / "la.png"
    Image.new("LA", (8, 8), (0, 0)).save(q)
    assert load_image(q).getpixel((1, 1)) == (255, 255, 255)
    r = tmp_path / "l.png"
    Image.new("L", (8, 8), 77).save(r)
    assert load_image(r).getpixel((1, 1)) == (77, 77, 77)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animated_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    p = tmp_path / f"anim.{fmt}"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0, lossless=True)
    assert getattr(Image.open(p), "n_frames", 1) == 3
    px = load_image(p).getpixel((3, 3))
    assert px[0] > 240 and px[1] < 15 and px[2] < 15


def _one_sentence(err: ImageLoadError, name: str) -> str:
    msg = str(err)
    assert name in msg and msg.endswith(".") and "\n" not in msg
    return msg


def test_bad_files_one_sentence(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a photo")
    buf = io.BytesIO()
    _pattern(400, 300).save(buf, "JPEG", quality=90)
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    expect = {
        "zero.jpg": "empty",
        "text.jpg": "not an image",
        "trunc.jpg": "truncated",
        "missing.jpg": "not exist",
    }
    for name, word in expect.items():
        with pytest.raises(ImageLoadError) as info:
            load_image(tmp_path / name)
        assert word in _one_sentence(info.value, name)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_fifo_device_and_folder_are_refused_with_one_sentence_without_blocking(tmp_path):
    import threading

    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would wait forever for a writer
    (tmp_path / "folder.jpg").mkdir()
    cases = {tmp_path / "pipe.jpg": "not a regular file", Path("/dev/zero"): "not a regular file",
             tmp_path / "folder.jpg": "a folder"}  # fmt: skip
    for path, word in cases.items():
        if not path.exists():
            continue
        out: list[BaseException] = []

        def attempt(path: Path = path, out: list[BaseException] = out) -> None:
            try:
                load_image(path)
            except BaseException as err:  # noqa: BLE001 - handed to the test thread
                out.append(err)

        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), f"load_image({path}) blocked"
        assert len(out) == 1 and isinstance(out[0], ImageLoadError), out
        assert word in _one_sentence(out[0], path.name)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(ImageLoadError) as info:
        load_image(p)
    assert "too large" in _one_sentence(info.value, "bomb.png")
    with pytest.raises(ImageLoadError, match="too large"):
        decode_image_bytes(p.read_bytes(), name="bomb.png")


def test_extreme_aspect_and_tiny_images(tmp_path):
    Image.new("RGB", (20000, 10), (1, 2, 3)).save(tmp_path / "wide.png")
    Image.new("RGB", (1, 1), (9, 8, 7)).save(tmp_path / "one.png")
    assert load_image(tmp_path / "wide.png").size == (20000, 10)
    assert load_image(tmp_path / "one.png").getpixel((0, 0)) == (9, 8, 7)


def test_tiff_16bit_and_bmp(tmp_path):
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "g.tif")
    assert load_image(tmp_path / "g.tif").getpixel((1, 1)) == (255, 255, 255)
    Image.new("RGB", (5, 5), (4, 5, 6)).save(tmp_path / "x.bmp")
    assert load_image(tmp_path / "x.bmp").getpixel((1, 1)) == (4, 5, 6)


def test_heic(tmp_path):
    assert ".heic" in SUPPORTED_SUFFIXES
    p = tmp_path / "photo.heic"
    if heif_available():
        import pillow_heif

        pillow_heif.from_pillow(_pattern()).save(p, quality=95)
        out = load_image(p)
        assert out.size == (60, 40) and out.getpixel((2, 2))[0] > 200
    else:
        p.write_bytes(b"\x00\x00\x00\x18ftypheic")
        with pytest.raises(ImageLoadError, match="pillow-heif"):
            load_image(p)


def test_heic_without_plugin_is_a_clear_note(tmp_path, monkeypatch):
    import core.imageio as imageio

    monkeypatch.setattr(imageio, "_heif_state", False)
    p = tmp_path / "photo.HEIC"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(ImageLoadError) as info:
        load_image(p)
    assert "pillow-heif" in _one_sentence(info.value, "photo.HEIC")


def test_pil_input_not_modified():
    src = Image.new("P", (4, 4), 0)
    out = load_image(src)
    assert out.mode == "RGB" and src.mode == "P" and out is not src
