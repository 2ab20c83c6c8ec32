"""The head recipe: early stopping reads only the training images, class weights, macro scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_dataset


def test_balanced_class_weights_are_n_over_k_times_count_and_auto_only_when_imbalanced():
    from edgetl.train.head_fit import class_weights, head_data

    y = np.array([0] * 30 + [1] * 10 + [2] * 20)
    weights = class_weights(y, 3, "balanced")
    np.testing.assert_allclose(weights, [60 / (3 * 30), 60 / (3 * 10), 60 / (3 * 20)], rtol=1e-6)
    assert weights[y].mean() == pytest.approx(1.0)  # mean 1 over the rows: the loss keeps its scale
    np.testing.assert_array_equal(class_weights(y, 3, "auto"), weights)  # 30 / 10 >= 1.5: imbalanced
    assert class_weights(np.array([0] * 10 + [1] * 9), 2, "auto") is None  # balanced enough: equal weights
    assert class_weights(y, 3, "none") is None
    rows = head_data(np.zeros((60, 4), np.float32), y, 3, "balanced")
    np.testing.assert_allclose(rows.weights, weights[y])  # each row carries its class's weight into the loss


def test_class_weights_change_the_weighted_loss_as_documented(tmp_path):
    """Keras' sample weights (the rows' class weights) scale each row's loss, loss = mean(w_i * l_i), with
    label smoothing 0.1 as Model Maker: targets y * 0.9 + 0.1 / k."""
    from edgetl.models.classifier import build_head
    from edgetl.train.config import build_config
    from edgetl.train.epochs import compile_model

    config = build_config({"dropout": 0.0, "label_smoothing": 0.0, "l2_c": 0.0, "seed": 1})
    head = build_head((4,), 3, config)
    compile_model(head, config, 3, 1e-3, smoothing=0.1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)).astype(np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    w = np.array([3.0, 1.0, 1.0, 3.0, 1.0, 1.0], np.float32)
    p = head.predict(x, verbose=0)
    per_row = -(np.log(p) * (y * 0.9 + 0.1 / 3)).sum(axis=1)
    assert head.evaluate(x, y, sample_weight=w, verbose=0)[0] == pytest.approx(float((w * per_row).mean()), rel=1e-4)
    assert head.evaluate(x, y, verbose=0)[0] == pytest.approx(float(per_row.mean()), rel=1e-4)


def test_early_stopping_never_reads_the_val_split(tmp_path, tiny_config):
    """Two runs that differ only in their val images stop at the same epoch with the same head."""
    from edgetl.train.run_folder import open_run
    from edgetl.train.trainer import train

    classes = ("red", "green", "blue")
    runs = []
    for name in ("clean", "noisy"):
        data = make_dataset(tmp_path / name, classes=classes, per_class=20, size=32, layout="split")
        if name == "noisy":  # replace every val image by noise: early stopping must not notice
            for i, path in enumerate(sorted((data / "val").rglob("*.png"))):
                pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path)
        config = tiny_config(data, out=str(tmp_path / name / "run"), epochs=8, patience=2, holdout=0.25, min_steps=0)
        runs.append(train(config, echo=lambda _: None))
        runs[-1]["weights"] = open_run(tmp_path / name / "run").load_model().get_weights()
    clean, noisy = runs
    assert clean["head"]["holdout_images"] == noisy["head"]["holdout_images"] == 15
    assert clean["head"]["best_epoch"] == noisy["head"]["best_epoch"]
    assert clean["head"]["refit_epochs"] == noisy["head"]["refit_epochs"]
    for a, b in zip(clean["weights"], noisy["weights"]):
        np.testing.assert_array_equal(a, b)
    assert clean["val_accuracy"] != noisy["val_accuracy"]  # the val split did differ


def test_metrics_report_macro_f1_and_balanced_accuracy_from_the_confusion(tmp_path, tiny_config):
    from edgetl.train.trainer import train

    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=12, size=32)
    metrics = train(tiny_config(data, min_steps=0), echo=lambda _: None)
    confusion = np.array(metrics["confusion"], float)
    recall = np.diag(confusion) / confusion.sum(axis=1)
    precision = np.diag(confusion) / np.maximum(confusion.sum(axis=0), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    assert metrics["val_balanced_accuracy"] == pytest.approx(recall.mean())
    assert metrics["val_macro_f1"] == pytest.approx(f1.mean())
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["val_macro_f1"] == metrics["val_macro_f1"]
