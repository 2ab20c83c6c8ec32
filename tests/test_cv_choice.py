"""cv_choice: a logistic head's C and augmented views chosen by k-fold CV on the train split only."""

from __future__ import annotations

import numpy as np

from edgetl.train.config import build_config
from edgetl.train.cv_choice import C_GRID, choose_logistic
from edgetl.train.trainer import Features


def _features(views_help: bool, n: int = 120, d: int = 16, seed: int = 0) -> Features:
    """Two classes apart along feature 0. Each image's augmented view either is a small jitter of it
    (views help a little) or carries the other class's position (views teach the wrong label)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    clean = rng.normal(0, 1, (n, d)) + np.outer(2 * y - 1, np.eye(d)[0]) * 1.5
    view = clean + rng.normal(0, 0.1, (n, d)) if views_help else clean - np.outer(2 * y - 1, np.eye(d)[0]) * 3.0
    x = np.stack([clean, view], axis=1).reshape(2 * n, d).astype(np.float32)
    x_val = np.full((4, d), np.nan, np.float32)  # the val split must never be read
    return Features(x, y, x_val, np.array([0, 1, 0, 1]), 1, (d,), ([], []), {})


def test_views_that_teach_the_wrong_label_are_dropped_and_the_choice_is_recorded():
    config = build_config({"weights": "none", "augment_views": 1})
    chosen, record = choose_logistic(config, _features(views_help=False), 2)
    assert record["augment_views"] == 0 and chosen.augment_views == 0
    assert chosen.l2_c == record["l2_c"] and chosen.l2_c in C_GRID
    assert chosen.cv_choice is False  # config.yaml reproduces the run without choosing again
    assert record["folds"] == config.search_folds
    assert {(r["augment_views"], r["l2_c"]) for r in record["scores"]} == {(v, c) for v in (0, 1) for c in C_GRID}


def test_helpful_views_are_kept_and_the_choice_is_deterministic():
    config = build_config({"weights": "none", "augment_views": 1})
    feats = _features(views_help=True)
    first, record = choose_logistic(config, feats, 2)
    again, _ = choose_logistic(config, feats, 2)
    assert first == again
    scores = {(r["augment_views"], r["l2_c"]): r["cv_score"] for r in record["scores"]}
    assert scores[(record["augment_views"], record["l2_c"])] == max(scores.values())


def test_c_is_never_chosen_above_the_configured_l2_c():
    config = build_config({"weights": "none", "augment_views": 1, "l2_c": 0.002})
    chosen, record = choose_logistic(config, _features(views_help=True), 2)
    assert {r["l2_c"] for r in record["scores"]} == {0.001, 0.002} and chosen.l2_c <= 0.002


def test_a_class_with_one_image_keeps_the_config_as_given():
    config = build_config({"weights": "none", "augment_views": 1, "l2_c": 0.02})
    feats = _features(views_help=True, n=4)
    feats = Features(feats.x_train[:6], np.array([0, 1, 1]), feats.x_val, feats.y_val, 1, feats.shape, ([], []), {})
    chosen, record = choose_logistic(config, feats, 2)
    assert record is None and chosen.l2_c == 0.02 and chosen.augment_views == 1 and not chosen.cv_choice
