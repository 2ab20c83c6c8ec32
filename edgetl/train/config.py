"""The training configuration: one frozen dataclass, loaded from YAML, overridden by CLI flags.

Every field is also a `edgetl train` flag (`--input-size 96`, `--dense-units 1024,512`,
`--no-augment`), generated from the field list below, so YAML and CLI can never drift apart.
The resolved config is written into the run folder (`config.yaml`) and is all a run needs
to be reproduced.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgetl.errors import ConfigError

HEAD_SOLVERS = ("keras", "logistic")  # what `auto` resolves to, and what --search chooses from


def _f(default, help: str, choices: tuple | None = None, low: float | None = None, high: float | None = None):
    """A config field: its default, its --help text, and the choices or range validate() enforces."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high})


@dataclass(frozen=True)
class TrainConfig:
    """Everything `edgetl train` needs.

    Attributes are grouped as data, base, head, augmentation, optimisation, fine-tuning,
    output. Ranges and choices are enforced by `validate()`.
    """

    # data
    data: str | None = _f(None, "Class-per-folder image tree (with train/ and val/ or flat).")
    val_split: float = _f(0.2, "Fraction held out per class when --data is flat.", low=0.0, high=0.9)
    # base
    base: str = _f("mobilenet_v2", "Pretrained base (see `edgetl layers`).")
    weights: str = _f("imagenet", "imagenet | none | path to a .h5 weights file.")
    cut_layer: str | None = _f(None, "Layer of the base whose output feeds the head (default: the base's last layer).")
    input_size: int = _f(160, "Square input size in pixels.", low=32, high=1024)
    taps: str | None = _f(
        None,
        "Earlier layers whose pooled outputs join the cut layer's, comma-separated (multi-level features); "
        "default: the base's own (mobilenet_v2: block_13_expand_relu) when no cut_layer is set and pooling is "
        "avg or max; none: the cut layer's features only.",
    )
    # head
    pooling: str = _f("avg", "How the base's feature map becomes a vector.", choices=("avg", "max", "flatten"))
    dense_units: tuple[int, ...] = _f((), "Hidden Dense layers of the head, e.g. 1024 or 512,128.")
    dense_activation: str = _f("relu", "Activation of the hidden Dense layers.", choices=("relu", "tanh", "swish"))
    dropout: float = _f(0.2, "Dropout before the output layer.", low=0.0, high=0.95)
    # augmentation (applied to images before the frozen base; each view is cached)
    augment: bool = _f(True, "Train the head on augmented views as well as the original images.")
    augment_views: int = _f(1, "Augmented views per training image (cached once).", low=0, high=64)
    rotation: float = _f(72.0, "Max rotation in degrees (Keras rotation_range).", low=0.0, high=180.0)
    width_shift: float = _f(0.0, "Max horizontal shift as a fraction of width.", low=0.0, high=1.0)
    height_shift: float = _f(0.0, "Max vertical shift as a fraction of height.", low=0.0, high=1.0)
    shear: float = _f(0.0, "Max shear angle in degrees (Keras shear_range).", low=0.0, high=45.0)
    zoom: float = _f(0.0, "Zoom range: scale drawn from [1-zoom, 1+zoom].", low=0.0, high=0.9)
    horizontal_flip: bool = _f(True, "Randomly mirror left-right.")
    vertical_flip: bool = _f(False, "Randomly mirror top-bottom.")
    fill_mode: str = _f(
        "reflect",
        "How pixels moved in from outside are filled (Keras ImageDataGenerator 'nearest' or RandomRotation 'reflect').",
        choices=("nearest", "reflect"),
    )
    # optimisation of the head
    head_solver: str = _f(
        "auto",
        "How the head is fitted: keras (gradient descent, any head), logistic (scikit-learn's "
        "LogisticRegression, L-BFGS, with --l2-c and class weights: a linear head, no --dense-units), or "
        "auto: logistic for a linear head with L2, keras otherwise (the config records which).",
        choices=("auto", *HEAD_SOLVERS),
    )
    optimizer: str = _f("adam", "Optimizer of the head.", choices=("adam", "rmsprop", "sgd"))
    learning_rate: float = _f(1e-3, "Learning rate of the head (the peak, with a schedule).", low=1e-8, high=1.0)
    lr_schedule: str = _f("cosine", "Learning-rate schedule of the head.", choices=("constant", "cosine"))
    batch_size: int = _f(32, "Batch size.", low=1, high=4096)
    epochs: int = _f(10, "Epochs of head training (the most, with early stopping).", low=1, high=10000)
    min_steps: int = _f(
        500, "At least this many optimizer steps (small data sets get longer epochs).", low=0, high=10**7
    )
    label_smoothing: float = _f(0.1, "Label smoothing of the head's loss.", low=0.0, high=0.5)
    l2_c: float = _f(
        0.003, "Inverse L2 strength, as scikit-learn's C: the loss gains |W|^2 / (2 C N); 0: no L2.", low=0.0, high=1e6
    )
    cv_choice: bool = _f(
        True,
        "Choose a logistic head's l2_c, and whether its augmented views help, by k-fold CV on the train split "
        "(search_folds folds), as a linear probe chooses its C; config.yaml records the choice.",
    )
    standardize: bool = _f(True, "Standardize features for the head (folded into its first Dense layer at the end).")
    class_weight: str = _f(
        "auto",
        "Loss weights per class; auto: balanced when classes are imbalanced.",
        choices=("auto", "balanced", "none"),
    )
    holdout: float = _f(
        0.1, "Share of training images held out for early stopping and calibration (0: none).", low=0.0, high=0.5
    )
    patience: int = _f(
        3, "Epochs without a better held-out loss before stopping (0: never stop early).", low=0, high=1000
    )
    refit: bool = _f(True, "After early stopping, train again on every training image for the best number of epochs.")
    search: bool = _f(False, "Search the head's hyperparameters (k-fold CV on the train split) before training.")
    search_budget: float = _f(60.0, "Seconds the search may take.", low=1.0, high=10**6)
    search_folds: int = _f(3, "Folds of the search's cross-validation.", low=2, high=20)
    search_trials: int = _f(20, "Most trials of the search (the budget may stop it sooner).", low=1, high=10000)
    # fine-tuning
    fine_tune_layers: int = _f(
        0, "Unfreeze the top N layers of the base after the head converged (0: off).", low=0, high=100000
    )
    fine_tune_epochs: int = _f(5, "Epochs of end-to-end fine-tuning.", low=1, high=10000)
    fine_tune_learning_rate: float = _f(1e-5, "Learning rate for fine-tuning (keep it low).", low=1e-9, high=1.0)
    qat: bool = _f(False, "Quantization-aware training of the head after training (tensorflow-model-optimization).")
    qat_epochs: int = _f(2, "Epochs of quantization-aware training.", low=1, high=1000)
    # run
    seed: int = _f(42, "Seed for splitting, augmentation and initialisation.", low=0, high=2**31 - 1)
    out: str = _f("runs/latest", "Run folder to write.")
    cache_dir: str = _f("~/.cache/edgetl", "Where base features are cached between runs.")
    strategy: str = _f("default", "tf.distribute strategy.", choices=("default", "mirrored", "multi_worker"))
    tensorboard: bool = _f(False, "Write TensorBoard logs into the run folder.")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["dense_units"] = list(self.dense_units)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        return build_config({**self.to_dict(), **changes})


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any) -> Any:
    """Turn a YAML or CLI value into the field's type, or raise a ConfigError naming the key."""
    hint = _HINTS[name]
    optional = type(None) in typing.get_args(hint)
    target = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    if value is None or (isinstance(value, str) and value.lower() in ("null", "~") and optional):
        if optional:
            return None
        raise ConfigError(f"config key '{name}' must not be empty")
    origin = typing.get_origin(target)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (int, float)) and not isinstance(items, bool):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"config key '{name}' must be a list of integers, got {value!r}")
        try:
            return tuple(int(str(i).strip()) for i in items if str(i).strip() != "")
        except ValueError:
            raise ConfigError(f"config key '{name}' must be a list of integers, got {value!r}") from None
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"config key '{name}' must be true or false, got {value!r}")
    if target is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"config key '{name}' must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{name}' must be an integer, got {value!r}") from None
    if target is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{name}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{name}' must be a number, got {value!r}") from None
    if target is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{name}' must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key '{name}' has an unsupported type")  # pragma: no cover


