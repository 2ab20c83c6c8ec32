"""Image decoding and preprocessing, shared by training and the device runner.

Training and the runner call the same `load_rgb` and `preprocess`, so a model sees on the
device exactly the tensor it was trained on. Any image Pillow can open is accepted: EXIF
orientation is applied, every mode (grayscale, RGBA, palette, CMYK, 16-bit) becomes 8-bit
RGB, animated files use their first frame. Anything else raises ImageError with one line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetl.errors import ImageError

# Images larger than this many pixels are refused before decoding (decompression bombs).
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
RESAMPLE = Image.BILINEAR
ORIENTATION = 0x0112  # EXIF tag


def is_image_name(path: str | os.PathLike) -> bool:
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Transparent pixels are composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.int64)
        peak = 65535 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        arr = np.clip(arr * 255 // peak, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def open_image(source, size: int | None = None) -> Image.Image:
    """Open a path, file object or PIL image, upright and in RGB.

    With `size`, JPEGs are decoded with draft mode at the smallest DCT scale that still
    covers `size` x `size`, which avoids decoding pixels the model never sees.
    """
    name = getattr(source, "filename", None) or str(source)
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            if isinstance(source, (str, os.PathLike)):
                info = os.stat(source)
                if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
                    raise ImageError(f"{name}: not a regular file (a folder, FIFO or device)")
                if info.st_size == 0:
                    raise ImageError(f"{name}: empty file (0 bytes)")
            img = Image.open(source)
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image Pillow can read") from None
        except Image.DecompressionBombError:
            raise ImageError(f"{name}: exceeds the {MAX_PIXELS:,}-pixel limit (decompression bomb?)") from None
        except (OSError, ValueError) as exc:
            raise ImageError(f"{name}: cannot open ({_reason(exc)})") from None
    try:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"{name}: {width}x{height} pixels exceeds the {MAX_PIXELS:,}-pixel limit (decompression bomb?)"
            )
        if width < 1 or height < 1:
            raise ImageError(f"{name}: image has no pixels")
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        if size and img.format == "JPEG":
            img.draft("RGB", (size, size))
        img.load()
        # exif_transpose copies the whole image even when there is nothing to turn; most photos are upright.
        if img.getexif().get(ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
        raise ImageError(f"{name}: cannot decode ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:  # "Too many levels of symbolic links", not the path again
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resize(img: Image.Image, size: int) -> np.ndarray:
    """Square resize (no crop, like Keras' image_dataset_from_directory) -> uint8 HxWx3."""
    if img.size != (size, size):
        img = img.resize((size, size), RESAMPLE)
    return np.asarray(img, dtype=np.uint8)


def load_rgb(source, size: int) -> np.ndarray:
    """Path / file / PIL image -> uint8 array (size, size, 3), RGB, upright."""
    return resize(open_image(source, size), size)


def preprocess(pixels: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """uint8 RGB in [0, 255] -> float32 model input, `x * scale + offset` (from the manifest)."""
    return pixels.astype(np.float32) * np.float32(scale) + np.float32(offset)


def list_images(folder: str | Path) -> list[Path]:
    """Image files below a folder, recursive, sorted, hidden files and symlink loops skipped."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if is_image_name(f))
    return found
