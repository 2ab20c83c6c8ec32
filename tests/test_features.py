"""Augmentation and the feature cache: determinism, invalidation, resumability, `edgetl features`."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.runtime import feature_store
from edgetl.runtime.image import list_images
from edgetl.train import extract as feats
from edgetl.train.augment import AugmentParams, apply_matrix, augment, view_rng

from conftest import make_dataset


def test_identity_matrix_is_exact_and_flips_mirror():
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert np.array_equal(apply_matrix(pixels, np.eye(3)), pixels)
    views = [augment(pixels, AugmentParams(horizontal_flip=True), np.random.default_rng(seed)) for seed in range(40)]
    mirrored = [np.array_equal(v, pixels[:, ::-1]) for v in views]
    assert all(m or np.array_equal(v, pixels) for m, v in zip(mirrored, views))  # a flip is a mirror or nothing
    assert 10 <= sum(mirrored) <= 30  # about half of the views are mirrored
    vertical = augment(
        pixels,
        AugmentParams(vertical_flip=True),
        np.random.default_rng(next(s for s in range(40) if np.random.default_rng(s).random() < 0.5)),
    )
    assert np.array_equal(vertical, pixels[::-1])


def test_shift_fills_with_edge_or_reflection():
    pixels = np.tile(np.arange(10, dtype=np.uint8)[None, :, None] * 20, (10, 1, 3))  # columns 0..180
    shift = np.array([[1, 0, 0], [0, 1, -3], [0, 0, 1]], float)  # output col c samples input col c-3
    nearest = apply_matrix(pixels, shift, "nearest")
    reflect = apply_matrix(pixels, shift, "reflect")
    assert list(nearest[0, :5, 0]) == [0, 0, 0, 0, 20]
    assert list(reflect[0, :5, 0]) == [40, 20, 0, 0, 20]


def test_views_are_seeded_per_image_and_view():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    params = AugmentParams(rotation=40, width_shift=0.2, height_shift=0.2, shear=10, zoom=0.2, horizontal_flip=True)
    a = augment(pixels, params, view_rng(1, "ab" * 32, 1))
    assert np.array_equal(a, augment(pixels, params, view_rng(1, "ab" * 32, 1)))
    assert not np.array_equal(a, augment(pixels, params, view_rng(1, "ab" * 32, 2)))
    assert not np.array_equal(a, augment(pixels, params, view_rng(2, "ab" * 32, 1)))
    assert a.shape == pixels.shape and a.dtype == np.uint8


def make_cache(tmp_path, size=16, shift=0.0, base_name="fake", pooling="avg"):
    from edgetl._tf import keras

    inputs = keras.Input((size, size, 3))
    base = keras.Model(inputs, keras.layers.Dense(4, use_bias=True, name="d")(inputs))
    base.get_layer("d").set_weights([np.eye(3, 4, dtype=np.float32), np.full(4, shift, np.float32)])
    return feats.FeatureExtractor(
        base,
        base_name=base_name,
        cut_layer=None,
        input_size=size,
        scale=1 / 255,
        offset=0.0,
        pooling=pooling,
        cache_dir=tmp_path / "cache",
        batch_size=4,
    )


def test_cache_serves_unchanged_and_recomputes_changed(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=3, size=20)
    paths = list_images(data)
    params = AugmentParams(rotation=30)
    first = make_cache(tmp_path).extract(paths, views=2, params=params, seed=0)
    assert (first.computed, first.cached) == (18, 0) and first.features.shape == (6, 3, 4)
    again = make_cache(tmp_path)
    second = again.extract(paths, views=2, params=params, seed=0)
    assert (second.computed, second.cached, again.base_calls) == (0, 18, 0)
    np.testing.assert_array_equal(first.features, second.features)
    # red channel mean of a red image, from the clean view
    assert second.features[paths.index(data / "red" / "red_000.png"), 0, 0] > 0.6

    paths[0].write_bytes((data / "green" / "green_000.png").read_bytes())  # changed bytes
    changed = make_cache(tmp_path).extract(paths, views=2, params=params, seed=0)
    assert changed.computed == 0  # identical bytes to green_000, already cached under that sha256
    from PIL import Image

    Image.new("RGB", (20, 20), (1, 2, 3)).save(paths[1])
    changed = make_cache(tmp_path).extract(paths, views=2, params=params, seed=0)
    assert changed.computed == 3 and changed.features[1, 0, 0] < 0.05

    assert make_cache(tmp_path).extract(paths, views=2, params=AugmentParams(rotation=31), seed=0).computed == 12
    assert make_cache(tmp_path).extract(paths, views=2, params=params, seed=1).computed == 12
    assert make_cache(tmp_path, shift=0.5).extract(paths, 0).computed == 6  # different weights
    assert make_cache(tmp_path, size=24).extract(paths, 0).computed == 6  # different input size
    assert make_cache(tmp_path, base_name="other").extract(paths, 0).computed == 6
    assert make_cache(tmp_path, pooling="max").extract(paths, 0).computed == 6
    assert make_cache(tmp_path).extract(paths, 0).computed == 0


def test_killed_extraction_keeps_finished_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_store, "CHUNK_SIZE", 4)
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=6, size=16)
    paths = list_images(data)
    cache = make_cache(tmp_path)
    real = cache._predict

    def dies_on_third_call(batch):
        if cache.base_calls == 2:
            raise KeyboardInterrupt("killed")
        return real(batch)

    monkeypatch.setattr(cache, "_predict", dies_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        cache.extract(paths, 0)
    chunks = list(cache.folder.glob("chunk-*.npz"))
    assert len(chunks) == 2 and not list(cache.folder.glob(".*tmp*"))
    rerun = make_cache(tmp_path).extract(paths, 0)
    assert (rerun.computed, rerun.cached) == (4, 8)


def test_undecodable_files_are_skipped(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=2, size=16)
    bad = data / "red" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    paths = list_images(data)
    result = make_cache(tmp_path).extract(paths, 0)
    assert len(result.kept) == 4 and result.features.shape == (4, 1, 4)
    assert [p for p, _ in result.skipped] == [str(bad)]
    assert "broken.jpg" not in result.skipped[0][1] and result.skipped[0][1]


def test_features_command_writes_npz(tmp_path):
    from edgetl.cli import main

    data = make_dataset(
        tmp_path, classes=("red", "green", "blue"), per_class=2, val_per_class=1, size=32, layout="split"
    )
    out = tmp_path / "f.npz"
    args = [
        "features",
        "--data",
        str(data),
        "--out",
        str(out),
        "--weights",
        "none",
        "--input-size",
        "32",
        "--cut-layer",
        "Conv1_relu",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as npz:
        assert npz["features"].shape == (9, 32) and npz["features"].dtype == np.float32
        assert list(npz["classes"]) == ["blue", "green", "red"]
        assert sorted(npz["labels"].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert sorted(set(npz["splits"].tolist())) == ["train", "val"]
        assert npz["paths"][0].startswith("train/blue/")
    result = CliRunner().invoke(main, args + ["--pooling", "none", "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert npz["features"].shape == (9, 16, 16, 32)
