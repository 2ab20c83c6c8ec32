"""The head on cached base features: trained, copied into the fused model, and scored on the val split.

    training images --stratified holdout (config.holdout)--> fit images (all views) | held-out images (clean)
    phase "head":  standardized features (fixed mean/sd), label smoothing, class weights, cosine decay,
                   at least config.min_steps steps; the held-out loss after each epoch stops it early
                   (config.patience) and the best epoch's weights are kept; with head_solver logistic
                   (auto's choice for a linear head) one "epoch": scikit-learn's L-BFGS to convergence
    open world:    temperature and unknown statistics from the held-out images (edgetl.runtime.openworld)
    phase "refit": with config.refit, a fresh head on every training image for the best number of epochs;
                   the open-world statistics are carried over to it (fitted on the holdout head, whose
                   held-out logits the refit head no longer has)
    fold:          the standardization goes into the first Dense layer, so the head the fused model and
                   the device run is the plain Dense head (NumpyHead: one layer, imprintable)

The val split is never used to choose anything: it is only measured (history's val_* columns).
What a resumed run needs from a finished phase (best epoch, open-world statistics) is kept in
RUN/checkpoints beside the state.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from edgetl.models.classifier import build_head, fold_standardization, head_to_numpy, output_kind
from edgetl.runtime import atomic
from edgetl.runtime.openworld import OpenWorld, fit_openworld
from edgetl.runtime.retrain import stratified_split
from edgetl.train import checkpoint, distribute, tensorboard_logs
from edgetl.train.config import TrainConfig
from edgetl.train.early_stop import EarlyStop
from edgetl.train.epochs import HeadData, Loop, compile_model, epoch_rows, run_head_phase, schedule

if TYPE_CHECKING:
    from edgetl.train.trainer import Features

IMBALANCED = 1.5  # largest class / smallest class: class_weight auto turns balanced (as data_health flags it)
PHASES = ("head", "refit", "fine_tune")


def targets(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels -> what the head's loss takes: P(class 1) for a sigmoid head, one-hot for softmax."""
    if output_kind(num_classes)[0] == "sigmoid":
        return y.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[y.astype(int)]


