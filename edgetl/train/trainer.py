"""`edgetl train`: frozen pretrained base + new head, trained on cached base features.

    load_dataset          splits (checked before any TF work)
    build_classifier      fused(base, head)
    extract_features      train views [clean + K augmented], clean val (disk cache, edgetl.train.extract)
    fit_head              the head alone on the features (edgetl.train.epochs)
    fine_tune             [unfreeze the top N base layers, train end to end on augmented images]
    score_head/val_metrics, finish   metrics, run folder (edgetl.train.run_folder), run.json last

A run resumed from RUN/checkpoints/state.npz after a kill -9 continues exactly as if it had
never stopped (edgetl.train.epochs, edgetl.train.checkpoint). Resuming is automatic when the
checkpoint's digest (config, splits, base weights) matches; `resume=False` (`--no-resume`)
starts over.

strategy multi_worker (TF_CONFIG) shards feature extraction and head batches over several
processes or machines; only the chief writes the run folder (see edgetl.train.distribute).
TensorBoard (`--tensorboard`): RUN/tensorboard/{head,fine_tune,confusion} (see edgetl.train.tensorboard_logs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.errors import ConfigError, DataError
from edgetl.models.bases import get_base
from edgetl.models.classifier import build_classifier, build_head
from edgetl.train import checkpoint, distribute, tensorboard_logs
from edgetl.train.augment import AugmentParams
from edgetl.train.config import TrainConfig
from edgetl.train.data import Dataset, load_dataset
from edgetl.train.epochs import EpochHook, compile_model, run_head_phase, run_phase
from edgetl.train.extract import FeatureExtractor
from edgetl.train.run_folder import write_run_folder


def _drop_skipped(dataset: Dataset, train_kept: list[int], val_kept: list[int], skipped) -> Dataset:
    kept = dataclasses.replace(
        dataset,
        train=[dataset.train[i] for i in train_kept],
        val=[dataset.val[i] for i in val_kept],
        skipped=list(skipped),
    )
    missing = [name for name, n in kept.counts("train").items() if n == 0]
    if missing:
        raise DataError(
            f"no readable training images left for class(es) {', '.join(missing)} "
            f"({len(skipped)} file(s) skipped); add images"
        )
    if not kept.val:
        raise DataError(f"no readable validation images left ({len(skipped)} file(s) skipped); add images")
    return kept


def train(config: TrainConfig, resume: bool = True, epoch_hook: EpochHook | None = None, echo=print) -> dict:
    """Train per `config`, write the run folder `config.out` (chief only), return metrics.json's content."""
    params = AugmentParams.from_config(config)
    if config.augment and not params.active:
        raise ConfigError(
            "augment is on but every augmentation range is 0; set --rotation, --zoom, "
            "--horizontal-flip, ... or use --no-augment"
        )
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "tensorboard: true needs the tensorboard package; `pip install tensorboard` or use --no-tensorboard"
        )
    if config.strategy == "multi_worker" and config.fine_tune_layers > 0:
        raise ConfigError(
            "strategy multi_worker trains the head only; use fine_tune_layers 0 "
            "(or fine-tune on one machine with strategy mirrored)"
        )
    dataset = load_dataset(config.data, config.val_split, config.seed)
    strategy, workers = distribute.make_strategy(config.strategy)  # before any other TF op (multi_worker)
    out = distribute.output_folder(Path(config.out).expanduser(), workers)
    try:
        return _train(config, dataset, params, strategy, workers, out, resume, epoch_hook, echo)
    finally:
        distribute.discard(out, workers)


@dataclass
class Features:
    """Cached base features of the kept images: x_train holds views+1 rows per training image."""

    x_train: np.ndarray
    y_views: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    shape: tuple[int, ...]
    digest: str
    seconds: float
    computed: int
    cached: int
    folder: Path


def extract_features(
    config: TrainConfig, dataset: Dataset, base, params: AugmentParams, strategy, workers, echo
) -> tuple[Features, Dataset]:
    """Base features of every training view and validation image (disk cache); drops undecodable files."""
    spec = get_base(config.base)
    extractor = FeatureExtractor(
        base,
        base_name=spec.name,
        cut_layer=config.cut_layer,
        input_size=config.input_size,
        scale=spec.scale,
        offset=spec.offset,
        pooling=config.pooling if config.pooling in ("avg", "max") else "none",
        cache_dir=config.cache_dir,
    )
    views = config.augment_views if config.augment else 0
    tr, va = distribute.shared_features(
        extractor,
        strategy,
        workers,
        [
            ([p for p, _ in dataset.train], dict(views=views, params=params, seed=config.seed, desc="train features")),
            ([p for p, _ in dataset.val], dict(views=0, desc="val features")),
        ],
    )
    for path, reason in tr.skipped + va.skipped:
        echo(f"skipped {path}: {reason}")
    dataset = _drop_skipped(dataset, tr.kept, va.kept, tr.skipped + va.skipped)
    seconds = tr.seconds + va.seconds
    echo(
        f"features: {tr.computed + va.computed} computed, {tr.cached + va.cached} from cache "
        f"({seconds:.1f}s, {extractor.folder})"
    )
    y_train = np.array([y for _, y in dataset.train], dtype=np.float32)
    features = Features(
        tr.features.reshape(-1, *extractor.feature_shape),
        np.repeat(y_train, views + 1),
        y_train,
        va.features[:, 0],
        np.array([y for _, y in dataset.val], dtype=np.float32),
        extractor.feature_shape,
        extractor.digest,
        seconds,
        tr.computed + va.computed,
        tr.cached + va.cached,
        extractor.folder,
    )
    return features, dataset


