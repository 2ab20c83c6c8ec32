"""Shared fixtures: tiny synthetic class-folder datasets, written fresh into tmp_path.

`make_dataset(tmp_path, classes=("red", "green"), per_class=6, size=48, layout="flat")`
writes solid-colour images with a little noise and a class-specific pattern, so classes are
separable even by a randomly initialised base. layout="split" writes train/ and val/.
Other test modules import it directly (`from conftest import make_dataset`) or use the
`dataset_factory` fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "purple": (150, 40, 170),
    "cyan": (30, 210, 210),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
}


def make_image(colour: tuple[int, int, int], size: int, rng: np.random.Generator, pattern: int = 0) -> Image.Image:
    """A noisy solid colour; pattern 1 adds horizontal stripes, 2 a centred square."""
    pixels = np.empty((size, size, 3), dtype=np.float32)
    pixels[:] = colour
    pixels += rng.normal(0, 12, size=pixels.shape)
    if pattern == 1:
        pixels[::4] *= 0.5
    elif pattern == 2:
        q = size // 4
        pixels[q : 3 * q, q : 3 * q] = 255 - pixels[q : 3 * q, q : 3 * q]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_class(
    folder: Path, name: str, count: int, size: int, rng: np.random.Generator, index: int, fmt: str = "png"
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    colour = COLOURS.get(name, tuple(int(c) for c in rng.integers(0, 256, 3)))
    paths = []
    for i in range(count):
        path = folder / f"{name}_{i:03d}.{'jpg' if fmt == 'jpeg' else fmt}"
        make_image(colour, size, rng, pattern=index % 3).save(path, format="JPEG" if fmt == "jpeg" else fmt.upper())
        paths.append(path)
    return paths


def make_dataset(
    root: Path,
    classes=("red", "green"),
    per_class: int = 6,
    size: int = 48,
    layout: str = "flat",
    val_per_class: int = 2,
    fmt: str = "png",
    seed: int = 0,
) -> Path:
    """Write a class-per-folder dataset under root/'data' and return that folder.

    layout "flat": data/<class>/ with per_class images; "split": data/train/<class>/ with
    per_class and data/val/<class>/ with val_per_class images.
    """
    rng = np.random.default_rng(seed)
    data = Path(root) / "data"
    for index, name in enumerate(classes):
        if layout == "split":
            write_class(data / "train" / name, name, per_class, size, rng, index, fmt)
            write_class(data / "val" / name, name, val_per_class, size, rng, index, fmt)
        elif layout == "flat":
            write_class(data / name, name, per_class, size, rng, index, fmt)
        else:
            raise ValueError(f"layout must be flat or split, got {layout!r}")
    return data


@pytest.fixture
def dataset_factory(tmp_path):
    """`dataset_factory(**kwargs)` -> path of a fresh dataset (see make_dataset)."""
    counter = iter(range(1000))

    def factory(**kwargs):
        return make_dataset(tmp_path / f"ds{next(counter)}", **kwargs)

    return factory


@pytest.fixture
def tiny_config(tmp_path):
    """`tiny_config(data, **overrides)` -> a TrainConfig that trains in seconds (random 32 px base)."""
    from edgetl.train.config import build_config

    def factory(data, **overrides):
        values = {
            "data": str(data),
            "weights": "none",
            "input_size": 32,
            "epochs": 2,
            "batch_size": 8,
            "out": str(tmp_path / "run"),
            "cache_dir": str(tmp_path / "cache"),
            "seed": 1,
            # a randomly initialised MobileNetV2 squashes its deep features to ~1e-12; the first
            # conv block still separates colours, so tests cut there and use a high learning rate
            "cut_layer": "Conv1_relu",
            "learning_rate": 0.03,
            # the tests of the training loop (epochs, early stopping, resume) run Keras' solver; the
            # default's (auto: logistic for a linear head) is tested in test_head_solver.py
            "head_solver": "keras",
        }
        values.update(overrides)
        return build_config(values)

    return factory


@pytest.fixture
def bundle(tmp_path_factory, tmp_path):
    """A private copy of the session's tiny test bundle (tests may update heads or tamper with files)."""
    from bundle_fixture import fresh_bundle

    return fresh_bundle(tmp_path_factory, tmp_path / "bundle")


# The test command runs two pytest-xdist workers, each given whole files (--dist loadfile, so a module's
# fixtures are built once) in collection order. The heaviest files go first, longest first, so none of
# them starts last and leaves one worker alone at the end (seconds per file, serial run of 2026-12-03).
HEAVY_FILES = {
    "test_bases.py": 229,
    "test_device_install.py": 104,
    "test_train.py": 98,
    "test_resume_kill.py": 92,
    "test_quantize.py": 77,
    "test_export.py": 64,
    "test_search.py": 40,
    "test_validate.py": 36,
}


def pytest_collection_modifyitems(items):
    """Heaviest files first; a stable sort, so each file's tests stay together and in their order."""
    items.sort(key=lambda item: -HEAVY_FILES.get(item.path.name, 0))
