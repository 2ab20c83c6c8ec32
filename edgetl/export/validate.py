"""`edgetl validate`: every format of a bundle against the Keras float model, on the same images.

Each format is measured by edgetl.export.measure (the device's interpreter, one image at a
time). Per format: top-1 accuracy, drop in percentage points vs the reference (the source
run's Keras model, or the float TFLite/ONNX model when the run is gone), agreement with the
reference, per-class accuracy and drop, confusion matrix, size and latency. Int8 formats are
gated by --max-drop. The report goes into validation.json and a summary into the manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import DataError, EdgetlError, GateError
from edgetl.export.measure import EvalSet, Outputs, bundle_outputs, keras_outputs, metrics, to_probabilities
from edgetl.runtime import atomic
from edgetl.runtime import formats as model_formats
from edgetl.runtime.bundle import MANIFEST, Bundle, load_bundle
from edgetl.runtime.calibration import ece, reliability
from edgetl.runtime.head import NumpyHead
from edgetl.runtime.openworld import OpenWorld
from edgetl.runtime.predictor import calibrate

VALIDATION = "validation.json"
MAX_DISAGREEMENTS = 20


def is_gated(fmt: str) -> bool:
    """Int8 formats (fused and split) are gated by default; float formats are only measured."""
    return model_formats.is_quantized(fmt)


def _source_model(bundle: Bundle):
    """The source run's Keras model, or None when the run is gone or TF is missing."""
    path = (bundle.manifest.get("source_run") or {}).get("path")
    if not path:
        return None
    try:
        from edgetl.train.run_folder import open_run

        return open_run(path).load_model()
    except (EdgetlError, ImportError):
        return None


