"""The registry of pretrained bases: data, not `if name ==` branches.

Each entry says how to build the base (a `tf_keras.applications` builder), its preferred
input size, and its input preprocessing as `x * scale + offset` on RGB pixels in [0, 255].
That preprocessing travels into the run folder and the bundle manifest; the device runner
applies it from there, so training and deployment cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import ConfigError, ModelError


@dataclass(frozen=True)
class BaseSpec:
    """A pretrained base.

    Attributes:
      name: registry key (`--base`).
      builder: attribute of `tf_keras.applications`.
      default_size: the size its ImageNet weights were trained at.
      min_size: the smallest square input the architecture accepts.
      scale, offset: preprocessing, `x * scale + offset` on RGB in [0, 255].
      default_cut: layer whose output is the feature map (None: the base's last layer).
      builder_kwargs: extra keywords for the builder.
    """

    name: str
    builder: str
    default_size: int
    min_size: int
    scale: float
    offset: float
    default_cut: str | None = None
    builder_kwargs: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "color": "RGB", "range": [0, 255]}


# MobileNetV2 and InceptionV3 use Keras' "tf" mode: x / 127.5 - 1 -> [-1, 1].
# MobileNetV3 carries its own Rescaling layer (include_preprocessing=True): raw [0, 255].
BASES: dict[str, BaseSpec] = {
    spec.name: spec
    for spec in (
        BaseSpec("mobilenet_v2", "MobileNetV2", 224, 32, 1 / 127.5, -1.0),
        BaseSpec("mobilenet_v3_small", "MobileNetV3Small", 224, 32, 1.0, 0.0,
                 builder_kwargs=(("include_preprocessing", True),)),
        BaseSpec("mobilenet_v3_large", "MobileNetV3Large", 224, 32, 1.0, 0.0,
                 builder_kwargs=(("include_preprocessing", True),)),
        BaseSpec("inception_v3", "InceptionV3", 299, 75, 1 / 127.5, -1.0),
    )
}


def get_base(name: str) -> BaseSpec:
    try:
        return BASES[name]
    except KeyError:
        raise ConfigError(f"unknown base '{name}'; choose one of {', '.join(BASES)}") from None


def resolve_weights(weights: str | None) -> str | None:
    """'imagenet' -> download by Keras; 'none' -> random init; otherwise a local .h5 file."""
    if weights is None or str(weights).lower() in ("none", "null", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {weights} (use --weights imagenet, none, or a path to a .h5 file)")
    return str(path)


def build_base(spec: BaseSpec, input_size: int, weights: str | None, cut_layer: str | None = None,
               include_top: bool = False):
    """Build the (frozen) base as a tf_keras Model named 'base' whose output is the feature map."""
    from edgetl._tf import keras

    if input_size < spec.min_size:
        raise ConfigError(f"input_size {input_size} is too small for {spec.name}; minimum is {spec.min_size}")
    builder = getattr(keras.applications, spec.builder)
    kwargs = dict(spec.builder_kwargs)
    shape = (input_size, input_size, 3)
    try:
        full = builder(input_shape=shape, include_top=include_top, weights=resolve_weights(weights), **kwargs)
    except (ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot build {spec.name} with weights={weights}: {first}") from None
    cut = cut_layer or spec.default_cut
    if include_top or cut is None:
        output = full.output
    else:
        names = [layer.name for layer in full.layers]
        if cut not in names:
            close = [n for n in names if n.startswith(cut[:3])][:8]
            raise ConfigError(f"cut_layer '{cut}' is not a layer of {spec.name}; run `edgetl layers --base {spec.name}`"
                              + (f" (close: {', '.join(close)})" if close else ""))
        output = full.get_layer(cut).output
    base = keras.Model(full.input, output, name="base")
    base.trainable = False
    return base


def layer_table(spec: BaseSpec, input_size: int | None = None) -> list[tuple[str, str, tuple]]:
    """(name, class, output shape) of every layer, so the user can pick a cut."""
    base = build_base(spec, input_size or spec.default_size, None)
    rows = []
    for layer in base.layers:
        shape = layer.output.shape
        rows.append((layer.name, type(layer).__name__, tuple(shape)))
    return rows
