"""The options of `edgetl export`: one frozen dataclass, the only place their defaults live.

Imports nothing heavy: the CLI builds its flags and choices from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetl.errors import ExportError
from edgetl.runtime.formats import FORMATS

METHODS = ("minmax", "entropy", "percentile")  # ONNX calibration methods (onnxruntime.quantization)
IO_TYPES = ("uint8", "int8", "float32")  # input/output dtype of full-integer TFLite


@dataclass(frozen=True)
class ExportOptions:
    """Attributes: formats (registry names), io dtype of int8 TFLite, calibration size and
    method, split form, archive, output folder, gate (max_drop in pp, None: no gate),
    validate at the end, QAT epochs (0: off, unless the run's config asks for QAT), and
    whether to write standard TFLite metadata for MediaPipe Tasks into fused .tflite files."""

    formats: tuple[str, ...] = ("tflite-float32", "tflite-int8")
    io: str = "uint8"
    calibration: int = 200
    calibration_method: str = "minmax"
    split: bool = True
    archive: bool = False
    out: str | None = None
    max_drop: float | None = 1.0
    validate: bool = True
    qat_epochs: int = 0
    seed: int = 0
    mediapipe_metadata: bool = False


def check_options(options: ExportOptions) -> None:
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if not options.formats:
        raise ExportError("no format requested; pass e.g. --int8 or --float32")
    if options.io not in IO_TYPES:
        raise ExportError(f"--io must be one of {', '.join(IO_TYPES)}; got {options.io!r}")
    if options.calibration_method not in METHODS:
        raise ExportError(
            f"--calibration-method must be one of {', '.join(METHODS)}; got {options.calibration_method!r}"
        )
    if options.calibration < 1:
        raise ExportError(f"--calibration must be at least 1; got {options.calibration}")
