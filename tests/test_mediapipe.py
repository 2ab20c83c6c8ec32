"""MediaPipe metadata: MediaPipe Tasks' ImageClassifier loads the .tflite alone and agrees with
edgetl's runtime (load_rgb, then the adapter `edgetl run` uses) on every image.

The model's answer is known: global average pooling + a fixed Dense layer picks the dominant
colour channel, so each image's class is also checked against its colour.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgetl.errors import ExportError
from edgetl.export.mediapipe_metadata import (
    add_mediapipe_metadata,
    append_packed_files,
    classify_with_mediapipe,
    mediapipe_python,
    normalization,
    read_mediapipe_metadata,
    split_packed_files,
)
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.runtime.interpreter import open_model

CLASSES = ["red", "green", "blue"]
SIZE = 32
SCALE, OFFSET = 1 / 127.5, -1.0  # MobileNetV2 preprocessing


def test_normalization_matches_scale_offset():
    mean, std = normalization(SCALE, OFFSET)
    assert (mean, std) == pytest.approx((127.5, 127.5))
    pixels = np.array([0.0, 64.0, 255.0])
    np.testing.assert_allclose((pixels - mean) / std, pixels * SCALE + OFFSET, atol=1e-6)
    assert normalization(1.0, 0.0) == (0.0, 1.0)  # MobileNetV3: raw pixels
    with pytest.raises(ExportError):
        normalization(0.0, 1.0)


def test_bad_labels_and_missing_model(tmp_path):
    with pytest.raises(ExportError, match="labels"):
        add_mediapipe_metadata(tmp_path / "m.tflite", tmp_path / "o.tflite", ["a", ""], SCALE, OFFSET)
    with pytest.raises(ExportError, match="not found"):
        add_mediapipe_metadata(tmp_path / "m.tflite", tmp_path / "o.tflite", ["a", "b"], SCALE, OFFSET)
    with pytest.raises(ExportError, match="not an executable"):
        mediapipe_python(str(tmp_path / "no-python"))


def _exporter_style(model: bytes) -> bytes:
    """What edgetl's exporter writes: the flatbuffer + a (deflated) zip of labels.txt and edgetl.json."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.txt", "".join(f"{c}\n" for c in CLASSES))
        archive.writestr("edgetl.json", json.dumps({"classes": CLASSES}))
    return model + buf.getvalue()


def test_split_and_append_packed_files():
    flatbuffer = b"TFL3" + bytes(range(256)) * 4
    model, files = split_packed_files(_exporter_style(flatbuffer))
    assert model == flatbuffer and sorted(files) == ["edgetl.json", "labels.txt"]
    assert split_packed_files(flatbuffer) == (flatbuffer, {})
    joined = append_packed_files(flatbuffer, {"edgetl.json": b"{}"})
    with zipfile.ZipFile(io.BytesIO(joined)) as archive:
        assert (
            archive.read("edgetl.json") == b"{}" and archive.getinfo("edgetl.json").compress_type == zipfile.ZIP_STORED
        )
    assert joined.startswith(flatbuffer)


def _mediapipe_available() -> str | None:
    """Why MediaPipe cannot be used here, or None when it can."""
    try:
        python = mediapipe_python()
    except ExportError as exc:
        return str(exc)
    if python:
        return None
    try:
        import mediapipe.tasks.python.metadata.metadata_writers.metadata_writer  # noqa: F401
    except ImportError:
        return "no mediapipe 0.10.x: run scripts/setup_mediapipe_venv.sh (or set EDGETL_MEDIAPIPE_PYTHON)"
    return None


@pytest.fixture
def mediapipe_ready() -> None:
    """Skip (with the reason) where MediaPipe 0.10.x is not set up; CI's test script sets it up."""
    reason = _mediapipe_available()
    if reason:
        pytest.skip(reason)


