"""One converter per format of the table (edgetl.runtime.formats): Keras model -> model file.

A converter is `(model, calibration, job, out_path) -> path`: it converts at the precision
of `job.spec` (edgetl.export.quantize), embeds the class names and preprocessing in the
file (edgetl.export.metadata) and writes it atomically. `spec(options)` says what the
requested format is; `ladder` lists the fallbacks tried when an int8 model fails the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import ExportError
from edgetl.export.ladder import ONNX_LADDER, TFLITE_LADDER, Rung
from edgetl.export.metadata import onnx_with_labels, tflite_with_labels
from edgetl.export.options import ExportOptions
from edgetl.export.quantize import QuantSpec, onnx_float, onnx_int8, tflite_bytes
from edgetl.export.representative import Calibration
from edgetl.runtime import atomic


@dataclass(frozen=True)
class Job:
    """What a converter needs besides the model: its spec and what to embed in the file."""

    spec: QuantSpec
    size: int
    classes: tuple[str, ...]
    info: dict[str, Any] = field(hash=False, compare=False, default_factory=dict)


def to_tflite(model, calibration: Calibration | None, job: Job, out_path: Path) -> Path:
    data = tflite_bytes(model, job.spec, calibration)
    return atomic.write_bytes(out_path, tflite_with_labels(data, list(job.classes), job.info))


def _embed_onnx(path: Path, job: Job) -> Path:
    import onnx

    proto = onnx_with_labels(onnx.load(str(path)), list(job.classes), job.info)
    return atomic.write_bytes(path, proto.SerializeToString())


def to_onnx(model, calibration: Calibration | None, job: Job, out_path: Path) -> Path:
    return _embed_onnx(onnx_float(model, job.size, out_path), job)


def to_onnx_int8(model, calibration: Calibration | None, job: Job, out_path: Path) -> Path:
    if calibration is None:
        raise ExportError("onnx-int8 needs calibration images")
    float_path = out_path.with_name(out_path.stem + ".float.onnx")
    try:
        onnx_int8(onnx_float(model, job.size, float_path), job.spec, calibration, out_path)
    finally:
        float_path.unlink(missing_ok=True)
    return _embed_onnx(out_path, job)


@dataclass(frozen=True)
class Converter:
    """How one format of the table (edgetl.runtime.formats) is made from a Keras model."""

    convert: Callable[..., Path]
    spec: Callable[[ExportOptions], QuantSpec]
    ladder: tuple[Rung, ...] | None = None


def _int8(o: ExportOptions) -> QuantSpec:
    return QuantSpec(weights="int8", io=o.io, calibration=o.calibration, method=o.calibration_method)


CONVERTERS: dict[str, Converter] = {
    "tflite-float32": Converter(to_tflite, lambda o: QuantSpec()),
    "tflite-float16": Converter(to_tflite, lambda o: QuantSpec(weights="float16")),
    "tflite-dynamic": Converter(to_tflite, lambda o: QuantSpec(weights="dynamic")),
    "tflite-int8": Converter(to_tflite, _int8, TFLITE_LADDER),
    "onnx": Converter(to_onnx, lambda o: QuantSpec()),
    # U8U8: the only ONNX int8 whose outputs are identical on an x86 workstation and an ARM device (docs/arm64.md)
    "onnx-int8": Converter(to_onnx_int8, lambda o: _int8(o).replace(io="float32", unsigned=True), ONNX_LADDER),
    "tflite-qat-int8": Converter(to_tflite, _int8),  # built from the QAT model (edgetl.export.qat)
}
