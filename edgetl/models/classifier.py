"""The classifier: frozen base -> new head, built with the Keras functional API.

The fused model is `image -> base(training=False) -> head -> probabilities`, where `base`
and `head` are nested Models with those names. Training fits `head` alone on cached base
features; export takes `base` and `head` apart again for the device's split form.

Output: two classes -> one sigmoid unit (P(class 1)), as in the lessons; more -> softmax.
`feature_model` is the base with its pooling: what feature extraction runs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from edgetl.models.bases import build_base, get_base, resolve_taps
from edgetl.runtime.head import NumpyHead

if TYPE_CHECKING:
    from edgetl.train.config import TrainConfig


def output_kind(num_classes: int) -> tuple[str, int]:
    """(activation, units) of the output layer for this many classes."""
    return ("sigmoid", 1) if num_classes == 2 else ("softmax", num_classes)


def build_head(
    feature_shape: tuple[int, ...], num_classes: int, config: TrainConfig, standardize=None, l2: float = 0.0
):
    """pool -> Dense layers -> Dropout -> output. `standardize` = (mean, variance) per feature channel
    puts a fixed Normalization layer first (training only: fold_standardization removes it); `l2`
    penalises every Dense kernel."""
    from edgetl._tf import keras

    activation, units = output_kind(num_classes)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = inputs
    if standardize is not None:
        x = keras.layers.Normalization(mean=standardize[0], variance=standardize[1], name="standardize")(x)
    if len(feature_shape) == 3:
        pool = {
            "avg": keras.layers.GlobalAveragePooling2D,
            "max": keras.layers.GlobalMaxPooling2D,
            "flatten": keras.layers.Flatten,
        }[config.pooling]
        x = pool(name="pool")(x)
    for i, width in enumerate(config.dense_units):
        x = keras.layers.Dense(
            width, activation=config.dense_activation, kernel_regularizer=regularizer, name=f"dense_{i}"
        )(x)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(units, activation=activation, kernel_regularizer=regularizer, name="predictions")(x)
    return keras.Model(inputs, outputs, name="head")


def fold_standardization(model, standardize) -> list[np.ndarray]:
    """The weights of the same head without its standardization layer: (x - m) / s folded into the first
    Dense (W / s, b - (m / s) @ W). Standardizing per channel commutes with every pooling, so a flattened
    map repeats the channel's m and s at each position."""
    from edgetl._tf import keras

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    weights = [w for layer in dense for w in layer.get_weights()]
    if standardize is None:
        return weights
    w, b = weights[0], weights[1]
    mean, sd = np.asarray(standardize[0], np.float64), np.sqrt(np.asarray(standardize[1], np.float64))
    repeat = w.shape[0] // len(mean)
    mean, sd = np.tile(mean, repeat), np.tile(sd, repeat)
    folded_w = w / sd[:, None]
    return [folded_w.astype(np.float32), (b - mean @ folded_w).astype(np.float32), *weights[2:]]


def build_classifier(config: TrainConfig, num_classes: int, weights: str | None = "config"):
    """-> (fused model, base, head). `weights` defaults to config.weights."""
    from edgetl._tf import keras

    base = config_base(config, config.weights if weights == "config" else weights)
    head = build_head(tuple(base.output.shape[1:]), num_classes, config)
    inputs = keras.Input(shape=(config.input_size, config.input_size, 3), name="image")
    outputs = head(base(inputs, training=False))
    return keras.Model(inputs, outputs, name="edgetl_classifier"), base, head


def config_taps(config: TrainConfig) -> tuple[str, ...]:
    """The layers the config taps for multi-level features (its own list, or its base's default)."""
    return resolve_taps(config.taps, get_base(config.base), config.cut_layer, config.pooling)


def config_base(config: TrainConfig, weights: str | None):
    """The frozen base the config describes: its cut layer, and its taps (multi-level features) joined."""
    spec, taps = get_base(config.base), config_taps(config)
    return build_base(spec, config.input_size, weights, config.cut_layer, taps=taps, pooling=config.pooling)


def split_model(model):
    """Fused model -> (base, head) nested models."""
    return model.get_layer("base"), model.get_layer("head")


def head_to_numpy(head, classes: list[str], pooling: str, activation: str) -> NumpyHead:
    """Copy a trained Keras head into the numpy format the device runs and retrains."""
    from edgetl._tf import keras

    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    has_pool = any(layer.name == "pool" for layer in head.layers)
    out_kind, _ = output_kind(len(classes))
    return NumpyHead(
        classes=list(classes),
        pooling=pooling if has_pool else "none",
        output=out_kind,
        activation=activation,
        weights=[layer.get_weights()[0] for layer in dense],
        biases=[layer.get_weights()[1] for layer in dense],
    )


def with_class_probabilities(model):
    """One sigmoid unit P(class 1) -> two columns [P(class 0), P(class 1)].

    Exported fused models always output one probability per class, which is what MediaPipe
    Tasks and every runtime expect; `1 - p` is a Rescaling layer (x * -1 + 1), no Lambda.
    """
    from edgetl._tf import keras

    if model.output.shape[-1] != 1:
        return model
    p = model.output
    complement = keras.layers.Rescaling(-1.0, offset=1.0, name="complement")(p)
    probs = keras.layers.Concatenate(name="probabilities")([complement, p])
    return keras.Model(model.input, probs, name=model.name)


def weights_digest(model) -> str:
    """sha256 over the values of every weight of a model."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(str(w.shape).encode())
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def feature_model(base, pooling: str):
    """The base, followed by global pooling when pooling is avg or max and the output is a map."""
    from edgetl._tf import keras

    if pooling == "none" or len(base.output.shape) != 4:
        return base
    layer = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}[pooling]()
    return keras.Model(base.input, layer(base.output), name="base_pooled")


def traced_forward(model):
    """model(x, training=False) as one traced graph for any batch size.

    predict_on_batch wraps every call in a fresh tf.data pipeline; on a 2-core CPU that made a
    MobileNetV2 batch of 32 cost ~45% more than this direct graph call, for the same outputs.
    """
    from edgetl._tf import tf

    spec = tf.TensorSpec((None, *model.input.shape[1:]), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])