def validate_bundle(
    bundle_dir: str | Path,
    evalset: EvalSet,
    max_drop: float | None,
    formats: list[str] | None = None,
    keras_model: Any = "auto",
    gated: Callable[[str], bool] = is_gated,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Measure the bundle, write validation.json + the manifest summary (atomically), return the report."""
    bundle = load_bundle(bundle_dir)
    names = list(formats or bundle.models)
    unknown = [f for f in names if f not in bundle.models]
    if unknown:
        raise DataError(f"format(s) {', '.join(unknown)} not in the bundle; it has {', '.join(bundle.models)}")
    bundle.verify_all()
    head = NumpyHead.load(bundle.path_of(bundle.manifest["head"])) if "head" in bundle.manifest else None
    world = OpenWorld.load(bundle.path_of(bundle.manifest["openworld"])) if "openworld" in bundle.manifest else None
    outputs, reference = measure_all(bundle, names, evalset, keras_model, head, log)
    probs = {fmt: to_probabilities(out.values) for fmt, out in outputs.items()}
    ref_pred = probs[reference].argmax(axis=1)
    ref = metrics(probs[reference], evalset.labels, ref_pred, evalset.classes, 0.0, None)
    ref_class = {c: v["accuracy"] for c, v in ref["per_class"].items()}
    report: dict[str, Any] = {
        "num_images": int(len(evalset.labels)),
        "classes": evalset.classes,
        "max_drop_pp": max_drop,
        "reference": reference,
        "skipped_images": evalset.skipped,
        "machine": machine(),
        "images_id": images_id(evalset.paths),
        "formats": {},
        "disagreements": {},
    }
    for fmt, out in outputs.items():
        entry = metrics(probs[fmt], evalset.labels, ref_pred, evalset.classes, ref["accuracy"], ref_class)
        entry.update(format_record(bundle, fmt, entry["drop_pp"], out, head, gated(fmt) and fmt != reference, max_drop))
        if world is not None:
            entry.update(open_world_record(world, head, probs[fmt], out, evalset.labels))
        report["formats"][fmt] = entry
        bad = disagreements(evalset, ref_pred, probs[fmt].argmax(axis=1), reference, fmt)
        if fmt != reference and bad:
            report["disagreements"][fmt] = bad
    report["passed"] = all(e["passed"] for e in report["formats"].values())
    write_report(bundle, report)
    return report


def measure_all(bundle: Bundle, names: list[str], evalset: EvalSet, keras_model, head, log) -> tuple[dict, str]:
    """-> ({format: Outputs}, the reference's name): the Keras model when it can be had, else a float format."""
    model = _source_model(bundle) if keras_model == "auto" else keras_model
    outputs: dict[str, Outputs] = {}
    if model is not None:
        log("measuring keras (float reference)")
        outputs["keras"] = keras_outputs(model, evalset.images)
        reference = "keras"
    else:
        reference = next((f for f in model_formats.FLOAT_REFERENCES if f in bundle.models), names[0])
        log(f"source run not available; reference is {reference}")
    for fmt in ([reference] if reference != "keras" and reference not in names else []) + names:
        log(f"measuring {fmt}")
        outputs[fmt] = bundle_outputs(bundle, fmt, evalset.images, head)
    return outputs, reference


def format_record(bundle: Bundle, fmt: str, drop: float, out: Outputs, head, gated: bool, max_drop) -> dict:
    """Size (a base model counts its head.npz), latency, and the gate's verdict (ladder included)."""
    entry = bundle.models.get(fmt, {})
    ladder = entry.get("ladder")
    is_gate = gated and max_drop is not None
    ok = not is_gate or (drop <= max_drop and (not ladder or ladder.get("passed_rung") is not None))
    size = entry.get("size_bytes")
    if entry.get("role") == "base" and head is not None:
        size += bundle.manifest["head"]["size_bytes"]
    latency = {"mean": float(np.mean(out.latency_ms)), "p95": float(np.percentile(out.latency_ms, 95))}
    return {
        "size_bytes": size,
        "gated": is_gate,
        "passed": bool(ok),
        "latency_ms": latency,
        **({"ladder": ladder} if ladder else {}),
    }


def open_world_record(world: OpenWorld, head, probs: np.ndarray, out: Outputs, labels: np.ndarray) -> dict:
    """Calibration before and after the bundle's temperature (ECE, reliability bins) and the share of
    val images the runtime would call unknown with this model (base features: the detector; fused: top probability)."""
    calibrated = np.stack([calibrate(p, world.temperature) for p in probs])
    if out.vectors is not None and head is not None:
        unknown = world.judge(head, out.vectors).unknown
    else:
        unknown = calibrated.max(axis=1) < world.msp_threshold
    after = reliability(calibrated, labels)
    return {
        "ece": round(ece(probs, labels), 4),
        "ece_calibrated": round(after.ece, 4),
        "reliability": after.rows(),
        "unknown_rate": round(float(np.mean(unknown)), 4),
    }


def disagreements(evalset: EvalSet, ref_pred: np.ndarray, pred: np.ndarray, reference: str, fmt: str) -> list[dict]:
    """The first MAX_DISAGREEMENTS images whose label differs from the reference's."""
    classes = evalset.classes
    return [
        {
            "path": evalset.paths[i],
            "label": classes[evalset.labels[i]],
            reference: classes[ref_pred[i]],
            fmt: classes[pred[i]],
        }
        for i in np.flatnonzero(pred != ref_pred)[:MAX_DISAGREEMENTS]
    ]


def machine() -> dict[str, Any]:
    """Where a validation ran: int8 kernels differ between x86 and ARM, so results are kept per architecture."""

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    dists = ("numpy", "pillow", "ai-edge-litert", "tflite-runtime", "onnxruntime")
    return {
        "arch": platform.machine(),
        "python": platform.python_version(),
        "packages": {d: v for d in dists if (v := version(d))},
    }


def images_id(paths: list[str]) -> str:
    """A short hash of the images' <class>/<file> names: the same id on two machines means the same val set."""
    names = sorted("/".join(Path(p).parts[-2:]) for p in paths)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def architecture_sections(previous: dict | None, report: dict[str, Any]) -> dict[str, Any]:
    """{arch: accuracy per format on that architecture}, this run's added to what the file already holds."""
    sections = dict((previous or {}).get("architectures", {}))
    sections[report["machine"]["arch"]] = {
        "num_images": report["num_images"],
        "images_id": report["images_id"],
        "reference": report["reference"],
        "machine": report["machine"],
        "formats": {f: {k: e[k] for k in ("accuracy", "drop_pp", "agreement")} for f, e in report["formats"].items()},
    }
    return sections


def write_report(bundle: Bundle, report: dict[str, Any]) -> None:
    """validation.json and the manifest summary. A run on another architecture than the file's main
    report (e.g. `edgetl validate` on the Pi for a bundle validated on the workstation) only adds its
    section under "architectures": the main report stays the one measured against the Keras model."""
    path = bundle.root / VALIDATION
    try:
        previous = json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):  # unreadable: replaced by this run's report
        previous = None
    report["architectures"] = architecture_sections(previous, report)
    main_arch = ((previous or {}).get("machine") or {}).get("arch")
    if main_arch not in (None, report["machine"]["arch"]):
        atomic.write_text(path, json.dumps({**previous, "architectures": report["architectures"]}, indent=1))
        return
    atomic.write_text(path, json.dumps(report, indent=1))
    manifest = dict(bundle.manifest)
    manifest["validation"] = {
        "file": VALIDATION,
        "passed": report["passed"],
        "num_images": report["num_images"],
        "max_drop_pp": report["max_drop_pp"],
        "reference": report["reference"],
        "formats": {
            f: {k: e[k] for k in ("accuracy", "drop_pp", "agreement", "gated", "passed", "unknown_rate") if k in e}
            for f, e in report["formats"].items()
        },
    }
    atomic.write_text(bundle.root / MANIFEST, json.dumps(manifest, indent=1))
    bundle.manifest = manifest


def check_gate(report: dict[str, Any]) -> None:
    failed = [f"{f} drop {e['drop_pp']:.2f} pp" for f, e in report["formats"].items() if not e["passed"]]
    if failed:
        raise GateError(
            f"accuracy gate failed (max drop {report['max_drop_pp']} pp): {'; '.join(failed)}; "
            "see validation.json in the bundle"
        )


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'format':<22} {'acc %':>7} {'drop pp':>8} {'agree %':>8} {'size KB':>9} {'mean ms':>8} {'p95 ms':>7}  gate"
    )
    rows = [f"{report['num_images']} images, reference: {report['reference']}", head, "-" * len(head)]
    for fmt, e in report["formats"].items():
        gate = ("pass" if e["passed"] else "FAIL") if e["gated"] else "-"
        size = f"{e['size_bytes'] / 1024:9.1f}" if e["size_bytes"] else f"{'':>9}"
        rows.append(
            f"{fmt:<22} {e['accuracy'] * 100:7.2f} {e['drop_pp']:8.2f} {e['agreement'] * 100:8.2f} {size} "
            f"{e['latency_ms']['mean']:8.2f} {e['latency_ms']['p95']:7.2f}  {gate}"
        )
    return "\n".join(rows)