def fit_head(
    config: TrainConfig,
    feats: Features,
    num_classes: int,
    head,
    strategy,
    workers,
    out: Path,
    digest: str,
    state,
    history: list[dict],
    epoch_hook,
    echo,
):
    """Train the head on cached features (resuming from `state`), copy it into the fused model's head.

    -> the trained feature head (a Keras model on feature inputs).
    """
    with strategy.scope():
        feature_head = build_head(feats.shape, num_classes, config)
        optimizer = compile_model(feature_head, config, num_classes, config.learning_rate, steps_per_execution=32)
        state = distribute.share_state(strategy, workers, state, feature_head, optimizer)
        if state and state.phase == "head":
            checkpoint.restore(feature_head, optimizer, state)
    first = state.epoch + 1 if state else 0
    if not state or state.phase == "head":
        run_head_phase(
            feature_head,
            optimizer,
            first,
            config.epochs,
            feats.x_train,
            feats.y_views,
            (feats.x_val, feats.y_val),
            config,
            out,
            digest,
            history,
            tensorboard_logs.callbacks(config, out, "head"),
            epoch_hook,
            echo,
        )
        head.set_weights(feature_head.get_weights())
    return feature_head


def fine_tune(
    config: TrainConfig,
    dataset: Dataset,
    fused,
    base,
    params: AugmentParams,
    feats: Features,
    strategy,
    out: Path,
    digest: str,
    state,
    history: list[dict],
    epoch_hook,
    echo,
) -> tuple[np.ndarray, float]:
    """Unfreeze the top layers of the base and train end to end on images -> (val probabilities, val loss)."""
    from edgetl.train.finetune import image_sequence, load_pixels, unfreeze_top

    spec = get_base(config.base)
    num_classes = len(dataset.classes)
    unfrozen = unfreeze_top(base, config.fine_tune_layers)
    echo(f"fine-tuning the top {len(unfrozen)} layers of {spec.name} from {unfrozen[0] if unfrozen else '-'}")
    with strategy.scope():
        optimizer = compile_model(fused, config, num_classes, config.fine_tune_learning_rate)
        if state and state.phase == "fine_tune":
            checkpoint.restore(fused, optimizer, state)
    keys = [str(p) for p, _ in dataset.train]
    train_pixels = load_pixels([p for p, _ in dataset.train], config.input_size)
    val_pixels = load_pixels([p for p, _ in dataset.val], config.input_size)
    val_seq = image_sequence(
        val_pixels, feats.y_val, [], config.batch_size, spec.scale, spec.offset, None, config.seed, 0, shuffle=False
    )

    def epoch_data(epoch):
        return image_sequence(
            train_pixels,
            feats.y_train,
            keys,
            config.batch_size,
            spec.scale,
            spec.offset,
            params if config.augment else None,
            config.seed,
            epoch,
        ), None

    first = state.epoch + 1 if state and state.phase == "fine_tune" else config.epochs
    run_phase(
        "fine_tune",
        fused,
        optimizer,
        first,
        config.epochs + config.fine_tune_epochs,
        epoch_data,
        val_seq,
        config,
        out,
        digest,
        history,
        tensorboard_logs.callbacks(config, out, "fine_tune"),
        epoch_hook,
        echo,
    )
    probs = fused.predict(val_seq, verbose=0)
    val_loss = float(fused.evaluate(val_seq, verbose=0)[0])
    base.trainable = False
    return probs, val_loss


def score_head(config: TrainConfig, feature_head, feats: Features, num_classes: int) -> tuple[np.ndarray, float]:
    """The trained head on the cached val features -> (val probabilities, val loss)."""
    scorer = feature_head
    if config.strategy == "multi_worker":  # score locally: a distributed predict/evaluate would split and regather
        scorer = build_head(feats.shape, num_classes, config)
        compile_model(scorer, config, num_classes, config.learning_rate)
        scorer.set_weights(feature_head.get_weights())
    probs = scorer.predict(feats.x_val, batch_size=256, verbose=0)
    return probs, float(scorer.evaluate(feats.x_val, feats.y_val, batch_size=256, verbose=0)[0])