def class_weights(y: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights (balanced: mean 1 over the rows), or None for equal weights."""
    counts = np.bincount(y.astype(int), minlength=num_classes).astype(np.float64)
    if mode == "none" or (mode == "auto" and counts.max() < IMBALANCED * max(1.0, counts.min())):
        return None
    return (len(y) / (num_classes * np.maximum(counts, 1))).astype(np.float32)


def head_data(x: np.ndarray, y: np.ndarray, num_classes: int, mode: str) -> HeadData:
    weights = class_weights(y, num_classes, mode)
    return HeadData(x, targets(y, num_classes), None if weights is None else weights[y.astype(int)])


def view_rows(images: np.ndarray, views: int) -> np.ndarray:
    """Row indices into Features.x_train of every cached view (clean first) of the given images."""
    return (images[:, None] * views + np.arange(views)).ravel()


def l2_strength(l2_c: float, images: int) -> float:
    """The Dense kernels' L2 factor for scikit-learn's C: loss + |W|^2 / (2 C N), N images (0: no L2)."""
    return 1.0 / (2.0 * l2_c * images) if l2_c else 0.0


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) of the feature rows (pooled vectors, or maps: per channel after pooling).

    A channel (nearly) constant on the training images keeps a variance of at least 1e-4 of the mean
    variance: dividing by its tiny spread would scale its Dense weights by up to 1e6 once folded, so a
    small change of that channel (an unseen image, int8 rounding, fine-tuning) would swamp the logits."""
    rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
    var = rows.var(axis=0)
    return rows.mean(axis=0).astype(np.float32), np.maximum(var, max(1e-12, 1e-4 * var.mean())).astype(np.float32)


def fit_head(loop: Loop, feats: Features, classes: list[str], head) -> tuple:
    """Train the head (resuming from loop.state), copy it, standardization folded, into the fused model's head.

    -> (the trained feature head or None when a resumed run is past it, its open-world statistics or
    None, a report for metrics.json).
    """
    config, n = loop.config, len(classes)
    phase = loop.state.phase if loop.state else "head"
    if phase == "fine_tune":  # the fused model's checkpoint holds the head; the rest was kept on disk
        return None, _load_world(loop), _load_report(loop)
    hold = np.zeros(0, np.int64)
    fit = np.arange(len(feats.y_train))
    if config.holdout > 0:
        fit, hold = stratified_split(feats.y_train.astype(int), config.holdout, config.seed)
    views = feats.views + 1
    rows = view_rows(fit, views)
    data = head_data(feats.x_train[rows], feats.y_train[fit].repeat(views), n, config.class_weight)
    stats = standardization(data.x) if config.standardize else None
    if phase == "head":
        stop = EarlyStop(feats.x_clean[hold], targets(feats.y_train[hold], n), config.patience) if len(hold) else None
        model = train_phase(loop, "head", feats, n, data, stats, config.epochs, stop)
        report = {
            "holdout_images": int(len(hold)),
            "class_weights": _weights_of(data, feats, fit, views),
            "epochs_run": sum(1 for r in loop.history if r["phase"] == "head"),
        }
        if stop is not None and config.patience and stop.best_weights:
            model.set_weights(stop.best_weights)
            report["best_epoch"] = stop.best_epoch + 1 - _offset(loop, "head")
        world = _fit_world(model, stats, feats, fit, hold, classes, config) if len(hold) else None
        _save(loop, world, report)
    else:
        model, world, report = None, _load_world(loop), _load_report(loop)
    if config.refit and len(hold):
        epochs = report.get("best_epoch", config.epochs)
        full = head_data(feats.x_train, feats.y_train.repeat(views), n, config.class_weight)
        stats = standardization(full.x) if config.standardize else None
        model = train_phase(loop, "refit", feats, n, full, stats, epochs, None)
        report["refit_epochs"] = epochs
        _save(loop, None, report)
    head.set_weights(fold_standardization(model, stats))
    if world is not None:
        world = world.rebind(head_to_numpy(head, classes, config.pooling, config.dense_activation))
    return model, world, report


def train_phase(
    loop: Loop,
    phase: str,
    feats: Features,
    num_classes: int,
    data: HeadData,
    stats,
    epochs: int,
    stop: EarlyStop | None,
):
    """One phase of head training, continued from the checkpoint when it was written in this phase."""
    config, state = loop.config, loop.state
    steps = -(-epoch_rows(config, len(data.x)) // config.batch_size)
    images = len(data.x) // (feats.views + 1)
    l2 = l2_strength(config.l2_c, images)
    with loop.strategy.scope():
        model = build_head(feats.shape, num_classes, config, stats, l2)
        smoothing = config.label_smoothing or 1e-12  # one-hot targets either way
        optimizer = compile_model(model, config, num_classes, schedule(config, steps * epochs), 32, smoothing)
        state = distribute.share_state(loop.strategy, loop.workers, state, model, optimizer)
        if state and state.phase == phase:
            checkpoint.restore(model, optimizer, state)
            if stop is not None:
                stop.restore(state)
    offset = _offset(loop, phase)
    first = state.epoch + 1 if state and state.phase == phase else offset
    validation = (feats.x_val, targets(feats.y_val, num_classes))
    if config.head_solver == "logistic":  # one "epoch": the solver runs to convergence
        if first < offset + 1:
            fit_logistic(model, data, config.l2_c, images)
            logs = _evaluate(model, data.x, data.y, data.weights)
            logs.update({f"val_{k}": v for k, v in _evaluate(model, *validation).items()})
            tensorboard_logs.log_epoch(config, loop.out, phase, offset, logs)
            loop.end_epoch(phase, model, optimizer, offset, logs, stop)
        return model
    callbacks = tensorboard_logs.callbacks(config, loop.out, phase)
    run_head_phase(phase, model, optimizer, first, offset + epochs, data, validation, loop, callbacks, stop)
    return model


def fit_logistic(model, data: HeadData, l2_c: float, images: int) -> None:
    """Fit a linear head's output layer with scikit-learn's LogisticRegression (L-BFGS, to convergence).

    It sees what feeds that layer (standardized, pooled features). C is scaled so that the penalty is
    the Keras solver's, |W|^2 / (2 C N) on the mean loss with N images, whatever the views per image.
    Two classes: binary logistic regression is the sigmoid unit; more: multinomial is the softmax."""
    from sklearn.linear_model import LogisticRegression

    from edgetl._tf import keras

    output = model.get_layer("predictions")
    inputs = keras.Model(model.input, output.input).predict(data.x, batch_size=1024, verbose=0)
    y = data.y[:, 0] if data.y.shape[1] == 1 else data.y.argmax(axis=1)
    c = l2_c * images / len(data.x) if l2_c else np.inf
    solver = LogisticRegression(C=c, max_iter=3000, tol=1e-5)
    solver.fit(inputs.astype(np.float64), y.astype(int), sample_weight=data.weights)
    output.set_weights([solver.coef_.T.astype(np.float32), solver.intercept_.astype(np.float32)])


def _evaluate(model, x, y, weights=None) -> dict:
    values = model.evaluate(x, y, sample_weight=weights, batch_size=1024, verbose=0, return_dict=True)
    return {k: float(v) for k, v in values.items()}


def score_head(config: TrainConfig, feature_head, feats: Features, num_classes: int) -> tuple[np.ndarray, float]:
    """The trained head on the cached val features -> (val probabilities, val log loss, without smoothing)."""
    probs = feature_head(feats.x_val, training=False).numpy()
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    y = feats.y_val.astype(int)
    if p.shape[1] == 1:
        loss = -np.mean(y * np.log(p[:, 0]) + (1 - y) * np.log(1 - p[:, 0]))
    else:
        loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    return probs, float(loss)


def _offset(loop: Loop, phase: str) -> int:
    """Epochs of earlier phases in the history: a phase's epochs are numbered on from them."""
    return sum(1 for r in loop.history if PHASES.index(r["phase"]) < PHASES.index(phase))


def _weights_of(data: HeadData, feats: Features, fit: np.ndarray, views: int) -> list[float] | None:
    if data.weights is None:
        return None
    labels = feats.y_train[fit].repeat(views).astype(int)
    return [round(float(data.weights[labels == k][0]), 4) for k in range(int(labels.max()) + 1)]


def _fit_world(model, stats, feats: Features, fit, hold, classes: list[str], config: TrainConfig) -> OpenWorld | None:
    """Temperature and unknown statistics of the holdout head, from images it did not train on."""
    head = head_to_numpy(_plain(model, stats, classes, config), classes, config.pooling, config.dense_activation)
    pooled = head.pool
    try:
        return fit_openworld(
            head,
            pooled(feats.x_clean[fit]),
            feats.y_train[fit].astype(int),
            pooled(feats.x_clean[hold]),
            feats.y_train[hold].astype(int),
        )
    except ValueError:  # fewer than 20 held-out images, or a class with none left to fit on
        return None


def _plain(model, stats, classes: list[str], config: TrainConfig):
    """The same head without the standardization layer (folded into its first Dense)."""
    plain = build_head(model.input.shape[1:], len(classes), config)
    plain.set_weights(fold_standardization(model, stats))
    return plain


def _save(loop: Loop, world: OpenWorld | None, report: dict) -> None:
    folder = loop.out / "checkpoints"
    if world is not None:
        world.save(folder / "openworld.npz")
    atomic.write_text(folder / "head.json", json.dumps(report))


def _load_world(loop: Loop) -> OpenWorld | None:
    path = loop.out / "checkpoints" / "openworld.npz"
    return OpenWorld.load(path) if path.is_file() else None


def _load_report(loop: Loop) -> dict:
    path = loop.out / "checkpoints" / "head.json"
    return json.loads(path.read_text()) if path.is_file() else {}
