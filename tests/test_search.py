"""`edgetl train --search`: seeded, reproducible, its choice written into config.yaml, its leaderboard kept."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from conftest import make_dataset


def _board(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def test_search_is_seeded_writes_its_choice_and_the_run_reproduces_without_it(tmp_path, tiny_config):
    from edgetl.report.writer import write_report
    from edgetl.train.config import load_config
    from edgetl.train.trainer import train

    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=12, size=32)
    settings = dict(search=True, search_trials=3, search_budget=10**5, search_folds=2, min_steps=0, epochs=2)
    runs = [tmp_path / "a", tmp_path / "b"]
    metrics = [train(tiny_config(data, out=str(run), **settings), echo=lambda _: None) for run in runs]

    board = _board(runs[0] / "search.csv")
    assert len(board) == 3 and board == _board(runs[1] / "search.csv")  # same seed: same trials, same scores
    assert [int(r["rank"]) for r in board] == [1, 2, 3]
    first = next(r for r in board if r["trial"] == "0")  # trial 0: the config as given (tiny_config's values)
    assert (float(first["learning_rate"]), first["dense_units"], first["head_solver"]) == (0.03, "none", "keras")
    probe = next(r for r in board if r["trial"] == "1")  # trial 1: logistic regression at the config's C
    assert (probe["head_solver"], float(probe["l2_c"])) == ("logistic", 0.003)
    assert float(board[0]["score"]) >= max(float(r["score"]) for r in board)
    assert metrics[0]["search"]["trials"] == 3 and metrics[0]["search_seconds"] > 0

    chosen = yaml.safe_load((runs[0] / "config.yaml").read_text())
    assert chosen["search"] is False  # training again from config.yaml does not search
    assert chosen["learning_rate"] == pytest.approx(float(board[0]["learning_rate"]), rel=1e-5)
    assert chosen["l2_c"] == pytest.approx(float(board[0]["l2_c"]), rel=1e-5)
    assert list(chosen["dense_units"]) == [int(w) for w in board[0]["dense_units"].split() if w != "none"]
    assert chosen["head_solver"] == board[0]["head_solver"]
    assert chosen["augment_views"] == int(board[0]["augment_views"])  # views searched within the cache (0-1)
    assert {int(r["augment_views"]) for r in board} <= {0, 1}
    assert metrics[0]["num_train_views"] == metrics[0]["num_train"] * (chosen["augment_views"] + 1)

    again = load_config(runs[0] / "config.yaml").replace(out=str(tmp_path / "again"), cache_dir=str(tmp_path / "cache"))
    repeated = train(again, echo=lambda _: None)
    assert repeated["val_accuracy"] == metrics[0]["val_accuracy"] and "search" not in repeated
    assert not (tmp_path / "again" / "search.csv").exists()
    a = json.loads((runs[0] / "metrics.json").read_text())
    assert a["confusion"] == repeated["confusion"]

    html = write_report(runs[0])[0].read_text()
    assert "Hyperparameter search" in html and "cross-validated accuracy per trial" in html


def test_search_scores_only_training_images(tmp_path, tiny_config):
    """The folds cover the train split's images once each; the val split is never scored."""
    from edgetl.train.search import search_head
    from edgetl.train.trainer import Features

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    x = (rng.normal(size=(20, 2, 4)) + y[:, None, None] * 3).reshape(40, 4).astype(np.float32)
    feats = Features(x, y, np.full((4, 4), np.nan, np.float32), np.array([0, 1, 0, 1]), 1, (4,), ([], []), {})
    config = tiny_config(tmp_path, search_trials=2, search_folds=4, min_steps=0, epochs=3, l2_c=1.0)
    chosen, record, board = search_head(config, feats, 2, echo=lambda _: None)
    assert record["folds"] == 4 and record["trials"] == 2 and not chosen.search
    assert record["cv_accuracy"] > 0.9  # NaN val features would have poisoned any score that read them
    assert board.splitlines()[0].startswith("rank,trial,score,cv_accuracy")


def test_first_views_keeps_each_images_clean_row_and_its_first_augmented_views():
    from edgetl.train.trainer import Features

    x = np.arange(4 * 3 * 2, dtype=np.float32).reshape(12, 2)  # 4 images x (clean + 2 views), 2 features
    feats = Features(x, np.array([0, 1, 0, 1]), x[:2], np.array([0, 1]), 2, (2,), ([], []), {})
    one = feats.first_views(1)
    assert one.views == 1 and one.x_train.shape == (8, 2)
    np.testing.assert_array_equal(one.x_train, x.reshape(4, 3, 2)[:, :2].reshape(8, 2))
    np.testing.assert_array_equal(one.x_clean, feats.x_clean)
    assert feats.first_views(0).x_train.shape == (4, 2) and feats.first_views(5) is feats
