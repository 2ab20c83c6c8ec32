"""`edgetl export`: a run folder -> a bundle of deployable models + manifest.json.

    load_sources: the run's Keras model, split into base + head; calibration images
    make_gate:    the run's val images and the Keras model's accuracy on them
    write_format: each format (edgetl.export.converters), fused and as base-<format>;
                  int8 climbs the fallback ladder (edgetl.export.ladder) until it passes the gate
    write_head:   head.npz, the numpy head the device runs after a base model and retrains
    manifest, then validation of every file (edgetl.export.validate), then the gate

The bundle is built in a temporary folder (atomic_dir) and appears only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.errors import ExportError, GateError
from edgetl.export.converters import CONVERTERS, Job
from edgetl.export.golden import write_golden
from edgetl.export.ladder import climb
from edgetl.export.manifest import manifest_for, model_entry
from edgetl.export.options import ExportOptions, check_options
from edgetl.export.quantize import QuantSpec
from edgetl.export.representative import Calibration
from edgetl.runtime import atomic
from edgetl.runtime.bundle import MANIFEST, file_entry
from edgetl.runtime.formats import FORMATS


def check_writable(out: Path) -> None:
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {parent} for the bundle: {exc.strerror}; choose another --out") from None
    if not os.access(parent, os.W_OK) or (out.exists() and not out.is_dir()):
        raise ExportError(f"cannot write the bundle to {out}: not a writable folder; choose another --out")


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


@dataclass
class Sources:
    """What every format of one export is converted from."""

    run: Any  # edgetl.train.run_folder.RunFolder
    formats: list[str]
    fused: Any  # the run's Keras model: the float reference of validation and the gate
    models: dict[str, Any]  # format -> fused Keras model with one probability per class
    base: Any
    head: Any
    calibration: Calibration | None
    pooling: str
    dense_activation: str


def load_sources(run_dir: str | Path, options: ExportOptions, log: Callable[[str], None]) -> Sources:
    """The run's models (and the QAT model when asked for) and its calibration images."""
    from edgetl.export.representative import calibration_from_run
    from edgetl.models.classifier import split_model, with_class_probabilities
    from edgetl.train.run_folder import open_run

    run = open_run(run_dir)
    config = run.config()
    qat_epochs = options.qat_epochs or (config.qat_epochs if config.qat else 0)
    formats = list(dict.fromkeys(options.formats + (("tflite-qat-int8",) if qat_epochs else ())))
    fused = run.load_model()
    base, head = split_model(fused)
    calibration = None
    if any(CONVERTERS[f].spec(options).weights == "int8" for f in formats):
        calibration = calibration_from_run(run, options.seed)
        for warning in calibration.warnings(options.calibration):
            log(f"warning: {warning}")
    models = {f: with_class_probabilities(fused) for f in formats}
    if qat_epochs:
        from edgetl.export.qat import qat_classifier

        log(f"quantization-aware training of the head for {qat_epochs} epoch(s)")
        models["tflite-qat-int8"] = with_class_probabilities(qat_classifier(run, fused, qat_epochs, log))
    return Sources(run, formats, fused, models, base, head, calibration, config.pooling, config.dense_activation)


Gate = Callable[[Path, str], tuple[bool, float]]


def make_gate(sources: Sources, options: ExportOptions, log: Callable[[str], None]):
    """-> (eval set, gate): the run's val images, and `gate(path, runtime) -> (passed, drop pp)`.

    (None, None) when there is nothing to validate on; gate None when no --max-drop is set.
    """
    from edgetl.export.measure import (
        drop_pp,
        file_predictor,
        keras_outputs,
        load_eval_set,
        run_images,
        to_probabilities,
    )

    run = sources.run
    val_files = run.files("val")
    if not options.validate:
        return None, None
    if not val_files:
        log("note: the run has no val split; exported models are not validated or gated")
        return None, None
    evalset = load_eval_set(val_files, run.classes, run.input_size, run.scale, run.offset)
    if options.max_drop is None:
        return evalset, None
    keras_acc = float(
        (to_probabilities(keras_outputs(sources.fused, evalset.images).values).argmax(1) == evalset.labels).mean()
    )

    def gate(path: Path, runtime: str) -> tuple[bool, float]:
        probs = to_probabilities(run_images(file_predictor(path, runtime), evalset.images).values)
        drop = drop_pp(keras_acc, float((probs.argmax(1) == evalset.labels).mean()))
        return drop <= options.max_drop, drop

    return evalset, gate


def convert_one(
    name: str, model, calibration, job: Job, out: Path, gate: Gate | None, log
) -> tuple[Path, QuantSpec, dict | None]:
    """Convert one model; int8 formats with a gate climb the ladder until a rung passes."""
    converter = CONVERTERS[name]
    if converter.ladder is None or gate is None:
        return converter.convert(model, calibration, job, out), job.spec, None
    scratch = out.parent / ".ladder"
    scratch.mkdir(exist_ok=True)
    count = iter(range(1000))

    def build(spec: QuantSpec) -> Path:
        return converter.convert(
            model,
            calibration,
            Job(spec, job.size, job.classes, job.info),
            scratch / f"{out.stem}.{next(count)}{out.suffix}",
        )

    def check(path: Path) -> tuple[bool, float]:
        passed, drop = gate(path, FORMATS[name].runtime)
        log(f"  {name}: drop {drop:.2f} pp -> {'pass' if passed else 'fail'}")
        return passed, drop

    result = climb(converter.ladder, job.spec, calibration.available if calibration else 0, build, check)
    os.replace(result.artifact, out)
    shutil.rmtree(scratch, ignore_errors=True)
    if result.chosen is None:
        log(f"  {name}: no rung of the ladder passed the gate; keeping the requested model, marked failing")
    elif result.chosen != converter.ladder[0].name:
        log(f"  {name}: passed at ladder rung '{result.chosen}'")
    return out, result.spec, result.to_json()


