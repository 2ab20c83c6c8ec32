"""`edgetl train`: frozen pretrained base + new head, trained on cached base features.

    data.load_dataset ──> splits (checked before any TF work)
    model.build_classifier ──> fused(base, head)
    features.FeatureCache ──> train views [clean + K augmented], clean val  (disk cache)
    head trained alone on the features (all epochs in one fit), reseeded and checkpointed per epoch
    [fine-tuning: unfreeze top N base layers, train end-to-end on augmented images]
    run folder (edgetl.train.run_folder contract), run.json written last

Every epoch reseeds TF/NumPy and the dropout generators from (seed, epoch) and shuffles with
its own generator, so a run resumed from RUN/checkpoints/state.npz after a kill -9
continues exactly as if it had never stopped (see edgetl.train.checkpoint). Resuming is automatic
when the checkpoint's digest (config, splits, base weights) matches; `resume=False`
(`--no-resume`) starts over.

strategy multi_worker (TF_CONFIG) shards feature extraction and head batches over several
processes or machines; only the chief writes the run folder (see edgetl.train.distribute).
TensorBoard (`--tensorboard`): RUN/tensorboard/{head,fine_tune,confusion} (see edgetl.train.tensorboard_logs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgetl.train import checkpoint, distribute, tensorboard_logs
from edgetl.train.augment import AugmentParams
from edgetl.models.bases import get_base
from edgetl.train.config import TrainConfig
from edgetl.train.data import Dataset, load_dataset
from edgetl.errors import ConfigError, DataError
from edgetl.train.extract import FeatureCache
from edgetl.models.classifier import build_classifier, build_head, output_kind
from edgetl.train.run_folder import write_run_folder
from edgetl.testhooks import slow_step

EpochHook = Callable[[str, int], None]


def make_optimizer(name: str, learning_rate: float):
    from edgetl._tf import keras

    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return optimizers[name](learning_rate=learning_rate)


def compile_model(model, config: TrainConfig, num_classes: int, learning_rate: float, steps_per_execution: int = 1):
    """steps_per_execution > 1 runs that many batches per tf.function call: same updates, less Python overhead."""
    kind, _ = output_kind(num_classes)
    loss = "binary_crossentropy" if kind == "sigmoid" else "sparse_categorical_crossentropy"
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


def epoch_order(config: TrainConfig, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([config.seed, epoch]).permutation(n)


def fit_epoch(model, x, y, epoch: int, config: TrainConfig, validation, callbacks) -> dict:
    """One epoch whose randomness (dropout, order) depends only on (seed, epoch)."""
    if not seed_epoch(model, config, epoch):
        model.make_train_function(force=True)  # retrace: new op seeds (0.35 s per epoch)
    if isinstance(x, np.ndarray):
        order = epoch_order(config, epoch, len(x))
        x, y = x[order], y[order]
        if config.strategy == "multi_worker":  # explicit DATA sharding of each global batch
            x, y, validation = distribute.batches(x, y, config.batch_size), None, distribute.batches(
                *validation, config.batch_size)
    batch_size = config.batch_size if isinstance(x, np.ndarray) else None
    h = model.fit(x, y, batch_size=batch_size, epochs=epoch + 1,
                  initial_epoch=epoch, shuffle=False, validation_data=validation, verbose=0, callbacks=callbacks)
    return {k: float(v[-1]) for k, v in h.history.items()}


def end_epoch(phase: str, model, optimizer, epoch: int, logs: dict, out: Path, digest: str, history: list[dict],
              epoch_hook: EpochHook | None, echo) -> None:
    """History row, progress line, checkpoint, then the hook (tests stop here)."""
    history.append({"epoch": epoch + 1, "phase": phase, **{k: logs.get(k) for k in
                    ("loss", "accuracy", "val_loss", "val_accuracy")}})
    echo(f"epoch {epoch + 1} [{phase}] loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
         f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}")
    state = checkpoint.State(phase, epoch, history, model.get_weights(), checkpoint.optimizer_values(optimizer))
    checkpoint.save_state(out / "checkpoints", digest, state)
    slow_step()
    if epoch_hook is not None:
        epoch_hook(phase, epoch)


def run_phase(phase: str, model, optimizer, first: int, last: int, data_for_epoch, validation, config, out: Path,
              digest: str, history: list[dict], callbacks, epoch_hook: EpochHook | None, echo) -> None:
    """Epochs [first, last) of a phase, one model.fit per epoch; a checkpoint after each one."""
    for epoch in range(first, last):
        x, y = data_for_epoch(epoch)
        logs = fit_epoch(model, x, y, epoch, config, validation, callbacks)
        end_epoch(phase, model, optimizer, epoch, logs, out, digest, history, epoch_hook, echo)


def run_head_phase(model, optimizer, first: int, last: int, x: np.ndarray, y: np.ndarray, validation, config,
                   out: Path, digest: str, history: list[dict], callbacks, epoch_hook: EpochHook | None, echo) -> None:
    """The head on cached features: every epoch in ONE model.fit, same batches and seeds as run_phase.

    A fit call per epoch costs ~0.3 s of setup (data adapters, iterators) for a head whose epoch
    computes in milliseconds. Here one dataset yields the epochs' batches back to back (each
    epoch's own permutation, a partial last batch), and a callback reseeds and checkpoints at
    the epoch boundaries, so results and resume stay identical to run_phase. multi_worker, or
    dropout that cannot be reseeded inside fit, falls back to run_phase.
    """
    from edgetl._tf import keras, tf

    if first >= last:
        return
    if config.strategy == "multi_worker" or not seed_epoch(model, config, first):
        run_phase("head", model, optimizer, first, last, lambda e: (x, y), validation, config, out, digest,
                  history, callbacks, epoch_hook, echo)
        return

    class EpochBoundary(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seed_epoch(model, config, epoch)

        def on_epoch_end(self, epoch, logs=None):
            end_epoch("head", model, optimizer, epoch, {k: float(v) for k, v in (logs or {}).items()}, out,
                      digest, history, epoch_hook, echo)

    features, labels = tf.constant(x), tf.constant(y)
    orders = tf.data.Dataset.from_generator(  # one epoch's permutation at a time, not epochs x rows at once
        lambda: (epoch_order(config, e, len(x)) for e in range(first, last)),
        output_signature=tf.TensorSpec((len(x),), tf.int64))
    batches = (orders
               .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(config.batch_size))
               .map(lambda rows: (tf.gather(features, rows), tf.gather(labels, rows)))
               .prefetch(2))
    model.fit(batches, epochs=last, initial_epoch=first, steps_per_epoch=-(-len(x) // config.batch_size),
              validation_data=validation, validation_batch_size=config.batch_size, verbose=0,
              callbacks=[EpochBoundary(), *callbacks])


def _drop_skipped(dataset: Dataset, train_kept: list[int], val_kept: list[int], skipped) -> Dataset:
    kept = dataclasses.replace(dataset, train=[dataset.train[i] for i in train_kept],
                               val=[dataset.val[i] for i in val_kept], skipped=list(skipped))
    missing = [name for name, n in kept.counts("train").items() if n == 0]
    if missing:
        raise DataError(f"no readable training images left for class(es) {', '.join(missing)} "
                        f"({len(skipped)} file(s) skipped); add images")
    if not kept.val:
        raise DataError(f"no readable validation images left ({len(skipped)} file(s) skipped); add images")
    return kept


def train(config: TrainConfig, resume: bool = True, epoch_hook: EpochHook | None = None, echo=print) -> dict:
    """Train per `config`, write the run folder `config.out` (chief only), return metrics.json's content."""
    params = AugmentParams.from_config(config)
    if config.augment and not params.active:
        raise ConfigError("augment is on but every augmentation range is 0; set --rotation, --zoom, "
                          "--horizontal-flip, ... or use --no-augment")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard: true needs the tensorboard package; `pip install tensorboard` or use --no-tensorboard")
    if config.strategy == "multi_worker" and config.fine_tune_layers > 0:
        raise ConfigError("strategy multi_worker trains the head only; use fine_tune_layers 0 "
                          "(or fine-tune on one machine with strategy mirrored)")
    dataset = load_dataset(config.data, config.val_split, config.seed)
    strategy, workers = distribute.make_strategy(config.strategy)  # before any other TF op (multi_worker)
    out = distribute.output_folder(Path(config.out).expanduser(), workers)
    try:
        return _train(config, dataset, params, strategy, workers, out, resume, epoch_hook, echo)
    finally:
        distribute.discard(out, workers)


