"""`edgetl update-head`: retrain the head on the device, numpy only, and swap it in safely.

    images --sha256--> FeatureStore hit? --no--> load_rgb -> preprocess -> base model -> pool
                                 |                                                      |
                                 +------------------- vectors (D,) <--------------------+
    vectors (this data + cached old data) --stratified split--> train | holdout
    train --standardize--> softmax regression (or MLP + dropout), mini-batch Adam + L2
    holdout: accuracy(current head) vs accuracy(new head) -> swap (headstore) if new >= current

Follows pycoral's softmax_regression.py: a linear layer + softmax trained on frozen features.
The standardization is folded into the first layer, so the saved head is a plain NumpyHead.
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgetl.errors import DataError, GateError, ImageError
from edgetl.runtime import formats, headstore, interpreter
from edgetl.runtime.bundle import load_bundle
from edgetl.runtime.feature_store import FeatureStore
from edgetl.runtime.folders import scan_class_folders
from edgetl.runtime.head import NumpyHead, softmax
from edgetl.runtime.openworld import OpenWorld, fit_openworld
from edgetl.runtime.predictor import choose_base_format, default_threads

FEATURES_DIR = Path("device") / "features"


@dataclass(frozen=True)
class RetrainConfig:
    """Attributes: data folder (<class>/<images>), training and acceptance settings of update-head."""

    data: str
    epochs: int = 100
    holdout: float = 0.2
    force: bool = False
    allow_new_classes: bool = False
    hidden: int = 0
    dropout: float = 0.2
    learning_rate: float = 1e-3
    l2: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    threads: int | None = None
    base_format: str | None = None


# ------------------------------------------------------------------------------ training
def _init_layers(sizes: list[int], rng: np.random.Generator) -> list[list[np.ndarray]]:
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        std = np.sqrt(2.0 / fan_in) if len(layers) < len(sizes) - 2 else 0.01
        layers.append([rng.normal(0, std, (fan_in, fan_out)).astype(np.float32), np.zeros(fan_out, np.float32)])
    return layers


def train_head(x: np.ndarray, y: np.ndarray, num_classes: int, cfg: RetrainConfig) -> tuple[list, list]:
    """Features (N, D) + labels (N,) -> (weights, biases) of a softmax head (hidden ReLU layer if cfg.hidden)."""
    rng = np.random.default_rng(cfg.seed)
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd > 1e-6, sd, 1.0).astype(np.float32)
    xs = ((x - mu) / sd).astype(np.float32)
    sizes = [x.shape[1]] + ([cfg.hidden] if cfg.hidden else []) + [num_classes]
    layers = _init_layers(sizes, rng)
    moments = [[(np.zeros_like(p), np.zeros_like(p)) for p in layer] for layer in layers]
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    for _ in range(cfg.epochs):
        order = rng.permutation(len(xs))
        for start in range(0, len(xs), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            acts, masks = [xs[idx]], []
            for i, (w, b) in enumerate(layers):  # forward
                z = acts[-1] @ w + b
                if i < len(layers) - 1:
                    z = np.maximum(z, 0)
                    keep = (rng.random(z.shape) >= cfg.dropout).astype(np.float32) / (1 - cfg.dropout)
                    masks.append(keep)
                    z = z * keep
                acts.append(z)
            grad = (softmax(acts[-1]) - onehot[idx]) / len(idx)  # d(cross-entropy)/d(logits)
            step += 1
            for i in range(len(layers) - 1, -1, -1):  # backward + Adam
                w, b = layers[i]
                grads = [acts[i].T @ grad + cfg.l2 * w, grad.sum(axis=0)]
                if i > 0:
                    grad = (grad @ w.T) * masks[i - 1] * (acts[i] > 0)
                for j, g in enumerate(grads):
                    m, v = moments[i][j]
                    m[...] = beta1 * m + (1 - beta1) * g
                    v[...] = beta2 * v + (1 - beta2) * g * g
                    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
                    layers[i][j] = layers[i][j] - cfg.learning_rate * m_hat / (np.sqrt(v_hat) + eps)
    w0, b0 = layers[0]
    layers[0] = [w0 / sd[:, None], b0 - (mu / sd) @ w0]  # fold (x - mu) / sd into layer 0
    return [w.astype(np.float32) for w, _ in layers], [b.astype(np.float32) for _, b in layers]


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, holdout indices): `fraction` of each class (at least one), seeded."""
    rng = np.random.default_rng(seed)
    train, hold = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_hold = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        hold.extend(idx[:n_hold])
        train.extend(idx[n_hold:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(hold, dtype=np.int64))


def accuracy(head: NumpyHead, vectors: np.ndarray, names: list[str]) -> float:
    predicted = np.asarray(head.classes)[head.predict(vectors).argmax(axis=1)]
    return float(np.mean(predicted == np.asarray(names)))


# ----------------------------------------------------------------------------- update-head
@dataclass
class UpdateResult:
    swapped: bool
    current_accuracy: float
    new_accuracy: float
    num_train: int
    num_holdout: int
    new_images: int
    cached_images: int
    failed_images: int
    classes: list[str]
    record: dict[str, Any] | None


def device_features(bundle, base_fmt: str, pooling: str) -> FeatureStore:
    """BUNDLE/device/features/<sha256(base model)[:16]>-<pooling>/: each image's pooled features and
    the class it had, keyed by the sha256 of its bytes. Renaming images costs nothing; another
    base (a new export) starts a new store."""
    return FeatureStore(bundle.root / FEATURES_DIR / f"{bundle.models[base_fmt]['sha256'][:16]}-{pooling}")


def _features(bundle, base_fmt: str, head: NumpyHead, data: dict[str, list[Path]], threads, err: TextIO):
    """-> (store, {image sha: class}, new count, failed count); runs the base only on uncached images."""
    base_path = bundle.model_path(base_fmt)  # verifies the sha256
    cache = device_features(bundle, base_fmt, head.pooling)
    model = None
    current: dict[str, str] = {}
    new = failed = 0
    for label, paths in data.items():
        for path in paths:
            try:
                if not path.is_file():  # a FIFO would block read_bytes forever
                    raise OSError(0, "not a regular file")
                raw = path.read_bytes()
            except OSError as exc:
                failed += 1
                print(f"error: {path}: cannot read ({exc.strerror or exc})", file=err)
                continue
            key = hashlib.sha256(raw).hexdigest()
            if key not in cache:
                try:
                    pixels = bundle.pixels(io.BytesIO(raw))
                except ImageError as exc:
                    failed += 1
                    print(f"error: {path}: {str(exc).split(': ', 1)[-1]}", file=err)
                    continue
                if model is None:
                    runtime = interpreter.runtime_of(base_fmt, bundle.models[base_fmt])
                    model = interpreter.open_model(base_path, runtime, threads or default_threads(), role="base")
                feats = model.outputs(model.from_pixels(pixels[None], bundle.scale, bundle.offset))
                cache.add(key, head.pool(feats)[0], label)
                new += 1
            current[key] = label
    cache.flush()
    return cache, current, new, failed


def refit_openworld(
    head: NumpyHead, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, hold_idx: np.ndarray, err: TextIO
) -> OpenWorld | None:
    """The new head's calibration and unknown statistics, from the images it did not train on."""
    try:
        return fit_openworld(head, x[train_idx], y[train_idx], x[hold_idx], y[hold_idx])
    except ValueError as exc:  # too few held-out images, or a class without training images
        print(f"note: the new head has no unknown detection ({exc})", file=err)
        return None


def update_head(bundle_dir, cfg: RetrainConfig, err: TextIO = sys.stderr) -> UpdateResult:
    """Train a new head on cfg.data; swap it in only if its held-out accuracy >= the current head's."""
    if not 0.0 < cfg.holdout < 1.0:
        raise DataError(f"--holdout must be between 0 and 1 (exclusive), got {cfg.holdout}")
    if cfg.epochs < 1:
        raise DataError(f"--epochs must be >= 1, got {cfg.epochs}")
    bundle = load_bundle(bundle_dir)
    data = scan_class_folders(cfg.data)
    with headstore.exclusive(bundle):
        return _update_head(bundle, data, cfg, err)


def _update_head(bundle, data: dict[str, list[Path]], cfg: RetrainConfig, err: TextIO) -> UpdateResult:
    active = headstore.active_head(bundle)
    current = active.head
    unknown = sorted(set(data) - set(current.classes))
    if unknown and not cfg.allow_new_classes:
        raise DataError(
            f"{cfg.data} has classes the head does not know: {', '.join(unknown)} "
            f"(head classes: {', '.join(current.classes)}); pass --allow-new-classes to add them"
        )
    classes = list(current.classes) + unknown
    base_fmt = choose_base_format(bundle, formats.fused_name(cfg.base_format) if cfg.base_format else None)
    cache, labels_now, new, failed = _features(bundle, base_fmt, current, data, cfg.threads, err)
    if len(labels_now) < 2:
        raise DataError(
            f"update-head needs at least 2 readable images per class in {cfg.data}; "
            f"found {len(labels_now)} -- add more images"
        )
    merged = {k: v for k, v in cache.labels.items() if v in classes}  # old data (cached), then this data
    merged.update(labels_now)
    keys = sorted(merged)
    y = np.array([classes.index(merged[k]) for k in keys], dtype=np.int64)
    counts = np.bincount(y, minlength=len(classes)) if len(y) else np.zeros(len(classes), np.int64)
    thin = [c for c, n in zip(classes, counts) if n == 1]
    if len(keys) < 2 or thin:
        raise DataError(
            f"update-head needs at least 2 readable images per class; found {len(keys)} image(s)"
            + (f", only one for {', '.join(thin)}" if thin else "")
            + " -- add more images"
        )
    missing = [c for c, n in zip(classes, counts) if n == 0]
    if missing:
        print(f"warning: no images for class(es) {', '.join(missing)}; the new head cannot predict them", file=err)
    x = cache.get(keys)
    train_idx, hold_idx = stratified_split(y, cfg.holdout, cfg.seed)
    weights, biases = train_head(x[train_idx], y[train_idx], len(classes), cfg)
    new_head = NumpyHead(classes, current.pooling, "softmax", "relu", weights, biases)
    names = [classes[i] for i in y[hold_idx]]
    acc_current = accuracy(current, x[hold_idx], names)
    acc_new = accuracy(new_head, x[hold_idx], names)
    result = UpdateResult(
        False, acc_current, acc_new, len(train_idx), len(hold_idx), new, len(keys) - new, failed, classes, None
    )
    if acc_new < acc_current and not cfg.force:
        raise GateError(
            f"new head: {acc_new:.1%} held-out accuracy < current head ({active.description}): "
            f"{acc_current:.1%} on {len(hold_idx)} images; kept the current head (--force to swap anyway)"
        )
    world = refit_openworld(new_head, x, y, train_idx, hold_idx, err)
    extra = {"previous_accuracy": acc_current, "num_train": len(train_idx), "num_holdout": len(hold_idx)}
    result.record = headstore.swap_in(bundle, new_head, acc_new, base_fmt, extra, world)
    result.swapped = True
    headstore.prune(bundle)
    return result
