"""Confidence calibration: one temperature for the head's logits, ECE, reliability bins.

    held-out logits (N, C) + labels --golden-section on log T, min NLL--> T
    probabilities = softmax(logits / T)                       (argmax unchanged)

Temperature scaling (Guo et al. 2017) keeps the predicted class and only makes the score
honest: among images scored 0.9, about 90 % should be right. Fit T on held-out *training*
data (never the validation set the numbers are reported on).

A two-class sigmoid head has one logit z; `class_logits` turns it into [0, z], whose softmax
is exactly [1 - sigmoid(z), sigmoid(z)], so dividing by T divides that single logit.
NLL as a function of 1/T is convex (log-sum-exp of logits linear in 1/T), hence unimodal in
log T, which is what golden-section search needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetl.runtime.head import softmax

LOG_T_RANGE = (np.log(0.02), np.log(50.0))  # search interval for log T
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def class_logits(logits: np.ndarray) -> np.ndarray:
    """(N,) or (N, 1) sigmoid logits -> (N, 2) as [0, z]; (N, C >= 2) softmax logits unchanged."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1 or z.shape[1] == 1:
        z = z.reshape(-1, 1)
        return np.concatenate([np.zeros_like(z), z], axis=1)
    return z


def calibrated_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits (sigmoid or softmax head) -> (N, C) probabilities at `temperature`."""
    return softmax(class_logits(logits) / float(temperature))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / T)."""
    z = class_logits(logits) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 60) -> float:
    """The T > 0 that minimises held-out NLL (golden-section search on log T, 0.02..50)."""
    labels = np.asarray(labels, dtype=np.int64)
    z = class_logits(logits)
    if len(z) == 0 or len(z) != len(labels):
        raise ValueError(f"fit_temperature needs as many labels as logits; got {len(z)} logits, {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= z.shape[1]:
        raise ValueError(f"labels must be in 0..{z.shape[1] - 1}; got {labels.min()}..{labels.max()}")
    lo, hi = LOG_T_RANGE
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(z, labels, np.exp(a)), nll(z, labels, np.exp(b))
    for _ in range(iterations):  # each step shrinks the interval by 0.618; 60 steps: ~1e-12 of it
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(z, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(z, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


@dataclass
class Reliability:
    """Attributes: per-bin (of `bins` equal-width confidence bins) counts, mean confidence,
    accuracy (NaN where empty), the bin edges, and ece = sum(count/N * |accuracy - confidence|)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float

    def rows(self) -> list[dict]:
        """One dict per non-empty bin, for a JSON report or a reliability-diagram chart."""
        return [
            {
                "low": float(self.edges[i]),
                "high": float(self.edges[i + 1]),
                "count": int(self.counts[i]),
                "confidence": float(self.confidence[i]),
                "accuracy": float(self.accuracy[i]),
            }
            for i in range(len(self.counts))
            if self.counts[i]
        ]


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> Reliability:
    """Top-label reliability bins of (N, C) probabilities; bin i holds confidences in (i/bins, (i+1)/bins]."""
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    gaps = np.where(counts > 0, np.abs(np.nan_to_num(accuracy) - np.nan_to_num(mean_conf)), 0.0)
    ece = float((counts * gaps).sum() / max(1, len(conf)))
    return Reliability(edges, counts, mean_conf, accuracy, ece)


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error (top label, `bins` equal-width bins)."""
    return reliability(probabilities, labels, bins).ece
