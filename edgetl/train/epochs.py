"""The training loop: epochs that reseed themselves, checkpoint, stop early, and can resume exactly.

Every epoch reseeds TF/NumPy and the dropout generators from (seed, epoch) and shuffles with
its own generator, so a run resumed from RUN/checkpoints/state.npz after a kill -9 continues
exactly as if it had never stopped (see edgetl.train.checkpoint). The head on cached features
runs all its epochs in one model.fit (run_head_phase); fine-tuning, whose data is images, runs
one model.fit per epoch (run_phase). An epoch of the head is `rows` rows: its training rows in
a seeded order, repeated when `min_steps` asks for more steps than a small data set has.
EarlyStop watches a held-out slice of the training images (never the val split).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.models.classifier import output_kind
from edgetl.testhooks import slow_step
from edgetl.train import checkpoint, distribute
from edgetl.train.config import TrainConfig
from edgetl.train.early_stop import EarlyStop

EpochHook = Callable[[str, int], None]
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "holdout_loss")


def make_optimizer(name: str, learning_rate):
    from edgetl._tf import keras

    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return optimizers[name](learning_rate=learning_rate)


def schedule(config: TrainConfig, total_steps: int):
    """The head's learning rate: constant, or cosine decay from config.learning_rate to 0 over the run."""
    from edgetl._tf import keras

    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(1, total_steps), alpha=0.0)
    return config.learning_rate


def compile_model(
    model, config: TrainConfig, num_classes: int, learning_rate, steps_per_execution: int = 1, smoothing: float = 0.0
):
    """Sparse labels without smoothing (fine-tuning); one-hot targets with `smoothing` > 0 (the head).

    steps_per_execution > 1 runs that many batches per tf.function call: same updates, less Python overhead.
    """
    from edgetl._tf import keras

    kind, _ = output_kind(num_classes)
    if kind == "sigmoid":
        loss = keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
    elif smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    optimizer = make_optimizer(config.optimizer, learning_rate)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], steps_per_execution=steps_per_execution)
    return optimizer


def reseed_dropout(model, seed: int) -> bool:
    """Reset every Dropout's generator from `seed`; False if a layer has no generator to reset.

    Relies on tf_keras' generator-backed dropout (enabled in edgetl._tf); the private names are
    pinned by the tf_keras<2.22 requirement, and the caller falls back to retracing without them.
    """
    from edgetl._tf import keras

    for layer in model.submodules:
        if isinstance(layer, keras.layers.Dropout):
            rng = getattr(layer, "_random_generator", None)
            if rng is None or not hasattr(rng, "_maybe_init"):
                return False
            rng._maybe_init()
            if getattr(rng, "_generator", None) is None:
                return False
            rng._generator.reset_from_seed(seed)
    return True


def seed_epoch(model, config: TrainConfig, epoch: int) -> bool:
    """Reseed TF/NumPy/Python and the dropout generators from (seed, epoch); False if dropout could not be."""
    from edgetl._tf import keras

    epoch_seed = (config.seed + 7919 * (epoch + 1)) % 2**31
    keras.utils.set_random_seed(epoch_seed)
    return reseed_dropout(model, epoch_seed)


def epoch_rows(config: TrainConfig, n: int) -> int:
    """Rows an epoch goes through: the data set, or more when config.min_steps needs more batches."""
    wanted = math.ceil(config.min_steps / max(1, config.epochs))
    if n == 0 or wanted <= math.ceil(n / config.batch_size):
        return n
    return min(wanted * config.batch_size, n * 1000)


