"""`edgetl train --search`: the head's hyperparameters, chosen by k-fold cross-validation on the train split.

    cached features of the training images (never the val split)
      --StratifiedKFold by image (config.search_folds)--> per trial: the head fitted on k-1 folds (every
      cached view), scored on the clean view of the held-out fold's images
      --Optuna TPE (seeded; trial 0 is the config as given, trial 1 scikit-learn's logistic regression
        at its C), at most config.search_trials trials within config.search_budget seconds-->
    leaderboard (search.csv, printed, a chart in the report) and the best settings, which replace the
    config's (search off): the normal head recipe trains with them and config.yaml records them, so the
    run reproduces without searching again.

Space: the solver (keras: learning rate, L2 as C, dropout, label smoothing, hidden width none / 256 /
1024; logistic: a linear head fitted by L-BFGS to convergence, C only, a trial in about a second), and
for both the augmented views per image, 0 up to those cached (pooling is not searched: it is part of
the feature cache's identity, so each choice would cost a full extraction).
Score: mean held-out accuracy, ties broken by the lower log loss (score = accuracy - 0.01 * log loss).
Optuna does the sampling and the time budget; scikit-learn the folds.
"""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING

import numpy as np

from edgetl.errors import ConfigError
from edgetl.train.config import HEAD_SOLVERS, TrainConfig
from edgetl.train.cv_choice import folds_of
from edgetl.train.epochs import compile_model, epoch_rows, schedule
from edgetl.train.head_fit import fit_logistic, head_data, l2_strength, standardization, view_rows

if TYPE_CHECKING:
    from edgetl.train.trainer import Features

WIDTHS = {"none": (), "256": (256,), "1024": (1024,)}
KERAS_ONLY = ("learning_rate", "dropout", "label_smoothing")  # what a logistic head does not use
SETTINGS = ("head_solver", "l2_c", "augment_views", *KERAS_ONLY, "dense_units")
COLUMNS = (
    "rank",
    "trial",
    "score",
    "cv_accuracy",
    "cv_log_loss",
    "seconds",
    *SETTINGS,
)


def suggest(trial, config: TrainConfig, cached_views: int) -> dict:
    """One point of the search space, as TrainConfig fields (a logistic head has only C to choose).

    Augmented views are searched from 0 to those in the cache (a subset of it: no extraction)."""
    solver = trial.suggest_categorical("head_solver", HEAD_SOLVERS)
    common = {
        "head_solver": solver,
        "l2_c": trial.suggest_float("l2_c", 1e-4, 1.0, log=True),
        "augment_views": trial.suggest_int("augment_views", 0, cached_views) if cached_views else config.augment_views,
    }
    if solver == "logistic":
        return {**common, "dense_units": (), **{k: getattr(config, k) for k in KERAS_ONLY}}
    return {
        **common,
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
        "dense_units": WIDTHS[trial.suggest_categorical("dense_units", list(WIDTHS))],
    }


def fold_score(config: TrainConfig, feats: Features, fit: np.ndarray, held: np.ndarray, n: int) -> tuple[float, float]:
    """Fit a head with `config` on the images `fit` (all views), -> (accuracy, log loss) on `held` (clean)."""
    from edgetl._tf import keras, set_seed
    from edgetl.models.classifier import build_head

    set_seed(config.seed)
    views = feats.views + 1
    rows = view_rows(fit, views)
    data = head_data(feats.x_train[rows], feats.y_train[fit].repeat(views), n, config.class_weight)
    stats = standardization(data.x) if config.standardize else None
    l2 = l2_strength(config.l2_c, len(fit))
    model = build_head(feats.shape, n, config, stats, l2)
    if config.head_solver == "logistic":
        fit_logistic(model, data, config.l2_c, len(fit))
    else:
        _fit_keras(model, config, data, n)
    probs = np.clip(model.predict(feats.x_clean[held], batch_size=256, verbose=0).astype(np.float64), 1e-7, 1 - 1e-7)
    y = feats.y_train[held].astype(int)
    if probs.shape[1] == 1:
        predicted, loss = (probs[:, 0] > 0.5).astype(int), -np.log(np.where(y == 1, probs[:, 0], 1 - probs[:, 0]))
    else:
        predicted, loss = probs.argmax(axis=1), -np.log(probs[np.arange(len(y)), y])
    keras.backend.clear_session()
    return float(np.mean(predicted == y)), float(loss.mean())


