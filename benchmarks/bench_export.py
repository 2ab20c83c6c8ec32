"""Export a real run folder and check the deployment targets; prints JSON.

    python benchmarks/bench_export.py --run /tmp/runs/cd \
        [--data /work/shared/datasets/cats_and_dogs_filtered/val] [--out benchmarks/results/export_cd]

Exports tflite-float32, tflite-int8, onnx and onnx-int8 (the gate and ladder on, --max-drop
as given), validates on the run's val split (and on --data when given), and compares against
the targets: int8 TFLite drop <= 0.5 pp, ONNX float agreement >= 99.9 %, ONNX int8 drop
<= 1 pp, int8 TFLite size <= 30 % of float TFLite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _output import emit, loadavg  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script

TARGETS = {
    "tflite_int8_drop_pp": ("tflite-int8", "drop_pp", "<=", 0.5),
    "onnx_float_agreement": ("onnx", "agreement", ">=", 0.999),
    "onnx_int8_drop_pp": ("onnx-int8", "drop_pp", "<=", 1.0),
}


def check(report: dict, manifest: dict) -> dict:
    out = {}
    for name, (fmt, key, op, limit) in TARGETS.items():
        value = report["formats"].get(fmt, {}).get(key)
        out[name] = {
            "value": value,
            "target": f"{op} {limit}",
            "met": value is not None and (value <= limit if op == "<=" else value >= limit),
        }
    models = manifest["models"]
    if "tflite-int8" in models and "tflite-float32" in models:
        ratio = models["tflite-int8"]["size_bytes"] / models["tflite-float32"]["size_bytes"]
        out["tflite_int8_size_ratio"] = {"value": round(ratio, 4), "target": "<= 0.3", "met": ratio <= 0.3}
    return out


def size_breakdown(bundle: Path, manifest: dict) -> dict:
    """Where the bytes of each fused .tflite go (edgetl.export.tflite_compact.breakdown)."""
    from edgetl.export.tflite_compact import breakdown

    return {
        fmt: breakdown((bundle / e["file"]).read_bytes())
        for fmt, e in manifest["models"].items()
        if e["runtime"] == "tflite" and e.get("role") == "fused"
    }


def summary(report: dict) -> dict:
    return {
        fmt: {k: e[k] for k in ("accuracy", "drop_pp", "agreement", "size_bytes", "latency_ms")}
        | ({"ladder": e["ladder"]["passed_rung"]} if "ladder" in e else {})
        for fmt, e in report["formats"].items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", default=None, help="Extra class-folder val set to validate on.")
    parser.add_argument("--out", default=None)
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--max-drop", type=float, default=1.0)
    parser.add_argument("--split", action="store_true", help="Also export base models + head.")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    from edgetl.errors import GateError
    from edgetl.export.exporter import ExportOptions, export_run
    from edgetl.export.measure import eval_set_from_folder
    from edgetl.export.validate import validate_bundle
    from edgetl.runtime.bundle import load_bundle

    out = args.out or f"benchmarks/results/export_{Path(args.run).name}"
    options = ExportOptions(
        formats=("tflite-float32", "tflite-int8", "onnx", "onnx-int8"),
        out=out,
        calibration=args.calibration,
        max_drop=args.max_drop,
        split=args.split,
    )
    load_before = loadavg()
    start = time.perf_counter()
    gate_error = None
    try:
        export_run(args.run, options, log=lambda s: print(s, file=sys.stderr))
    except GateError as exc:
        gate_error = str(exc)
    result = {
        "run": args.run,
        "bundle": out,
        "export_seconds": round(time.perf_counter() - start, 1),
        "gate_error": gate_error,
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": {"before": load_before, "after": loadavg()},
    }
    bundle = load_bundle(out)
    report = json.loads((Path(out) / "validation.json").read_text())
    result["run_val"] = {
        "num_images": report["num_images"],
        "formats": summary(report),
        "targets": check(report, bundle.manifest),
    }
    result["tflite_size_breakdown"] = size_breakdown(Path(out), bundle.manifest)
    if args.data:
        evalset = eval_set_from_folder(args.data, bundle.classes, bundle.input_size, bundle.scale, bundle.offset)
        extra = validate_bundle(out, evalset, args.max_drop, log=lambda s: print(s, file=sys.stderr))
        result["data"] = {
            "path": args.data,
            "num_images": extra["num_images"],
            "formats": summary(extra),
            "targets": check(extra, load_bundle(out).manifest),
        }
    emit(result, args.json_out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