def val_metrics(probs: np.ndarray, val_loss: float, dataset: Dataset) -> tuple[dict, np.ndarray]:
    """-> (the accuracy part of metrics.json, the confusion matrix)."""
    predicted = (probs[:, 0] > 0.5).astype(int) if probs.shape[1] == 1 else probs.argmax(axis=1)
    truth = np.array([y for _, y in dataset.val], dtype=int)
    n = len(dataset.classes)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    return {
        "val_accuracy": float(np.mean(predicted == truth)),
        "val_loss": val_loss,
        "per_class_accuracy": {
            name: float(confusion[i, i] / max(1, confusion[i].sum())) for i, name in enumerate(dataset.classes)
        },
        "confusion": confusion.tolist(),
    }, confusion


def _train(
    config: TrainConfig,
    dataset: Dataset,
    params: AugmentParams,
    strategy,
    workers,
    out: Path,
    resume: bool,
    epoch_hook: EpochHook | None,
    echo,
) -> dict:
    from edgetl._tf import set_seed

    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").unlink(missing_ok=True)  # the folder is incomplete until run.json is back
    set_seed(config.seed)
    spec = get_base(config.base)
    num_classes = len(dataset.classes)
    # multi_worker: the base only runs locally (each worker its own shard), so it stays outside the scope
    with contextlib.nullcontext() if config.strategy == "multi_worker" else strategy.scope():
        fused, base, head = build_classifier(config, num_classes)
    feats, dataset = extract_features(config, dataset, base, params, strategy, workers, echo)
    splits = {"root": str(dataset.root), "train": dataset.relative("train"), "val": dataset.relative("val")}
    digest = checkpoint.run_digest(config, splits, feats.digest)
    state = checkpoint.load_state(out / "checkpoints", digest) if resume else None
    history: list[dict] = list(state.history) if state else []
    if state:
        echo(f"resuming from {out / 'checkpoints'}: {state.phase} epoch {state.epoch + 1} done")
    head_start = time.time()
    feature_head = fit_head(
        config, feats, num_classes, head, strategy, workers, out, digest, state, history, epoch_hook, echo
    )
    head_seconds = time.time() - head_start
    fine_start = time.time()
    if config.fine_tune_layers > 0:
        probs, val_loss = fine_tune(
            config, dataset, fused, base, params, feats, strategy, out, digest, state, history, epoch_hook, echo
        )
    else:
        probs, val_loss = score_head(config, feature_head, feats, num_classes)
    fine_seconds = time.time() - fine_start if config.fine_tune_layers > 0 else 0.0
    scores, confusion = val_metrics(probs, val_loss, dataset)
    metrics = {
        "val_accuracy": scores["val_accuracy"],
        "val_loss": val_loss,
        "train_seconds": round(time.time() - start, 3),
        "feature_seconds": round(feats.seconds, 3),
        "head_seconds": round(head_seconds, 3),
        "fine_tune_seconds": round(fine_seconds, 3),
        "num_train": len(dataset.train),
        "num_val": len(dataset.val),
        "num_train_views": int(len(feats.x_train)),
        "classes": dataset.classes,
        "train_counts": dataset.counts("train"),
        "val_counts": dataset.counts("val"),
        "per_class_accuracy": scores["per_class_accuracy"],
        "confusion": scores["confusion"],
        "skipped": [{"path": p, "reason": r} for p, r in dataset.skipped],
        "seed": config.seed,
        "epochs_run": len(history),
        "resumed_from_epoch": (state.epoch + 1) if state else 0,
        "cache": {"computed": feats.computed, "cached": feats.cached, "folder": str(feats.folder)},
    }
    return finish(config, metrics, confusion, out, spec, fused, base, dataset, splits, history, workers, echo)


def finish(
    config: TrainConfig,
    metrics: dict,
    confusion,
    out: Path,
    spec,
    fused,
    base,
    dataset: Dataset,
    splits: dict,
    history: list[dict],
    workers,
    echo,
) -> dict:
    """TensorBoard's confusion image, the run folder (chief only), the last log line."""
    if config.tensorboard:
        tensorboard_logs.log_confusion(out, confusion, dataset.classes, step=len(history))
    if workers.count > 1:
        metrics["workers"] = workers.count
    if workers.chief:
        write_run_folder(out, config, spec, fused, base, dataset, splits, history, confusion, metrics)
    where = (
        f"run folder: {out}"
        if workers.chief
        else f"worker {workers.index}, the chief writes the run folder; scratch (deleted): {out}"
    )
    echo(f"val_accuracy {metrics['val_accuracy']:.4f} on {metrics['num_val']} images; {where}")
    return {**metrics, "chief": False} if not workers.chief else metrics
