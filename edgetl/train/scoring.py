"""The val split's scores for metrics.json: accuracy, macro-F1, balanced accuracy, per-class accuracy, confusion."""

from __future__ import annotations

import numpy as np

from edgetl.train.data import Dataset


def val_metrics(probs: np.ndarray, val_loss: float, dataset: Dataset) -> tuple[dict, np.ndarray]:
    """-> (the accuracy part of metrics.json, the confusion matrix)."""
    predicted = (probs[:, 0] > 0.5).astype(int) if probs.shape[1] == 1 else probs.argmax(axis=1)
    truth = np.array([y for _, y in dataset.val], dtype=int)
    n = len(dataset.classes)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    from sklearn.metrics import balanced_accuracy_score, f1_score

    labels = list(range(n))
    return {
        "val_accuracy": float(np.mean(predicted == truth)),
        # macro: every class counts the same, however many images it has (accuracy favours the big ones)
        "val_macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "val_balanced_accuracy": float(balanced_accuracy_score(truth, predicted)) if len(truth) else 0.0,
        "val_loss": val_loss,
        "per_class_accuracy": {
            name: float(confusion[i, i] / max(1, confusion[i].sum())) for i, name in enumerate(dataset.classes)
        },
        "confusion": confusion.tolist(),
    }, confusion
