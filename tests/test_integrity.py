"""Every artifact is written atomically and verified against its sha256 when it is read back.

Run folder (run.json "files"), feature-cache chunks (sha256 in the chunk name), the training
checkpoint, bundles (manifest sha256) and device heads (CURRENT.json sha256), plus the
atomic writers themselves: an exception half-way leaves the old artifact and no temp file.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgetl.errors import BundleError, RunFolderError
from edgetl.runtime import atomic

from conftest import make_dataset


# ------------------------------------------------------------------------ atomic writers
def test_atomic_file_keeps_the_old_version_when_writing_fails(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_atomic_dir_keeps_the_old_bundle_when_export_fails(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "manifest.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "model.tflite").write_bytes(b"x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]
    with atomic.atomic_dir(target) as tmp:
        (tmp / "manifest.json").write_text('{"new": 1}')
    assert json.loads((target / "manifest.json").read_text()) == {"new": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


# ---------------------------------------------------------------------------- run folder
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from edgetl.train.config import build_config
    from edgetl.train.trainer import train

    root = tmp_path_factory.mktemp("integrity")
    data = make_dataset(root, classes=("red", "green"), per_class=4, size=32)
    config = build_config(
        {
            "data": str(data),
            "weights": "none",
            "input_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "out": str(root / "run"),
            "cache_dir": str(root / "cache"),
            "seed": 1,
            "cut_layer": "Conv1_relu",
            "learning_rate": 0.03,
        }
    )
    train(config, echo=lambda _: None)
    return root / "run", root / "cache", config


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run[0], tmp_path / "run")


def test_run_json_lists_every_artifact_with_its_sha256(run_copy):
    from edgetl.train.run_folder import VERIFIED, open_run

    info = json.loads((run_copy / "run.json").read_text())
    assert sorted(info["files"]) == sorted(VERIFIED) == ["config.yaml", "labels.txt", "model.keras", "splits.json"]
    for name, entry in info["files"].items():
        assert entry == {"sha256": atomic.sha256_file(run_copy / name), "size_bytes": (run_copy / name).stat().st_size}
    assert open_run(run_copy).classes == ["green", "red"]
    assert not list(run_copy.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("name", ["model.keras", "labels.txt", "config.yaml", "splits.json"])
def test_open_run_refuses_a_changed_file_and_names_it(run_copy, name):
    from edgetl.train.run_folder import open_run

    data = bytearray((run_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x20  # one flipped bit, same size
    (run_copy / name).write_bytes(bytes(data))
    with pytest.raises(RunFolderError, match=f"run folder file {name} does not match its sha256 in run.json"):
        open_run(run_copy)


def test_open_run_refuses_a_truncated_model_and_a_bad_files_map(run_copy):
    from edgetl.train.run_folder import open_run

    model = run_copy / "model.keras"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(RunFolderError, match="model.keras does not match"):
        open_run(run_copy)
    info = json.loads((run_copy / "run.json").read_text())
    info["files"] = {"../../etc/passwd": {"sha256": "0", "size_bytes": 1}}
    (run_copy / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunFolderError, match="unexpected file"):
        open_run(run_copy)
    (run_copy / "run.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match="must hold a JSON object"):
        open_run(run_copy)


# ------------------------------------------------------------------------- feature cache
def _cache(trained_run):
    from edgetl._tf import set_seed
    from edgetl.models.classifier import config_base
    from edgetl.train.extract import FeatureExtractor

    _, _, config = trained_run
    set_seed(config.seed)
    base = config_base(config, config.weights)
    return FeatureExtractor.for_config(config, base, batch_size=8)


def test_feature_chunks_carry_their_sha256_and_a_corrupt_one_is_recomputed(trained_run, tmp_path, capsys):
    _, cache_dir, config = trained_run
    saved = tmp_path / "saved_cache"
    shutil.copytree(cache_dir, saved)
    try:
        chunks = sorted(cache_dir.glob("features/*/chunk-*.npz"))
        assert chunks
        for chunk in chunks:
            assert atomic.sha256_file(chunk).startswith(chunk.stem.rsplit("-", 1)[-1])
        from edgetl.train.data import load_dataset

        ds = load_dataset(config.data, config.val_split, config.seed)
        files = [p for p, _ in ds.train]
        clean = _cache(trained_run).extract(files)
        assert clean.computed == 0 and clean.cached == len(files)

        victim = chunks[0]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF  # bit rot inside the features
        victim.write_bytes(bytes(data))
        cache = _cache(trained_run)
        assert "warning: discarding corrupt feature cache chunk" in capsys.readouterr().err
        assert not victim.exists()
        again = cache.extract(files)
        assert again.computed == len(files) and again.cached == 0
        np.testing.assert_array_equal(again.features, clean.features)

        newest = sorted(cache_dir.glob("features/*/chunk-*.npz"))[-1]
        newest.write_bytes(newest.read_bytes()[:100])  # truncated copy: refused, never crashes
        cache = _cache(trained_run)
        assert "discarding corrupt feature cache chunk" in capsys.readouterr().err
        assert cache.extract(files).computed == len(files)
    finally:
        shutil.rmtree(cache_dir)
        shutil.copytree(saved, cache_dir)


def test_corrupt_checkpoint_starts_fresh(tmp_path, capsys):
    from edgetl.train import checkpoint

    state = checkpoint.State("head", 3, [{"epoch": 1}], [np.ones((2, 2), np.float32)], [np.zeros(3, np.float32)])
    path = checkpoint.save_state(tmp_path, "digest", state)
    assert checkpoint.load_state(tmp_path, "digest").epoch == 3
    assert checkpoint.load_state(tmp_path, "other") is None
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert checkpoint.load_state(tmp_path, "digest") is None
    path.write_bytes(b"PK\x03\x04 truncated")
    assert checkpoint.load_state(tmp_path, "digest") is None
    assert "warning: ignoring unreadable checkpoint" in capsys.readouterr().out


# ------------------------------------------------------------------ bundles, device heads
def test_bundle_files_are_verified_before_use(bundle):
    from edgetl.runtime.bundle import load_bundle

    loaded = load_bundle(bundle)
    loaded.verify_all()
    for fmt, entry in loaded.models.items():
        assert entry["sha256"] == atomic.sha256_file(bundle / entry["file"]), fmt
    path = bundle / loaded.models["tflite-int8"]["file"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        load_bundle(bundle).model_path("tflite-int8")
    (bundle / "head.npz").write_bytes(b"")
    with pytest.raises(BundleError, match="head.npz does not match its sha256"):
        load_bundle(bundle).path_of(loaded.manifest["head"])


def test_device_head_is_verified_and_falls_back(bundle, capsys):
    from edgetl.runtime import headstore
    from edgetl.runtime.bundle import load_bundle

    loaded = load_bundle(bundle)
    head = headstore.original_head(loaded)
    first = headstore.swap_in(loaded, head, 1.0, "base-tflite-int8")
    head.biases[-1] = head.biases[-1] + 1.0
    second = headstore.swap_in(loaded, head, 1.0, "base-tflite-int8")
    assert headstore.active_head(loaded).record["file"] == second["file"] != first["file"]
    assert not list(headstore.heads_dir(loaded).glob(".*"))  # no temporary files
    (headstore.heads_dir(loaded) / second["file"]).write_bytes(b"corrupt")
    active = headstore.active_head(loaded)
    assert active.record["file"] == first["file"]  # walked back to the previous, verified head
    assert "does not match its sha256" in capsys.readouterr().err
    (headstore.heads_dir(loaded) / first["file"]).unlink()
    assert headstore.active_head(loaded).record is None  # then the exported head
    headstore.pointer_path(loaded).write_text("{not json")
    assert headstore.active_head(loaded).record is None


def test_a_swap_cut_between_its_two_renames_points_to_the_previous_bundle(tmp_path):
    from edgetl.runtime.bundle import load_bundle

    (tmp_path / ".bundle.old").mkdir()  # what atomic_dir leaves if killed between os.replace calls
    with pytest.raises(BundleError, match=r"interrupted while swapping, the previous bundle is at .*\.bundle\.old"):
        load_bundle(tmp_path / "bundle")
