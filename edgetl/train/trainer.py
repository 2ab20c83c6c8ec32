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

from edgetl.errors import ConfigError
from edgetl.models.bases import get_base
from edgetl.models.classifier import build_classifier
from edgetl.runtime import atomic
from edgetl.train import checkpoint, data_health, distribute, tensorboard_logs
from edgetl.train.augment import AugmentParams
from edgetl.train.config import TrainConfig
from edgetl.train.cv_choice import choose_logistic
from edgetl.train.data import Dataset, load_dataset
from edgetl.train.epochs import EpochHook, Loop
from edgetl.train.extract import FeatureExtractor
from edgetl.train.finetune import fine_tune
from edgetl.train.head_fit import fit_head, score_head
from edgetl.train.run_folder import write_run_folder
from edgetl.train.scoring import val_metrics
from edgetl.train.search import search_head


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
    if config.strategy == "multi_worker" and config.search:
        raise ConfigError("--search runs on one machine; search there, then train multi_worker with its config.yaml")
    dataset = load_dataset(config.data, config.val_split, config.seed)
    if config.strategy == "multi_worker" and config.holdout > 0:
        echo(
            "note: multi_worker trains without a holdout (no early stopping, refit or open-world statistics); "
            "--holdout 0 says so"
        )
        config = config.replace(holdout=0.0)
    strategy, workers = distribute.make_strategy(config.strategy)  # before any other TF op (multi_worker)
    out = distribute.output_folder(Path(config.out).expanduser(), workers)
    try:
        return _train(config, dataset, params, strategy, workers, out, resume, epoch_hook, echo)
    finally:
        distribute.discard(out, workers)


@dataclass
class Features:
    """Cached base features of the kept images: x_train holds views+1 rows per training image (clean first)."""

    x_train: np.ndarray
    y_train: np.ndarray  # one label per image
    x_val: np.ndarray
    y_val: np.ndarray
    views: int
    shape: tuple[int, ...]
    hashes: tuple[list[str], list[str]]  # sha256 of each train and val file
    stats: dict  # digest (the cache's model identity), seconds, computed, cached, folder

    @property
    def y_views(self) -> np.ndarray:
        return np.repeat(self.y_train, self.views + 1)

    @property
    def x_clean(self) -> np.ndarray:
        """The clean view of every training image."""
        return self.x_train.reshape(len(self.y_train), self.views + 1, *self.shape)[:, 0]

    def first_views(self, views: int) -> Features:
        """The same features with only the first `views` augmented views of each image (what a run with
        augment_views = views extracts: the cache keys a view by its index, not by the count)."""
        if views >= self.views:
            return self
        x = self.x_train.reshape(len(self.y_train), self.views + 1, *self.shape)[:, : views + 1]
        return dataclasses.replace(self, x_train=x.reshape(-1, *self.shape), views=views)


def extract_features(
    config: TrainConfig, dataset: Dataset, base, params: AugmentParams, strategy, workers, echo
) -> tuple[Features, Dataset]:
    """Base features of every training view and validation image (disk cache); drops undecodable files."""
    extractor = FeatureExtractor.for_config(config, base)
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
    dataset = dataset.keep(tr.kept, va.kept, tr.skipped + va.skipped)
    seconds = tr.seconds + va.seconds
    echo(
        f"features: {tr.computed + va.computed} computed, {tr.cached + va.cached} from cache "
        f"({seconds:.1f}s, {extractor.folder})"
    )
    stats = {
        "digest": extractor.digest,
        "seconds": seconds,
        "computed": tr.computed + va.computed,
        "cached": tr.cached + va.cached,
        "folder": extractor.folder,
    }
    features = Features(
        tr.features.reshape(-1, *extractor.feature_shape),
        np.array([y for _, y in dataset.train], dtype=np.float32),
        va.features[:, 0],
        np.array([y for _, y in dataset.val], dtype=np.float32),
        views,
        extractor.feature_shape,
        (tr.hashes, va.hashes),
        stats,
    )
    return features, dataset