def _images(folder):
    """Noisy colour images with a clear dominant channel; returns (paths, expected class index)."""
    rng = np.random.default_rng(0)
    paths, expected = [], []
    for i in range(12):
        cls = i % 3
        color = rng.integers(10, 110, 3)
        color[cls] = rng.integers(170, 250)
        pixels = np.clip(color + rng.integers(-25, 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{CLASSES[cls]}_{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
        expected.append(cls)
    return paths, expected


def _colour_model(tmp_path):
    """float32 and int8 (uint8 in/out) TFLite models that classify by mean colour."""
    from edgetl._tf import keras, tf

    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([np.eye(3, dtype=np.float32) * 3.0, np.zeros(3, np.float32)])

    float_path = tmp_path / "float32.tflite"
    float_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    rng = np.random.default_rng(1)
    # Pure black and white frames pin the input range to [-1, 1]: uint8 input == raw pixels.
    calib = [np.zeros((1, SIZE, SIZE, 3)), np.full((1, SIZE, SIZE, 3), 255.0)]
    calib += [rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float64) for _ in range(16)]

    def representative():
        for pixels in calib:
            yield [preprocess(pixels, SCALE, OFFSET)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    int8_path = tmp_path / "int8.tflite"
    int8_path.write_bytes(converter.convert())
    return {"float32": float_path, "int8": int8_path}


def _edgetl_top1(model_path, images) -> list[tuple[int, float]]:
    """(top-1 index, its probability) per image, through the runtime adapter `edgetl run` uses."""
    model = open_model(model_path, "tflite", role="raw")
    if model.in_quant is not None:  # calibrated on [-1, 1]: the uint8 input is the raw pixels
        assert model.in_quant.zero_point == 127 and model.in_quant.scale == pytest.approx(SCALE, rel=1e-3)
    tops = []
    for path in images:
        pixels = load_rgb(path, SIZE)[None]
        tensor = model.from_pixels(pixels, SCALE, OFFSET)
        if model.in_quant is not None:
            np.testing.assert_array_equal(tensor, pixels)  # what MediaPipe feeds a uint8 model
        y = model.outputs(tensor)[0]
        tops.append((int(np.argmax(y)), float(np.max(y))))
    return tops


@pytest.mark.slow
def test_mediapipe_image_classifier_agrees_with_edgetl(tmp_path, mediapipe_ready):
    images, expected = _images(tmp_path)
    for kind, plain in _colour_model(tmp_path).items():
        if kind == "int8":  # as the exporter writes it: labels already appended as a zip
            plain.write_bytes(_exporter_style(plain.read_bytes()))
        direct = _edgetl_top1(plain, images)
        assert [i for i, _ in direct] == expected, kind

        with_md = add_mediapipe_metadata(plain, tmp_path / f"{kind}_mp.tflite", CLASSES, SCALE, OFFSET)
        info = read_mediapipe_metadata(with_md)
        assert info["labels"] == CLASSES
        if kind == "int8":  # the exporter's edgetl.json survives, stored (MediaPipe reads only stored zips)
            assert info["files"] == ["edgetl.json", "labels.txt"]
            with zipfile.ZipFile(with_md) as archive:
                assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
        else:
            assert info["files"] == ["labels.txt"]
        process = info["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"][0]
        assert process["options"]["mean"] == pytest.approx([127.5]) and process["options"]["std"] == pytest.approx(
            [127.5]
        )

        results = classify_with_mediapipe(with_md, images)
        assert [r["index"] for r in results] == [i for i, _ in direct], kind
        # The pixel route (what benchmarks/mediapipe_agreement.py uses on real photos) is the same.
        assert classify_with_mediapipe(with_md, np.stack([load_rgb(p, SIZE) for p in images])) == results
        assert [r["label"] for r in results] == [CLASSES[i] for i in expected]
        # Same scores too: only true if MediaPipe normalized exactly like preprocess() (argmax alone
        # would survive a wrong mean/std here). int8: the same input bytes, so the same output.
        tolerance = 1e-4 if kind == "float32" else 1e-6
        np.testing.assert_allclose([r["score"] for r in results], [p for _, p in direct], atol=tolerance)
        assert min(p for _, p in direct) > 0.5


@pytest.mark.slow
def test_label_count_must_match_outputs(tmp_path, mediapipe_ready):
    model = _colour_model(tmp_path)["float32"]
    with pytest.raises(ExportError, match="3 output score"):
        add_mediapipe_metadata(model, tmp_path / "bad.tflite", ["cats", "dogs"], SCALE, OFFSET)
    assert not (tmp_path / "bad.tflite").exists()


@pytest.mark.slow
def test_uint8_input_must_take_raw_pixels(tmp_path, mediapipe_ready):
    model = _colour_model(tmp_path)["int8"]
    # Claiming MobileNetV3 preprocessing (raw [0, 255]) for a model quantized for [-1, 1] is refused.
    with pytest.raises(ExportError, match="MediaPipe feeds raw pixels"):
        add_mediapipe_metadata(model, tmp_path / "bad.tflite", CLASSES, 1.0, 0.0)