def epoch_order(config: TrainConfig, epoch: int, n: int, rows: int | None = None) -> np.ndarray:
    """`rows` indices into n rows for this epoch: seeded permutations back to back, cut to length."""
    rows = n if rows is None else rows
    if n == 0:
        return np.zeros(0, np.int64)
    orders = [np.random.default_rng([config.seed, epoch, r]).permutation(n) for r in range(1, -(-rows // n))]
    return np.concatenate([np.random.default_rng([config.seed, epoch]).permutation(n), *orders])[:rows]


def fit_epoch(model, x, y, epoch: int, config: TrainConfig, validation, callbacks, weights=None, rows=None) -> dict:
    """One epoch whose randomness (dropout, order) depends only on (seed, epoch)."""
    if not seed_epoch(model, config, epoch):
        model.make_train_function(force=True)  # retrace: new op seeds (0.35 s per epoch)
    if isinstance(x, np.ndarray):
        order = epoch_order(config, epoch, len(x), rows)
        x, y, weights = x[order], y[order], None if weights is None else weights[order]
        if config.strategy == "multi_worker":  # explicit DATA sharding of each global batch
            x, y = distribute.batches(x, y, config.batch_size, weights), None
            validation, weights = distribute.batches(*validation, config.batch_size), None
    batch_size = config.batch_size if isinstance(x, np.ndarray) else None
    h = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epoch + 1,
        initial_epoch=epoch,
        shuffle=False,
        validation_data=validation,
        verbose=0,
        callbacks=callbacks,
        sample_weight=weights,
    )
    return {k: float(v[-1]) for k, v in h.history.items()}


@dataclass
class Loop:
    """What every epoch of a run shares: its config, where it checkpoints, its history and its hooks."""

    config: TrainConfig
    out: Path
    digest: str  # checkpoints carry it, so a resume never mixes two runs
    history: list[dict]
    epoch_hook: EpochHook | None = None
    echo: Callable[[str], None] = print
    strategy: Any = None  # tf.distribute strategy
    workers: Any = None  # edgetl.train.distribute.Workers
    state: checkpoint.State | None = None  # where a resumed run left off

    @classmethod
    def open(cls, config: TrainConfig, out: Path, digest: str, resume: bool, strategy, workers, epoch_hook, echo):
        """A loop that resumes from out/checkpoints when `resume` and the checkpoint is this run's."""
        state = checkpoint.load_state(out / "checkpoints", digest) if resume else None
        if state:
            echo(f"resuming from {out / 'checkpoints'}: {state.phase} epoch {state.epoch + 1} done")
        history = list(state.history) if state else []
        return cls(config, out, digest, history, epoch_hook, echo, strategy, workers, state)

    def end_epoch(self, phase: str, model, optimizer, epoch: int, logs: dict, stop: EarlyStop | None = None) -> bool:
        """Early stopping's verdict, history row, progress line, checkpoint, then the hook (tests stop here).

        -> True when the phase should stop now.
        """
        done = False
        if stop is not None:
            logs["holdout_loss"], done = stop.update(model, epoch)
        self.history.append({"epoch": epoch + 1, "phase": phase, **{k: logs.get(k) for k in HISTORY_KEYS}})
        held = f" holdout_loss {logs['holdout_loss']:.4f}" if "holdout_loss" in logs else ""
        self.echo(
            f"epoch {epoch + 1} [{phase}] loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
            f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}{held}"
        )
        weights, slots = model.get_weights(), checkpoint.optimizer_values(optimizer)
        extra = (stop.state(), stop.best_weights) if stop is not None else ({}, [])
        state = checkpoint.State(phase, epoch, self.history, weights, slots, *extra)
        checkpoint.save_state(self.out / "checkpoints", self.digest, state)
        slow_step()
        if self.epoch_hook is not None:
            self.epoch_hook(phase, epoch)
        return done


def run_phase(
    phase: str,
    model,
    optimizer,
    first: int,
    last: int,
    data_for_epoch,
    validation,
    loop: Loop,
    callbacks,
    stop: EarlyStop | None = None,
    weights=None,
    rows=None,
) -> None:
    """Epochs [first, last) of a phase, one model.fit per epoch; a checkpoint after each one."""
    for epoch in range(first, last):
        x, y = data_for_epoch(epoch)
        logs = fit_epoch(model, x, y, epoch, loop.config, validation, callbacks, weights, rows)
        if loop.end_epoch(phase, model, optimizer, epoch, logs, stop):
            break


@dataclass(frozen=True)
class HeadData:
    """What the head trains on: feature rows, targets, per-row loss weights (None: equal)."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None = None


def run_head_phase(
    phase: str,
    model,
    optimizer,
    first: int,
    last: int,
    data: HeadData,
    validation,
    loop: Loop,
    callbacks,
    stop: EarlyStop | None = None,
) -> None:
    """The head on cached features: every epoch in ONE model.fit, same batches and seeds as run_phase.

    A fit call per epoch costs ~0.3 s of setup (data adapters, iterators) for a head whose epoch
    computes in milliseconds. Here one dataset yields the epochs' batches back to back (each
    epoch's own order, a partial last batch), and a callback reseeds, checks early stopping and
    checkpoints at the epoch boundaries, so results and resume stay identical to run_phase.
    multi_worker, or dropout that cannot be reseeded inside fit, falls back to run_phase.
    """
    from edgetl._tf import keras

    config, rows = loop.config, epoch_rows(loop.config, len(data.x))
    if first >= last:
        return
    if config.strategy == "multi_worker" or not seed_epoch(model, config, first):
        run_phase(
            phase,
            model,
            optimizer,
            first,
            last,
            lambda e: (data.x, data.y),
            validation,
            loop,
            callbacks,
            stop,
            data.weights,
            rows,
        )
        return

    class EpochBoundary(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seed_epoch(model, config, epoch)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            model.stop_training = loop.end_epoch(phase, model, optimizer, epoch, logs, stop)

    model.fit(
        epoch_batches(data, config, first, last, rows),
        epochs=last,
        initial_epoch=first,
        steps_per_epoch=-(-rows // config.batch_size),
        validation_data=validation,
        validation_batch_size=config.batch_size,
        verbose=0,
        callbacks=[EpochBoundary(), *callbacks],
    )


def epoch_batches(data: HeadData, config: TrainConfig, first: int, last: int, rows: int):
    """A tf.data pipeline of the batches of epochs [first, last), each epoch in its own seeded order."""
    from edgetl._tf import tf

    n = len(data.x)
    features, labels = tf.constant(data.x), tf.constant(data.y)
    weights = tf.constant(data.weights if data.weights is not None else np.ones(n, np.float32))
    orders = tf.data.Dataset.from_generator(  # one epoch's order at a time, not epochs x rows at once
        lambda: (epoch_order(config, e, n, rows) for e in range(first, last)),
        output_signature=tf.TensorSpec((rows,), tf.int64),
    )
    return (
        orders.flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(config.batch_size))
        .map(lambda r: (tf.gather(features, r), tf.gather(labels, r), tf.gather(weights, r)))
        .prefetch(2)
    )
