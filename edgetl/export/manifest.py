"""What export writes into manifest.json (the contract is in edgetl.runtime.bundle)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.export.options import ExportOptions
from edgetl.export.quantize import QuantSpec, tflite_io_params
from edgetl.runtime.bundle import FORMAT_VERSION, file_entry
from edgetl.runtime.formats import ModelFormat


def model_entry(bundle: Path, path: Path, fmt: ModelFormat, role: str, spec: QuantSpec) -> dict[str, Any]:
    """A model file's entry: file, sha256, size, runtime, role, quantization and its input/output tensors."""
    entry = {**file_entry(bundle, path), "runtime": fmt.runtime, "role": role, "quantization": vars(spec).copy()}
    if fmt.runtime == "tflite":
        entry.update(tflite_io_params(path))
    else:
        entry.update({"input": {"dtype": "float32", "name": "image"}, "output": {"dtype": "float32"}})
    return entry


def manifest_for(run, entries: dict, head_entry: dict | None, options: ExportOptions) -> dict[str, Any]:
    info = run.info
    return {
        "format_version": FORMAT_VERSION,
        "edgetl_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_run": {"path": str(run.root.resolve()), "config": run.config().to_dict()},
        "classes": run.classes,
        "input": {
            "size": run.input_size,
            "color": info["preprocessing"].get("color", "RGB"),
            "layout": "NHWC",
            "resize": "bilinear",
            "scale": run.scale,
            "offset": run.offset,
        },
        "base": {
            "name": info.get("base"),
            "cut_layer": info.get("cut_layer"),
            "taps": info.get("taps", []),
            "feature_shape": info.get("feature_shape"),
        },
        "output": info.get("output"),
        "models": entries,
        **({"head": head_entry} if head_entry else {}),
        "export": {
            "formats": list(options.formats),
            "io": options.io,
            "calibration": options.calibration,
            "calibration_method": options.calibration_method,
            "max_drop_pp": options.max_drop,
        },
    }
