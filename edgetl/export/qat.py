"""Quantization-aware training of the head (tensorflow-model-optimization).

Only the head is trained, as in `edgetl train`: base features of the training split are
computed once, the head is wrapped by `tfmot.quantization.keras.quantize_model` (fake-quant
nodes that learn int8 ranges) and fitted for a few epochs, then put back behind the frozen
base. The result converts to full-int8 TFLite as "tflite-qat-int8"; the head's learned
ranges replace calibration for the head, the base is still calibrated.

    train images -> base (frozen) -> features -> QAT head (fit N epochs)
    image -> base -> QAT head  ==>  TFLiteConverter (int8)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgetl._tf import keras  # sets TF_USE_LEGACY_KERAS before tfmot is imported
from edgetl.errors import ExportError, ImageError
from edgetl.models.classifier import split_model
from edgetl.runtime.image import load_rgb, preprocess

CHUNK = 64


def base_features(base, files, size: int, scale: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Features of every decodable file, computed in chunks (bad images skipped)."""
    feats, labels, chunk, chunk_labels = [], [], [], []
    for i, (path, label) in enumerate(files):
        try:
            chunk.append(preprocess(load_rgb(path, size), scale, offset))
            chunk_labels.append(label)
        except (ImageError, OSError):
            pass
        if chunk and (len(chunk) == CHUNK or i == len(files) - 1):
            feats.append(base.predict(np.stack(chunk), verbose=0))
            labels.extend(chunk_labels)
            chunk, chunk_labels = [], []
    if not feats:
        raise ExportError("QAT: no decodable training images")
    return np.concatenate(feats), np.asarray(labels)


def init_ranges(head, qhead, features: np.ndarray) -> None:
    """Start the fake-quant ranges at the float head's real ranges instead of tfmot's +-6.

    The moving averages (decay 0.999) would need thousands of steps to leave +-6; features
    of a cut base can span a much narrower (or wider) range than that.
    """
    layers = head.layers[1:]
    values = keras.Model(head.input, [layer.output for layer in layers]).predict(features, verbose=0)
    values = values if isinstance(values, list) else [values]
    outputs = dict(zip((layer.name for layer in layers), values))
    inputs = dict(zip((layer.name for layer in layers), [features] + values[:-1]))
    for weight in qhead.weights:
        owner, _, var = weight.name.split(":")[0].rpartition("/")
        name = owner.rpartition("/")[2].removeprefix("quant_")
        if name not in outputs or not var.endswith(("_min", "_max")) or var.startswith("kernel"):
            continue
        data = outputs[name]
        if var.startswith("pre_activation"):
            kernel, bias = head.get_layer(name).get_weights()
            data = inputs[name].reshape(len(features), -1) @ kernel + bias
        weight.assign(float(data.min()) if var.endswith("_min") else float(data.max()))


def qat_classifier(run, fused, epochs: int, log: Callable[[str], None] = print):
    """-> fused tf_keras model (image -> base -> quantize-aware head)."""
    import tensorflow_model_optimization as tfmot

    config = run.config()
    base, head = split_model(fused)
    features, labels = base_features(base, run.files("train"), run.input_size, run.scale, run.offset)
    try:
        qhead = tfmot.quantization.keras.quantize_model(head)
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"QAT: the head cannot be quantization-wrapped: {str(exc).splitlines()[0][:160]}") from None
    init_ranges(head, qhead, features)
    sigmoid = run.info.get("output") == "sigmoid"
    qhead.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy" if sigmoid else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    targets = labels.astype(np.float32)[:, None] if sigmoid else labels
    history = qhead.fit(features, targets, epochs=epochs, batch_size=config.batch_size, verbose=0, shuffle=True)
    log(f"QAT: {epochs} epoch(s), final train accuracy {history.history['accuracy'][-1]:.3f}")
    inputs = keras.Input((run.input_size, run.input_size, 3), name="image")
    return keras.Model(inputs, qhead(base(inputs, training=False)), name="edgetl_qat_classifier")
