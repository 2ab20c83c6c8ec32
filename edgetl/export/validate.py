"""`edgetl validate`: every format of a bundle against the Keras float model, on the same images.

All models see the same decoded, preprocessed tensors (the run's scale/offset from the
manifest), one image at a time in the interpreter the device uses. Per format: top-1
accuracy, drop in percentage points vs the reference (the source run's Keras model, or
the float TFLite/ONNX model when the run is gone), agreement with the reference,
per-class accuracy and drop, confusion matrix, size and latency. Split entries
("base-<fmt>") are measured as base model + head.npz. Int8 formats are gated by --max-drop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import DataError, EdgetlError, GateError, ImageError, ModelError
from edgetl.runtime import atomic
from edgetl.runtime import formats as model_formats
from edgetl.runtime.bundle import MANIFEST, Bundle, load_bundle
from edgetl.runtime.folders import scan_class_folders
from edgetl.runtime.head import NumpyHead, two_class_probabilities
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.runtime.interpreter import RUNTIMES, open_model

VALIDATION = "validation.json"
MAX_DISAGREEMENTS = 20


def drop_pp(reference_accuracy: float, accuracy: float) -> float:
    """Accuracy drop in percentage points, rounded so that 4 of 400 images is exactly 1.0 (the gate compares it)."""
    return round((reference_accuracy - accuracy) * 100, 3)


def is_gated(fmt: str) -> bool:
    """Int8 formats (fused and split) are gated by default; float formats are only measured."""
    return model_formats.is_quantized(fmt)


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
        fused = lambda image: head.predict(predict(image)[None])[0]  # noqa: E731
        return run_images(fused, images)
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
    probs = {fmt: to_probabilities(out.values) for fmt, out in outputs.items()}
    labels, classes = evalset.labels, evalset.classes
    ref_pred = probs[reference].argmax(axis=1)
    ref = metrics(probs[reference], labels, ref_pred, classes, 0.0, None)
    ref_class = {c: v["accuracy"] for c, v in ref["per_class"].items()}
    report: dict[str, Any] = {
        "num_images": int(len(labels)),
        "classes": classes,
        "max_drop_pp": max_drop,
        "reference": reference,
        "skipped_images": evalset.skipped,
        "formats": {},
        "disagreements": {},
    }
    for fmt, out in outputs.items():
        entry = metrics(probs[fmt], labels, ref_pred, classes, ref["accuracy"], ref_class)
        ladder = bundle.models.get(fmt, {}).get("ladder")
        is_gate = gated(fmt) and max_drop is not None and fmt != reference
        ok = not is_gate or (entry["drop_pp"] <= max_drop and (not ladder or ladder.get("passed_rung") is not None))
        size = bundle.models[fmt]["size_bytes"] if fmt in bundle.models else None
        if fmt in bundle.models and bundle.models[fmt].get("role") == "base" and head is not None:
            size += bundle.manifest["head"]["size_bytes"]
        entry.update(
            {
                "size_bytes": size,
                "gated": is_gate,
                "passed": bool(ok),
                "latency_ms": {"mean": float(np.mean(out.latency_ms)), "p95": float(np.percentile(out.latency_ms, 95))},
            }
        )
        if ladder:
            entry["ladder"] = ladder
        report["formats"][fmt] = entry
        pred = probs[fmt].argmax(axis=1)
        bad = np.flatnonzero(pred != ref_pred)[:MAX_DISAGREEMENTS]
        if fmt != reference and len(bad):
            report["disagreements"][fmt] = [
                {
                    "path": evalset.paths[i],
                    "label": classes[labels[i]],
                    reference: classes[ref_pred[i]],
                    fmt: classes[pred[i]],
                }
                for i in bad
            ]
    report["passed"] = all(e["passed"] for e in report["formats"].values())
    write_report(bundle, report)
    return report


def write_report(bundle: Bundle, report: dict[str, Any]) -> None:
    atomic.write_text(bundle.root / VALIDATION, json.dumps(report, indent=1))
    manifest = dict(bundle.manifest)
    manifest["validation"] = {
        "file": VALIDATION,
        "passed": report["passed"],
        "num_images": report["num_images"],
        "max_drop_pp": report["max_drop_pp"],
        "reference": report["reference"],
        "formats": {
            f: {k: e[k] for k in ("accuracy", "drop_pp", "agreement", "gated", "passed")}
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