def _fit_keras(model, config: TrainConfig, data, n: int) -> None:
    order = np.random.default_rng(config.seed).permutation(len(data.x))
    order = np.resize(order, epoch_rows(config, len(data.x)))  # min_steps: small sets go round more than once
    steps = -(-len(order) // config.batch_size) * config.epochs
    compile_model(model, config, n, schedule(config, steps), 32, config.label_smoothing or 1e-12)
    weights = None if data.weights is None else data.weights[order]
    model.fit(
        data.x[order],
        data.y[order],
        sample_weight=weights,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=0,
    )


def search_head(config: TrainConfig, feats: Features, num_classes: int, echo=print) -> tuple[TrainConfig, dict, str]:
    """-> (the config with the best settings and search off, the record for metrics.json, search.csv)."""
    import optuna
    from tqdm.auto import tqdm

    splits = folds_of(config, feats.y_train, num_classes)
    if not splits:
        smallest = int(np.bincount(feats.y_train.astype(int), minlength=num_classes).min())
        raise ConfigError(f"--search needs at least 2 training images per class for cross-validation, got {smallest}")
    folds, start, rows = len(splits), time.time(), []

    deadline = start + config.search_budget
    fold_seconds: dict[str, float] = {}  # the longest fold seen per solver

    def objective(trial) -> float:
        began = time.time()
        settings = suggest(trial, config, feats.views)
        trial_config = config.replace(**settings)
        trial_feats = feats.first_views(trial_config.augment_views if trial_config.augment else 0)
        scores, solver = [], settings["head_solver"]
        for fit, held in splits:  # no fold starts that would end past the budget (once a trial has finished)
            if rows and time.time() + fold_seconds.get(solver, 0.0) > deadline:
                raise optuna.TrialPruned("search budget spent")
            fold_start = time.time()
            scores.append(fold_score(trial_config, trial_feats, fit, held, num_classes))
            fold_seconds[solver] = max(fold_seconds.get(solver, 0.0), time.time() - fold_start)
        accuracy, loss = (float(np.mean(v)) for v in zip(*scores))
        score = accuracy - 0.01 * loss
        rows.append(
            {
                "trial": trial.number,
                "score": score,
                "cv_accuracy": accuracy,
                "cv_log_loss": loss,
                "seconds": time.time() - began,
                **settings,
            }
        )
        bar.update(1)
        bar.set_postfix(best=f"{max(r['cv_accuracy'] for r in rows):.4f}")
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    enqueue_references(study, config, feats.views)
    with tqdm(total=config.search_trials, desc=f"search ({folds}-fold CV)", unit="trial", leave=False) as bar:
        study.optimize(objective, n_trials=config.search_trials, timeout=config.search_budget)
    best = rank_trials(rows, echo)
    record = {
        "seconds": round(time.time() - start, 3),
        "trials": len(rows),
        "folds": folds,
        "cv_accuracy": rows[0]["cv_accuracy"],
        "best": {k: _text(v) for k, v in best.items()},
    }
    return config.replace(search=False, cv_choice=False, **best), record, leaderboard_csv(rows)


def rank_trials(rows: list[dict], echo=print) -> dict:
    """Sort the trial rows best first, number their rank, print the top 5 -> the best trial's settings."""
    rows.sort(key=lambda r: (-r["score"], r["trial"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    best = {k: rows[0][k] for k in SETTINGS}
    for row in rows[:5]:
        echo(
            f"search #{row['rank']}: cv_accuracy {row['cv_accuracy']:.4f} log_loss {row['cv_log_loss']:.4f} "
            + " ".join(f"{k}={_text(row[k])}" for k in best)
        )
    return best


def enqueue_references(study, config: TrainConfig, cached_views: int) -> None:
    """Trial 0 is the config as given (the search can only pick what scores better), then the linear
    probe at the config's C (always measured)."""
    width = next((key for key, units in WIDTHS.items() if units == tuple(config.dense_units)), None)
    views = {"augment_views": min(config.augment_views, cached_views)} if cached_views else {}
    if width is not None:
        given = {k: getattr(config, k) for k in ("head_solver", "l2_c", *KERAS_ONLY)}
        study.enqueue_trial({**given, **views, "dense_units": width}, skip_if_exists=True)
    if config.head_solver != "logistic":
        probe = {"head_solver": "logistic", "l2_c": config.l2_c or 1.0}
        study.enqueue_trial({**probe, **({"augment_views": cached_views} if cached_views else {})}, skip_if_exists=True)


def leaderboard_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _text(row[k]) for k in COLUMNS})
    return out.getvalue()


def _text(value) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "none"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
