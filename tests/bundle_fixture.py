"""A tiny bundle per the manifest contract (edgetl/runtime/bundle.py), built with TF for tests.

Two classes of solid-ish colour images ("blue", "red"), a 32 px two-conv base with random
weights, a GAP -> 1 sigmoid unit head trained for a few epochs, converted to TFLite float32
and full-int8 (uint8 io) in fused and base form, plus head.npz and manifest.json.

Building takes ~10-20 s (TF import + conversions), so it is done once per pytest session
(cached under the session's base temp) and each test gets its own copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["blue", "red"]
COLOURS = {"blue": (40, 60, 200), "red": (200, 50, 40), "green": (40, 190, 60)}
SIZE = 32
SCALE, OFFSET = 1 / 127.5, -1.0


def colour_image(colour: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    base = np.array(COLOURS[colour], dtype=np.float32)
    arr = base + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_dataset(root: Path, counts: dict[str, int], seed: int = 0, size: int = 40) -> Path:
    """root/<class>/<i>.png (and .jpg for every third) with `counts[class]` images each."""
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = colour_image(cls, rng, size)
            if i % 3 == 2:
                img.save(root / cls / f"{seed}_{i}.jpg", quality=95)
            else:
                img.save(root / cls / f"{seed}_{i}.png")
    return root


def _convert(model, int8: bool, calib: np.ndarray) -> bytes:
    from edgetl._tf import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
    return conv.convert()


def _io(data: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def one(d):
        scale, zp = d["quantization"]
        return {"dtype": np.dtype(d["dtype"]).name, "scale": float(scale), "zero_point": int(zp)}

    return {"input": one(inp), "output": one(out)}


def build_bundle(dest: Path, with_onnx: bool = True) -> Path:
    from edgetl._tf import keras, tf
    from edgetl.models.classifier import head_to_numpy
    from edgetl.runtime.atomic import sha256_file
    from edgetl.runtime.image import list_images, load_rgb, preprocess

    keras.utils.set_random_seed(1)
    dest.mkdir(parents=True)
    data = make_dataset(dest.parent / "train_data", {c: 12 for c in CLASSES}, seed=100)
    x = np.stack([preprocess(load_rgb(p, SIZE), SCALE, OFFSET) for c in CLASSES for p in list_images(data / c)])
    y = np.array([i for i, c in enumerate(CLASSES) for _ in list_images(data / c)], dtype=np.float32)

    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu", padding="same")(inp)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", padding="same")(h)
    base = keras.Model(inp, h, name="base")
    base.trainable = False
    feats = keras.Input((8, 8, 16), name="features")
    out = keras.layers.Dense(1, activation="sigmoid", name="predictions")(
        keras.layers.GlobalAveragePooling2D(name="pool")(feats)
    )
    head = keras.Model(feats, out, name="head")
    image = keras.Input((SIZE, SIZE, 3), name="image")
    fused = keras.Model(image, head(base(image, training=False)))
    fused.compile(keras.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    fused.fit(x, y, epochs=30, batch_size=24, verbose=0)

    models = {}
    for name, model, int8, role in (
        ("tflite-float32", fused, False, "fused"),
        ("tflite-int8", fused, True, "fused"),
        ("base-tflite-float32", base, False, "base"),
        ("base-tflite-int8", base, True, "base"),
    ):
        blob = _convert(model, int8, x)
        path = dest / f"{name.replace('-', '_')}.tflite"
        path.write_bytes(blob)
        models[name] = {"file": path.name, "runtime": "tflite", "role": role, **_io(blob)}
    if with_onnx:
        import tf2onnx

        spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image"),)
        tf2onnx.convert.from_keras(fused, input_signature=spec, opset=13, output_path=str(dest / "model.onnx"))
        models["onnx"] = {"file": "model.onnx", "runtime": "onnx", "role": "fused"}
    for entry in models.values():
        p = dest / entry["file"]
        entry.update(sha256=sha256_file(p), size_bytes=p.stat().st_size)
    head_to_numpy(head, CLASSES, "avg", "relu").save(dest / "head.npz")
    manifest = {
        "format_version": 1,
        "edgetl_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z",
        "source_run": {"path": "tests", "config": {}},
        "classes": CLASSES,
        "input": {
            "size": SIZE,
            "color": "RGB",
            "layout": "NHWC",
            "resize": "bilinear",
            "scale": SCALE,
            "offset": OFFSET,
        },
        "base": {"name": "tiny_conv", "cut_layer": None, "feature_shape": [8, 8, 16]},
        "output": "sigmoid",
        "models": models,
        "head": {
            "file": "head.npz",
            "sha256": sha256_file(dest / "head.npz"),
            "size_bytes": (dest / "head.npz").stat().st_size,
        },
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


def cached_bundle(tmp_path_factory) -> Path:
    """Build once per pytest session (under the session base temp), return the pristine copy."""
    root = tmp_path_factory.getbasetemp() / "edgetl_runtime_bundle"
    bundle = root / "bundle"
    if not (bundle / "manifest.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        build_bundle(bundle)
    return bundle


def fresh_bundle(tmp_path_factory, dest: Path) -> Path:
    """A private copy of the session bundle (tests may update heads or tamper with files)."""
    shutil.copytree(cached_bundle(tmp_path_factory), dest)
    return dest