def build_config(values: Mapping[str, Any]) -> TrainConfig:
    """Validate a mapping of keys (YAML spelling, `_` or `-`) and build the frozen config."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            close = [f for f in FIELDS if f.startswith(name[:4])]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key {str(key)!r}{hint}")
        clean[name] = _coerce(name, value)
    config = TrainConfig(**clean)
    validate(config)
    if config.head_solver == "auto":
        config = dataclasses.replace(config, head_solver=auto_solver(config))
    return config


def auto_solver(config: TrainConfig) -> str:
    """logistic for a linear head with L2: its penalized log loss minimised to convergence by L-BFGS, in
    about a second; keras for hidden layers, or with no L2 (an unpenalized logistic regression on
    separable features has no finite optimum)."""
    return "logistic" if not config.dense_units and config.l2_c else "keras"


def validate(config: TrainConfig) -> None:
    """Range and choice checks; the registry check of `base` lives in `edgetl.models.bases`."""
    for name, f in FIELDS.items():
        value = getattr(config, name)
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"config key '{name}' must be one of {', '.join(meta['choices'])}; got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = meta.get("low"), meta.get("high")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ConfigError(f"config key '{name}' must be between {low} and {high}; got {value!r}")
    if any(u <= 0 for u in config.dense_units):
        raise ConfigError(f"config key 'dense_units' must hold positive integers; got {list(config.dense_units)}")
    if config.head_solver == "logistic" and config.dense_units:
        raise ConfigError(
            "head_solver logistic fits a linear head: dense_units must be empty (or use --head-solver keras or auto)"
        )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping. Python tags (`!!python/object`) and non-mappings are refused."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """YAML file (optional) + CLI overrides (None values ignored) -> validated TrainConfig."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(values)


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
