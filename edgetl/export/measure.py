"""How a format is measured: the same preprocessed images through the device's own interpreter.

All models see the same decoded, preprocessed tensors (the run's scale/offset), one image at
a time (batch 1, as on the device), timed. A split entry ("base-<fmt>") runs as base model +
head.npz. `metrics` turns probabilities into accuracy, drop against a reference, agreement,
per-class accuracy and drop, and a confusion matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import DataError, ImageError, ModelError
from edgetl.runtime.bundle import Bundle
from edgetl.runtime.folders import scan_class_folders
from edgetl.runtime.head import NumpyHead, two_class_probabilities
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.runtime.interpreter import RUNTIMES, open_model


def drop_pp(reference_accuracy: float, accuracy: float) -> float:
    """Accuracy drop in percentage points, rounded so that 4 of 400 images is exactly 1.0 (the gate compares it)."""
    return round((reference_accuracy - accuracy) * 100, 3)


@dataclass
class EvalSet:
    paths: list[str]
    labels: np.ndarray
    images: np.ndarray  # (N, S, S, 3) float32, preprocessed
    classes: list[str]
    skipped: list[str]


def file_predictor(path: str | Path, runtime: str | None = None, threads: int | None = None):
    """A callable image (H,W,3 float32, preprocessed) -> raw float output, for a .tflite or .onnx file.

    It wraps the device runtime's own adapter (edgetl.runtime.interpreter), so validation and
    the export gate measure exactly the quantize/invoke/dequantize code that runs on the Pi.
    """
    path = Path(path)
    runtime = runtime or {".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix)
    if runtime not in RUNTIMES:
        raise ModelError(f"no runtime for {path.name}; expected a .tflite or .onnx file")
    model = open_model(path, runtime, threads, role="raw")
    return lambda image: model.run(image[None])[0]


@dataclass
class Outputs:
    values: np.ndarray  # (N, ...) float32
    latency_ms: np.ndarray  # (N,) per-image wall time
    vectors: np.ndarray | None = None  # a base model's pooled features (what the unknown detector reads)


def run_images(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> Outputs:
    """Run one image at a time (batch 1, as on the device), timing each call."""
    values, times = [], []
    for image in images:
        start = time.perf_counter()
        values.append(predict(image))
        times.append((time.perf_counter() - start) * 1000.0)
    return Outputs(np.stack(values).astype(np.float32) if values else np.zeros((0,), np.float32), np.asarray(times))


def to_probabilities(values: np.ndarray) -> np.ndarray:
    """Model outputs -> (N, num_classes): a single sigmoid unit P(class 1) becomes [1-p, p]."""
    values = values.reshape(len(values), -1)
    return two_class_probabilities(values) if values.shape[1] == 1 else values


def load_eval_set(
    files: Iterable[tuple[Path, int]], classes: list[str], size: int, scale: float, offset: float
) -> EvalSet:
    paths, labels, images, skipped = [], [], [], []
    for path, label in files:
        try:
            images.append(preprocess(load_rgb(path, size), scale, offset))
        except (ImageError, OSError) as exc:
            skipped.append(str(exc).splitlines()[0])
            continue
        paths.append(str(path))
        labels.append(int(label))
    if not images:
        raise DataError(f"no decodable validation images ({len(skipped)} failed)")
    return EvalSet(paths, np.asarray(labels), np.stack(images), list(classes), skipped)


def eval_set_from_folder(data_dir: str | Path, classes: list[str], size: int, scale: float, offset: float) -> EvalSet:
    """A class-per-folder tree whose folder names must be classes of the bundle."""
    found = scan_class_folders(data_dir, allow_empty=True)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{data_dir} has class folder(s) the model does not know: {', '.join(unknown)}; "
            f"the model's classes are {', '.join(classes)}"
        )
    files = [(path, classes.index(name)) for name, paths in found.items() for path in paths]
    return load_eval_set(files, classes, size, scale, offset)


def keras_outputs(model, images: np.ndarray) -> Outputs:
    """The float reference, one image per call like the interpreters."""
    return run_images(lambda image: model(image[None], training=False).numpy()[0], images)


def bundle_outputs(bundle: Bundle, fmt: str, images: np.ndarray, head: NumpyHead | None) -> Outputs:
    entry = bundle.models[fmt]
    predict = file_predictor(bundle.model_path(fmt), entry.get("runtime"))
    if entry.get("role") == "base":
        if head is None:
            raise DataError(f"bundle has base model '{fmt}' but no head.npz")
        features: list[np.ndarray] = []

        def fused(image):
            features.append(head.pool(predict(image)[None])[0])
            return head.predict(features[-1][None])[0]

        out = run_images(fused, images)
        out.vectors = np.stack(features) if features else None
        return out
    return run_images(predict, images)


def metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    ref_pred: np.ndarray,
    classes: list[str],
    ref_acc: float,
    ref_class_acc: dict[str, float] | None,
) -> dict[str, Any]:
    pred = probs.argmax(axis=1)
    accuracy = float((pred == labels).mean())
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(classes):
        mask = labels == i
        acc = float((pred[mask] == i).mean()) if mask.any() else None
        base = (ref_class_acc or {}).get(name)
        per_class[name] = {"accuracy": acc, "drop_pp": None if acc is None or base is None else drop_pp(base, acc)}
    return {
        "accuracy": accuracy,
        "drop_pp": drop_pp(ref_acc, accuracy),
        "agreement": float((pred == ref_pred).mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
