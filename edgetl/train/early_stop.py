"""Early stopping of the head on a held-out slice of the training images (never the val split)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgetl.train import checkpoint


@dataclass
class EarlyStop:
    """The held-out loss after each epoch; stop after `patience` epochs without a better one; keep the best weights.

    Its state travels in the checkpoint, so a resumed run stops where an uninterrupted one would.
    """

    x: np.ndarray
    y: np.ndarray  # the targets the model is trained on (one-hot, or P(class 1))
    patience: int
    best: float = math.inf
    best_epoch: int = -1
    wait: int = 0
    best_weights: list[np.ndarray] = field(default_factory=list)

    def loss(self, model) -> float:
        p = np.clip(model(self.x, training=False).numpy().astype(np.float64), 1e-7, 1 - 1e-7)
        y = self.y.reshape(p.shape) if p.shape[1] == 1 else self.y
        if p.shape[1] == 1:
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return float(-np.mean(np.sum(y * np.log(p), axis=1)))

    def update(self, model, epoch: int) -> tuple[float, bool]:
        """-> (held-out loss, stop now?)"""
        loss = self.loss(model)
        if loss < self.best - 1e-6:
            self.best, self.best_epoch, self.wait, self.best_weights = loss, epoch, 0, model.get_weights()
        else:
            self.wait += 1
        return loss, bool(self.patience) and self.wait >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def restore(self, state: checkpoint.State | None) -> None:
        if state is not None and state.stop:
            self.best, self.best_epoch, self.wait = state.stop["best"], state.stop["best_epoch"], state.stop["wait"]
            self.best_weights = list(state.best)
