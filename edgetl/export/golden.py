"""Golden images for the device's self-test (edgetl.runtime.selftest): written at export.

Two small synthetic images go into BUNDLE/golden/: a PNG of colour bars and gradients that
is different in every channel and every quadrant (a swapped colour order, a flip or a
rotation cannot go unseen), and a photo-like JPEG 2.5 times the input size (decoded through
libjpeg in draft mode, as photos are). The manifest records, per image, the 8x8 grid of
channel means of its decoded pixels and, per model, its probabilities, computed here with the
runtime's own adapters. Nothing is stored that the device could not recompute.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.runtime import atomic
from edgetl.runtime.bundle import file_entry, load_bundle
from edgetl.runtime.head import NumpyHead
from edgetl.runtime.selftest import golden_outputs, pixel_grid

FOLDER = "golden"


def bars(size: int) -> Image.Image:
    """Red, green and blue bars over a top-to-bottom ramp, with a white square in the top left corner."""
    h, w = size, size * 3 // 2
    ramp = np.linspace(40, 215, h)[:, None]
    img = np.zeros((h, w, 3), np.float64)
    for channel in range(3):
        img[:, channel * w // 3 : (channel + 1) * w // 3, channel] = 255 - ramp
        img[:, :, (channel + 1) % 3] += ramp * (channel + 1) / 6
    img[: h // 4, : w // 6] = 255
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def photo(size: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients and noise, 2.5x the input size: JPEG draft decoding and resizing at work."""
    rng = np.random.default_rng(seed)
    h, w = int(size * 2.5), int(size * 2.5 * 4 / 3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([200 * xx + 30, 160 * yy + 50, 120 * (1 - xx * yy) + 40], axis=-1)
    return Image.fromarray(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8))


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_golden(bundle_dir: Path, size: int) -> dict[str, Any]:
    """Write the golden images into the (complete) bundle and return manifest['self_test']."""
    bundle = load_bundle(bundle_dir)
    images, pixels = [], []
    for name, img, fmt in (("bars.png", bars(size), "PNG"), ("photo.jpg", photo(size), "JPEG")):
        path = atomic.write_bytes(Path(bundle_dir) / FOLDER / name, _encoded(img, fmt))
        pixels.append(bundle.pixels(path))
        images.append({**file_entry(Path(bundle_dir), path), "grid": np.round(pixel_grid(pixels[-1]), 3).tolist()})
    head = NumpyHead.load(bundle.path_of(bundle.manifest["head"])) if "head" in bundle.manifest else None
    outputs = {fmt: np.round(golden_outputs(bundle, fmt, pixels, head), 6).tolist() for fmt in bundle.models}
    return {"images": images, "outputs": outputs}
