"""The image side of the bad-input catalogue: every file a user may drop into a folder.

Each case either decodes to a correct (size, size, 3) uint8 RGB array or raises ImageError
with a one-line message naming the file. Images are generated here, never stored.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from edgetl.errors import ImageError
from edgetl.runtime.image import list_images, load_rgb, preprocess

SIZE = 32


def _png_with_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims width x height (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


RED = (220, 20, 20)

GOOD_CASES = {
    "rgb.jpg": lambda: _save(Image.new("RGB", (60, 40), RED), "JPEG", quality=95),
    "gray.png": lambda: _save(Image.new("L", (40, 40), 128), "PNG"),
    "rgba.png": lambda: _save(Image.new("RGBA", (40, 40), RED + (255,)), "PNG"),
    "palette.gif": lambda: _save(Image.new("RGB", (40, 40), RED).convert("P"), "GIF"),
    "cmyk.jpg": lambda: _save(Image.new("CMYK", (40, 40), (0, 230, 230, 30)), "JPEG"),
    "sixteen_bit.png": lambda: _save(Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)), "PNG"),
    "one_pixel.png": lambda: _save(Image.new("RGB", (1, 1), RED), "PNG"),
    "png_named.jpg": lambda: _save(Image.new("RGB", (40, 40), RED), "PNG"),  # wrong extension
    "animated.gif": lambda: _save(
        Image.new("RGB", (40, 40), RED).convert("P"),
        "GIF",
        save_all=True,
        append_images=[Image.new("RGB", (40, 40), (0, 0, 255)).convert("P")],
    ),
    "bmp.bmp": lambda: _save(Image.new("RGB", (40, 40), RED), "BMP"),
    "webp.webp": lambda: _save(Image.new("RGB", (40, 40), RED), "WEBP", quality=100),
    "ünïcode name with space.png": lambda: _save(Image.new("RGB", (40, 40), RED), "PNG"),
}

# (expected mean RGB, tolerance) where it is not RED within 6 (JPEG and WebP are lossy).
EXPECTED = {
    "gray.png": ((128, 128, 128), 0),
    "palette.gif": (RED, 40),  # the web palette's nearest colours, dithered
    "animated.gif": (RED, 40),  # the first frame (red), dithered like palette.gif
    "cmyk.jpg": (Image.new("CMYK", (1, 1), (0, 230, 230, 30)).convert("RGB").getpixel((0, 0)), 12),
    "sixteen_bit.png": ((40000 * 255 / 65535,) * 3, 2),
}

BAD_CASES = {
    "empty.jpg": lambda: b"",
    "text.jpg": lambda: b"this is not an image\n",
    "truncated.jpg": lambda: _save(Image.new("RGB", (200, 200), RED), "JPEG")[:300],
    "truncated.png": lambda: _save(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG"
    )[:200],
    "corrupt.jpg": lambda: b"\xff\xd8\xff\xe0" + os.urandom(500),
    "bomb.png": lambda: _png_with_header(50000, 50000),
}


@pytest.mark.parametrize("name", sorted(GOOD_CASES))
def test_any_image_mode_decodes_to_rgb(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(GOOD_CASES[name]())
    pixels = load_rgb(path, SIZE)
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8
    colour, tolerance = EXPECTED.get(name, (RED, 6))
    mean = pixels.reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - colour).max() <= tolerance, (name, mean, colour)  # the right colour, channels in order
    if not name.endswith(".gif"):  # a GIF palette dithers; every other case is one flat colour
        assert pixels.reshape(-1, 3).std(axis=0).max() <= 3, name


@pytest.mark.parametrize("name", ["rgb.jpg", "rgba.png", "palette.gif", "png_named.jpg", "animated.gif", "cmyk.jpg"])
def test_red_stays_red(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(GOOD_CASES[name]())
    r, g, b = load_rgb(path, SIZE).reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80, (name, r, g, b)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "sixteen.png"
    path.write_bytes(GOOD_CASES["sixteen_bit.png"]())
    value = load_rgb(path, SIZE).mean()
    assert abs(value - 40000 * 255 / 65535) < 2  # ~155, not 255


def test_exif_orientation_is_applied(tmp_path):
    # 40 wide x 20 high: left half red, right half blue; EXIF 6 = rotate 90 deg clockwise for display.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, "JPEG", quality=95, exif=exif)
    pixels = load_rgb(path, 40)
    top, bottom = pixels[:10].mean(axis=(0, 1)), pixels[-10:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, "after rotating clockwise, the red (left) half is on top"
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(path)
    assert load_rgb(path, 8).min() == 255


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_files_raise_one_line_image_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BAD_CASES[name]())
    with pytest.raises(ImageError) as info:
        load_rgb(path, SIZE)
    message = str(info.value)
    assert name in message and "\n" not in message


def test_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header(50000, 50000))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_rgb(path, SIZE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(GOOD_CASES["gray.png"]())
    path.chmod(0)
    with pytest.raises(ImageError, match="secret.png"):
        load_rgb(path, SIZE)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg"):
        load_rgb(tmp_path / "nope.jpg", SIZE)


def test_list_images_skips_hidden_and_survives_symlink_loops(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(GOOD_CASES["gray.png"]())
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["x.png"]


def test_preprocess_applies_scale_and_offset():
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)
    out = preprocess(pixels, 1 / 127.5, -1.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)


def test_jpeg_draft_decodes_fewer_pixels_but_same_output_shape(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1000, 750), RED).save(path, "JPEG")
    from edgetl.runtime.image import open_image

    assert open_image(path, 160).size[0] < 1000  # draft mode reduced the decode
    assert load_rgb(path, 160).shape == (160, 160, 3)