def _train(config: TrainConfig, dataset: Dataset, params: AugmentParams, strategy, workers, out: Path, resume: bool,
           epoch_hook: EpochHook | None, echo) -> dict:
    from edgetl._tf import set_seed
    from edgetl.train.finetune import image_sequence, load_pixels, unfreeze_top

    start = time.time()
    multi = config.strategy == "multi_worker"
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").unlink(missing_ok=True)  # the folder is incomplete until run.json is back
    set_seed(config.seed)
    spec = get_base(config.base)
    num_classes = len(dataset.classes)
    # multi_worker: the base only runs locally (each worker its own shard), so it stays outside the scope
    with contextlib.nullcontext() if multi else strategy.scope():
        fused, base, head = build_classifier(config, num_classes)

    cache = FeatureCache(base, base_name=spec.name, cut_layer=config.cut_layer, input_size=config.input_size,
                         scale=spec.scale, offset=spec.offset,
                         pooling=config.pooling if config.pooling in ("avg", "max") else "none",
                         cache_dir=config.cache_dir)
    views = config.augment_views if config.augment else 0
    tr, va = distribute.shared_features(cache, strategy, workers, [
        ([p for p, _ in dataset.train], dict(views=views, params=params, seed=config.seed, desc="train features")),
        ([p for p, _ in dataset.val], dict(views=0, desc="val features"))])
    for path, reason in tr.skipped + va.skipped:
        echo(f"skipped {path}: {reason}")
    dataset = _drop_skipped(dataset, tr.kept, va.kept, tr.skipped + va.skipped)
    feature_seconds = tr.seconds + va.seconds
    echo(f"features: {tr.computed + va.computed} computed, {tr.cached + va.cached} from cache "
         f"({feature_seconds:.1f}s, {cache.folder})")

    y_train = np.array([y for _, y in dataset.train], dtype=np.float32)
    y_val = np.array([y for _, y in dataset.val], dtype=np.float32)
    x_train = tr.features.reshape(-1, *cache.feature_shape)
    y_views = np.repeat(y_train, views + 1)
    x_val = va.features[:, 0]
    splits = {"root": str(dataset.root), "train": dataset.relative("train"), "val": dataset.relative("val")}
    digest = checkpoint.run_digest(config, splits, cache.digest)
    state = checkpoint.load_state(out / "checkpoints", digest) if resume else None
    history: list[dict] = list(state.history) if state else []
    if state:
        echo(f"resuming from {out / 'checkpoints'}: {state.phase} epoch {state.epoch + 1} done")

    head_start = time.time()
    with strategy.scope():
        feature_head = build_head(cache.feature_shape, num_classes, config)
        optimizer = compile_model(feature_head, config, num_classes, config.learning_rate, steps_per_execution=32)
        state = distribute.share_state(strategy, workers, state, feature_head, optimizer)
        if state and state.phase == "head":
            checkpoint.restore(feature_head, optimizer, state)
    first = state.epoch + 1 if state else 0
    if not state or state.phase == "head":
        run_head_phase(feature_head, optimizer, first, config.epochs, x_train, y_views, (x_val, y_val), config,
                       out, digest, history, tensorboard_logs.callbacks(config, out, "head"), epoch_hook, echo)
        head.set_weights(feature_head.get_weights())
    head_seconds = time.time() - head_start

    fine_seconds = 0.0
    if config.fine_tune_layers > 0:
        fine_start = time.time()
        unfrozen = unfreeze_top(base, config.fine_tune_layers)
        echo(f"fine-tuning the top {len(unfrozen)} layers of {spec.name} from {unfrozen[0] if unfrozen else '-'}")
        with strategy.scope():
            ft_optimizer = compile_model(fused, config, num_classes, config.fine_tune_learning_rate)
            if state and state.phase == "fine_tune":
                checkpoint.restore(fused, ft_optimizer, state)
        keys = [str(p) for p, _ in dataset.train]
        train_pixels = load_pixels([p for p, _ in dataset.train], config.input_size)
        val_pixels = load_pixels([p for p, _ in dataset.val], config.input_size)
        val_seq = image_sequence(val_pixels, y_val, [], config.batch_size, spec.scale, spec.offset, None,
                                 config.seed, 0, shuffle=False)

        def epoch_data(epoch):
            return image_sequence(train_pixels, y_train, keys, config.batch_size, spec.scale, spec.offset,
                                  params if config.augment else None, config.seed, epoch), None

        first = state.epoch + 1 if state and state.phase == "fine_tune" else config.epochs
        run_phase("fine_tune", fused, ft_optimizer, first, config.epochs + config.fine_tune_epochs, epoch_data,
                  val_seq, config, out, digest, history, tensorboard_logs.callbacks(config, out, "fine_tune"),
                  epoch_hook, echo)
        probs = fused.predict(val_seq, verbose=0)
        val_loss = float(fused.evaluate(val_seq, verbose=0)[0])
        base.trainable = False
        fine_seconds = time.time() - fine_start
    else:
        scorer = feature_head
        if multi:  # score locally: a distributed predict/evaluate would split and regather x_val
            scorer = build_head(cache.feature_shape, num_classes, config)
            compile_model(scorer, config, num_classes, config.learning_rate)
            scorer.set_weights(feature_head.get_weights())
        probs = scorer.predict(x_val, batch_size=256, verbose=0)
        val_loss = float(scorer.evaluate(x_val, y_val, batch_size=256, verbose=0)[0])

    predicted = (probs[:, 0] > 0.5).astype(int) if probs.shape[1] == 1 else probs.argmax(axis=1)
    truth = y_val.astype(int)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    metrics = {
        "val_accuracy": float(np.mean(predicted == truth)),
        "val_loss": val_loss,
        "train_seconds": round(time.time() - start, 3),
        "feature_seconds": round(feature_seconds, 3),
        "head_seconds": round(head_seconds, 3),
        "fine_tune_seconds": round(fine_seconds, 3),
        "num_train": len(dataset.train),
        "num_val": len(dataset.val),
        "num_train_views": int(len(x_train)),
        "classes": dataset.classes,
        "train_counts": dataset.counts("train"),
        "val_counts": dataset.counts("val"),
        "per_class_accuracy": {name: float(confusion[i, i] / max(1, confusion[i].sum()))
                               for i, name in enumerate(dataset.classes)},
        "confusion": confusion.tolist(),
        "skipped": [{"path": p, "reason": r} for p, r in dataset.skipped],
        "seed": config.seed,
        "epochs_run": len(history),
        "resumed_from_epoch": (state.epoch + 1) if state else 0,
        "cache": {"computed": tr.computed + va.computed, "cached": tr.cached + va.cached, "folder": str(cache.folder)},
    }
    if config.tensorboard:
        tensorboard_logs.log_confusion(out, confusion, dataset.classes, step=len(history))
    if workers.count > 1:
        metrics["workers"] = workers.count
    if workers.chief:
        write_run_folder(out, config, spec, fused, base, dataset, splits, history, confusion, metrics)
    where = f"run folder: {out}" if workers.chief else f"worker {workers.index}, the chief writes the run folder; scratch (deleted): {out}"
    echo(f"val_accuracy {metrics['val_accuracy']:.4f} on {metrics['num_val']} images; {where}")
    return {**metrics, "chief": False} if not workers.chief else metrics