def dataset_health(feats: Features, dataset: Dataset, seed: int) -> dict:
    """Data health of the run's images from the features just extracted (clean views)."""

    def side(items, x, hashes):
        return {"paths": [str(p) for p, _ in items], "labels": [y for _, y in items], "hashes": hashes, "features": x}

    train, val = side(dataset.train, feats.x_clean, feats.hashes[0]), side(dataset.val, feats.x_val, feats.hashes[1])
    return data_health.check_data(dataset.classes, train, val, dataset.skipped, seed)


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
    num_classes = len(dataset.classes)
    # multi_worker: the base only runs locally (each worker its own shard), so it stays outside the scope
    with contextlib.nullcontext() if config.strategy == "multi_worker" else strategy.scope():
        fused, base, head = build_classifier(config, num_classes)
    feats, dataset = extract_features(config, dataset, base, params, strategy, workers, echo)
    splits = {"root": str(dataset.root), "train": dataset.relative("train"), "val": dataset.relative("val")}
    digest = checkpoint.run_digest(config, splits, feats.stats["digest"])
    health = dataset_health(feats, dataset, config.seed) if workers.chief else None
    if health is not None:
        echo(data_health.summary_line(health) + " (data_health.json)")
    config, feats, chosen = choose_settings(config, feats, num_classes, out, workers, echo)
    if "search" in chosen:
        with strategy.scope():  # the head's shape may have changed (dense_units, dropout)
            fused, base, head = build_classifier(config, num_classes)
    loop = Loop.open(config, out, digest, resume, strategy, workers, epoch_hook, echo)
    resumed_from = loop.state.epoch + 1 if loop.state else 0
    seconds = {"feature_seconds": feats.stats["seconds"], "head_seconds": time.time()}
    feature_head, world, head_report = fit_head(loop, feats, dataset.classes, head)
    seconds["head_seconds"] = time.time() - seconds["head_seconds"]
    fine_start = time.time()
    if config.fine_tune_layers > 0:
        probs, val_loss = fine_tune(loop, dataset, fused, base, params, feats)
    else:
        probs, val_loss = score_head(config, feature_head, feats, num_classes)
    seconds["fine_tune_seconds"] = time.time() - fine_start if config.fine_tune_layers > 0 else 0.0
    scores, confusion = val_metrics(probs, val_loss, dataset)
    metrics = run_metrics(
        config, dataset, feats, scores, loop, resumed_from, {"train_seconds": time.time() - start, **seconds}
    )
    metrics["head"] = head_report
    metrics.update(chosen)
    if health is not None:
        metrics["data_health"] = {k: v for k, v in health.items() if k.startswith("num_")}
    run = (fused, base, splits, confusion, health, world)
    return finish(loop, metrics, run, dataset)


def choose_settings(
    config: TrainConfig, feats: Features, num_classes: int, out: Path, workers, echo
) -> tuple[TrainConfig, Features, dict]:
    """Head settings chosen by cross-validation on the train split, before anything is trained or
    checkpointed: --search (the chief writes search.csv), else cv_choice for a logistic head.
    -> (the config with the choice, the features it trains on, metrics.json entries)."""
    if config.search:
        config, searched, board = search_head(config, feats, num_classes, echo)
        if workers.chief:
            atomic.write_text(out / "search.csv", board)
        feats = feats.first_views(config.augment_views if config.augment else 0)
        return config, feats, {"search_seconds": searched["seconds"], "search": searched}
    if config.cv_choice and config.head_solver == "logistic":
        config, chosen = choose_logistic(config, feats, num_classes)
        if chosen is not None:
            echo(
                f"l2_c {config.l2_c:g}, {chosen['augment_views']} augmented view(s) per image: "
                f"{chosen['folds']}-fold CV on the train split ({chosen['seconds']:.1f}s)"
            )
            feats = feats.first_views(config.augment_views if config.augment else 0)
            return config, feats, {"cv_choice": chosen}
    return config, feats, {}


def run_metrics(
    config: TrainConfig, dataset: Dataset, feats, scores: dict, loop: Loop, resumed_from: int, seconds: dict
) -> dict:
    """metrics.json's content."""
    return {
        "val_accuracy": scores["val_accuracy"],
        "val_loss": scores["val_loss"],
        "val_macro_f1": scores["val_macro_f1"],
        "val_balanced_accuracy": scores["val_balanced_accuracy"],
        **{k: round(seconds[k], 3) for k in ("train_seconds", "feature_seconds", "head_seconds", "fine_tune_seconds")},
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
        "epochs_run": len(loop.history),
        "resumed_from_epoch": resumed_from,
        "cache": {
            k: feats.stats[k] if k != "folder" else str(feats.stats[k]) for k in ("computed", "cached", "folder")
        },
    }


def finish(loop: Loop, metrics: dict, run: tuple, dataset: Dataset) -> dict:
    """TensorBoard's confusion image, the run folder (chief only), the last log line."""
    (fused, base, splits, confusion, health, world), config, workers, out = run, loop.config, loop.workers, loop.out
    if config.tensorboard:
        tensorboard_logs.log_confusion(out, confusion, dataset.classes, step=len(loop.history))
    if workers.count > 1:
        metrics["workers"] = workers.count
    if workers.chief:
        spec = get_base(config.base)
        write_run_folder(
            out, config, spec, fused, base, dataset, splits, loop.history, confusion, metrics, health, world
        )
    where = (
        f"run folder: {out}"
        if workers.chief
        else f"worker {workers.index}, the chief writes the run folder; scratch (deleted): {out}"
    )
    loop.echo(f"val_accuracy {metrics['val_accuracy']:.4f} on {metrics['num_val']} images; {where}")
    return {**metrics, "chief": False} if not workers.chief else metrics