def write_format(
    name: str, sources: Sources, options: ExportOptions, folder: Path, gate: Gate | None, log
) -> dict[str, dict]:
    """One format into `folder`: the fused model (gated) and, in split form, the base -> manifest entries."""
    run, fmt = sources.run, FORMATS[name]
    common = {
        "input_size": run.input_size,
        "output": run.info.get("output"),
        "preprocessing": {"scale": run.scale, "offset": run.offset, "color": "RGB"},
    }
    log(f"converting {name}")
    job = Job(
        CONVERTERS[name].spec(options), run.input_size, tuple(run.classes), {**common, "format": name, "role": "fused"}
    )
    path, spec, ladder = convert_one(
        name, sources.models[name], sources.calibration, job, folder / f"model_{fmt.stem}{fmt.suffix}", gate, log
    )
    mediapipe = add_mediapipe(path, run, log) if options.mediapipe_metadata and fmt.runtime == "tflite" else None
    entries = {
        name: {
            **model_entry(folder, path, fmt, "fused", spec),
            **({"ladder": ladder} if ladder else {}),
            **({"mediapipe_metadata": mediapipe} if mediapipe is not None else {}),
        }
    }
    if options.split and fmt.split:
        log(f"converting base-{name}")
        base_job = Job(spec, run.input_size, tuple(run.classes), {**common, "format": f"base-{name}", "role": "base"})
        base_path = CONVERTERS[name].convert(
            sources.base, sources.calibration, base_job, folder / f"base_{fmt.stem}{fmt.suffix}"
        )
        entries[f"base-{name}"] = model_entry(folder, base_path, fmt, "base", spec)
    return entries


def write_head(sources: Sources, folder: Path, split: bool) -> tuple[dict | None, dict | None]:
    """head.npz (split form) and the head's open-world statistics (head.openworld.npz) -> manifest entries."""
    from edgetl.models.classifier import head_to_numpy

    numpy_head = head_to_numpy(sources.head, sources.run.classes, sources.pooling, sources.dense_activation)
    head_entry = file_entry(folder, numpy_head.save(folder / "head.npz")) if split else None
    world = sources.run.openworld()
    if world is None:
        return head_entry, None
    if not world.fits(numpy_head):
        raise ExportError(f"{sources.run.root}: openworld.npz belongs to another head; retrain the run")
    # stamped with the head's content id, which the device can recompute under any NumPy (a run
    # trained before that id existed carries the npz-bytes id, which a Pi's NumPy 1 cannot match)
    entry = file_entry(folder, world.rebind(numpy_head).save(folder / "head.openworld.npz"))
    return head_entry, {
        **entry,
        "temperature": round(world.temperature, 6),
        "threshold": world.detector.threshold,
        "accept": world.detector.accept,
        "msp_threshold": world.msp_threshold,
    }


def export_run(run_dir: str | Path, options: ExportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Export a run into a bundle; returns {"bundle", "manifest", "validation", "archive"}.

    Raises GateError (after the bundle is written, with validation.json saying why, and the
    result in its `result`) when a gated format drops more than options.max_drop.
    """
    from edgetl.export.validate import check_gate, table, validate_bundle

    check_options(options)
    sources = load_sources(run_dir, options, log)
    out = Path(options.out or Path("bundles") / sources.run.root.resolve().name)
    check_writable(out)
    evalset, gate = make_gate(sources, options, log)
    report = None
    try:
        with atomic.atomic_dir(out) as tmp:
            entries: dict[str, Any] = {}
            for name in sources.formats:
                entries.update(write_format(name, sources, options, tmp, gate, log))
            head_entry, world_entry = write_head(sources, tmp, options.split)
            manifest = manifest_for(sources.run, entries, head_entry, options)
            if world_entry is not None:
                manifest["openworld"] = world_entry
            atomic.write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
            manifest["self_test"] = write_golden(tmp, sources.run.input_size)  # runs the models just written
            atomic.write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
            if evalset is not None:
                report = validate_bundle(tmp, evalset, options.max_drop, keras_model=sources.fused, log=log)
                log(table(report))
    except PermissionError as exc:
        raise ExportError(f"cannot write the bundle to {out}: {exc.strerror}; choose another --out") from None
    archive = write_archive(out) if options.archive else None
    manifest = json.loads((out / MANIFEST).read_text())
    result = {
        "bundle": str(out),
        "manifest": manifest,
        "validation": report,
        "archive": str(archive) if archive else None,
    }
    if report is not None:
        try:
            check_gate(report)
        except GateError as exc:
            exc.result = result
            raise
    return result
