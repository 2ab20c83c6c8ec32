"""Property-based fuzzing of every parser that reads user or device input.

Bounded in CI (max_examples below); `benchmarks/fuzz_long.py` runs the same properties for
longer. The property in every case: the only exception that may escape is the module's
EdgetlError subclass (a one-line message), never a raw traceback.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgetl.errors import BundleError, ConfigError, ImageError
from edgetl.runtime.bundle import load_bundle, resolve_inside
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.train.config import FIELDS, build_config

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_png(seed: int, w: int, h: int, mode: str) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@FUZZ
@given(data=st.binary(max_size=2048))
def test_decoder_on_random_bytes(data):
    try:
        out = load_rgb(io.BytesIO(data), 16)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert out.shape == (16, 16, 3)


@FUZZ
@given(
    seed=st.integers(0, 2**16),
    w=st.integers(1, 64),
    h=st.integers(1, 64),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "LA", "1", "I;16"]),
    cut=st.integers(0, 4096),
    flip=st.integers(0, 4095),
    size=st.integers(1, 48),
)
def test_decoder_on_mutated_real_images(seed, w, h, mode, cut, flip, size):
    data = bytearray(_valid_png(seed, w, h, mode))
    if flip < len(data):
        data[flip] ^= 0xFF
    data = bytes(data[: max(8, len(data) - cut)])
    try:
        out = load_rgb(io.BytesIO(data), size)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        x = preprocess(out, 1 / 127.5, -1.0)
        assert x.min() >= -1.0 and x.max() <= 1.0


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(values=st.dictionaries(st.sampled_from(sorted(FIELDS)) | st.text(max_size=12), yaml_values, max_size=6))
def test_config_builder_only_raises_config_error(values):
    try:
        config = build_config(values)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert config.input_size >= 32


@FUZZ
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["format_version", "classes", "input", "models", "file", "size", "scale", "offset", "x"]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=12,
    )
)
def test_manifest_loader_only_raises_bundle_error(tmp_path_factory, doc):
    root = tmp_path_factory.mktemp("bundle")
    (root / "manifest.json").write_text(json.dumps(doc))
    try:
        bundle = load_bundle(root)
        for fmt in list(bundle.models):
            bundle.model_path(fmt)
    except BundleError as exc:
        assert "\n" not in str(exc)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:  # pragma: no cover - a finding
        pytest.fail(f"manifest {doc!r} raised {type(exc).__name__}: {exc}")


@FUZZ
@given(
    rel=st.lists(st.sampled_from(["a", "b.onnx", ".", "..", "/", "/etc/passwd", "~", "%2e", "\\"]), max_size=8).map(
        "".join
    )
)
def test_manifest_paths_never_escape_the_bundle(tmp_path_factory, rel):
    root = tmp_path_factory.mktemp("b")
    try:
        target = resolve_inside(root, rel)
    except BundleError:
        return
    assert target == root.resolve() or root.resolve() in target.parents
