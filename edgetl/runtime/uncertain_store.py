"""A bounded folder of images the model was unsure about, each with a JSON sidecar.

    FOLDER/<time_ns>-<seq>.<jpg|png|...>     the image (bytes as given, or an array encoded)
    FOLDER/<time_ns>-<seq>.json              {"image", "bytes", "time", "head", "scores", ...}

Both files are written with edgetl.runtime.atomic (temporary name, fsync, rename), image
first and sidecar second: the sidecar is the commit mark. An item is listed only when both
exist, so a crash at any moment leaves no partial file visible; the next open deletes the
leftovers (hidden temporaries, an image whose sidecar never arrived). Before each write the
oldest items are deleted (sidecar first) until the new one fits under max_items and
max_bytes, so the folder never exceeds its bounds. Names sort by time, so "oldest" is the
first in name order; the index of names and sizes is at most max_items long.

A labelled copy of these images is what `update-head --data` (or `--add-class`) needs next.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.runtime import atomic

SIDECAR = ".json"
IMAGE_SUFFIXES = (".jpg", ".png", ".bmp", ".webp", ".bin")


def _encode(image: Any, fmt: str, quality: int) -> tuple[bytes, str]:
    """bytes -> as given (.jpg if they look like JPEG, .png if PNG, else .bin); array / PIL image -> encoded."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if data[:3] == b"\xff\xd8\xff":
            return data, ".jpg"
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return data, ".png"
        return data, ".bin"
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=quality)
        return buf.getvalue(), ".jpg"
    image.save(buf, format="PNG")
    return buf.getvalue(), ".png"


class UncertainStore:
    """`save(image, sidecar)` -> the image path, or None when one item alone exceeds max_bytes."""

    def __init__(
        self,
        folder: str | Path,
        max_items: int = 500,
        max_bytes: int = 200 * 2**20,
        array_format: str = "jpeg",
        jpeg_quality: int = 92,
    ):
        if max_items < 1 or max_bytes < 1:
            raise ValueError(
                f"the uncertain store needs max_items >= 1 and max_bytes >= 1; got {max_items}, {max_bytes}"
            )
        if array_format not in ("jpeg", "png"):
            raise ValueError(f"array_format must be jpeg or png; got {array_format!r}")
        self.folder = Path(folder)
        self.max_items, self.max_bytes = max_items, max_bytes
        self.array_format, self.jpeg_quality = array_format, jpeg_quality
        self._seq = 0
        self._items: list[tuple[str, str, int]] = []  # (stem, image name, bytes of image + sidecar), oldest first
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._evict(0, 0)  # bounds may be smaller than last time

    # ------------------------------------------------------------------ state on disk
    def _recover(self) -> None:
        names = sorted(os.listdir(self.folder))
        images = {}
        for name in names:
            path = self.folder / name
            if name.startswith(".") and ".tmp" in name:  # an atomic write cut short
                path.unlink(missing_ok=True)
            elif Path(name).suffix in IMAGE_SUFFIXES:
                images[Path(name).stem] = name
        for name in names:
            stem, suffix = Path(name).stem, Path(name).suffix
            if suffix != SIDECAR or name.startswith("."):
                continue
            image = images.pop(stem, None)
            if image is None:
                (self.folder / name).unlink(missing_ok=True)
                continue
            size = (self.folder / name).stat().st_size + (self.folder / image).stat().st_size
            self._items.append((stem, image, size))
        for image in images.values():  # image written, sidecar never: not committed
            (self.folder / image).unlink(missing_ok=True)

    def _evict(self, extra_items: int, extra_bytes: int) -> None:
        total = self.total_bytes
        while self._items and (len(self._items) + extra_items > self.max_items or total + extra_bytes > self.max_bytes):
            stem, image, size = self._items.pop(0)
            (self.folder / f"{stem}{SIDECAR}").unlink(missing_ok=True)  # uncommit first
            (self.folder / image).unlink(missing_ok=True)
            total -= size

    # ----------------------------------------------------------------------- public
    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Path]:
        """Image paths of the complete items, oldest first."""
        return [self.folder / image for _, image, _ in self._items]

    def sidecar(self, image_path: str | Path) -> dict:
        return json.loads((self.folder / f"{Path(image_path).stem}{SIDECAR}").read_text(encoding="utf-8"))

    def save(self, image: Any, sidecar: dict | None = None) -> Path | None:
        """Store `image` (encoded bytes, an (H, W, 3) uint8 array or a PIL image) with `sidecar`.

        The sidecar gets "image", "bytes" and "time" (UTC) added; put the scores, the head id
        (e.g. its sha256) and the source in `sidecar`. It must be JSON-serialisable.
        """
        data, suffix = _encode(image, self.array_format, self.jpeg_quality)
        now = time.time_ns()
        stem = f"{now:020d}-{self._seq:06d}"
        self._seq = (self._seq + 1) % 1_000_000
        record = {
            **(sidecar or {}),
            "image": f"{stem}{suffix}",
            "bytes": len(data),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now / 1e9)) + f".{now % 10**9 // 10**6:03d}Z",
        }
        text = json.dumps(record, indent=1).encode("utf-8")
        size = len(data) + len(text)
        if size > self.max_bytes:
            return None
        self._evict(1, size)
        image_path = atomic.write_bytes(self.folder / f"{stem}{suffix}", data)
        atomic.write_bytes(self.folder / f"{stem}{SIDECAR}", text)
        self._items.append((stem, image_path.name, size))
        return image_path
