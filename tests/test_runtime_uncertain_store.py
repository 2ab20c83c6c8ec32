"""edgetl.runtime.uncertain_store: bounded, atomic, oldest-first store of unsure images + sidecars."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from edgetl.runtime.uncertain_store import UncertainStore


def frame(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_saves_image_and_sidecar(tmp_path):
    store = UncertainStore(tmp_path / "unsure")
    path = store.save(frame(0), {"scores": {"confidence": 0.41, "unknown": 3.2}, "head": "abc123", "label": "roses"})
    assert path.suffix == ".jpg" and path.exists()
    with Image.open(path) as img:
        assert img.size == (32, 32)
    side = store.sidecar(path)
    assert side["scores"] == {"confidence": 0.41, "unknown": 3.2} and side["head"] == "abc123"
    assert side["image"] == path.name and side["bytes"] == path.stat().st_size and side["time"].endswith("Z")
    png = io.BytesIO()
    Image.fromarray(frame(1)).save(png, format="PNG")
    assert store.save(png.getvalue(), {}).suffix == ".png"  # encoded bytes are stored as given
    assert store.save(b"\xff\xd8\xff\xe0rest", {}).suffix == ".jpg"
    assert len(store) == 3 and store.items()[0] == path


def test_never_exceeds_max_items_and_drops_oldest_first(tmp_path):
    store = UncertainStore(tmp_path, max_items=5)
    saved = [store.save(frame(i), {"i": i}) for i in range(23)]
    assert len(store) == 5
    assert store.items() == saved[-5:]
    assert [store.sidecar(p)["i"] for p in store.items()] == [18, 19, 20, 21, 22]
    assert len(list(tmp_path.iterdir())) == 10  # image + sidecar each, nothing else


def test_never_exceeds_max_bytes(tmp_path):
    limit = 40_000
    store = UncertainStore(tmp_path, max_items=1000, max_bytes=limit, array_format="png")
    for i in range(60):  # random 32x32 PNGs are ~3 kB
        assert store.save(frame(i), {"i": i}) is not None
        assert folder_bytes(tmp_path) <= limit
        assert store.total_bytes == folder_bytes(tmp_path)
    assert 5 < len(store) < 20
    assert store.save(b"x" * (limit + 1), {}) is None  # one item larger than the whole store: refused
    assert folder_bytes(tmp_path) <= limit


def test_reopen_keeps_items_and_applies_smaller_bounds(tmp_path):
    store = UncertainStore(tmp_path, max_items=10)
    saved = [store.save(frame(i), {"i": i}) for i in range(8)]
    again = UncertainStore(tmp_path, max_items=3)
    assert again.items() == saved[-3:]
    assert len(list(tmp_path.iterdir())) == 6


CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import numpy as np
    from edgetl.runtime import atomic
    from edgetl.runtime.uncertain_store import UncertainStore

    store = UncertainStore(sys.argv[1], max_items=10)
    store.save(np.zeros((16, 16, 3), np.uint8), {"ok": 1})
    where = sys.argv[2]
    if where == "mid-image":      # die with half the image bytes in the temporary file
        def half(self, data):
            with open(self, "wb") as fh:
                fh.write(data[: len(data) // 2]); fh.flush()
            os._exit(9)
        Path.write_bytes = half
    else:                         # die after the image is in place, before its sidecar
        real = atomic.write_bytes
        def die_on_sidecar(target, data):
            if str(target).endswith(".json"):
                os._exit(9)
            return real(target, data)
        atomic.write_bytes = die_on_sidecar
    store.save(np.full((16, 16, 3), 200, np.uint8), {"ok": 2})
""")


@pytest.mark.parametrize("where", ["mid-image", "before-sidecar"])
def test_a_crash_mid_write_leaves_no_partial_item(tmp_path, where):
    folder = tmp_path / "unsure"
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(folder), where],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 9, proc.stderr[-1000:]
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if where == "mid-image":  # the half image exists only under a hidden temporary name
        assert len(visible) == 2 and any(p.name.startswith(".") for p in folder.iterdir())
    else:
        assert len(visible) == 3  # item 1 (2 files) + an image without its sidecar: not committed
    store = UncertainStore(folder, max_items=10)
    assert len(store) == 1 and store.sidecar(store.items()[0])["ok"] == 1
    assert len(list(folder.iterdir())) == 2  # leftovers removed on open
    for path in store.items():
        with Image.open(path) as img:
            img.load()
        json.loads(path.with_suffix(".json").read_text())


def test_bad_settings_refused(tmp_path):
    with pytest.raises(ValueError):
        UncertainStore(tmp_path, max_items=0)
    with pytest.raises(ValueError, match="array_format"):
        UncertainStore(tmp_path, array_format="gif")
