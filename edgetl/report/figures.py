"""The report's figures as PNG bytes: training curves, confusion matrices, thumbnail grids.

Built on matplotlib's object API (`Figure` + Agg canvas), never pyplot: no global figure
state, no GUI backend, so a report can be written from a training process or a server.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

DPI = 100
TRAIN, VAL = "#1f77b4", "#ff7f0e"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _column(rows: list[dict[str, str]], key: str) -> np.ndarray:
    """A history.csv column as floats; missing or empty cells become NaN (not plotted)."""
    out = []
    for row in rows:
        try:
            out.append(float(row.get(key) or "nan"))
        except ValueError:
            out.append(float("nan"))
    return np.asarray(out, dtype=np.float64)


def _segments(stages: list[str]) -> list[tuple[str, int, int]]:
    """Runs of equal stage names as (stage, first index, end index exclusive)."""
    out: list[tuple[str, int, int]] = []
    for i, stage in enumerate(stages):
        if out and out[-1][0] == stage:
            out[-1] = (stage, out[-1][1], i + 1)
        else:
            out.append((stage, i, i + 1))
    return out


def curves_png(rows: list[dict[str, str]]) -> bytes:
    """Accuracy and loss per epoch, train vs val; stages (head, fine-tune, qat) shaded apart.

    Epochs are numbered 1..N across stages, because each stage restarts Keras' epoch count.
    """
    from matplotlib.ticker import MaxNLocator

    x = np.arange(1, len(rows) + 1)
    stages = [row.get("stage") or row.get("phase") or "" for row in rows]  # contract: stage; train writes phase
    fig = _figure(10, 3.6)
    for i, (metric, title) in enumerate((("accuracy", "Accuracy"), ("loss", "Loss"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, color, label in ((metric, TRAIN, "train"), (f"val_{metric}", VAL, "val")):
            y = _column(rows, key)
            if np.isfinite(y).any():
                ax.plot(x, y, marker="o", markersize=3, color=color, label=label)
        for k, (stage, lo, hi) in enumerate(_segments(stages)):
            if k % 2:
                ax.axvspan(lo + 0.5, hi + 0.5, color="#000000", alpha=0.06, lw=0)
            if stage:
                ax.text(
                    lo + 0.6,
                    1.0,
                    stage,
                    transform=ax.get_xaxis_transform(),
                    va="bottom",
                    ha="left",
                    fontsize=8,
                    color="#555555",
                )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(title, pad=14)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return to_png(fig)


def _draw_confusion(ax, matrix: np.ndarray, classes: Sequence[str], title: str) -> None:
    """Counts in each cell, colour by row-normalised rate so small classes still show."""
    rows = matrix.sum(axis=1, keepdims=True)
    rate = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=np.float64), where=rows > 0)
    ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0)
    n = len(classes)
    ticks = range(n)
    ax.set_xticks(
        ticks, labels=list(classes), rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center", fontsize=8
    )
    ax.set_yticks(ticks, labels=list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        for r in range(n):
            for c in range(n):
                ax.text(
                    c,
                    r,
                    str(int(matrix[r, c])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rate[r, c] > 0.5 else "black",
                )


def confusion_png(matrices: Sequence[tuple[str, np.ndarray]], classes: Sequence[str]) -> bytes:
    """One or more (title, matrix) confusion matrices side by side."""
    side = max(3.0, 0.45 * len(classes) + 2.0)
    fig = _figure(side * len(matrices), side)
    for i, (title, matrix) in enumerate(matrices):
        _draw_confusion(fig.add_subplot(1, len(matrices), i + 1), np.asarray(matrix, dtype=np.int64), classes, title)
    fig.tight_layout()
    return to_png(fig)


def thumbnail_grid_png(items: Sequence[tuple[np.ndarray, str]], columns: int = 6) -> bytes:
    """uint8 RGB thumbnails in a grid, each with a short caption under it."""
    columns = max(1, min(columns, len(items)))
    rows = (len(items) + columns - 1) // columns
    fig = _figure(1.8 * columns, 2.1 * rows)
    for i, (pixels, caption) in enumerate(items):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(pixels)
        ax.set_axis_off()
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    return to_png(fig)


def reliability_png(curves: Sequence[tuple[str, list[dict]]]) -> bytes:
    """Reliability diagram: per confidence bin, accuracy against mean confidence (the diagonal is perfect)."""
    fig = _figure(5, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", lw=1, label="perfectly calibrated")
    for name, rows in curves:
        if rows:
            ax.plot(
                [r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", markersize=3, label=name
            )
    ax.set_xlabel("confidence (calibrated top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return to_png(fig)


def search_png(rows: list[dict[str, str]]) -> bytes:
    """search.csv: each trial's cross-validated accuracy in the order tried, the best so far as a line."""
    trials = np.array([int(r["trial"]) for r in rows])
    accuracy = np.array([float(r["cv_accuracy"]) for r in rows])
    order = np.argsort(trials)
    fig = _figure(6.0, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(trials[order], accuracy[order], color=TRAIN, s=18, label="trial")
    ax.step(trials[order], np.maximum.accumulate(accuracy[order]), where="post", color=VAL, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("cross-validated accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return to_png(fig)
