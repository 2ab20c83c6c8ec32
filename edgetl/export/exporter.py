"""`edgetl export`: a run folder -> a bundle of deployable models + manifest.json.

Formats are a registry of small converters, each `(model, calibration, job, out_path) ->
path`. Every requested format is written twice by default: the fused classifier, and the
frozen base alone ("base-<fmt>") whose features go through head.npz on the device. Int8
formats climb the fallback ladder (edgetl.export.ladder) when the run has a val split to gate on.
The bundle is built in a temporary folder (atomic_dir) and appears only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from edgetl import __version__
from edgetl.errors import ExportError, GateError
from edgetl.export.ladder import ONNX_LADDER, TFLITE_LADDER, Rung, climb
from edgetl.export.metadata import onnx_with_labels, tflite_with_labels
from edgetl.export.quantize import IO_TYPES, METHODS, Calibration, QuantSpec, onnx_float, onnx_int8, tflite_bytes, tflite_io_params
from edgetl.runtime import atomic
from edgetl.runtime.bundle import FORMAT_VERSION, MANIFEST, file_entry


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
class Format:
    stem: str
    suffix: str
    runtime: str
    convert: Callable[..., Path]
    spec: Callable[[ExportOptions], QuantSpec]
    ladder: tuple[Rung, ...] | None = None
    split: bool = True


def _int8(o: ExportOptions) -> QuantSpec:
    return QuantSpec(weights="int8", io=o.io, calibration=o.calibration, method=o.calibration_method)


FORMATS: dict[str, Format] = {
    "tflite-float32": Format("float32", ".tflite", "tflite", to_tflite, lambda o: QuantSpec()),
    "tflite-float16": Format("float16", ".tflite", "tflite", to_tflite, lambda o: QuantSpec(weights="float16")),
    "tflite-dynamic": Format("dynamic", ".tflite", "tflite", to_tflite, lambda o: QuantSpec(weights="dynamic")),
    "tflite-int8": Format("int8", ".tflite", "tflite", to_tflite, _int8, TFLITE_LADDER),
    "onnx": Format("float32", ".onnx", "onnx", to_onnx, lambda o: QuantSpec()),
    "onnx-int8": Format("int8", ".onnx", "onnx", to_onnx_int8,
                        lambda o: _int8(o).replace(io="float32"), ONNX_LADDER),
    # Built from the QAT model (edgetl.export.qat); its base is the same as tflite-int8's, so no split.
    "tflite-qat-int8": Format("qat_int8", ".tflite", "tflite", to_tflite, _int8, None, split=False),
}


def check_options(options: ExportOptions) -> None:
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if not options.formats:
        raise ExportError("no format requested; pass e.g. --int8 or --float32")
    if options.io not in IO_TYPES:
        raise ExportError(f"--io must be one of {', '.join(IO_TYPES)}; got {options.io!r}")
    if options.calibration_method not in METHODS:
        raise ExportError(f"--calibration-method must be one of {', '.join(METHODS)}; got {options.calibration_method!r}")
    if options.calibration < 1:
        raise ExportError(f"--calibration must be at least 1; got {options.calibration}")


def check_writable(out: Path) -> None:
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {parent} for the bundle: {exc.strerror}; choose another --out") from None
    if not os.access(parent, os.W_OK) or (out.exists() and not out.is_dir()):
        raise ExportError(f"cannot write the bundle to {out}: not a writable folder; choose another --out")


def model_entry(bundle: Path, path: Path, fmt: Format, role: str, spec: QuantSpec) -> dict[str, Any]:
    entry = {**file_entry(bundle, path), "runtime": fmt.runtime, "role": role, "quantization": vars(spec).copy()}
    if fmt.runtime == "tflite":
        entry.update(tflite_io_params(path))
    else:
        entry.update({"input": {"dtype": "float32", "name": "image"}, "output": {"dtype": "float32"}})
    return entry


def add_mediapipe(path: Path, run, log: Callable[[str], None]) -> dict[str, Any]:
    """Standard TFLite metadata (labels, normalization) so MediaPipe's ImageClassifier needs no other file.

    A model the writer refuses keeps its edgetl labels and is recorded as such, with a warning.
    """
    from edgetl.export.mediapipe_metadata import add_mediapipe_metadata
    from edgetl.export.tflite_compact import compact_packed

    try:
        add_mediapipe_metadata(path, path, run.classes, run.scale, run.offset)
        atomic.write_bytes(path, compact_packed(path.read_bytes()))  # the writer undoes tflite_compact's sharing
    except ExportError as exc:
        log(f"warning: {path.name}: no MediaPipe metadata ({exc})")
        return {"written": False, "reason": str(exc)}
    return {"written": True}


def write_archive(bundle: Path) -> Path:
    target = bundle.with_name(bundle.name + ".tar.gz")
    with atomic.atomic_path(target) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(bundle, arcname=bundle.name)
    return target


def manifest_for(run, entries: dict, head_entry: dict | None, options: ExportOptions) -> dict[str, Any]:
    info = run.info
    return {
        "format_version": FORMAT_VERSION, "edgetl_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_run": {"path": str(run.root.resolve()), "config": run.config().to_dict()},
        "classes": run.classes,
        "input": {"size": run.input_size, "color": info["preprocessing"].get("color", "RGB"), "layout": "NHWC",
                  "resize": "bilinear", "scale": run.scale, "offset": run.offset},
        "base": {"name": info.get("base"), "cut_layer": info.get("cut_layer"), "feature_shape": info.get("feature_shape")},
        "output": info.get("output"),
        "models": entries,
        **({"head": head_entry} if head_entry else {}),
        "export": {"formats": list(options.formats), "io": options.io, "calibration": options.calibration,
                   "calibration_method": options.calibration_method, "max_drop_pp": options.max_drop},
    }


def _convert(fmt_name: str, model, calibration, job: Job, out: Path, gate, log) -> tuple[Path, QuantSpec, dict | None]:
    """Convert one model; int8 formats with a gate climb the ladder until a rung passes."""
    fmt = FORMATS[fmt_name]
    if fmt.ladder is None or gate is None:
        return fmt.convert(model, calibration, job, out), job.spec, None
    scratch = out.parent / ".ladder"
    scratch.mkdir(exist_ok=True)
    count = iter(range(1000))

    def build(spec: QuantSpec) -> Path:
        return fmt.convert(model, calibration, Job(spec, job.size, job.classes, job.info),
                           scratch / f"{out.stem}.{next(count)}{out.suffix}")

    def check(path: Path) -> tuple[bool, float]:
        passed, drop = gate(path, fmt.runtime)
        log(f"  {fmt_name}: drop {drop:.2f} pp -> {'pass' if passed else 'fail'}")
        return passed, drop

    result = climb(fmt.ladder, job.spec, calibration.available if calibration else 0, build, check)
    os.replace(result.artifact, out)
    shutil.rmtree(scratch, ignore_errors=True)
    if result.chosen is None:
        log(f"  {fmt_name}: no rung of the ladder passed the gate; keeping the requested model, marked failing")
    elif result.chosen != fmt.ladder[0].name:
        log(f"  {fmt_name}: passed at ladder rung '{result.chosen}'")
    return out, result.spec, result.to_json()


def export_run(run_dir: str | Path, options: ExportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Export a run into a bundle; returns {"bundle", "manifest", "validation", "archive"}.

    Raises GateError (after the bundle is written, with validation.json saying why, and the
    result in its `result`) when a gated format drops more than options.max_drop.
    """
    from edgetl.models.classifier import head_to_numpy, split_model, with_class_probabilities
    from edgetl.export.predict import open_predictor, run_images, to_probabilities
    from edgetl.export.quantize import calibration_from_run
    from edgetl.train.run_folder import open_run
    from edgetl.export.validate import check_gate, drop_pp, keras_outputs, load_eval_set, table, validate_bundle

    check_options(options)
    run = open_run(run_dir)
    out = Path(options.out or Path("bundles") / run.root.resolve().name)
    check_writable(out)
    config = run.config()
    qat_epochs = options.qat_epochs or (config.qat_epochs if config.qat else 0)
    formats = list(dict.fromkeys(options.formats + (("tflite-qat-int8",) if qat_epochs else ())))
    fused = run.load_model()
    base, head = split_model(fused)
    calibration = None
    if any(FORMATS[f].spec(options).weights == "int8" for f in formats):
        calibration = calibration_from_run(run, options.seed)
        for warning in calibration.warnings(options.calibration):
            log(f"warning: {warning}")
    models = {f: with_class_probabilities(fused) for f in formats}
    if qat_epochs:
        from edgetl.export.qat import qat_classifier

        log(f"quantization-aware training of the head for {qat_epochs} epoch(s)")
        models["tflite-qat-int8"] = with_class_probabilities(qat_classifier(run, fused, qat_epochs, log))
    evalset = gate = None
    val_files = run.files("val")
    if options.validate and val_files:
        evalset = load_eval_set(val_files, run.classes, run.input_size, run.scale, run.offset)
        keras_acc = float((to_probabilities(keras_outputs(fused, evalset.images).values).argmax(1) == evalset.labels).mean())
        if options.max_drop is not None:
            def gate(path: Path, runtime: str) -> tuple[bool, float]:
                probs = to_probabilities(run_images(open_predictor(path, runtime), evalset.images).values)
                drop = drop_pp(keras_acc, float((probs.argmax(1) == evalset.labels).mean()))
                return drop <= options.max_drop, drop
    elif options.validate:
        log("note: the run has no val split; exported models are not validated or gated")
    common = {"input_size": run.input_size, "output": run.info.get("output"),
              "preprocessing": {"scale": run.scale, "offset": run.offset, "color": "RGB"}}
    report = None
    try:
        with atomic.atomic_dir(out) as tmp:
            entries: dict[str, Any] = {}
            for name in formats:
                fmt = FORMATS[name]
                log(f"converting {name}")
                job = Job(fmt.spec(options), run.input_size, tuple(run.classes), {**common, "format": name, "role": "fused"})
                path, spec, ladder = _convert(name, models[name], calibration, job, tmp / f"model_{fmt.stem}{fmt.suffix}", gate, log)
                mediapipe = add_mediapipe(path, run, log) if options.mediapipe_metadata and fmt.runtime == "tflite" else None
                entries[name] = {**model_entry(tmp, path, fmt, "fused", spec), **({"ladder": ladder} if ladder else {}),
                                 **({"mediapipe_metadata": mediapipe} if mediapipe is not None else {})}
                if options.split and fmt.split:
                    log(f"converting base-{name}")
                    base_job = Job(spec, run.input_size, tuple(run.classes), {**common, "format": f"base-{name}", "role": "base"})
                    base_path = fmt.convert(base, calibration, base_job, tmp / f"base_{fmt.stem}{fmt.suffix}")
                    entries[f"base-{name}"] = model_entry(tmp, base_path, fmt, "base", spec)
            head_entry = None
            if options.split:
                numpy_head = head_to_numpy(head, run.classes, config.pooling, config.dense_activation)
                head_entry = file_entry(tmp, numpy_head.save(tmp / "head.npz"))
            manifest = manifest_for(run, entries, head_entry, options)
            atomic.write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
            if evalset is not None:
                report = validate_bundle(tmp, evalset, options.max_drop, keras_model=fused, log=log)
                log(table(report))
    except PermissionError as exc:
        raise ExportError(f"cannot write the bundle to {out}: {exc.strerror}; choose another --out") from None
    archive = write_archive(out) if options.archive else None
    manifest = json.loads((out / MANIFEST).read_text())
    result = {"bundle": str(out), "manifest": manifest, "validation": report, "archive": str(archive) if archive else None}
    if report is not None:
        try:
            check_gate(report)
        except GateError as exc:
            exc.result = result
            raise
    return result
