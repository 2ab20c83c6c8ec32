"""Every base of the registry builds, gives its feature size, converts to int8 TFLite and runs on the device.

Random weights (weights=None) at each base's smallest input keep it fast; a base added to
edgetl.models.bases.BASES is tested here without another line.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgetl.models.bases import BASES, build_base
from edgetl.runtime.image import list_images

from conftest import make_dataset


def _size(spec) -> int:
    return max(spec.min_size, 32)


@pytest.mark.parametrize("name", sorted(BASES))
def test_base_builds_with_its_feature_size(name):
    spec = BASES[name]
    base = build_base(spec, _size(spec), None)
    assert base.output.shape[-1] == spec.feature_dim and base.name == "base" and not base.trainable
    assert base.input.shape[1:] == (_size(spec), _size(spec), 3)


# One base per preprocessing family that the rest of the suite does not convert already (MobileNet and
# InceptionV3 go through int8 export in the export tests): [-1, 1] EfficientNet-Lite with ReLU6, whole, and
# a caffe base whose BGR mean subtraction lives inside the graph, cut after its first stages (the whole
# ResNet50 took 43 s to convert, the cut one 12 s; what the test is about sits at the input). Every whole
# base converting took 5.7 min on two cores (10 passed, 2026-12-02): EDGETL_ALL_BASES=1 runs it for every
# base of the registry (README, "Bases").
ALL_BASES = os.environ.get("EDGETL_ALL_BASES") == "1"
INT8_BASES = sorted(BASES) if ALL_BASES else ["efficientnet_lite0", "resnet50"]
INT8_CUTS = {} if ALL_BASES else {"resnet50": "conv3_block1_out"}


@pytest.mark.slow
@pytest.mark.parametrize("name", INT8_BASES)
def test_base_exports_to_int8_tflite_and_runs_in_the_runtime(name, tmp_path):
    from edgetl._tf import keras
    from edgetl.export.quantize import QuantSpec, tflite_bytes
    from edgetl.export.representative import Calibration
    from edgetl.models.classifier import build_classifier
    from edgetl.runtime.image import load_rgb, preprocess
    from edgetl.runtime.interpreter import open_model
    from edgetl.train.config import build_config

    spec, size = BASES[name], _size(BASES[name])
    config = build_config(
        {"base": name, "weights": "none", "input_size": size, "dropout": 0.0, "cut_layer": INT8_CUTS.get(name)}
    )
    keras.utils.set_random_seed(0)
    fused, _, _ = build_classifier(config, 3)
    paths = list_images(make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=4, size=size))
    calibration = Calibration([(p, 0) for p in paths], size, spec.scale, spec.offset, 3)
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_bytes(fused, QuantSpec(weights="int8", io="uint8", calibration=len(paths)), calibration))

    model = open_model(path, "tflite", threads=1)
    assert model.input_dtype == np.uint8
    pixels = np.stack([load_rgb(p, size) for p in paths])
    probs = model.outputs(model.from_pixels(pixels, spec.scale, spec.offset))
    expected = fused.predict(preprocess(pixels, spec.scale, spec.offset), verbose=0)
    assert probs.shape == (len(paths), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
    # int8 follows the float model: on random weights a few probabilities move by up to ~0.08, a broken
    # conversion (wrong preprocessing, lost scale) moves them all by far more
    assert np.abs(probs - expected).mean() < 0.04
    np.testing.assert_allclose(probs, expected, atol=0.15)


def test_a_cut_inside_the_vgg16_top_builds_with_the_top():
    from edgetl.models.bases import get_base

    fc2 = build_base(get_base("vgg16"), 32, None, cut_layer="fc2")
    assert fc2.output.shape[-1] == 4096 and "flatten" in [layer.name for layer in fc2.layers]
    assert build_base(get_base("vgg16"), 32, None, cut_layer="block4_pool").output.shape[1:] == (2, 2, 512)


def test_caffe_bases_take_rgb_and_subtract_the_bgr_means_inside():
    from edgetl.models.bases import CAFFE_MEANS_BGR, get_base

    base = build_base(get_base("resnet50"), 32, None, cut_layer="caffe_preprocess")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    out = base.predict(pixels, verbose=0)
    np.testing.assert_allclose(out, pixels[..., ::-1] - np.asarray(CAFFE_MEANS_BGR, np.float32), atol=1e-4)


RUNG_CUTS = {"mobilenet_v3_small": "expanded_conv_3/squeeze_excite/Mul"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNG_CUTS))
def test_every_rung_of_the_int8_ladder_converts_on_bases_known_to_need_it(name, tmp_path):
    """Bases flagged as losing accuracy in full int8 rely on the fallback ladder: each rung is built and gated,
    or refused by the converter with a one-line reason (int16 activations have no HARD_SWISH kernel), and the
    ladder goes on to the next rung."""
    assert BASES[name].int8_note and not BASES["efficientnet_lite0"].int8_note
    from edgetl.export.converters import CONVERTERS, Job
    from edgetl.export.ladder import TFLITE_LADDER, climb
    from edgetl.export.options import ExportOptions
    from edgetl.export.representative import Calibration
    from edgetl.models.classifier import build_classifier
    from edgetl.train.config import build_config

    spec, size = BASES[name], _size(BASES[name])
    # cut after the first squeeze-excite block: the stem's hard-swish (the op int16 refuses), a residual Add
    # and both rungs' conversions in 27 s instead of 90 s for the whole base
    config = build_config({"base": name, "weights": "none", "input_size": size, "cut_layer": RUNG_CUTS[name]})
    fused, _, _ = build_classifier(config, 2)
    paths = list_images(make_dataset(tmp_path, per_class=2, size=size))
    calibration = Calibration([(p, i % 2) for i, p in enumerate(paths)], size, spec.scale, spec.offset, 2)
    job = Job(CONVERTERS["tflite-int8"].spec(ExportOptions(calibration=len(paths))), size, ("a", "b"))
    built = []

    def build(rung_spec):
        built.append(
            CONVERTERS["tflite-int8"].convert(
                fused, calibration, Job(rung_spec, size, job.classes), tmp_path / f"{len(built)}.tflite"
            )
        )
        return built[-1]

    # the rungs that differ most from plain int8 (which the export tests convert on MobileNetV2), not float16
    # (no calibration): 5 conversions of the whole MobileNetV3 took 218 s of the suite
    rungs = tuple(r for r in TFLITE_LADDER if r.name in ("float-first-last", "int16-activations"))
    result = climb(rungs, job.spec, calibration.available, build, lambda path: (False, 100.0))
    statuses = {a.rung: a.status for a in result.attempts}
    assert all(status in ("failed", "error") for status in statuses.values()), statuses
    assert all(a.detail and "\n" not in a.detail.strip() for a in result.attempts if a.status == "error")
    assert statuses["float-first-last"] == "failed"  # built and gated
    assert all(path.stat().st_size > 0 for path in built)
