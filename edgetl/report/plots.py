"""The two pictures of a run: learning curves and the validation confusion matrix.

Matplotlib with the Agg backend (no display needed); both functions write a PNG atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.runtime import atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Train vs val accuracy and loss per epoch (as in the TF tutorial); a line marks fine-tuning."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fine = [row["epoch"] for row in history if row["phase"] == "fine_tune"]
    fig, axes = plt.subplots(2, 1, figsize=(8, 8))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, [row[metric] for row in history], marker="o", label=f"Training {metric}")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], marker="o", label=f"Validation {metric}")
        if fine:
            ax.axvline(min(fine) - 0.5, color="gray", linestyle="--", label="Start fine-tuning")
        ax.set_ylabel(metric.capitalize())
        ax.legend(loc="lower right" if metric == "accuracy" else "upper right")
        ax.grid(alpha=0.3)
    axes[0].set_title("Training and validation accuracy")
    axes[1].set_title("Training and validation loss")
    axes[1].set_xlabel("epoch")
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(path)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: str | Path) -> Path:
    """Rows: true class, columns: predicted class, with counts in the cells."""
    plt = _pyplot()
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = matrix.max() if matrix.size else 0
    for r in range(matrix.shape[0]):
        for c in range(matrix.shape[1]):
            ax.text(c, r, int(matrix[r, c]), ha="center", va="center",
                    color="white" if peak and matrix[r, c] > peak / 2 else "black")
    ax.set_title(f"Validation confusion ({int(np.trace(matrix))}/{int(matrix.sum())} correct)")
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(path)
