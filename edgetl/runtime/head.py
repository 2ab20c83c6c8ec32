"""The classifier head as plain numpy: the format shared by export and the device.

A head is pooling -> Dense layers -> output (softmax over N classes, or one sigmoid unit
for two classes). Export writes the trained Keras head in this format (`head.npz`); the
device runs it after the frozen base and can retrain it (see `edgetl.runtime.retrain`).
Files are loaded with `allow_pickle=False`: strings are stored as numpy unicode arrays.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.errors import BundleError
from edgetl.runtime import atomic

HEAD_FORMAT = "edgetl-head-1"
ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}


def two_class_probabilities(p_positive: np.ndarray) -> np.ndarray:
    """One sigmoid output P(class 1), shape (N,) or (N, 1) -> (N, 2) [P(class 0), P(class 1)].

    The one place a two-class sigmoid becomes per-class probabilities: the numpy head, the
    interpreters and validation all call it, so every caller sees (N, num_classes).
    """
    p = np.asarray(p_positive).reshape(-1)
    return np.stack([1.0 - p, p], axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass
class NumpyHead:
    """Weights of a head. `weights[i]` is (in, out), `biases[i]` is (out,); the last is the output layer."""

    classes: list[str]
    pooling: str  # avg | max | flatten | none (features already vectors)
    output: str  # softmax | sigmoid
    activation: str
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def pool(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim == 2 or self.pooling == "none":
            return features.reshape(len(features), -1)
        if self.pooling == "avg":
            return features.mean(axis=(1, 2))
        if self.pooling == "max":
            return features.max(axis=(1, 2))
        return features.reshape(len(features), -1)

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        act = ACTIVATIONS[self.activation]
        x = vectors
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = act(x)
        return x

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Feature maps or vectors -> class probabilities, shape (N, num_classes)."""
        return self.probabilities(self.logits(self.pool(features)))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        if self.output == "sigmoid":
            return two_class_probabilities(1.0 / (1.0 + np.exp(-logits[:, 0])))
        return softmax(logits)

    def to_bytes(self) -> bytes:
        arrays = {
            "format": np.array(HEAD_FORMAT),
            "classes": np.array(self.classes, dtype=np.str_),
            "pooling": np.array(self.pooling),
            "output": np.array(self.output),
            "activation": np.array(self.activation),
            "n_layers": np.array(len(self.weights)),
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"W{i}"] = np.asarray(w, dtype=np.float32)
            arrays[f"b{i}"] = np.asarray(b, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Atomic write: the file at `path` is always a complete head."""
        return atomic.write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> NumpyHead:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != HEAD_FORMAT:
                    raise BundleError(f"{path}: head format {str(data['format'])!r} is not {HEAD_FORMAT!r}")
                n = int(data["n_layers"])
                return cls(
                    classes=[str(c) for c in data["classes"]],
                    pooling=str(data["pooling"]),
                    output=str(data["output"]),
                    activation=str(data["activation"]),
                    weights=[data[f"W{i}"] for i in range(n)],
                    biases=[data[f"b{i}"] for i in range(n)],
                )
        except BundleError:
            raise
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path}: not a readable edgetl head ({type(exc).__name__}: {str(exc)[:80]})") from None
