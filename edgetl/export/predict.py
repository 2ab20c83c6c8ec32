"""Run an exported model file on preprocessed images, one image at a time, timed.

Validation, the quantization ladder and benchmarks all measure models through the device
runtime's adapters, so a format is judged by the same code the device uses (LiteRT for
.tflite, onnxruntime for .onnx). Imports no TensorFlow. Inputs are float32 NHWC images
already preprocessed (`x * scale + offset`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgetl.errors import ModelError
from edgetl.runtime.head import two_class_probabilities
from edgetl.runtime.interpreter import RUNTIMES, open_model


def open_predictor(path: str | Path, runtime: str | None = None, threads: int | None = None):
    """A callable image (H,W,3 float32) -> raw float output, for a .tflite or .onnx file.

    It wraps the device runtime's own adapter (edgetl.runtime.interpreter), so validation
    measures exactly the quantize/invoke/dequantize code that runs on the Pi.
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
